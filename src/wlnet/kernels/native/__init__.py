"""The native (C++) kernels of `lstm_custom`, `native_cells` and `dropout`, built at first use; None when unavailable.

Sources, in this folder: `common.h` (the BLAS calls, vectorized helpers, row-block time loops,
the buffer pool), `lstm.cpp`, `gru.cpp`, `rnn.cpp` (each a masked recurrence's forward and
backward, one call each: BLAS products called directly, each step's element-wise work one
vectorized pass with ATen `Vectorized`), `draw.cpp` (the dropout mask draws: a counter-based
hash from one seed) and `module.cpp` (the Python bindings). They are compiled once per machine
with `torch.utils.cpp_extension.load` (needs ninja and a C++ compiler; ~1-2 min on 2 cores)
into torch's extensions directory (TORCH_EXTENSIONS_DIR) and reused from there. They call the
BLAS that torch links (`sgemm_`, `sgemm_batch_`, MKL in torch's x86 wheels); where those are
missing, loading fails and the fallback runs.

`get()` tries at most once per process, under a lock: threads whose first calls come at once
wait for the one build and all get its module (or all the same error). WLNET_NO_NATIVE=1 in
the environment, or a non-CPU tensor, gives the pure-torch code instead. A failed build (no
compiler, no ninja, a build or load error) falls back too, and its error text is kept
(`build_error()`); with WLNET_REQUIRE_NATIVE=1 it is an error instead (`get()` raises). CPU
only, float32 and float64.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import torch

_DIR = Path(__file__).parent
_SOURCES = ("lstm.cpp", "rows.cpp", "gru.cpp", "rnn.cpp", "draw.cpp", "module.cpp")
_module = None
_tried = False  # set only once _module and _error hold the outcome (read without the lock)
_error: str | None = None
_lock = threading.Lock()


def disabled() -> bool:
    """Whether WLNET_NO_NATIVE asks for the pure-torch loops."""
    return os.environ.get("WLNET_NO_NATIVE", "").strip() not in ("", "0")


def required() -> bool:
    """Whether WLNET_REQUIRE_NATIVE makes a missing kernel an error (unless it is disabled)."""
    return os.environ.get("WLNET_REQUIRE_NATIVE", "").strip() not in ("", "0")


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
            return cpp_extension.load(name=f"wlnet_native_{tag}", sources=[str(_DIR / s) for s in _SOURCES],
                                      extra_cflags=flags, extra_ldflags=["-fopenmp"], verbose=False)
    finally:
        log.setLevel(level)
        os.environ["PATH"] = path


GEMMS = ("blas", "aten")  # the matrix product the kernels call: the BLAS directly, torch's matmul
_gemm_times: dict = {}  # backend → the seconds measured for it (empty when chosen otherwise)
gemm_source = ""  # how the product was chosen: "WLNET_GEMM", "measured", "kept" (measured before here)


def _time_gemm(lib, backend: str, trials: int = 3) -> float:
    """The time of a dropout kernel's training step with `backend` (best of `trials`, summed over
    the shapes): the masked LSTM (input and state masks: per-gate products every step) at n = 32
    and n = 128, batch 64."""
    lib.set_gemm(GEMMS.index(backend))
    g = torch.Generator().manual_seed(0)
    total = 0.0
    for n, T, k in ((32, 16, 16), (128, 8, 32)):
        arrays = [torch.randn((n, k) if i < 4 else (n, n) if i < 8 else (n,), generator=g) * 0.1
                  for i in range(12)]  # W_x, W_s, b of the four gates
        x, zx, zs = torch.randn(T, 64, k, generator=g), torch.ones(64, 4, k), torch.ones(64, 4, n)
        out = lib.forward(x, None, None, arrays, [], zx, zs, None, [])
        S, s_T, c_T, G, C, wx, ws, XI, SZ = out
        g_out = torch.ones(T, 64, n)
        times = []
        for _ in range(trials + 1):
            t0 = time.perf_counter()
            lib.forward(x, None, None, arrays, [], zx, zs, None, [])
            lib.backward(g_out, s_T, c_T, x, wx, ws, [], zx, zs, None, G, C, S, XI, SZ, [],
                         [True, True, True, True])
            times.append(time.perf_counter() - t0)
        total += min(times[1:])  # (the first: warm-up)
    return total


def choose_gemm(lib) -> str:
    """Set the matrix product the kernels call: WLNET_GEMM ("blas" or "aten") if given, else the
    faster of the two on a dropout kernel's step, measured here (trials alternating; ~40 ms)."""
    _gemm_times.clear()
    wanted = os.environ.get("WLNET_GEMM", "").strip().lower()
    if wanted in GEMMS:
        lib.set_gemm(GEMMS.index(wanted))
        return wanted
    for _ in range(2):  # alternating
        for backend in GEMMS:
            t = _time_gemm(lib, backend)
            _gemm_times[backend] = min(t, _gemm_times.get(backend, t))
    chosen = min(GEMMS, key=_gemm_times.__getitem__)
    lib.set_gemm(GEMMS.index(chosen))
    return chosen


def _chosen_gemm(lib) -> str:
    """The matrix product for this machine: WLNET_GEMM if given; else the one measured before
    and kept beside the built module (so that every process on the machine computes alike);
    else measured now (`choose_gemm`) and kept."""
    global gemm_source
    if os.environ.get("WLNET_GEMM", "").strip().lower() in GEMMS:
        gemm_source = "WLNET_GEMM"
        return choose_gemm(lib)
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), "")
    key = f"{cpu}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    path = Path(lib.__file__).with_name("wlnet_gemm.txt")
    kept = _read(path).split("\n")
    if len(kept) >= 2 and kept[0] == key and kept[1] in GEMMS:
        lib.set_gemm(GEMMS.index(kept[1]))
        gemm_source = f"kept in {path}"
        return kept[1]
    chosen = choose_gemm(lib)
    gemm_source = "measured"
    from ...core.errors import ExportError
    from ...io.files import atomic_write

    try:
        atomic_write(path, f"{key}\n{chosen}\n".encode(), "the native kernels' product table", sync_directory=False)
    except ExportError:  # a read-only extensions directory: measured again in the next process
        pass
    return chosen


def _read(path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


_gemm_fns: list = []  # the built module's (gemm, set_gemm), kept apart from `_module`


def current_gemm() -> int:
    """The index (in GEMMS) of the product the kernels call now (the module must be built)."""
    return _gemm_fns[0]() if _gemm_fns else get().gemm()


def set_current_gemm(i: int) -> None:
    if _gemm_fns:
        _gemm_fns[1](i)
    else:
        get().set_gemm(i)


def gemm() -> str | None:
    """The matrix product the kernels call ("blas" or "aten"), None without the kernels."""
    lib = get()
    return None if lib is None else GEMMS[lib.gemm()]


def build_error() -> str | None:
    """The error text of the failed build, or None (built, disabled or not tried yet)."""
    return _error


def get():
    """The compiled module, or None if disabled or unbuildable (with WLNET_REQUIRE_NATIVE=1
    unbuildable raises a RuntimeError that gives the build error).

    Its functions: `forward`, `backward` (the LSTM), `forward_rows`, `backward_rows` (the LSTM
    on batch-major rows in any order), `gru_forward`, `gru_backward`, `rnn_forward`,
    `rnn_backward`, `bernoulli` (the mask draws), `set_gemm` and `gemm` (the matrix product the
    kernels call, chosen at first use by `choose_gemm`)."""
    global _module, _tried, _error
    if not _tried and not disabled():
        with _lock:
            if not _tried:  # (another thread may have finished it while this one waited)
                module, error = None, None
                try:
                    module = _build()
                except Exception as e:  # any build failure: the pure-torch loops, with the reason kept
                    error = f"{type(e).__name__}: {e}"
                if module is not None:
                    try:
                        _chosen_gemm(module)
                    except Exception:  # a failed measurement keeps the BLAS (the default)
                        module.set_gemm(0)
                if module is not None:
                    _gemm_fns[:] = [module.gemm, module.set_gemm]
                _module, _error = module, error
                _tried = True
    if _module is None and required() and not disabled():
        raise RuntimeError(f"wlnet: the native kernel is required (WLNET_REQUIRE_NATIVE=1) but did not build:\n"
                           f"{_error or 'no build error recorded'}")
    return _module


def usable(x: torch.Tensor):
    """The module if it can run on x's device and dtype, else None."""
    return usable_for(x.device, x.dtype)


def usable_for(device: torch.device, dtype: torch.dtype):
    """The module if it can run on `device` with `dtype`, else None."""
    if device.type != "cpu" or dtype not in (torch.float32, torch.float64) or disabled():
        return None
    return get()
