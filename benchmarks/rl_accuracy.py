"""Test RMSE of SFT-only vs ReMax vs GRPO on public datasets, next to classic regressors.

    python benchmarks/rl_accuracy.py [--datasets diabetes concrete] [--seeds 0 1 2]
                                     [--train-rows 256] [--test-rows 1000]

For each dataset and seed: one SFT fit with the default parameters (``rl_algorithm=None``),
then ReMax and GRPO each continue from a copy of that same SFT state (same backbone, same SFT
budget), with the default RL parameters. All three predict with the default ``predict_mode``.
Classic baselines (Ridge, KNN, RandomForest, HistGradientBoosting) get one-hot categoricals
and standardized numbers. Metrics are on the raw target scale; R^2 is scale-free.
"""

import argparse
import copy
import sys
import time

import numpy as np
import torch
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import public_datasets
from _report import markdown_table, write_section
from llmregressor import LLMRegressor


def classic(model, X):
    numeric = X.select_dtypes("number").columns
    other = X.columns.difference(numeric)
    prep = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        (OneHotEncoder(handle_unknown="ignore"), other),
    )
    return make_pipeline(prep, model)


def continue_with_rl(sft: LLMRegressor, algorithm: str, X, y) -> LLMRegressor:
    """A copy of the SFT-only estimator, trained further by RL as fit() would.

    It reuses fit()'s own training split and validator (a private helper), so the RL phase
    sees the same training rows and restores its best validation state, as in a full fit.
    """
    reg = copy.deepcopy(sft)
    reg.set_params(rl_algorithm=algorithm)
    policy = reg._handle.policy
    y = np.asarray(y, dtype=float)
    train_items, y_train, validate = reg._training_split(policy, reg._row_inputs(X), y)
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(reg._seed)
        rl_history = reg._run_rl(
            policy, train_items, y_train, validate, np.random.default_rng(reg._seed + 1)
        )
    reg.history_ = reg.history_ + rl_history
    reg.fit_time_ = sft.fit_time_ + time.perf_counter() - start
    return reg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(public_datasets.NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--test-rows", type=int, default=1000)
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        X, y = public_datasets.load(name)
        scores: dict[str, list] = {}
        for seed in args.seeds:
            X_tr, X_te, y_tr, y_te = train_test_split(
                X, y, train_size=args.train_rows, random_state=seed
            )
            X_te, y_te = X_te[: args.test_rows], y_te[: args.test_rows]
            models = {
                "Ridge": classic(RidgeCV(), X),
                "KNN": classic(KNeighborsRegressor(), X),
                "RandomForest": classic(RandomForestRegressor(random_state=seed), X),
                "HistGradientBoosting": classic(HistGradientBoostingRegressor(), X),
            }
            fitted = {}
            for label, model in models.items():
                start = time.perf_counter()
                fitted[label] = (model.fit(X_tr, y_tr), time.perf_counter() - start)
            sft = LLMRegressor(rl_algorithm=None, random_state=seed).fit(X_tr, y_tr)
            fitted["LLM SFT only"] = (sft, sft.fit_time_)
            for algorithm in ("remax", "grpo"):
                reg = continue_with_rl(sft, algorithm, X_tr, y_tr)
                fitted[f"LLM SFT + {algorithm}"] = (reg, reg.fit_time_)
            for label, (model, fit_s) in fitted.items():
                pred = model.predict(X_te)
                rmse = float(np.sqrt(np.mean((pred - y_te) ** 2)))
                scores.setdefault(label, []).append((rmse, r2_score(y_te, pred), fit_s))
                print(
                    name,
                    seed,
                    label,
                    f"RMSE {rmse:.3f}",
                    f"R2 {scores[label][-1][1]:.3f}",
                    flush=True,
                )
        best_classic = max(
            np.mean([s[1] for s in scores[k]])
            for k in ("Ridge", "KNN", "RandomForest", "HistGradientBoosting")
        )
        for label, values in scores.items():
            values = np.array(values)
            r2 = values[:, 1].mean()
            rows.append(
                [
                    name,
                    label,
                    f"{values[:, 0].mean():.3f} ± {values[:, 0].std():.3f}",
                    f"{r2:.3f} ± {values[:, 1].std():.3f}",
                    f"{r2 - best_classic:+.3f}",
                    f"{values[:, 2].mean():.0f}",
                ]
            )
    body = (
        f"{args.train_rows} training rows, test rows up to {args.test_rows}, seeds "
        f"{args.seeds}; mean ± std over seeds. 'gap' = R^2 minus the best classic model's "
        "mean R^2 on that dataset. LLM rows use the default parameters; the RL rows continue "
        "from the SFT-only row's state.\n\n"
        + markdown_table(["dataset", "model", "RMSE", "R^2", "gap", "fit s"], rows)
    )
    write_section("RL vs SFT accuracy", "python " + " ".join(sys.argv), body)


if __name__ == "__main__":
    main()
