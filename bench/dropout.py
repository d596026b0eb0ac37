"""The dropout kernels of each recurrent cell against its fused no-dropout path, side by side.

Run: .venv/bin/python bench/dropout.py [lstm] [gru] [rnn]   (no argument: all three)

For each cell (LongShortTermMemoryLayer, GatedRecurrentLayer, BasicRecurrentLayer) with
n = 128 on a batch of 64 sequences of length 50 with k = 32, then n = 32, k = 16, T = 32: a
training step (forward + backward, loss = sum of outputs) and a forward under no_grad, for
  - no dropout: the fused path (`Cell.pack` + `recurrence.fused`, torch's fused kernel),
  - torch's own layer (nn.LSTM, nn.GRU, nn.RNN) holding the same arrays,
  - each dropout method of the cell alone at p = 0.3, and all together, through
    `recurrence.run` with a generator, as a layer runs in training: masks drawn afresh in
    every call, the kernel chosen by `recurrence.choose`.
In every round each contender runs a block of calls, the contenders in a rotating order, so
that drifts of the machine hit all alike; a time is the median over rounds of the time per
call, a ratio the median over rounds of the ratio of two contenders' times in the same round
(a paired comparison, which a burst of load on the shared machine disturbs far less). Ratios
are to the fused no-dropout path and to torch's layer measured in the same run. Target: ≤ 1.25
for every method and for all together. VariationalWeights alone runs torch's fused kernel on
masked weights; every other case runs the cell's masked recurrence in C++ where
`kernels.native` is built.

On a shared virtual machine the host sometimes lends the process less than its 2 cores for
tens of seconds (the fused no-dropout forward at n = 32 then takes ~0.65 ms instead of
~0.42 ms); multi-threaded custom-path timings suffer more from that than the fused kernel's,
so compare tables taken when the fused times are at their usual values.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from wlnet.kernels import cells, native, recurrence

P = 0.3
CELLS = {"lstm": (cells.LSTM, torch.nn.LSTM), "gru": (cells.GRU, torch.nn.GRU), "rnn": (cells.RNN, torch.nn.RNN)}


def contenders(cell: cells.Cell, twin_kind, n: int, B: int, T: int, k: int):
    """name → (train_step, forward) closures on one set of arrays and inputs."""
    torch.manual_seed(0)
    arrays = {name: (torch.randn(*shape) / n**0.5).requires_grad_()
              for name, shape in cell.array_shapes(n, k).items()}
    x = torch.randn(B, T, k, requires_grad=True)
    params = [x, *arrays.values()]
    twin = twin_kind(k, n, batch_first=True)
    with torch.no_grad():
        for p, v in zip(twin.parameters(), cell.pack(arrays)):
            p.copy_(v)

    def train(f):
        def step():
            for p in params + list(twin.parameters()):
                p.grad = None
            f()[0].sum().backward()
        return step

    def forward(f):
        def run():
            with torch.no_grad():
                f()
        return run

    gen = torch.Generator().manual_seed(1)
    fns = {"no dropout (fused)": lambda: recurrence.fused(cell, x, None, cell.pack(arrays)),
           f"torch {twin_kind.__name__}": lambda: twin(x)}
    cases = {method: {method: P} for method in cell.dropout}
    cases[f"all {len(cell.dropout)}"] = dict.fromkeys(cell.dropout, P)
    for name, spec in cases.items():
        fns[name] = lambda spec=spec: recurrence.run(cell, arrays, x, None, (), dropout_spec=spec, generator=gen)
    return {name: (train(f), forward(f)) for name, f in fns.items()}

def measure(fns: dict, rounds: int, reps: int, warmup: int = 3) -> list[dict]:
    """Per round: name → seconds per call, over a block of `reps` calls; contenders interleaved
    in a rotating order each round."""
    names = list(fns)
    out = []
    for r in range(warmup + rounds):
        times = {}
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            t0 = time.perf_counter()
            for _ in range(reps):
                fns[name]()
            times[name] = (time.perf_counter() - t0) / reps
        if r >= warmup:
            out.append(times)
    return out


def summary(rounds: list[dict], name: str, ref: str) -> tuple[float, float]:
    """(median time of `name`, median over rounds of its time / ref's time in the same round)."""
    return (statistics.median(t[name] for t in rounds), statistics.median(t[name] / t[ref] for t in rounds))


def table(key: str, n: int, B: int, T: int, k: int, rounds: int, reps: int) -> None:
    cell, twin_kind = CELLS[key]
    cs = contenders(cell, twin_kind, n, B, T, k)
    train = measure({name: c[0] for name, c in cs.items()}, rounds, reps)
    fwd = measure({name: c[1] for name, c in cs.items()}, rounds, reps)
    base, peer = list(cs)[:2]
    print(f"\n{cell.name} n={n} B={B} T={T} k={k}, p={P}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, load average {os.getloadavg()[0]:.2f}; ms per call (median of {rounds} rounds of {reps} calls), "
          "ratios: median of the per-round ratios")
    print(f"{'':20s} {'train':>8s} {'/fused':>7s} {'/torch':>8s}   {'forward':>8s} {'/fused':>7s} {'/torch':>8s}")
    for name in cs:
        (t, rb), (_, rp) = summary(train, name, base), summary(train, name, peer)
        (f, fb), (_, fp) = summary(fwd, name, base), summary(fwd, name, peer)
        print(f"{name:20s} {t * 1e3:8.2f} {rb:7.2f} {rp:8.2f}   {f * 1e3:8.2f} {fb:7.2f} {fp:8.2f}")


if __name__ == "__main__":
    which = sys.argv[1:] or list(CELLS)
    if native.get() is None:
        print("the native kernels did not build (the masked recurrences run in torch):", native.build_error())
    else:
        times = ", ".join(f"{b} {t * 1e3:.2f} ms" for b, t in native._gemm_times.items())
        how = native.gemm_source + (": " + times if times else "")
        print(f"matrix product of the native kernels: {native.gemm()} ({how})")
    for key in which:
        table(key, 128, 64, 50, 32, rounds=25, reps=2)
    for key in which:
        table(key, 32, 64, 32, 16, rounds=40, reps=8)
