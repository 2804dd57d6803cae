import sys

import numpy as np
import pytest

from llmregressor import LLMRegressor
from llmregressor.plot import history_curves, plot_history

HISTORY = [
    {"phase": "sft", "epoch": 0, "train_loss": 2.0, "val_rmse": 5.0, "lr": 1e-3, "time_s": 1.0},
    {"phase": "sft", "epoch": 1, "train_loss": 1.5, "val_rmse": 4.0, "lr": 1e-3, "time_s": 1.0},
    {"phase": "rl", "epoch": -1, "val_rmse": 4.0, "note": "SFT state"},
    {"phase": "rl_step", "epoch": 0, "reward_mean": -1.0, "reward_std": 0.5},
    {"phase": "rl_step", "epoch": 0, "reward_mean": -0.5, "reward_std": 0.5},
    {"phase": "rl", "epoch": 0, "val_rmse": 4.5, "time_s": 2.0},
    {"phase": "rl_step", "epoch": 1, "reward_mean": -0.25, "reward_std": 0.5},
    {"phase": "rl", "epoch": 1, "val_rmse": 4.2, "time_s": 2.0},
    {"phase": "rl", "epoch": None, "note": "no RL epoch beat SFT on validation; ..."},
]


def test_sft_curve_is_the_cross_entropy_part_of_a_number_aware_loss():
    history = [{"phase": "sft", "epoch": 0, "train_loss": 3.0, "train_ce": 2.0, "train_term": 2.0}]
    np.testing.assert_array_equal(history_curves(history)["sft_loss"], [2.0])


def test_history_curves_per_epoch_on_one_axis():
    curves = history_curves(HISTORY)
    np.testing.assert_array_equal(curves["sft_epoch"], [1, 2])
    np.testing.assert_array_equal(curves["sft_loss"], [2.0, 1.5])
    np.testing.assert_array_equal(curves["sft_val_rmse"], [5.0, 4.0])
    np.testing.assert_array_equal(curves["rl_epoch"], [3, 4])
    np.testing.assert_array_equal(curves["rl_reward"], [-0.75, -0.25])
    np.testing.assert_array_equal(curves["rl_val_rmse"], [4.5, 4.2])


def test_history_curves_without_validation_or_rl():
    curves = history_curves([{"phase": "sft", "epoch": 0, "train_loss": 2.0, "val_rmse": None}])
    assert np.isnan(curves["sft_val_rmse"]).all()
    assert curves["rl_epoch"].size == curves["rl_reward"].size == 0
    assert all(v.size == 0 for v in history_curves([]).values())


def test_history_curves_of_a_real_fit(tiny_model_dir):
    X = np.random.default_rng(0).normal(size=(24, 2))
    reg = LLMRegressor(
        model=tiny_model_dir,
        sft_epochs=2,
        early_stopping=True,
        n_iter_no_change=None,
        rl_algorithm="remax",
        rl_epochs=1,
        batch_size=8,
        n_samples=2,
        random_state=0,
    ).fit(X, X[:, 0])
    curves = history_curves(reg.history_)
    np.testing.assert_array_equal(curves["sft_epoch"], [1, 2])
    np.testing.assert_array_equal(curves["rl_epoch"], [3])
    for name in ("sft_loss", "sft_val_rmse", "rl_reward", "rl_val_rmse"):
        assert np.isfinite(curves[name]).all(), name


class RecordingAxes:
    """Stands in for a matplotlib Axes: records every call."""

    def __init__(self):
        self.calls = []
        self.transAxes = "axes-coordinates"

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def called(self, name):
        return [call for call in self.calls if call[0] == name]


def test_plot_history_draws_each_curve_in_its_panel():
    axes = [RecordingAxes() for _ in range(3)]
    assert plot_history(HISTORY, axes) == axes
    loss, reward, rmse = axes
    [(_, (x, y), _)] = loss.called("plot")
    np.testing.assert_array_equal(y, [2.0, 1.5])
    [(_, (x, y), _)] = reward.called("plot")
    np.testing.assert_array_equal(x, [3, 4])
    labels = [kwargs["label"] for _, _, kwargs in rmse.called("plot")]
    assert labels == ["SFT", "RL"] and rmse.called("legend")
    assert all(ax.called("set_xlabel") for ax in axes)


def test_plot_history_says_what_was_not_recorded():
    axes = [RecordingAxes() for _ in range(3)]
    plot_history([{"phase": "sft", "epoch": 0, "train_loss": 2.0, "val_rmse": None}], axes)
    assert "no RL phase" in axes[1].called("text")[0][1]
    assert "no validation split" in axes[2].called("text")[0][1][2]
    with pytest.raises(ValueError, match="3 Axes"):
        plot_history(HISTORY, axes[:2])


def test_plot_history_without_matplotlib_explains_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'llmregressor\[plot\]'"):
        plot_history(HISTORY)


def test_plot_history_with_matplotlib(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = plot_history(HISTORY)
    assert len(axes) == 3 and axes[0].figure is axes[2].figure
    axes[0].figure.savefig(tmp_path / "history.png")
    assert (tmp_path / "history.png").stat().st_size > 0
    plt.close(axes[0].figure)
