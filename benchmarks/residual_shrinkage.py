"""Screen: would shrinking the decoded residual toward the anchor help?

    python benchmarks/residual_shrinkage.py [--datasets fastfood diabetes] [--seeds 0 1]
                                            [--report]

With ``anchor="ridge", anchor_mode="residual"`` (SFT only) a prediction is the anchor's
estimate plus the decoded residual. Where the model learns little beyond the anchor, the
decoded residual is mostly noise and the sum scores below the anchor alone. This script fits
that configuration once per (dataset, seed) (256 training rows, up to 1000 test rows,
``train_test_split``) and scores, from the same fit:

- ``anchor``: the fitted anchor alone (``anchor_.predict``);
- ``full``: ``predict`` (estimate + mean decoded residual);
- ``shrunk``: estimate + lambda x decoded residual, with lambda the least-squares slope
  (no intercept, clipped to [0, 1]; ``llmregressor.anchor.residual_slope``) of the
  calibration rows' residual targets on their mean draws (``calibration_``: the rows the fit
  held out, decoded after the fit): what ``residual_scale="auto"`` predicts, from the same
  fit;
- ``chosen``: ``full`` or ``anchor``, whichever has the lower squared error on those rows.

Records append to ``benchmarks/results/residual_shrinkage.jsonl``.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

import public_datasets
from _report import append_records, command_line, markdown_table, newest_records, write_section
from llmregressor import LLMRegressor
from llmregressor.anchor import residual_slope

RESULTS = Path(__file__).resolve().parent / "results" / "residual_shrinkage.jsonl"
# The scale is screened on the held-out rows, which "conformal" keeps as calibration_.
CONFIG = {
    "anchor": "ridge",
    "anchor_mode": "residual",
    "rl_algorithm": None,
    "interval_calibration": "conformal",
}
SCORES = ("anchor", "full", "shrunk", "chosen")


def run_one(name: str, seed: int) -> dict:
    """Fit once and score the four predictions on one split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, 256, 1000, "train_test_split")
    reg = LLMRegressor(random_state=seed, **CONFIG).fit(X_tr, y_tr)
    estimate = reg.anchor_.predict(X_te)
    residual = reg.predict(X_te) - estimate
    decoded = reg.calibration_.draws.mean(axis=1)
    target = reg.calibration_.targets
    slope = residual_slope(decoded, target)
    keep = np.mean((target - decoded) ** 2) < np.mean(target**2)
    predictions = {
        "anchor": estimate,
        "full": estimate + residual,
        "shrunk": estimate + slope * residual,
        "chosen": estimate + residual * float(keep),
    }
    record = {f"r2_{k}": r2_score(y_te, p) for k, p in predictions.items()}
    record.update(
        {
            "lambda": slope,
            "n_cal": len(target),
            "dataset": name,
            "seed": seed,
            "fit_s": reg.fit_time_,
            "test_rows": len(y_te),
        }
    )
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [*public_datasets.NAMES, *public_datasets.TEXT_NAMES]
    parser.add_argument("--datasets", nargs="+", default=names)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--report", action="store_true", help="rebuild the table only")
    args = parser.parse_args()
    if not args.report:
        for name in args.datasets:
            for seed in args.seeds:
                append_records(RESULTS, [run_one(name, seed)])
    records = newest_records(RESULTS, ("dataset", "seed"), lambda r: r["seed"] in args.seeds)
    rows = [
        [r["dataset"], r["seed"], r["n_cal"], round(r["lambda"], 2)]
        + [r[f"r2_{k}"] for k in SCORES]
        for name in args.datasets
        for r in sorted((r for r in records if r["dataset"] == name), key=lambda r: r["seed"])
    ]
    header = ["dataset", "seed", "cal rows", "lambda", *(f"R^2 {k}" for k in SCORES)]
    body = markdown_table(header, rows)
    print(body)
    write_section("Screening: residual shrinkage", command_line(), body)


if __name__ == "__main__":
    main()
