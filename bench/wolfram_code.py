"""to_wolfram and from_wolfram times: a net of about 1 M array elements and the reference page's nets.

    .venv/bin/python bench/wolfram_code.py

Prints the text size, the time of each direction (best of 3) and whether the arrays came back bit
for bit.
"""

from __future__ import annotations

import time

import numpy as np

from wlnet import (
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetDecoder,
    NetEncoder,
    NetGraph,
    NetInitialize,
    NetPort,
    SequenceLastLayer,
    SoftmaxLayer,
    from_wolfram,
    to_wolfram,
)


def best(f, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def same_arrays(a, b) -> bool:
    x, y = a.arrays(), b.arrays()
    return x.keys() == y.keys() and all(
        (x[k] is None and y[k] is None) or np.array_equal(x[k].numpy().view(np.int32), y[k].numpy().view(np.int32))
        for k in x)


def measure(name, net, repeat=3):
    t_out, text = best(lambda: to_wolfram(net), repeat)
    t_in, back = best(lambda: from_wolfram(text), repeat)
    n = sum(t.numel() for t in net.arrays().values() if t is not None)
    print(f"{name:<34} {n:>9,} elements {len(text) / 1e6:>7.2f} MB   to_wolfram {t_out * 1e3:>8.1f} ms   "
          f"from_wolfram {t_in * 1e3:>8.1f} ms   round trip {(t_out + t_in) * 1e3:>8.1f} ms   "
          f"arrays bit for bit: {same_arrays(net, back)}")


def main():
    large = NetInitialize(NetChain([LongShortTermMemoryLayer(350), SequenceLastLayer(), LinearLayer(10)],
                                   Input=("Varying", 360)))
    measure("LSTM(350) + Linear, ~1 M elements", large)
    page = {
        "LSTM(3), Input {Varying, 2}": NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2))),
        "chain LSTM(3) + SequenceLast": NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()],
                                                               Input=("Varying", 2))),
        "graph with state ports": NetInitialize(NetGraph(
            [LongShortTermMemoryLayer(2, Input=("Varying", 3))],
            [(NetPort("s0"), NetPort(1, "State")), (NetPort("c0"), NetPort(1, "CellState"))])),
        "addition net (2 × LSTM(80))": NetInitialize(NetChain(
            [LongShortTermMemoryLayer(80), LongShortTermMemoryLayer(80), SequenceLastLayer(), LinearLayer(1)],
            Input=NetEncoder(("Characters", "0123456789+", "UnitVector")), Output="Scalar")),
        "comparison net (LSTM(20))": NetInitialize(NetChain(
            [LongShortTermMemoryLayer(20), SequenceLastLayer(), LinearLayer(3), SoftmaxLayer()],
            Input=NetEncoder(("Characters", "xy", "UnitVector")),
            Output=NetDecoder(("Class", ["Less", "Greater", "Equal"])))),
    }
    for name, net in page.items():
        measure(name, net, repeat=5)
    measure("addition net as the page writes it", NetChain(
        [LongShortTermMemoryLayer(80), LongShortTermMemoryLayer(80), SequenceLastLayer(), LinearLayer(1)],
        Input=NetEncoder(("Characters", "0123456789+", "UnitVector")), Output="Scalar"), repeat=5)


if __name__ == "__main__":
    main()
