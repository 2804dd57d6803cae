"""Screen: a kept correction calibrated on every training row, keeping the draws' shape.

    python benchmarks/draws_shape_calibration.py --arrays DIR [--seeds 0 1 2] [--print-only]

Fits nothing. It reads the records of ``benchmarks/results/intervals.jsonl`` as
``every_row_calibration.py`` does (the newest record of the default per numeric table and
seed at 256 training rows), and for each split whose fit kept a correction the per-row
arrays ``intervals.py --arrays DIR`` saved from the same fit (``DIR/<table>_<seed>_256.npz``).
From them it scores candidate S (docs/experiment_log.md, rules 16-19): every training row
calibrates by CQR on its own draws' shape. A held-out row's raw bounds are, as today, the
quantiles of its decoded residuals (scaled by the fit's scale), its target its out-of-fold
residual; any other row's raw bounds are the quantiles of its in-sample draws minus the
full anchor's estimate (the same scaled decoded residuals, from a model that trained on
it), its target again its out-of-fold residual. New rows keep today's raw bounds (the
quantiles of their draws), widened by the conformal margin of all those scores. At a
scale of 0 the fit already calibrates on every row, and S is today's intervals.

Before scoring S, each split's arrays must give back its record's coverage under today's
calibration (the held-out rows alone): a check that the arrays belong to that fit.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from _report import markdown_table, newest_records, write_section
from every_row_calibration import (
    BANDS,
    COVERAGES,
    DATASETS,
    DEFAULT_LABELS,
    RESULTS,
    RIDGE,
    outcomes,
    scale_of,
)
from intervals import cqr, interval_scores
from llmregressor.conformal import central_levels
from llmregressor.engine import sample_quantiles

RULES = ("conformal", "every_row", "draws_shape")


def draws_shape(arrays: dict, coverage: float) -> dict:
    """Candidate S's coverage and pinball loss at one level, from one fit's arrays.

    Also checks that today's calibration (the held-out rows alone) computed from the
    arrays gives the test rows' bounds a record of the same fit scores.
    """
    levels = central_levels(coverage)
    residuals, is_cal = arrays["residuals"], arrays["is_cal"]
    test_raw = sample_quantiles(arrays["draws"], levels)
    train_decoded = arrays["train_draws"] - arrays["train_estimates"][:, None]
    cal_raw = sample_quantiles(train_decoded, levels)
    cal_raw[is_cal] = sample_quantiles(arrays["cal_draws"], levels)
    today = cqr(cal_raw[is_cal], residuals[is_cal], test_raw, coverage)
    shape = cqr(cal_raw, residuals, test_raw, coverage)
    key = f"{coverage:g}"
    return {
        "today_coverage": interval_scores(arrays["y_te"], today, coverage, "")[f"coverage_{key}"],
        "in_sample_width": float(np.mean(np.diff(cal_raw[~is_cal], axis=1))),
        "held_out_width": float(np.mean(np.diff(cal_raw[is_cal], axis=1))),
        **interval_scores(arrays["y_te"], shape, coverage, ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrays", type=Path, required=True, help="intervals.py's --arrays DIR")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--print-only", action="store_true", help="print, write no section")
    args = parser.parse_args()
    records = newest_records(
        RESULTS,
        ("dataset", "seed", "train_rows", "model"),
        lambda r: r["train_rows"] == 256 and r["seed"] in args.seeds and r["dataset"] in DATASETS,
    )
    by_split: dict[tuple, dict[str, dict]] = {}
    for record in records:
        by_split.setdefault((record["dataset"], record["seed"]), {})[record["model"]] = record
    rows, fits = [], []
    for name in DATASETS:
        for seed in args.seeds:
            models = by_split.get((name, seed), {})
            labels = [label for label in DEFAULT_LABELS if label in models]
            if not labels or RIDGE not in models:
                continue
            record = models[labels[0]]
            fit = {"dataset": name, "seed": seed, **outcomes(record), "ridge": models[RIDGE]}
            widths = ["-", "-"]
            if scale_of(record) > 0:
                path = args.arrays / f"{name}_{seed}_256.npz"
                if not path.exists():
                    print(f"{name} {seed}: a kept correction without arrays, left out")
                    continue
                arrays = dict(np.load(path))
                for c in COVERAGES:
                    scored = draws_shape(arrays, float(c))
                    if scored["today_coverage"] != record[f"coverage_{c}"]:
                        raise ValueError(f"{path} does not reproduce its record's coverage")
                    fit["draws_shape", "cov", c] = scored[f"coverage_{c}"]
                    fit["draws_shape", "pinball", c] = scored[f"pinball_{c}"]
                scored = draws_shape(arrays, 0.9)
                widths = [f"{scored['held_out_width']:.3g}", f"{scored['in_sample_width']:.3g}"]
            else:
                for kind in ("cov", "pinball"):
                    for c in COVERAGES:
                        fit["draws_shape", kind, c] = fit["conformal", kind, c]
            fits.append(fit)
            rows.append(
                [
                    name,
                    seed,
                    f"{scale_of(record):.2g}",
                    *widths,
                    *(f"{fit[rule, 'cov', c]:.3f}" for rule in RULES for c in COVERAGES),
                    *(f"{fit[rule, 'pinball', c]:.3g}" for rule in RULES for c in COVERAGES),
                ]
            )
    names = {"conformal": "held-out", "every_row": "every-row", "draws_shape": "draws-shape"}
    header = ["dataset", "seed", "scale", "held-out raw width 90%", "in-sample raw width 90%"]
    header += [f"{names[r]} cov {c[2]}0%" for r in RULES for c in COVERAGES]
    header += [f"{names[r]} pinball {c[2]}0%" for r in RULES for c in COVERAGES]
    body = markdown_table(header, rows) + "\n\n" + summary(fits, names)
    if args.print_only:
        print(body)
        return
    write_section("Screening: draws-shape calibration", "python " + " ".join(sys.argv), body)


def summary(fits: list[dict], names: dict[str, str]) -> str:
    """Per-table means over the seeds, and each rule's distance from nominal coverage."""
    rows = []
    for name in DATASETS:
        table = [f for f in fits if f["dataset"] == name]
        if not table:
            continue
        row = [name, len(table)]
        for rule in RULES:
            for c in COVERAGES:
                mean = np.mean([f[rule, "cov", c] for f in table])
                low, high = BANDS[c]
                row.append(f"{mean:.3f}" + ("" if low <= mean <= high else " (out)"))
        for rule in RULES:
            for c in COVERAGES:
                row.append(f"{np.mean([f[rule, 'pinball', c] for f in table]):.4g}")
        for c in COVERAGES:
            row.append(f"{np.mean([f['ridge'][f'pinball_{c}'] for f in table]):.4g}")
        rows.append(row)
    header = ["dataset", "splits"]
    header += [f"{names[r]} cov {c[2]}0%" for r in RULES for c in COVERAGES]
    header += [f"{names[r]} pinball {c[2]}0%" for r in RULES for c in COVERAGES]
    header += [f"Ridge pinball {c[2]}0%" for c in COVERAGES]
    distance = {
        rule: np.mean([abs(f[rule, "cov", c] - float(c)) for f in fits for c in COVERAGES])
        for rule in RULES
    }
    return (
        "Means over the splits of each table ('(out)': outside issue 24's band, 0.87-0.93 or "
        "0.77-0.83). Raw widths: the mean width of the held-out rows' and the other training "
        "rows' raw 90% intervals (scaled decoded residuals), at 90%.\n\n"
        + markdown_table(header, rows)
        + f"\n\nMean |coverage - nominal| over the {len(fits)} splits and both levels: "
        + ", ".join(f"{names[r]} {distance[r]:.4f}" for r in RULES)
        + "."
    )


if __name__ == "__main__":
    main()
