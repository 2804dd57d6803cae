"""Checks of parameter values and inputs, with messages a user can act on.

The parameter checks are small factories that :mod:`llmregressor.params` assigns to each
parameter; each check takes the parameter's name and value and raises TypeError or
ValueError naming both.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable

import numpy as np
from sklearn.utils.validation import validate_data as _sklearn_validate_data

__all__ = [
    "boolean",
    "check_finite_features",
    "int_in",
    "one_of",
    "optional",
    "real_in",
    "string",
    "validate_data",
]


Check = Callable[[str, object], None]


def int_in(low: int, high: int | None = None) -> Check:
    """Return a check that a value is an int in ``[low, high]`` (``high`` None: no bound)."""

    def check(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"{name} must be an int {bound}, got {value}")

    return check


def real_in(
    low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Check:
    """Return a check that a value is a finite real number in the given interval."""

    def check(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or not np.isfinite(value):
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(
                f"{name} must be in {left}{low}, {high if high else 'inf'}{right}, got {value}"
            )

    return check


def one_of(choices: Iterable[object]) -> Check:
    """Return a check that a value is one of ``choices`` (a registry's keys)."""
    choices = tuple(choices)

    def check(name: str, value: object) -> None:
        if value not in choices:
            raise ValueError(
                f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}"
            )

    return check


def optional(inner: Check) -> Check:
    """Return a check that lets None through and applies ``inner`` to anything else."""

    def check(name: str, value: object) -> None:
        if value is None:
            return
        try:
            inner(name, value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{err} (or None)") from None

    return check


def boolean(name: str, value: object) -> None:
    """Check that a value is True or False (numpy bools too)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def string(name: str, value: object) -> None:
    """Check that a value is a string."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")


def validate_data(estimator: object, X: object, *args, **kwargs):
    """Run scikit-learn's ``validate_data``, first refusing a DataFrame without columns.

    scikit-learn reports a DataFrame without columns as "at least one array or dtype is
    required" (from numpy), which names neither X nor columns; an array without columns
    gets its own clear message.

    Parameters
    ----------
    estimator : estimator
        The estimator whose input is checked.
    X : array-like or DataFrame
        The rows.
    *args, **kwargs
        Passed on to scikit-learn's ``validate_data``.

    Returns
    -------
    validated : ndarray or tuple
        What scikit-learn's ``validate_data`` returns.
    """
    if hasattr(X, "dtypes") and len(X.shape) == 2 and X.shape[1] == 0:
        raise ValueError(
            f"X has no columns (shape {tuple(X.shape)}): LLMRegressor needs at least one "
            "feature column"
        )
    return _sklearn_validate_data(estimator, X, *args, **kwargs)


def check_finite_features(X: np.ndarray) -> None:
    """Reject infinite numbers in an object-dtype feature array (NaN means missing and is fine).

    Numeric arrays are checked by scikit-learn's ``validate_data``; object arrays (mixed
    DataFrames) are not, so their float cells are checked here.
    """
    if X.dtype != object:
        return
    for value in X.ravel():
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isinf(value):
            raise ValueError(
                "Input X contains infinity. Missing values may be NaN, but every number must "
                "be finite."
            )
