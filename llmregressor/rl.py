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
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ._checkpoint import PhaseCheckpoint
from ._distributed import DataParallel
from ._training import BestState, make_optimizer, minibatches
from .backbone_protocol import RowInputs
from .codecs import NumberCodec, ScientificCodec
from .decoding import NumberPolicy

logger = logging.getLogger(__name__)

__all__ = [
    "RLConfig",
    "grpo_advantages",
    "make_reward",
    "mean_credit",
    "remax_advantages",
    "run_rl",
]

# The paper's code caps the error of unbounded codecs so that one wild sample (a huge
# exponent) cannot dominate a batch's gradient.
SCIENTIFIC_ERROR_CAP = 50.0
GRPO_EPS = 1e-4

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RLConfig:
    """Settings of the RL phase.

    The estimator builds it from ``rl_algorithm``, ``rl_epochs``, ``rl_lr``,
    ``rl_batch_size``, ``n_rollouts``, ``rl_temperature``, ``kl_coef``, ``expert_coef``,
    ``clip_eps``, ``rl_updates_per_batch``, ``scale_rewards`` and ``reward_on`` resolved
    to ``"sample"`` or ``"mean"`` (the fields drop the ``rl_`` prefix). The defaults here
    are the method's plain settings (no expert term, a reward per draw), not the
    estimator's. ``max_grad_norm`` has no estimator parameter.
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

    errors = {
        "squared": np.square,
        "absolute": np.abs,
        "huber": lambda d: np.where(np.abs(d) <= 1.0, 0.5 * d**2, np.abs(d) - 0.5),
    }
    if reward not in errors:
        raise ValueError(
            f"reward must be 'squared', 'absolute', 'huber' or a callable, got {reward!r}"
        )
    error = errors[reward]
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


def run_rl(
    policy: NumberPolicy,
    row_inputs: RowInputs,
    y: np.ndarray,
    codec: NumberCodec,
    config: RLConfig,
    reward_fn: RewardFn,
    rng: np.random.Generator,
    validate: Callable[[], float] | None = None,
    verbose: int = 0,
    parallel: DataParallel | None = None,
    checkpoint: PhaseCheckpoint | None = None,
) -> list[dict]:
    """Improve the policy in place with ReMax or GRPO.

    Parameters
    ----------
    policy : NumberPolicy
        The SFT policy; it is also the KL reference.
    row_inputs : RowInputs
        Model inputs of the training rows, encoded as the batches reach them.
    y : ndarray of shape (n_rows,)
        Raw training targets.
    codec : NumberCodec
        Decodes rollouts; gives expert targets.
    config : RLConfig
        Algorithm and hyper-parameters.
    reward_fn : callable
        From :func:`make_reward`.
    rng : numpy.random.Generator
        Batch order and rollout sampling.
    validate : callable, optional
        Validation RMSE of the current policy. The SFT state is scored first; the best
        state (possibly the SFT one) is restored at the end.
    verbose : int, default=0
        Progress bar when > 0.
    parallel : DataParallel, optional
        This process's share of each batch of prompts (several processes,
        micro-batches); by default one process computes each batch in one pass.
    checkpoint : PhaseCheckpoint, optional
        Saves the training state after every epoch and resumes from it.

    Returns
    -------
    history : list of dict
        ``phase="rl_step"`` records (reward mean/std, zero-spread share, entropy, KL,
        expert loss, lr) and ``phase="rl"`` epoch records (``val_rmse``).
    """
    backbone = policy.backbone
    parallel = parallel or DataParallel()
    remax = config.algorithm == "remax"
    steps_per_epoch = -(-len(row_inputs) // config.batch_size)
    total_updates = steps_per_epoch * config.epochs * (1 if remax else config.updates_per_batch)
    optimizer, scheduler = make_optimizer(backbone, config.lr, total_updates)
    reference = backbone.adapter_state() if config.kl_coef > 0 else None
    true_tokens = codec.encode(y)
    best = BestState(backbone, patience=None)
    history: list[dict] = []
    first_epoch, last_epoch = 0, config.epochs
    resumed = None
    if checkpoint is not None:
        resumed = checkpoint.attach(backbone, optimizer, scheduler, best, rng)
    if resumed is not None:
        history, first_epoch = resumed.history, resumed.next_epoch
        last_epoch = first_epoch if resumed.finished else last_epoch
    elif validate is not None:
        sft_rmse = validate()
        best.update(sft_rmse, epoch=-1)
        history.append({"phase": "rl", "epoch": -1, "val_rmse": sft_rmse, "note": "SFT state"})
    # Logged by every update; a process without rows in a batch still joins the average.
    logged_keys = ["entropy"] + ["kl"] * (reference is not None)
    logged_keys += ["expert_loss"] * (config.expert_coef > 0)

    epochs = tqdm(
        range(first_epoch, last_epoch),
        desc=f"RL ({config.algorithm})",
        unit="epoch",
        disable=verbose <= 0,
    )
    for epoch in epochs:
        start = time.perf_counter()
        batches = minibatches(len(row_inputs), config.batch_size, rng)
        for rows, encoded in row_inputs.batches(batches):
            # Drawn for the whole batch on every process, then sliced: the samples do not
            # depend on how many processes or micro-batches share the batch.
            uniforms = rng.random((len(rows), config.n_rollouts, codec.length))
            parts = [
                _roll_out(
                    policy,
                    encoded.take(positions).items,
                    y[rows[positions]],
                    true_tokens[rows[positions]],
                    uniforms[positions],
                    positions,
                    weight,
                    codec,
                    config,
                    reward_fn,
                    reference,
                )
                for positions, weight in parallel.micro_batches(len(rows))
            ]
            for _ in range(1 if remax else config.updates_per_batch):
                optimizer.zero_grad(set_to_none=True)
                logged = np.zeros(len(logged_keys))
                for part in parts:
                    step = _policy_step(
                        policy,
                        part.batch,
                        part.sampled,
                        part.old_log_probs,
                        part.advantages,
                        part.ref_log_probs,
                        part.expert,
                        config,
                        remax,
                    )
                    (part.weight * step.pop("loss")).backward()
                    logged += part.weight * np.array([step[k] for k in logged_keys])
                parallel.sync_gradients(backbone.trainable_parameters())
                torch.nn.utils.clip_grad_norm_(
                    backbone.trainable_parameters(), config.max_grad_norm
                )
                optimizer.step()
                scheduler.step()
            rewards = [part.rewards for part in parts]
            rewards = _step_array(parts, rewards, (len(rows), config.n_rollouts), parallel)
            spread = rewards.max(axis=1) - rewards.min(axis=1)
            # With reward_on="mean" the objective is the reward of each prompt's mean draw,
            # which the per-draw rewards above do not show (they also count the spread).
            objective = {}
            if config.reward_on == "mean":
                mean_rewards = [part.mean_rewards for part in parts]
                mean_rewards = _step_array(parts, mean_rewards, (len(rows),), parallel)
                objective["reward_of_mean"] = float(mean_rewards.mean())
            history.append(
                {
                    "phase": "rl_step",
                    "epoch": epoch,
                    "reward_mean": float(rewards.mean()),
                    "reward_std": float(rewards.std()),
                    **objective,
                    "zero_spread_share": float(np.mean(spread == 0)),
                    **dict(zip(logged_keys, map(float, parallel.all_sum(logged)), strict=True)),
                    "lr": scheduler.get_last_lr()[0],
                }
            )
        record = {
            "phase": "rl",
            "epoch": epoch,
            "val_rmse": validate() if validate is not None else None,
            "time_s": time.perf_counter() - start,
        }
        history.append(record)
        epochs.set_postfix(val_rmse=record["val_rmse"])
        logger.info("RL epoch %d: %s", epoch, record)
        if record["val_rmse"] is not None:
            best.update(record["val_rmse"], epoch)
        if checkpoint is not None:
            checkpoint.save(epoch, history, finished=epoch + 1 == config.epochs)
    best.restore()
    if best.best_epoch == -1:
        history.append(
            {
                "phase": "rl",
                "epoch": None,
                "note": "no RL epoch beat SFT on validation; the SFT state is kept",
            }
        )
        logger.info("RL never beat the SFT state on validation; SFT state kept")
    return history


def _step_array(
    parts: Sequence[_RolloutPart],
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
class _RolloutPart:
    """One micro-batch of a step's rollouts, kept for every update on that batch."""

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
) -> _RolloutPart:
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
    return _RolloutPart(
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


def _policy_step(
    policy: NumberPolicy,
    batch: dict[str, torch.Tensor],
    sampled: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    ref_log_probs: torch.Tensor | None,
    expert: torch.Tensor | None,
    config: RLConfig,
    remax: bool,
) -> dict:
    """Loss of one update and its logged parts."""
    # Dropout off, as when the rollouts and the reference were scored: with it on, the
    # update would score another policy than the one that sampled (ratio != 1 at the first
    # update, a KL > 0 against itself).
    policy.backbone.train(False)
    scores = policy.score(batch, sampled, config.temperature)
    log_probs = scores.log_probs  # (prompts, samples, length)
    if remax:
        policy_loss = -(advantages * log_probs.sum(-1)).mean()
    else:
        # Per-token PPO clip, summed over the sequence: at the first update the ratio is 1
        # and the gradient equals REINFORCE with these advantages.
        ratio = torch.exp(log_probs - old_log_probs)
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
