"""The dropout kernels against the fused no-dropout paths, side by side: the LSTM's, and the
native masked GRU and basic RNN of `kernels.native_cells`.

Run: .venv/bin/python bench/dropout.py [lstm] [gru] [rnn]   (no argument: all three)

For LongShortTermMemoryLayer(128) on a batch of 64 sequences of length 50 with k = 32 (then
n = 32, k = 16, T = 32): a training step (forward + backward, loss = sum of outputs) and a
forward under no_grad, for
  - no dropout: the fused path (`lstm.pack` + `lstm.fused`),
  - torch.nn.LSTM holding the same arrays,
  - each dropout method alone at p = 0.3 (`dropout.lstm_dropout` with a generator; masks are
    drawn afresh in every call, as in training), and all four together.
In every round each contender runs a block of calls, the contenders in a rotating order, so
that drifts of the machine hit all alike; a time is the median over rounds of the time per
call, a ratio the median over rounds of the ratio of two contenders' times in the same round
(a paired comparison, which a burst of load on the shared machine disturbs far less). Ratios
are to the fused no-dropout path and to nn.LSTM measured in the same run. Targets: ≤ 1.15 for
VariationalWeights, ≤ 1.5 (goal 1.25) for every other method and for all four together.
VariationalWeights alone runs torch's fused kernel on masked weights; every other case runs
the custom recurrence `kernels.lstm_custom` (in C++ where `kernels.native` is built).

On a shared virtual machine the host sometimes lends the process less than its 2 cores for
tens of seconds (the fused no-dropout forward at n = 32 then takes ~0.65 ms instead of
~0.42 ms); multi-threaded custom-path timings suffer more from that than the fused kernel's,
so compare tables taken when the fused times are at their usual values.

GRU and basic RNN rows (n = 128, B = 64, T = 50, k = 32): `native_cells.gru` / `native_cells.rnn`
with each method alone at p = 0.3 and all together (masks drawn afresh in every call with the
native `bernoulli`, as in training), against torch's fused kernels without dropout on the same
arrays (`torch._VF.gru`, gates stacked (r, z, n); its z is 1 − Wolfram's, so its update-gate
rows are the negated Input-gate arrays, and b_hh is zero; `torch._VF.rnn_tanh`), in the same
alternating, paired style. Target: ≤ 1.25 for every method and all together.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from wlnet.kernels import dropout, lstm, native, native_cells

P = 0.3
CASES = {
    "VariationalWeights": {"VariationalWeights": P},
    "VariationalInput": {"VariationalInput": P},
    "VariationalState": {"VariationalState": P},
    "StateUpdate": {"StateUpdate": P},
    "all four": dict.fromkeys(dropout.METHODS, P),
}


def contenders(n: int, B: int, T: int, k: int):
    """name → (train_step, forward) closures on one set of arrays and inputs."""
    torch.manual_seed(0)
    arrays = {name: (torch.randn(*shape) / n**0.5).requires_grad_()
              for name, shape in lstm.array_shapes(n, k).items()}
    x = torch.randn(B, T, k, requires_grad=True)
    params = [x, *arrays.values()]

    net = torch.nn.LSTM(k, n, batch_first=True)
    with torch.no_grad():
        for p, v in zip(net.parameters(), lstm.pack(arrays)):
            p.copy_(v)

    def train(f):
        def step():
            for p in params + list(net.parameters()):
                p.grad = None
            f()[0].sum().backward()
        return step

    def forward(f):
        def run():
            with torch.no_grad():
                f()
        return run

    gen = torch.Generator().manual_seed(1)
    fns = {
        "no dropout (fused)": lambda: lstm.fused(x, None, lstm.pack(arrays)),
        "torch nn.LSTM": lambda: net(x),
    }
    for name, spec in CASES.items():
        fns[name] = lambda spec=spec: dropout.lstm_dropout(x, None, arrays, None, None, spec, gen)
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


def table(n: int, B: int, T: int, k: int, rounds: int, reps: int) -> None:
    cs = contenders(n, B, T, k)
    train = measure({name: c[0] for name, c in cs.items()}, rounds, reps)
    fwd = measure({name: c[1] for name, c in cs.items()}, rounds, reps)
    base, peer = "no dropout (fused)", "torch nn.LSTM"
    print(f"\nn={n} B={B} T={T} k={k}, p={P}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}; ms per call (median of {rounds} rounds of {reps} calls), "
          "ratios: median of the per-round ratios")
    print(f"{'':20s} {'train':>8s} {'/fused':>7s} {'/nn.LSTM':>8s}   {'forward':>8s} {'/fused':>7s} {'/nn.LSTM':>8s}")
    for name in cs:
        (t, rb), (_, rp) = summary(train, name, base), summary(train, name, peer)
        (f, fb), (_, fp) = summary(fwd, name, base), summary(fwd, name, peer)
        print(f"{name:20s} {t * 1e3:8.2f} {rb:7.2f} {rp:8.2f}   {f * 1e3:8.2f} {fb:7.2f} {fp:8.2f}")


CELL_CASES = {
    "gru": {"VariationalWeights": "w", "VariationalInput": "x", "VariationalState": "s", "StateUpdate": "m",
            "all four": "xsmw"},
    "rnn": {"VariationalWeights": "w", "VariationalInput": "x", "VariationalState": "s", "all three": "xsw"},
}


def cell_contenders(cell: str, n: int, B: int, T: int, k: int):
    """name → (train_step, forward) closures: torch's fused kernel without dropout, and
    `native_cells` without dropout and with each method (masks drawn in every call)."""
    torch.manual_seed(0)
    names, G = (native_cells.GRU_NAMES, 3) if cell == "gru" else (native_cells.RNN_NAMES, 1)
    part_shapes = {"InputWeights": (n, k), "StateWeights": (n, n), "Biases": (n,)}
    shapes = {name: part_shapes[name.split("Gate")[-1]] for name in names}
    arrays = {name: (torch.randn(*shapes[name]) / n**0.5).requires_grad_() for name in names}
    x = torch.randn(B, T, k, requires_grad=True)
    h0 = torch.zeros(1, B, n)
    with torch.no_grad():
        if cell == "gru":  # torch: gates (r, z, n), z_torch = 1 − z_Wolfram
            a = arrays
            w_ih = torch.cat([a["ResetGateInputWeights"], -a["InputGateInputWeights"], a["MemoryGateInputWeights"]])
            w_hh = torch.cat([a["ResetGateStateWeights"], -a["InputGateStateWeights"], a["MemoryGateStateWeights"]])
            b_ih = torch.cat([a["ResetGateBiases"], -a["InputGateBiases"], a["MemoryGateBiases"]])
        else:
            w_ih, w_hh, b_ih = (arrays[name].clone() for name in names)
        packed = [v.clone().requires_grad_() for v in (w_ih, w_hh, b_ih, torch.zeros_like(b_ih))]
    fused = torch._VF.gru if cell == "gru" else torch._VF.rnn_tanh
    weight_names = [name for name in names if not name.endswith("Biases")]
    lib = native.get()
    gen = torch.Generator().manual_seed(1)
    run_cell = native_cells.gru if cell == "gru" else native_cells.rnn
    params = [x, *arrays.values(), *packed]

    def masked(which):
        parts = []
        if "x" in which:
            parts.append(("zx", (B, G, k)))
        if "s" in which:
            parts.append(("zs", (B, G, n)))
        if "m" in which:
            parts.append(("zm", (B, T, n)))
        if "w" in which:
            parts += [(name, shapes[name]) for name in weight_names]

        def f():
            drawn = dict(zip([p for p, _ in parts], lib.bernoulli([s for _, s in parts], [P] * len(parts), gen,
                                                                  torch.float32))) if parts else {}
            zw = {name: drawn[name] for name in weight_names if name in drawn} or None
            masks = [drawn.get("zx"), drawn.get("zs")] + ([drawn.get("zm")] if cell == "gru" else [])
            return run_cell(x, None, arrays, None, *masks, zw)
        return f

    def train(f):
        def step():
            for p in params:
                p.grad = None
            f()[0].sum().backward()
        return step

    def forward(f):
        def run():
            with torch.no_grad():
                f()
        return run

    fns = {f"no dropout (torch {cell.upper()})": lambda: fused(x, h0, packed, True, 1, 0.0, False, False, True),
           "no dropout (native)": masked("")}
    for name, which in CELL_CASES[cell].items():
        fns[name] = masked(which)
    return {name: (train(f), forward(f)) for name, f in fns.items()}


def cell_table(cell: str, n: int, B: int, T: int, k: int, rounds: int, reps: int) -> None:
    cs = cell_contenders(cell, n, B, T, k)
    train = measure({name: c[0] for name, c in cs.items()}, rounds, reps)
    fwd = measure({name: c[1] for name, c in cs.items()}, rounds, reps)
    base = next(iter(cs))
    print(f"\n{cell.upper()} n={n} B={B} T={T} k={k}, p={P}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, load average {os.getloadavg()[0]:.2f}; ms per call (median of {rounds} rounds of {reps} calls), "
          f"ratios to {base}: median of the per-round ratios")
    print(f"{'':26s} {'train':>8s} {'/torch':>7s}   {'forward':>8s} {'/torch':>7s}")
    for name in cs:
        (t, rb), (f, fb) = summary(train, name, base), summary(fwd, name, base)
        print(f"{name:26s} {t * 1e3:8.2f} {rb:7.2f}   {f * 1e3:8.2f} {fb:7.2f}")


if __name__ == "__main__":
    which = sys.argv[1:] or ["lstm", "gru", "rnn"]
    if "lstm" in which:
        table(128, 64, 50, 32, rounds=25, reps=2)
        table(32, 64, 32, 16, rounds=40, reps=8)
    if native.get() is None and ("gru" in which or "rnn" in which):
        print("\nGRU and RNN rows need the native kernels, which did not build:", native.build_error())
    else:
        for cell in ("gru", "rnn"):
            if cell in which:
                cell_table(cell, 128, 64, 50, 32, rounds=25, reps=2)
