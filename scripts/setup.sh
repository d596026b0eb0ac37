#!/usr/bin/env bash
# Creates .venv (if needed) with torch 2.13.0 (CPU build) and wlnet with its test and bench extras.
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
.venv/bin/python -m pip install -q -e ".[test,bench]"
# the native kernels of the dropout recurrences: built here once (falls back without a compiler);
# when the build fails, why (the last lines of its error)
.venv/bin/python - <<'PY'
from wlnet.kernels import native

if native.disabled():
    print("wlnet: native kernels disabled (WLNET_NO_NATIVE): using the pure-torch recurrences")
else:
    try:
        lib = native.get()
    except RuntimeError:  # WLNET_REQUIRE_NATIVE=1: the tests will fail on it; say why here
        lib = None
    if lib is not None:
        print("wlnet: native kernels built")
    else:
        print("wlnet: native kernels unavailable: using the pure-torch recurrences. The build failed:")
        print("\n".join((native.build_error() or "(no error recorded)").splitlines()[-25:]))
PY
