"""Screen: how much of the decoded residual to keep, and which rows calibrate intervals.

    python benchmarks/scale_and_calibration.py [--datasets diabetes fastfood] [--seeds 0 1 2]
                                               [--config K=V,K=V] [--report]

With a residual anchor a prediction is the anchor's estimate plus ``residual_scale_`` times
the decoded residual, and ``predict_interval`` calibrates on the rows the fit held out. This
script fits one configuration (``fit_speed.py``'s ``--config`` syntax; the fit always adds
the whole residual, ``residual_scale=1.0``, so that ``calibration_`` keeps the unscaled
draws) once per (dataset, seed) (256 training rows, up to 1000 test rows,
``train_test_split``), draws the test rows once (``sample``), and scores from that fit:

- two rules for the scale lambda, each from the calibration rows' mean draws ``d`` and true
  residuals ``r``: ``slope``, the least-squares slope of ``r`` on ``d`` through the origin
  clipped to [0, 1] (``llmregressor.anchor.residual_slope``, ``residual_scale="auto"`` until
  2026-12-02), and ``one_se``, that slope minus its standard error, clipped to [0, 1]
  (``residual_scale="one_se"`` since);
- R^2 of the anchor alone and of each rule's prediction (the mean of the scaled draws);
- for each rule, the calibrated 80% and 90% intervals two ways: ``held-out`` (CQR on the
  calibration rows, as ``predict_interval`` does) and ``all rows`` (where lambda is 0 the
  prediction is the anchor's estimate, and every training row's out-of-fold residual,
  recomputed with ``llmregressor.anchor.cross_fit`` and the fit's seed, is a conformity
  score; where lambda > 0 as held-out): coverage, mean width and pinball loss.

Records append to ``benchmarks/results/scale_and_calibration.jsonl``; the table goes to
the experiment log.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

import public_datasets
from _report import append_records, command_line, markdown_table, newest_records, write_section
from fit_speed import parse_config
from intervals import interval_scores
from llmregressor import LLMRegressor
from llmregressor.anchor import anchor_estimates, cross_fit, make_anchor, residual_slope
from llmregressor.conformal import (
    central_levels,
    conformal_margin,
    conformalize,
    conformity_scores,
)
from llmregressor.engine import sample_quantiles

RESULTS = Path(__file__).resolve().parent / "results" / "scale_and_calibration.jsonl"
DEFAULT_CONFIG = (
    'anchor="additive",anchor_mode="residual",rl_algorithm=null,residual_scale="auto",sft_epochs=3'
)
RULES = ("slope", "one_se")
METHODS = ("held_out", "all_rows")
COVERAGES = (0.9, 0.8)


def run_one(name: str, seed: int, label: str) -> dict:
    """Fit once and score both rules and both calibrations on one split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, 256, 1000, "train_test_split")
    y_tr = np.asarray(y_tr, dtype=float)
    # calibration_ must hold the held-out rows alone, as "conformal" keeps it.
    settings = {"residual_scale": 1.0, "interval_calibration": "conformal"}
    reg = LLMRegressor(random_state=seed, **{**parse_config(label), **settings})
    reg.fit(X_tr, y_tr)
    estimate = anchor_estimates(reg.anchor_, X_te, len(X_te))
    decoded = reg.sample(X_te) - estimate[:, None]
    cal = reg.calibration_
    anchor = make_anchor(reg.anchor, reg.model)
    oof, _ = cross_fit(anchor, X_tr, y_tr, reg.anchor_folds, reg.seed_)
    every_residual = y_tr - oof
    record = {"r2_anchor": r2_score(y_te, estimate)}
    lambdas = {
        "slope": residual_slope(cal.draws.mean(axis=1), cal.targets),
        "one_se": residual_slope(cal.draws.mean(axis=1), cal.targets, rule="one_se"),
    }
    for rule, scale in lambdas.items():
        draws = estimate[:, None] + scale * decoded
        record[f"lambda_{rule}"] = scale
        record[f"r2_{rule}"] = r2_score(y_te, draws.mean(axis=1))
        for coverage in COVERAGES:
            levels = central_levels(coverage)
            bounds = sample_quantiles(draws, levels)
            held_out = conformity_scores(sample_quantiles(scale * cal.draws, levels), cal.targets)
            # At lambda 0 every draw is the estimate: the score is the absolute residual.
            every_row = np.abs(every_residual) if scale == 0 else held_out
            for method, scores in (("held_out", held_out), ("all_rows", every_row)):
                interval = conformalize(bounds, conformal_margin(scores, coverage))
                record.update(interval_scores(y_te, interval, coverage, f"{rule}_{method}_"))
    record.update(
        config=label,
        n_cal=cal.n_rows,
        dataset=name,
        seed=seed,
        fit_s=reg.fit_time_,
        test_rows=len(y_te),
    )
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [*public_datasets.NAMES, *public_datasets.TEXT_NAMES]
    parser.add_argument("--datasets", nargs="+", default=names)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="overrides, as fit_speed.py")
    parser.add_argument("--report", action="store_true", help="rebuild the table only")
    args = parser.parse_args()
    if not args.report:
        for name in args.datasets:
            for seed in args.seeds:
                append_records(RESULTS, [run_one(name, seed, args.config)])
    records = newest_records(
        RESULTS,
        ("dataset", "seed", "config"),
        lambda r: r["seed"] in args.seeds and r["config"] == args.config,
    )
    rows = []
    for name in args.datasets:
        for r in sorted((r for r in records if r["dataset"] == name), key=lambda r: r["seed"]):
            row = [name, r["seed"], r["n_cal"], r["r2_anchor"]]
            for rule in RULES:
                row += [round(r[f"lambda_{rule}"], 2), r[f"r2_{rule}"]]
                row += [r[f"{rule}_{m}_coverage_{c}"] for m in METHODS for c in COVERAGES]
            rows.append(row)
    header = ["dataset", "seed", "cal rows", "R^2 anchor"]
    for rule in RULES:
        header += [f"lambda {rule}", f"R^2 {rule}"]
        header += [f"{rule} cov {int(c * 100)} {m}" for m in METHODS for c in COVERAGES]
    body = markdown_table(header, rows)
    print(body)
    write_section("Screening: residual scale and calibration rows", command_line(), body)


if __name__ == "__main__":
    main()
