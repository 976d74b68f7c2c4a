#!/usr/bin/env bash
# Idempotent set-up: .venv with torch, then this package with its dev tools.
# torch: TORCH_SPEC (default torch==2.13.0, the CPU build on our CPU machines and CI; on a GPU
# machine, install the CUDA torch you need into .venv first, or set TORCH_SPEC, and it is kept).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
