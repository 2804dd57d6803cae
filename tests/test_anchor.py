"""The anchor: out-of-fold estimates in training prompts, the full fit's at predict time."""

import json
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import interrupt_after
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import llmregressor.estimator as estimator_module
from llmregressor import LLMRegressor
from llmregressor.anchor import (
    RIDGE_ALPHAS,
    RidgeAnchor,
    cross_fit,
    residual_slope,
    simplest_within_one_paired_se,
    simplest_within_one_se,
    with_estimates,
)
from llmregressor.backbones import LanguageModelBackbone
from llmregressor.conformal import (
    central_levels,
    conformal_margin,
    conformalize,
    conformity_scores,
)
from llmregressor.engine import Sampler
from llmregressor.features import TEXT_CARDINALITY, free_text_columns, make_feature_preprocessor
from llmregressor.mlp_decoder import MLPDecoderBackbone
from llmregressor.persistence import MANIFEST_FILE, ModelFormatError


def small(model_dir, **params):
    defaults = dict(
        model=model_dir, sft_epochs=1, rl_algorithm=None, batch_size=16, n_samples=2, random_state=0
    )
    return LLMRegressor(**{**defaults, **params})


def tiny_mlp_decoder(**params):
    """A small ``"mlp-decoder"`` fit: one SFT epoch, no RL."""
    return LLMRegressor(
        model="mlp-decoder",
        mlp_hidden=(16,),
        d_model=8,
        decoder_layers=1,
        decoder_heads=2,
        decoder_ff=16,
        sft_epochs=1,
        rl_algorithm=None,
        n_samples=2,
        random_state=0,
        **params,
    )


@pytest.fixture(scope="module")
def numeric():
    """Continuous features and noisy targets: no two rows share a target or a neighbour's."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(30, 2)).round(3), columns=["a", "b"])
    return X, X.to_numpy() @ np.array([2.0, -1.0]) + rng.normal(size=30)


@pytest.fixture(scope="module")
def fitted(houses, tiny_model_dir):
    X, y = houses(40)
    return small(tiny_model_dir, anchor="ridge").fit(X, y)


def record_rows(patch, backbone=LanguageModelBackbone):
    """Collect every table row the backbone turns into model inputs (estimate last)."""
    rows = []
    encode_rows = backbone.encode_rows

    def recording(self, X):
        rows.extend(X.tolist())
        return encode_rows(self, X)

    patch.setattr(backbone, "encode_rows", recording)
    return rows


def estimates_by_row(rows, X):
    """Each row of X's estimate, as the recorded model inputs gave it."""
    found = {tuple(row[:-1]): row[-1] for row in rows}
    return np.array([found[tuple(row)] for row in X.to_numpy().tolist()])


# ---------------------------------------------------------------------------- RidgeAnchor
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


def menu(n_rows, seed=0):
    """Item names that never repeat, whose words set the price; a few restaurants."""
    rng = np.random.default_rng(seed)
    words = rng.choice(["bacon", "salad", "double", "small"], size=(n_rows, 2))
    X = pd.DataFrame(
        {
            "item": [f"{a} {b} combo {i + 1000 * seed}" for i, (a, b) in enumerate(words)],
            "place": rng.choice(["north", "south"], n_rows).astype(object),
        }
    )
    effect = {"bacon": 300.0, "double": 200.0, "salad": -150.0, "small": -100.0}
    y = np.array([effect[a] + effect[b] for a, b in words]) + rng.normal(size=n_rows) * 10
    return X, y


def test_free_text_columns_are_the_non_numeric_columns_of_many_distinct_worded_cells():
    n = TEXT_CARDINALITY + 5
    X = np.empty((n, 5), dtype=object)
    X[:, 0] = [f"dish number {i}" for i in range(n)]  # free text
    X[:, 1] = [["red", "blue"][i % 2] for i in range(n)]  # few categories
    X[:, 2] = np.arange(n, dtype=float)  # numbers, however many
    X[:, 3] = ["-" * (i + 1) for i in range(n)]  # many cells, but no words
    X[:, 4] = [f"tag {i % TEXT_CARDINALITY}" for i in range(n)]  # at the limit: categories
    X[0, 0] = None
    assert free_text_columns(X).tolist() == [True, False, False, False, False]


def test_ridge_anchor_reads_the_words_of_free_text_cells_it_never_saw():
    X, y = menu(120)
    new_X, new_y = menu(60, seed=1)
    anchor = RidgeAnchor().fit(X, y)
    # One-hot columns of the item names would give every new item the mean price.
    assert anchor.text_columns_.tolist() == [0] and anchor.categorical_columns_.tolist() == [1]
    assert np.corrcoef(anchor.predict(new_X), new_y)[0, 1] > 0.95


def test_ridge_anchor_with_free_text_is_the_preprocessing_and_ridge_cv():
    X, y = menu(80)
    X.loc[3, "item"] = None
    anchor = RidgeAnchor().fit(X, y)
    rows = X.to_numpy(dtype=object)
    pipeline = make_pipeline(
        make_feature_preprocessor(rows, free_text=True), RidgeCV(alphas=RIDGE_ALPHAS)
    ).fit(rows, y)
    new, _ = menu(20, seed=2)
    new.loc[0, "item"], new.loc[1, "item"] = None, "an unheard-of dish"
    expected = pipeline.predict(new.to_numpy(dtype=object))
    np.testing.assert_allclose(anchor.predict(new), expected, rtol=1e-10, atol=1e-8)
    again = RidgeAnchor.from_json(json.loads(json.dumps(anchor.to_json())))
    np.testing.assert_array_equal(again.predict(new), anchor.predict(new))


def test_ridge_anchor_state_without_free_text_fields_still_loads():
    """A model folder written before free text had word features holds none of their keys."""
    X, y = messy_table(40)
    state = RidgeAnchor().fit(X, y).to_json()
    old = {
        k: v
        for k, v in state.items()
        if k not in {"text_columns", "vocabularies", "idfs", "word_weights"}
    }
    np.testing.assert_array_equal(
        RidgeAnchor.from_json(old).predict(X), RidgeAnchor.from_json(state).predict(X)
    )


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
        (lambda s: s["vocabularies"][0].pop(), "inconsistent"),
        (lambda s: s["idfs"][0].pop(), "inconsistent"),
        (lambda s: s.update(text_columns=[]), "inconsistent"),
    ],
)
def test_ridge_anchor_refuses_damaged_states(edit, match):
    X, y = messy_table(TEXT_CARDINALITY + 10)
    X["note"] = [f"note {i}" for i in range(len(y))]
    state = RidgeAnchor().fit(X, y).to_json()
    edit(state)
    with pytest.raises(ValueError, match=match):
        RidgeAnchor.from_json(state)


# ------------------------------------------------ RidgeAnchor: splines and LM embeddings
def curved_table(n_rows, seed=0):
    """A column whose effect is a curve, one with a line, a category and missing cells."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "curve": rng.uniform(-3, 3, n_rows),
            "line": rng.normal(size=n_rows) * 10,
            "color": rng.choice(["red", "blue"], n_rows).astype(object),
        }
    )
    X.loc[[2, 7], "curve"] = np.nan
    y = 5 * np.sin(X["curve"].fillna(0)) + X["line"] + (X["color"] == "red") * 3
    return X, (y + rng.normal(size=n_rows) * 0.3).to_numpy()


def beyond_the_training_range(X):
    """New rows past both ends of every numeric column, a missing cell and an unseen color."""
    new = X.iloc[:4].copy()
    new["curve"] = [-10.0, 10.0, np.nan, 0.5]
    new["line"] = [-500.0, 500.0, 1.0, np.nan]
    new.loc[3, "color"] = "green"
    return new


@pytest.mark.parametrize("basis", ["linear", "spline"])
def test_ridge_anchor_folds_each_basis_into_the_function_it_fitted(basis):
    X, y = curved_table(80)
    anchor = RidgeAnchor(numeric_basis=basis).fit(X, y)
    pipeline = anchor._pipeline(X.to_numpy(dtype=object), basis, False, False)
    pipeline.fit(X.to_numpy(dtype=object), y)
    rows = pd.concat([X, beyond_the_training_range(X)])
    np.testing.assert_allclose(
        anchor.predict(rows), pipeline.predict(rows.to_numpy(dtype=object)), rtol=1e-9, atol=1e-9
    )
    assert anchor.numeric_basis_ == basis
    again = RidgeAnchor.from_json(json.loads(json.dumps(anchor.to_json())))
    np.testing.assert_array_equal(again.predict(rows), anchor.predict(rows))


def test_spline_columns_of_one_or_two_values_fold_like_the_pipeline():
    # A constant column's knots coincide, which scipy's checked BSpline refuses.
    X, y = curved_table(60)
    X["constant"] = 1.0
    X["rare"] = np.r_[np.zeros(59), 1.0]
    anchor = RidgeAnchor(numeric_basis="spline").fit(X, y)
    rows = X.to_numpy(dtype=object)
    pipeline = anchor._pipeline(rows, "spline", False, False).fit(rows, y)
    new = beyond_the_training_range(X).assign(constant=[0.0, 2.0, np.nan, 1.0], rare=[3.0, 0, 1, 0])
    np.testing.assert_allclose(
        anchor.predict(new), pipeline.predict(new.to_numpy(dtype=object)), rtol=1e-9, atol=1e-9
    )


def test_spline_columns_continue_linearly_beyond_the_training_range():
    X, y = curved_table(80)
    anchor = RidgeAnchor(numeric_basis="spline").fit(X, y)
    far = pd.DataFrame({"curve": [10.0, 20.0, 30.0], "line": 0.0, "color": "red"})
    steps = np.diff(anchor.predict(far))
    np.testing.assert_allclose(steps[0], steps[1], rtol=1e-9)


def test_auto_basis_takes_the_splines_only_where_a_column_curves():
    X, y = curved_table(200)
    assert RidgeAnchor(numeric_basis="auto").fit(X, y).numeric_basis_ == "spline"
    straight = X["line"].to_numpy() + (X["color"] == "red").to_numpy() * 3
    noisy = straight + np.random.default_rng(1).normal(size=len(X))
    assert RidgeAnchor(numeric_basis="auto").fit(X, noisy).numeric_basis_ == "linear"


def test_too_few_rows_to_choose_keep_the_simpler_candidates():
    X, y = curved_table(9)
    anchor = RidgeAnchor(numeric_basis="auto", text_embeddings="auto").fit(X, y)
    assert (anchor.numeric_basis_, anchor.text_embeddings_) == ("linear", False)


def test_the_one_se_rules_differ_on_paired_gains():
    # Folds of very different difficulty; the second candidate gains a little on every one.
    hard = np.array([-100.0, -10.0, -50.0, -5.0, -30.0])
    scores = np.column_stack([hard, hard + 1.0])
    assert simplest_within_one_se(scores) == 0
    assert simplest_within_one_paired_se(scores) == 1
    # A gain on some folds and a loss on others is within one paired standard error.
    mixed = np.column_stack([hard, hard + np.array([3.0, -3.0, 2.0, -2.0, 1.0])])
    assert simplest_within_one_paired_se(mixed) == 0


def test_embeddings_fold_into_the_function_the_anchor_fitted(tiny_model_dir):
    X, y = menu(60)
    anchor = RidgeAnchor(text_embeddings=True, embedding_model=tiny_model_dir).fit(X, y)
    assert anchor.embedding_columns_.tolist() == [0, 1]
    assert anchor.embedding_names_ == ["item", "place"]
    rows = X.to_numpy(dtype=object)
    pipeline = anchor._pipeline(rows, "linear", False, True).fit(rows, y)
    new, _ = menu(20, seed=1)
    np.testing.assert_allclose(
        anchor.predict(new), pipeline.predict(new.to_numpy(dtype=object)), rtol=1e-6, atol=1e-6
    )
    again = RidgeAnchor.from_json(json.loads(json.dumps(anchor.to_json())))
    np.testing.assert_array_equal(again.predict(new), anchor.predict(new))


def artists(n_rows, seed=0):
    """Workshops that repeat, each with its own year, told apart by letters no word reads.

    The vectorizer reads words of two letters or more, so every cell's words are "workshop"
    and "of": only the cell as a whole says which workshop it is.
    """
    rng = np.random.default_rng(seed)
    names = [f"workshop of {a} {b}" for a in "abcdefgh" for b in "klmnop"]
    years = dict(zip(names, rng.uniform(1700, 2000, len(names)), strict=True))
    cells = rng.choice(names, n_rows)
    X = pd.DataFrame({"artist": cells.astype(object), "size": rng.normal(size=n_rows)})
    return X, np.array([years[c] for c in cells]) + rng.normal(size=n_rows)


def test_free_text_cells_fold_into_the_function_the_anchor_fitted():
    X, y = artists(150)
    anchor = RidgeAnchor(text_cells=True).fit(X, y)
    assert anchor.text_columns_.tolist() == [0] and len(anchor.cells_[0]) > 40
    rows = X.to_numpy(dtype=object)
    pipeline = anchor._pipeline(rows, "linear", True, False).fit(rows, y)
    new, _ = artists(30, seed=1)
    new.loc[0, "artist"] = "Nobody Known"
    np.testing.assert_allclose(
        anchor.predict(new), pipeline.predict(new.to_numpy(dtype=object)), rtol=1e-9, atol=1e-9
    )
    again = RidgeAnchor.from_json(json.loads(json.dumps(anchor.to_json())))
    np.testing.assert_array_equal(again.predict(new), anchor.predict(new))


def test_auto_cells_are_kept_where_a_cell_is_more_than_its_words():
    X, y = artists(200)
    assert RidgeAnchor(text_cells="auto").fit(X, y).text_cells_
    # Where the target ignores the cells, their one-hot columns only fit noise.
    size_only = 3 * X["size"].to_numpy() + np.random.default_rng(0).normal(size=len(X))
    assert not RidgeAnchor(text_cells="auto").fit(X, size_only).text_cells_


def test_a_numeric_table_has_nothing_to_embed(numeric, tiny_model_dir):
    X, y = numeric
    anchor = RidgeAnchor(text_embeddings=True, embedding_model=tiny_model_dir).fit(X, y)
    assert not anchor.text_embeddings_ and anchor.embedding_columns_.size == 0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (dict(numeric_basis="cubic"), "numeric_basis must be one of"),
        (dict(text_embeddings="yes"), "text_embeddings must be True, False or 'auto'"),
        (dict(text_cells=None), "text_cells must be True, False or 'auto'"),
    ],
)
def test_ridge_anchor_refuses_unknown_options(numeric, params, match):
    with pytest.raises(ValueError, match=match):
        RidgeAnchor(**params).fit(*numeric)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s["numeric_splines"][0]["coefs"].pop(), "inconsistent"),
        (lambda s: s["numeric_splines"][0]["knots"].reverse(), "inconsistent"),
        (lambda s: s["numeric_splines"].pop(), "inconsistent"),
        (lambda s: s["numeric_splines"][0].pop("knots"), "incomplete"),
        (lambda s: s.update(embedding_layer="middle"), "embedding_layer"),
    ],
)
def test_ridge_anchor_refuses_damaged_spline_states(edit, match):
    X, y = curved_table(80)
    state = RidgeAnchor(numeric_basis="spline").fit(X, y).to_json()
    edit(state)
    with pytest.raises(ValueError, match=match):
        RidgeAnchor.from_json(state)


def test_the_additive_anchor_survives_save_and_load(tiny_model_dir, tmp_path):
    X, y = menu(60)
    X["size"] = np.linspace(1, 3, len(y))
    reg = small(tiny_model_dir, anchor="additive", anchor_mode="residual").fit(X, y)
    assert reg.anchor_.embedding_model == tiny_model_dir
    assert reg.anchor_.numeric_basis_ in ("linear", "spline")
    reg.save(tmp_path)
    loaded = LLMRegressor.load(tmp_path)
    new, _ = menu(20, seed=1)
    new["size"] = 2.0
    np.testing.assert_array_equal(loaded.anchor_.predict(new), reg.anchor_.predict(new))
    np.testing.assert_array_equal(loaded.predict(new), reg.predict(new))


def test_the_additive_anchor_of_a_backbone_without_a_language_model_embeds_nothing():
    X, y = menu(40)
    reg = tiny_mlp_decoder(anchor="additive").fit(X, y)
    assert reg.anchor_.text_embeddings is False and not reg.anchor_.text_embeddings_


def test_with_estimates_keeps_each_column_type():
    rows = with_estimates(np.array([[1, True, "a"]], dtype=object), np.array([2.5]))
    assert rows.dtype == object and rows.tolist() == [[1, True, "a", 2.5]]
    widened = with_estimates(np.array([[0.1]], dtype=np.float32), np.array([1 / 3]))
    assert widened.dtype == np.float64 and widened[0, 1] == 1 / 3


# ------------------------------------------------------------------------- cross-fitting
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


def test_training_prompts_get_out_of_fold_estimates_and_new_rows_the_full_fit(
    numeric, tiny_model_dir, monkeypatch
):
    X, y = numeric
    reg = small(tiny_model_dir, anchor=KNeighborsRegressor(n_neighbors=1))
    with monkeypatch.context() as patch:
        rows = record_rows(patch)
        reg.fit(X, y)
    splits = KFold(5, shuffle=True, random_state=reg.seed_)
    oof = cross_val_predict(KNeighborsRegressor(n_neighbors=1), X, y, cv=splits)
    np.testing.assert_array_equal(estimates_by_row(rows, X), oof)
    assert np.all(oof != y)  # in-sample estimates would equal y
    assert isinstance(reg.anchor_, KNeighborsRegressor) and reg.anchor_ is not reg.anchor
    with monkeypatch.context() as patch:
        rows = record_rows(patch)
        reg.predict(X)
    np.testing.assert_array_equal(estimates_by_row(rows, X), y)  # the full fit's
    assert reg.serializer_.serialize_row([*X.iloc[0], 1.5]).endswith(",estimate:1.5,target:")


def test_every_predicting_method_reads_the_anchor(fitted, houses, monkeypatch):
    X, _ = houses(40)
    expected = fitted.anchor_.predict(X[:5])
    for method in (
        lambda: fitted.predict(X[:5]),
        lambda: fitted.sample(X[:5], 2),
        lambda: fitted.predict_quantiles(X[:5], (0.5,)),
        lambda: fitted.predict_interval(X[:5]),
    ):
        with monkeypatch.context() as patch:
            rows = record_rows(patch)
            method()
        np.testing.assert_array_equal([row[-1] for row in rows], expected)


def test_an_anchored_fit_is_deterministic(numeric, tiny_model_dir, monkeypatch):
    X, y = numeric
    recorded = []
    for seed in (0, 0, 1):
        with monkeypatch.context() as patch:
            rows = record_rows(patch)
            reg = small(tiny_model_dir, anchor="ridge", random_state=seed).fit(X, y)
        recorded.append((estimates_by_row(rows, X), reg.predict(X)))
    np.testing.assert_array_equal(recorded[0][0], recorded[1][0])
    np.testing.assert_array_equal(recorded[0][1], recorded[1][1])
    # Another seed shuffles other folds.
    assert not np.array_equal(recorded[0][0], recorded[2][0])


def test_anchor_folds_cap_at_one_per_row(tiny_model_dir):
    X, y = np.array([[0.0], [1.0], [3.0]]), np.array([0.0, 1.0, 2.0])
    reg = small(tiny_model_dir, anchor=KNeighborsRegressor(n_neighbors=1), anchor_folds=10)
    assert reg.fit(X, y).predict(X).shape == (3,)


def test_the_prompt_template_may_place_the_estimate(numeric, tiny_model_dir):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", prompt_template="About {estimate}. {features}=")
    reg.fit(X, y)
    assert reg.serializer_.serialize_row([1, 2, 3.25]) == "About 3.25. a:1,b:2="


def test_the_mlp_decoder_reads_the_estimate_as_one_more_feature(numeric, monkeypatch):
    X, y = numeric
    reg = tiny_mlp_decoder(anchor="ridge").fit(X, y)
    assert reg.preprocessor_.n_features_in_ == 3
    with monkeypatch.context() as patch:
        rows = record_rows(patch, MLPDecoderBackbone)
        assert np.isfinite(reg.predict(X)).all()
    np.testing.assert_array_equal([row[-1] for row in rows], reg.anchor_.predict(X))


def test_trainer_uses_out_of_fold_estimates(numeric, tiny_model_dir, monkeypatch):
    X, y = numeric
    reg = small(tiny_model_dir, anchor=KNeighborsRegressor(n_neighbors=1)).fit(X, y)
    with monkeypatch.context() as patch:
        rows = record_rows(patch)
        reg.trainer(X, y).train_inputs.encode()
    splits = KFold(5, shuffle=True, random_state=reg.seed_)
    oof = cross_val_predict(KNeighborsRegressor(n_neighbors=1), X, y, cv=splits)
    np.testing.assert_array_equal(estimates_by_row(rows, X), oof)


# --------------------------------------------------------------------- scikit-learn API
def test_clone_and_grid_search_reach_into_an_estimator_anchor(numeric, tiny_model_dir):
    X, y = numeric
    reg = small(tiny_model_dir, anchor=Ridge(alpha=3.0))
    copy = clone(reg)
    assert copy.anchor is not reg.anchor and copy.get_params()["anchor__alpha"] == 3.0
    search = GridSearchCV(reg, {"anchor__alpha": [0.1, 10.0]}, cv=2).fit(X, y)
    assert search.best_estimator_.anchor_.alpha == search.best_params_["anchor__alpha"]


# ------------------------------------------------------------------------------ errors
class NoPredict(BaseEstimator):
    def fit(self, X, y):
        return self


class NaNAnchor(RegressorMixin, BaseEstimator):
    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.full(len(X), np.nan)


@pytest.mark.parametrize(
    ("anchor", "params", "error", "match"),
    [
        ("lasso", {}, ValueError, "anchor must be one of 'ridge'"),
        (NoPredict(), {}, TypeError, "fit, predict and get_params"),
        (Ridge, {}, TypeError, "regressor instance"),
        (None, {"prompt_template": "{estimate}{features}"}, ValueError, "set anchor"),
        ("ridge", {"anchor_folds": 1}, ValueError, "anchor_folds must be an int >= 2"),
        (
            "ridge",
            {"residual_scale": 1.5},
            ValueError,
            r"residual_scale must be a number in \[0, 1\]",
        ),
        ("ridge", {"residual_scale": True}, ValueError, "residual_scale must be a number"),
        ("ridge", {"residual_scale": "half"}, ValueError, "residual_scale must be a number"),
        (NaNAnchor(), {}, ValueError, "NaNAnchor predicted 30 non-finite values"),
    ],
)
def test_bad_anchors(numeric, tiny_model_dir, anchor, params, error, match):
    X, y = numeric
    reg = small(tiny_model_dir, anchor=anchor, **params)
    with pytest.raises(error, match=match):
        reg.fit(X, y)
    assert not hasattr(reg, "anchor_")


def test_a_feature_named_like_the_estimate_field(numeric, tiny_model_dir):
    X, y = numeric
    with pytest.raises(ValueError, match="rename the column"):
        small(tiny_model_dir, anchor="ridge").fit(X.rename(columns={"a": "estimate"}), y)


# --------------------------------------------------------------------------- persistence
def test_save_and_load_keep_the_ridge_anchor(fitted, houses, tmp_path):
    X, _ = houses(40)
    fitted.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["anchor"]["kind"] == "ridge"
    loaded = LLMRegressor.load(tmp_path)
    assert isinstance(loaded.anchor_, RidgeAnchor) and loaded.serializer_.estimate
    np.testing.assert_array_equal(loaded.anchor_.predict(X), fitted.anchor_.predict(X))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))


def test_a_free_text_anchor_survives_save_and_load(tiny_model_dir, tmp_path):
    X, y = menu(60)
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual").fit(X, y)
    assert reg.anchor_.text_columns_.tolist() == [0]
    reg.save(tmp_path)
    loaded = LLMRegressor.load(tmp_path)
    new, _ = menu(10, seed=3)
    np.testing.assert_array_equal(loaded.anchor_.predict(new), reg.anchor_.predict(new))
    np.testing.assert_array_equal(loaded.predict(new), reg.predict(new))


@pytest.mark.parametrize(
    ("edit", "verify", "match"),
    [
        (lambda m: m["anchor"]["state"].update(intercept=1.0), True, "checksum"),
        (lambda m: m["anchor"]["state"].pop("intercept"), False, "damaged anchor"),
        (lambda m: m["anchor"].update(kind="lasso"), False, "unknown kind 'lasso'"),
        (lambda m: m.pop("anchor"), False, "prompts with the anchor's estimate, but no"),
    ],
)
def test_load_refuses_a_changed_anchor(fitted, tmp_path, edit, verify, match):
    fitted.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    edit(manifest)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match=match):
        LLMRegressor.load(tmp_path, verify=verify)


def test_an_estimator_anchor_pickles_but_does_not_save(numeric, tiny_model_dir, tmp_path):
    X, y = numeric
    reg = small(tiny_model_dir, anchor=Ridge(alpha=2.0)).fit(X, y)
    with pytest.raises(TypeError, match="joblib.dump"):
        reg.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    joblib.dump(reg, tmp_path / "model.joblib")
    again = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))


def test_the_ridge_anchor_pickles(fitted, houses):
    X, _ = houses(40)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))


# --------------------------------------------------------------------------- checkpoints
def checkpointed(model_dir, folder, anchor="ridge", **params):
    return small(
        model_dir, sft_epochs=2, batch_size=8, checkpoint_dir=folder, anchor=anchor, **params
    )


def test_a_resumed_anchored_fit_gets_the_same_result(
    numeric, tiny_model_dir, tmp_path, monkeypatch
):
    X, y = numeric
    uninterrupted = checkpointed(tiny_model_dir, tmp_path / "full").fit(X, y)
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            checkpointed(tiny_model_dir, tmp_path / "cut").fit(X, y)
    resumed = checkpointed(tiny_model_dir, tmp_path / "cut", resume=True).fit(X, y)
    np.testing.assert_array_equal(resumed.predict(X), uninterrupted.predict(X))


class NoisyAnchor(RegressorMixin, BaseEstimator):
    """An anchor whose fit draws from an unseeded generator."""

    def fit(self, X, y):
        self.mean_ = np.mean(y) + np.random.default_rng().normal()
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_resume_refuses_other_anchor_estimates(numeric, tiny_model_dir, tmp_path, monkeypatch):
    X, y = numeric
    noisy = dict(anchor=NoisyAnchor())
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            checkpointed(tiny_model_dir, tmp_path, **noisy).fit(X, y)
    with pytest.raises(ValueError, match="other anchor estimates.*random_state"):
        checkpointed(tiny_model_dir, tmp_path, resume=True, **noisy).fit(X, y)


# ------------------------------------------------------------------------- residual mode
def test_a_residual_anchor_trains_on_what_the_estimate_leaves(numeric, tiny_model_dir, monkeypatch):
    X, y = numeric
    targets = []
    trainer = estimator_module.Trainer

    def recording(policy, codec, inputs, y, *args, **kwargs):
        targets.append(np.asarray(y))
        return trainer(policy, codec, inputs, y, *args, **kwargs)

    monkeypatch.setattr(estimator_module, "Trainer", recording)
    anchor = KNeighborsRegressor(n_neighbors=1)
    reg = small(
        tiny_model_dir,
        anchor=anchor,
        anchor_mode="residual",
        residual_scale=1.0,
        validation_fraction=0.7,
        interval_calibration="conformal",  # the held-out rows alone calibrate
    )
    reg.fit(X, y)
    oof = cross_val_predict(anchor, X, y, cv=KFold(5, shuffle=True, random_state=reg.seed_))
    assert reg.residual_anchor_ is True
    # The calibration rows never reach the trainer; every other row does, as its residual.
    (seen,) = targets
    assert len(seen) == len(y) - len(reg.calibration_.targets)
    assert set(np.round(seen, 9)) <= set(np.round(y - oof, 9))
    # The codec describes the residuals, and so do the calibration targets.
    residuals = y - oof
    assert reg.codec_.mean_ == pytest.approx(residuals.mean())
    assert set(np.round(reg.calibration_.targets, 9)) <= set(np.round(residuals, 9))


def every_output(reg, X, calibrated=True):
    """What each predicting method returns for X: predictions, draws, quantiles, intervals."""
    return (
        reg.predict(X),
        reg.sample(X, 3),
        reg.predict_quantiles(X, (0.2, 0.8)),
        reg.predict_quantiles(X, (0.5,), n_samples="exact"),
        reg.predict_interval(X, 0.8, calibrated=calibrated),
    )


def test_a_residual_anchor_adds_the_estimate_to_every_prediction(numeric, tiny_model_dir):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual", validation_fraction=0.7)
    reg.fit(X, y)
    estimates = reg.anchor_.predict(X)
    outputs = {}
    for residual in (False, True):
        # The same fitted policy and seeded draws, with and without the offsets.
        reg.residual_anchor_ = residual
        outputs[residual] = every_output(reg, X)
    for raw, shifted in zip(outputs[False], outputs[True], strict=True):
        shift = estimates if raw.ndim == 1 else estimates[:, None]
        np.testing.assert_allclose(shifted, raw + shift)
    # Predictions read the fitted mode, not the parameter.
    before = reg.predict(X)
    reg.set_params(anchor_mode="field")
    np.testing.assert_array_equal(reg.predict(X), before)


def test_residual_scale_scales_every_decoded_number(numeric, tiny_model_dir):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual", interval_calibration=None)
    reg.fit(X, y)
    assert reg.residual_scale_ == 1.0
    estimates = reg.anchor_.predict(X)
    outputs = {}
    for scale in (1.0, 0.25):
        # The same fitted policy and seeded draws, with the decoded numbers scaled.
        reg.residual_scale_ = scale
        outputs[scale] = every_output(reg, X, calibrated=False)
    for full, scaled in zip(outputs[1.0], outputs[0.25], strict=True):
        shift = estimates if full.ndim == 1 else estimates[:, None]
        np.testing.assert_allclose(scaled, shift + 0.25 * (full - shift))


@pytest.mark.parametrize(
    ("decoded", "residuals", "slope"),
    [
        ([1.0, -2.0], [0.5, -1.0], 0.5),
        ([1.0, -2.0], [-1.0, 2.0], 0.0),  # anti-correlated: add nothing
        ([1.0, -2.0], [3.0, -6.0], 1.0),  # never more than the whole residual
        ([0.0, 0.0], [1.0, 2.0], 1.0),  # nothing decoded, nothing to scale
    ],
)
def test_residual_slope_is_the_clipped_slope_through_the_origin(decoded, residuals, slope):
    assert residual_slope(np.array(decoded), np.array(residuals)) == slope


@pytest.mark.parametrize(
    ("decoded", "residuals", "slope"),
    [
        ([1.0, -1.0, 2.0], [1.0, -1.0, 2.0], 1.0),  # an exact fit: no standard error
        ([1.0, 1.0], [2.0, 0.0], 0.0),  # slope 1 with standard error 1
        ([1.0, 1.0, 1.0, 1.0], [1.0, 0.5, 1.0, 0.5], 0.75 - np.sqrt(0.25 / 3 / 4)),
        ([1.0, 1.0], [3.0, -1.0], 0.0),  # slope 1 less a standard error of 2: clipped
        ([1.0, 2.0], [2.1, 3.9], 1.0),  # slope 1.98 less 0.06: clipped
        ([0.0, 0.0], [1.0, 2.0], 1.0),  # nothing decoded, nothing to scale
    ],
)
def test_one_se_residual_slope_is_the_slope_less_its_standard_error(decoded, residuals, slope):
    got = residual_slope(np.array(decoded), np.array(residuals), rule="one_se")
    assert got == pytest.approx(slope, abs=1e-12)


def test_one_se_residual_scale_keeps_less_than_auto(numeric, tiny_model_dir):
    X, y = numeric
    # The scale is fitted on the held-out rows, which "conformal" keeps as its calibration.
    params = dict(
        anchor="ridge",
        anchor_mode="residual",
        validation_fraction=0.7,
        interval_calibration="conformal",
    )
    full = small(tiny_model_dir, **params, residual_scale=1.0).fit(X, y)
    one_se = small(tiny_model_dir, **params, residual_scale="one_se").fit(X, y)
    decoded, targets = full.calibration_.draws.mean(axis=1), full.calibration_.targets
    assert one_se.residual_scale_ == pytest.approx(
        residual_slope(decoded, targets, rule="one_se"), abs=1e-12
    )
    # Here the plain slope lies inside (0, 1): one standard error less keeps less.
    assert one_se.residual_scale_ < residual_slope(decoded, targets) < 1


def test_residual_slope_rejects_an_unknown_rule():
    with pytest.raises(ValueError, match="rule must be one of"):
        residual_slope(np.ones(3), np.ones(3), rule="median")


def test_auto_residual_scale_is_the_calibration_rows_slope(numeric, tiny_model_dir):
    X, y = numeric
    # The scale is fitted on the held-out rows, which "conformal" keeps as its calibration.
    params = dict(
        anchor="ridge",
        anchor_mode="residual",
        validation_fraction=0.7,
        interval_calibration="conformal",
    )
    full = small(tiny_model_dir, **params, residual_scale=1.0).fit(X, y)
    auto = small(tiny_model_dir, **params, residual_scale="auto").fit(X, y)
    decoded = full.calibration_.draws.mean(axis=1)
    slope = decoded @ full.calibration_.targets / (decoded @ decoded)
    assert auto.residual_scale_ == pytest.approx(np.clip(slope, 0, 1), abs=1e-12)
    assert 0 <= auto.residual_scale_ < 1
    # The calibration rows' draws are scaled as new rows' will be; the targets are not.
    np.testing.assert_allclose(
        auto.calibration_.draws, auto.residual_scale_ * full.calibration_.draws
    )
    np.testing.assert_array_equal(auto.calibration_.targets, full.calibration_.targets)
    estimates = auto.anchor_.predict(X)
    np.testing.assert_allclose(
        auto.predict(X), estimates + auto.residual_scale_ * (full.predict(X) - estimates)
    )
    # A model that learnt little stays nearer its good anchor with the fitted scale.
    rmse = {
        k: np.sqrt(np.mean((m.predict(X) - y) ** 2)) for k, m in (("full", full), ("auto", auto))
    }
    assert rmse["auto"] < rmse["full"]
    # Training further through the engine forgets the slope, measured on the model before.
    auto.trainer(X, y)
    assert auto.residual_scale_ == 1.0


def test_at_scale_zero_every_rows_out_of_fold_residual_calibrates(numeric, tiny_model_dir):
    X, y = numeric
    params = dict(anchor="ridge", anchor_mode="residual", validation_fraction=0.7)
    reg = small(tiny_model_dir, **params, residual_scale=0.0).fit(X, y)
    # Predictions are the anchor's estimates; each row's out-of-fold residual is a score.
    estimates, _ = cross_fit("ridge", X, y, reg.anchor_folds, reg.seed_)
    assert reg.calibration_.n_rows == len(y)
    np.testing.assert_allclose(reg.calibration_.targets, y - estimates)
    assert not reg.calibration_.draws.any()
    # Split conformal around the anchor on every row's |residual|: the 24th of 30 for 75%.
    margin = np.sort(np.abs(y - estimates))[23]
    point = reg.anchor_.predict(X)
    np.testing.assert_allclose(
        reg.predict_interval(X, coverage=0.75), np.column_stack([point - margin, point + margin])
    )
    # A kept correction is calibrated on every row by default, on the held-out rows only
    # with "conformal".
    kept = small(tiny_model_dir, **params, residual_scale=0.5)
    assert kept.fit(X, y).calibration_.n_rows == len(y)
    kept.set_params(interval_calibration="conformal")
    assert 0 < kept.fit(X, y).calibration_.n_rows < len(y)


def test_every_row_calibrates_a_kept_correction_on_every_row(numeric, tiny_model_dir, tmp_path):
    X, y = numeric
    params = dict(anchor="ridge", validation_fraction=0.7, residual_scale=0.5)
    held_out = small(tiny_model_dir, **params, interval_calibration="conformal").fit(X, y)
    reg = small(tiny_model_dir, **params, interval_calibration="every_row").fit(X, y)
    # The same fit: only its calibration differs.
    np.testing.assert_array_equal(reg.predict(X), held_out.predict(X))
    assert 0 < held_out.calibration_.n_rows < len(y) == reg.calibration_.n_rows
    assert reg.calibration_.center == "mean"
    # A held-out row's score is its distance from its prediction, any other row's from its
    # out-of-fold estimate; the held-out rows are those the other fit calibrated on.
    estimates, _ = cross_fit("ridge", X, y, reg.anchor_folds, reg.seed_)
    residuals = y - estimates
    is_cal = np.isin(residuals, held_out.calibration_.targets)
    assert is_cal.sum() == held_out.calibration_.n_rows
    decoded = np.zeros(len(y))
    decoded[is_cal] = held_out.calibration_.draws.mean(axis=1)  # already scaled by 0.5
    assert decoded[is_cal].any()
    scores = np.sort(np.abs(residuals - decoded))
    # Each interval is the prediction plus or minus the 24th of 30 scores (75%).
    point = reg.sample(X).mean(axis=1)
    np.testing.assert_allclose(
        reg.predict_interval(X, coverage=0.75),
        np.column_stack([point - scores[23], point + scores[23]]),
    )
    # A saved model keeps the calibration's center, and so its intervals.
    reg.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    assert loaded.calibration_.center == "mean"
    np.testing.assert_array_equal(loaded.predict_interval(X, 0.75), reg.predict_interval(X, 0.75))
    # At a scale of 0 it is "conformal"'s calibration, to the last bit.
    zero = dict(params, residual_scale=0.0)
    every = small(tiny_model_dir, **zero, interval_calibration="every_row").fit(X, y)
    conformal = small(tiny_model_dir, **zero, interval_calibration="conformal").fit(X, y)
    assert every.calibration_.center == conformal.calibration_.center == "quantiles"
    np.testing.assert_array_equal(
        every.predict_interval(X, 0.8), conformal.predict_interval(X, 0.8)
    )


def test_every_row_cqr_calibrates_a_kept_correction_on_every_rows_draws(
    numeric, tiny_model_dir, tmp_path
):
    X, y = numeric
    params = dict(anchor="ridge", validation_fraction=0.7, residual_scale=0.5)
    held_out = small(tiny_model_dir, **params, interval_calibration="conformal").fit(X, y)
    reg = small(tiny_model_dir, **params).fit(X, y)  # the default, "every_row_cqr"
    assert reg.interval_calibration == "every_row_cqr"
    # The same fit: only its calibration differs, which now holds every training row.
    np.testing.assert_array_equal(reg.predict(X), held_out.predict(X))
    n_cal = held_out.calibration_.n_rows
    assert 0 < n_cal < len(y) == reg.calibration_.n_rows
    assert reg.calibration_.center == "quantiles"
    # The held-out rows first, as "conformal" calibrates on them.
    np.testing.assert_array_equal(reg.calibration_.draws[:n_cal], held_out.calibration_.draws)
    np.testing.assert_array_equal(reg.calibration_.targets[:n_cal], held_out.calibration_.targets)
    # Then every other row, its target its out-of-fold residual...
    estimates, _ = cross_fit("ridge", X, y, reg.anchor_folds, reg.seed_)
    residuals = y - estimates
    is_cal = np.isin(residuals, held_out.calibration_.targets)
    assert is_cal.sum() == n_cal
    np.testing.assert_allclose(reg.calibration_.targets[n_cal:], residuals[~is_cal])
    # ...its draws the scaled decoded residuals of the row decoded as a new row: the raw
    # interval predict_interval gives it, less the full anchor's estimate.
    raw = reg.predict_interval(X[~is_cal], 0.5, calibrated=False)
    levels = central_levels(0.5)
    np.testing.assert_allclose(
        raw - reg.anchor_.predict(X[~is_cal])[:, None],
        np.quantile(reg.calibration_.draws[n_cal:], levels, axis=1).T,
    )
    # Each interval is CQR on all of those rows' scores.
    scores = conformity_scores(
        np.quantile(reg.calibration_.draws, levels, axis=1).T, reg.calibration_.targets
    )
    expected = conformalize(
        reg.predict_interval(X, 0.5, calibrated=False), conformal_margin(scores, 0.5)
    )
    np.testing.assert_allclose(reg.predict_interval(X, 0.5), expected)
    # A saved model keeps it.
    reg.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_interval(X, 0.5), reg.predict_interval(X, 0.5))
    # At a scale of 0 it is "conformal"'s calibration, to the last bit, decoding nothing.
    zero = dict(params, residual_scale=0.0)
    every = small(tiny_model_dir, **zero).fit(X, y)  # the default
    conformal = small(tiny_model_dir, **zero, interval_calibration="conformal").fit(X, y)
    np.testing.assert_array_equal(every.calibration_.targets, conformal.calibration_.targets)
    np.testing.assert_array_equal(
        every.predict_interval(X, 0.8), conformal.predict_interval(X, 0.8)
    )


def test_every_row_without_a_residual_anchor_calibrates_on_held_out_rows(numeric, tiny_model_dir):
    X, y = numeric
    for params in (dict(anchor=None), dict(anchor="ridge", anchor_mode="field")):
        plain = small(tiny_model_dir, validation_fraction=0.7, **params).fit(X, y)
        for calibration in ("every_row", "every_row_cqr"):
            every = small(
                tiny_model_dir, validation_fraction=0.7, interval_calibration=calibration, **params
            ).fit(X, y)
            assert every.calibration_.n_rows == plain.calibration_.n_rows < len(y)
            assert every.calibration_.center == "quantiles"
            np.testing.assert_array_equal(
                every.predict_interval(X, 0.8), plain.predict_interval(X, 0.8)
            )


def test_every_row_cqr_keeps_the_held_out_rows_within_the_row_limit(
    numeric, tiny_model_dir, monkeypatch
):
    X, y = numeric
    monkeypatch.setattr(estimator_module, "OUT_OF_FOLD_CALIBRATION_ROWS", 25)
    params = dict(anchor="ridge", validation_fraction=0.7, residual_scale=0.5)
    held_out = small(tiny_model_dir, **params, interval_calibration="conformal").fit(X, y)
    reg = small(tiny_model_dir, **params, interval_calibration="every_row_cqr").fit(X, y)
    n_cal = held_out.calibration_.n_rows
    assert n_cal < 25 == reg.calibration_.n_rows
    np.testing.assert_array_equal(reg.calibration_.targets[:n_cal], held_out.calibration_.targets)


def test_at_scale_zero_nothing_is_decoded(numeric, tiny_model_dir, monkeypatch):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", validation_fraction=0.7, residual_scale=0.0)
    reg.fit(X, y)

    def refuse(*args, **kwargs):
        raise AssertionError("rows were decoded at a residual scale of 0")

    for method in ("predict", "draw", "quantiles", "calibration_draws"):
        monkeypatch.setattr(Sampler, method, refuse)
    point = reg.anchor_.predict(X)
    np.testing.assert_array_equal(reg.predict(X), point)
    np.testing.assert_array_equal(reg.sample(X, n_samples=3), np.repeat(point[:, None], 3, 1))
    np.testing.assert_array_equal(reg.predict_quantiles(X, [0.1, 0.9])[:, 1], point)
    reg.set_params(n_samples="exact")
    np.testing.assert_array_equal(reg.predict_quantiles(X, [0.5])[:, 0], point)
    reg.set_params(n_samples=2)
    interval = reg.predict_interval(X, 0.5)
    np.testing.assert_allclose(interval.mean(axis=1), point)


def test_a_fitted_scale_of_zero_calibrates_on_every_row(numeric, tiny_model_dir, monkeypatch):
    X, y = numeric
    # The default rule, made to find nothing worth keeping.
    monkeypatch.setattr(estimator_module, "residual_slope", lambda *args: 0.0)
    reg = small(tiny_model_dir, anchor="ridge", validation_fraction=0.7).fit(X, y)
    assert reg.residual_scale_ == 0 and reg.calibration_.n_rows == len(y)
    # At most OUT_OF_FOLD_CALIBRATION_ROWS of them, drawn with the fit's seed.
    monkeypatch.setattr(estimator_module, "OUT_OF_FOLD_CALIBRATION_ROWS", 10)
    capped = small(tiny_model_dir, anchor="ridge", validation_fraction=0.7).fit(X, y)
    assert capped.calibration_.n_rows == 10
    assert set(capped.calibration_.targets) < set(reg.calibration_.targets)
    # Without calibration nothing is added.
    none = small(tiny_model_dir, anchor="ridge", residual_scale=0.0, interval_calibration=None)
    assert none.fit(X, y).calibration_ is None


def sft_records(reg):
    return [r for r in reg.history_ if r["phase"] == "sft"]


def test_residual_patience_records_each_epochs_scale_without_changing_the_fit(
    numeric, tiny_model_dir
):
    X, y = numeric
    params = dict(anchor="ridge", validation_fraction=0.7, sft_epochs=3)
    plain = small(tiny_model_dir, **params, residual_patience=None).fit(X, y)
    # A patience above sft_epochs checks every epoch and never stops.
    checked = small(tiny_model_dir, **params, residual_patience=4).fit(X, y)
    assert [r["epoch"] for r in sft_records(checked)] == [0, 1, 2]
    assert all(0 <= r["residual_scale"] <= 1 for r in sft_records(checked))
    assert not any("residual_scale" in r for r in sft_records(plain))
    # Checking decodes without drawing from the fit's streams: the same training.
    for a, b in zip(sft_records(plain), sft_records(checked), strict=True):
        assert a["train_loss"] == b["train_loss"]
    np.testing.assert_array_equal(checked.predict(X), plain.predict(X))
    # The last check saw the final model, as the fit's own scale does.
    assert sft_records(checked)[-1]["residual_scale"] == checked.residual_scale_


def scripted_slopes(monkeypatch, slopes):
    """Make the residual scale rule return ``slopes`` in turn, then 0."""
    queue = list(slopes)
    monkeypatch.setattr(
        estimator_module, "residual_slope", lambda *args: queue.pop(0) if queue else 0.0
    )


def test_residual_patience_stops_sft_after_that_many_zero_scales_in_a_row(
    numeric, tiny_model_dir, monkeypatch
):
    X, y = numeric
    params = dict(anchor="ridge", validation_fraction=0.7, sft_epochs=5, residual_patience=2)
    scripted_slopes(monkeypatch, [0.0, 0.5, 0.0, 0.0])
    reg = small(tiny_model_dir, **params).fit(X, y)
    # The zero of epoch 0 is followed by a kept scale; epochs 2 and 3 stop it.
    assert [r["residual_scale"] for r in sft_records(reg)] == [0.0, 0.5, 0.0, 0.0]
    # It ends as any fit at scale 0: the anchor's estimates, every row calibrating.
    assert reg.residual_scale_ == 0
    np.testing.assert_array_equal(reg.predict(X), reg.anchor_.predict(X))
    assert reg.calibration_.n_rows == len(y)
    # Patience 1 stops at the first zero; None never checks.
    scripted_slopes(monkeypatch, [0.5, 0.0])
    eager = small(tiny_model_dir, **{**params, "residual_patience": 1}).fit(X, y)
    assert len(sft_records(eager)) == 2
    scripted_slopes(monkeypatch, [])
    unchecked = small(tiny_model_dir, **{**params, "residual_patience": None}).fit(X, y)
    assert len(sft_records(unchecked)) == 5


@pytest.mark.parametrize(
    "params",
    [
        dict(residual_scale=0.5),  # nothing to fit
        dict(anchor=None),  # nothing to scale
        dict(interval_calibration=None),  # no rows to fit it on
    ],
)
def test_residual_patience_checks_only_a_fitted_scale(numeric, tiny_model_dir, params, recwarn):
    X, y = numeric
    base = dict(anchor="ridge", validation_fraction=0.7, sft_epochs=2, residual_patience=1)
    reg = small(tiny_model_dir, **{**base, **params}).fit(X, y)
    assert len(sft_records(reg)) == 2
    assert not any("residual_scale" in r for r in sft_records(reg))


def test_a_fit_stopped_by_its_residual_check_resumes_as_stopped(
    numeric, tiny_model_dir, tmp_path, monkeypatch
):
    X, y = numeric
    params = dict(validation_fraction=0.7, residual_patience=1)
    scripted_slopes(monkeypatch, [0.0])
    stopped = checkpointed(tiny_model_dir, tmp_path, **params).fit(X, y)
    assert len(sft_records(stopped)) == 1
    # Its checkpoint says SFT finished: resuming trains no further epoch.
    scripted_slopes(monkeypatch, [0.5, 0.5, 0.5, 0.0])
    resumed = checkpointed(tiny_model_dir, tmp_path, resume=True, **params).fit(X, y)
    assert sft_records(resumed) == sft_records(stopped)


def test_an_every_row_calibration_survives_save_and_load(numeric, tiny_model_dir, tmp_path):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", validation_fraction=0.7, residual_scale=0.0)
    reg.fit(X, y)
    reg.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    assert loaded.calibration_.n_rows == len(y)
    np.testing.assert_array_equal(loaded.predict_interval(X, 0.8), reg.predict_interval(X, 0.8))


def test_auto_residual_scale_without_calibration_rows_warns_and_adds_everything(
    numeric, tiny_model_dir
):
    X, y = numeric
    reg = small(
        tiny_model_dir,
        anchor="ridge",
        anchor_mode="residual",
        residual_scale="auto",
        interval_calibration=None,
    )
    with pytest.warns(UserWarning, match="residual_scale='auto' chooses its scale"):
        reg.fit(X, y)
    assert reg.residual_scale_ == 1.0


def test_auto_residual_scale_on_too_few_rows_leaves_the_warning_to_calibration(
    numeric, tiny_model_dir
):
    # 10% of 30 rows are too few to calibrate: the fit says so once, not twice.
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual", residual_scale="auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg.fit(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("needs at least 20 held-out rows" in m for m in messages)
    assert not any("residual_scale" in m for m in messages)
    assert reg.calibration_ is None and reg.residual_scale_ == 1.0


def test_a_residual_anchor_stays_near_a_good_anchor_when_the_model_learns_little(
    numeric, tiny_model_dir
):
    X, y = numeric
    rmse = {}
    for mode in ("field", "residual"):
        reg = small(tiny_model_dir, anchor="ridge", anchor_mode=mode, interval_calibration=None)
        reg.fit(X, y)
        rmse[mode] = np.sqrt(np.mean((reg.predict(X) - y) ** 2))
    # The anchor explains most of y; an untrained model decoding y itself does not.
    anchor_rmse = np.sqrt(np.mean((reg.anchor_.predict(X) - y) ** 2))
    assert rmse["residual"] < 0.6 * rmse["field"]
    assert rmse["residual"] < anchor_rmse + 1.0


def test_a_residual_anchor_survives_save_load_and_pickle(numeric, tiny_model_dir, tmp_path):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual", interval_calibration=None)
    reg.fit(X, y)
    reg.save(tmp_path / "model")
    loaded = LLMRegressor.load(tmp_path / "model")
    unpickled = pickle.loads(pickle.dumps(reg))
    for other in (loaded, unpickled):
        assert other.residual_anchor_ is True
        np.testing.assert_array_equal(other.predict(X), reg.predict(X))
    # A fitted scale travels too.
    reg.residual_scale_ = 0.375
    reg.save(tmp_path / "scaled")
    scaled = LLMRegressor.load(tmp_path / "scaled")
    assert scaled.residual_scale_ == 0.375
    np.testing.assert_array_equal(scaled.predict(X), reg.predict(X))
    # A model without an anchor records no mode.
    plain = small(tiny_model_dir, anchor=None, interval_calibration=None).fit(X, y)
    plain.save(tmp_path / "plain")
    manifest = json.loads((tmp_path / "plain" / MANIFEST_FILE).read_text())
    assert "residual_anchor_" not in manifest["fitted"]
    assert "residual_scale_" not in manifest["fitted"]
    assert not hasattr(LLMRegressor.load(tmp_path / "plain"), "residual_anchor_")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("residual_anchor_", "false"),
        ("residual_anchor_", 1),
        ("residual_anchor_", None),
        ("residual_scale_", 1.5),
        ("residual_scale_", "auto"),
        ("residual_scale_", True),
    ],
)
def test_load_refuses_a_residual_state_of_the_wrong_kind(
    numeric, tiny_model_dir, tmp_path, name, value
):
    X, y = numeric
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual", interval_calibration=None)
    reg.fit(X, y).save(tmp_path / "model")
    path = tmp_path / "model" / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["fitted"][name] = value
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match=name):
        LLMRegressor.load(tmp_path / "model", verify=False)


def test_a_constant_target_stays_constant_with_a_residual_anchor(tiny_model_dir):
    # Unequal folds' means of 0.1 differ in their last bit: no residual noise is learnt.
    X = np.arange(23, dtype=float).reshape(-1, 1)
    y = np.full(23, 0.1)
    reg = small(tiny_model_dir, anchor="ridge", anchor_mode="residual", interval_calibration=None)
    reg.fit(X, y)
    assert reg.residual_anchor_ is False
    np.testing.assert_array_equal(reg.predict(X), y)


def test_a_callable_reward_is_refused_with_a_residual_anchor(numeric, tiny_model_dir):
    X, y = numeric
    reg = small(
        tiny_model_dir,
        anchor="ridge",
        anchor_mode="residual",
        reward=lambda pred, true: -np.abs(pred - true),
    )
    with pytest.raises(ValueError, match="callable reward"):
        reg.fit(X, y)
