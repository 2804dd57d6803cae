"""The public engine: callbacks, continuing a fit, divergence, sampling and aggregation."""

import copy
import inspect
import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from llmregressor import LLMRegressor
from llmregressor.backbone_protocol import BACKBONES, backbone_for
from llmregressor.backbones import LanguageModelSpec
from llmregressor.cli import main
from llmregressor.decoding import NumberPolicy
from llmregressor.engine import (
    CALIBRATION_MIN_ROWS,
    Callback,
    Sampler,
    TrainingDivergedError,
    aggregate,
    calibration_rows,
    distribution_mean,
    distribution_quantiles,
    sample_quantiles,
    validation_rows,
)
from llmregressor.mlp_decoder import MLPDecoderSpec
from llmregressor.params import PARAMETERS, RESUMABLE, rl_config
from llmregressor.rl import make_reward


def small(model_dir, **params):
    # The engine's mechanics without an anchor (test_anchor.py covers the anchored fit).
    defaults = dict(
        model=model_dir,
        anchor=None,
        sft_epochs=2,
        rl_algorithm="remax",
        rl_epochs=1,
        batch_size=8,
        rl_batch_size=8,
        n_samples=4,
        random_state=0,
        device="cpu",
        dtype="float32",
    )
    return LLMRegressor(**{**defaults, **params})


class Recorder(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, record):
        assert isinstance(trainer.policy, NumberPolicy)
        # A callback may decode with the epoch's policy, as a user scoring held-out rows.
        assert trainer.sampler.codec is trainer.codec
        self.seen.append((record["phase"], record["epoch"]))


def test_callbacks_see_every_epoch_and_change_nothing(houses, tiny_model_dir):
    X, y = houses(40)
    recorder = Recorder()
    observed = small(tiny_model_dir, callbacks=[recorder]).fit(X, y)
    plain = small(tiny_model_dir).fit(X, y)
    assert recorder.seen == [("sft", 0), ("sft", 1), ("rl", 0)]
    np.testing.assert_array_equal(observed.predict(X), plain.predict(X))


def test_callbacks_are_checked(tiny_model_dir, houses):
    X, y = houses(10)
    with pytest.raises(TypeError, match="Callback instances"):
        small(tiny_model_dir, callbacks=[print]).fit(X, y)


def test_trainer_continues_rl_from_a_fitted_sft_state(houses, tiny_model_dir):
    X, y = houses(40)
    sft = small(tiny_model_dir, rl_algorithm=None).fit(X, y)
    before = sft.predict(X)
    reg = copy.deepcopy(sft).set_params(rl_algorithm="grpo")
    trainer = reg.trainer(X, y)
    assert len(trainer.y_train) == len(y)  # no validation split below 1000 rows
    history = trainer.rl(
        rl_config(reg.get_params()), make_reward(reg.reward, reg.codec_), np.random.default_rng(1)
    )
    assert [r["phase"] for r in history][-1] == "rl"
    assert any(r["phase"] == "rl_step" for r in history)
    assert not np.array_equal(reg.predict(X), before)  # RL moved the policy
    np.testing.assert_array_equal(sft.predict(X), before)  # the SFT estimator is untouched


@pytest.mark.parametrize(
    ("params", "phase"),
    [
        (dict(sft_lr=1e30), "SFT"),
        (dict(lora_alpha=1e300), "SFT"),
        (dict(rl_lr=1e30, sft_epochs=1), "RL"),
    ],
)
def test_a_diverged_fit_stops_and_says_where(houses, tiny_model_dir, params, phase):
    X, y = houses(30)
    reg = small(tiny_model_dir, **params)
    with pytest.raises(TrainingDivergedError, match=rf"^{phase}.* diverged at epoch \d+, step"):
        reg.fit(X, y)
    with pytest.raises(NotFittedError):
        check_is_fitted(reg)


def test_a_model_with_non_finite_weights_does_not_predict(houses, tiny_model_dir):
    X, y = houses(30)
    reg = small(tiny_model_dir, rl_algorithm=None, sft_epochs=1).fit(X, y)
    backbone = reg.policy_.policy.backbone
    backbone.load_adapter_state(
        {k: torch.full_like(v, torch.nan) for k, v in backbone.adapter_state().items()}
    )
    with pytest.raises(ValueError, match="NaN or infinite"):
        pickle.loads(pickle.dumps(reg)).predict(X)


def test_means_and_quantiles_of_huge_draws_stay_finite():
    draws = np.array([[1.7e308, 1.6e308, 1.5e308, 1.7e308], [1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(aggregate(draws, "mean"), [1.625e308, 2.5])
    np.testing.assert_allclose(aggregate(draws, "median"), [1.65e308, 2.5])
    q = sample_quantiles(-draws, [0.0, 1.0])
    np.testing.assert_allclose(q, [[-1.7e308, -1.5e308], [-4.0, -1.0]])
    plain = np.random.default_rng(0).normal(size=(5, 16))
    np.testing.assert_array_equal(aggregate(plain, "mean"), plain.mean(axis=1))


def test_predictions_of_huge_targets_are_finite(houses, tiny_model_dir):
    X, y = houses(30)
    huge = y / np.abs(y).max() * 1.7e308  # each target finite, sums of a few are not
    reg = small(tiny_model_dir, rl_algorithm=None, sft_epochs=1).fit(X, huge)
    pred = reg.predict(X)
    assert np.isfinite(pred).all() and pred.max() <= huge.max()
    assert np.isfinite(reg.predict_interval(X, 0.9)).all()


def test_sampler_draws_stratified_or_independent_uniforms(houses, tiny_model_dir):
    X, y = houses(30)
    reg = small(tiny_model_dir, rl_algorithm=None, sft_epochs=1).fit(X, y)
    stratified = Sampler(reg.codec_, seed=0, batch_size=8).row_uniforms(7, 16)
    independent = Sampler(reg.codec_, seed=0, batch_size=8, stratified=False).row_uniforms(7, 16)
    assert stratified.shape == independent.shape == (16, reg.codec_.length)
    # Each of the 16 strata of every position holds exactly one stratified draw.
    strata = np.sort(np.floor(stratified * 16), axis=0)
    np.testing.assert_array_equal(strata, np.repeat(np.arange(16)[:, None], 3, axis=1))
    assert not np.array_equal(np.sort(np.floor(independent * 16), axis=0), strata)


def test_the_parameter_table_matches_the_signature():
    signature = list(inspect.signature(LLMRegressor).parameters)
    assert [param.name for param in PARAMETERS] == signature
    assert all(param.doc.strip() for param in PARAMETERS)
    assert RESUMABLE == {
        "checkpoint_dir",
        "resume",
        "verbose",
        "device",
        "micro_batch_size",
        "gradient_checkpointing",
        "attn_implementation",
        "callbacks",
    }
    # The class docstring's Parameters section is rendered from the table.
    for param in PARAMETERS:
        assert f"    {param.name} : {param.kind}, default=" in LLMRegressor.__doc__


def test_the_command_line_help_comes_from_the_parameter_table(capsys):
    assert main(["fit", "--help"]) == 0
    # argparse rewraps (and may break at hyphens): compare without white space.
    help_text = "".join(capsys.readouterr().out.split())
    for param in PARAMETERS:
        if param.name == "callbacks":
            assert "--callbacks" not in help_text  # objects, which text cannot give
        else:
            assert "".join(param.summary.split()) in help_text, param.name


def test_backbone_kinds_come_from_the_registry():
    assert set(BACKBONES) == {"lora", "mlp-decoder"}
    assert backbone_for("mlp-decoder") is MLPDecoderSpec
    assert backbone_for("smollm2-135m") is LanguageModelSpec
    assert backbone_for("/any/folder") is LanguageModelSpec


def test_reductions_of_no_rows_are_empty():
    assert aggregate(np.empty((0, 4)), "mean").shape == (0,)
    assert aggregate(np.empty((0, 4)), "median").shape == (0,)
    assert sample_quantiles(np.empty((0, 4)), [0.1, 0.9]).shape == (0, 2)
    assert distribution_quantiles(np.arange(3.0), np.empty((0, 3)), [0.5]).shape == (0, 1)


def test_distribution_quantiles_by_hand():
    values = np.array([3.0, 1.0, 2.0])
    probs = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]])
    q = distribution_quantiles(values, probs, [0.0, 0.25, 0.5, 0.51, 1.0])
    np.testing.assert_array_equal(q, [[1.0, 1.0, 2.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_allclose(distribution_mean(values, probs), [2.25, 2.0])


@pytest.mark.parametrize("backbone", ["lm", "mlp-decoder"])
def test_exact_predictions_are_the_limit_of_many_samples(houses, tiny_model_dir, backbone):
    X, y = houses(30)
    mlp = dict(model="mlp-decoder", mlp_hidden=(16,), d_model=16, decoder_ff=32)
    params = mlp if backbone == "mlp-decoder" else {}
    reg = small(tiny_model_dir, digits=2, rl_algorithm=None, sft_epochs=1, **params).fit(X, y)
    exact = reg.set_params(n_samples="exact").predict(X)
    np.testing.assert_array_equal(exact, reg.predict(X))  # deterministic
    many = reg.sample(X, 4000)
    spread = many.std(axis=1) / np.sqrt(4000)
    assert np.all(np.abs(exact - many.mean(axis=1)) < 5 * spread + 1e-9)
    bounds = reg.predict_interval(X, 0.8, calibrated=False)
    empirical = sample_quantiles(many, [0.1, 0.9])
    step = (y.max() - y.min()) / 100  # one codec step: quantiles of draws land within it
    assert np.abs(bounds - empirical).max() <= 2 * step
    median = reg.set_params(predict_mode="median").predict(X)
    np.testing.assert_array_equal(median, reg.predict_quantiles(X, [0.5])[:, 0])
    with pytest.raises(ValueError, match="pass an int"):
        reg.sample(X)


def test_exact_needs_a_small_codec(houses, tiny_model_dir):
    X, y = houses(10)
    with pytest.raises(ValueError, match="writes 40000"):
        small(tiny_model_dir, number_format="scientific", n_samples="exact").fit(X, y)


@pytest.mark.parametrize(
    ("n_rows", "early_stopping", "fraction", "n_cal", "are_val"),
    [
        (256, "auto", 0.1, 25, False),  # no validation rows: a share of its own
        (200, "auto", 0.1, 20, False),
        (199, "auto", 0.1, 0, False),  # 19 rows are too few: no calibration
        (100, "auto", 0.2, 20, False),
        (1000, "auto", 0.1, 100, True),  # early stopping's validation rows calibrate
        (150, True, 0.2, 30, True),
        (150, True, 0.1, 0, True),  # 15 validation rows are too few, and no more are taken
    ],
)
def test_calibration_rows(n_rows, early_stopping, fraction, n_cal, are_val):
    assert CALIBRATION_MIN_ROWS == 20
    is_val = validation_rows(n_rows, early_stopping, fraction, seed=3)
    is_cal = calibration_rows(is_val, fraction, seed=3)
    assert is_cal.dtype == bool and is_cal.shape == (n_rows,) and is_cal.sum() == n_cal
    if n_cal and are_val:
        np.testing.assert_array_equal(is_cal, is_val)
    elif n_cal:
        # The rows early stopping would have held out, drawn from the same stream.
        np.testing.assert_array_equal(is_cal, validation_rows(n_rows, True, fraction, seed=3))
        assert not np.array_equal(is_cal, calibration_rows(is_val, fraction, seed=4))
