"""Feature preprocessing of the ``mlp-decoder`` backbone: table rows -> numeric vectors.

The MLP encoder reads a fixed-width float vector, so each column becomes numbers:

- a column whose present cells are all numbers (bools included) is numeric: missing cells
  are imputed with the training mean and flagged in an indicator column, then every
  column is standardized with the training statistics;
- any other column (strings, categories, mixed cells) is categorical: one-hot encoded,
  with "missing" as a category of its own and unseen categories encoded as all zeros.

Missing means what :func:`~llmregressor.serialize.is_missing` says (``None``, ``NaN``,
``pd.NA``, ``NaT`` or a blank string), as in prompts.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from .serialize import is_missing

__all__ = ["MISSING_CATEGORY", "make_feature_preprocessor", "numeric_columns"]

# The category name of a missing cell in a categorical column.
MISSING_CATEGORY = "<missing>"


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


def make_feature_preprocessor(X: np.ndarray) -> ColumnTransformer:
    """Build the (unfitted) preprocessing of the training rows ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated training rows; it decides which columns are numeric.

    Returns
    -------
    preprocessor : ColumnTransformer
        Fit it on ``X``; its ``transform`` returns a dense float64 array.
    """
    is_numeric = numeric_columns(X)
    numeric = make_pipeline(
        FunctionTransformer(_as_float, feature_names_out="one-to-one"),
        # keep_empty_features: a column missing in every training row still gets its
        # (constant) slot, so that every feature keeps a place in the input vector.
        SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
    )
    categorical = make_pipeline(
        FunctionTransformer(_as_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, np.flatnonzero(is_numeric)),
            ("categorical", categorical, np.flatnonzero(~is_numeric)),
        ],
        sparse_threshold=0.0,
    )
