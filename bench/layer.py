"""The recurrent layers against torch's own with the same arrays, measured side by side:
LongShortTermMemoryLayer vs nn.LSTM, GatedRecurrentLayer vs nn.GRU, BasicRecurrentLayer vs nn.RNN.

Run: .venv/bin/python bench/layer.py

(a) A batch: each layer with n = 128, Input ("Varying", 32), 64 sequences of length 50.
    Forward through the public call `layer(x)` (numpy in and torch in) against the torch layer
    under no_grad; forward+backward through the trainable module (loss = sum of outputs)
    against the torch layer the same. Target: ratio ≤ 1.05.
(b) The per-call time of a tiny call, `layer([[1, 2], [3, 4], [5, 6]])` with n = 3, against
    the torch layer on the same tensor under no_grad. Target: ratio < 2 (goal 1.3).

Times are medians of many rounds after a warm-up; in each round the two contenders run one
after the other (in alternating order) so that drifts of the machine hit both alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import wlnet
from wlnet import BasicRecurrentLayer, GatedRecurrentLayer, LongShortTermMemoryLayer, NetInitialize
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx

TWINS = {LongShortTermMemoryLayer: torch.nn.LSTM, GatedRecurrentLayer: torch.nn.GRU,
         BasicRecurrentLayer: torch.nn.RNN}


def torch_twin(layer) -> torch.nn.Module:
    """torch's layer holding the layer's arrays, in its fused layout (`Cell.pack`)."""
    cell = layer.CELL
    a = {name: torch.from_numpy(wlnet.NetExtract(layer, name)) for name in cell.array_names}
    w_ih, w_hh, b_ih, b_hh = cell.pack(a)
    twin = TWINS[type(layer)](w_ih.shape[1], w_hh.shape[1], batch_first=True)
    with torch.no_grad():
        for p, v in zip((twin.weight_ih_l0, twin.weight_hh_l0, twin.bias_ih_l0, twin.bias_hh_l0),
                        (w_ih, w_hh, b_ih, b_hh)):
            p.copy_(v)
    return twin


def race(f, g, repeats: int, inner: int, warmup: int = 5) -> tuple[float, float]:
    """Median seconds per call of f and of g, interleaved."""
    for _ in range(warmup):
        f()
        g()
    tf, tg = [], []
    for r in range(repeats):
        pair = ((f, tf), (g, tg)) if r % 2 == 0 else ((g, tg), (f, tf))
        for fn, times in pair:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) / inner)
    return statistics.median(tf), statistics.median(tg)


def show(what: str, t_wl: float, t_torch: float, target: str) -> None:
    unit, scale = ("ms", 1e3) if t_torch > 1e-3 else ("µs", 1e6)
    print(f"{what:<52} wlnet {t_wl * scale:9.2f} {unit}   torch {t_torch * scale:9.2f} {unit}   "
          f"ratio {t_wl / t_torch:5.3f}  (target {target})")


def bench_batch(kind) -> None:
    B, T, k, n = 64, 50, 32, 128
    layer = NetInitialize(kind(n, Input=("Varying", k)))
    twin = torch_twin(layer)
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(B, T, k, generator=g)
    xn = xt.numpy()
    name = kind.__name__

    with torch.no_grad():  # the two agree before they are timed
        ref = twin(xt)[0]
    assert torch.allclose(torch.from_numpy(layer(xn)), ref, atol=1e-5)

    def torch_forward():
        with torch.no_grad():
            return twin(xt)

    show(f"(a) {name} forward, numpy in", *race(lambda: layer(xn), torch_forward, 30, 3), "≤ 1.05")
    show(f"(a) {name} forward, torch in", *race(lambda: layer(xt), torch_forward, 30, 3), "≤ 1.05")

    module = layer.build(trainable=True)
    ctx = Ctx(False, None)

    def wl_train():
        module.zero_grad(set_to_none=True)
        module({"Input": Seq(xt, None)}, {}, ctx)[0]["Output"].data.sum().backward()

    def torch_train():
        twin.zero_grad(set_to_none=True)
        twin(xt)[0].sum().backward()

    show(f"(a) {name} forward+backward", *race(wl_train, torch_train, 20, 2), "≤ 1.05")


def bench_tiny(kind) -> None:
    layer = NetInitialize(kind(3, Input=("Varying", 2)))
    twin = torch_twin(layer)
    data = [[1, 2], [3, 4], [5, 6]]

    def torch_call():
        with torch.no_grad():
            return twin(torch.tensor([[[1., 2.], [3., 4.], [5., 6.]]]))

    assert np.allclose(layer(data), torch_call()[0][0].numpy(), atol=1e-6)
    show(f"(b) {kind.__name__} tiny call", *race(lambda: layer(data), torch_call, 200, 50, 200), "< 2, goal 1.3")


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for kind in TWINS:
        bench_batch(kind)
    for kind in TWINS:
        bench_tiny(kind)
