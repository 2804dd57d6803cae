"""Which RL settings help after one shared SFT state (diagnosis of the RL-vs-SFT gap).

    python benchmarks/rl_sweep.py [--dataset diabetes] [--seed 0] [--train-rows 256]
                                  [--sft param=value ...] [--settings JSON] [--tag TEXT]

Fits one SFT-only LLMRegressor (defaults, or the ``--sft`` parameters, values as JSON),
then continues it with several RL settings (each from a copy of the same SFT state, as
benchmarks/rl_accuracy.py does; ``--settings`` replaces the built-in list with a JSON list
of parameter dicts) and reports test R^2 of the greedy decode and of the mean of 16
samples, plus the last RL steps' mean entropy. The section title names the ``--sft``
parameters, a seed other than 0 and ``--tag``, so sweeps from different SFT states (or
with different purposes) keep their own tables.
"""

import argparse
import json

import numpy as np
from rl_accuracy import continue_with_rl
from sft_curve import parse_params
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

import public_datasets
from _report import command_line, markdown_table, write_section
from llmregressor import LLMRegressor
from llmregressor.params import resolved_reward_on

# Plain ReMax (no expert term, each draw rewarded alone): the settings of the first sweep
# in docs/experiment_log.md, made when that was the default.
PAPER_REMAX = {"rl_algorithm": "remax", "rl_epochs": 1, "expert_coef": 0.0, "reward_on": "sample"}
SETTINGS = [
    {**PAPER_REMAX, "rl_lr": 1e-4},
    {**PAPER_REMAX, "rl_lr": 2e-5},
    {**PAPER_REMAX, "rl_lr": 1e-4, "reward": "absolute"},
]


def evaluate(reg, X, y):
    out = []
    for mode, n in (("greedy", 1), ("mean", 16)):
        reg.set_params(predict_mode=mode, n_samples=n)
        out.append(r2_score(y, reg.predict(X)))
    reg.set_params(predict_mode="mean", n_samples=16)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="diabetes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--sft", nargs="*", default=[], metavar="PARAM=VALUE")
    parser.add_argument("--settings", type=json.loads, default=SETTINGS)
    parser.add_argument(
        "--tag", default="", help="added to the section title, so a sweep keeps its own table"
    )
    args = parser.parse_args()
    sft_params = parse_params(args.sft)
    X, y = public_datasets.load(args.dataset)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, train_size=args.train_rows, random_state=args.seed
    )
    X_te, y_te = X_te[:1000], y_te[:1000]
    sft = LLMRegressor(random_state=args.seed, **sft_params, rl_algorithm=None).fit(X_tr, y_tr)
    rows = [[f"SFT only ({sft.sft_epochs} epochs)", *evaluate(sft, X_te, y_te), "", ""]]
    print(rows[-1], flush=True)
    for setting in args.settings:
        params = {k: v for k, v in setting.items() if k != "rl_algorithm"}
        # continue_with_rl sets them on its own copy: they cannot leak into the next setting.
        reg = continue_with_rl(sft, setting["rl_algorithm"], X_tr, y_tr, **params)
        steps = [r for r in reg.history_ if r["phase"] == "rl_step"]
        entropy = np.mean([r["entropy"] for r in steps[-4:]])
        rewards = [r["reward_mean"] for r in steps]
        label = ", ".join(f"{k}={v}" for k, v in setting.items())
        if "reward_on" not in setting:
            # The default "auto" depends on predict_mode: say what it resolved to.
            label += f", reward_on=auto ({resolved_reward_on(reg.get_params())})"
        trend = f"{np.mean(rewards[:4]):.3f} -> {np.mean(rewards[-4:]):.3f}"
        rows.append([label, *evaluate(reg, X_te, y_te), f"{entropy:.3f}", trend])
        print(rows[-1], flush=True)
    body = (
        f"{args.dataset}, {len(X_tr)} training rows, {len(X_te)} test rows, seed {args.seed}. "
        "Every RL row continues from the same SFT state. Entropy: mean per-position entropy "
        "(nats) of the rollout policy over the last 4 RL steps; reward: mean reward of the "
        "first 4 -> last 4 RL steps.\n\n"
        + markdown_table(
            ["setting", "R^2 greedy", "R^2 mean of 16", "entropy", "reward trend"], rows
        )
    )
    # Seeds other than 0, SFT parameters and tags get their own sections rather than
    # replace the plain sweep's table.
    parts = [args.dataset, *(f"{k}={v}" for k, v in sft_params.items())]
    parts += [f"seed={args.seed}"] if args.seed else []
    parts += [args.tag] if args.tag else []
    title = ", ".join(parts)
    write_section(f"RL settings sweep ({title})", command_line(), body)


if __name__ == "__main__":
    main()
