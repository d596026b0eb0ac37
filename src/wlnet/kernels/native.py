"""The native (C++) kernel of `lstm_custom` and `dropout`, built at first use; None when unavailable.

`lstm_native.cpp` holds the masked LSTM recurrence's forward and backward, each one call
(BLAS products called directly, each step's element-wise work one vectorized pass with ATen
`Vectorized`), and the dropout mask draws (a counter-based hash from one seed). It is compiled
once per machine with `torch.utils.cpp_extension.load` (needs ninja and a C++ compiler; ~1 min
on 2 cores) into torch's extensions directory (TORCH_EXTENSIONS_DIR) and reused from there.
It calls the BLAS that torch links (`sgemm_`, `sgemm_batch_`, MKL in torch's x86 wheels); where
those are missing, loading fails and the fallback runs.

`get()` tries at most once per process; any failure (no compiler, no ninja, a build or load
error), WLNET_NO_NATIVE=1 in the environment, or a non-CPU tensor gives the pure-torch code
instead, silently. CPU only, float32 and float64.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import torch

_SOURCE = Path(__file__).with_name("lstm_native.cpp")
_module = None
_tried = False


def disabled() -> bool:
    """Whether WLNET_NO_NATIVE asks for the pure-torch loops."""
    return os.environ.get("WLNET_NO_NATIVE", "").strip() not in ("", "0")


def _build():
    from torch.utils import cpp_extension

    flags = ["-O3", "-fopenmp"]  # at::parallel_for is inline OpenMP code (torch's libgomp at run time)
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:
        cap = "DEFAULT"
    if cap == "AVX512":  # the vector width of ATen's own kernels on this CPU
        flags += ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
                  "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
        tag = "avx512"
    elif cap == "AVX2":
        flags += ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
        tag = "avx2"
    else:
        tag = "default"
    log = logging.getLogger(cpp_extension.__name__)  # it logs compiler checks as warnings
    level = log.level
    log.setLevel(logging.CRITICAL)
    path = os.environ.get("PATH", "")
    # ninja from the package's own environment, which need not be on PATH
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cpp_extension.load(name=f"wlnet_lstm_native_{tag}", sources=[str(_SOURCE)],
                                      extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False)
    finally:
        log.setLevel(level)
        os.environ["PATH"] = path


def get():
    """The compiled module (forward, backward, bernoulli), or None if disabled or unbuildable."""
    global _module, _tried
    if not _tried:
        _tried = True
        if not disabled():
            try:
                _module = _build()
            except Exception:  # any build failure: the pure-torch loops, once and quietly
                _module = None
    return _module


def usable(x: torch.Tensor):
    """The module if it can run on x's device and dtype, else None."""
    return usable_for(x.device, x.dtype)


def usable_for(device: torch.device, dtype: torch.dtype):
    """The module if it can run on `device` with `dtype`, else None."""
    if device.type != "cpu" or dtype not in (torch.float32, torch.float64) or disabled():
        return None
    return get()
