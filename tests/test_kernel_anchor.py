"""The Gaussian-process anchor and its blend with the additive ridge (anchor="additive_gp")."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.utils.estimator_checks import parametrize_with_checks

from llmregressor import LLMRegressor
from llmregressor.anchor import make_anchor
from llmregressor.features import TEXT_CARDINALITY
from llmregressor.kernel_anchor import (
    GaussianProcessAnchor,
    KernelBlendAnchor,
    _default_kernel,
)


@parametrize_with_checks(
    [
        GaussianProcessAnchor(),
        KernelBlendAnchor(),
        KernelBlendAnchor(share_rule="least_error", fold_kernels="refit"),
    ]
)
def test_kernel_anchors_are_scikit_learn_regressors(estimator, check):
    check(estimator)


def mixed_table(n_rows, seed=0):
    """A number with a missing cell, a 3-level category and a free-text column."""
    rng = np.random.default_rng(seed)
    words = [f"note {i} about word{i % 7}" for i in range(n_rows)]
    X = pd.DataFrame(
        {
            "size": rng.normal(size=n_rows),
            "color": rng.choice(["red", "blue", "green"], n_rows),
            "note": words,
        }
    )
    X.loc[3, "size"] = np.nan
    y = 2.0 * X["size"].fillna(0) + (X["color"] == "red") + rng.normal(0, 0.1, n_rows)
    return X, y.to_numpy()


def interaction_table(n_rows, seed=0):
    """y = a * b: no additive model carries it."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.uniform(-2, 2, n_rows), "b": rng.uniform(-2, 2, n_rows)})
    return X, (X["a"] * X["b"]).to_numpy() + rng.normal(0, 0.05, n_rows)


def test_the_process_reads_numbers_flags_and_categories_but_not_free_text():
    X, y = mixed_table(3 * TEXT_CARDINALITY)
    gp = GaussianProcessAnchor().fit(X, y)
    assert gp.numeric_columns_.tolist() == [0]
    assert gp.flagged_columns_.tolist() == [0]
    assert gp.categorical_columns_.tolist() == [1]
    assert gp.categories_ == [["blue", "green", "red"]]
    # The value, its missing-flag and three one-hot columns; the notes are not read.
    assert gp.train_features_.shape == (len(y), 5)
    assert gp.length_scales_.shape == (5,)


def test_the_process_predicts_the_posterior_mean_of_scikit_learns_process():
    X, y = mixed_table(60)
    gp = GaussianProcessAnchor().fit(X, y)
    reference = GaussianProcessRegressor(gp.fitted_kernel, optimizer=None)
    reference.fit(gp.train_features_, (y - gp.y_mean_) / gp.y_scale_)
    new, _ = mixed_table(20, seed=1)
    new.loc[0, "color"] = "purple"  # unseen: encodes as zeros
    expected = gp.y_mean_ + gp.y_scale_ * reference.predict(gp._features(new.to_numpy(object)))
    np.testing.assert_allclose(gp.predict(new), expected, rtol=1e-10, atol=1e-10)
    # A missing cell reads as the mean with the flag up.
    assert np.isfinite(gp.predict(new.assign(size=np.nan))).all()


def test_out_of_fold_predictions_refit_the_fixed_kernel_without_each_fold():
    X, y = mixed_table(60)
    gp = GaussianProcessAnchor().fit(X, y)
    folds = KFold(5, shuffle=True, random_state=0)
    predictions = gp.out_of_fold_predictions(y, folds)
    train, test = next(folds.split(X))
    reference = GaussianProcessRegressor(gp.fitted_kernel, optimizer=None)
    reference.fit(gp.train_features_[train], (y[train] - gp.y_mean_) / gp.y_scale_)
    expected = gp.y_mean_ + gp.y_scale_ * reference.predict(gp.train_features_[test])
    np.testing.assert_allclose(predictions[test], expected, rtol=1e-10)
    # Out of fold, a row's own target is unseen: the fit on every row is closer to it.
    assert np.mean((predictions - y) ** 2) > np.mean((gp.predict(X) - y) ** 2)


def test_out_of_fold_predictions_can_fit_each_folds_own_kernel():
    X, y = mixed_table(60)
    gp = GaussianProcessAnchor().fit(X, y)
    folds = KFold(5, shuffle=True, random_state=0)
    predictions = gp.out_of_fold_predictions(y, folds, refit_kernel=True)
    train, test = next(folds.split(X))
    reference = GaussianProcessRegressor(_default_kernel(5), random_state=0)
    reference.fit(gp.train_features_[train], (y[train] - gp.y_mean_) / gp.y_scale_)
    expected = gp.y_mean_ + gp.y_scale_ * reference.predict(gp.train_features_[test])
    np.testing.assert_allclose(predictions[test], expected, rtol=1e-8)
    # The held-out rows no longer shape the kernel that predicts them.
    fixed = gp.out_of_fold_predictions(y, folds)
    assert not np.allclose(predictions, fixed)


def test_the_one_se_share_is_the_smallest_close_to_the_least_error():
    interaction, product = interaction_table(120)
    least = KernelBlendAnchor(share_rule="least_error").fit(interaction, product)
    cautious = KernelBlendAnchor(share_rule="one_se").fit(interaction, product)
    np.testing.assert_array_equal(cautious.cv_errors_, least.cv_errors_)
    # A clear win of the process keeps a share; never more than the least-error one.
    assert 0 < cautious.gp_weight_ <= least.gp_weight_
    # On noisy rows with a faint interaction the least-error share is often luck: the
    # one-SE share is never larger, and smaller on most of these tables.
    shares = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
        y = 2 * X["a"] + 0.3 * X["a"] * X["b"] + rng.normal(0, 1, 60)
        shares.append(
            [
                KernelBlendAnchor(share_rule=rule).fit(X, y).gp_weight_
                for rule in ("least_error", "one_se")
            ]
        )
    least_shares, cautious_shares = np.array(shares).T
    assert (cautious_shares <= least_shares).all()
    assert (cautious_shares < least_shares).sum() >= 4
    # Shares given in any order are chosen among as if ascending.
    shuffled = KernelBlendAnchor(gp_weights=(1, 0.5, 0, 0.75, 0.25), share_rule="one_se")
    assert shuffled.fit(interaction, product).gp_weight_ == cautious.gp_weight_


@pytest.mark.parametrize(
    "option, match",
    [
        ({"share_rule": "argmin"}, "share_rule"),
        ({"fold_kernels": "fresh"}, "fold_kernels"),
        ({"cv_folds": 1}, "cv_folds"),
        ({"cv_folds": 5.0}, "cv_folds"),
        ({"cv_repeats": 0}, "cv_repeats"),
        ({"cv_repeats": True}, "cv_repeats"),
    ],
)
def test_the_blend_refuses_unknown_rules(option, match):
    X, y = interaction_table(20)
    with pytest.raises(ValueError, match=match):
        KernelBlendAnchor(**option).fit(X, y)


def test_the_blend_weighs_the_process_by_cross_validation():
    X, y = interaction_table(120)
    blend = KernelBlendAnchor(share_rule="least_error").fit(X, y)
    assert blend.cv_errors_.shape == (5,)
    assert blend.gp_weight_ == pytest.approx((0, 0.25, 0.5, 0.75, 1)[blend.cv_errors_.argmin()])
    # An interaction is the process's: it takes a share and beats the ridge on new rows.
    assert blend.gp_weight_ > 0
    new, truth = interaction_table(200, seed=1)
    ridge_error = np.mean((blend.ridge_.predict(new) - truth) ** 2)
    assert np.mean((blend.predict(new) - truth) ** 2) < 0.5 * ridge_error


def test_repeated_folds_average_each_splits_errors():
    X, y = interaction_table(60)
    # The repeats' splits are KFold's shuffles with seeds 0, 1, ...: the first is the one
    # a single split uses.
    single = KernelBlendAnchor().fit(X, y)
    weights = np.asarray(single.gp_weights)
    gp, ridge = GaussianProcessAnchor().fit(X, y), single.ridge_
    errors = []
    for seed in (0, 1, 2):
        folds = KFold(5, shuffle=True, random_state=seed)
        member = np.column_stack(
            [
                cross_val_predict(
                    clone(ridge).set_params(numeric_basis=ridge.numeric_basis_), X, y, cv=folds
                ),
                gp.out_of_fold_predictions(y, folds, refit_kernel=True),
            ]
        )
        blends = member[:, [0]] * (1 - weights) + member[:, [1]] * weights
        errors.append(((blends - y[:, None]) ** 2).mean(axis=0))
    np.testing.assert_allclose(single.cv_errors_, errors[0])
    repeated = KernelBlendAnchor(cv_repeats=3).fit(X, y)
    np.testing.assert_allclose(repeated.cv_errors_, np.mean(errors, axis=0))
    assert repeated.gp_weight_ == weights[np.argmin(repeated.cv_errors_)]


def test_more_folds_choose_on_their_own_splits_and_need_more_rows():
    X, y = interaction_table(60)
    five, ten = (KernelBlendAnchor(cv_folds=k).fit(X, y) for k in (5, 10))
    assert ten.cv_errors_.shape == five.cv_errors_.shape
    assert not np.allclose(ten.cv_errors_, five.cv_errors_)
    # Twice ten folds' rows are needed to choose on ten folds.
    few = KernelBlendAnchor(cv_folds=10).fit(*interaction_table(19))
    assert few.gp_ is None and few.cv_errors_.size == 0
    assert KernelBlendAnchor(cv_folds=10).fit(*interaction_table(20)).cv_errors_.size == 5


def test_a_single_share_gives_that_member_or_the_mix():
    X, y = interaction_table(60)
    ridge_only = KernelBlendAnchor(gp_weights=(0.0,)).fit(X, y)
    assert ridge_only.gp_ is None
    np.testing.assert_array_equal(ridge_only.predict(X), ridge_only.ridge_.predict(X))
    gp_only = KernelBlendAnchor(gp_weights=(1.0,)).fit(X, y)
    np.testing.assert_allclose(gp_only.predict(X), gp_only.gp_.predict(X))
    half = KernelBlendAnchor(gp_weights=(0.5,)).fit(X, y)
    mix = (half.ridge_.predict(X) + half.gp_.predict(X)) / 2
    np.testing.assert_allclose(half.predict(X), mix)


def test_too_few_rows_or_no_readable_column_keep_the_ridge():
    X, y = interaction_table(8)
    few = KernelBlendAnchor().fit(X, y)
    assert few.gp_ is None and few.gp_weight_ == 0 and few.cv_errors_.size == 0
    text = pd.DataFrame({"note": [f"a note of {i} words{i}" for i in range(3 * TEXT_CARDINALITY)]})
    alone = KernelBlendAnchor().fit(text, np.arange(len(text), dtype=float))
    assert alone.gp_ is None and alone.gp_weight_ == 0


@pytest.mark.parametrize("weights", [(), (0.5, 1.5), (-0.1,)])
def test_the_blend_refuses_shares_outside_the_unit_interval(weights):
    X, y = interaction_table(20)
    with pytest.raises(ValueError, match="gp_weights"):
        KernelBlendAnchor(gp_weights=weights).fit(X, y)


def test_the_blend_survives_json_exactly():
    X, y = mixed_table(60)
    blend = KernelBlendAnchor(gp_weights=(0.5,)).fit(X, y)
    state = json.loads(json.dumps(blend.to_json()))
    rebuilt = KernelBlendAnchor.from_json(state)
    new, _ = mixed_table(20, seed=1)
    np.testing.assert_array_equal(rebuilt.predict(new), blend.predict(new))
    assert rebuilt.feature_names_in_.tolist() == ["size", "color", "note"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.update(gp_weight=1.5), "inconsistent KernelBlendAnchor"),
        (lambda s: s.pop("ridge"), "incomplete KernelBlendAnchor"),
        (lambda s: s["gp"].update(dual_coef=s["gp"]["dual_coef"][:-1]), "GaussianProcess"),
        (lambda s: s["gp"].update(length_scales=[1.0]), "inconsistent GaussianProcessAnchor"),
        (lambda s: s["gp"].update(y_scale=0.0), "inconsistent GaussianProcessAnchor"),
        (lambda s: s["gp"].update(n_features_in=2), "GaussianProcessAnchor"),
    ],
)
def test_the_blend_refuses_damaged_states(edit, match):
    X, y = mixed_table(60)
    state = json.loads(json.dumps(KernelBlendAnchor(gp_weights=(0.5,)).fit(X, y).to_json()))
    edit(state)
    with pytest.raises(ValueError, match=match):
        KernelBlendAnchor.from_json(state)


def test_an_additive_gp_estimator_saves_and_loads(tiny_model_dir, tmp_path):
    X, y = mixed_table(60)
    reg = LLMRegressor(
        model=tiny_model_dir,
        anchor="additive_gp",
        interval_calibration=None,
        sft_epochs=1,
        n_samples=2,
        random_state=0,
    ).fit(X, y)
    assert isinstance(reg.anchor_, KernelBlendAnchor)
    # The ridge member is the "additive" anchor, its cells embedded by the estimator's model.
    assert reg.anchor_.ridge_.embedding_model == tiny_model_dir
    assert reg.anchor_.get_params()["ridge"].get_params() == (
        make_anchor("additive", tiny_model_dir).get_params()
    )
    reg.save(tmp_path)
    loaded = LLMRegressor.load(tmp_path)
    new, _ = mixed_table(20, seed=1)
    np.testing.assert_array_equal(loaded.anchor_.predict(new), reg.anchor_.predict(new))
    np.testing.assert_array_equal(loaded.predict(new), reg.predict(new))
