"""Free text: the language model reads a listing's description, a tree model cannot.

A small synthetic data set of apartment listings is generated here (no download). Each
listing has a floor area, a room count and a short description such as "sunny 3-room flat
near the park, renovated kitchen"; the rent depends on the area and on the words of the
description. LLMRegressor reads the whole row, text included, with no feature engineering.
It is compared with a random forest on the numeric columns only (what a tree model uses
without text processing) and, for reference, a random forest that also gets word counts of
the description through a CountVectorizer.

    python examples/free_text.py [--train-rows 256] [--test-rows 128]
"""

import argparse
import logging

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.pipeline import make_pipeline

from llmregressor import LLMRegressor

DEFAULTS = LLMRegressor()
NUMERIC = ["floor area (m2)", "rooms"]

# Phrase slots of a description and what each phrase adds to the monthly rent.
LIGHT = {"sunny": 90, "bright": 60, "dark": -90, "": 0}
LOCATION = {
    "near the park": 100,
    "in a quiet courtyard": 70,
    "by the station": 20,
    "on a noisy street": -150,
}
CONDITION = {
    "renovated kitchen": 180,
    "new bathroom": 120,
    "original 1970s fittings": -60,
    "needs repair": -200,
}
EXTRA = {"balcony": 80, "no elevator": -50, "": 0}


SLOTS = [LIGHT, LOCATION, CONDITION, EXTRA]


def describe(rooms: int, light: str, location: str, condition: str, extra: str) -> str:
    """Write a listing's description from its phrases."""
    text = f"{light} {rooms}-room flat {location}, {condition}".strip()
    return f"{text}, {extra}" if extra else text


def expected_rent(area: float, *phrases: str) -> float:
    """Noise-free rent: 300 + 11 per m2 + the effect of each phrase (one per slot)."""
    return 300 + 11 * area + sum(slot[p] for slot, p in zip(SLOTS, phrases, strict=True))


def make_listings(n_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Generate listings and their monthly rents (expected rent + noise, rounded to 10).

    The room count follows the area, so it carries no information of its own.
    """
    rng = np.random.default_rng(seed)
    area = rng.uniform(25, 120, n_rows).round()
    rooms = np.clip(np.rint(area / 25 + rng.normal(0, 0.5, n_rows)), 1, 5).astype(int)
    phrases = list(zip(*(rng.choice(list(slot), n_rows) for slot in SLOTS), strict=True))
    X = pd.DataFrame(
        {
            "floor area (m2)": area,
            "rooms": rooms,
            "description": [describe(r, *p) for r, p in zip(rooms, phrases, strict=True)],
        }
    )
    rent = [expected_rent(a, *p) for a, p in zip(area, phrases, strict=True)]
    return X, np.round(np.array(rent) + rng.normal(0, 40, n_rows), -1)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the comparison; return each model's RMSE and R^2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--test-rows", type=int, default=128)
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--sft-epochs", type=int, default=DEFAULTS.sft_epochs)
    parser.add_argument("--n-samples", type=int, default=DEFAULTS.n_samples)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    X_train, y_train = make_listings(args.train_rows, seed=0)
    X_test, y_test = make_listings(args.test_rows, seed=1)
    print(X_train.head(3).to_string(index=False))

    models = {
        "LLMRegressor (all columns)": LLMRegressor(
            model=args.model,
            prompt_template="Apartment listing: {features}\nMonthly rent: ",
            sft_epochs=args.sft_epochs,
            n_samples=args.n_samples,
            random_state=0,
            verbose=1,
        ),
        "RandomForest (numeric only)": make_pipeline(
            make_column_transformer(("passthrough", NUMERIC)),
            RandomForestRegressor(random_state=0),
        ),
        "RandomForest (+ word counts)": make_pipeline(
            make_column_transformer(
                ("passthrough", NUMERIC), (CountVectorizer(ngram_range=(1, 2)), "description")
            ),
            RandomForestRegressor(random_state=0),
        ),
    }
    # Two listings that differ only in their description: only a model that reads the
    # text can tell them apart.
    pair_phrases = [
        ("sunny", "near the park", "renovated kitchen", "balcony"),
        ("dark", "on a noisy street", "needs repair", ""),
    ]
    pair = pd.DataFrame(
        {
            "floor area (m2)": [70.0, 70.0],
            "rooms": [3, 3],
            "description": [describe(3, *p) for p in pair_phrases],
        }
    )
    results = {}
    print(f"{'model':<30}{'RMSE':>8}{'R^2':>8}   rent of the two listings below")
    for name, model in models.items():
        y_pred = model.fit(X_train, y_train).predict(X_test)
        results[name] = {
            "rmse": float(np.sqrt(mean_squared_error(y_test, y_pred))),
            "r2": float(r2_score(y_test, y_pred)),
        }
        better, worse = model.predict(pair)
        print(
            f"{name:<30}{results[name]['rmse']:>8.1f}{results[name]['r2']:>8.3f}"
            f"   {better:.0f} vs {worse:.0f}"
        )
    for description, phrases in zip(pair["description"], pair_phrases, strict=True):
        print(f"  70 m2, 3 rooms, {description!r}: expected rent {expected_rent(70, *phrases):.0f}")
    return results


if __name__ == "__main__":
    main()
