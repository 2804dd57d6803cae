"""Replay the feasibility run behind issue 3's floor, on its own diabetes split.

    python benchmarks/feasibility_replay.py [--seed 0]

The run DESIGN.md describes: diabetes, 256 training rows and the other 186 to test, LoRA r=8
on all linear layers, 3-digit normalized codec, batch 16, plain cross-entropy; 6 SFT epochs at
lr 5e-4, then 6 more at lr 1e-3 (greedy R^2 0.12, mean of 8 draws 0.32); then ReMax with the
reward of each draw (4 samples + greedy per prompt, lr 5e-5 to 1e-4, 3 epochs, no expert
term): greedy 0.31-0.33, mean of 8 about 0.35. This script runs that schedule through the
estimator's own SFT and RL loops on ``public_datasets.split(..., "permutation")`` (seed 0 is
that run's split) and scores the test rows after each stage. By default it differs from that
run in two ways: the prompt wording (that run wrote ``age:54,sex:2,...,target:``; here
``row_format="sentence"``'s ``age is 54, sex is 2, ...``) and the learning-rate schedule within
each stage (here the estimator's cosine with warm-up). ``--compact-rows`` and
``--constant-lr`` copy each as far as it is known: ``row_format="compact"`` (that run's
rows), and a constant lr after the warm-up, by patching the training phases' optimizer
factory for this process only; ``--as-that-run`` is both. ``--sft-only`` stops after the
two SFT stages.
"""

import argparse
import copy
import sys
import time

import numpy as np
import torch
from rl_accuracy import continue_with_rl
from sklearn.metrics import r2_score
from transformers import get_constant_schedule_with_warmup

import llmregressor.rl
import llmregressor.sft
import public_datasets
from _report import markdown_table, write_section
from llmregressor import LLMRegressor
from llmregressor._distributed import DataParallel
from llmregressor._training import make_optimizer


def constant_lr_optimizer(backbone, lr: float, total_steps: int, warmup_fraction: float = 0.1):
    """The phases' own optimizer at a constant lr after the same warm-up: that run's schedule."""
    optimizer, _ = make_optimizer(backbone, lr, total_steps, warmup_fraction)
    warmup = int(np.ceil(warmup_fraction * total_steps))
    return optimizer, get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup)


def patch_constant_lr() -> None:
    """Schedule both training phases' learning rates as the feasibility run did."""
    llmregressor.sft.make_optimizer = constant_lr_optimizer
    llmregressor.rl.make_optimizer = constant_lr_optimizer


def continue_sft(reg: LLMRegressor, X, y, epochs: int, lr: float) -> None:
    """Train ``reg``'s fitted policy ``epochs`` more SFT epochs at ``lr``, in place.

    A second call of fit()'s SFT phase (private helpers), with a fresh optimizer and
    schedule, as a second stage of training started from the first stage's weights would
    have. ``reg``'s SFT parameters describe that second stage afterwards.
    """
    reg.set_params(sft_epochs=epochs, sft_lr=lr, n_iter_no_change=None)
    policy = reg._handle.policy
    single_process = DataParallel()
    train_inputs, y_train, validate = reg._training_split(
        policy, reg._row_inputs(X), np.asarray(y, dtype=float), single_process
    )
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(reg._seed + 2)
        reg.history_ = reg.history_ + reg._run_sft(
            policy,
            train_inputs,
            y_train,
            validate,
            np.random.default_rng(reg._seed + 2),
            reg.verbose,
            single_process,
            None,
        )
    reg.fit_time_ += time.perf_counter() - start


def scores(reg: LLMRegressor, X, y: np.ndarray) -> list:
    """R^2 of the greedy decode, of the mean of the first 8 draws and of all 16."""
    draws = reg.sample(X)
    greedy = copy.copy(reg).set_params(predict_mode="greedy").predict(X)
    return [
        r2_score(y, greedy),
        r2_score(y, draws[:, :8].mean(axis=1)),
        r2_score(y, draws.mean(axis=1)),
        reg.fit_time_,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compact-rows", action="store_true", help="that run's row format")
    parser.add_argument("--constant-lr", action="store_true", help="that run's lr schedule")
    parser.add_argument("--as-that-run", action="store_true", help="both of the above")
    parser.add_argument("--sft-only", action="store_true", help="no ReMax stage")
    args = parser.parse_args()
    compact_rows = args.compact_rows or args.as_that_run
    constant_lr = args.constant_lr or args.as_that_run
    params = {"row_format": "compact" if compact_rows else "sentence"}
    if constant_lr:
        patch_constant_lr()
    X, y = public_datasets.load("diabetes")
    X_tr, X_te, y_tr, y_te = public_datasets.split(X, y, args.seed, 256, 1000, "permutation")
    rows = []
    reg = LLMRegressor(
        rl_algorithm=None,
        sft_loss="ce",
        sft_epochs=6,
        sft_lr=5e-4,
        random_state=args.seed,
        **params,
    ).fit(X_tr, y_tr)
    rows.append(["SFT, 6 epochs at lr 5e-4", *scores(reg, X_te, y_te)])
    continue_sft(reg, X_tr, y_tr, epochs=6, lr=1e-3)
    rows.append(["+ 6 SFT epochs at lr 1e-3", *scores(reg, X_te, y_te)])
    settings = (
        {}
        if args.sft_only
        else {
            "+ ReMax, reward per draw, no expert term (that run)": dict(
                reward_on="sample", expert_coef=0.0
            ),
            "+ ReMax, default RL parameters": {},
        }
    )
    for label, rl_params in settings.items():
        rl = continue_with_rl(reg, "remax", X_tr, y_tr, rl_epochs=3, **rl_params)
        rows.append([label, *scores(rl, X_te, y_te)])
    for row in rows:
        print(row, flush=True)
    changes = [
        "that run's row format (`age:54,sex:2,...,target:`)" if compact_rows else "",
        "a constant learning rate after the 10% warm-up of each stage" if constant_lr else "",
    ]
    setup = " and ".join(c for c in changes if c) or "otherwise the defaults"
    variant = {
        (True, True): ", as that run",
        (True, False): ", compact rows",
        (False, True): ", constant lr",
    }.get((compact_rows, constant_lr), "")
    variant += ", SFT only" if args.sft_only else ""
    remax = "" if args.sft_only else ", both ReMax rows the second SFT stage's, with `rl_epochs=3`"
    body = (
        f"diabetes, permutation split seed {args.seed} (256 training rows, {len(y_te)} test "
        f"rows), `sft_loss='ce'`, {setup}; each stage continues the state of the row above "
        f"it{remax}. R^2 of the greedy decode and of the mean of the first 8 / all 16 draws "
        "per test row; fit s: all stages up to that row.\n\n"
        + markdown_table(["state", "R^2 greedy", "R^2 mean of 8", "R^2 mean of 16", "fit s"], rows)
    )
    write_section(f"Feasibility replay (diabetes{variant})", "python " + " ".join(sys.argv), body)


if __name__ == "__main__":
    main()
