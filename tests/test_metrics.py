import numpy as np
import pytest

from llmregressor.metrics import interval_coverage


def test_interval_coverage_counts_bounds_as_inside():
    y = [0.0, 1.0, 2.0, 3.0]
    intervals = [[0.0, 1.0], [0.0, 1.0], [2.5, 3.0], [3.0, 3.0]]
    assert interval_coverage(y, intervals) == 0.75
    assert interval_coverage(np.array(y), np.array(intervals)) == 0.75


def test_interval_coverage_of_gaussian_quantiles_is_nominal():
    y = np.random.default_rng(0).normal(size=20000)
    assert interval_coverage(y, np.tile([-1.6449, 1.6449], (len(y), 1))) == pytest.approx(
        0.9, abs=0.01
    )


def test_infinite_bounds_hold_every_target():
    # Calibrated intervals of a coverage too high for their calibration rows are infinite.
    intervals = [[-np.inf, np.inf], [-np.inf, 0.0], [2.0, np.inf]]
    assert interval_coverage([5.0, 1.0, 1.0], intervals) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("y", "intervals", "match"),
    [
        ([1.0, 2.0], [[0.0, 1.0]], "shape"),
        ([[1.0]], [[0.0, 1.0]], "shape"),
        ([], np.zeros((0, 2)), "shape"),
        ([1.0], [[0.0, 1.0, 2.0]], "shape"),
        ([np.nan], [[0.0, 1.0]], "finite"),
        ([1.0], [[0.0, np.nan]], "NaN"),
        ([1.0], [[2.0, 0.0]], "lower bound"),
    ],
)
def test_interval_coverage_rejects_bad_input(y, intervals, match):
    with pytest.raises(ValueError, match=match):
        interval_coverage(y, intervals)
