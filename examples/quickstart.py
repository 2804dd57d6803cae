"""Quickstart: fit LLMRegressor on the diabetes data and compare it with a random forest.

Runs offline on CPU with the embedded SmolLM2-135M model in a few minutes (2 cores). The
first run also dequantizes the embedded model once (about 20 s) and caches it.

    python examples/quickstart.py [--train-rows 256] [--rl-algorithm remax]

With the defaults (6 SFT epochs, prediction = mean of 16 samples) it runs in about 8
minutes on 2 CPU cores; ``--rl-algorithm remax`` adds the RL phase (2 epochs, ~4 minutes).
"""

import argparse
import logging
import time

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from llmregressor import LLMRegressor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--rl-algorithm", choices=["remax", "grpo"], default=None)
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    # Raw (unscaled) features read naturally in a prompt: "age is 59, sex is 2, bmi is 32.1".
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=args.train_rows, random_state=0
    )
    print(f"diabetes: {len(X_train)} training rows, {len(X_test)} test rows")

    models = {
        "LLMRegressor": LLMRegressor(
            model=args.model,
            rl_algorithm=args.rl_algorithm,
            random_state=0,
            verbose=1,
        ),
        "RandomForestRegressor": RandomForestRegressor(random_state=0),
    }
    print(f"{'model':<24}{'RMSE':>8}{'R^2':>8}{'fit s':>8}{'predict s':>11}")
    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        y_pred = model.predict(X_test)
        predict_s = time.perf_counter() - start
        rmse = float(np.sqrt(mean_squared_error(y_test, y_pred)))
        rows.append(
            f"{name:<24}{rmse:>8.2f}{r2_score(y_test, y_pred):>8.3f}{fit_s:>8.1f}{predict_s:>11.1f}"
        )
    print("\n".join(rows))
    history = models["LLMRegressor"].history_
    sft_loss = [round(r["train_loss"], 3) for r in history if r["phase"] == "sft"]
    rewards = [round(r["reward_mean"], 3) for r in history if r["phase"] == "rl_step"]
    print(f"SFT train loss per epoch: {sft_loss}")
    if rewards:
        print(f"RL mean reward per step: first {rewards[0]}, last {rewards[-1]}")


if __name__ == "__main__":
    main()
