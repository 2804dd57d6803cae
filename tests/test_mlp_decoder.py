"""The ``mlp-decoder`` backbone: preprocessing, decoding engine, estimator paths, RL."""

import pickle

import numpy as np
import pytest
import torch

from llmregressor import LLMRegressor
from llmregressor.backbone_protocol import Backbone
from llmregressor.codecs import NormalizedCodec, ScientificCodec
from llmregressor.decoding import NumberPolicy
from llmregressor.features import make_feature_preprocessor
from llmregressor.mlp_decoder import MLPDecoderConfig, MLPDecoderSpec

TINY = dict(mlp_hidden=(32,), d_model=16, decoder_layers=1, decoder_heads=2, decoder_ff=32)


def small(**params):
    defaults = dict(
        model="mlp-decoder", **TINY, anchor=None, sft_epochs=3, n_samples=4, random_state=0
    )
    return LLMRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def data(houses):
    return houses(80)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return small(rl_algorithm="remax", rl_epochs=1).fit(X, y)


# ----------------------------------------------------------------- preprocessing


def test_preprocessing_one_hot_indicator_and_standardization():
    X = np.array(
        [[1.0, "a"], [np.nan, "b"], [3.0, None], [5.0, "a"]],
        dtype=object,
    )
    pre = make_feature_preprocessor(X).fit(X)
    out = pre.transform(X)
    # size: imputed with the mean 3, standardized by its std sqrt(2); then the indicator.
    np.testing.assert_allclose(out[:, 0], np.array([-2, 0, 0, 2]) / np.sqrt(2))
    np.testing.assert_allclose(out[:, 1], np.array([-1, 3, -1, -1]) / np.sqrt(3))
    # One-hot of "<missing>", "a", "b"; an unseen category encodes as all zeros.
    np.testing.assert_array_equal(out[:, 2:], [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
    unseen = pre.transform(np.array([[2.0, "zzz"]], dtype=object))
    np.testing.assert_array_equal(unseen[0, 2:], [0, 0, 0])
    # Blank strings are missing too, as in prompts: the same columns, the same values.
    blank = np.array([[1.0, "a"], ["", "b"], [3.0, "  "], [5.0, "a"]], dtype=object)
    np.testing.assert_array_equal(make_feature_preprocessor(blank).fit_transform(blank), out)


# ----------------------------------------------------------------- decoding engine


@pytest.fixture(params=["normalized", "scientific"])
def policy(request):
    codec = NormalizedCodec(4, 3) if request.param == "normalized" else ScientificCodec(1, 2)
    X = np.random.default_rng(0).normal(size=(6, 3))
    spec = MLPDecoderSpec(
        MLPDecoderConfig(hidden=(8,), d_model=8, layers=2, heads=2, feedforward=16),
        make_feature_preprocessor(X).fit(X),
        3,
        len(codec.symbols),
        codec.length,
        "float32",
    )
    torch.manual_seed(0)
    backbone = spec.build(torch.device("cpu"))
    return NumberPolicy(backbone, codec.allowed_mask()), X


def test_backbone_implements_the_protocol(policy):
    assert isinstance(policy[0].backbone, Backbone)


def test_decoded_log_probs_match_teacher_forcing(policy):
    policy, X = policy
    batch = policy.backbone.collate(policy.backbone.encode_rows(X).items)
    uniforms = torch.rand((6, 5, policy.length), generator=torch.Generator().manual_seed(1))
    rollout = policy.decode(batch, uniforms.double(), greedy_columns=1)
    assert policy.allowed[torch.arange(policy.length), rollout.tokens].all()
    policy.backbone.train(False)
    scores = policy.score(batch, rollout.tokens)
    torch.testing.assert_close(scores.log_probs, rollout.log_probs, atol=1e-5, rtol=1e-5)


def test_weight_state_round_trip_is_the_whole_network(policy):
    backbone = policy[0].backbone
    state = backbone.adapter_state()
    assert set(state) == set(backbone.network.state_dict())
    with torch.no_grad():
        for p in backbone.trainable_parameters():
            p.add_(1.0)
    backbone.load_adapter_state(state)
    for key, value in backbone.network.state_dict().items():
        torch.testing.assert_close(value, state[key])


# ----------------------------------------------------------------- estimator


def test_fit_predict_on_mixed_dataframe(fitted, data):
    X, y = data
    pred = fitted.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all()
    assert pred.min() >= y.min() - 1e-9 and pred.max() <= y.max() + 1e-9
    assert hasattr(fitted, "preprocessor_") and not hasattr(fitted, "serializer_")
    phases = [r["phase"] for r in fitted.history_]
    assert phases == ["sft"] * 3 + ["rl_step"] * 5 + ["rl"]  # 80 rows, RL batches of 16


def test_sampled_predictions_ignore_row_order_and_batch_composition(fitted, data):
    X, _ = data
    draws = fitted.sample(X, n_samples=8)
    np.testing.assert_array_equal(draws, fitted.sample(X, n_samples=8))
    order = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_array_equal(draws[order], fitted.sample(X.iloc[order], n_samples=8))
    np.testing.assert_array_equal(draws[5:6], fitted.sample(X.iloc[5:6], n_samples=8))
    rebatched = pickle.loads(pickle.dumps(fitted)).set_params(batch_size=7)
    np.testing.assert_array_equal(draws, rebatched.sample(X, n_samples=8))


def test_same_seed_same_fit(fitted, data):
    X, y = data
    again = small(rl_algorithm="remax", rl_epochs=1).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))


def test_pickle_round_trip_predicts_identically(fitted, data):
    X, _ = data
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(
        restored.predict_quantiles(X[:5]), fitted.predict_quantiles(X[:5])
    )


@pytest.mark.parametrize("loss", ["ntl-mse", "ntl-was", "dist"])
@pytest.mark.parametrize("backbone", ["lm", "mlp"])
def test_sft_loss_trains_both_backbones(tiny_model_dir, backbone, loss):
    X = np.random.default_rng(0).normal(size=(24, 2))
    y = X[:, 0] * 3
    params = dict(sft_loss=loss, sft_epochs=1, number_format="scientific", n_samples=2)
    reg = (
        small(**params)
        if backbone == "mlp"
        else LLMRegressor(model=tiny_model_dir, random_state=0, **params)
    ).fit(X, y)
    record = reg.history_[0]
    assert record["train_term"] > 0
    weight = {"ntl-mse": 0.5, "ntl-was": 0.5, "dist": 0.1}[loss]
    assert record["train_loss"] == pytest.approx(record["train_ce"] + weight * record["train_term"])
    assert np.isfinite(reg.predict(X)).all()


@pytest.mark.parametrize(
    ("param", "value", "error", "match"),
    [
        ("mlp_hidden", (32, 0), TypeError, "mlp_hidden"),
        ("mlp_hidden", 32, TypeError, "mlp_hidden"),
        ("decoder_heads", 3, ValueError, "decoder_heads must divide d_model"),
        ("dropout", 1.0, ValueError, "dropout"),
        ("sft_loss", "mse", ValueError, "sft_loss"),
        ("sft_loss_weight", -1.0, ValueError, "sft_loss_weight"),
    ],
)
def test_bad_parameters(param, value, error, match):
    reg = small(**{param: value})
    with pytest.raises(error, match=match):
        reg.fit(np.arange(20.0).reshape(10, 2), np.arange(10.0))
    assert not [k for k in vars(reg) if k.endswith("_")]


# ----------------------------------------------------------------- RL


def synthetic_task(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, X[:, 0] + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize(
    "params",
    [
        {"rl_algorithm": "remax", "reward_on": "sample", "expert_coef": 0.0},
        {"rl_algorithm": "grpo", "reward_on": "sample", "expert_coef": 0.0},
        {"rl_algorithm": "grpo", "rl_updates_per_batch": 2, "kl_coef": 0.01},
        {"rl_algorithm": "remax"},
    ],
)
def test_rl_improves_an_under_trained_mlp_decoder(params):
    X, y = synthetic_task(128, 0)
    X_val, y_val = synthetic_task(128, 1)
    # Two SFT epochs leave the model far from converged; RL then has room to help.
    common = dict(sft_epochs=2, digits=2, n_samples=8, rl_epochs=10, rl_lr=1e-2, n_rollouts=4)
    before = small(**common, rl_algorithm=None).fit(X, y)
    after = small(**common, **params).fit(X, y)
    mse_before = np.mean((before.predict(X_val) - y_val) ** 2)
    mse_after = np.mean((after.predict(X_val) - y_val) ** 2)
    assert mse_after < 0.7 * mse_before, (mse_before, mse_after)
    steps = [r for r in after.history_ if r["phase"] == "rl_step"]
    assert ("kl" in steps[0]) == ("kl_coef" in params)
