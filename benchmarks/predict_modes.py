"""How predict_mode and n_samples trade accuracy for time, after one default SFT fit.

    python benchmarks/predict_modes.py [--train-rows 256] [--seed 0]

Fits LLMRegressor with default parameters and no RL phase (``rl_algorithm=None``) on
diabetes (raw features), then predicts the held-out rows with greedy decoding, with the
mean / median of N samples and with the exact mean / median (``n_samples="exact"``, the
whole digit tree), and measures the share of test targets inside the raw central 90%
interval of the same predictive distribution (``calibrated=False``: the calibrated one
always takes the fit's draws).
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from _report import command_line, markdown_table, write_section
from llmregressor import LLMRegressor
from llmregressor.metrics import interval_coverage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, train_size=args.train_rows, random_state=args.seed
    )
    reg = LLMRegressor(random_state=args.seed, rl_algorithm=None).fit(X_tr, y_tr)
    print(f"fit {reg.fit_time_:.0f} s, epochs {len(reg.history_)}")
    rows = []
    counts = (1, 4, 8, 16, 32, "exact")
    settings = [("greedy", 1)] + [(m, n) for n in counts for m in ("mean", "median")]
    for mode, n in settings:
        reg.set_params(predict_mode=mode, n_samples=n)
        start = time.perf_counter()
        pred = reg.predict(X_te)
        seconds = time.perf_counter() - start
        rmse = float(np.sqrt(np.mean((pred - y_te) ** 2)))
        coverage = "-"
        if mode == "mean" and n != 1:
            raw = reg.predict_interval(X_te, 0.9, calibrated=False)
            coverage = interval_coverage(y_te, raw)
        rows.append([mode, n, rmse, r2_score(y_te, pred), len(X_te) / seconds, coverage])
        print(rows[-1], flush=True)
    body = (
        f"diabetes, {len(X_tr)} training rows, {len(X_te)} test rows, seed {args.seed}; "
        f"one fit with default parameters and rl_algorithm=None ({len(reg.history_)} SFT "
        f"epochs, "
        f"{reg.fit_time_:.0f} s).\n\n"
        + markdown_table(
            ["predict_mode", "n_samples", "RMSE", "R^2", "rows/s", "90% interval coverage"], rows
        )
    )
    write_section("Prediction modes after SFT", command_line(), body)


if __name__ == "__main__":
    main()
