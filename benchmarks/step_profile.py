"""Where an SFT step and a ReMax step spend their time, and their share of the matmul peak.

    python benchmarks/step_profile.py [--configs before after] [--steps 3]

In one process: this machine's matmul peak (2048 x 2048 x 2048, fp32 and bf16, best of 5),
then for each configuration (``before``: adapters on every layer, the default before the
frozen-prefix lever; ``after``: today's defaults; or ``name=value`` overrides) one SFT step
and one ReMax step on 16 diabetes rows, the model and prompt cache warm (a fit's steady state,
epochs after the first). Reported per step: seconds (mean of ``--steps``), FLOPs (counted by
``torch.utils.flop_counter``), achieved FLOP/s as a share of both peaks, and the share of
the step's operator time in large matmuls, LoRA's rank-r matmuls, attention and everything
else (``torch.profiler``, self CPU time by operator and input shape); time outside operators
(the Python loop, the allocator) is the wall time minus the operators' time.
"""

import argparse
import dataclasses
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import public_datasets
from _report import command_line, markdown_table, write_section
from fit_speed import parse_config
from llmregressor import LLMRegressor
from llmregressor.params import rl_config, sft_config
from llmregressor.rl import make_reward

ROWS = 16
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def matmul_peak(dtype: torch.dtype) -> float:
    """FLOP/s of a 2048^3 matmul in ``dtype``, best of 5."""
    a = torch.randn(2048, 2048, dtype=dtype)
    b = torch.randn(2048, 2048, dtype=dtype)
    a @ b
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best


def categorize(prof, rank: int) -> dict[str, float]:
    """Self CPU seconds by category: large matmuls, rank-r (LoRA) matmuls, attention, other."""
    shares = {"matmul": 0.0, "lora matmul": 0.0, "attention": 0.0, "other ops": 0.0}
    for event in prof.key_averages(group_by_input_shape=True):
        seconds = event.self_cpu_time_total / 1e6
        if event.key in MATMULS:
            dims = [d for shape in event.input_shapes for d in shape]
            shares["lora matmul" if rank in dims else "matmul"] += seconds
        elif "attention" in event.key:
            shares["attention"] += seconds
        else:
            shares["other ops"] += seconds
    return shares


def measure(run, steps: int, rank: int) -> dict:
    """Time, count and profile one step function (already warm)."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    with FlopCounterMode(display=False) as counter:
        run()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    shares = categorize(prof, rank)
    shares["outside ops"] = max(wall - sum(shares.values()), 0.0)
    return {
        "seconds": float(np.mean(times)),
        "flops": counter.get_total_flops(),
        "shares": {k: v / wall for k, v in shares.items()},
    }


def profile_config(label: str, X, y, steps: int) -> dict[str, dict]:
    """Fit on 16 rows (one SFT step builds the policy), then profile warm SFT and ReMax steps."""
    # One epoch and no RL whatever the configuration names: the fit only builds the policy.
    overrides = {**parse_config(label), "sft_epochs": 1, "rl_algorithm": None}
    reg = LLMRegressor(random_state=0, **overrides)
    reg.fit(X, y)
    trainer = reg.trainer(X, y)
    params = reg.get_params()
    sft = sft_config(params, reg.codec_)
    rl = dataclasses.replace(rl_config({**params, "rl_algorithm": "remax"}), epochs=1)
    reward = make_reward(reg.reward, reg.codec_)
    rng = np.random.default_rng(0)
    results = {}
    # One block for the whole profile: the prompts' frozen-layer results stay warm, as
    # they do across a fit's epochs.
    with reg.policy_.policy.backbone.caching_prompts():
        for name, run in (
            ("SFT step", lambda: trainer.sft(sft, rng)),
            ("ReMax step", lambda: trainer.rl(rl, reward, rng)),
        ):
            run()  # warm-up: fills the prompt cache, allocator and thread pools
            results[name] = measure(run, steps, reg.lora_r)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["before", "after"])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    X, y = public_datasets.load("diabetes")
    X_tr, _, y_tr, _ = public_datasets.split(X, y, 0, ROWS, 0, "train_test_split")
    rows, shares = [], []
    for label in args.configs:
        for name, result in profile_config(label, X_tr, y_tr.to_numpy(), args.steps).items():
            achieved = result["flops"] / result["seconds"]
            rows.append(
                [
                    label,
                    name,
                    round(result["seconds"], 2),
                    f"{result['flops'] / 1e9:.1f}",
                    f"{achieved / 1e9:.1f}",
                    f"{achieved / peaks['fp32']:.1%}",
                    f"{achieved / peaks['bf16']:.1%}",
                ]
            )
            shares.append([label, name, *(f"{v:.0%}" for v in result["shares"].values())])
            print(rows[-1], shares[-1], flush=True)
    body = (
        f"Matmul peak (2048^3, best of 5): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s. Steps of {ROWS} diabetes rows, warm, "
        f"mean of {args.steps}.\n\n"
        + markdown_table(
            [
                "config",
                "step",
                "s",
                "GFLOP",
                "GFLOP/s",
                "share of fp32 peak",
                "share of bf16 peak",
            ],
            rows,
        )
        + "\n\nShare of the profiled step's wall time:\n\n"
        + markdown_table(
            [
                "config",
                "step",
                "matmul",
                "LoRA rank-r matmul",
                "attention",
                "other ops",
                "outside ops",
            ],
            shares,
        )
    )
    print(body)
    write_section("SFT and RL step profile", command_line(), body)


if __name__ == "__main__":
    main()
