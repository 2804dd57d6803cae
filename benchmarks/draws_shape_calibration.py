"""Screen: a kept correction calibrated on every training row, keeping the draws' shape.

    python benchmarks/draws_shape_calibration.py --arrays DIR [--seeds 0 1 2] [--rows 256]
                                                 [--section TITLE] [--headline] [--print-only]

Fits nothing. It reads the records of ``benchmarks/results/intervals.jsonl`` as
``every_row_calibration.py`` does (the newest record of the default per numeric table and
seed at ``--rows`` training rows), and for each split whose fit kept a correction the
per-row arrays ``intervals.py --arrays DIR`` saved from the same fit
(``DIR/<table>_<seed>_<rows>.npz``).
From them it scores candidate S (docs/experiment_log.md, rules 16-19): every training row
calibrates by CQR on its own draws' shape. A held-out row's raw bounds are, as today, the
quantiles of its decoded residuals (scaled by the fit's scale), its target its out-of-fold
residual; any other row's raw bounds are the quantiles of its in-sample draws minus the
full anchor's estimate (the same scaled decoded residuals, from a model that trained on
it), its target again its out-of-fold residual. New rows keep today's raw bounds (the
quantiles of their draws), widened by the conformal margin of all those scores. At a
scale of 0 the fit already calibrates on every row, and S is today's intervals.

Each split's arrays must give back its record's coverage: under the held-out rows'
calibration for a record fitted under ``"conformal"``, under S for one fitted under the
default (``n_cal``, the record's calibration rows, tells them apart): a check that the
arrays belong to that fit.

S is the default ``interval_calibration="every_row_cqr"`` since 2026-12-03, and most
records were fitted before, under ``"conformal"``: ``--headline`` writes, instead of the
screen, the default's intervals per table beside the baselines' on the same splits to
docs/benchmarks.md ("Calibrated intervals: the default", or "... at 1000 rows" for
``--rows 1000``).
"""

import argparse
from pathlib import Path

import numpy as np

from _report import markdown_table, newest_records, publish
from every_row_calibration import (
    BANDS,
    COVERAGES,
    DATASETS,
    RESULTS,
    RULE_NAMES,
    default_fits,
    outcomes,
    scale_of,
    summary,
)
from intervals import HGB, cqr, interval_scores
from llmregressor.conformal import central_levels
from llmregressor.engine import sample_quantiles
from llmregressor.metrics import interval_coverage

NAMES = {**RULE_NAMES, "draws_shape": "draws-shape"}


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
    return {
        "today_coverage": interval_coverage(arrays["y_te"], today),
        "in_sample_width": float(np.mean(np.diff(cal_raw[~is_cal], axis=1))),
        "held_out_width": float(np.mean(np.diff(cal_raw[is_cal], axis=1))),
        **interval_scores(arrays["y_te"], shape, coverage, ""),
    }


def headline(fits: list[dict], rows: int) -> str:
    """The default's coverage, width and pinball loss per table, beside the baselines'."""
    seeds = sorted({f["seed"] for f in fits})
    hgb = {
        (r["dataset"], r["seed"]): r
        for r in newest_records(
            RESULTS,
            ("dataset", "seed", "train_rows", "model"),
            lambda r: r["model"] == HGB and r["train_rows"] == rows and r["seed"] in seeds,
        )
    }
    table = []
    for name in DATASETS:
        splits = [f for f in fits if f["dataset"] == name]
        if not splits:
            continue
        models = {
            "default": [f["draws_shape"] for f in splits],
            "Ridge": [f["ridge"] for f in splits],
            "HGB": [hgb[name, f["seed"]] for f in splits],
        }
        for model, records in models.items():
            cells = [name if model == "default" else "", model, len(records)]
            for c in COVERAGES:
                coverage = [r[f"coverage_{c}"] for r in records]
                low, high = BANDS[c]
                out = "" if low <= np.mean(coverage) <= high or model != "default" else " (out)"
                cells.append(f"{np.mean(coverage):.3f} ± {np.std(coverage):.3f}{out}")
            for kind in ("width", "pinball"):
                cells += [f"{np.mean([r[f'{kind}_{c}'] for r in records]):.3g}" for c in COVERAGES]
            table.append(cells)
    header = ["dataset", "model", "splits", "cov 90%", "cov 80%", "width 90%", "width 80%"]
    header += ["pinball 90%", "pinball 80%"]
    return (
        markdown_table(header, table)
        + f"\n\n{rows} training rows, seeds {', '.join(map(str, seeds))} of `train_test_split`, "
        "test rows up to 1000; means over the splits (coverage ± std; '(out)': the default's "
        "mean outside issue 24's band, 0.87-0.93 or 0.77-0.83). 'default': "
        '`LLMRegressor(random_state=seed)` with `interval_calibration="every_row_cqr"`; '
        "'Ridge': split conformal on absolute residuals, 'HGB': two quantile "
        "HistGradientBoosting models per level with CQR, both calibrated on the rows the "
        "default held out and trained on the others. 'width': mean interval width, "
        "'pinball': mean pinball loss of both bounds, in target units."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrays", type=Path, required=True, help="intervals.py's --arrays DIR")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=256, help="the fits' training rows")
    parser.add_argument("--print-only", action="store_true", help="print, write no section")
    parser.add_argument(
        "--section", default="Screening: draws-shape calibration", help="the log section's title"
    )
    parser.add_argument(
        "--headline", action="store_true", help="write the default's table to the benchmarks"
    )
    args = parser.parse_args()
    rows, fits = [], []
    for name, seed, record, _, ridge in default_fits(args.seeds, args.rows):
        path = args.arrays / f"{name}_{seed}_{args.rows}.npz"
        if scale_of(record) > 0 and not path.exists():
            print(f"{name} {seed}: a kept correction without arrays, left out")
            continue
        fit = {"dataset": name, "seed": seed, **outcomes(record), "ridge": ridge}
        # S's scores in a record's fields: at a scale of 0 the record's own.
        scores, widths = record, ["-", "-"]
        if scale_of(record) > 0:
            arrays = dict(np.load(path))
            scored = {c: draws_shape(arrays, float(c)) for c in COVERAGES}
            # A record fitted under "conformal" holds the held-out calibration's coverage, one
            # fitted under the default (every row calibrating) S's own.
            held_out = record["n_cal"] == arrays["is_cal"].sum()
            key = {c: "today_coverage" if held_out else f"coverage_{c}" for c in COVERAGES}
            if any(scored[c][key[c]] != record[f"coverage_{c}"] for c in COVERAGES):
                raise ValueError(f"{path} does not reproduce its record's coverage")
            scores = {k: v for c in COVERAGES for k, v in scored[c].items() if k.endswith(c)}
            widths = [f"{scored['0.9'][k]:.3g}" for k in ("held_out_width", "in_sample_width")]
        fit["draws_shape"] = scores
        for c in COVERAGES:
            fit["draws_shape", "cov", c] = scores[f"coverage_{c}"]
            fit["draws_shape", "pinball", c] = scores[f"pinball_{c}"]
        fits.append(fit)
        rows.append(
            [
                name,
                seed,
                f"{scale_of(record):.2g}",
                *widths,
                *(f"{fit[rule, 'cov', c]:.3f}" for rule in NAMES for c in COVERAGES),
                *(f"{fit[rule, 'pinball', c]:.3g}" for rule in NAMES for c in COVERAGES),
            ]
        )
    header = ["dataset", "seed", "scale", "held-out raw width 90%", "in-sample raw width 90%"]
    header += [f"{NAMES[r]} cov {float(c):.0%}" for r in NAMES for c in COVERAGES]
    header += [f"{NAMES[r]} pinball {float(c):.0%}" for r in NAMES for c in COVERAGES]
    note = (
        "Raw widths: the mean width of the held-out rows' and the other training rows' raw "
        "90% intervals (their scaled decoded residuals' central quantiles)."
    )
    body = markdown_table(header, rows) + "\n\n" + note + " " + summary(fits, NAMES, ".4g")
    if args.headline:
        args.section = "Calibrated intervals: the default"
        if args.rows != 256:
            args.section += f" at {args.rows} rows"
        body = headline(fits, args.rows)
    publish(args.section, body, args.print_only)


if __name__ == "__main__":
    main()
