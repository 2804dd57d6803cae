"""Screen: where would ``residual_patience`` have stopped SFT, and what would it have cost?

    python benchmarks/residual_patience.py [--patience 2 3] [--config residual_patience=7]
                                           [--print-only]

Fits nothing. It reads the records of fits made with a ``residual_patience`` above
``sft_epochs`` (which checks the residual scale after every SFT epoch and never stops, so
the fit is the default's): ``benchmarks/results/intervals.jsonl`` (numeric tables, from
``intervals.py --config residual_patience=7``) and ``text_tables.jsonl`` (from
``text_tables.py --configs residual_patience=7``), whose records hold each epoch's scale
(``sft_residual_scales``) and time (``sft_epoch_s``).

For each patience p, a fit stops after the first epoch closing p zero scales in a row. A
stopped fit ends at a scale of 0, where every output is the anchor's estimate: its test R^2
is the record's ``anchor_r2``, exactly, and its calibrated intervals are the anchor's with
every training row calibrating, as ``anchor_calibration.py`` computes them for the same
split (its ``all_rows`` records, numeric tables). A fit that does not stop is the full one.
Where the records hold it (``intervals.py``'s ``r2_one_se``), the table also sets the R^2
the same fit would have had with ``residual_scale="one_se"`` beside the plain slope's.
The table per split and the summary per table go to the experiment log.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from _report import markdown_table, newest_records, publish

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("intervals.jsonl", "text_tables.jsonl")
COVERAGES = (0.9, 0.8)


def stop_epoch(scales: list[float], patience: int) -> int | None:
    """Index of the epoch after which SFT stops (None: it runs every epoch)."""
    zeros = 0
    for epoch, scale in enumerate(scales):
        zeros = zeros + 1 if scale == 0 else 0
        if zeros >= patience:
            return epoch
    return None


def checked_records(config: str) -> list[dict]:
    """The newest record per (dataset, seed, rows) of the fits of ``config``.

    Only fits that checked every epoch without stopping are the default's full fits: the
    records of other patiences (a stopped fit's, say) are left out.
    """
    records = []
    for source in SOURCES:
        records += newest_records(
            RESULTS / source,
            ("dataset", "seed", "train_rows"),
            lambda r: "sft_residual_scales" in r and r["model"].endswith(" " + config),
        )
    return sorted(records, key=lambda r: (r["dataset"], r["train_rows"], r["seed"]))


def anchor_intervals() -> dict:
    """``anchor_calibration.py``'s every-row intervals per (dataset, seed, rows), newest last.

    Its first records, of 256 rows, predate its ``train_rows`` field.
    """
    path = RESULTS / "anchor_calibration.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["dataset"], r["seed"], r.get("train_rows", 256)): r for r in records}


def outcome(record: dict, patience: int, anchors: dict) -> dict:
    """R^2, SFT seconds and 90%/80% coverage of the fit had it run with ``patience``."""
    scales, seconds = record["sft_residual_scales"], record["sft_epoch_s"]
    stop = stop_epoch(scales, patience)
    result = {"stop": stop, "r2": record["r2"], "sft_s": sum(seconds)}
    for coverage in COVERAGES:
        result[coverage] = record.get(f"coverage_{coverage}")
    if stop is not None:
        result.update(r2=record["anchor_r2"], sft_s=sum(seconds[: stop + 1]))
        anchor = anchors.get((record["dataset"], record["seed"], record["train_rows"]))
        for coverage in COVERAGES:
            result[coverage] = anchor and anchor[f"all_rows_coverage_{coverage}"]
    return result


def cell(value: float | None, digits: int = 3) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0.
    return "-" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patience", nargs="+", type=int, default=[2, 3])
    parser.add_argument(
        "--config",
        default="residual_patience=7",
        help="the configuration whose fits checked every epoch without stopping",
    )
    parser.add_argument("--print-only", action="store_true", help="print, write no section")
    args = parser.parse_args()
    records, anchors = checked_records(args.config), anchor_intervals()
    header = ["dataset", "seed", "scale per epoch", "full R^2", "anchor R^2", "one-SE scale"]
    header += ["one-SE R^2", "full SFT s"]
    for p in args.patience:
        header += [f"p={p} stops after", f"p={p} R^2", f"p={p} SFT s", f"p={p} cov 90/80"]
    rows, summary, one_se = [], {}, {}
    for record in records:
        row = [
            record["dataset"],
            record["seed"],
            # Two significant digits: a small kept scale (0.0043) must not read as a 0.
            " ".join(f"{s:.2g}" for s in record["sft_residual_scales"]),
            cell(record["r2"], 4),
            cell(record["anchor_r2"], 4),
            cell(record.get("scale_one_se"), 2),
            cell(record.get("r2_one_se"), 4),
            f"{sum(record['sft_epoch_s']):.0f}",
        ]
        if "r2_one_se" in record:
            one_se.setdefault(record["dataset"], []).append(record["r2_one_se"] - record["r2"])
        for p in args.patience:
            result = outcome(record, p, anchors)
            stopped = "-" if result["stop"] is None else f"epoch {result['stop'] + 1}"
            covered = f"{cell(result[0.9])} / {cell(result[0.8])}"
            row += [stopped, cell(result["r2"], 4), f"{result['sft_s']:.0f}", covered]
            per_table = summary.setdefault((record["dataset"], p), [])
            per_table.append(
                (result["r2"] - record["r2"], result["sft_s"] / sum(record["sft_epoch_s"]))
            )
        rows.append(row)
    summary_rows = [
        [
            dataset,
            p,
            len(changes),
            cell(float(np.mean([d for d, _ in changes])), 4),
            cell(float(min(d for d, _ in changes)), 4),
            cell(float(np.mean([f for _, f in changes])), 2),
        ]
        for (dataset, p), changes in sorted(summary.items())
    ]
    summary_header = [
        "dataset",
        "patience",
        "splits",
        "mean R^2 change",
        "worst split",
        "SFT time kept (mean share)",
    ]
    body = (
        "Fits of the default with `residual_patience=7` (checks the residual scale after every "
        "SFT epoch, never stops: the default's fit), 256 training rows, from "
        "`intervals.py --config residual_patience=7` and `text_tables.py --configs "
        "residual_patience=7`. For patience p a fit stops after the first epoch closing p "
        "zero scales in a row; a stopped fit's R^2 is its anchor's (exact) and its coverage "
        "the anchor's with every row calibrating (`anchor_calibration.py`, same split; '-' "
        "where not computed). 'SFT s': seconds of the SFT epochs run.\n\n"
        + markdown_table(header, rows)
        + "\n\nPer table: change of R^2 against the full fits, and the share of SFT time a "
        "stopped fit keeps.\n\n" + markdown_table(summary_header, summary_rows)
    )
    one_se_rows = [
        [dataset, len(changes), cell(float(np.mean(changes)), 4), cell(float(min(changes)), 4)]
        for dataset, changes in sorted(one_se.items())
    ]
    body += (
        '\n\nOne SE against the plain slope (`"auto"`) on the same fits, where recorded: '
        "change of test R^2.\n\n"
        + markdown_table(["dataset", "splits", "mean R^2 change", "worst split"], one_se_rows)
    )
    publish("Screening: residual patience", body, args.print_only)


if __name__ == "__main__":
    main()
