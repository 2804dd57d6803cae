"""Split-conformal CQR (llmregressor.conformal): tables, and the coverage it promises."""

import math

import numpy as np
import pytest

from llmregressor.conformal import (
    Calibration,
    central_levels,
    conformal_margin,
    conformalize,
    conformity_scores,
)
from llmregressor.engine import raw_bounds, sample_quantiles
from llmregressor.metrics import interval_coverage


def cqr(cal_bounds, cal_y, test_bounds, coverage):
    """The calibrated intervals of the test rows, as predict_interval computes them."""
    margin = conformal_margin(conformity_scores(cal_bounds, cal_y), coverage)
    return conformalize(test_bounds, margin)


@pytest.mark.parametrize(
    ("coverage", "levels"),
    [(0.9, (0.05, 0.95)), (0.8, (0.1, 0.9)), (1.0, (0.0, 1.0)), (0.5, (0.25, 0.75))],
)
def test_central_levels(coverage, levels):
    assert central_levels(coverage) == pytest.approx(levels, abs=1e-15)


@pytest.mark.parametrize(
    ("bounds", "y", "score"),
    [
        ([0.0, 2.0], 3.0, 1.0),  # above: the distance to the upper bound
        ([0.0, 2.0], -0.5, 0.5),  # below: the distance to the lower bound
        ([0.0, 2.0], 0.5, -0.5),  # inside: minus the distance to the nearer bound
        ([0.0, 2.0], 1.0, -1.0),
        ([0.0, 2.0], 2.0, 0.0),  # on a bound
        ([1.0, 1.0], 1.0, 0.0),  # a point interval
    ],
)
def test_conformity_scores_table(bounds, y, score):
    assert conformity_scores(np.array([bounds]), np.array([y]))[0] == score


def test_conformity_scores_check_shapes():
    with pytest.raises(ValueError, match="shape"):
        conformity_scores(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        conformity_scores(np.zeros((3, 3)), np.zeros(3))


@pytest.mark.parametrize(
    ("n", "coverage", "k"),
    [
        (9, 0.8, 8),  # ceil(10 * 0.8) = 8
        (9, 0.7, 7),  # 10 * 0.7 is 7.000000000000001 in floats: still the 7th
        (19, 0.9, 18),  # ceil(20 * 0.9) = 18
        (20, 0.9, 19),  # ceil(18.9) = 19
        (25, 0.9, 24),  # ceil(23.4) = 24
        (200, 0.9, 181),  # ceil(180.9) = 181
        (1, 0.5, 1),  # ceil(2 * 0.5) = 1
        (19, 0.95, 19),  # ceil(19.0) = 19 = n: the largest score, still finite
        (20, 0.999, None),  # ceil(20.979) = 21 > 20: infinite
        (5, 1.0, None),  # full coverage is never finite
    ],
)
def test_conformal_margin_is_the_k_th_smallest_score(n, coverage, k):
    # Scores 10, 20, ..., shuffled: the k-th smallest is 10 k.
    scores = np.random.default_rng(n).permutation(np.arange(1, n + 1) * 10.0)
    expected = math.inf if k is None else 10.0 * k
    assert conformal_margin(scores, coverage) == expected


@pytest.mark.parametrize(
    ("scores", "coverage", "match"),
    [
        ([], 0.9, "non-empty"),
        ([[1.0, 2.0]], 0.9, "1-D"),
        ([1.0, np.nan], 0.9, "NaN"),
        ([1.0, 2.0], 0.0, "coverage"),
        ([1.0, 2.0], 1.5, "coverage"),
    ],
)
def test_conformal_margin_rejects_bad_input(scores, coverage, match):
    with pytest.raises(ValueError, match=match):
        conformal_margin(np.array(scores), coverage)


@pytest.mark.parametrize(
    ("bounds", "margin", "expected"),
    [
        ([[0.0, 2.0]], 1.0, [[-1.0, 3.0]]),
        ([[0.0, 2.0]], 0.0, [[0.0, 2.0]]),
        ([[0.0, 2.0]], -0.5, [[0.5, 1.5]]),  # CQR narrows too-wide intervals
        ([[0.0, 2.0]], -1.0, [[1.0, 1.0]]),
        ([[0.0, 2.0], [0.0, 10.0]], -2.0, [[1.0, 1.0], [2.0, 8.0]]),  # crossed: midpoint
        ([[0.0, 2.0]], math.inf, [[-math.inf, math.inf]]),
    ],
)
def test_conformalize_table(bounds, margin, expected):
    np.testing.assert_array_equal(conformalize(np.array(bounds), margin), expected)


def test_calibration_checks_and_copies_its_arrays():
    draws, targets = np.arange(6.0).reshape(3, 2), np.ones(3)
    calibration = Calibration(draws, targets, 2)
    draws[0, 0] = 99.0
    assert calibration.draws[0, 0] == 0.0 and calibration.n_rows == 3
    assert Calibration(np.zeros((2, 200)), np.zeros(2), "exact").n_samples == "exact"
    for bad in (
        (np.zeros((3, 2)), np.zeros(2), 2),
        (np.zeros(3), np.zeros(3), 2),
        (np.zeros((0, 2)), np.zeros(0), 2),
        (np.array([[0.0, np.inf]]), np.zeros(1), 2),
        (np.zeros((1, 2)), np.array([np.nan]), 2),
        (np.zeros((1, 2)), np.zeros(1), 3),
    ):
        with pytest.raises(ValueError, match="calibration"):
            Calibration(*bad)
    assert calibration.center == "quantiles"
    with pytest.raises(ValueError, match="center"):
        Calibration(draws, targets, 2, center="median")


def test_raw_bounds_are_the_draws_quantiles_or_their_mean_twice():
    draws = np.array([[0.0, 1.0, 2.0, 9.0], [4.0, 4.0, 4.0, 4.0]])
    levels = central_levels(0.5)
    np.testing.assert_array_equal(
        raw_bounds(draws, levels, "quantiles"), sample_quantiles(draws, levels)
    )
    np.testing.assert_array_equal(raw_bounds(draws, levels, "mean"), [[3.0, 3.0], [4.0, 4.0]])


def overconfident_model(rng, n_rows, n_draws=16, sigma=2.0, shrink=0.3):
    """Targets y_i ~ N(mu_i, sigma^2) and a model whose draws come from N(mu_i, (0.3 sigma)^2)."""
    mu = rng.uniform(-10, 10, n_rows)
    y = mu + rng.normal(0, sigma, n_rows)
    draws = mu[:, None] + rng.normal(0, shrink * sigma, (n_rows, n_draws))
    return draws, y


def test_calibration_repairs_an_overconfident_model():
    # The must-show case: the raw 90% intervals of a model three times too sure of itself
    # hold about 38% of the targets; calibrated on 200 rows they hold 90%.
    rng = np.random.default_rng(0)
    cal_draws, cal_y = overconfident_model(rng, 200)
    test_draws, test_y = overconfident_model(rng, 20000)
    levels = central_levels(0.9)
    cal_bounds = np.quantile(cal_draws, levels, axis=1).T
    test_bounds = np.quantile(test_draws, levels, axis=1).T
    raw = interval_coverage(test_y, test_bounds)
    calibrated = cqr(cal_bounds, cal_y, test_bounds, 0.9)
    assert raw < 0.6
    assert 0.86 <= interval_coverage(test_y, calibrated) <= 0.94
    # One margin for all rows: the intervals keep the model's own ranking of uncertainty.
    widening = (calibrated[:, 1] - calibrated[:, 0]) - (test_bounds[:, 1] - test_bounds[:, 0])
    np.testing.assert_allclose(widening, widening[0])
    assert widening[0] > 0


def test_calibration_narrows_an_underconfident_model():
    rng = np.random.default_rng(1)
    cal_draws, cal_y = overconfident_model(rng, 200, shrink=3.0)
    test_draws, test_y = overconfident_model(rng, 20000, shrink=3.0)
    levels = central_levels(0.8)
    cal_bounds = np.quantile(cal_draws, levels, axis=1).T
    test_bounds = np.quantile(test_draws, levels, axis=1).T
    assert interval_coverage(test_y, test_bounds) > 0.95
    calibrated = cqr(cal_bounds, cal_y, test_bounds, 0.8)
    assert 0.75 <= interval_coverage(test_y, calibrated) <= 0.85
    assert (calibrated[:, 1] - calibrated[:, 0] < test_bounds[:, 1] - test_bounds[:, 0]).all()


@pytest.mark.parametrize(("n_cal", "coverage"), [(20, 0.9), (25, 0.9), (30, 0.8), (50, 0.95)])
def test_finite_sample_guarantee_over_random_splits(n_cal, coverage):
    # Exchangeable rows (a fixed, wrong model's bounds on i.i.d. heteroscedastic data), drawn
    # anew for each of many calibration / test splits: the coverage averaged over splits is
    # k / (n + 1), at least c and less than c + 1 / (n + 1).
    rng = np.random.default_rng(n_cal)
    n_splits, n_test = 4000, 50
    x = rng.uniform(0, 1, (n_splits, n_cal + n_test))
    y = 3 * x + rng.normal(0, 0.2 + 2 * x)
    bounds = np.stack([3 * x - 0.5, 3 * x + 0.1], axis=-1)  # too narrow, off centre
    covered = []
    for split in range(n_splits):
        cal, test = slice(0, n_cal), slice(n_cal, None)
        margin = conformal_margin(conformity_scores(bounds[split, cal], y[split, cal]), coverage)
        intervals = conformalize(bounds[split, test], margin)
        covered.append(interval_coverage(y[split, test], intervals))
    mean = np.mean(covered)
    k = math.ceil(round((n_cal + 1) * coverage, 9))
    assert mean == pytest.approx(k / (n_cal + 1), abs=0.006)
    assert coverage - 0.006 <= mean <= coverage + 1 / (n_cal + 1) + 0.006
