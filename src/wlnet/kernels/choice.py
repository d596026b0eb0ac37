"""Which kernel runs a cell without dropout masks, measured on the machine that runs it.

A shape class is (cell, dtype, width class, batch class, length class, ragged, training): the
width rounded up to a power of 2 (at least 16), the batch and the length up to a power of 4. At
the first call of a class the candidates (the native kernel on each of its matrix products,
"native:blas" and "native:aten", and torch's fused kernel) run a few times on a problem of that
class, trials alternating, and the fastest is kept: in memory, and in a table beside the built
native module keyed by the machine (CPU model and flags, threads, torch version), which every
later process on the machine reads instead of measuring again (one process measures a class at a
time, under a lock: processes started together compute alike). The measurements of a process
take at most `BUDGET` seconds in all; past it a new class takes the choice of the nearest
measured class of the same cell and mode (else the native kernel on the product chosen for the
whole module). A table measured while the machine was busy can be dropped (`forget`, `python -m
wlnet.kernels --forget`).

WLNET_KERNEL=native|fused|custom|unroll forces a kernel wherever the cell has it and it takes
the call's masks; WLNET_GEMM=blas|aten forces the native kernel's product. `python -m
wlnet.kernels [--forget] [--measure]` prints the table (after dropping it, after measuring the
classes of common shapes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path

import torch

from . import native

ENV = "WLNET_KERNEL"
KERNELS = ("native", "fused", "custom", "unroll")
TABLE_NAME = "wlnet_kernels.json"
BUDGET = 1.0  # seconds of measurement a process spends in all
NOMINAL = (64, 16)  # (B, T) of a class asked for without a batch shape

_lock = threading.Lock()
_chosen: dict = {}  # class key → (kernel, gemm or None), this process
_fast: dict = {}  # (cell, dtype, n, B, T, ragged, grad) → the same, without forming the key
_spent = [0.0]  # seconds measured in this process
_table: dict | None = None  # {"machine": key, "choices": {class key: entry}} as read or written
source = {}  # class key → "measured", "kept", "nearest", "default"


def forced() -> str | None:
    """The kernel WLNET_KERNEL names, or None."""
    k = os.environ.get(ENV, "").strip().lower()
    return k if k in KERNELS else None


def _up(v: int, base: int, least: int) -> int:
    return max(least, base ** max(0, math.ceil(math.log(max(v, 1), base) - 1e-9)))


def class_of(cell, dtype, n: int | None, B: int | None, T: int | None, ragged: bool, grad: bool) -> str:
    """The key of a shape class."""
    B, T = (NOMINAL[0] if B is None else B), (NOMINAL[1] if T is None else T)
    n = 64 if n is None else n
    dt = str(dtype).replace("torch.", "")
    return (f"{cell.name}|{dt}|n{_up(n, 2, 16)}|B{_up(B, 4, 1)}|T{_up(T, 4, 4)}|"
            f"{'ragged' if ragged else 'full'}|{'train' if grad else 'forward'}")


def machine() -> str:
    """This machine's key: CPU model, a digest of its flags, threads, torch version."""
    info = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("flags")), "")
    digest = hashlib.sha1(" ".join(sorted(flags.split())).encode()).hexdigest()[:12]
    cap = torch.backends.cpu.get_cpu_capability()
    return f"{model}|flags {digest}|{cap}|{torch.get_num_threads()} threads|torch {torch.__version__}"


def table_path() -> Path | None:
    lib = native.get()
    return None if lib is None else Path(lib.__file__).with_name(TABLE_NAME)


def _read(path) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def read_table(path: Path | None = None) -> dict:
    """{class key: entry} kept for this machine; {} where none, another machine's, or unreadable."""
    path = table_path() if path is None else path
    if path is None:
        return {}
    try:
        data = json.loads(_read(path) or "null")
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("machine") != machine() or not isinstance(data.get("choices"), dict):
        return {}
    return {k: v for k, v in data["choices"].items() if _valid(v)}


def _valid(entry) -> bool:
    return isinstance(entry, dict) and entry.get("kernel") in KERNELS and \
        entry.get("gemm") in (None, *native.GEMMS) and isinstance(entry.get("times", {}), dict)


def _keep(key: str, entry: dict) -> None:
    """Merge one entry into the table on disk (re-read first: other processes may have added theirs)."""
    path = table_path()
    if path is None:
        return
    from ..io.files import atomic_write

    choices = read_table(path)
    choices[key] = entry
    text = json.dumps({"machine": machine(), "choices": dict(sorted(choices.items()))}, indent=1)
    try:
        atomic_write(path, text.encode(), who="wlnet kernels", sync_directory=False)
    except Exception:  # a read-only extensions directory: measured again in the next process
        pass


def forget() -> None:
    """Remove the table kept for this machine (each class is measured again at its next first use)."""
    path = table_path()
    if path is not None:
        with _machine_lock():
            try:
                path.unlink()
            except FileNotFoundError:
                pass
    reset()


def reset() -> None:
    """Forget this process's choices and measurement time (the table on disk stays)."""
    global _table
    with _lock:
        _chosen.clear()
        _fast.clear()
        source.clear()
        _spent[0] = 0.0
        _table = None


def choose(cell, dtype, n: int | None, B: int | None, T: int | None, k: int | None, ragged: bool,
           grad: bool) -> tuple:
    """(kernel, gemm or None) for the cell without masks in this shape class, where the native
    kernel is usable: kept, else measured (within the budget), else the nearest class's."""
    raw = (cell, dtype, n, B, T, ragged, grad)
    got = _fast.get(raw)
    if got is not None:
        return got
    key = class_of(cell, dtype, n, B, T, ragged, grad)
    got = _chosen.get(key)
    if got is not None:
        _fast[raw] = got
        return got
    global _table
    with _lock:
        got = _chosen.get(key)
        if got is not None:
            return got
        if _table is None:
            _table = read_table()
        entry = _table.get(key)
        how = "kept"
        if entry is None and _spent[0] < BUDGET and not torch.jit.is_tracing():  # (a trace would record the trials)
            with _machine_lock():  # one process measures a class; the others then read its choice
                _table = read_table()
                entry = _table.get(key)
                if entry is None:
                    t0 = time.perf_counter()
                    try:
                        entry = measure(cell, dtype, n, B, T, k, ragged, grad)
                    finally:
                        _spent[0] += time.perf_counter() - t0
                    how = "measured"
                    _table[key] = entry
                    _keep(key, entry)
        if entry is None:
            entry, how = _nearest(key), "nearest"
        got = (entry["kernel"], entry.get("gemm"))
        if how != "nearest" or _spent[0] >= BUDGET:  # (a class met while tracing is measured at a later call)
            _chosen[key], source[key], _fast[raw] = got, how, got
        return got


@contextlib.contextmanager
def _machine_lock():
    """An exclusive lock on the table among the processes of this machine (none where the folder
    cannot hold a lock file, or without fcntl)."""
    path = table_path()
    handle = None
    try:
        import fcntl

        handle = open(path.with_name(TABLE_NAME + ".lock"), "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
    except (ImportError, OSError, AttributeError):
        if handle is not None:
            handle.close()
        handle = None
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # (closing releases the lock)


def _nearest(key: str) -> dict:
    """The entry of the measured class of the same cell, dtype and mode whose classes are nearest."""
    parts = key.split("|")

    def distance(other: str) -> float:
        o = other.split("|")
        if o[:2] != parts[:2] or o[5:] != parts[5:]:
            return math.inf
        return sum(abs(math.log2(int(a[1:])) - math.log2(int(b[1:]))) for a, b in zip(parts[2:5], o[2:5]))

    best = min(_table, key=distance, default=None)
    if best is not None and distance(best) < math.inf:
        return _table[best]
    return {"kernel": "native", "gemm": None, "times": {}}


# ---- the measurement -------------------------------------------------------------------------
def candidates(cell) -> tuple:
    """The kernels measured for a cell without masks: the native one on each product, torch's fused one."""
    out = ()
    if cell.native is not None:
        out += tuple(f"native:{g}" for g in native.GEMMS)
    if cell.torch.kernel:
        out += ("fused",)
    return out


def problem(cell, dtype, n: int, B: int, T: int, k: int, ragged: bool, generator: torch.Generator):
    arrays = {name: (torch.randn(shape, generator=generator, dtype=dtype) / n ** 0.5)
              for name, shape in cell.array_shapes(n, k).items()}
    x = torch.randn(B, T, k, generator=generator, dtype=dtype)
    lengths = None
    if ragged and B > 1:
        lengths = torch.randint(1, T + 1, (B,), generator=generator)
        lengths[0] = T
    return arrays, x, lengths


def measure(cell, dtype, n, B, T, k, ragged: bool, grad: bool, trials: int = 3) -> dict:
    """Time the candidates on a problem of the class: the width and batch as given, the length and
    input size capped so that one run is short (a step's cost is what is compared); one warm-up
    each, then `trials` rounds in alternating order, the best of each kept (the best, not the
    median: a time is only ever lengthened by other work on the machine)."""
    from . import recurrence

    B = NOMINAL[0] if B is None else B
    T = min(NOMINAL[1] if T is None else T, 16)
    n = 64 if n is None else n
    k = min(n if k is None else k, 64)
    # at most ~2e7 multiply-adds of state products a run, and at least 8 steps (or T) so that
    # the per-call work (weight copies, the input product) weighs as in a real call
    T = min(T, max(8, int(2e7 / max(1, B * 4 * n * n))))
    g = torch.Generator().manual_seed(0)
    arrays, x, lengths = problem(cell, dtype, n, B, T, k, ragged, g)
    lib = native.get()
    before = lib.gemm()
    names = candidates(cell)

    def run(name):
        kernel, _, product = name.partition(":")
        if product:
            lib.set_gemm(native.GEMMS.index(product))
        if grad:
            xs = x.detach().requires_grad_()
            a = {key: v.detach().requires_grad_() for key, v in arrays.items()}
            out, states = recurrence.run_on(kernel, cell, xs, lengths, a, (), recurrence.NO_MASKS, False)
            (out.sum() + states[0].sum()).backward()
        else:
            with torch.no_grad():
                recurrence.run_on(kernel, cell, x, lengths, arrays, (), recurrence.NO_MASKS, False)

    times = {name: math.inf for name in names}
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for name in names:
                run(name)
            for trial in range(trials):
                for name in (names if trial % 2 == 0 else names[::-1]):
                    t0 = time.perf_counter()
                    run(name)
                    times[name] = min(times[name], time.perf_counter() - t0)
    finally:
        lib.set_gemm(before)
    best = min(names, key=times.__getitem__)
    kernel, _, product = best.partition(":")
    return {"kernel": kernel, "gemm": product or None, "times": {k_: round(t * 1e6, 1) for k_, t in times.items()},
            "shape": [B, T, k, n]}


def describe() -> str:
    """The table kept for this machine, one class a line."""
    path = table_path()
    if path is None:
        return f"the native kernel is not built here ({native.build_error() or 'disabled'}): torch's kernels run"
    lines = [f"machine: {machine()}", f"table: {path}", f"forced: {ENV}={forced() or '(unset)'}"
             f", WLNET_GEMM={os.environ.get('WLNET_GEMM', '') or '(unset)'}"]
    choices = read_table(path)
    if not choices:
        lines.append("(nothing measured yet: classes are measured at first use)")
    for key, e in sorted(choices.items()):
        times = ", ".join(f"{name} {t:.0f} µs" for name, t in e.get("times", {}).items())
        chosen = e["kernel"] + (f":{e['gemm']}" if e.get("gemm") else "")
        lines.append(f"{key:<62} {chosen:<12} {times}")
    return "\n".join(lines)
