#!/usr/bin/env bash
# Sets up a virtual environment in .venv with everything the project needs.
#
#   bash scripts/setup.sh           # runtime dependencies
#   bash scripts/setup.sh --test    # plus the test tools
#
# PyTorch is chosen for the machine: where `nvidia-smi` lists a GPU, pip's default build (CUDA);
# otherwise a CPU build, taken from a local wheel directory configured for pip when one holds
# it, else from PyTorch's CPU index. Set TORCH_SPEC (e.g. "torch==2.5.1") to pin a version and
# TORCH_INDEX_URL to force an index. An already-installed torch is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    PY=.venv/bin/python
else
    PY=python
fi
PIP=("$PY" -m pip --disable-pip-version-check -q)

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "${PIP[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: GPU found, installing a CUDA build of PyTorch ($TORCH_SPEC)"
        "${PIP[@]}" install "$TORCH_SPEC"
    else
        echo "setup: no GPU found, installing a CPU build of PyTorch ($TORCH_SPEC)"
        tmp=$(mktemp -d)
        if "${PIP[@]}" download --no-index --no-deps "$TORCH_SPEC" -d "$tmp" >/dev/null 2>&1 \
            && ls "$tmp"/torch-*+cpu-*.whl >/dev/null 2>&1; then
            # A CPU wheel sits in a local wheel directory pip is configured with.
            "${PIP[@]}" install "$TORCH_SPEC"
        else
            "${PIP[@]}" install "$TORCH_SPEC" --extra-index-url https://download.pytorch.org/whl/cpu
        fi
        rm -rf "$tmp"
    fi
fi

if [ "${1:-}" = "--test" ]; then
    "${PIP[@]}" install -e ".[test]"
    # The study-page test drives a real browser: Debian's Chromium, installed where apt-get can.
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
                || echo "setup: chromium could not be installed; install it (apt-get install chromium) for the browser test"
        else
            echo "setup: no chromium found; install it (e.g. sudo apt-get install chromium) for the browser test"
        fi
    fi
else
    "${PIP[@]}" install -e .
fi
"$PY" -c "import torch; print(f'setup: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
