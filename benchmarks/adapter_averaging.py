"""Is there signal in the decoded corrections for several adapters to average? (issue 22)

    python benchmarks/adapter_averaging.py [--datasets diabetes concrete] [--seeds 30]
                                           [--fits 3] [--test-rows 400] [--report]
                                           [--print-only]

On each split (256 training rows, ``train_test_split``, the first ``--test-rows`` test
rows) this fits ``--fits`` models ``LLMRegressor(residual_scale=1.0,
interval_calibration=None, random_state=r)``, r = 0, 1, ...: the default with the whole
decoded correction kept and every training row trained on. Their anchor is the same
(``anchor_``: the final anchor fit does not depend on the seed). On the test rows it
scores the anchor alone (``anchor_.predict``), each fit, the mean of the fits, and each
correction (a fit's ``predict`` minus the anchor's estimate, or their mean) at its
*oracle* scale: the least-squares slope of the test residuals on the correction, clipped
to [0, 1], a bound on what any rule choosing ``residual_scale`` could reach, since it sees
the test targets.

Each finished fit appends its record (the test rows' estimates and corrections, and the
threads it ran on) to ``benchmarks/results/adapter_averaging.jsonl``, so a run split across
processes or sessions adds up; ``--report`` fits nothing and rebuilds the table from the
records. The table goes to the experiment log ("Screening: averaging decoded
corrections"), or to the terminal with ``--print-only``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import r2_score

import public_datasets
from _report import append_records, markdown_table, newest_records, publish
from llmregressor import LLMRegressor

RESULTS = Path(__file__).parent / "results" / "adapter_averaging.jsonl"
SECTION = "Screening: averaging decoded corrections"
TRAIN_ROWS = 256


def oracle_scaled(y: np.ndarray, estimate: np.ndarray, correction: np.ndarray) -> float:
    """Test R^2 of ``estimate + s * correction`` at the best ``s`` in [0, 1] for these rows."""
    residual = y - estimate
    power = float(correction @ correction)
    slope = float(correction @ residual) / power if power > 0 else 0.0
    return r2_score(y, estimate + np.clip(slope, 0.0, 1.0) * correction)


def fit_one(name: str, seed: int, fit: int, test_rows: int) -> dict:
    """Fit one model on the split and return its record."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, TRAIN_ROWS, 1000, "train_test_split")
    X_te, y_te = X_te[:test_rows], np.asarray(y_te[:test_rows], dtype=np.float64)
    start = time.perf_counter()
    reg = LLMRegressor(residual_scale=1.0, interval_calibration=None, random_state=fit)
    reg.fit(X_tr, y_tr)
    seconds = time.perf_counter() - start
    estimate = np.asarray(reg.anchor_.predict(X_te), dtype=np.float64)
    correction = reg.predict(X_te) - estimate
    return {
        "dataset": name,
        "seed": seed,
        "fit": fit,
        "fit_seconds": seconds,
        "threads": torch.get_num_threads(),
        "y": y_te.tolist(),
        "estimate": estimate.tolist(),
        "correction": correction.tolist(),
    }


def table(records: list[dict], fits: int) -> str:
    """One row per split: R^2 of the anchor, the fits and their mean, plain and oracle-scaled."""
    rows, gains_single, gains_mean = [], [], []
    splits = sorted({(r["dataset"], r["seed"]) for r in records})
    for name, seed in splits:
        found = sorted(
            (r for r in records if (r["dataset"], r["seed"]) == (name, seed) and r["fit"] < fits),
            key=lambda r: r["fit"],
        )
        if len(found) < fits:
            continue
        y, estimate = np.asarray(found[0]["y"]), np.asarray(found[0]["estimate"])
        corrections = [np.asarray(r["correction"]) for r in found]
        mean_correction = np.mean(corrections, axis=0)
        anchor = r2_score(y, estimate)
        single = [r2_score(y, estimate + c) for c in corrections]
        single_oracle = [oracle_scaled(y, estimate, c) for c in corrections]
        mean_oracle = oracle_scaled(y, estimate, mean_correction)
        gains_single.append(np.mean(single_oracle) - anchor)
        gains_mean.append(mean_oracle - anchor)
        rows.append(
            [
                name,
                seed,
                f"{anchor:.4f}",
                " / ".join(f"{v:.4f}" for v in single),
                f"{r2_score(y, estimate + mean_correction):.4f}",
                " / ".join(f"{v:.4f}" for v in single_oracle),
                f"{mean_oracle:.4f}",
                f"{np.mean([r['fit_seconds'] for r in found]):.0f}",
            ]
        )
    header = [
        "dataset",
        "seed",
        "anchor alone",
        "each fit (scale 1)",
        f"mean of {fits} (scale 1)",
        "each fit, oracle scale",
        f"mean of {fits}, oracle scale",
        "fit s",
    ]
    summary = (
        f"\n\nMean gain over the anchor alone at the oracle scale, over {len(rows)} splits: "
        f"a single fit {np.mean(gains_single):+.4f}, the mean of {fits} {np.mean(gains_mean):+.4f}."
        if rows
        else ""
    )
    return markdown_table(header, rows) + summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["diabetes", "concrete", "abalone", "fastfood"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[30])
    parser.add_argument("--fits", type=int, default=3)
    parser.add_argument("--test-rows", type=int, default=400)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="fit nothing; rebuild the table")
    parser.add_argument("--print-only", action="store_true", help="print instead of writing")
    args = parser.parse_args()
    key = ("dataset", "seed", "fit")
    if not args.report:
        done = {tuple(r[k] for k in key) for r in newest_records(args.results, key)}
        for name in args.datasets:
            for seed in args.seeds:
                for fit in range(args.fits):
                    if (name, seed, fit) in done:
                        continue
                    record = fit_one(name, seed, fit, args.test_rows)
                    append_records(args.results, [record])
                    print(name, seed, fit, f"{record['fit_seconds']:.0f} s", flush=True)
    records = [
        r
        for r in newest_records(args.results, key)
        if r["dataset"] in args.datasets and r["seed"] in args.seeds
    ]
    # The fits ran in other processes, perhaps with other thread counts than this one.
    counts = sorted({str(r["threads"]) for r in records})
    publish(
        SECTION, table(records, args.fits), args.print_only, f"{'/'.join(counts)} thread(s) per fit"
    )


if __name__ == "__main__":
    main()
