"""ONNX out and in for Wolfram's benchmark nets (LSTM 32 and 1024 wide, 1 and 4 stacked, input
size 16), against torch.onnx.export of the nn.LSTM holding the same arrays, in the same run.

Prints, per net: file sizes (wlnet / torch), export and import seconds, onnxruntime's session
start and its time per batch of 64 sequences of length 32 for each file (ratio wlnet / torch,
target ≈ 1), and the largest difference between the two models' outputs.

    .venv/bin/python bench/onnx_export.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch

import wlnet as w
from wlnet.io.onnx import export_onnx, import_onnx


def seconds(fn, repeats: int = 1):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def case(label: str, n: int, layers: int, folder: str, k: int = 16, B: int = 64, T: int = 32) -> None:
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(n) for _ in range(layers)], Input=("Varying", k)))
    mine, theirs = os.path.join(folder, f"{label}.onnx"), os.path.join(folder, f"{label}-torch.onnx")
    t_export, _ = seconds(lambda: export_onnx(mine, net))
    t_import, _ = seconds(lambda: import_onnx(mine))
    lstm = torch.nn.LSTM(k, n, num_layers=layers, batch_first=True)  # the net's arrays in torch's layout
    cell = w.LongShortTermMemoryLayer.CELL
    with torch.no_grad():
        for i in range(layers):
            arrays = {a: torch.from_numpy(w.NetExtract(net, (i + 1, a))) for a in cell.array_names}
            for name, t in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), cell.pack(arrays)):
                getattr(lstm, f"{name}_l{i}").copy_(t)
    x = torch.randn(B, T, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_torch, _ = seconds(lambda: torch.onnx.export(lstm, (x,), theirs, input_names=["Input"], dynamo=False,
                                                       dynamic_axes={"Input": {0: "batch", 1: "time"}}))
    t_s1, s1 = seconds(lambda: session(mine))
    t_s2, s2 = seconds(lambda: session(theirs))
    feed = x.numpy()
    y1 = s1.run(None, {"Input": feed})[0]
    y2 = s2.run(None, {"Input": feed})[0]
    r1, _ = seconds(lambda: s1.run(None, {"Input": feed}), 20)
    r2, _ = seconds(lambda: s2.run(None, {"Input": feed}), 20)
    mb = os.path.getsize(mine) / 2**20
    print(f"{label:>10}: {mb:7.1f} MB (torch {os.path.getsize(theirs) / 2**20:7.1f} MB); export {t_export:6.2f} s "
          f"(torch {t_torch:6.2f} s); import {t_import:6.2f} s; session {t_s1:5.2f} s (torch {t_s2:5.2f} s); "
          f"run {r1 * 1e3:7.1f} ms (torch {r2 * 1e3:7.1f} ms, ratio {r1 / r2:4.2f}); "
          f"max |Δ| {np.abs(y1 - y2).max():.1e}")


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        for label, n, layers in (("LSTM32", 32, 1), ("LSTMStack", 32, 4), ("LSTMLarge", 1024, 1),
                                 ("LSTMLargeStack", 1024, 4)):
            case(label, n, layers, folder)


if __name__ == "__main__":
    main()
