"""What the default ``interval_calibration="every_row_cqr"`` adds to a fit.

    python benchmarks/calibration_cost.py [--datasets auto_mpg] [--seeds 3] [--rows 256]
                                          [--paired] [--model PATH] [--section TITLE]
                                          [--print-only]

Where the residual correction is kept (``residual_scale_ > 0``), the default calibration
decodes the rows the fit trained on after training, as new rows: pick splits that keep it
(the intervals records' ``residual_scale``). For each (table, seed) split the script fits
the default ``LLMRegressor(random_state=seed)`` and then times that decode on its own,
with the public ``sample`` on the same rows (the training rows the fit did not hold out,
``intervals.held_out_rows``) and the fit's ``n_samples``, so that the cost
reads as seconds and as a share of the rest of the fit, whatever else the machine runs.

With ``--paired`` it first fits the same split with ``interval_calibration="conformal"``
in the same process: both fits train the same model (the option changes only what
calibrates after training), so their point predictions must agree, which the script
checks; the difference of their ``fit_time_`` is the cost too, but only where the load
on the machine stays the same through both fits. Both fits' coverage at 90% and 80% on
the test rows is reported.
"""

import argparse
import time

import numpy as np

import public_datasets
from _report import markdown_table, publish
from intervals import held_out_rows
from llmregressor import LLMRegressor
from llmregressor.metrics import interval_coverage


def split_costs(args: argparse.Namespace, name: str, seed: int) -> list:
    """Fit one split (twice with ``--paired``); return one table row per fit."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(
        X, y, seed, args.rows, args.test_rows, "train_test_split"
    )
    y_tr = np.asarray(y_tr, dtype=float)
    calibrations = ("conformal", "every_row_cqr") if args.paired else ("every_row_cqr",)
    fitted = {
        c: LLMRegressor(random_state=seed, model=args.model, interval_calibration=c).fit(X_tr, y_tr)
        for c in calibrations
    }
    if args.paired:
        predictions = [reg.predict(X_te) for reg in fitted.values()]
        if not np.array_equal(*predictions):
            raise AssertionError(f"{name} {seed}: the two calibrations trained different models")
    reg, decode = fitted["every_row_cqr"], 0.0
    if reg.residual_scale_ > 0:  # at 0 the default decodes nothing more
        start = time.perf_counter()
        reg.sample(X_tr[~held_out_rows(reg, args.rows)])
        decode = time.perf_counter() - start
    table = []
    for calibration, fit in fitted.items():
        coverages = [interval_coverage(y_te, fit.predict_interval(X_te, c)) for c in (0.9, 0.8)]
        extra = decode if calibration == "every_row_cqr" else 0.0
        table.append(
            [
                name,
                seed,
                calibration,
                f"{fit.residual_scale_:.2g}",
                fit.calibration_.n_rows,
                f"{fit.fit_time_:.0f}",
                f"{extra:.0f}" if extra else "-",
                f"{extra / (fit.fit_time_ - extra):.1%}" if extra else "-",
                *(f"{c:.3f}" for c in coverages),
            ]
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["auto_mpg"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[3])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--paired", action="store_true", help='fit "conformal" first too')
    parser.add_argument("--model", default=LLMRegressor().model, help="the base model")
    parser.add_argument("--print-only", action="store_true", help="print, write no section")
    parser.add_argument(
        "--section", default="Screening: every_row_cqr's cost", help="the section's title"
    )
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        for seed in args.seeds:
            rows += split_costs(args, name, seed)
            print(rows[-1], flush=True)
    header = ["dataset", "seed", "interval_calibration", "scale", "cal rows", "fit s"]
    header += ["decode of trained rows s", "decode / rest of fit", "cov 90%", "cov 80%"]
    body = markdown_table(header, rows) + (
        f"\n\n{args.rows} training rows, test rows up to {args.test_rows}. 'decode of trained "
        "rows': `sample` of the training rows the fit did not hold out, timed after the fit: "
        "the work the default's calibration adds where the correction is kept, against the "
        "rest of the fit."
    )
    publish(args.section, body, args.print_only)


if __name__ == "__main__":
    main()
