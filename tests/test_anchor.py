"""The anchor: out-of-fold estimates in training prompts, the full fit's at predict time."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from llmregressor.anchor import RIDGE_ALPHAS, RidgeAnchor, cross_fit, with_estimates
from llmregressor.features import make_feature_preprocessor


@pytest.fixture(scope="module")
def numeric():
    """Continuous features and noisy targets: no two rows share a target or a neighbour's."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(30, 2)).round(3), columns=["a", "b"])
    return X, X.to_numpy() @ np.array([2.0, -1.0]) + rng.normal(size=30)


@parametrize_with_checks([RidgeAnchor()])
def test_ridge_anchor_is_a_scikit_learn_regressor(estimator, check):
    check(estimator)


def messy_table(n_rows, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "a": rng.normal(size=n_rows),
            "b": rng.normal(size=n_rows) * 10,
            "color": rng.choice(["red", "blue", "green"], n_rows).astype(object),
            "empty": np.nan,
        }
    )
    X.loc[[1, 5], "a"] = np.nan
    X.loc[4, "color"] = None
    y = 2 * X["a"].fillna(0) - X["b"] + (X["color"] == "red") * 3 + rng.normal(size=n_rows)
    return X, y.to_numpy()


def test_ridge_anchor_is_the_package_preprocessing_and_ridge_cv():
    X, y = messy_table(60)
    anchor = RidgeAnchor().fit(X, y)
    rows = X.to_numpy(dtype=object)
    pipeline = make_pipeline(make_feature_preprocessor(rows), RidgeCV(alphas=RIDGE_ALPHAS))
    pipeline.fit(rows, y)
    # New rows: a missing cell where training had none, an unseen category, a value in the
    # column that was always missing.
    new = X.copy()
    new.loc[0, "b"], new.loc[2, "color"], new.loc[3, "empty"] = np.nan, "violet", 4.0
    expected = pipeline.predict(new.to_numpy(dtype=object))
    np.testing.assert_allclose(anchor.predict(new), expected, rtol=1e-10, atol=1e-10)
    assert anchor.alpha_ == pipeline[-1].alpha_


def test_ridge_anchor_json_round_trip_predicts_identically():
    X, y = messy_table(40)
    anchor = RidgeAnchor().fit(X, y)
    again = RidgeAnchor.from_json(json.loads(json.dumps(anchor.to_json())))
    np.testing.assert_array_equal(again.predict(X), anchor.predict(X))
    assert list(again.feature_names_in_) == list(X.columns)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.pop("intercept"), "incomplete"),
        (lambda s: s["numeric_weights"].pop(), "inconsistent"),
        (lambda s: s["categories"][0].pop(), "inconsistent"),
        (lambda s: s.update(numeric_columns=[0, 9, 3]), "out of range"),
        (lambda s: s.update(numeric_columns=[0, 1.5, 3]), "must be ints"),
        (lambda s: s["missing_values"].__setitem__(0, float("nan")), "finite"),
    ],
)
def test_ridge_anchor_refuses_damaged_states(edit, match):
    state = RidgeAnchor().fit(*messy_table(20)).to_json()
    edit(state)
    with pytest.raises(ValueError, match=match):
        RidgeAnchor.from_json(state)


def test_with_estimates_keeps_each_column_type():
    rows = with_estimates(np.array([[1, True, "a"]], dtype=object), np.array([2.5]))
    assert rows.dtype == object and rows.tolist() == [[1, True, "a", 2.5]]
    widened = with_estimates(np.array([[0.1]], dtype=np.float32), np.array([1 / 3]))
    assert widened.dtype == np.float64 and widened[0, 1] == 1 / 3


def test_out_of_fold_estimates_never_saw_their_row(numeric):
    X, y = numeric
    # A 1-nearest-neighbour anchor predicts a row it was fitted on exactly.
    estimates, fitted = cross_fit(KNeighborsRegressor(n_neighbors=1), X, y, 5, seed=7)
    np.testing.assert_array_equal(fitted.predict(X), y)
    assert np.all(estimates != y)
    splits = KFold(5, shuffle=True, random_state=7)
    np.testing.assert_array_equal(
        estimates, cross_val_predict(KNeighborsRegressor(n_neighbors=1), X, y, cv=splits)
    )
