"""Split-conformal calibration of central intervals: conformalized quantile regression.

A model's raw central interval ``[lo, hi]`` at coverage ``c`` (its ``(1 - c) / 2`` and
``(1 + c) / 2`` quantiles) holds a share ``c`` of the targets only if the model's
predictive distribution is calibrated; a fine-tuned LM's usually is too narrow. CQR
(Romano, Patterson & Candès, *Conformalized Quantile Regression*, NeurIPS 2019) corrects
it with rows the model was not trained on: each calibration row ``i`` gets the score
``E_i = max(lo_i - y_i, y_i - hi_i)`` (how far its target lies outside its raw interval,
negative inside), and every new row's interval becomes ``[lo - Q, hi + Q]``, where ``Q``
is the ``k``-th smallest of the ``n`` scores, ``k = ceil((n + 1) c)``. If the
calibration rows and a new row are exchangeable (drawn alike, none trained on), the new
row's target lies inside with probability at least ``c`` and, for scores without ties,
below ``c + 1 / (n + 1)``, whatever the model and however wrong its distribution. When
``k > n`` (``c > n / (n + 1)``) no finite ``Q`` has that guarantee and the interval is
infinite. ``Q`` is negative where the raw intervals are too wide: CQR narrows them.

The scores depend on ``c``, so :func:`conformal_margin` computes ``Q`` from the
calibration rows' raw bounds at the requested coverage: a model keeps whatever it needs
to compute those bounds for any ``c`` (:class:`Calibration`) and ``c`` is chosen when
intervals are asked for. Pure numpy; :class:`~llmregressor.LLMRegressor` turns its draws
into bounds and calls these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CENTERS",
    "Calibration",
    "central_levels",
    "conformal_margin",
    "conformalize",
    "conformity_scores",
]

#: How a calibration turns a row's draws into raw bounds (:class:`Calibration`).
CENTERS = ("quantiles", "mean")


def central_levels(coverage: float) -> tuple[float, float]:
    """Quantile levels of the central interval of a coverage.

    Parameters
    ----------
    coverage : float
        In (0, 1].

    Returns
    -------
    low, high : float
        ``(1 - coverage) / 2`` and ``1 - (1 - coverage) / 2``.

    Examples
    --------
    >>> central_levels(0.5)
    (0.25, 0.75)
    """
    tail = (1 - float(coverage)) / 2
    return tail, 1 - tail


def conformity_scores(bounds: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CQR's score of each row: how far its target lies outside its interval.

    Parameters
    ----------
    bounds : ndarray of shape (n_rows, 2)
        Each row's raw lower and upper bound.
    y : ndarray of shape (n_rows,)
        Their targets.

    Returns
    -------
    scores : ndarray of shape (n_rows,)
        ``max(lower - y, y - upper)``: positive outside the interval (the distance to it),
        zero or negative inside (minus the distance to the nearer bound).

    Examples
    --------
    >>> conformity_scores(np.array([[0.0, 2.0], [0.0, 2.0]]), np.array([3.0, 0.5]))
    array([ 1. , -0.5])
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if bounds.ndim != 2 or bounds.shape[1] != 2 or y.shape != (len(bounds),):
        raise ValueError(
            f"bounds must have shape (n, 2) and y shape (n,); got {bounds.shape} and {y.shape}"
        )
    return np.maximum(bounds[:, 0] - y, y - bounds[:, 1])


def conformal_margin(scores: np.ndarray, coverage: float) -> float:
    """Return the split-conformal quantile ``Q`` of calibration scores for a coverage.

    Parameters
    ----------
    scores : ndarray of shape (n,)
        Conformity scores of ``n >= 1`` calibration rows (:func:`conformity_scores`).
    coverage : float
        The requested coverage ``c``, in (0, 1].

    Returns
    -------
    margin : float
        The ``k``-th smallest score, ``k = ceil((n + 1) c)`` (the ``k / n`` empirical
        quantile, no interpolation); ``inf`` when ``k > n``, that is when ``c`` exceeds
        ``n / (n + 1)``: no finite margin then guarantees the coverage. ``(n + 1) c`` is
        rounded to 9 decimals before the ceiling, so that float error in the product
        (``10 * 0.7`` is ``7.000000000000001``) does not add a row.

    Examples
    --------
    >>> conformal_margin(np.arange(1.0, 10.0), 0.8)  # k = ceil(10 * 0.8) = 8
    8.0
    >>> conformal_margin(np.arange(1.0, 10.0), 0.95)  # k = 10 > 9 rows
    inf
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0 or np.isnan(scores).any():
        raise ValueError(f"scores must be a non-empty 1-D array without NaN, got {scores!r}")
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
    n = scores.size
    k = math.ceil(round((n + 1) * float(coverage), 9))
    if k > n:
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


def conformalize(bounds: np.ndarray, margin: float) -> np.ndarray:
    """Move every interval's bounds outward by ``margin`` (inward when it is negative).

    Parameters
    ----------
    bounds : ndarray of shape (n_rows, 2)
        Raw lower and upper bounds.
    margin : float
        From :func:`conformal_margin`; ``inf`` gives ``(-inf, inf)``.

    Returns
    -------
    intervals : ndarray of shape (n_rows, 2)
        ``[lower - margin, upper + margin]``. A negative margin larger than half an
        interval's width would make its lower bound exceed its upper one (CQR's set is
        then empty); such an interval becomes the single point at its raw midpoint, a
        superset of the empty set that keeps ``lower <= upper``.

    Examples
    --------
    >>> conformalize(np.array([[0.0, 2.0], [0.0, 10.0]]), -2.0)
    array([[1., 1.],
           [2., 8.]])
    """
    bounds = np.asarray(bounds, dtype=np.float64)
    lower, upper = bounds[:, 0] - margin, bounds[:, 1] + margin
    crossed = lower > upper
    if crossed.any():
        middle = (bounds[crossed, 0] + bounds[crossed, 1]) / 2
        lower[crossed], upper[crossed] = middle, middle
    return np.column_stack([lower, upper])


@dataclass(frozen=True, eq=False)
class Calibration:
    """What a fitted model keeps to calibrate intervals of any coverage.

    Parameters
    ----------
    draws : ndarray of shape (n_rows, n_draws)
        The model's predictive draws for each calibration row, in target units, made the
        way intervals of new rows are made (see ``n_samples``); their empirical
        quantiles are the raw bounds whose scores calibrate the intervals.
    targets : ndarray of shape (n_rows,)
        The calibration rows' true targets.
    n_samples : int or "exact"
        How the draws were made: that many stratified samples per row, or ``"exact"``
        for the exact distribution's quantiles at the midpoints of equal strata (see
        :meth:`~llmregressor.engine.Sampler.calibration_draws`). New rows' draws must be
        made the same way for the scores to be exchangeable.
    center : {"quantiles", "mean"}, default="quantiles"
        How a row's raw bounds come from its draws, for calibration and new rows alike:
        their central quantiles at the requested coverage (CQR), or their mean, twice (a
        zero-width interval: split conformal on absolute residuals, every interval the
        prediction plus or minus one margin).

    Raises
    ------
    ValueError
        If the shapes disagree, there are no rows or draws, a value is not finite, an int
        ``n_samples`` is not the number of draws per row, or ``center`` is unknown.
    """

    draws: np.ndarray
    targets: np.ndarray
    n_samples: int | str
    center: str = "quantiles"

    def __post_init__(self) -> None:
        # Copies: the caller's arrays may change, the calibration may not.
        draws = np.array(self.draws, dtype=np.float64)
        targets = np.array(self.targets, dtype=np.float64)
        if draws.ndim != 2 or draws.shape[1] == 0 or targets.shape != (len(draws),):
            raise ValueError(
                "a calibration needs draws of shape (n_rows, n_draws >= 1) and targets of "
                f"shape (n_rows,); got {draws.shape} and {targets.shape}"
            )
        if len(targets) == 0 or not (np.isfinite(draws).all() and np.isfinite(targets).all()):
            raise ValueError("a calibration needs at least one row, and finite draws and targets")
        if self.n_samples != "exact" and self.n_samples != draws.shape[1]:
            raise ValueError(
                f"a calibration made with n_samples={self.n_samples!r} has "
                f"{draws.shape[1]} draws per row"
            )
        if self.center not in CENTERS:
            raise ValueError(f"center must be one of {CENTERS}, got {self.center!r}")
        object.__setattr__(self, "draws", draws)
        object.__setattr__(self, "targets", targets)

    @property
    def n_rows(self) -> int:
        """Number of calibration rows."""
        return len(self.targets)
