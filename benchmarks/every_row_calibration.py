"""Screen: a kept correction's intervals calibrated on its held-out rows or on every row.

    python benchmarks/every_row_calibration.py [--seeds 0 1 2 3 4] [--print-only]

Fits nothing. It reads ``benchmarks/results/intervals.jsonl``: for each numeric table and
seed at 256 training rows, the newest record of the default (labelled by one of
:data:`DEFAULT_LABELS`, the first found), and Ridge's on the same split. Where the
default kept a correction (``residual_scale`` above 0), the record holds both its
intervals as fitted (``interval_calibration="conformal"``: calibrated on the 25 held-out
rows) and those of ``interval_calibration="every_row"`` on the same draws (``every_row_``
fields, from ``intervals.py``); at a scale of 0 both calibrations are the same, every
training row's out-of-fold residual. Where an earlier record of the same split under
another label of the same default exists, the table says whether the newer fit
reproduced its R^2 and coverage. The table goes to the experiment log.
"""

import argparse
from pathlib import Path

import numpy as np

from _report import markdown_table, newest_records, publish

RESULTS = Path(__file__).resolve().parent / "results" / "intervals.jsonl"
DATASETS = ("diabetes", "concrete", "auto_mpg", "abalone")
COVERAGES = ("0.9", "0.8")
BANDS = {"0.9": (0.87, 0.93), "0.8": (0.77, 0.83)}
# The same default under the labels its records carry: the same fits wherever the scale
# did not stay 0 for three epochs in a row (docs/benchmarks.md, "Calibrated intervals").
DEFAULT_LABELS = (
    "LLMRegressor residual_patience=3",
    "LLMRegressor residual_patience=7",
    'LLMRegressor anchor="additive",anchor_mode="residual",rl_algorithm=null,residual_scale="auto"',
)
RIDGE = "Ridge, split conformal"
# Each calibration rule a fit is scored under, and its name in the tables.
RULE_NAMES = {"conformal": "held-out", "every_row": "every-row"}


def scale_of(record: dict) -> float:
    """The fit's residual scale; the earliest records lack it, but calibrated on every row."""
    if "residual_scale" in record:
        return record["residual_scale"]
    if record["n_cal"] != record["train_rows"]:
        raise ValueError(f"a record without its residual scale: {record}")
    return 0.0


def outcomes(record: dict) -> dict:
    """Coverage and pinball loss per level under each calibration, for one default fit."""
    kept = scale_of(record) > 0
    result = {}
    for rule, prefix in (("conformal", ""), ("every_row", "every_row_" if kept else "")):
        for c in COVERAGES:
            result[rule, "cov", c] = record[f"{prefix}coverage_{c}"]
            result[rule, "pinball", c] = record[f"{prefix}pinball_{c}"]
    return result


def reproduced(record: dict, earlier: list[dict]) -> str:
    """Whether the fit reproduced an earlier record of the same split exactly."""
    keys = ("r2", "coverage_0.9", "coverage_0.8")
    if not earlier:
        return "-"
    same = all(all(record[k] == other[k] for k in keys) for other in earlier)
    return "yes" if same else "no"


def default_fits(
    seeds: list[int], rows: int = 256
) -> list[tuple[str, int, dict, list[dict], dict]]:
    """Each numeric split's newest default record at ``rows`` rows, with earlier ones and Ridge's.

    Returns ``(table, seed, record, earlier records of the same split under the default's
    other labels, Ridge's record)`` for every split that has both a default and a Ridge
    record, tables in :data:`DATASETS` order and seeds as given.
    """
    records = newest_records(
        RESULTS,
        ("dataset", "seed", "train_rows", "model"),
        lambda r: r["train_rows"] == rows and r["seed"] in seeds and r["dataset"] in DATASETS,
    )
    by_split: dict[tuple, dict[str, dict]] = {}
    for record in records:
        by_split.setdefault((record["dataset"], record["seed"]), {})[record["model"]] = record
    fits = []
    for name in DATASETS:
        for seed in seeds:
            models = by_split.get((name, seed), {})
            labels = [label for label in DEFAULT_LABELS if label in models]
            if labels and RIDGE in models:
                earlier = [models[label] for label in labels[1:]]
                fits.append((name, seed, models[labels[0]], earlier, models[RIDGE]))
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--print-only", action="store_true", help="print, write no section")
    args = parser.parse_args()
    rows, fits = [], []
    for name, seed, record, earlier, ridge in default_fits(args.seeds):
        if scale_of(record) > 0 and "every_row_coverage_0.9" not in record:
            print(f"{name} {seed}: a kept correction without every_row_ fields, left out")
            continue
        fit = {"dataset": name, "seed": seed, **outcomes(record), "ridge": ridge}
        fits.append(fit)
        rows.append(
            [
                name,
                seed,
                f"{scale_of(record):.2g}",
                f"{record['r2']:.4f}",
                reproduced(record, earlier),
                *(f"{fit['conformal', 'cov', c]:.3f}" for c in COVERAGES),
                *(f"{fit['every_row', 'cov', c]:.3f}" for c in COVERAGES),
                *(f"{fit['conformal', 'pinball', c]:.3g}" for c in COVERAGES),
                *(f"{fit['every_row', 'pinball', c]:.3g}" for c in COVERAGES),
                *(f"{ridge[f'pinball_{c}']:.3g}" for c in COVERAGES),
            ]
        )
    header = ["dataset", "seed", "scale", "R^2", "same as earlier record"]
    header += ["held-out cov 90%", "held-out cov 80%", "every-row cov 90%", "every-row cov 80%"]
    header += ["held-out pinball 90%", "held-out pinball 80%"]
    header += ["every-row pinball 90%", "every-row pinball 80%"]
    header += ["Ridge pinball 90%", "Ridge pinball 80%"]
    body = markdown_table(header, rows) + "\n\n" + summary(fits)
    publish("Screening: every-row calibration", body, args.print_only)


def summary(fits: list[dict], names: dict[str, str] = RULE_NAMES, pinball: str = ".3g") -> str:
    """Per-table means over the seeds, and each rule's distance from nominal coverage.

    ``names`` maps each calibration rule in ``fits`` to its column name, and ``pinball``
    formats the mean pinball losses.
    """
    rows = []
    for name in DATASETS:
        table = [f for f in fits if f["dataset"] == name]
        if not table:
            continue
        row = [name, len(table)]
        for rule in names:
            for c in COVERAGES:
                mean = np.mean([f[rule, "cov", c] for f in table])
                low, high = BANDS[c]
                row.append(f"{mean:.3f}" + ("" if low <= mean <= high else " (out)"))
        for rule in names:
            for c in COVERAGES:
                row.append(format(np.mean([f[rule, "pinball", c] for f in table]), pinball))
        for c in COVERAGES:
            row.append(format(np.mean([f["ridge"][f"pinball_{c}"] for f in table]), pinball))
        rows.append(row)
    percents = {c: f"{float(c):.0%}" for c in COVERAGES}
    header = ["dataset", "splits"]
    header += [f"{names[r]} cov {percents[c]}" for r in names for c in COVERAGES]
    header += [f"{names[r]} pinball {percents[c]}" for r in names for c in COVERAGES]
    header += [f"Ridge pinball {percents[c]}" for c in COVERAGES]
    distance = {
        rule: np.mean([abs(f[rule, "cov", c] - float(c)) for f in fits for c in COVERAGES])
        for rule in names
    }
    return (
        "Means over the splits of each table ('(out)': outside issue 24's band, 0.87-0.93 or "
        "0.77-0.83).\n\n"
        + markdown_table(header, rows)
        + f"\n\nMean |coverage - nominal| over the {len(fits)} splits and both levels: "
        + ", ".join(f"{names[r]} {distance[r]:.4f}" for r in names)
        + "."
    )


if __name__ == "__main__":
    main()
