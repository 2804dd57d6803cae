"""Screen the ridge anchor: paired LLM fits with and without it, the anchor alone, classics.

    python benchmarks/anchor.py [--datasets diabetes concrete] [--seeds 0 1 2]
                                [--rows 256] [--test-rows 1000] [--rl | --no-rl]
                                [--set sft_epochs=3 --set row_format=sentence ...]
                                [--model PATH] [--fresh] [--report]

For each dataset and seed, on one ``train_test_split`` of ``--rows`` training rows: the
classic baselines of ``rl_accuracy.py`` (Ridge, KNN, RandomForest, HistGradientBoosting on
one-hot categoricals and standardized numbers), the anchor alone (``RidgeAnchor``, what
``anchor="ridge"`` fits), and two LLM fits that differ only in the anchor:
``LLMRegressor(random_state=seed, **settings)`` with ``anchor=None`` and with
``anchor="ridge"``. ``--no-rl`` fits SFT only (``rl_algorithm=None``), the cheap screen;
``--set key=value`` (repeatable) overrides any other estimator parameter, its value read as
JSON when it parses (``3``, ``0.5``, ``true``, ``[1, 2]``), as None for ``none``, else as a
string; ``--model`` picks the base model (a folder, to try the script on a tiny one).

The table reports per dataset and model, mean ± std over the seeds run so far: R^2, RMSE,
RMSE over the best classic model's RMSE on the same split, and fit seconds; a second table
pairs the two LLM fits of each split and says what the LM adds over the anchor alone.

Each finished (dataset, seed) appends its records to ``benchmarks/results/anchor.jsonl``;
the tables are built from every record there with this run's settings (rows, RL, overrides,
model), the newest per dataset, seed and model, so runs split across sessions add up.
``--fresh`` discards earlier records of these settings; ``--report`` fits nothing and
rebuilds the tables. The section goes to docs/experiment_log.md, named after the settings.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

import public_datasets
from _report import append_records, command_line, markdown_table, newest_records, write_section
from llmregressor import LLMRegressor
from llmregressor.anchor import RidgeAnchor

RESULTS = Path(__file__).resolve().parent / "results" / "anchor.jsonl"
CLASSIC = ("Ridge", "KNN", "RandomForest", "HistGradientBoosting")
ANCHOR_ALONE = "anchor alone (RidgeAnchor)"
PLAIN = "LLM"
ANCHORED = "LLM + ridge anchor"
# The screen's own axes, which --set may not move.
FIXED = ("anchor", "random_state")
_WORDS = {"none": None, "true": True, "false": False}


def parse_setting(text: str) -> tuple[str, object]:
    """``key=value`` from ``--set``: the value as JSON if it parses, else a word or a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    if value.strip().lower() in _WORDS:
        return key, _WORDS[value.strip().lower()]
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def settings(args: argparse.Namespace) -> dict:
    """What the LLM fits of this run are given besides ``anchor`` and ``random_state``."""
    llm = dict(args.set)
    if not args.rl:
        llm["rl_algorithm"] = None
    if args.model is not None:
        llm["model"] = args.model
    return llm


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "r2": float(r2_score(y, pred))}


def run_one(name: str, seed: int, args: argparse.Namespace) -> list[dict]:
    """Fit and score every model on one (dataset, seed) split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(
        X, y, seed, args.rows, args.test_rows, "train_test_split"
    )
    y_tr = np.asarray(y_tr, dtype=np.float64)
    models = {
        **public_datasets.classic_models(X, seed),
        ANCHOR_ALONE: RidgeAnchor(),
        PLAIN: LLMRegressor(random_state=seed, **settings(args)),
        ANCHORED: LLMRegressor(random_state=seed, anchor="ridge", **settings(args)),
    }
    records = []
    for label, model in models.items():
        start = time.perf_counter()
        model.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = model.predict(X_te)
        predict_s = time.perf_counter() - start
        records.append(
            {"model": label, **scores(pred, y_te), "fit_s": fit_s, "predict_s": predict_s}
        )
    for record in records:
        record.update(
            dataset=name,
            seed=seed,
            train_rows=len(X_tr),
            test_rows=len(X_te),
            settings=settings(args),
        )
        print(json.dumps(record), flush=True)
    return records


def load_records(args: argparse.Namespace) -> list[dict]:
    """Newest record per (dataset, seed, model) with this run's rows and settings."""
    return newest_records(
        RESULTS,
        ("dataset", "seed", "model"),
        lambda r: r["train_rows"] == args.rows and r["settings"] == settings(args),
    )


def by_split(records: list[dict]) -> dict[tuple[str, int], dict[str, dict]]:
    """Records of each (dataset, seed) split, by model label."""
    splits: dict[tuple[str, int], dict[str, dict]] = {}
    for record in records:
        splits.setdefault((record["dataset"], record["seed"]), {})[record["model"]] = record
    return splits


def best_classic_rmse(split: dict[str, dict]) -> float:
    return min(split[label]["rmse"] for label in CLASSIC)


def summary_rows(records: list[dict]) -> list[list]:
    """One row per (dataset, model): mean ± std over seeds, RMSE over the best classic's."""
    splits = by_split(records)
    rows = []
    for name in dict.fromkeys(r["dataset"] for r in records):
        mine = [split for (dataset, _), split in splits.items() if dataset == name]
        labels = dict.fromkeys(label for split in mine for label in split)
        for label in labels:
            runs = [split for split in mine if label in split]
            r2 = np.array([split[label]["r2"] for split in runs])
            rmse = np.array([split[label]["rmse"] for split in runs])
            ratio = np.array([split[label]["rmse"] / best_classic_rmse(split) for split in runs])
            fit_s = np.mean([split[label]["fit_s"] for split in runs])
            rows.append(
                [
                    name,
                    label,
                    len(runs),
                    f"{r2.mean():.3f} ± {r2.std():.3f}",
                    f"{rmse.mean():.4g} ± {rmse.std():.2g}",
                    f"{ratio.mean():.3f}",
                    f"{fit_s:.3g}",
                ]
            )
    return rows


def paired_rows(records: list[dict]) -> tuple[list[list], str]:
    """Per split, the two LLM fits side by side and the anchored one against the anchor alone.

    Returns the table rows and one sentence tallying the splits.
    """
    rows, gains, over_anchor = [], [], []
    for (name, seed), split in sorted(by_split(records).items()):
        if not {PLAIN, ANCHORED, ANCHOR_ALONE} <= set(split):
            continue
        plain, anchored, alone = split[PLAIN], split[ANCHORED], split[ANCHOR_ALONE]
        gains.append(anchored["r2"] - plain["r2"])
        over_anchor.append(anchored["r2"] - alone["r2"])
        best = best_classic_rmse(split)
        rows.append(
            [
                name,
                seed,
                f"{plain['r2']:.3f}",
                f"{anchored['r2']:.3f}",
                f"{gains[-1]:+.3f}",
                f"{alone['r2']:.3f}",
                f"{over_anchor[-1]:+.3f}",
                f"{plain['rmse'] / best:.3f} / {anchored['rmse'] / best:.3f}",
                f"{anchored['rmse'] / alone['rmse']:.3f}",
            ]
        )
    if not rows:
        return rows, "No split has both LLM fits and the anchor alone yet."
    tally = (
        f"The anchor raised the LLM's R^2 on {sum(g > 0 for g in gains)} of {len(gains)} "
        f"splits (median {np.median(gains):+.3f}); the anchored LLM beat the anchor alone on "
        f"{sum(g > 0 for g in over_anchor)} of {len(over_anchor)} (median "
        f"{np.median(over_anchor):+.3f})."
    )
    return rows, tally


def section_name(args: argparse.Namespace) -> str:
    """The log section of these settings: each screen keeps its own."""
    parts = [] if args.rl else ["SFT only"]
    if args.rows != 256:
        parts.append(f"{args.rows} rows")
    parts += [f"{key}={value}" for key, value in args.set]
    if args.model is not None:
        parts.append(f"model {args.model}")
    return "Anchor screen: ridge vs none" + (f" ({', '.join(parts)})" if parts else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(public_datasets.NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=256, help="training rows per split")
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument(
        "--rl",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit the LLMs with their default RL phase (--no-rl: SFT only)",
    )
    parser.add_argument(
        "--set",
        action="append",
        type=parse_setting,
        default=[],
        metavar="KEY=VALUE",
        help="an LLMRegressor parameter for both LLM fits (repeatable)",
    )
    parser.add_argument("--model", help="the LLMs' base model (default: the estimator's)")
    parser.add_argument("--fresh", action="store_true", help="discard these settings' records")
    parser.add_argument(
        "--report", action="store_true", help="fit nothing: rebuild the tables from the records"
    )
    args = parser.parse_args()
    fixed = [key for key, _ in args.set if key in FIXED]
    if fixed:
        parser.error(f"--set cannot change {', '.join(fixed)}: the screen sets it")
    RESULTS.parent.mkdir(exist_ok=True)
    if args.fresh and RESULTS.exists():
        # Only these settings' records: other screens keep theirs.
        kept = [
            line
            for line in RESULTS.read_text().splitlines(keepends=True)
            if json.loads(line)["settings"] != settings(args)
            or json.loads(line)["train_rows"] != args.rows
        ]
        RESULTS.write_text("".join(kept))
    for name in [] if args.report else args.datasets:
        for seed in args.seeds:
            append_records(RESULTS, run_one(name, seed, args))
    records = load_records(args)
    paired, tally = paired_rows(records)
    llm = ", ".join(["random_state=seed", *(f"{k}={v!r}" for k, v in settings(args).items())])
    body = (
        f"{args.rows} training rows, test rows up to {args.test_rows} (train_test_split); "
        "mean ± std over the seeds run so far (n). The LLM rows are "
        f"LLMRegressor({llm}), with anchor=None "
        "and with anchor='ridge', on the same split; the anchor alone is RidgeAnchor, what "
        "anchor='ridge' fits. 'RMSE / best classic': each split's RMSE over the lowest RMSE "
        "of Ridge, KNN, RandomForest and HistGradientBoosting on it, averaged over the "
        "seeds. 'fit s': seconds. Raw records: benchmarks/results/anchor.jsonl.\n\n"
        + markdown_table(
            ["dataset", "model", "n", "R^2", "RMSE", "RMSE / best classic", "fit s"],
            summary_rows(records),
        )
        + "\n\nPer split: R^2 of the LLM without and with the anchor and the change; the "
        "anchor alone's R^2 and what the anchored LLM adds to it; RMSE over the best "
        "classic's (without / with the anchor) and the anchored LLM's RMSE over the anchor "
        f"alone's. {tally}\n\n"
        + markdown_table(
            [
                "dataset",
                "seed",
                "R^2 LLM",
                "R^2 + anchor",
                "change",
                "R^2 anchor alone",
                "LLM adds",
                "RMSE / best classic",
                "RMSE / anchor",
            ],
            paired,
        )
    )
    write_section(section_name(args), command_line(), body)


if __name__ == "__main__":
    main()
