"""NetTrain against what a user would pick instead: Keras 3 `fit()` on JAX, and a hand-written
PyTorch loop, on the same net, data and batch, trials alternating in one run.

Rows: the page's x/y classifier (LSTM 20, last state, linear 3, softmax; 510 strings of lengths
1-8; batch 64; ADAM), the page's addition net (two LSTM 80, last state, linear 1; 9000 strings
of length 5; batch 64; ADAM, mean-squared loss), and Wolfram's LSTM benchmark net (LSTM 32,
input 16, length 32, batch 64, mean-squared loss of the sequence). Then evaluation throughput
(the 510 strings through the trained x/y classifier, one call) and single-example latency.
Training examples/s: the best of each peer's trials, and the median of the trials' paired ratios.

Keras and JAX are bench extras (`pip install 'wlnet[bench]'`); without them the Keras column
says so and the rest runs.

    PYTHONPATH=src .venv/bin/python bench/peers.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import torch

from wlnet.examples.applications import addition_data, addition_net, comparison_data, comparison_net
from wlnet.initialize import NetInitialize
from wlnet.train import NetTrain

BATCH = 64
CLASSES = ["Less", "Greater", "Equal"]

try:
    import keras
except ImportError:  # the bench extra is not installed
    keras = None


# ---- the data, as arrays every peer reads ----------------------------------------------------------
def xy_problem():
    data = comparison_data()
    strings = list(data)
    lengths = np.array([len(s) for s in strings])
    x = np.zeros((len(strings), 8, 2), np.float32)
    for i, s in enumerate(strings):
        for t, c in enumerate(s):
            x[i, t, "xy".index(c)] = 1.0
    y = np.array([CLASSES.index(data[s]) for s in strings])
    return {"wlnet": (comparison_net(), data, {}), "x": x, "lengths": lengths, "y": y,
            "kind": "class", "width": [20], "rounds": 30}


def addition_problem():
    pairs = addition_data()[0]
    alphabet = "0123456789+"
    x = np.zeros((len(pairs), 5, 11), np.float32)
    for i, (s, _) in enumerate(pairs):
        for t, c in enumerate(s):
            x[i, t, alphabet.index(c)] = 1.0
    y = np.array([v for _, v in pairs], np.float32)
    return {"wlnet": (addition_net(), pairs, {"LearningRate": 0.003}), "x": x, "lengths": None, "y": y,
            "kind": "scalar", "width": [80, 80], "rounds": 2}


def benchmark_problem():
    from wlnet import LongShortTermMemoryLayer, NetChain
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, 16, generator=g)
    y = torch.rand(256, 32, 32, generator=g) * 2 - 1
    net = NetChain([LongShortTermMemoryLayer(32)], Input=(32, 16))
    return {"wlnet": (net, {"Input": x, "Output": y}, {}), "x": x.numpy(), "lengths": None, "y": y.numpy(),
            "kind": "sequence", "width": [32], "rounds": 8}


# ---- the peers -------------------------------------------------------------------------------------
def wlnet_rate(p) -> float:
    net, data, options = p["wlnet"]
    return NetTrain(NetInitialize(net), data, "MeanExamplesPerSecond", MaxTrainingRounds=p["rounds"],
                    BatchSize=BATCH, TrainingProgressReporting=None, **options)


class TorchNet(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        sizes = [p["x"].shape[-1], *p["width"]]
        self.lstms = torch.nn.ModuleList(torch.nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))
        out = {"class": 3, "scalar": 1, "sequence": None}[p["kind"]]
        self.head = torch.nn.Linear(sizes[-1], out) if out else None
        self.kind = p["kind"]

    def forward(self, x, lengths):
        if lengths is not None:  # packed: each final state at its own last step
            h = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            for lstm in self.lstms:
                h, (last, _) = lstm(h)
            return self.head(last[0])
        for lstm in self.lstms:
            x, (last, _) = lstm(x)
        return x if self.head is None else self.head(last[0]).squeeze(-1)


def torch_rate(p) -> float:
    torch.manual_seed(1234)
    model = TorchNet(p)
    opt = torch.optim.Adam(model.parameters(), lr=p["wlnet"][2].get("LearningRate", 0.001))
    x, y = torch.from_numpy(p["x"]), torch.from_numpy(p["y"])
    lengths = torch.from_numpy(p["lengths"]) if p["lengths"] is not None else None
    n = len(x)
    t0 = time.perf_counter()
    for _ in range(p["rounds"]):
        perm = torch.randperm(n)
        for j in range(0, n, BATCH):
            idx = perm[j:j + BATCH]
            if lengths is not None:
                ln = lengths[idx]
                out = model(x[idx, :int(ln.max())], ln)
            else:
                out = model(x[idx], None)
            if p["kind"] == "class":
                loss = torch.nn.functional.cross_entropy(out, y[idx])
            else:
                loss = torch.nn.functional.mse_loss(out, y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return p["rounds"] * n / (time.perf_counter() - t0)


def keras_model(p):
    layers = [keras.Input(p["x"].shape[1:])]
    if p["lengths"] is not None:
        layers.append(keras.layers.Masking(0.0))
    widths = p["width"]
    for i, w in enumerate(widths):
        layers.append(keras.layers.LSTM(w, return_sequences=p["kind"] == "sequence" or i < len(widths) - 1))
    if p["kind"] == "class":
        layers.append(keras.layers.Dense(3, activation="softmax"))
        loss = "sparse_categorical_crossentropy"
    elif p["kind"] == "scalar":
        layers.append(keras.layers.Dense(1))
        loss = "mse"
    else:
        loss = "mse"
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(p["wlnet"][2].get("LearningRate", 0.001)), loss=loss)
    return model


def keras_rate(p) -> float | None:
    if keras is None:
        return None
    model = keras_model(p)
    model.fit(p["x"], p["y"], batch_size=BATCH, epochs=1, verbose=0)  # compiles the step
    t0 = time.perf_counter()
    model.fit(p["x"], p["y"], batch_size=BATCH, epochs=p["rounds"], verbose=0, shuffle=True)
    return p["rounds"] * len(p["x"]) / (time.perf_counter() - t0)


# ---- evaluation ------------------------------------------------------------------------------------
def evaluation(trials: int) -> list[tuple]:
    p = xy_problem()
    net, data, _ = p["wlnet"]
    net = NetTrain(NetInitialize(net), data, MaxTrainingRounds=2, BatchSize=BATCH, TrainingProgressReporting=None)
    strings = list(data)
    tmodel = TorchNet(p).eval()
    x, lengths = torch.from_numpy(p["x"]), torch.from_numpy(p["lengths"])
    kmodel = keras_model(p) if keras is not None else None

    def best(f, repeat):
        f()
        times = []
        for _ in range(trials):
            t0 = time.perf_counter()
            for _ in range(repeat):
                f()
            times.append((time.perf_counter() - t0) / repeat)
        return min(times)

    def torch_all():
        with torch.no_grad():
            tmodel(x, lengths).argmax(-1).tolist()

    def torch_one():
        with torch.no_grad():
            tmodel(x[:1, :4], lengths[:1].clamp(max=4)).argmax(-1).tolist()

    rows = [("x/y evaluation, 510 strings (ex/s)", len(strings) / best(lambda: net(strings), 20),
             len(strings) / best(torch_all, 20),
             len(strings) / best(lambda: kmodel.predict_on_batch(p["x"]), 20) if kmodel else None),
            ("x/y one string, latency (calls/s)", 1 / best(lambda: net("xyxy"), 200), 1 / best(torch_one, 200),
             1 / best(lambda: kmodel.predict_on_batch(p["x"][:1, :4]), 50) if kmodel else None)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"keras {keras.__version__ + ' on ' + keras.backend.backend() if keras else 'not installed'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    problems = {"x/y classifier": xy_problem(), "addition": addition_problem(), "LSTM benchmark": benchmark_problem()}
    rows = []
    for name, p in problems.items():
        warm = {**p, "rounds": 1}  # first calls' set-up, untimed
        wlnet_rate(warm)
        torch_rate(warm)
        ours, loop, ker = [], [], []
        for _ in range(args.trials):  # alternating
            ours.append(wlnet_rate(p))
            loop.append(torch_rate(p))
            k = keras_rate(p)
            if k is not None:
                ker.append(k)
        r_loop = statistics.median(a / b for a, b in zip(ours, loop))
        r_ker = statistics.median(a / b for a, b in zip(ours, ker)) if ker else None
        rows.append((name, max(ours), max(loop), max(ker) if ker else None, r_loop, r_ker))
        print(f"  {name}: done", flush=True)
    print(f"\n{'training (ex/s)':<36}{'NetTrain':>10}{'torch loop':>12}{'Keras/JAX':>11}"
          f"{'÷ loop':>8}{'÷ Keras':>9}")
    for name, a, b, c, rl, rk in rows:
        print(f"{name:<36}{a:>10,.0f}{b:>12,.0f}{(f'{c:,.0f}' if c else 'n/a'):>11}{rl:>8.2f}"
              f"{(f'{rk:.2f}' if rk else 'n/a'):>9}")
    print()
    for name, a, b, c in evaluation(args.trials):
        print(f"{name:<36}{a:>10,.0f}{b:>12,.0f}{(f'{c:,.0f}' if c else 'n/a'):>11}{a / b:>8.2f}"
              f"{(f'{a / c:.2f}' if c else 'n/a'):>9}")
    print(f"\nbest of {args.trials} alternating trials each; ratios: median of paired trials (training), "
          f"best over best (evaluation). Load average {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
