"""A NetChain against calling its layers one by one (each a wlnet layer), in the same run.

Prints the median time per call of each and the ratio chain / one-by-one (target ≤ 1.0):
the chain compiles into one module and passes tensors between layers, where the one-by-one
calls convert to the user's data kind and back at every step.

    .venv/bin/python bench/chain.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import wlnet as w


def median_times(fns, repeats: int) -> list[float]:
    """Median seconds per call of each function, the calls interleaved so that load changes
    affect all of them alike."""
    for fn in fns:
        for _ in range(3):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def case(label: str, B: int, T: int, k: int, n: int, repeats: int) -> None:
    chain = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(n), w.LongShortTermMemoryLayer(n),
                                        w.SequenceLastLayer(), w.LinearLayer(10)], Input=("Varying", k)))
    l1, l2, last, lin = (w.NetExtract(chain, i) for i in (1, 2, 3, 4))
    x = np.random.default_rng(0).normal(size=(B, T, k)).astype(np.float32)
    if B == 1:
        x = x[0]

    def one_by_one():
        return lin(last(l2(l1(x))))

    np.testing.assert_allclose(chain(x), one_by_one(), atol=1e-5)
    t_chain, t_layers = median_times([lambda: chain(x), one_by_one], repeats)
    print(f"{label:<34} chain {t_chain * 1e3:8.3f} ms   layers one by one {t_layers * 1e3:8.3f} ms   "
          f"ratio {t_chain / t_layers:5.2f}")


if __name__ == "__main__":
    case("batch 64 × 50 steps, k 32, n 128", 64, 50, 32, 128, 60)
    case("one sequence of 5 steps, k 4, n 8", 1, 5, 4, 8, 500)
