"""Screen anchors alone, without the language model (seconds): what a residual LM starts from.

    python benchmarks/anchors_alone.py [--datasets diabetes fastfood] [--seeds 0 1 2]
    python benchmarks/anchors_alone.py --anchors additive additive_gp [--section NAME]
    python benchmarks/anchors_alone.py --anchors additive_gp additive_gp:share_rule=one_se

On each table (256 training rows, up to 1000 test rows, ``train_test_split``) this fits
anchors on the training rows and reports their test R^2:

- ``ridge`` (what ``anchor="ridge"`` fits, ``RidgeAnchor``): numbers standardized, other
  columns one-hot, each free-text column (``free_text_columns``) as TF-IDF of its words and
  word pairs, and RidgeCV (``llmregressor.anchor.RIDGE_ALPHAS``);
- ``spline ridge`` (``RidgeAnchor(numeric_basis="spline")``): each numeric column as a
  cubic B-spline, other columns one-hot, RidgeCV: an additive model (on numeric tables
  only); ``spline or ridge`` (``RidgeAnchor(numeric_basis="auto")``, what
  ``anchor="additive"`` does on a table without text): that or the same with linear
  numeric columns, whichever 5-fold CV on the training rows prefers (the splines only
  when they win by more than one standard error);
- on the text tables, two more encodings of the free-text columns beside ``ridge``'s words:
  ``+ every cell`` adds a one-hot column per distinct cell (as if the column were also a
  category), ``+ repeated cells`` one only for cells seen at least twice in the training
  rows (a cell seen once gives a column that fits its own row and nothing else); and
  ``text_tables.py``'s ``TF-IDF + Ridge``, whose text columns are named by hand (on
  tate_year ``artist`` is one-hot encoded there, read as words by the package);
- ``TF-IDF + LM layer L``: that pipeline plus each column's embedding by the frozen
  embedded LM (``llmregressor.LMCellEmbeddings``: layer ``L``'s hidden state averaged
  over the tokens of ``"<column>: <cell>"``), and ``TF-IDF or + LM layer 15``: one of the
  two chosen by 5-fold CV on the training rows (the embeddings only when they win by more
  than one standard error of a candidate's fold scores, or, ``(paired)``, of the two
  candidates' paired fold differences); ``additive``: what ``anchor="additive"`` fits
  (``RidgeAnchor`` with both choices on ``"auto"``: the package's words for free text, its
  one-hot for other columns, and the embeddings of every non-numeric column when the
  paired rule says they help).

With ``--anchors``, only the package's named anchors given (``make_anchor``: what
``LLMRegressor(anchor=name)`` fits, its cell embeddings from the embedded LM) are fitted,
each optionally with parameters set (``name:key=value,key=value``, through ``set_params``);
the table also gives each one's mean fit seconds, the Gaussian process's share per split
where the anchor has one (``gp_weight_``), and each anchor's mean over every table's splits.

Where the LM adds nothing (``residual_scale_`` near 0) the anchor is what a residual
``LLMRegressor`` predicts; where it adds, the table says from where.
"""

import argparse
import ast
import time
from collections import Counter

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from text_tables import EMBEDDING_LAYER, baselines, tfidf_or_lm, with_embeddings

import public_datasets
from _report import command_line, markdown_table, write_section
from llmregressor.anchor import RIDGE_ALPHAS, RidgeAnchor, make_anchor
from llmregressor.features import free_text_columns, make_feature_preprocessor

NUMERIC = ("ridge", "spline ridge", "spline or ridge")
TEXT = (
    "ridge",
    "+ every cell",
    "+ repeated cells",
    "TF-IDF + Ridge",
    "TF-IDF + LM layer 15",
    "TF-IDF + LM layer 30",
    "TF-IDF or + LM layer 15",
    "TF-IDF or + LM layer 15 (paired)",
    "additive",
)
# The embedded model's layers whose cell embeddings join TF-IDF + Ridge (15: the middle one).
LM_LAYERS = (EMBEDDING_LAYER, 30)


def as_strings(column: np.ndarray) -> np.ndarray:
    """Cells as strings (every cell of these tables is present)."""
    return column.astype(str)


def with_cells(X: np.ndarray, min_count: int) -> ColumnTransformer:
    """The package's preprocessing plus one-hot columns of free-text cells seen min_count times."""
    blocks = list(make_feature_preprocessor(X, free_text=True).transformers)
    for j in np.flatnonzero(free_text_columns(X)):
        counts = Counter(as_strings(X[:, j]))
        kept = sorted(cell for cell, n in counts.items() if n >= min_count)
        if kept:
            one_hot = OneHotEncoder(categories=[kept], handle_unknown="ignore")
            blocks.append(
                (f"cells{j}", make_pipeline(FunctionTransformer(as_strings), one_hot), [j])
            )
    return ColumnTransformer(blocks, sparse_threshold=1.0)


def run_one(name: str, seed: int) -> dict[str, float]:
    """Test R^2 of every anchor of this table on one split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, 256, 1000, "train_test_split")
    scores = {"ridge": r2_score(y_te, RidgeAnchor().fit(X_tr, y_tr).predict(X_te))}
    if name not in public_datasets.TEXT_NAMES:
        for key, factory in public_datasets.NAMED_ANCHORS.items():
            anchor = factory().fit(X_tr, y_tr)
            scores[key.replace("_", " ")] = r2_score(y_te, anchor.predict(X_te))
        return scores
    assert not X.isna().any().any(), "as_strings assumes no missing cells"
    A_tr, A_te = X_tr.to_numpy(dtype=object), X_te.to_numpy(dtype=object)
    for label, min_count in (("+ every cell", 1), ("+ repeated cells", 2)):
        model = make_pipeline(with_cells(A_tr, min_count), RidgeCV(alphas=RIDGE_ALPHAS))
        scores[label] = r2_score(y_te, model.fit(A_tr, y_tr).predict(A_te))
    pipeline = baselines(name, X)["TF-IDF + Ridge"].fit(X_tr, y_tr)
    scores["TF-IDF + Ridge"] = r2_score(y_te, pipeline.predict(X_te))
    for layer in LM_LAYERS:
        model = baselines(name, X)["TF-IDF + Ridge"]
        blocks = model.steps[0][1].transformers
        model.set_params(columntransformer__transformers=with_embeddings(blocks, X.columns, layer))
        scores[f"TF-IDF + LM layer {layer}"] = r2_score(y_te, model.fit(X_tr, y_tr).predict(X_te))
    for label, refit in (
        ("TF-IDF or + LM layer 15", public_datasets.simplest_within_one_se),
        ("TF-IDF or + LM layer 15 (paired)", public_datasets.simplest_within_one_paired_se),
    ):
        chooser = tfidf_or_lm(name, X, refit)
        scores[label] = r2_score(y_te, chooser.fit(X_tr, y_tr).predict(X_te))
    additive = make_anchor("additive").fit(X_tr, y_tr)
    scores["additive"] = r2_score(y_te, additive.predict(X_te))
    return scores


def named_anchor(spec: str):
    """The package anchor ``spec`` names: ``name`` or ``name:key=value,key=value``.

    A value that reads as a Python literal (``3``, ``0.5``, ``True``) is that literal, any
    other value a string.
    """
    name, _, settings = spec.partition(":")
    params = dict(setting.split("=", 1) for setting in settings.split(",") if setting)
    return make_anchor(name).set_params(**{key: literal(value) for key, value in params.items()})


def literal(value: str) -> object:
    """``value`` as the Python literal it spells, or as itself where it spells none."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def run_named(name: str, seed: int, anchors: list[str]) -> dict[str, tuple]:
    """Test R^2, fit seconds and process share of each named package anchor on one split."""
    X, y = public_datasets.load(name)
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, seed, 256, 1000, "train_test_split")
    scores = {}
    for anchor in anchors:
        start = time.perf_counter()
        fitted = named_anchor(anchor).fit(X_tr, y_tr)
        seconds = time.perf_counter() - start
        share = getattr(fitted, "gp_weight_", None)
        scores[anchor] = (r2_score(y_te, fitted.predict(X_te)), seconds, share)
        print(name, seed, anchor, scores[anchor], flush=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=[*public_datasets.NAMES, *public_datasets.TEXT_NAMES]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--anchors", nargs="+", help="named package anchors only")
    parser.add_argument("--section", default="Screening: anchors alone")
    args = parser.parse_args()
    if args.anchors:
        rows, every = [], {anchor: [] for anchor in args.anchors}
        for name in args.datasets:
            per_seed = [run_named(name, seed, args.anchors) for seed in args.seeds]
            for anchor in args.anchors:
                values = [scores[anchor][0] for scores in per_seed]
                every[anchor] += values
                seconds = np.mean([scores[anchor][1] for scores in per_seed])
                per = " ".join(f"{v:.3f}" for v in values)
                shares = [scores[anchor][2] for scores in per_seed]
                share = "" if None in shares else " ".join(f"{w:g}" for w in shares)
                rows.append([name, anchor, f"{np.mean(values):.4f}", per, share, float(seconds)])
        for anchor, values in every.items():
            rows.append(["every table", anchor, f"{np.mean(values):.4f}", "", "", ""])
        headers = ["dataset", "anchor", "R^2 (mean)", "R^2 per seed", "GP share per seed", "fit s"]
        body = markdown_table(headers, rows)
        print(body)
        write_section(args.section, command_line(), body)
        return
    rows = []
    for name in args.datasets:
        per_seed = [run_one(name, seed) for seed in args.seeds]
        for label in TEXT if name in public_datasets.TEXT_NAMES else NUMERIC:
            values = [scores[label] for scores in per_seed]
            rows.append([name, label, float(np.mean(values)), " ".join(f"{v:.3f}" for v in values)])
    body = markdown_table(["dataset", "anchor", "R^2 (mean)", "R^2 per seed"], rows)
    print(body)
    write_section(args.section, command_line(), body)


if __name__ == "__main__":
    main()
