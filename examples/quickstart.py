"""Quickstart: fit LLMRegressor on the diabetes data and compare it with a random forest.

Runs offline on CPU with the embedded SmolLM2-135M model in a few minutes (2 cores). The
first run also dequantizes the embedded model once (about 20 s) and caches it.

    python examples/quickstart.py [--train-rows 256] [--rl-algorithm none]

With the defaults (the anchor's estimate corrected after 6 SFT epochs, prediction =
mean of 16 samples) it runs in a minute or two on 2 CPU cores with native bfloat16 (several
times longer in float32 on CPUs without it); ``--rl-algorithm remax`` adds
the RL phase (a few minutes more). ``--sft-epochs`` and ``--n-samples`` shrink the budget
for a quick try.
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

DEFAULTS = LLMRegressor()


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the comparison; return each model's RMSE, R^2 and timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument(
        "--rl-algorithm", choices=["remax", "grpo", "none"], default=DEFAULTS.rl_algorithm
    )
    parser.add_argument("--model", default=DEFAULTS.model)
    parser.add_argument("--sft-epochs", type=int, default=DEFAULTS.sft_epochs)
    parser.add_argument("--n-samples", type=int, default=DEFAULTS.n_samples)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    # Raw (unscaled) features read naturally in a prompt: "age:59,sex:2,bmi:32.1,...".
    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=args.train_rows, random_state=0
    )
    print(f"diabetes: {len(X_train)} training rows, {len(X_test)} test rows")

    models = {
        "LLMRegressor": LLMRegressor(
            model=args.model,
            rl_algorithm=None if args.rl_algorithm == "none" else args.rl_algorithm,
            sft_epochs=args.sft_epochs,
            n_samples=args.n_samples,
            random_state=0,
            verbose=1,
        ),
        "RandomForestRegressor": RandomForestRegressor(random_state=0),
    }
    print(f"{'model':<24}{'RMSE':>8}{'R^2':>8}{'fit s':>8}{'predict s':>11}")
    results = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, y_train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        y_pred = model.predict(X_test)
        predict_s = time.perf_counter() - start
        results[name] = {
            "rmse": float(np.sqrt(mean_squared_error(y_test, y_pred))),
            "r2": float(r2_score(y_test, y_pred)),
            "fit_s": fit_s,
            "predict_s": predict_s,
        }
    for name, r in results.items():
        print(
            f"{name:<24}{r['rmse']:>8.2f}{r['r2']:>8.3f}{r['fit_s']:>8.1f}{r['predict_s']:>11.1f}"
        )
    history = models["LLMRegressor"].history_
    sft_loss = [round(r["train_loss"], 3) for r in history if r["phase"] == "sft"]
    rewards = [round(r["reward_mean"], 3) for r in history if r["phase"] == "rl_step"]
    print(f"SFT train loss per epoch: {sft_loss}")
    if rewards:
        print(f"RL mean reward per step: first {rewards[0]}, last {rewards[-1]}")
    return results


if __name__ == "__main__":
    main()
