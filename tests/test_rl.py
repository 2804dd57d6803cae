import itertools

import numpy as np
import pytest
import torch
from peft import LoraConfig

from llmregressor import LLMRegressor
from llmregressor.backbones import LanguageModelBackbone, load_pretrained
from llmregressor.codecs import NormalizedCodec, ScientificCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.rl import (
    RLConfig,
    RolloutPart,
    grpo_advantages,
    make_reward,
    mean_credit,
    policy_loss,
    remax_advantages,
)


def test_remax_advantages_by_hand():
    rewards = np.array([[-1.0, -4.0, 0.0], [-2.0, -2.0, -2.0]])
    greedy = np.array([-1.0, -3.0])
    expected = np.array([[0.0, -3.0, 1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(remax_advantages(rewards, greedy), expected)


def test_grpo_advantages_by_hand():
    rewards = np.array([[1.0, 3.0], [5.0, 5.0]])
    np.testing.assert_allclose(grpo_advantages(rewards), [[-1 / 1.0001, 1 / 1.0001], [0, 0]])
    np.testing.assert_array_equal(grpo_advantages(rewards, scale=False), [[-1, 1], [0, 0]])


def test_builtin_rewards_in_standardized_space():
    codec = NormalizedCodec().fit(np.array([0.0, 10.0]))  # mean 5, std 5
    y_pred, y_true = np.array([[5.0, 15.0]]), np.array([[10.0]])
    np.testing.assert_allclose(make_reward("squared", codec)(y_pred, y_true), [[-1.0, -1.0]])
    np.testing.assert_allclose(make_reward("absolute", codec)(y_pred, y_true), [[-1.0, -1.0]])
    np.testing.assert_allclose(make_reward("huber", codec)(y_pred, y_true), [[-0.5, -0.5]])
    sci = ScientificCodec().fit(np.array([0.0, 10.0]))
    assert make_reward("squared", sci)(np.array([[1e6]]), np.array([[0.0]]))[0, 0] == -50.0


def test_callable_reward_is_checked():
    codec = NormalizedCodec().fit(np.array([0.0, 1.0]))
    reward = make_reward(lambda p, t: -np.abs(p - t), codec)
    np.testing.assert_array_equal(reward(np.array([[1.0, 3.0]]), np.array([[2.0]])), [[-1, -1]])
    with pytest.raises(ValueError, match="finite rewards of shape"):
        make_reward(lambda p, t: np.zeros(3), codec)(np.zeros((1, 2)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="reward must be"):
        make_reward("cubic", codec)


def squared_error_reward(y_pred, y_true):
    return -((y_pred - y_true) ** 2)


def test_mean_credit_by_hand():
    draws = np.array([[1.0, 3.0, 2.0], [0.1, 0.1, 0.1]])
    y_true = np.array([[2.0], [5.0]])
    # Row 0: the mean (2) is exact; without draw 1 it is 2.5 (reward -0.25), without
    # draw 3 it is 1.5, without draw 2 it stays 2. Row 1: all draws tie.
    expected = np.array([[3 * 0.25, 3 * 0.25, 0.0], [0.0, 0.0, 0.0]])
    credits, mean_rewards = mean_credit(draws, y_true, squared_error_reward)
    np.testing.assert_allclose(credits, expected)
    np.testing.assert_allclose(mean_rewards, [0.0, -(4.9**2)])
    with pytest.raises(ValueError, match="S >= 2"):
        mean_credit(draws[:, :1], y_true, squared_error_reward)


def test_mean_credit_is_an_unbiased_policy_gradient_of_the_mean_reward():
    """Exact expectations over every outcome of 3 draws from a 3-value categorical."""
    values = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    logits = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64, requires_grad=True)
    log_p = torch.log_softmax(logits, 0)
    y_true, n_draws = 1.2, 3
    outcomes = np.array(list(itertools.product(range(3), repeat=n_draws)))
    prob = log_p[outcomes].sum(1).exp()
    draws = values.numpy()[outcomes]
    mean_reward = torch.as_tensor(-((draws.mean(1) - y_true) ** 2))
    (exact,) = torch.autograd.grad((prob * mean_reward).sum(), logits, retain_graph=True)
    credits, _ = mean_credit(draws, np.full((len(draws), 1), y_true), squared_error_reward)
    credits = torch.as_tensor(credits)
    surrogate = (prob.detach() * (credits * log_p[outcomes]).sum(1)).sum()
    (estimated,) = torch.autograd.grad(surrogate, logits)
    torch.testing.assert_close(estimated, n_draws * exact)
    assert exact.abs().max() > 1e-3  # the check is not vacuous


# --------------------------------------------------------------- expert targets


def brute_force_expert(codec, tokens, true_tokens):
    """Closest grammatical continuation of each sampled prefix, by enumeration."""
    mask = codec.allowed_mask()
    codes = np.array(list(itertools.product(*[np.flatnonzero(row) for row in mask])))
    values = codec._decode_standardized(codes)
    target = codec._decode_standardized(true_tokens[None])[0]
    out = []
    for k in range(codec.length):
        candidates = np.flatnonzero(mask[k])
        best = []
        for s in candidates:
            prefix = np.append(tokens[:k], s)
            match = (codes[:, : k + 1] == prefix).all(axis=1)
            best.append(np.abs(values[match] - target).min())
        best = np.array(best)
        optimal = candidates[best <= best.min() + 1e-9 * max(1.0, abs(target))]
        out.append(true_tokens[k] if true_tokens[k] in optimal else optimal.min())
    return np.array(out)


@pytest.mark.parametrize(
    "codec", [NormalizedCodec(3, 4), NormalizedCodec(10, 2), ScientificCodec(1, 2)]
)
def test_expert_targets_match_brute_force(codec):
    rng = np.random.default_rng(0)
    codec.fit(rng.normal(size=50) * 3)
    mask = codec.allowed_mask()
    n = 60
    sampled = np.stack([rng.choice(np.flatnonzero(row), n) for row in mask], axis=1)
    y = np.concatenate([rng.normal(size=n - 4) * 3, [0.0, 1e-9, -250.0, 400.0]])
    true_tokens = codec.encode(y)
    # Some sampled sequences share a prefix with the truth, where the rule must follow it.
    sampled[: n // 3, :2] = true_tokens[: n // 3, :2]
    got = codec.expert_targets(sampled, true_tokens)
    for i in range(n):
        np.testing.assert_array_equal(got[i], brute_force_expert(codec, sampled[i], true_tokens[i]))


def test_normalized_expert_is_the_paper_rule():
    codec = NormalizedCodec(10, 3).fit(np.array([0.0, 999.0]))
    true = codec.encode([500.0])  # "500"
    sampled = np.array([[4, 7, 7], [6, 0, 0], [5, 0, 3], [5, 1, 0]])
    got = codec.expert_targets(sampled, np.repeat(true, 4, axis=0))
    np.testing.assert_array_equal(got, [[5, 9, 9], [5, 0, 0], [5, 0, 0], [5, 0, 0]])


# --------------------------------------------------------------- policy gradient


def make_policy(model_dir, lora_dropout=0.0):
    torch.manual_seed(0)
    codec = NormalizedCodec(4, 2)
    lm, tok = load_pretrained(model_dir)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=lora_dropout,
        target_modules="all-linear",
        init_lora_weights=False,
    )
    return NumberPolicy(
        LanguageModelBackbone(lm, tok, codec.symbols, config, torch.device("cpu")),
        codec.allowed_mask(),
    )


@pytest.fixture
def policy(tiny_model_dir):
    return make_policy(tiny_model_dir)


def policy_step(policy, batch, rollout, advantages, config, reference=None, expert=None):
    """The loss of one update on a rollout, as the RL loop computes it."""
    part = RolloutPart(
        positions=np.arange(len(advantages)),
        weight=1.0,
        batch=batch,
        sampled=rollout.tokens,
        old_log_probs=rollout.log_probs,
        advantages=advantages,
        rewards=np.zeros(tuple(advantages.shape)),
        mean_rewards=None,
        ref_log_probs=reference,
        expert=expert,
    )
    return policy_loss(policy, part, config)


@pytest.mark.parametrize("algorithm", ["remax", "grpo"])
def test_zero_advantage_gives_zero_policy_gradient(policy, algorithm):
    backbone = policy.backbone
    batch = backbone.collate(backbone.tokenize(["a is 1\nThe target is ", "a is 2\n"]))
    rollout = policy.decode(batch, torch.rand(2, 3, 2).double())
    config = RLConfig(algorithm, 1, 1e-3, 2, 3, updates_per_batch=2)
    step = policy_step(policy, batch, rollout, torch.zeros(2, 3), config)
    step["loss"].backward()
    grads = [p.grad for p in backbone.trainable_parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    # ... while a non-zero advantage does move the adapters.
    step = policy_step(policy, batch, rollout, torch.ones(2, 3), config)
    step["loss"].backward()
    assert any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.trainable_parameters()
    )


def test_kl_is_zero_against_itself_and_expert_loss_is_logged(policy):
    backbone = policy.backbone
    batch = backbone.collate(backbone.tokenize(["a is 1\nThe target is "]))
    rollout = policy.decode(batch, torch.rand(1, 4, 2).double())
    with torch.no_grad():
        ref = policy.score(batch, rollout.tokens).log_probs
    config = RLConfig("grpo", 1, 1e-3, 1, 4, kl_coef=0.1, expert_coef=0.05)
    expert = torch.zeros_like(rollout.tokens)
    step = policy_step(policy, batch, rollout, torch.zeros(1, 4), config, ref, expert)
    assert step["kl"] == pytest.approx(0.0, abs=1e-6)
    assert step["expert_loss"] > 0


def test_updates_score_the_policy_that_sampled_even_with_dropout(tiny_model_dir):
    policy = make_policy(tiny_model_dir, lora_dropout=0.5)
    batch = policy.backbone.collate(policy.backbone.tokenize(["a is 1\nThe target is "]))
    rollout = policy.decode(batch, torch.rand(1, 4, 2).double())
    with torch.no_grad():
        ref = policy.score(batch, rollout.tokens).log_probs
    config = RLConfig("grpo", 1, 1e-3, 1, 4, kl_coef=0.1, updates_per_batch=2)
    step = policy_step(policy, batch, rollout, torch.ones(1, 4), config, ref)
    # Ratio 1 on each of the 2 tokens and KL 0: loss = -(1 + 1) exactly.
    assert step["kl"] == pytest.approx(0.0, abs=1e-6)
    assert step["loss"].item() == pytest.approx(-2.0, abs=1e-5)


# --------------------------------------------------------------- behaviour


def skewed_task(n, seed):
    """Targets mostly near the top of their range: an untrained policy is badly biased."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 5, size=(n, 1)).astype(float)
    y = 8.0 + rng.random(n)
    y[:2] = [0.0, 9.0]  # fix the codec's range to [0, 9]
    return X, y


@pytest.mark.parametrize(
    "params",
    [
        # The paper's per-draw reward...
        {"rl_algorithm": "remax", "reward_on": "sample", "expert_coef": 0.0},
        {"rl_algorithm": "grpo", "reward_on": "sample", "expert_coef": 0.0},
        {
            "rl_algorithm": "grpo",
            "reward_on": "sample",
            "rl_updates_per_batch": 2,
            "kl_coef": 0.01,
        },
        {"rl_algorithm": "remax", "reward_on": "sample", "number_format": "scientific"},
        # ...and the default, which rewards the mean with predict_mode="mean".
        {"rl_algorithm": "remax", "expert_coef": 0.0},
        {"rl_algorithm": "grpo", "reward_on": "mean", "expert_coef": 0.0},
        {"rl_algorithm": "remax", "number_format": "scientific"},
    ],
)
def test_rl_reduces_validation_error_of_an_untrained_policy(tiny_model_dir, params):
    X, y = skewed_task(64, 0)
    X_val, y_val = skewed_task(64, 1)
    common = dict(
        model=tiny_model_dir,
        sft_epochs=0,
        digits=1,
        n_samples=8,
        rl_epochs=6,
        rl_lr=3e-2,
        rl_batch_size=16,
        n_rollouts=4,
        random_state=0,
        validation_fraction=0.0,
    )
    common.update({k: v for k, v in params.items() if k == "number_format"})
    rl_params = {k: v for k, v in params.items() if k != "number_format"}
    before = LLMRegressor(**common, anchor=None, rl_algorithm=None).fit(X, y)
    after = LLMRegressor(**common, anchor=None, **rl_params).fit(X, y)
    mse_before = np.mean((before.predict(X_val) - y_val) ** 2)
    mse_after = np.mean((after.predict(X_val) - y_val) ** 2)
    assert mse_after < 0.5 * mse_before, (mse_before, mse_after)
    steps = [r for r in after.history_ if r["phase"] == "rl_step"]
    assert len(steps) == 6 * 4
    expected = {"reward_mean", "reward_std", "zero_spread_share", "entropy", "lr"}
    assert expected <= set(steps[0])
    assert ("kl" in steps[0]) == ("kl_coef" in params)
    assert ("expert_loss" in steps[0]) == (after.expert_coef > 0)
    assert ("reward_of_mean" in steps[0]) == (params.get("reward_on") != "sample")


def test_rl_none_is_exactly_sft_only(tiny_model_dir):
    X, y = skewed_task(40, 0)
    common = dict(model=tiny_model_dir, sft_epochs=2, n_samples=4, random_state=0)
    sft_only = LLMRegressor(**common, anchor=None, rl_algorithm=None).fit(X, y)
    no_rl_epochs = LLMRegressor(**common, anchor=None, rl_algorithm="remax", rl_epochs=0).fit(X, y)
    np.testing.assert_array_equal(sft_only.predict(X), no_rl_epochs.predict(X))
    assert {r["phase"] for r in sft_only.history_} == {"sft"}


def test_rl_keeps_sft_state_when_rl_does_not_help(tiny_model_dir):
    X, y = skewed_task(60, 0)
    # A negative-of-error reward flipped in sign drives the policy away from the truth.
    reg = LLMRegressor(
        anchor=None,
        model=tiny_model_dir,
        sft_epochs=3,
        sft_lr=3e-2,
        rl_algorithm="remax",
        rl_epochs=2,
        rl_lr=5e-2,
        reward=lambda p, t: (p - t) ** 2,
        n_samples=4,
        random_state=0,
        early_stopping=True,
        validation_fraction=0.3,
    ).fit(X, y)
    assert reg.history_[-1]["note"].startswith("no RL epoch beat SFT")
    rl_scores = [r["val_rmse"] for r in reg.history_ if r["phase"] == "rl" and "val_rmse" in r]
    assert rl_scores[0] < min(rl_scores[1:])  # the kept SFT state scored best


def test_mean_reward_needs_two_rollouts(tiny_model_dir):
    reg = LLMRegressor(model=tiny_model_dir, rl_algorithm="remax", reward_on="mean", n_rollouts=1)
    with pytest.raises(ValueError, match="n_rollouts must be >= 2"):
        reg.fit(*skewed_task(10, 0))


@pytest.mark.parametrize(
    "predict_mode, reward_on, algorithm, shapes",
    [
        # "auto" follows predict_mode: the mean's credit scores means of all 3 draws
        # (k=1) and leave-one-out means (k=3), with no greedy decode...
        ("mean", "auto", "remax", {(4, 3), (4, 1)}),
        # ...while single draws are scored with ReMax's greedy decode in column 0.
        ("greedy", "auto", "remax", {(4, 4)}),
        ("mean", "sample", "remax", {(4, 4)}),
        ("mean", "auto", "grpo", {(4, 3), (4, 1)}),
        ("median", "auto", "grpo", {(4, 3)}),
    ],
)
def test_reward_on_decides_what_the_reward_scores(
    tiny_model_dir, predict_mode, reward_on, algorithm, shapes
):
    X, y = skewed_task(8, 0)
    seen = set()

    def reward(y_pred, y_true):
        seen.add(y_pred.shape)
        return -((y_pred - y_true) ** 2)

    LLMRegressor(
        anchor=None,
        model=tiny_model_dir,
        sft_epochs=0,
        rl_algorithm=algorithm,
        rl_epochs=1,
        rl_batch_size=4,
        n_rollouts=3,
        reward=reward,
        reward_on=reward_on,
        predict_mode=predict_mode,
        n_samples=2,
        random_state=0,
    ).fit(X, y)
    assert seen == shapes


def test_one_rollout_is_fine_when_single_draws_are_rewarded(tiny_model_dir):
    X, y = skewed_task(8, 0)
    reg = LLMRegressor(
        anchor=None,
        model=tiny_model_dir,
        sft_epochs=0,
        rl_algorithm="remax",
        rl_epochs=1,
        n_rollouts=1,
        predict_mode="greedy",
    ).fit(X, y)
    assert any(r["phase"] == "rl_step" for r in reg.history_)


def test_rl_config_rejects_unresolved_reward_on():
    with pytest.raises(ValueError, match="reward_on"):
        RLConfig("remax", epochs=1, lr=1e-3, batch_size=4, n_rollouts=2, reward_on="auto")
