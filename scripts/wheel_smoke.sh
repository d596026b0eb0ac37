#!/usr/bin/env bash
# Install as users do: build wlnet's wheel, install it (not editable) into a clean virtual
# environment, and run a smoke test there from outside the checkout: import, evaluate, train a
# round, with the native kernel built from the installed sources (into an extensions directory
# of its own, so the checkout's build is left as it is). Needs .venv (scripts/setup.sh) to build
# the wheel. WLNET_NO_NATIVE=1 skips the kernel; otherwise it must build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
start=$SECONDS
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wlnet-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# the wheel, built from a copy of the sources (the build leaves nothing in the checkout)
mkdir -p "$tmp/src" "$tmp/dist"
tar --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md src | tar -xf - -C "$tmp/src"
.venv/bin/python -m pip wheel -q --no-deps --no-build-isolation "$tmp/src" -w "$tmp/dist"
wheel=$(ls "$tmp"/dist/wlnet-*.whl)

# a clean environment: torch pinned first (the local CPU wheel, as setup.sh gets it), then the wheel
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q "torch==2.13.0"
"$tmp/venv/bin/python" -m pip install -q "$wheel"
built=$((SECONDS - start))

cd "$tmp"
case "${WLNET_NO_NATIVE:-}" in "" | 0) export WLNET_REQUIRE_NATIVE=1 ;; esac
TORCH_EXTENSIONS_DIR="$tmp/extensions" "$tmp/venv/bin/python" - <<'PY'
import math
import os
import sys

import wlnet
from wlnet import LinearLayer, LongShortTermMemoryLayer, NetChain, NetInitialize, NetTrain, SequenceLastLayer
from wlnet.kernels import native

here = os.path.dirname(wlnet.__file__)
assert os.path.commonpath([here, sys.prefix]) == sys.prefix, f"wlnet imported from {here}, not the clean environment"
sources = os.path.join(here, "kernels", "native")
missing = [f for f in (*native._SOURCES, "common.h") if not os.path.isfile(os.path.join(sources, f))]
assert not missing, f"the wheel lacks the native kernel's sources {missing}"

called = set()  # the native functions the run calls
if not native.disabled():
    real_get = native.get

    class Counting:
        def __init__(self, lib):
            self._lib = lib

        def __getattr__(self, name):
            f = getattr(self._lib, name)
            if not callable(f):
                return f

            def counted(*args, **kwargs):
                called.add(name)
                return f(*args, **kwargs)

            return counted

    def get():
        lib = real_get()
        return None if lib is None else Counting(lib)

    native.get = get
    lib = real_get()
    assert lib is not None, native.build_error()
    assert os.path.commonpath([lib.__file__, os.environ["TORCH_EXTENSIONS_DIR"]]) == os.environ["TORCH_EXTENSIONS_DIR"]

net = NetInitialize(NetChain([LongShortTermMemoryLayer(4, Dropout={"VariationalInput": 0.2}), SequenceLastLayer(),
                              LinearLayer(2)], Input=("Varying", 3)), RandomSeeding=1)
x = [[0.5, -1.0, 0.25], [1.0, 0.0, -0.5]]
y = net(x)
assert len(y) == 2 and all(math.isfinite(v) for v in y), y
data = [([[0.1 * i, 0.2, -0.1 * i]] * (1 + i % 3), [float(i % 2), 1.0 - i % 2]) for i in range(16)]
trained, losses = NetTrain(net, data, ["TrainedNet", "RoundLossList"], MaxTrainingRounds=1, BatchSize=8,
                           TrainingProgressReporting=None, RandomSeeding=2)
assert len(losses) == 1 and math.isfinite(losses[0]), losses
loss = losses[0]
assert trained(x) != y  # a round of training changed the net
if not native.disabled():
    assert any("backward" in f for f in called), f"training ran no native kernel: {sorted(called)}"
kernels = "disabled" if native.disabled() else "built from the installed sources, called: " + ", ".join(sorted(called))
print(f"wheel smoke: {wlnet.__file__} imported, evaluated, trained a round (loss {loss:.4f}); native kernels {kernels}")
PY
echo "wheel smoke: passed in $((SECONDS - start)) s ($built s to build the wheel and install it)"
