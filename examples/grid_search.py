"""Grid search: tune the codec, the RL phase and the row format with GridSearchCV.

The pipeline takes a pandas DataFrame as it is: its first step derives a text-valued
column ("bmi class"), and LLMRegressor, the final step, reads numbers and strings alike,
so no ColumnTransformer, encoder or scaler is needed in front of it.

    python examples/grid_search.py [--train-rows 96] [--cv 2] [--digits D [D ...]]

The grid has (codecs) x (rl_algorithm None, "remax") x (row_format "compact", "sentence")
candidates; with the defaults (two codecs: normalized with 3 digits, scientific) that is 8
candidates x 2 folds = 16 fits plus the refit of the best one. Each fit is short (2 SFT
epochs, 1 RL epoch, 4 samples per prediction), but 17 of them make this the slowest example
on a CPU; shrink ``--train-rows`` or the grid for a first try. The base model is loaded
once and shared by all fits.
"""

import argparse
import logging

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from llmregressor import LLMRegressor, RowSerializer

DEFAULTS = LLMRegressor()


def add_bmi_class(X: pd.DataFrame) -> pd.DataFrame:
    """Add the WHO body-mass-index class as a text column the language model can read."""
    bmi_class = pd.cut(
        X["bmi"],
        bins=[0, 18.5, 25, 30, np.inf],
        labels=["underweight", "normal weight", "overweight", "obese"],
        right=False,
    )
    return X.assign(**{"bmi class": bmi_class})


def main(argv: list[str] | None = None) -> GridSearchCV:
    """Run the grid search; return the fitted GridSearchCV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=96)
    parser.add_argument("--cv", type=int, default=2)
    parser.add_argument(
        "--digits",
        type=int,
        nargs="+",
        default=[DEFAULTS.digits],
        help="digit counts of the normalized codec to search",
    )
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--sft-epochs", type=int, default=2)
    parser.add_argument("--rl-epochs", type=int, default=1)
    parser.add_argument("--n-samples", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=args.train_rows, random_state=0
    )
    pipeline = Pipeline(
        [
            ("features", FunctionTransformer(add_bmi_class)),
            (
                "llm",
                LLMRegressor(
                    model=args.model,
                    sft_epochs=args.sft_epochs,
                    rl_epochs=args.rl_epochs,
                    n_samples=args.n_samples,
                    random_state=0,
                ),
            ),
        ]
    )
    # What the model reads: the serializer LLMRegressor builds with its default settings.
    first = add_bmi_class(X_train.head(1))
    print("First training prompt:")
    print(RowSerializer(list(first.columns))(first.to_numpy(dtype=object))[0])

    # Codec parameters only make sense together (digits belongs to the normalized codec),
    # so the grid is a list of sub-grids, one per codec, sharing the other axes.
    # The row format is a per-dataset choice: on the benchmark datasets each format won on
    # some and lost on others (docs/experiment_log.md, "Row formats: compact vs sentence").
    shared = {"llm__rl_algorithm": [None, "remax"], "llm__row_format": ["compact", "sentence"]}
    param_grid = [
        {"llm__number_format": ["normalized"], "llm__digits": args.digits, **shared},
        {"llm__number_format": ["scientific"], **shared},
    ]
    search = GridSearchCV(pipeline, param_grid, cv=args.cv, scoring="r2", verbose=1)
    search.fit(X_train, y_train)

    cv = search.cv_results_
    table = pd.DataFrame(cv["params"]).rename(columns=lambda c: c.removeprefix("llm__"))
    table["rl_algorithm"] = table["rl_algorithm"].fillna("none (SFT only)")
    table["digits"] = table["digits"].astype("Int64")  # <NA>: not a normalized codec
    table["mean R^2"] = cv["mean_test_score"]
    table["std R^2"] = cv["std_test_score"]
    table["fit s"] = cv["mean_fit_time"]
    print(
        table.sort_values("mean R^2", ascending=False).to_string(
            index=False, float_format="{:.3g}".format
        )
    )
    print(f"best parameters: {search.best_params_}")
    print(f"best cross-validated R^2: {search.best_score_:.3f}")
    print(f"test R^2 of the refitted best pipeline: {search.score(X_test, y_test):.3f}")
    return search


if __name__ == "__main__":
    main()
