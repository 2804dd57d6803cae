"""Screen: the residual scale's rules, the plain slope against one SE, on the same fits.

    python benchmarks/scale_rules.py [--seeds 3 4] [--config residual_patience=3]
                                     [--print-only]

Fits nothing. It reads ``benchmarks/results/intervals.jsonl``: the records of fits of
``--config`` (by default today's default, named) from ``intervals.py``, which hold the
default's test R^2 (``residual_scale="auto"``, the plain slope, with its patience), each
SFT epoch's scale, and the scale and R^2 that ``residual_scale="one_se"`` gives the same
fit after its last epoch (``scale_one_se``, ``r2_one_se``), with its held-out intervals
where that scale is above 0 (``one_se_`` fields).

One SE's scale is at most the plain slope's after every epoch. Where the default stopped
early (fewer epochs than planned), one SE would have stopped at the same epoch or before:
its R^2 is the anchor's, exactly. Where the default ran every epoch, one SE may still
have stopped earlier, after zeros the records do not show: its R^2 is then either the
anchor's or ``r2_one_se``, and the table gives both, judging by the lower. One SE's
intervals at a scale of 0 are the anchor's with every training row calibrating
(``anchor_calibration.py``'s record of the same split); at a scale above 0, the held-out
rows' (the record's ``one_se_`` fields). The table goes to the experiment log.
"""

import argparse
from pathlib import Path

import numpy as np
from residual_patience import COVERAGES, anchor_intervals, cell

from _report import markdown_table, newest_records, publish
from llmregressor import LLMRegressor

RESULTS = Path(__file__).resolve().parent / "results" / "intervals.jsonl"
# The epochs a default fit plans: one that ran fewer was stopped by its patience.
SFT_EPOCHS = LLMRegressor().sft_epochs


def one_se_outcome(record: dict, anchors: dict) -> dict:
    """One SE's R^2 (lower and upper bound) and 90%/80% coverage on the fit of ``record``."""
    stopped = len(record["sft_residual_scales"]) < SFT_EPOCHS
    scale = 0.0 if stopped else record["scale_one_se"]
    r2s = (record["anchor_r2"],) if stopped else (record["anchor_r2"], record["r2_one_se"])
    if scale > 0:
        coverage = {c: record.get(f"one_se_coverage_{c}") for c in COVERAGES}
    else:
        anchor = anchors[(record["dataset"], record["seed"], record["train_rows"])]
        coverage = {c: anchor[f"all_rows_coverage_{c}"] for c in COVERAGES}
    return {"scale": scale, "low": min(r2s), "high": max(r2s), "coverage": coverage}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4])
    parser.add_argument("--config", default="residual_patience=3")
    parser.add_argument("--print-only", action="store_true", help="print, write no section")
    args = parser.parse_args()
    records = newest_records(
        RESULTS,
        ("dataset", "seed", "train_rows"),
        lambda r: (
            r["model"] == f"LLMRegressor {args.config}"
            and r["seed"] in args.seeds
            and r["train_rows"] == 256
            and "scale_one_se" in r
        ),
    )
    records.sort(key=lambda r: (r["dataset"], r["seed"]))
    anchors = anchor_intervals()
    header = ["dataset", "seed", "scale per epoch", "anchor R^2", '"auto" R^2', '"auto" cov 90/80']
    header += ["one-SE scale", "one-SE R^2 (low / high)", "one-SE cov 90/80"]
    rows, per_table = [], {}
    for record in records:
        one_se = one_se_outcome(record, anchors)
        low, high = one_se["low"], one_se["high"]
        rows.append(
            [
                record["dataset"],
                record["seed"],
                # Two significant digits: a small kept scale (0.0043) must not read as a 0.
                " ".join(f"{s:.2g}" for s in record["sft_residual_scales"]),
                cell(record["anchor_r2"], 4),
                cell(record["r2"], 4),
                f"{cell(record['coverage_0.9'])} / {cell(record['coverage_0.8'])}",
                cell(one_se["scale"], 2),
                cell(low, 4) if low == high else f"{cell(low, 4)} / {cell(high, 4)}",
                " / ".join(cell(one_se["coverage"][c]) for c in COVERAGES),
            ]
        )
        per_table.setdefault(record["dataset"], []).append(
            (record["r2"], low, high, *(one_se["coverage"][c] for c in COVERAGES))
        )
    summary = []
    for dataset, values in sorted(per_table.items()):
        auto, low, high, cov90, cov80 = np.mean(np.array(values, dtype=float), axis=0)
        summary.append(
            [dataset, len(values), cell(auto, 4), cell(low, 4), cell(high, 4)]
            + [cell(low - auto, 4), cell(cov90), cell(cov80)]
        )
    everything = np.array([v for values in per_table.values() for v in values])
    if len(everything):
        auto, low, high = everything[:, :3].mean(axis=0)
        summary.append(
            ["all", len(everything), cell(auto, 4), cell(low, 4), cell(high, 4)]
            + [cell(low - auto, 4), "", ""]
        )
    summary_header = ["dataset", "splits", '"auto" R^2', "one-SE R^2 low", "one-SE R^2 high"]
    summary_header += ["low minus auto", "one-SE cov 90", "one-SE cov 80"]
    body = (
        f"Fits of the default with `{args.config}`, seeds {' '.join(map(str, args.seeds))}, "
        "256 training rows, from `intervals.py`. One SE: the scale "
        '`residual_scale="one_se"` gives the same fit; its R^2 is a pair (low / high) '
        "where it may have stopped earlier than the records show, and is judged by the "
        "lower; its coverage at a scale of 0 is the anchor's with every row calibrating "
        "(`anchor_calibration.py`, same split). Means per table:\n\n"
        + markdown_table(summary_header, summary)
        + "\n\nPer split:\n\n"
        + markdown_table(header, rows)
    )
    publish("Screening: residual scale rules", body, args.print_only)


if __name__ == "__main__":
    main()
