"""Metrics of predictive distributions that scikit-learn does not provide."""

from __future__ import annotations

import numpy as np

__all__ = ["interval_coverage"]


def interval_coverage(y, intervals) -> float:
    """Share of targets inside their prediction interval (bounds included).

    For intervals from :meth:`~llmregressor.LLMRegressor.predict_interval` with
    ``coverage=c``, a calibrated model scores close to ``c`` on held-out rows. Infinite
    bounds (calibrated intervals of a coverage too high for the calibration rows) hold
    every target.

    Parameters
    ----------
    y : array-like of shape (n,)
        True targets.
    intervals : array-like of shape (n, 2)
        Lower and upper bound of each row's interval.

    Returns
    -------
    coverage : float
        In [0, 1].

    Raises
    ------
    ValueError
        If the shapes do not match, a target is not finite, a bound is NaN or a lower
        bound exceeds its upper bound.

    Examples
    --------
    >>> interval_coverage([1.0, 5.0], [[0.0, 2.0], [0.0, 2.0]])
    0.5
    """
    y = np.asarray(y, dtype=np.float64)
    intervals = np.asarray(intervals, dtype=np.float64)
    if y.ndim != 1 or y.size == 0 or intervals.shape != (len(y), 2):
        raise ValueError(
            "y must have shape (n,) with n >= 1 and intervals shape (n, 2); got "
            f"{y.shape} and {intervals.shape}"
        )
    if not np.isfinite(y).all() or np.isnan(intervals).any():
        raise ValueError("y must be finite and intervals free of NaN")
    lower, upper = intervals[:, 0], intervals[:, 1]
    if (lower > upper).any():
        raise ValueError("every interval's lower bound must be <= its upper bound")
    return float(np.mean((lower <= y) & (y <= upper)))
