#!/usr/bin/env bash
# Creates .venv (if needed) with torch 2.13.0 (CPU build) and wlnet with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first and pinned (the CPU wheel these machines carry), so no range pulls a CUDA build
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[test]"
# the optional native kernel of the dropout recurrence: built here once (falls back without a compiler)
.venv/bin/python -c "from wlnet.kernels import native; print('wlnet: native dropout kernel', 'built' if native.get() else 'unavailable: using the pure-torch recurrence')"
