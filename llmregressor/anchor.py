"""The anchor: a classic regressor whose estimate of the target each prompt carries.

With ``LLMRegressor(anchor=...)`` a fit first trains a classic regressor, the *anchor*, and
writes its estimate of each row's target into the row's prompt as one more field,
``estimate`` (``...,bmi:32.1,estimate:151.2,target:``); the language model then learns to
correct a good first guess instead of finding the target from the features alone. The
``mlp-decoder`` backbone gets the estimate as one more numeric input feature.

The estimates of the training rows are *out-of-fold*: the rows are split into
``anchor_folds`` folds (``KFold`` shuffled with the fit's seed) and each row's estimate comes
from an anchor fitted on the other folds. An anchor's in-sample predictions would leak the
target (a 1-nearest-neighbour anchor predicts every training row exactly) and teach the model
to copy the estimate, which it cannot do on new rows. The anchor is then fitted once more on
all training rows (the estimator's ``anchor_``), and that fit's predictions are the estimates
of the rows given to ``predict``, ``sample``, ``predict_quantiles`` and ``predict_interval``.

``anchor="ridge"`` is :class:`RidgeAnchor`: the ``mlp-decoder``'s feature preprocessing
(:func:`~llmregressor.features.make_feature_preprocessor`) with free-text columns read as
TF-IDF words, and ``RidgeCV`` over :data:`RIDGE_ALPHAS`. ``anchor="additive"`` is the same
class with three more readings, each taken only where 5-fold cross-validation on the
training rows says it helps: numeric columns through cubic splines (an additive model),
free-text cells also as categories, and every non-numeric column also through the base LM's
embedding of its cells
(:mod:`llmregressor.cell_embeddings`), which is how what the language model knows about a
burger or an artist reaches the estimate. Any scikit-learn regressor may be
the anchor instead; it is cloned before each fit and receives ``X`` exactly as ``fit`` and
``predict`` got it (a DataFrame stays a DataFrame), so it can be a ``Pipeline`` with its own
``ColumnTransformer``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
from scipy.interpolate import BSpline
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.validation import check_is_fitted, validate_data

from .cell_embeddings import LMCellEmbeddings, cell_texts, embed_texts
from .features import (
    _as_documents,
    _as_float,
    _as_text,
    column_names,
    make_feature_preprocessor,
    one_hot_encoder,
    word_vectorizer,
)

__all__ = [
    "ANCHORS",
    "ANCHOR_MODES",
    "NUMERIC_BASES",
    "RESIDUAL_SCALE_RULES",
    "RIDGE_ALPHAS",
    "SPLINE_KNOTS",
    "RidgeAnchor",
    "TableInputMixin",
    "anchor_estimates",
    "cross_fit",
    "make_anchor",
    "residual_slope",
    "simplest_within_one_paired_se",
    "simplest_within_one_se",
    "with_estimates",
]

# The penalties RidgeCV chooses from (leave-one-out error, computed in closed form).
RIDGE_ALPHAS = np.logspace(-3, 3, 13)

# How RidgeAnchor may read a numeric column (``numeric_basis``): as one weight, as a cubic
# B-spline, or as whichever of the two cross-validation on the training rows prefers.
NUMERIC_BASES = ("linear", "spline", "auto")

# Knots of a numeric column's B-spline, at quantiles of the training rows: scikit-learn's
# default count (7 basis functions per column, cubic).
SPLINE_KNOTS = 5
_SPLINE_DEGREE = 3

# How many shuffled folds choose between the candidate encodings of an ``"auto"`` setting,
# and the fewest rows such a choice is made on (below, the simpler candidate is kept).
CHOICE_FOLDS = 5
MIN_ROWS_TO_CHOOSE = 2 * CHOICE_FOLDS


def simplest_within_one_se(scores: np.ndarray) -> int:
    """Index of the simplest candidate whose mean score is within one SE of the best one's.

    The one-standard-error rule (Hastie, Tibshirani and Friedman, *The Elements of
    Statistical Learning*, 7.10): the standard error is the best candidate's standard
    deviation over the folds (as ``GridSearchCV`` reports it) over the square root of their
    count.

    Parameters
    ----------
    scores : ndarray of shape (n_folds, n_candidates)
        Each candidate's score (higher is better) on each fold, simplest candidate first.

    Returns
    -------
    index : int
    """
    means = scores.mean(axis=0)
    best = int(np.argmax(means))
    se = scores[:, best].std() / np.sqrt(scores.shape[0])
    return int(np.flatnonzero(means >= means[best] - se)[0])


def simplest_within_one_paired_se(scores: np.ndarray) -> int:
    """Index of the simplest candidate within one SE of the best one, on paired fold scores.

    A candidate is as good as the best one when the mean over the folds of the best one's
    score minus its own is at most one standard error of those differences (their sample
    standard deviation over the square root of the fold count). Pairing the folds removes
    their common difficulty, which dominates the spread of either candidate's own scores
    (:func:`simplest_within_one_se`).

    Parameters
    ----------
    scores : ndarray of shape (n_folds, n_candidates)
        Each candidate's score (higher is better) on each fold, simplest candidate first;
        or on each row, where the rows are the paired units.

    Returns
    -------
    index : int
    """
    best = int(np.argmax(scores.mean(axis=0)))
    for i in range(scores.shape[1]):
        gain = scores[:, best] - scores[:, i]
        if gain.mean() <= gain.std(ddof=1) / np.sqrt(scores.shape[0]):
            return i
    return best


class TableInputMixin:
    """Declare NaN, strings and categories as valid input of an anchor, as of the estimator.

    An anchor receives the rows exactly as ``LLMRegressor.fit`` got them.
    """

    def __sklearn_tags__(self):
        """Add NaN, strings and categories to the valid input of the class's other bases."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags


class RidgeAnchor(TableInputMixin, RegressorMixin, BaseEstimator):
    """The anchor of ``anchor="ridge"`` and ``"additive"``: encoded columns + RidgeCV.

    Fitting runs :func:`~llmregressor.features.make_feature_preprocessor` with
    ``free_text=True`` (numbers imputed with the mean, flagged when missing and standardized;
    free-text columns, those with more than
    :data:`~llmregressor.features.TEXT_CARDINALITY` distinct cells of words, as TF-IDF of
    their words and word pairs; other columns one-hot encoded) and
    ``RidgeCV(alphas=RIDGE_ALPHAS)``. Three options add what a linear model of those
    features misses: ``numeric_basis`` reads each numeric column through a cubic B-spline
    (an additive model), ``text_cells`` reads free-text cells also as categories,
    ``text_embeddings`` adds what the frozen base LM makes of each non-numeric cell
    (:class:`~llmregressor.cell_embeddings.LMCellEmbeddings`). Set to ``"auto"``, each is
    used only when 5-fold cross-validation on the training rows says it helps. The fit is
    then folded into one function of the raw columns: per numeric column a weight (or a
    spline) and what a missing cell adds in its place, a weight per category, per word
    feature and cell of each free-text column and per embedding feature, and an intercept.
    :meth:`predict` evaluates that function, so a model rebuilt from :meth:`to_json`
    predicts exactly as the fitted one (a model folder stores the anchor without pickle).

    Parameters
    ----------
    numeric_basis : {"linear", "spline", "auto"}, default="linear"
        How each numeric column enters: one weight of its standardized value; a cubic
        B-spline with :data:`SPLINE_KNOTS` knots at quantiles of the training rows and
        linear beyond them; or ``"auto"``, the splines only when they beat the linear
        columns by more than one standard error of the folds' scores
        (:func:`simplest_within_one_se`): on a few hundred noisy rows a small gain in
        cross-validation is noise, and a linear column extrapolates more safely.
    text_cells : bool or "auto", default=False
        Also read each free-text column's cells as categories: a one-hot column per cell
        seen in training, beside the cell's words. Most cells of a free-text column never
        repeat, but where many do (an artist's name) this lets the ridge weigh a known cell
        as a whole, unshrunk by its row's TF-IDF norm. ``"auto"``: only when it beats the
        words alone by more than one standard error of the paired fold differences
        (:func:`simplest_within_one_paired_se`), chosen after the numeric basis.
    text_embeddings : bool or "auto", default=False
        Add, for every non-numeric column, the frozen base LM's embedding of each cell
        (:class:`~llmregressor.cell_embeddings.LMCellEmbeddings`, standardized, its block
        weighing about as much as a row's TF-IDF vector); ``"auto"``: only when they beat
        the anchor without them by more than one standard error of the paired fold
        differences (:func:`simplest_within_one_paired_se`), chosen after the numeric basis.
        Without a non-numeric column there is nothing to embed.
    embedding_model : str, default="smollm2-135m"
        The base LM that embeds the cells (the ``LLMRegressor``'s ``model`` for the named
        anchors), also needed by :meth:`predict`.
    embedding_layer : int or None, default=None
        Its hidden state to average (None: the middle layer).

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    numeric_basis_ : str
        ``"linear"`` or ``"spline"``: the basis fitted (``numeric_basis`` or its choice).
    text_cells_ : bool
        Whether free-text cells are also one-hot encoded (``text_cells`` or its choice).
    text_embeddings_ : bool
        Whether the embeddings are among the features (``text_embeddings`` or its choice).
    numeric_columns_ : ndarray of int
        Indices of the numeric columns.
    numeric_weights_ : ndarray of float
        Weight of each numeric column's raw value (0 for a column read through a spline).
    numeric_splines_ : list of (ndarray, ndarray) or None
        Each numeric column's spline as its knots in raw units and its coefficients, None
        for a linear column.
    missing_values_ : ndarray of float
        What a missing cell of each numeric column adds instead.
    categorical_columns_ : ndarray of int
        Indices of the other columns.
    categories_ : list of list of str
        Each categorical column's categories (missing cells are the category
        ``"<missing>"``); an unseen category adds nothing.
    category_weights_ : list of ndarray of float
        What each category adds.
    text_columns_ : ndarray of int
        Indices of the free-text columns (none in a table without free text).
    vocabularies_ : list of list of str
        Each free-text column's words and word pairs, in the order of their features.
    idfs_ : list of ndarray of float
        Each free-text column's inverse document frequencies of those terms.
    word_weights_ : list of ndarray of float
        What each term's TF-IDF weight, times this, adds.
    cells_ : list of list of str
        Each free-text column's cells seen in training (none without ``text_cells_``).
    cell_weights_ : list of ndarray of float
        What each of those cells adds.
    embedding_columns_ : ndarray of int
        Indices of the embedded columns (none without embeddings).
    embedding_names_ : list of str
        The name written before each embedded column's cells.
    embedding_weights_ : list of ndarray of float
        What each feature of a cell's raw embedding, times this, adds.
    intercept_ : float
        The prediction when every weight adds nothing.
    alpha_ : float
        The penalty RidgeCV chose.
    """

    def __init__(
        self,
        numeric_basis: str = "linear",
        text_cells: bool | str = False,
        text_embeddings: bool | str = False,
        embedding_model: str = "smollm2-135m",
        embedding_layer: int | None = None,
    ):
        self.numeric_basis = numeric_basis
        self.text_cells = text_cells
        self.text_embeddings = text_embeddings
        self.embedding_model = embedding_model
        self.embedding_layer = embedding_layer

    def fit(self, X, y) -> RidgeAnchor:
        """Fit the preprocessing and RidgeCV, and fold them into one function of the columns.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Numbers, categories, strings; NaN/None mean missing.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : RidgeAnchor

        Raises
        ------
        ValueError
            If ``numeric_basis``, ``text_cells`` or ``text_embeddings`` is not one of its
            values.
        """
        if self.numeric_basis not in NUMERIC_BASES:
            raise ValueError(
                f"numeric_basis must be one of {NUMERIC_BASES}, got {self.numeric_basis!r}"
            )
        for name in ("text_cells", "text_embeddings"):
            value = getattr(self, name)
            if not (isinstance(value, bool) or value == "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")
        X, y = validate_data(self, X, y, dtype=None, ensure_all_finite="allow-nan", y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        preprocessor = make_feature_preprocessor(X, free_text=True)
        n_numeric = len(preprocessor.transformers[0][2])
        bases = ["linear", "spline"] if self.numeric_basis == "auto" else [self.numeric_basis]
        if not n_numeric:
            bases = ["linear"]
        cells = [False, True] if self.text_cells == "auto" else [self.text_cells]
        if not any(name.startswith("text") for name, _, _ in preprocessor.transformers):
            cells = [False]
        embeds = [False, True] if self.text_embeddings == "auto" else [self.text_embeddings]
        if n_numeric == X.shape[1]:
            embeds = [False]
        # One choice at a time, each given the ones before: the numeric basis (with the
        # simpler text readings), then the cells, then the embeddings.
        basis = bases[
            self._choose(X, y, [(b, cells[0], embeds[0]) for b in bases], simplest_within_one_se)
        ]
        paired = simplest_within_one_paired_se
        cell = cells[self._choose(X, y, [(basis, c, embeds[0]) for c in cells], paired)]
        embed = embeds[self._choose(X, y, [(basis, cell, e) for e in embeds], paired)]
        pipeline = self._pipeline(X, basis, cell, embed)
        # One row has no spread to choose a penalty by: RidgeCV's leave-one-out error then
        # divides 0 by 0 (with numpy warnings) and fits the constant y, which is the answer.
        with np.errstate(invalid="ignore", divide="ignore"):
            pipeline.fit(X, y)
        self.numeric_basis_, self.text_cells_ = basis, bool(cell)
        self.text_embeddings_ = bool(embed)
        self._fold(pipeline[0], pipeline[1])
        return self

    def _pipeline(self, X: np.ndarray, basis: str, cells: bool, embed: bool) -> Pipeline:
        """Build the preprocessing of ``X`` with these readings of its columns, then RidgeCV."""
        preprocessor = make_feature_preprocessor(X, free_text=True)
        blocks = list(preprocessor.transformers)
        if cells:
            blocks += [
                (f"cells{columns[0]}", one_hot_encoder(), columns)
                for name, _, columns in preprocessor.transformers
                if name.startswith("text")
            ]
        name, numeric, columns = blocks[0]
        if basis == "spline" and len(columns):
            # The splines read the standardized values; the missing-indicators that follow
            # them pass through.
            splines = SplineTransformer(
                n_knots=SPLINE_KNOTS,
                degree=_SPLINE_DEGREE,
                knots="quantile",
                extrapolation="linear",
            )
            numeric.steps.append(
                (
                    "splines",
                    ColumnTransformer(
                        [("values", splines, list(range(len(columns))))], remainder="passthrough"
                    ),
                )
            )
        if embed:
            names = column_names(self, X.shape[1])
            blocks += [
                (
                    f"embed{j}",
                    LMCellEmbeddings(
                        model=self.embedding_model, layer=self.embedding_layer, names=[names[j]]
                    ),
                    [j],
                )
                for j in range(X.shape[1])
                if j not in set(columns)
            ]
        preprocessor = ColumnTransformer(blocks, sparse_threshold=preprocessor.sparse_threshold)
        return Pipeline([("features", preprocessor), ("ridge", RidgeCV(alphas=RIDGE_ALPHAS))])

    def _choose(self, X, y, candidates: list[tuple], rule) -> int:
        """Index of the candidate reading (basis, cells, embeddings) that ``rule`` picks.

        ``rule`` reads the candidates' 5-fold cross-validated scores (simplest first). With
        one candidate, or too few rows to choose on, the first is kept.
        """
        if len(candidates) == 1 or len(y) < MIN_ROWS_TO_CHOOSE:
            return 0
        folds = KFold(CHOICE_FOLDS, shuffle=True, random_state=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores = np.column_stack(
                [
                    # A candidate that cannot be fitted fails the fit: a NaN score would
                    # otherwise be read as the best one.
                    cross_val_score(
                        self._pipeline(X, *c),
                        X,
                        y,
                        cv=folds,
                        scoring="neg_mean_squared_error",
                        error_score="raise",
                    )
                    for c in candidates
                ]
            )
        return rule(scores)

    def _fold(self, preprocessor: ColumnTransformer, ridge: RidgeCV) -> None:
        """Turn the fitted preprocessing and ridge into a function of the raw columns."""
        coef = np.asarray(ridge.coef_, dtype=np.float64).ravel()
        intercept = float(ridge.intercept_)
        columns = {
            name: np.asarray(cols, dtype=np.intp) for name, _, cols in preprocessor.transformers_
        }
        slices = preprocessor.output_indices_
        self.numeric_columns_ = columns["numeric"]
        n_numeric = self.numeric_columns_.size
        self.numeric_weights_ = np.zeros(n_numeric)
        self.numeric_splines_ = [None] * n_numeric
        self.missing_values_ = np.zeros(n_numeric)
        if n_numeric:
            steps = preprocessor.named_transformers_["numeric"].named_steps
            imputer, scaler = steps["simpleimputer"], steps["standardscaler"]
            flagged = imputer.indicator_.features_
            weights = coef[slices["numeric"]]
            if "splines" in steps:
                splines = steps["splines"].named_transformers_["values"]
                width = splines.n_features_out_ // n_numeric
                values, indicators = weights[: width * n_numeric], weights[width * n_numeric :]
                for j, spline in enumerate(splines.bsplines_):
                    # A B-spline of the standardized value is the same B-spline of the raw
                    # value on knots moved back to raw units.
                    knots = spline.t * scaler.scale_[j] + scaler.mean_[j]
                    self.numeric_splines_[j] = (knots, values[j * width : (j + 1) * width])
                    self.missing_values_[j] = _spline_values(
                        *self.numeric_splines_[j], imputer.statistics_[j : j + 1]
                    )[0]
            else:
                # The features are (value - mean) / scale: the means move into the intercept.
                scaled = weights[:n_numeric] / scaler.scale_[:n_numeric]
                intercept -= float(scaled @ scaler.mean_[:n_numeric])
                self.numeric_weights_ = scaled
                self.missing_values_ = scaled * imputer.statistics_
                indicators = weights[n_numeric:]
            # The missing-indicators are standardized like the values, whatever the basis.
            indicators = indicators / scaler.scale_[n_numeric:]
            intercept -= float(indicators @ scaler.mean_[n_numeric:])
            self.missing_values_[flagged] += indicators
        self.categorical_columns_ = columns["categorical"]
        self.categories_, self.category_weights_ = [], []
        if self.categorical_columns_.size:
            encoder = preprocessor.named_transformers_["categorical"].named_steps["onehotencoder"]
            weights = coef[slices["categorical"]]
            for categories in encoder.categories_:
                self.categories_.append([str(c) for c in categories])
                self.category_weights_.append(weights[: len(categories)])
                weights = weights[len(categories) :]
        names = [name for name in columns if name.startswith("text")]
        self.text_columns_ = np.array([columns[name][0] for name in names], dtype=np.intp)
        self.vocabularies_, self.idfs_, self.word_weights_ = [], [], []
        for name in names:
            vectorizer = preprocessor.named_transformers_[name].named_steps["tfidfvectorizer"]
            self.vocabularies_.append([str(term) for term in vectorizer.get_feature_names_out()])
            self.idfs_.append(np.asarray(vectorizer.idf_, dtype=np.float64))
            self.word_weights_.append(coef[slices[name]])
        self.cells_, self.cell_weights_ = [], []
        for name in [name for name in columns if name.startswith("cells")]:
            encoder = preprocessor.named_transformers_[name].named_steps["onehotencoder"]
            self.cells_.append([str(cell) for cell in encoder.categories_[0]])
            self.cell_weights_.append(coef[slices[name]])
        names = [name for name in columns if name.startswith("embed")]
        self.embedding_columns_ = np.array([columns[name][0] for name in names], dtype=np.intp)
        self.embedding_names_, self.embedding_weights_ = [], []
        for name in names:
            embedder = preprocessor.named_transformers_[name]
            # Features are (embedding - mean) / scale / sqrt(width): fold all but the
            # embedding into its weights and the intercept.
            weights = coef[slices[name]] / embedder.scale_ / np.sqrt(embedder.scale_.size)
            intercept -= float(weights @ embedder.mean_)
            self.embedding_names_.append(str(embedder.names[0]))
            self.embedding_weights_.append(weights)
        used = sum(piece.stop - piece.start for piece in slices.values())
        if used != coef.size:
            raise RuntimeError(
                f"RidgeAnchor read {used} of the {coef.size} ridge coefficients: the feature "
                "preprocessing changed its layout"
            )
        self.intercept_ = intercept
        self.alpha_ = float(ridge.alpha_)

    def predict(self, X) -> np.ndarray:
        """Predict targets with the folded function.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Rows with the columns seen in :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite="allow-nan", reset=False)
        y_pred = np.full(len(X), self.intercept_)
        if self.numeric_columns_.size:
            values = _as_float(X[:, self.numeric_columns_])
            contributions = values * self.numeric_weights_
            for j, spline in enumerate(self.numeric_splines_):
                if spline is not None:
                    contributions[:, j] = _spline_values(*spline, values[:, j])
            y_pred += np.where(np.isnan(values), self.missing_values_, contributions).sum(axis=1)
        for column, categories, weights in zip(
            self.categorical_columns_, self.categories_, self.category_weights_, strict=True
        ):
            lookup = dict(zip(categories, weights.tolist(), strict=True))
            cells = _as_text(X[:, [column]]).ravel()
            y_pred += np.array([lookup.get(cell, 0.0) for cell in cells])
        for column, vocabulary, idf, weights in zip(
            self.text_columns_, self.vocabularies_, self.idfs_, self.word_weights_, strict=True
        ):
            vectorizer = word_vectorizer(vocabulary={term: i for i, term in enumerate(vocabulary)})
            vectorizer.idf_ = idf
            y_pred += vectorizer.transform(_as_documents(X[:, [column]])) @ weights
        # Cells read as categories come in the order of the free-text columns.
        for column, cells, weights in zip(
            self.text_columns_[: len(self.cells_)], self.cells_, self.cell_weights_, strict=True
        ):
            lookup = dict(zip(cells, weights.tolist(), strict=True))
            y_pred += np.array([lookup.get(cell, 0.0) for cell in _as_text(X[:, [column]]).ravel()])
        for column, name, weights in zip(
            self.embedding_columns_, self.embedding_names_, self.embedding_weights_, strict=True
        ):
            texts = cell_texts(name, X[:, column])
            embeddings = embed_texts(texts, model=self.embedding_model, layer=self.embedding_layer)
            y_pred += embeddings.astype(np.float64) @ weights
        return y_pred

    def to_json(self) -> dict:
        """Return the fitted function as JSON values (floats written exactly).

        Returns
        -------
        state : dict
            What :meth:`from_json` reads.
        """
        check_is_fitted(self)
        state = {
            "n_features_in": int(self.n_features_in_),
            "numeric_basis": self.numeric_basis_,
            "numeric_columns": self.numeric_columns_.tolist(),
            "numeric_weights": self.numeric_weights_.tolist(),
            "numeric_splines": [
                None
                if spline is None
                else {"knots": spline[0].tolist(), "coefs": spline[1].tolist()}
                for spline in self.numeric_splines_
            ],
            "missing_values": self.missing_values_.tolist(),
            "categorical_columns": self.categorical_columns_.tolist(),
            "categories": self.categories_,
            "category_weights": [weights.tolist() for weights in self.category_weights_],
            "text_columns": self.text_columns_.tolist(),
            "vocabularies": self.vocabularies_,
            "idfs": [idf.tolist() for idf in self.idfs_],
            "word_weights": [weights.tolist() for weights in self.word_weights_],
            "text_cells": self.text_cells_,
            "cells": self.cells_,
            "cell_weights": [weights.tolist() for weights in self.cell_weights_],
            "text_embeddings": self.text_embeddings_,
            "embedding_model": self.embedding_model,
            "embedding_layer": self.embedding_layer,
            "embedding_columns": self.embedding_columns_.tolist(),
            "embedding_names": self.embedding_names_,
            "embedding_weights": [weights.tolist() for weights in self.embedding_weights_],
            "intercept": self.intercept_,
            "alpha": self.alpha_,
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in"] = self.feature_names_in_.tolist()
        return state

    @classmethod
    def from_json(cls, state: dict) -> RidgeAnchor:
        """Rebuild a fitted anchor from :meth:`to_json`.

        Parameters
        ----------
        state : dict
            From :meth:`to_json` (a model folder's ``anchor`` section).

        Returns
        -------
        anchor : RidgeAnchor
            Predicts exactly as the anchor that wrote ``state``.

        Raises
        ------
        ValueError
            If ``state`` is incomplete or inconsistent, or holds a non-finite weight.
        """
        try:
            layer = state.get("embedding_layer")
            if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)):
                raise ValueError(f"embedding_layer must be an int or null, got {layer!r}")
            anchor = cls(
                embedding_model=str(state.get("embedding_model", "smollm2-135m")),
                embedding_layer=layer,
            )
            anchor.n_features_in_ = _count(state["n_features_in"])
            _names_from_json(anchor, state)
            # A state written before splines and embeddings existed has neither.
            anchor.numeric_basis_ = str(state.get("numeric_basis", "linear"))
            anchor.text_embeddings_ = bool(state.get("text_embeddings", False))
            anchor.text_cells_ = bool(state.get("text_cells", False))
            anchor.cells_ = [[str(c) for c in cells] for cells in state.get("cells", [])]
            anchor.cell_weights_ = [_weights(w) for w in state.get("cell_weights", [])]
            anchor.numeric_columns_ = _columns(state["numeric_columns"], anchor.n_features_in_)
            anchor.numeric_weights_ = _weights(state["numeric_weights"])
            splines = state.get("numeric_splines", [None] * anchor.numeric_columns_.size)
            anchor.numeric_splines_ = [
                None if spline is None else (_weights(spline["knots"]), _weights(spline["coefs"]))
                for spline in splines
            ]
            anchor.missing_values_ = _weights(state["missing_values"])
            anchor.categorical_columns_ = _columns(
                state["categorical_columns"], anchor.n_features_in_
            )
            anchor.categories_ = [[str(c) for c in cats] for cats in state["categories"]]
            anchor.category_weights_ = [_weights(w) for w in state["category_weights"]]
            # A state written before free text had its own features has none.
            anchor.text_columns_ = _columns(state.get("text_columns", []), anchor.n_features_in_)
            vocabularies = state.get("vocabularies", [])
            anchor.vocabularies_ = [[str(term) for term in terms] for terms in vocabularies]
            anchor.idfs_ = [_weights(idf) for idf in state.get("idfs", [])]
            anchor.word_weights_ = [_weights(w) for w in state.get("word_weights", [])]
            anchor.embedding_columns_ = _columns(
                state.get("embedding_columns", []), anchor.n_features_in_
            )
            anchor.embedding_names_ = [str(name) for name in state.get("embedding_names", [])]
            anchor.embedding_weights_ = [_weights(w) for w in state.get("embedding_weights", [])]
            anchor.intercept_ = float(_weights([state["intercept"]])[0])
            anchor.alpha_ = float(_weights([state["alpha"]])[0])
        except (KeyError, TypeError) as err:
            raise ValueError(f"incomplete RidgeAnchor state: {err!r}") from err
        if not _consistent(anchor):
            raise ValueError(
                "inconsistent RidgeAnchor state: its columns, weights and categories do not "
                "match one another"
            )
        return anchor


def _names_from_json(anchor: BaseEstimator, state: dict) -> None:
    """Set ``feature_names_in_`` from a state that has it, checked against the width."""
    if "feature_names_in" in state:
        names = [str(name) for name in state["feature_names_in"]]
        if len(names) != anchor.n_features_in_:
            raise ValueError("feature_names_in does not name every column")
        anchor.feature_names_in_ = np.asarray(names, dtype=object)


def _consistent(anchor: RidgeAnchor) -> bool:
    """Whether a rebuilt anchor's columns, weights, splines and vocabularies agree."""
    n_numeric = anchor.numeric_columns_.size
    columns = np.concatenate(
        [anchor.numeric_columns_, anchor.categorical_columns_, anchor.text_columns_]
    )
    splines_agree = len(anchor.numeric_splines_) == n_numeric and all(
        spline is None
        or (
            spline[0].size == spline[1].size + _SPLINE_DEGREE + 1
            and np.all(np.diff(spline[0]) >= 0)
        )
        for spline in anchor.numeric_splines_
    )
    return (
        anchor.numeric_weights_.size == n_numeric == anchor.missing_values_.size
        and splines_agree
        and len(anchor.categories_) == len(anchor.category_weights_)
        and len(anchor.categories_) == anchor.categorical_columns_.size
        and all(
            len(c) == w.size
            for c, w in zip(anchor.categories_, anchor.category_weights_, strict=True)
        )
        and len(anchor.vocabularies_) == len(anchor.idfs_) == len(anchor.word_weights_)
        and len(anchor.vocabularies_) == anchor.text_columns_.size
        and all(
            len(v) == i.size == w.size
            for v, i, w in zip(
                anchor.vocabularies_, anchor.idfs_, anchor.word_weights_, strict=True
            )
        )
        and len(anchor.cells_) == len(anchor.cell_weights_)
        and len(anchor.cells_) in (0, anchor.text_columns_.size)
        and all(len(c) == w.size for c, w in zip(anchor.cells_, anchor.cell_weights_, strict=True))
        and len(anchor.embedding_names_) == len(anchor.embedding_weights_)
        and len(anchor.embedding_names_) == anchor.embedding_columns_.size
        and len({w.size for w in anchor.embedding_weights_}) <= 1
        and not set(anchor.embedding_columns_.tolist()) & set(anchor.numeric_columns_.tolist())
        and np.array_equal(np.sort(columns), np.arange(anchor.n_features_in_))
    )


def _spline_values(knots: np.ndarray, coefs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate a cubic B-spline at ``x``, linear beyond its knots' base interval.

    As scikit-learn's ``SplineTransformer(extrapolation="linear")`` continues each basis
    function (and so their weighted sum). NaN stays NaN.
    """
    # Without BSpline's checks, as SplineTransformer builds its splines: the knots of a
    # column with a single value coincide, which the checks refuse and the transform reads.
    spline = BSpline.construct_fast(knots, coefs, _SPLINE_DEGREE, extrapolate=False)
    low, high = knots[_SPLINE_DEGREE], knots[-_SPLINE_DEGREE - 1]
    # Slopes at the ends evaluated directly (nu=1): knots repeated where a column has many
    # equal values make BSpline.derivative() refuse, as scikit-learn's own transform avoids.
    out = spline(np.clip(x, low, high))
    out = np.where(x < low, spline(low) + (x - low) * spline(low, nu=1), out)
    return np.where(x > high, spline(high) + (x - high) * spline(high, nu=1), out)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"n_features_in must be a positive int, got {value!r}")
    return int(value)


def _columns(values: object, n_features: int) -> np.ndarray:
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in values):
        raise ValueError(f"column indices must be ints, got {values!r}")
    columns = np.asarray(values, dtype=np.intp).reshape(-1)
    if np.any((columns < 0) | (columns >= n_features)):
        raise ValueError(f"column indices {columns.tolist()} out of range for {n_features}")
    return columns


def _weights(values: object) -> np.ndarray:
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
        raise ValueError(f"weights must be numbers, got {values!r}")
    weights = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(weights).all():
        raise ValueError(f"weights must be finite, got {weights.tolist()}")
    return weights


def _additive_gp(language_model: str | None) -> BaseEstimator:
    """Return the ``"additive"`` anchor blended with a Gaussian process."""
    # kernel_anchor builds on this module, so it is imported when the anchor is made.
    from .kernel_anchor import KernelBlendAnchor

    return KernelBlendAnchor(ridge=ANCHORS["additive"](language_model))


# The anchors ``anchor`` may name, each built from the LLMRegressor's language model (the
# base LM that embeds text cells where the anchor does; None for a backbone without one);
# any other value is an estimator of the user's.
ANCHORS: dict[str, Callable[[str | None], BaseEstimator]] = {
    "ridge": lambda language_model: RidgeAnchor(),
    "additive": lambda language_model: RidgeAnchor(
        numeric_basis="auto",
        text_cells="auto",
        text_embeddings="auto" if language_model else False,
        embedding_model=language_model or "smollm2-135m",
    ),
    "additive_gp": _additive_gp,
}

# What the model decodes with an anchor (``anchor_mode``): the target, with the estimate as a
# prompt field; or the target minus the estimate, which predictions add back.
ANCHOR_MODES = ("field", "residual")


# How ``residual_scale`` may be fitted on the calibration rows: their least-squares slope
# (``"auto"``), or that slope less one standard error (``"one_se"``).
RESIDUAL_SCALE_RULES = ("auto", "one_se")


def residual_slope(decoded: np.ndarray, residuals: np.ndarray, rule: str = "auto") -> float:
    """Return how much of the decoded residuals to add: their fitted slope, in [0, 1].

    The least-squares slope of ``residuals`` on ``decoded`` through the origin (a decoded
    residual of 0 adds nothing), clipped to [0, 1]: ``residual_scale="auto"``. With
    ``rule="one_se"``, the slope less its standard error before clipping: a correction is
    kept only as far as the rows show that it helps, so one that is mostly noise is
    dropped instead of being kept at whatever slope the noise of a few rows gives.

    Parameters
    ----------
    decoded : ndarray of shape (n_rows,)
        The model's decoded residual of each held-out row (the mean of its draws).
    residuals : ndarray of shape (n_rows,)
        The rows' true residuals, target minus estimate.
    rule : {"auto", "one_se"}, default="auto"
        The slope, or the slope less one standard error.

    Returns
    -------
    slope : float
        1.0 when every decoded residual is 0: there is nothing to scale. (On a single row
        the standard error is 0: a fit holds out at least 20.)

    Raises
    ------
    ValueError
        If ``rule`` is not one of :data:`RESIDUAL_SCALE_RULES`.
    """
    if rule not in RESIDUAL_SCALE_RULES:
        raise ValueError(f"rule must be one of {RESIDUAL_SCALE_RULES}, got {rule!r}")
    power = float(decoded @ decoded)
    if power == 0:
        return 1.0
    slope = decoded @ residuals / power
    if rule == "one_se":
        # The slope's standard error in a regression through the origin.
        variance = np.sum((residuals - slope * decoded) ** 2) / max(len(decoded) - 1, 1)
        slope -= np.sqrt(variance / power)
    return float(np.clip(slope, 0.0, 1.0))


def make_anchor(
    anchor: str | BaseEstimator, language_model: str | None = "smollm2-135m"
) -> BaseEstimator:
    """Return an unfitted anchor: the named one, or a clone of the user's estimator.

    Parameters
    ----------
    anchor : str or estimator
        The estimator's ``anchor`` parameter (not None).
    language_model : str or None, default="smollm2-135m"
        The estimator's ``model`` when it is a language model (the base LM of a named
        anchor's text embeddings), None for a backbone without one.

    Returns
    -------
    anchor : estimator
    """
    if isinstance(anchor, str):
        return ANCHORS[anchor](language_model)
    return clone(anchor)


def anchor_estimates(anchor: BaseEstimator, X: object, n_rows: int) -> np.ndarray:
    """Predict with a fitted anchor and check that it gave one finite number per row.

    Parameters
    ----------
    anchor : estimator
        A fitted anchor.
    X : DataFrame or array-like
        The rows, as the estimator was given them.
    n_rows : int
        How many rows ``X`` has.

    Returns
    -------
    estimates : ndarray of float64, shape (n_rows,)

    Raises
    ------
    ValueError
        If the anchor's predictions are not ``n_rows`` finite numbers.
    """
    return _checked(anchor.predict(X), n_rows, type(anchor).__name__)


def _checked(predictions: object, n_rows: int, name: str) -> np.ndarray:
    try:
        estimates = np.asarray(predictions, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the anchor {name} predicted values that are no numbers: {err}") from err
    if (
        estimates.size != n_rows
        or estimates.ndim > 2
        or (estimates.ndim == 2 and estimates.shape[1] != 1)
    ):
        raise ValueError(
            f"the anchor {name} must predict one number per row: {n_rows} rows gave an "
            f"array of shape {estimates.shape}"
        )
    estimates = estimates.reshape(-1)
    if not np.isfinite(estimates).all():
        raise ValueError(
            f"the anchor {name} predicted {int((~np.isfinite(estimates)).sum())} non-finite "
            "values; an estimate written into a prompt must be a finite number"
        )
    return estimates


def cross_fit(
    anchor: str | BaseEstimator, X: object, y: np.ndarray, folds: int, seed: int
) -> tuple[np.ndarray, BaseEstimator]:
    """Out-of-fold estimates of the training rows, and the anchor fitted on all of them.

    Parameters
    ----------
    anchor : str or estimator
        The estimator's ``anchor`` parameter (not None), or an unfitted anchor to clone.
    X : DataFrame or array-like of shape (n_rows, n_features)
        The training rows, as the estimator was given them.
    y : ndarray of shape (n_rows,)
        Their targets.
    folds : int
        Folds of the cross-fit (``anchor_folds``); at most one per row.
    seed : int
        Shuffles the rows into folds (the fit's seed).

    Returns
    -------
    estimates : ndarray of shape (n_rows,)
        Each row's estimate by the anchor fitted on the folds without it.
    fitted : estimator
        The anchor fitted on every row; it gives the estimates of new rows.
    """
    splits = KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed)
    name = anchor if isinstance(anchor, str) else type(anchor).__name__
    estimates = _checked(cross_val_predict(make_anchor(anchor), X, y, cv=splits), len(y), name)
    return estimates, make_anchor(anchor).fit(X, y)


def with_estimates(X: np.ndarray, estimates: np.ndarray) -> np.ndarray:
    """Append the anchor's estimates to validated rows as their last column.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Validated rows (numeric or object dtype).
    estimates : ndarray of shape (n_rows,)
        The anchor's estimate of each row's target.

    Returns
    -------
    rows : ndarray of shape (n_rows, n_features + 1)
        Float rows stay float; any other dtype becomes object, so that integers, booleans
        and strings keep the type their prompts are written from.
    """
    if X.dtype.kind == "f":
        # float64 however narrow X is: widening keeps every feature's value, and the
        # estimate keeps all of its digits.
        return np.column_stack([X, estimates])
    rows = np.empty((X.shape[0], X.shape[1] + 1), dtype=object)
    rows[:, :-1] = X
    rows[:, -1] = estimates
    return rows
