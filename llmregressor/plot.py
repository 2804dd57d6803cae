"""Training curves of a fit: per-epoch series from ``history_`` and a matplotlib figure.

:func:`history_curves` needs only numpy; :func:`plot_history` draws those curves and
imports matplotlib when it is called (``pip install 'llmregressor[plot]'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["history_curves", "plot_history"]


def history_curves(history: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Per-epoch training curves from :attr:`LLMRegressor.history_`.

    Epochs are counted as completed epochs over the whole fit: SFT epochs are
    ``1 .. n_sft`` and RL epochs continue at ``n_sft + 1``, so both phases share one axis.
    The record that re-scores the kept SFT state before RL (RL epoch -1) and notes are
    left out.

    Parameters
    ----------
    history : sequence of dict
        The ``history_`` of a fitted :class:`~llmregressor.LLMRegressor`.

    Returns
    -------
    curves : dict of str to ndarray
        ``sft_epoch``, ``sft_loss`` (mean cross-entropy per number symbol: the record's
        ``train_ce`` when the SFT loss adds a number-aware term, else ``train_loss``) and
        ``sft_val_rmse``; ``rl_epoch``, ``rl_reward`` (mean over the epoch's steps of each
        step's mean reward) and ``rl_val_rmse``. Validation RMSE is NaN for epochs that
        were not validated (early stopping off). Phases that did not run give empty arrays.

    Examples
    --------
    >>> history = [
    ...     {"phase": "sft", "epoch": 0, "train_loss": 2.1, "val_rmse": None},
    ...     {"phase": "rl_step", "epoch": 0, "reward_mean": -0.5},
    ...     {"phase": "rl", "epoch": 0, "val_rmse": None},
    ... ]
    >>> history_curves(history)["rl_epoch"]
    array([2])
    """
    sft = [r for r in history if r.get("phase") == "sft"]
    n_sft = len(sft)
    rl = [
        r
        for r in history
        if r.get("phase") == "rl" and isinstance(r.get("epoch"), int) and r["epoch"] >= 0
    ]
    rewards: dict[int, list[float]] = {}
    for record in history:
        if record.get("phase") == "rl_step":
            rewards.setdefault(record["epoch"], []).append(record["reward_mean"])
    return {
        "sft_epoch": np.array([r["epoch"] + 1 for r in sft], dtype=np.int64),
        # The cross-entropy alone, so the curve reads in nats per symbol whatever sft_loss.
        "sft_loss": np.array([r.get("train_ce", r["train_loss"]) for r in sft], dtype=np.float64),
        "sft_val_rmse": _with_nan([r.get("val_rmse") for r in sft]),
        "rl_epoch": np.array([n_sft + r["epoch"] + 1 for r in rl], dtype=np.int64),
        "rl_reward": np.array(
            [np.mean(rewards.get(r["epoch"], [np.nan])) for r in rl], dtype=np.float64
        ),
        "rl_val_rmse": _with_nan([r.get("val_rmse") for r in rl]),
    }


def _with_nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_history(history: Sequence[Mapping], axes: Sequence | None = None) -> list:
    """Draw the training curves of a fit in three panels.

    Panels: SFT cross-entropy per epoch, mean RL reward per epoch, and validation RMSE
    across both phases (see :func:`history_curves` for the epoch axis). Three panels
    because the three quantities have unrelated units. A panel whose quantity was not
    recorded (no RL phase, no validation split) says so instead of staying blank.

    Parameters
    ----------
    history : sequence of dict
        The ``history_`` of a fitted :class:`~llmregressor.LLMRegressor`.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; by default a new figure with three panels side by side.

    Returns
    -------
    axes : list of matplotlib Axes
        The three panels.

    Raises
    ------
    ImportError
        If ``axes`` is not given and matplotlib is not installed.
    """
    if axes is None:
        _, axes = _pyplot().subplots(1, 3, figsize=(12, 3.5), layout="constrained")
    # plt.subplots gives an ndarray of Axes; callers may pass any sequence.
    axes = list(axes.flat) if isinstance(axes, np.ndarray) else list(axes)
    if len(axes) != 3:
        raise ValueError(f"axes must hold 3 Axes (loss, reward, RMSE), got {len(axes)}")
    curves = history_curves(history)
    loss_ax, reward_ax, rmse_ax = axes

    loss_ax.set_title("SFT cross-entropy")
    loss_ax.set_ylabel("nats per number symbol")
    _draw(loss_ax, curves["sft_epoch"], curves["sft_loss"], "no SFT epoch recorded")

    reward_ax.set_title("RL reward")
    reward_ax.set_ylabel("mean reward")
    _draw(reward_ax, curves["rl_epoch"], curves["rl_reward"], "no RL phase")

    rmse_ax.set_title("Validation RMSE")
    rmse_ax.set_ylabel("RMSE (target units)")
    validated = False
    for phase in ("sft", "rl"):
        x, y = curves[f"{phase}_epoch"], curves[f"{phase}_val_rmse"]
        keep = ~np.isnan(y)
        if keep.any():
            rmse_ax.plot(x[keep], y[keep], marker="o", label=phase.upper())
            validated = True
    if validated:
        rmse_ax.legend()
    else:
        _note(rmse_ax, "no validation split\n(early_stopping off)")

    for ax in axes:
        ax.set_xlabel("epoch")
    return axes


def _draw(ax, x: np.ndarray, y: np.ndarray, empty: str) -> None:
    if len(x):
        ax.plot(x, y, marker="o")
    else:
        _note(ax, empty)


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "plot_history needs matplotlib to draw a figure: pip install 'llmregressor[plot]' "
            "(or pip install matplotlib). history_curves returns the same curves as arrays "
            "without it."
        ) from err
    return plt
