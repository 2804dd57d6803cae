"""Phase 2: sequence-level reinforcement learning on the decoded number.

Token-level cross-entropy cannot tell that ``101`` is closer to ``100`` than ``200`` is;
a reward on the whole decoded number can. Starting from the SFT policy, each step

1. decodes rollouts for a batch of rows (each row encoded once, its state, e.g. the LM's
   KV cache, shared by all samples and, for ReMax rewarding single draws, the greedy
   baseline);
2. decodes them to numbers and scores them (:func:`make_reward`);
3. turns rewards into advantages (:func:`remax_advantages` or :func:`grpo_advantages`);
4. takes a policy-gradient step on the same masked distribution that sampled the
   rollouts, optionally with a KL penalty toward the SFT policy (k3 estimator) and the
   GenRe^2 dense expert cross-entropy.

ReMax (Li et al., 2024) uses ``A_i = r_i - r_greedy`` and plain REINFORCE,
``loss = -mean_i A_i * sum_t log pi(t_i,t)``. GRPO (Shao et al., 2024) uses
``A_i = (r_i - mean_group) / (std_group + eps)`` with PPO's clipped ratio
``min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` against the rollout policy when a rollout
batch serves several updates.

Both reward each rollout for its own number (``reward_on="sample"``). The expected error
of one draw is the squared bias of the draws plus their whole variance, while a prediction
made as the mean of N draws pays only variance / N: rewarding draws one by one mostly
sharpens the policy. ``reward_on="mean"`` rewards each prompt's rollouts as a set, for
the mean of their numbers, and credits each rollout with what it adds to that mean's
reward (:func:`mean_credit`). ReMax then uses the credits as advantages (the
leave-one-out term is its baseline, so it decodes no greedy baseline); GRPO centres and
scales them within the group like rewards (centring cancels the common ``R(mean of all)``
term; with S = 2 the advantages equal per-draw GRPO's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ._distributed import DataParallel
from ._training import BestState
from .backbone_protocol import EncodedRows
from .codecs import NumberCodec, ScientificCodec
from .decoding import NumberPolicy

logger = logging.getLogger(__name__)

__all__ = [
    "REWARDS",
    "RL_ALGORITHMS",
    "RLConfig",
    "RLPhase",
    "RolloutPart",
    "grpo_advantages",
    "make_reward",
    "mean_credit",
    "policy_loss",
    "remax_advantages",
]

# The paper's code caps the error of unbounded codecs so that one wild sample (a huge
# exponent) cannot dominate a batch's gradient.
SCIENTIFIC_ERROR_CAP = 50.0
GRPO_EPS = 1e-4

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

RL_ALGORITHMS = ("remax", "grpo")

# The built-in rewards by name: each is the negative of this error of the standardized
# prediction. The one list that validation, the command line and make_reward read.
REWARDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "squared": np.square,
    "absolute": np.abs,
    "huber": lambda d: np.where(np.abs(d) <= 1.0, 0.5 * d**2, np.abs(d) - 0.5),
}


@dataclass(frozen=True)
class RLConfig:
    """Settings of the RL phase.

    The estimator builds it from ``rl_algorithm``, ``rl_epochs``, ``rl_lr``,
    ``rl_batch_size``, ``n_rollouts``, ``rl_temperature``, ``kl_coef``, ``expert_coef``,
    ``clip_eps``, ``rl_updates_per_batch``, ``scale_rewards`` and ``reward_on`` resolved
    to ``"sample"`` or ``"mean"`` (the fields drop the ``rl_`` prefix). The defaults here
    are the method's plain settings (no expert term, a reward per draw), not the
    estimator's. ``max_grad_norm`` and ``lr_schedule`` (``"cosine"`` decay to 0.1x after
    the warm-up, or ``"constant"``) have no estimator parameter.
    """

    algorithm: str
    epochs: int
    lr: float
    batch_size: int
    n_rollouts: int
    temperature: float = 1.0
    kl_coef: float = 0.0
    expert_coef: float = 0.0
    clip_eps: float = 0.2
    updates_per_batch: int = 1
    scale_rewards: str = "group"
    reward_on: str = "sample"
    max_grad_norm: float = 1.0
    lr_schedule: str = "cosine"

    def __post_init__(self) -> None:
        # Any other value would silently fall to unbaselined REINFORCE in _roll_out.
        if self.reward_on not in ("sample", "mean"):
            raise ValueError(f"reward_on must be 'sample' or 'mean', got {self.reward_on!r}")


def remax_advantages(rewards: np.ndarray, greedy_rewards: np.ndarray) -> np.ndarray:
    """ReMax advantages: each sample's reward minus its prompt's greedy reward.

    Parameters
    ----------
    rewards : ndarray of shape (n_prompts, n_samples)
        Rewards of the sampled decodes.
    greedy_rewards : ndarray of shape (n_prompts,)
        Reward of each prompt's greedy decode (the baseline).

    Returns
    -------
    advantages : ndarray of shape (n_prompts, n_samples)
        Not normalized.
    """
    return rewards - greedy_rewards[:, None]


def grpo_advantages(rewards: np.ndarray, scale: bool = True) -> np.ndarray:
    """GRPO advantages: rewards centred on their group mean, optionally over the group std.

    Parameters
    ----------
    rewards : ndarray of shape (n_prompts, group_size)
        Rewards of each prompt's group of samples.
    scale : bool, default=True
        Divide by ``std + 1e-4`` (``scale_rewards="group"``); ``False`` only centres.

    Returns
    -------
    advantages : ndarray of shape (n_prompts, group_size)
        Exactly zero for a group whose rewards all tie.
    """
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if scale:
        centred = centred / (rewards.std(axis=1, keepdims=True) + GRPO_EPS)
    return centred


def mean_credit(
    draws: np.ndarray, y_true: np.ndarray, reward_fn: RewardFn
) -> tuple[np.ndarray, np.ndarray]:
    """Credit of each draw for the reward of the mean of its prompt's draws.

    ``c_i = S * (R(mean of the S draws) - R(mean of the other S - 1 draws))``. The
    subtracted term does not depend on draw ``i``, so it is a baseline that adds no bias:
    the expectation of ``sum_i c_i * grad log pi(draw_i)`` is exactly
    ``S * grad E[R(mean of S draws)]``. The factor S keeps the credits on the scale of
    one draw's reward differences (moving one draw moves the mean by 1/S of it).

    Parameters
    ----------
    draws : ndarray of shape (n_prompts, S)
        Raw-scale decoded numbers, S >= 2 per prompt.
    y_true : ndarray of shape (n_prompts, 1)
        Raw-scale targets.
    reward_fn : callable
        From :func:`make_reward`, applied to the means.

    Returns
    -------
    credits : ndarray of shape (n_prompts, S)
        Exactly zero for a prompt whose draws all tie (as the rounding of the means
        might otherwise leave them not quite zero).
    mean_rewards : ndarray of shape (n_prompts,)
        ``R(mean of the S draws)`` per prompt: the objective, for the training log.
    """
    n_draws = draws.shape[1]
    if n_draws < 2:
        raise ValueError("mean_credit compares each draw with the others: it needs S >= 2")
    mean_all = draws.mean(axis=1, keepdims=True)
    mean_others = (draws.sum(axis=1, keepdims=True) - draws) / (n_draws - 1)
    mean_rewards = reward_fn(mean_all, y_true)
    credits = n_draws * (mean_rewards - reward_fn(mean_others, y_true))
    credits[draws.min(axis=1) == draws.max(axis=1)] = 0.0
    return credits, mean_rewards[:, 0]


def make_reward(reward: str | RewardFn, codec: NumberCodec) -> RewardFn:
    """Build ``reward(y_pred, y_true) -> rewards`` on raw-scale arrays.

    Parameters
    ----------
    reward : {"squared", "absolute", "huber"} or callable
        Built-in rewards are the negative squared / absolute / Huber (delta 1) error in
        standardized target space; for the scientific codec the error is capped at 50.
        A callable receives raw-scale ``y_pred`` of shape (n_rows, k) and ``y_true`` of
        shape (n_rows, 1) and returns finite rewards of ``y_pred``'s shape: k is the
        number of draws per row, or 1 and S when :func:`mean_credit` scores means.
    codec : NumberCodec
        The fitted codec (its standardization).

    Returns
    -------
    reward_fn : callable
    """
    if callable(reward):

        def checked(y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
            values = np.asarray(reward(y_pred, y_true), dtype=np.float64)
            if values.shape != y_pred.shape or not np.isfinite(values).all():
                raise ValueError(
                    "the reward callable must return finite rewards of shape "
                    f"{y_pred.shape} (one per sampled prediction), got shape {values.shape}"
                )
            return values

        return checked

    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {sorted(REWARDS)} or a callable, got {reward!r}")
    error = REWARDS[reward]
    cap = SCIENTIFIC_ERROR_CAP if isinstance(codec, ScientificCodec) else np.inf

    def builtin(y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        delta = codec.standardize(y_pred) - codec.standardize(y_true)
        return -np.minimum(error(delta), cap)

    return builtin


@contextmanager
def _adapter_weights(policy: NumberPolicy, state: dict[str, torch.Tensor]):
    """Temporarily load other trained weights (the reference policy for the KL term).

    Swapping the small LoRA tensors in place avoids a second copy of the base model; the
    MLP backbone swaps its whole (small) state the same way.
    """
    current = policy.backbone.adapter_state()
    policy.backbone.load_adapter_state(state)
    try:
        yield
    finally:
        policy.backbone.load_adapter_state(current)


class RLPhase:
    """ReMax or GRPO on the decoded numbers, a phase of the shared epoch loop.

    :class:`~llmregressor.engine.Trainer` runs it (``Trainer.rl``).

    Parameters
    ----------
    policy : NumberPolicy
        The SFT policy; its weights now are the KL reference.
    y : ndarray of shape (n_rows,)
        Training targets in the units the model decodes (the raw targets, or with a
        residual anchor the targets minus the rows' estimates).
    codec : NumberCodec
        Decodes rollouts; gives expert targets.
    config : RLConfig
        Algorithm and hyper-parameters.
    reward_fn : callable
        From :func:`make_reward`.
    rng : numpy.random.Generator
        Draws the rollouts' uniforms (the loop shuffles batches from the same stream).
    parallel : DataParallel
        This process's share of each batch.
    """

    name = "rl"
    patience = None

    def __init__(
        self,
        policy: NumberPolicy,
        y: np.ndarray,
        codec: NumberCodec,
        config: RLConfig,
        reward_fn: RewardFn,
        rng: np.random.Generator,
        parallel: DataParallel,
    ) -> None:
        self.policy, self.y, self.codec, self.config = policy, y, codec, config
        self.reward_fn, self.rng, self.parallel = reward_fn, rng, parallel
        self.remax = config.algorithm == "remax"
        self.title = f"RL ({config.algorithm})"
        self.updates_per_batch = 1 if self.remax else config.updates_per_batch
        # Taken before a checkpoint is attached: the reference is the SFT state.
        self.reference = policy.backbone.adapter_state() if config.kl_coef > 0 else None
        self.true_tokens = codec.encode(y)
        # Logged by every update; a process without rows in a batch still joins the average.
        self.logged_keys = ["entropy"] + ["kl"] * (self.reference is not None)
        self.logged_keys += ["expert_loss"] * (config.expert_coef > 0)

    def begin(self, best: BestState, validate: Callable[[], float] | None) -> list[dict]:
        """Score the SFT state on validation, as epoch -1, so RL keeps it if never beaten."""
        if validate is None:
            return []
        sft_rmse = validate()
        best.update(sft_rmse, epoch=-1)
        return [{"phase": "rl", "epoch": -1, "val_rmse": sft_rmse, "note": "SFT state"}]

    def begin_epoch(self) -> None:
        """Nothing to prepare: updates switch dropout off themselves."""

    def train_batch(
        self, rows: np.ndarray, encoded: EncodedRows, update: Callable[[Callable[[], float]], float]
    ) -> dict:
        """Roll out the batch, update the policy on it and return the step's record."""
        config = self.config
        # Drawn for the whole batch on every process, then sliced: the samples do not
        # depend on how many processes or micro-batches share the batch.
        uniforms = self.rng.random((len(rows), config.n_rollouts, self.codec.length))
        parts = [
            _roll_out(
                self.policy,
                encoded.take(positions).items,
                self.y[rows[positions]],
                self.true_tokens[rows[positions]],
                uniforms[positions],
                positions,
                weight,
                self.codec,
                config,
                self.reward_fn,
                self.reference,
            )
            for positions, weight in self.parallel.micro_batches(len(rows))
        ]
        logged = np.zeros(len(self.logged_keys))

        def accumulate() -> float:
            logged[:] = 0
            loss = 0.0
            for part in parts:
                step = policy_loss(self.policy, part, config)
                part_loss = step.pop("loss")
                (part.weight * part_loss).backward()
                loss += part.weight * part_loss.item()
                logged[:] += part.weight * np.array([step[k] for k in self.logged_keys])
            return loss

        for _ in range(self.updates_per_batch):
            update(accumulate)
        shape = (len(rows), config.n_rollouts)
        rewards = _step_array(parts, [part.rewards for part in parts], shape, self.parallel)
        spread = rewards.max(axis=1) - rewards.min(axis=1)
        # With reward_on="mean" the objective is the reward of each prompt's mean draw,
        # which the per-draw rewards above do not show (they also count the spread).
        objective = {}
        if config.reward_on == "mean":
            mean_rewards = [part.mean_rewards for part in parts]
            mean_rewards = _step_array(parts, mean_rewards, (len(rows),), self.parallel)
            objective["reward_of_mean"] = float(mean_rewards.mean())
        summed = map(float, self.parallel.all_sum(logged))
        return {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            **objective,
            "zero_spread_share": float(np.mean(spread == 0)),
            **dict(zip(self.logged_keys, summed, strict=True)),
        }

    def end_epoch(self) -> dict:
        """Return no epoch metrics: RL logs per step."""
        return {}

    def end(self, best: BestState) -> list[dict]:
        """Say so when no RL epoch beat the SFT state on validation and it was kept."""
        if best.best_epoch != -1:
            return []
        logger.info("RL never beat the SFT state on validation; SFT state kept")
        note = "no RL epoch beat SFT on validation; the SFT state is kept"
        return [{"phase": "rl", "epoch": None, "note": note}]


def _step_array(
    parts: Sequence[RolloutPart],
    values: Sequence[np.ndarray],
    shape: tuple[int, ...],
    parallel: DataParallel,
) -> np.ndarray:
    """One step's per-row values, each part's at its rows, over all processes.

    Every process fills only its own rows (possibly none) and leaves the others zero, so
    the sum over processes assembles the whole step.
    """
    out = np.zeros(shape)
    for part, part_values in zip(parts, values, strict=True):
        out[part.positions] = part_values
    return parallel.all_sum(out)


@dataclass
class RolloutPart:
    """One micro-batch of a step's rollouts, kept for every update on that batch.

    Attributes
    ----------
    positions : ndarray
        The rows of the step's batch it holds.
    weight : float
        Its share of the batch (micro-batch losses are weighted to the batch mean).
    batch : dict of str to Tensor
        The collated model inputs of its rows.
    sampled : Tensor of shape (rows, samples, length)
        The sampled symbols.
    old_log_probs : Tensor of shape (rows, samples, length)
        Their log-probabilities under the policy that sampled them.
    advantages : Tensor of shape (rows, samples)
        Each sample's advantage.
    rewards : ndarray of shape (rows, samples)
        Each sample's reward.
    mean_rewards : ndarray of shape (rows,) or None
        Reward of each row's mean draw (``reward_on="mean"``).
    ref_log_probs : Tensor or None
        Log-probabilities under the KL reference (``kl_coef > 0``).
    expert : Tensor or None
        Expert target symbols (``expert_coef > 0``).
    """

    positions: np.ndarray
    weight: float
    batch: dict[str, torch.Tensor]
    sampled: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    rewards: np.ndarray
    mean_rewards: np.ndarray | None
    ref_log_probs: torch.Tensor | None
    expert: torch.Tensor | None


def _roll_out(
    policy: NumberPolicy,
    row_inputs: Sequence[object],
    y: np.ndarray,
    true_tokens: np.ndarray,
    uniforms: np.ndarray,
    positions: np.ndarray,
    weight: float,
    codec: NumberCodec,
    config: RLConfig,
    reward_fn: RewardFn,
    reference: dict[str, torch.Tensor] | None,
) -> RolloutPart:
    """Decode, reward and score the rollouts of one micro-batch of rows."""
    backbone = policy.backbone
    remax = config.algorithm == "remax"
    # The mean's leave-one-out credit is ReMax's baseline then: no greedy decode needed.
    greedy_baseline = remax and config.reward_on == "sample"
    batch = backbone.collate(row_inputs)
    rollout = policy.decode(
        batch,
        torch.as_tensor(uniforms, device=backbone.device),
        int(greedy_baseline),
        config.temperature,
    )
    values = codec.decode(rollout.tokens.cpu().numpy())
    rewards = reward_fn(values, y[:, None])
    sampled, old_log_probs = rollout.tokens, rollout.log_probs
    mean_rewards = None
    if greedy_baseline:
        advantages = remax_advantages(rewards[:, 1:], rewards[:, 0])
        sampled, old_log_probs, rewards = sampled[:, 1:], old_log_probs[:, 1:], rewards[:, 1:]
    else:
        credits = rewards
        if config.reward_on == "mean":
            credits, mean_rewards = mean_credit(values, y[:, None], reward_fn)
        advantages = (
            credits if remax else grpo_advantages(credits, scale=config.scale_rewards == "group")
        )
    expert = None
    if config.expert_coef > 0:
        flat = sampled.reshape(-1, codec.length).cpu().numpy()
        expert = codec.expert_targets(flat, np.repeat(true_tokens, sampled.shape[1], 0))
        expert = torch.as_tensor(expert, device=backbone.device).reshape(sampled.shape)
    ref_log_probs = None
    if reference is not None:
        with torch.no_grad(), _adapter_weights(policy, reference):
            ref_log_probs = policy.score(batch, sampled, config.temperature).log_probs
    return RolloutPart(
        positions,
        weight,
        batch,
        sampled,
        old_log_probs,
        torch.as_tensor(advantages, dtype=torch.float32, device=backbone.device),
        rewards,
        mean_rewards,
        ref_log_probs,
        expert,
    )


def policy_loss(policy: NumberPolicy, part: RolloutPart, config: RLConfig) -> dict:
    """Return the loss of one update on a micro-batch of rollouts and its logged parts.

    Parameters
    ----------
    policy : NumberPolicy
        The policy being trained (scored with dropout off).
    part : RolloutPart
        The rollouts, their advantages and optional reference and expert targets.
    config : RLConfig
        Algorithm, temperature, clipping and term weights.

    Returns
    -------
    logged : dict
        ``loss`` (a tensor to back-propagate), ``entropy`` and, when on, ``kl`` and
        ``expert_loss`` (floats).
    """
    remax = config.algorithm == "remax"
    # Dropout off, as when the rollouts and the reference were scored: with it on, the
    # update would score another policy than the one that sampled (ratio != 1 at the first
    # update, a KL > 0 against itself). What remains is rounding: the rollouts were decoded
    # token by token without gradients (on CPU with another attention kernel, see
    # resolve_attn_implementation), this pass scores whole sequences with them.
    policy.backbone.train(False)
    scores = policy.score(part.batch, part.sampled, config.temperature)
    log_probs = scores.log_probs  # (prompts, samples, length)
    advantages, ref_log_probs, expert = part.advantages, part.ref_log_probs, part.expert
    if remax:
        policy_loss = -(advantages * log_probs.sum(-1)).mean()
    else:
        # Per-token PPO clip, summed over the sequence: at the first update the ratio is 1
        # (up to rounding) and the gradient equals REINFORCE with these advantages.
        ratio = torch.exp(log_probs - part.old_log_probs)
        adv = advantages[..., None]
        clipped = torch.clamp(ratio, 1 - config.clip_eps, 1 + config.clip_eps)
        policy_loss = -torch.minimum(ratio * adv, clipped * adv).sum(-1).mean()
    loss = policy_loss
    logged = {"entropy": float(scores.entropy.detach().mean())}
    if ref_log_probs is not None:
        # k3 estimator of KL(pi || pi_ref), per token: exp(d) - d - 1 with d = ref - pi.
        diff = ref_log_probs - log_probs
        kl = (torch.exp(diff) - diff - 1).sum(-1).mean()
        loss = loss + config.kl_coef * kl
        logged["kl"] = float(kl.detach())
    if expert is not None:
        expert_ce = -scores.table.gather(-1, expert[..., None]).mean()
        loss = loss + config.expert_coef * expert_ce
        logged["expert_loss"] = float(expert_ce.detach())
    logged["loss"] = loss
    return logged
