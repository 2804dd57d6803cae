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
TF-IDF words, and ``RidgeCV`` over :data:`RIDGE_ALPHAS`. Any scikit-learn regressor may be
the anchor instead; it is cloned before each fit and receives ``X`` exactly as ``fit`` and
``predict`` got it (a DataFrame stays a DataFrame), so it can be a ``Pipeline`` with its own
``ColumnTransformer``.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted, validate_data

from .features import (
    _as_documents,
    _as_float,
    _as_text,
    make_feature_preprocessor,
    word_vectorizer,
)

__all__ = [
    "ANCHORS",
    "ANCHOR_MODES",
    "RIDGE_ALPHAS",
    "RidgeAnchor",
    "anchor_estimates",
    "cross_fit",
    "make_anchor",
    "residual_slope",
    "with_estimates",
]

# The penalties RidgeCV chooses from (leave-one-out error, computed in closed form).
RIDGE_ALPHAS = np.logspace(-3, 3, 13)


class RidgeAnchor(RegressorMixin, BaseEstimator):
    """The anchor of ``anchor="ridge"``: standardized, imputed, one-hot, word features + RidgeCV.

    Fitting runs :func:`~llmregressor.features.make_feature_preprocessor` with
    ``free_text=True`` (numbers imputed with the mean, flagged when missing and standardized;
    free-text columns, those with more than
    :data:`~llmregressor.features.TEXT_CARDINALITY` distinct cells of words, as TF-IDF of
    their words and word pairs; other columns one-hot encoded) and
    ``RidgeCV(alphas=RIDGE_ALPHAS)``, then folds both into one linear function of the raw
    columns: a weight per numeric column and what a missing cell adds in its place, a weight
    per category, a weight per word feature of each free-text column, and an intercept.
    :meth:`predict` evaluates that function, so a model rebuilt from :meth:`to_json` predicts
    exactly as the fitted one (a model folder stores the anchor without pickle).

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit` (only when X had string column names).
    numeric_columns_ : ndarray of int
        Indices of the numeric columns.
    numeric_weights_ : ndarray of float
        Weight of each numeric column's raw value.
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
    intercept_ : float
        The prediction when every weight adds nothing.
    alpha_ : float
        The penalty RidgeCV chose.
    """

    def __sklearn_tags__(self):
        """Declare NaN, strings and categories as valid input, as the LLMRegressor does."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags

    def fit(self, X, y) -> RidgeAnchor:
        """Fit the preprocessing and RidgeCV, and fold them into one linear function.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
            Numbers, categories, strings; NaN/None mean missing.
        y : array-like of shape (n_samples,)
            Targets.

        Returns
        -------
        self : RidgeAnchor
        """
        X, y = validate_data(self, X, y, dtype=None, ensure_all_finite="allow-nan", y_numeric=True)
        preprocessor = make_feature_preprocessor(X, free_text=True)
        ridge = RidgeCV(alphas=RIDGE_ALPHAS)
        # One row has no spread to choose a penalty by: RidgeCV's leave-one-out error then
        # divides 0 by 0 (with numpy warnings) and fits the constant y, which is the answer.
        with np.errstate(invalid="ignore", divide="ignore"):
            make_pipeline(preprocessor, ridge).fit(X, np.asarray(y, dtype=np.float64))
        self._fold(preprocessor, ridge)
        return self

    def _fold(self, preprocessor, ridge: RidgeCV) -> None:
        """Turn the fitted preprocessing and ridge into weights of the raw columns."""
        coef = np.asarray(ridge.coef_, dtype=np.float64).ravel()
        intercept = float(ridge.intercept_)
        columns = {
            name: np.asarray(cols, dtype=np.intp) for name, _, cols in preprocessor.transformers_
        }
        slices = preprocessor.output_indices_
        self.numeric_columns_ = columns["numeric"]
        self.numeric_weights_ = np.zeros(0)
        self.missing_values_ = np.zeros(0)
        if self.numeric_columns_.size:
            steps = preprocessor.named_transformers_["numeric"].named_steps
            imputer, scaler = steps["simpleimputer"], steps["standardscaler"]
            flagged = imputer.indicator_.features_
            # The features are (value - mean) / scale, for the imputed values and then the
            # missing-indicators: the means move into the intercept.
            scaled = coef[slices["numeric"]] / scaler.scale_
            intercept -= float(scaled @ scaler.mean_)
            self.numeric_weights_ = scaled[: self.numeric_columns_.size]
            missing = self.numeric_weights_ * imputer.statistics_
            missing[flagged] += scaled[self.numeric_columns_.size :]
            self.missing_values_ = missing
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
        used = sum(piece.stop - piece.start for piece in slices.values())
        if used != coef.size:
            raise RuntimeError(
                f"RidgeAnchor read {used} of the {coef.size} ridge coefficients: the feature "
                "preprocessing changed its layout"
            )
        self.intercept_ = intercept
        self.alpha_ = float(ridge.alpha_)

    def predict(self, X) -> np.ndarray:
        """Predict targets with the folded linear function.

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
            contributions = np.where(
                np.isnan(values), self.missing_values_, values * self.numeric_weights_
            )
            y_pred += contributions.sum(axis=1)
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
            "numeric_columns": self.numeric_columns_.tolist(),
            "numeric_weights": self.numeric_weights_.tolist(),
            "missing_values": self.missing_values_.tolist(),
            "categorical_columns": self.categorical_columns_.tolist(),
            "categories": self.categories_,
            "category_weights": [weights.tolist() for weights in self.category_weights_],
            "text_columns": self.text_columns_.tolist(),
            "vocabularies": self.vocabularies_,
            "idfs": [idf.tolist() for idf in self.idfs_],
            "word_weights": [weights.tolist() for weights in self.word_weights_],
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
            anchor = cls()
            anchor.n_features_in_ = _count(state["n_features_in"])
            if "feature_names_in" in state:
                names = [str(name) for name in state["feature_names_in"]]
                if len(names) != anchor.n_features_in_:
                    raise ValueError("feature_names_in does not name every column")
                anchor.feature_names_in_ = np.asarray(names, dtype=object)
            anchor.numeric_columns_ = _columns(state["numeric_columns"], anchor.n_features_in_)
            anchor.numeric_weights_ = _weights(state["numeric_weights"])
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
            anchor.intercept_ = float(_weights([state["intercept"]])[0])
            anchor.alpha_ = float(_weights([state["alpha"]])[0])
        except (KeyError, TypeError) as err:
            raise ValueError(f"incomplete RidgeAnchor state: {err!r}") from err
        n_numeric = anchor.numeric_columns_.size
        columns = np.concatenate(
            [anchor.numeric_columns_, anchor.categorical_columns_, anchor.text_columns_]
        )
        consistent = (
            anchor.numeric_weights_.size == n_numeric == anchor.missing_values_.size
            and len(anchor.categories_)
            == len(anchor.category_weights_)
            == anchor.categorical_columns_.size
            and all(
                len(c) == w.size
                for c, w in zip(anchor.categories_, anchor.category_weights_, strict=True)
            )
            and len(anchor.vocabularies_)
            == len(anchor.idfs_)
            == len(anchor.word_weights_)
            == anchor.text_columns_.size
            and all(
                len(v) == i.size == w.size
                for v, i, w in zip(
                    anchor.vocabularies_, anchor.idfs_, anchor.word_weights_, strict=True
                )
            )
            and np.array_equal(np.sort(columns), np.arange(anchor.n_features_in_))
        )
        if not consistent:
            raise ValueError(
                "inconsistent RidgeAnchor state: its columns, weights and categories do not "
                "match one another"
            )
        return anchor


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


# The anchors ``anchor`` may name; any other value is an estimator of the user's.
ANCHORS: dict[str, type[RidgeAnchor]] = {"ridge": RidgeAnchor}

# What the model decodes with an anchor (``anchor_mode``): the target, with the estimate as a
# prompt field; or the target minus the estimate, which predictions add back.
ANCHOR_MODES = ("field", "residual")


def residual_slope(decoded: np.ndarray, residuals: np.ndarray) -> float:
    """Return how much of the decoded residuals to add: their fitted slope, in [0, 1].

    The least-squares slope of ``residuals`` on ``decoded`` through the origin (a decoded
    residual of 0 adds nothing), clipped to [0, 1]: ``residual_scale="auto"``.

    Parameters
    ----------
    decoded : ndarray of shape (n_rows,)
        The model's decoded residual of each held-out row (the mean of its draws).
    residuals : ndarray of shape (n_rows,)
        The rows' true residuals, target minus estimate.

    Returns
    -------
    slope : float
        1.0 when every decoded residual is 0: there is nothing to scale.
    """
    power = float(decoded @ decoded)
    if power == 0:
        return 1.0
    return float(np.clip(decoded @ residuals / power, 0.0, 1.0))


def make_anchor(anchor: str | BaseEstimator) -> BaseEstimator:
    """Return an unfitted anchor: the named one, or a clone of the user's estimator.

    Parameters
    ----------
    anchor : str or estimator
        The estimator's ``anchor`` parameter (not None).

    Returns
    -------
    anchor : estimator
    """
    if isinstance(anchor, str):
        return ANCHORS[anchor]()
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
