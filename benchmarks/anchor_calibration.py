"""Screen: which rows should calibrate intervals around an anchor's estimate?

    python benchmarks/anchor_calibration.py [--datasets diabetes abalone] [--seeds 0 1 ...]
                                            [--rows 256] [--report]

Where ``LLMRegressor``'s ``residual_scale_`` is 0, every prediction is the anchor's
estimate and a calibrated interval is that estimate plus or minus a conformal quantile of
absolute residuals. Which residuals is the question, and it needs no language model: this
script cross-fits the default ``"additive"`` anchor as a fit does (``cross_fit`` with the
fit's seed, derived from ``random_state`` as the estimator derives it), on ``--rows``
training rows per (dataset, seed) (256 by default; up to 1000 test rows,
``train_test_split``), and scores the 80% and 90% intervals two ways:

- ``held_out``: the residuals of the rows a default fit holds out to calibrate
  (``llmregressor.engine.calibration_rows``: 25 of 256; from 1000 rows early stopping's
  100 validation rows), each measured from its out-of-fold estimate;
- ``all_rows``: the out-of-fold residuals of all the training rows.

Coverage, mean width and pinball loss of each; records append to
``benchmarks/results/anchor_calibration.jsonl`` and the table goes to the experiment log.
"""

import argparse
import json
from pathlib import Path

import numpy as np

import public_datasets
from _report import append_records, command_line, markdown_table, newest_records, write_section
from intervals import interval_scores
from llmregressor import LLMRegressor
from llmregressor.anchor import cross_fit, make_anchor
from llmregressor.conformal import conformal_margin
from llmregressor.engine import calibration_rows, validation_rows

RESULTS = Path(__file__).resolve().parent / "results" / "anchor_calibration.jsonl"
METHODS = ("held_out", "all_rows")
COVERAGES = (0.9, 0.8)


def run_one(name: str, seed: int, rows: int) -> dict:
    """Cross-fit the default anchor on one split and score both calibrations."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, rows, 1000, "train_test_split")
    y_tr = np.asarray(y_tr, dtype=float)
    defaults = LLMRegressor(random_state=seed)
    # The seed a fit with random_state=seed draws its folds and calibration rows from.
    fit_seed = int(np.random.RandomState(seed).randint(np.iinfo(np.int32).max))
    anchor = make_anchor(defaults.anchor, defaults.model)
    oof, fitted = cross_fit(anchor, X_tr, y_tr, defaults.anchor_folds, fit_seed)
    residuals = np.abs(y_tr - oof)
    fraction = defaults.validation_fraction
    is_val = validation_rows(len(y_tr), defaults.early_stopping, fraction, fit_seed)
    is_cal = calibration_rows(is_val, fraction, fit_seed)
    point = fitted.predict(X_te)
    record = {"dataset": name, "seed": seed, "train_rows": rows, "n_cal": int(is_cal.sum())}
    record["test_rows"] = len(y_te)
    for method, scores in (("held_out", residuals[is_cal]), ("all_rows", residuals)):
        for coverage in COVERAGES:
            margin = conformal_margin(scores, coverage)
            bounds = np.column_stack([point - margin, point + margin])
            record.update(interval_scores(y_te, bounds, coverage, f"{method}_"))
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(public_datasets.NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(20)))
    parser.add_argument("--rows", nargs="+", type=int, default=[256], help="training rows")
    parser.add_argument("--report", action="store_true", help="rebuild the table only")
    args = parser.parse_args()
    if not args.report:
        for rows in args.rows:
            for name in args.datasets:
                append_records(RESULTS, [run_one(name, seed, rows) for seed in args.seeds])
    # Records written before --rows existed are of 256 training rows.
    records = newest_records(
        RESULTS,
        ("dataset", "seed", "train_rows"),
        lambda r: r["seed"] in args.seeds and r.setdefault("train_rows", 256) in args.rows,
    )
    rows = []
    for train_rows, name in ((n, d) for n in args.rows for d in args.datasets):
        mine = [r for r in records if r["dataset"] == name and r["train_rows"] == train_rows]
        if not mine:
            continue
        for method in METHODS:
            row = [name, train_rows, method, len(mine)]
            for coverage in COVERAGES:
                cov = np.array([r[f"{method}_coverage_{coverage:g}"] for r in mine])
                row.append(f"{cov.mean():.3f} ± {cov.std():.3f}")
                for stat in ("width", "pinball"):
                    row.append(np.mean([r[f"{method}_{stat}_{coverage:g}"] for r in mine]))
            rows.append(row)
    header = ["dataset", "training rows", "calibration rows", "seeds"]
    for coverage in COVERAGES:
        header += [f"cov {coverage:.0%}", f"width {coverage:.0%}", f"pinball {coverage:.0%}"]
    body = markdown_table(header, rows)
    print(body)
    write_section("Screening: calibration rows around the anchor", command_line(), body)


if __name__ == "__main__":
    main()
