"""Feature preprocessing of the ``mlp-decoder`` backbone: table rows -> numeric vectors.

The MLP encoder reads a fixed-width float vector, so each column becomes numbers:

- a column whose present cells are all numbers (bools included) is numeric: missing cells
  are imputed with the training mean and flagged in an indicator column, then every
  column is standardized with the training statistics;
- any other column (strings, categories, mixed cells) is categorical: one-hot encoded,
  with "missing" as a category of its own and unseen categories encoded as all zeros.

With ``free_text=True`` (the ridge anchor's preprocessing) a categorical column with more than
:data:`TEXT_CARDINALITY` distinct cells that holds words is *free text* instead: its features
are the TF-IDF weights of its words and word pairs, so that an unseen cell ("Double Bacon
Burger") still shares features with the cells seen in training ("Bacon Burger").

Missing means what :func:`~llmregressor.serialize.is_missing` says (``None``, ``NaN``,
``pd.NA``, ``NaT`` or a blank string), as in prompts.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from .serialize import is_missing

__all__ = [
    "MISSING_CATEGORY",
    "TEXT_CARDINALITY",
    "WORD_FEATURES",
    "column_names",
    "free_text_columns",
    "make_feature_preprocessor",
    "numeric_columns",
    "one_hot_encoder",
    "word_vectorizer",
]

# The category name of a missing cell in a categorical column.
MISSING_CATEGORY = "<missing>"

# A non-numeric column with more distinct cells than this is free text: one-hot columns of
# cells that rarely repeat say nothing about new rows. skrub's TableVectorizer draws its line
# between low- and high-cardinality columns at the same count.
TEXT_CARDINALITY = 40

# How free text becomes features: TF-IDF of words and word pairs, with sublinear term
# frequency (a word said twice is not twice the evidence), as TfidfVectorizer keywords.
WORD_FEATURES = {"ngram_range": (1, 2), "sublinear_tf": True}


def numeric_columns(X: np.ndarray) -> np.ndarray:
    """Flag the columns whose present cells are all real numbers.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated training rows (numeric or object dtype).

    Returns
    -------
    is_numeric : ndarray of bool, shape (n_features,)
    """
    if X.dtype != object:
        return np.ones(X.shape[1], dtype=bool)
    return np.array(
        [all(isinstance(v, numbers.Real) for v in column if not is_missing(v)) for column in X.T],
        dtype=bool,
    )


def _as_float(X: np.ndarray) -> np.ndarray:
    """Numeric cells as float64, every kind of missing marker as NaN."""
    if X.dtype != object:
        return X.astype(np.float64)
    out = np.empty(X.shape, dtype=np.float64)
    for index, value in np.ndenumerate(X):
        out[index] = np.nan if is_missing(value) else float(value)
    return out


def _as_text(X: np.ndarray) -> np.ndarray:
    """Categorical cells as strings, so that mixed cells form one sortable vocabulary."""
    out = np.empty(X.shape, dtype=object)
    for index, value in np.ndenumerate(X):
        out[index] = MISSING_CATEGORY if is_missing(value) else str(value)
    return out


def _as_documents(X: np.ndarray) -> np.ndarray:
    """Return the one column of ``X`` as documents; a missing cell is an empty one."""
    return np.array(["" if is_missing(v) else str(v) for v in X[:, 0]], dtype=object)


def column_names(estimator: object, n_features: int) -> list[str]:
    """Return the names of an estimator's input columns: those it was fitted with, or x0, x1...

    Parameters
    ----------
    estimator : estimator
        Validated by ``validate_data`` (which sets ``feature_names_in_`` for a DataFrame
        with string column names).
    n_features : int
        How many columns it reads.

    Returns
    -------
    names : list of str
    """
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return [f"x{j}" for j in range(n_features)]
    return [str(name) for name in names]


def one_hot_encoder() -> Pipeline:
    """Return the one-hot encoding of categorical cells (a missing cell is its own category).

    Returns
    -------
    encoder : Pipeline
        Dense output; categories unseen in fit encode as all zeros.
    """
    return make_pipeline(
        FunctionTransformer(_as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )


def word_vectorizer(**kwargs: object) -> TfidfVectorizer:
    """Return the TF-IDF vectorizer of a free-text column (:data:`WORD_FEATURES`).

    Parameters
    ----------
    **kwargs
        More ``TfidfVectorizer`` keywords (a fixed ``vocabulary`` when rebuilding one).

    Returns
    -------
    vectorizer : TfidfVectorizer
    """
    return TfidfVectorizer(**WORD_FEATURES, **kwargs)


def free_text_columns(X: np.ndarray) -> np.ndarray:
    """Flag the free-text columns: non-numeric, with words, and many distinct cells.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated training rows.

    Returns
    -------
    is_text : ndarray of bool, shape (n_features,)
        True where a column is not numeric, has more than :data:`TEXT_CARDINALITY`
        distinct present cells, and at least one of them holds a word the vectorizer reads.
    """
    return _free_text(X, numeric_columns(X))


def _free_text(X: np.ndarray, is_numeric: np.ndarray) -> np.ndarray:
    """:func:`free_text_columns`, given the numeric columns' flags."""
    words = word_vectorizer().build_analyzer()
    is_text = np.zeros(X.shape[1], dtype=bool)
    for j in np.flatnonzero(~is_numeric):
        cells = {str(v) for v in X[:, j] if not is_missing(v)}
        is_text[j] = len(cells) > TEXT_CARDINALITY and any(words(cell) for cell in cells)
    return is_text


def make_feature_preprocessor(X: np.ndarray, *, free_text: bool = False) -> ColumnTransformer:
    """Build the (unfitted) preprocessing of the training rows ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated training rows; it decides which columns are numeric (and free text).
    free_text : bool, default=False
        Give each free-text column (:func:`free_text_columns`) its own block of TF-IDF word
        features, named ``"text<j>"`` after the column's index, instead of one-hot columns.

    Returns
    -------
    preprocessor : ColumnTransformer
        Fit it on ``X``; its ``transform`` returns a float64 array, dense without free-text
        blocks and sparse with them.
    """
    is_numeric = numeric_columns(X)
    is_text = _free_text(X, is_numeric) if free_text else np.zeros_like(is_numeric)
    numeric = make_pipeline(
        FunctionTransformer(_as_float, feature_names_out="one-to-one"),
        # keep_empty_features: a column missing in every training row still gets its
        # (constant) slot, so that every feature keeps a place in the input vector.
        SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    text = [
        (f"text{j}", make_pipeline(FunctionTransformer(_as_documents), word_vectorizer()), [j])
        for j in np.flatnonzero(is_text)
    ]
    return ColumnTransformer(
        [
            ("numeric", numeric, np.flatnonzero(is_numeric)),
            ("categorical", one_hot_encoder(), np.flatnonzero(~is_numeric & ~is_text)),
            *text,
        ],
        # Word features are sparse and many: stacked sparse whenever there are any.
        sparse_threshold=1.0 if text else 0.0,
    )
