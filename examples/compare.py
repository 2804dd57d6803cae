"""Compare LLMRegressor with classic scikit-learn regressors and plot the results.

Fits LLMRegressor, Ridge, RandomForestRegressor and HistGradientBoostingRegressor on the
same diabetes split as the quickstart, prints RMSE, R^2 and timings, and saves two PNG
figures: a bar chart of RMSE and R^2 per model and a parity plot (predicted vs true).

    python examples/compare.py [--train-rows 256] [--out-dir .]

The LLM fit dominates the runtime; with the defaults it is the quickstart's fit.
"""

import argparse
import time
from pathlib import Path

import numpy as np

# Figure objects without pyplot render PNGs through matplotlib's Agg canvas: no display,
# no global backend switch.
from matplotlib.figure import Figure
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from llmregressor import LLMRegressor

DEFAULTS = LLMRegressor()


def plot_scores(results: dict[str, dict[str, float]], path: Path) -> None:
    """Bar chart of RMSE and R^2 per model."""
    names = list(results)
    fig = Figure(figsize=(10, 4), layout="tight")
    axes = fig.subplots(1, 2)
    for ax, metric, label in zip(axes, ["rmse", "r2"], ["test RMSE", "test R^2"], strict=True):
        values = [results[name][metric] for name in names]
        bars = ax.bar(names, values, color=["tab:red"] + ["tab:gray"] * (len(names) - 1))
        ax.bar_label(bars, fmt="%.3g")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=20)
        ax.axhline(0, color="black", linewidth=0.8)
    fig.savefig(path, dpi=120)


def plot_parity(
    y_true: np.ndarray,
    predictions: dict[str, np.ndarray],
    results: dict[str, dict[str, float]],
    path: Path,
) -> None:
    """Predicted vs true target, one panel per model, on shared axes."""
    fig = Figure(figsize=(3.2 * len(predictions), 3.4), layout="tight")
    axes = fig.subplots(1, len(predictions), sharex=True, sharey=True)
    low = min(y_true.min(), *(p.min() for p in predictions.values()))
    high = max(y_true.max(), *(p.max() for p in predictions.values()))
    for ax, (name, y_pred) in zip(axes, predictions.items(), strict=True):
        ax.scatter(y_true, y_pred, s=10, alpha=0.6)
        ax.plot([low, high], [low, high], color="black", linewidth=0.8)
        ax.set_title(f"{name} (R^2 {results[name]['r2']:.3f})", fontsize=9)
        ax.set_xlabel("true")
    axes[0].set_ylabel("predicted")
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Run the comparison; return the paths of the saved figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--sft-epochs", type=int, default=DEFAULTS.sft_epochs)
    parser.add_argument("--n-samples", type=int, default=DEFAULTS.n_samples)
    args = parser.parse_args(argv)

    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=args.train_rows, random_state=0
    )
    print(f"diabetes: {len(X_train)} training rows, {len(X_test)} test rows")
    models = {
        "LLMRegressor": LLMRegressor(
            model=args.model,
            sft_epochs=args.sft_epochs,
            n_samples=args.n_samples,
            random_state=0,
            verbose=1,
        ),
        "Ridge": Ridge(),
        "RandomForest": RandomForestRegressor(random_state=0),
        "HistGradientBoosting": HistGradientBoostingRegressor(random_state=0),
    }
    results, predictions = {}, {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        predictions[name] = model.predict(X_test)
        results[name] = {
            "rmse": float(np.sqrt(mean_squared_error(y_test, predictions[name]))),
            "r2": float(r2_score(y_test, predictions[name])),
            "fit_s": fit_s,
            "predict_s": time.perf_counter() - start,
        }

    print(f"{'model':<22}{'RMSE':>8}{'R^2':>8}{'fit s':>8}{'predict s':>11}")
    for name, r in results.items():
        print(
            f"{name:<22}{r['rmse']:>8.2f}{r['r2']:>8.3f}{r['fit_s']:>8.1f}{r['predict_s']:>11.1f}"
        )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "scores": args.out_dir / "compare_scores.png",
        "parity": args.out_dir / "compare_parity.png",
    }
    plot_scores(results, paths["scores"])
    plot_parity(y_test.to_numpy(), predictions, results, paths["parity"])
    for path in paths.values():
        print(f"saved {path.resolve()}")
    return paths


if __name__ == "__main__":
    main()
