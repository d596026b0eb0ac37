"""LongShortTermMemoryLayer against torch.nn.LSTM with the same arrays, measured side by side.

Run: .venv/bin/python bench/layer.py

(a) A batch: LongShortTermMemoryLayer(128), Input ("Varying", 32), 64 sequences of length 50.
    Forward through the public call `layer(x)` (numpy in and torch in) against `lstm(x)` under
    no_grad; forward+backward through the trainable module (loss = sum of outputs) against
    nn.LSTM the same. Target: ratio ≤ 1.05.
(b) The per-call time of a tiny call, `layer([[1, 2], [3, 4], [5, 6]])` with n = 3, against
    `lstm(torch.tensor([[[1., 2.], [3., 4.], [5., 6.]]]))` under no_grad. Target: ratio < 2
    (goal 1.3).

Times are medians of many rounds after a warm-up; in each round the two contenders run one
after the other (in alternating order) so that drifts of the machine hit both alike.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import wlnet
from wlnet import LongShortTermMemoryLayer, NetInitialize
from wlnet.kernels import lstm as K
from wlnet.net import Ctx


def torch_twin(layer) -> torch.nn.LSTM:
    """An nn.LSTM holding the layer's arrays (torch's gate order i, f, g, o; zero bias_hh)."""
    a = {name: torch.from_numpy(wlnet.NetExtract(layer, name)) for name in K.ARRAY_NAMES}
    w_ih, w_hh, b_ih, b_hh = K.pack(a)
    lstm = torch.nn.LSTM(w_ih.shape[1], w_hh.shape[1], batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(w_ih)
        lstm.weight_hh_l0.copy_(w_hh)
        lstm.bias_ih_l0.copy_(b_ih)
        lstm.bias_hh_l0.copy_(b_hh)
    return lstm


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
    print(f"{what:<44} wlnet {t_wl * scale:9.2f} {unit}   torch {t_torch * scale:9.2f} {unit}   "
          f"ratio {t_wl / t_torch:5.3f}  (target {target})")


def bench_batch() -> None:
    B, T, k, n = 64, 50, 32, 128
    layer = NetInitialize(LongShortTermMemoryLayer(n, Input=("Varying", k)))
    lstm = torch_twin(layer)
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(B, T, k, generator=g)
    xn = xt.numpy()

    # the two agree before they are timed
    with torch.no_grad():
        ref = lstm(xt)[0]
    assert torch.allclose(torch.from_numpy(layer(xn)), ref, atol=1e-5)

    def torch_forward():
        with torch.no_grad():
            return lstm(xt)

    show("(a) forward, numpy in (public call)", *race(lambda: layer(xn), torch_forward, 30, 3), "≤ 1.05")
    show("(a) forward, torch in (public call)", *race(lambda: layer(xt), torch_forward, 30, 3), "≤ 1.05")

    module = layer.build_module(trainable=True)
    ctx = Ctx(False, None)

    def wl_train():
        module.zero_grad(set_to_none=True)
        module({"Input": wlnet.data.Seq(xt, None)}, ctx)["Output"].data.sum().backward()

    def torch_train():
        lstm.zero_grad(set_to_none=True)
        lstm(xt)[0].sum().backward()

    show("(a) forward+backward (trainable module)", *race(wl_train, torch_train, 20, 2), "≤ 1.05")


def bench_tiny() -> None:
    layer = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    lstm = torch_twin(layer)
    data = [[1, 2], [3, 4], [5, 6]]

    def torch_call():
        with torch.no_grad():
            return lstm(torch.tensor([[[1., 2.], [3., 4.], [5., 6.]]]))

    assert np.allclose(layer(data), torch_call()[0][0].numpy(), atol=1e-6)
    show("(b) tiny call layer([[1, 2], [3, 4], [5, 6]])", *race(lambda: layer(data), torch_call, 200, 50, 200),
         "< 2, goal 1.3")


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_batch()
    bench_tiny()
