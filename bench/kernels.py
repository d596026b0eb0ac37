"""The LSTM without dropout: the native recurrence (on each of its matrix products: the BLAS
directly, torch's matmul) against torch's fused kernel (oneDNN), and the kernel choice measured
on this machine (`kernels.choice`) for each shape's class, then the whole table kept for the
machine (`python -m wlnet.kernels`).

Run: .venv/bin/python bench/kernels.py [--quick]

For each shape (B batch, T length, k input, n width; "ragged": lengths drawn in 1..T) a training
step (forward + backward of the outputs' and last state's sum, the fused path packing its
weights as a layer does) and a forward under no_grad, on the same arrays and inputs. Trials
alternate the kernels; a ratio is the median over trials of the native time (its faster
product) / the fused time in the same trial (below 1: native is faster), and the times are the
best of each.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from wlnet.kernels import cells, choice, lstm_custom, native, recurrence

LSTM = cells.LSTM
SHAPES = [  # (B, T, k, n, ragged)
    (64, 8, 2, 20, True),  # the page's x/y classifier
    (64, 5, 11, 80, False),  # the page's addition net
    (64, 32, 16, 32, False),  # Wolfram's LSTM benchmark
    (64, 50, 32, 128, False),
    (64, 32, 16, 256, False),
    (64, 32, 16, 512, False),
    (64, 32, 16, 1024, False),  # LSTMLarge
    (1, 8, 2, 20, False),  # one string
    (510, 8, 2, 20, True),  # the 510 x/y strings in one call
]


def problem(B, T, k, n, ragged):
    torch.manual_seed(0)
    arrays = {name: (torch.randn(*shape) / n**0.5).requires_grad_() for name, shape in LSTM.array_shapes(n, k).items()}
    x = torch.randn(B, T, k, requires_grad=True)
    lengths = None
    if ragged:
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
    return arrays, x, lengths


def fused(arrays, x, lengths):
    return recurrence.fused(LSTM, x, lengths, LSTM.pack(arrays), (), exact=False)


def native_on(product):
    def run(arrays, x, lengths):
        lib = native.get()
        before = lib.gemm()
        lib.set_gemm(native.GEMMS.index(product))
        try:
            out, s, c = lstm_custom.run(x, lengths, arrays, use_native=True)
        finally:
            lib.set_gemm(before)
        return out, (s, c)

    return run


def train_step(f, arrays, x, lengths):
    for p in [x, *arrays.values()]:
        p.grad = None
    out, (s, _) = f(arrays, x, lengths)
    (out.sum() + s.sum()).backward()


def forward(f, arrays, x, lengths):
    with torch.no_grad():
        f(arrays, x, lengths)


def compare(shape, how, trials: int) -> tuple:
    arrays, x, lengths = problem(*shape)
    B, T, _, n, _ = shape
    reps = max(3, int(3e5 / (B * T * n)))
    kernels = {"fused": fused, **{f"native:{g}": native_on(g) for g in native.GEMMS}}
    for f in kernels.values():
        for _ in range(2):
            how(f, arrays, x, lengths)
    times = {name: [] for name in kernels}
    for trial in range(trials):
        order = list(kernels) if trial % 2 == 0 else list(kernels)[::-1]
        for name in order:
            t = time.perf_counter()
            for _ in range(reps):
                how(kernels[name], arrays, x, lengths)
            times[name].append((time.perf_counter() - t) / reps)
    products = [name for name in kernels if name != "fused"]
    best = min(products, key=lambda name: min(times[name]))
    ratio = statistics.median(b / a for a, b in zip(times["fused"], times[best]))
    return min(times["fused"]) * 1e3, min(times[best]) * 1e3, ratio, best.split(":")[1]


def main() -> None:
    if native.get() is None:
        print("the native kernel is not built here:", native.build_error())
        return
    trials = 3 if "--quick" in sys.argv else 7
    choice.BUDGET = float("inf")  # every shape's class measured here (a process's first uses keep to 1 s)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {trials} trials")
    print(f"{'B':>4} {'T':>3} {'k':>4} {'n':>5} {'ragged':>6} | {'train: fused ms':>15} {'native ms':>9} {'ratio':>5}"
          f" | {'forward: fused ms':>17} {'native ms':>9} {'ratio':>5} | chosen (train, forward)")
    for shape in SHAPES:
        B, T, k, n, ragged = shape
        tr = compare(shape, train_step, trials)
        fw = compare(shape, forward, trials)
        chosen = []
        for grad in (True, False):
            kernel, product = recurrence.pick(LSTM, torch.device("cpu"), torch.float32, recurrence.NO_MASKS, n, grad,
                                              (B, T, k), ragged)
            chosen.append(kernel + (f":{product}" if product else ""))
        print(f"{B:>4} {T:>3} {k:>4} {n:>5} {str(ragged):>6} | {tr[0]:>15.3f} {tr[1]:>7.3f} {tr[3][0]} {tr[2]:>5.2f}"
              f" | {fw[0]:>17.3f} {fw[1]:>7.3f} {fw[3][0]} {fw[2]:>5.2f} | {', '.join(chosen)}", flush=True)
    print("(native ms: its faster product, b: the BLAS, a: torch's matmul; chosen: measured for the shape's class "
          "at first use, or kept from an earlier process)\n")
    print(choice.describe())


if __name__ == "__main__":
    main()
