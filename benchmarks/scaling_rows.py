"""Fit and predict time and peak memory as the training rows grow.

    python benchmarks/scaling_rows.py [--quick]

Synthetic data: scikit-learn's Friedman #1 (10 numeric features, 5 informative, noise 1)
plus two categorical columns with additive effects (5 and 3 levels). Each configuration
runs in a fresh subprocess that builds the data (and, for the LM, loads the model), then
fits and predicts 256 held-out rows, reading the resident set size from /proc/self/status
(Linux only): ``RSS loaded`` right after the data and model are loaded, then the peak
(VmHWM, reset to the current RSS before each phase) during fit and during predict. Memory
the estimator needs beyond the table shows as the growth of the peaks over ``RSS loaded``.

Budgets, sized for a 2-core CPU (defaults of ``LLMRegressor`` otherwise, so early
stopping holds out 10% of the rows from 1000 training rows on):

- ``mlp-decoder`` (default architecture): ``sft_epochs=2``, no RL, mean of 16 samples;
  1k, 4k and 16k training rows;
- the default LM (embedded SmolLM2-135M, LoRA r=8): ``sft_epochs=1``, no RL, mean of
  ``n_samples=4``; 256 and 1k training rows.

``--quick`` runs only the smallest size of each backbone (about 4 minutes on 2 cores) and
prints the table without writing docs/benchmarks.md; the full run (about 20 minutes) writes
the section "Cost vs rows". Give torch only the cores that are free (``OMP_NUM_THREADS``):
with another job on this 2-core machine, 2 torch threads made the mlp-decoder's 1k-row fit
55x slower than 1 thread (396 s vs 7 s).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _report import command_line, markdown_table, write_section

REPO = Path(__file__).resolve().parents[1]
PREDICT_ROWS = 256
SIZES = {"mlp-decoder": (1000, 4000, 16000), "smollm2-135m": (256, 1000)}
PARAMS = {
    "mlp-decoder": dict(model="mlp-decoder", sft_epochs=2),
    "smollm2-135m": dict(sft_epochs=1, n_samples=4),
}


def make_data(n_rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Friedman #1 plus two categorical columns whose levels shift the target."""
    from sklearn.datasets import make_friedman1

    numbers, y = make_friedman1(n_rows, noise=1.0, random_state=0)
    X = pd.DataFrame(numbers, columns=[f"x{i}" for i in range(numbers.shape[1])])
    rng = np.random.default_rng(0)
    region = rng.integers(0, 5, n_rows)
    grade = rng.integers(0, 3, n_rows)
    X["region"] = pd.Categorical(np.array(["north", "south", "east", "west", "centre"])[region])
    X["grade"] = pd.Categorical(np.array(["low", "mid", "high"])[grade])
    return X, y + 1.5 * region - 2.0 * grade


def memory_mib() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set size of this process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak() -> None:
    """Restart VmHWM from the current RSS, so the next reading is one phase's peak."""
    Path("/proc/self/clear_refs").write_text("5")


def measure(backbone: str, n_rows: int) -> dict:
    """Fit on ``n_rows`` rows and predict 256 others in this process; return the costs."""
    from sklearn.metrics import r2_score

    from llmregressor import LLMRegressor
    from llmregressor.backbones import load_pretrained

    X, y = make_data(n_rows + PREDICT_ROWS)
    X_fit, y_fit, X_new, y_new = X[:n_rows], y[:n_rows], X[n_rows:], y[n_rows:]
    if backbone != "mlp-decoder":
        # Loaded once per process and shared by fit, so it belongs to the baseline.
        load_pretrained(backbone)
    loaded = memory_mib()["VmRSS"]
    reg = LLMRegressor(**PARAMS[backbone], random_state=0)
    reset_peak()
    start = time.perf_counter()
    reg.fit(X_fit, y_fit)
    fit_s = time.perf_counter() - start
    fit_peak = memory_mib()["VmHWM"]
    reset_peak()
    start = time.perf_counter()
    prediction = reg.predict(X_new)
    predict_s = time.perf_counter() - start
    return {
        "backbone": backbone,
        "rows": n_rows,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "loaded_mib": loaded,
        "fit_peak_mib": fit_peak,
        "predict_peak_mib": memory_mib()["VmHWM"],
        "r2": float(r2_score(y_new, prediction)),
    }


def run_fresh(backbone: str, n_rows: int) -> dict:
    """Run :func:`measure` in a new interpreter, so no peak or cache carries over."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks")])}
    done = subprocess.run(
        [sys.executable, __file__, "--measure", backbone, str(n_rows)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{backbone} on {n_rows} rows failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smallest size of each backbone")
    parser.add_argument("--measure", nargs=2, metavar=("BACKBONE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]))))
        return
    header = [
        "backbone",
        "train rows",
        "fit s",
        "predict s (256 rows)",
        "RSS loaded MiB",
        "fit peak MiB",
        "predict peak MiB",
        "fit growth MiB",
        "R^2 (256 rows)",
    ]
    rows = []
    for backbone, sizes in SIZES.items():
        for n_rows in sizes[:1] if args.quick else sizes:
            result = run_fresh(backbone, n_rows)
            rows.append(
                [
                    backbone,
                    n_rows,
                    result["fit_s"],
                    result["predict_s"],
                    round(result["loaded_mib"]),
                    round(result["fit_peak_mib"]),
                    round(result["predict_peak_mib"]),
                    round(result["fit_peak_mib"] - result["loaded_mib"]),
                    result["r2"],
                ]
            )
            print(dict(zip(header, rows[-1], strict=True)), flush=True)
    table = markdown_table(header, rows)
    print(table)
    if args.quick:
        return
    body = (
        "Synthetic Friedman #1 (10 numeric columns, noise 1) plus two categorical columns "
        "(5 and 3 levels, additive effects); each configuration in a fresh process, fit on "
        f"the given rows, predict {PREDICT_ROWS} held-out rows. `mlp-decoder`: default "
        "architecture, `sft_epochs=2`, no RL, mean of 16 samples. Default LM (SmolLM2-135M, "
        "LoRA r=8, `dtype='auto'`): `sft_epochs=1`, no RL, mean of `n_samples=4`. Other "
        "parameters are the defaults (from 1000 rows early stopping holds out 10% of them "
        "and decodes them after each epoch). Memory is the resident set size: `RSS loaded` "
        "after building the data and loading the model, then the peak of each phase "
        "(/proc/self/status VmHWM, reset before the phase); `fit growth` = fit peak - RSS "
        "loaded. Rows become model inputs a chunk of 1024 rows at a time "
        "(`ENCODE_CHUNK_ROWS`), never all up front.\n\n" + table
    )
    write_section("Cost vs rows", command_line(), body)


if __name__ == "__main__":
    main()
