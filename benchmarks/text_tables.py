"""Tables with free text: the LLM against TF-IDF + Ridge and gradient boosting.

    python benchmarks/text_tables.py [--datasets fastfood tate_year] [--seeds 0 1 2]
                                     [--configs after anchor='"ridge"'] [--report]

For each dataset and seed (256 training rows, up to 1000 test rows, ``train_test_split``):

- ``HGB (non-text columns)``: HistGradientBoostingRegressor on the columns that are not free
  text, as native categoricals;
- ``TF-IDF + Ridge``: word 1-2-gram TF-IDF of each free-text column plus one-hot of the other
  columns, into RidgeCV;
- one LLM fit per configuration (``after``: today's defaults, or ``name=value`` overrides as
  in fit_speed.py), predicting the mean of 16 draws. ``anchor="tfidf_ridge"`` in a
  configuration gives the fit the ``TF-IDF + Ridge`` pipeline above as its anchor (a user's
  estimator, as any scikit-learn regressor may be); ``anchor="tfidf_or_lm"`` gives it that
  pipeline or the same plus the frozen LM's embeddings of each column, as 5-fold CV on the
  training rows chooses (``tfidf_or_lm``). Anchored fits also record their anchor's test
  R^2 alone and their ``residual_scale_``.

Records append to ``benchmarks/results/text_tables.jsonl``; the table is built from all of
them (the newest per dataset, seed and model).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

import public_datasets
from _report import append_records, command_line, markdown_table, newest_records, write_section
from fit_speed import anchored, parse_config
from llmregressor import LLMRegressor, LMCellEmbeddings

# The embedded model's layer whose cell embeddings ``tfidf_or_lm`` offers (the middle one).
EMBEDDING_LAYER = 15
RESULTS = Path(__file__).resolve().parent / "results" / "text_tables.jsonl"
BASELINES = ("HGB (non-text columns)", "TF-IDF + Ridge")


def baselines(name: str, X) -> dict:
    """The two classic models of a text table."""
    text = public_datasets.TEXT_COLUMNS[name]
    other = [c for c in X.columns if c not in text]
    hgb = make_pipeline(
        make_column_transformer(
            (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), other)
        ),
        HistGradientBoostingRegressor(categorical_features=list(range(len(other)))),
    )
    tfidf = public_datasets.tfidf_ridge(X, text)
    return dict(zip(BASELINES, (hgb, tfidf), strict=True))


def with_embeddings(blocks: list, columns, layer: int = EMBEDDING_LAYER) -> list:
    """Column-transformer ``blocks`` plus the frozen LM's embedding of each of ``columns``."""
    return [*blocks, *[(f"lm_{c}", LMCellEmbeddings(layer=layer), [c]) for c in columns]]


def tfidf_or_lm(name: str, X, refit=public_datasets.simplest_within_one_paired_se):
    """``TF-IDF + Ridge``, or it plus the LM's embeddings of every column, chosen by 5-fold CV.

    The embeddings (``LMCellEmbeddings``, layer ``EMBEDDING_LAYER``) are chosen
    only when they beat the plain pipeline by more than ``refit``'s standard error.
    """
    pipeline = baselines(name, X)["TF-IDF + Ridge"]
    blocks = pipeline.steps[0][1].transformers
    return GridSearchCV(
        pipeline,
        {"columntransformer__transformers": [blocks, with_embeddings(blocks, X.columns)]},
        scoring="neg_mean_squared_error",
        cv=KFold(5, shuffle=True, random_state=0),
        refit=refit,
    )


def run_one(name: str, seed: int, labels: list[str]) -> list[dict]:
    """Fit the baselines and every LLM configuration on one (dataset, seed) split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, 256, 1000, "train_test_split")
    models = {**baselines(name, X), **{f"LLM {label}": label for label in labels}}
    records = []
    for label, model in models.items():
        if isinstance(model, str):
            params = dict(parse_config(model))
            if params.get("anchor") == "tfidf_ridge":
                params["anchor"] = baselines(name, X)["TF-IDF + Ridge"]
            elif params.get("anchor") == "tfidf_or_lm":
                params["anchor"] = tfidf_or_lm(name, X)
            model = LLMRegressor(random_state=seed, **params)
        start = time.perf_counter()
        model.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - start
        pred = model.predict(X_te)
        records.append(
            {
                "model": label,
                "r2": r2_score(y_te, pred),
                "rmse": float(np.sqrt(np.mean((pred - y_te) ** 2))),
                "fit_s": fit_s,
                **anchored(model, X_te, y_te),
                "dataset": name,
                "seed": seed,
                "train_rows": len(X_tr),
                "test_rows": len(X_te),
            }
        )
        print(json.dumps(records[-1]), flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(public_datasets.TEXT_NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["after"])
    parser.add_argument("--report", action="store_true", help="rebuild the table only")
    args = parser.parse_args()
    if not args.report:
        for name in args.datasets:
            for seed in args.seeds:
                append_records(RESULTS, run_one(name, seed, args.configs))
    records = newest_records(
        RESULTS, ("dataset", "seed", "model"), lambda r: r["seed"] in args.seeds
    )
    rows = []
    for name in args.datasets:
        for model in (*BASELINES, *(f"LLM {label}" for label in args.configs)):
            mine = sorted(
                (r for r in records if r["dataset"] == name and r["model"] == model),
                key=lambda r: r["seed"],
            )
            if mine:
                rows.append(
                    [
                        name,
                        model,
                        len(mine),
                        float(np.mean([r["r2"] for r in mine])),
                        " ".join(f"{r['r2']:.3f}" for r in mine),
                        float(np.mean([r["rmse"] for r in mine])),
                        round(float(np.mean([r["fit_s"] for r in mine])), 1),
                    ]
                )
    header = ["dataset", "model", "seeds", "R^2 (mean)", "R^2 per seed", "RMSE", "fit s"]
    body = markdown_table(header, rows)
    print(body)
    write_section("Text-rich tables", command_line(), body)


if __name__ == "__main__":
    main()
