"""NetTrain against what a user would pick instead: Keras 3 `fit()` on JAX, and a hand-written
PyTorch loop, on the same net, data and batch, trials alternating in one run.

Rows: the page's x/y classifier (LSTM 20, last state, linear 3, softmax; 510 strings of lengths
1-8; batch 64; ADAM), the page's addition net (two LSTM 80, last state, linear 1; 9000 strings
of length 5; batch 64; ADAM, mean-squared loss), the character language model of the sequence
scenarios (embedding 32, LSTM 192, linear 96 and softmax at every step, cross-entropy of the
next character; 512 strings of 81 characters of Python's own source; batch 32), and Wolfram's
four LSTM benchmark nets (LSTM 32 or 1024 wide, alone or 4 stacked, input 16, length 32, batch
64, mean-squared loss of the sequence). Then evaluation throughput (the 510 strings through the
trained x/y classifier, one call) and single-example latency.

Training examples/s: the best of each peer's trials, and the median of the trials' paired ratios.
For the wide nets the true floor: per layer, the faster of its training matrix products (forward:
the input product of all steps and a state product per step; backward: a state product per
step, then the input, input-weight and state-weight gradients over all steps), each on the
fastest of torch.mm, MKL's sgemm and oneDNN's matmul on its shape in the same run, and oneDNN's
own fused LSTM step; as examples/s, and NetTrain's share of it.
Then each peer's whole-process peak RSS training LSTMLarge and LSTMLargeStack for a round, each in
a process of its own (`--rss`): NetTrain on the uninitialized net, and on a net the caller
initialized and holds.

Keras and JAX are bench extras (`pip install 'wlnet[bench]'`); without them the Keras column
says so and the rest runs.

    PYTHONPATH=src .venv/bin/python bench/peers.py [--trials N] [--quick] [--only ROW ...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import torch

from wlnet.examples.applications import addition_data, addition_net, comparison_data, comparison_net
from wlnet.examples.sequences import LM_ALPHABET, language_data, language_model, language_text
from wlnet.nets.initialize import NetInitialize
from wlnet.train.api import NetTrain

BATCH = 64
CLASSES = ["Less", "Greater", "Equal"]

try:
    if "--rss" in sys.argv and "keras" not in sys.argv:  # a peak-memory run of another peer: not loaded
        raise ImportError
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


def benchmark_problem(width: int = 32, depth: int = 1, rounds: int = 8):
    """Wolfram's LSTM training benchmark: 256 sequences of 32 vectors of 16, targets of `width`."""
    from wlnet import LongShortTermMemoryLayer, NetChain
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, 16, generator=g)
    y = torch.rand(256, 32, width, generator=g) * 2 - 1
    net = NetChain([LongShortTermMemoryLayer(width) for _ in range(depth)], Input=(32, 16))
    return {"wlnet": (net, {"Input": x, "Output": y}, {}), "x": x.numpy(), "lengths": None, "y": y.numpy(),
            "kind": "sequence", "width": [width] * depth, "rounds": rounds}


def language_problem(chunks: int = 512):
    """The character language model: predict each next character of 81-character strings."""
    train = language_data(language_text())[0][:chunks]
    index = {c: i for i, c in enumerate(LM_ALPHABET)}
    codes = np.array([[index[c] for c in s] for s in train], np.int64)
    net = language_model(LM_ALPHABET, 192)
    return {"wlnet": (net, train, {"LearningRate": 0.004}), "x": codes[:, :-1], "lengths": None, "y": codes[:, 1:],
            "kind": "lm", "width": [192], "rounds": 1, "batch": 32}


# ---- the peers -------------------------------------------------------------------------------------
def wlnet_rate(p, initialize: bool = True) -> float:
    """NetTrain's rate on the net initialized here (held across the call, as a caller who keeps
    it holds it), or with `initialize` False on the uninitialized net (NetTrain initializes it,
    as the torch loop and Keras initialize theirs)."""
    net, data, options = p["wlnet"]
    return NetTrain(NetInitialize(net) if initialize else net, data, "MeanExamplesPerSecond",
                    MaxTrainingRounds=p["rounds"], BatchSize=p.get("batch", BATCH), TrainingProgressReporting=None,
                    **options)


class TorchNet(torch.nn.Module):
    def __init__(self, p):
        super().__init__()
        self.embed = torch.nn.Embedding(len(LM_ALPHABET), 32) if p["kind"] == "lm" else None
        sizes = [32 if self.embed is not None else p["x"].shape[-1], *p["width"]]
        self.lstms = torch.nn.ModuleList(torch.nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))
        out = {"class": 3, "scalar": 1, "sequence": None, "lm": len(LM_ALPHABET)}[p["kind"]]
        self.head = torch.nn.Linear(sizes[-1], out) if out else None
        self.kind = p["kind"]

    def forward(self, x, lengths):
        if lengths is not None:  # packed: each final state at its own last step
            h = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            for lstm in self.lstms:
                h, (last, _) = lstm(h)
            return self.head(last[0])
        if self.embed is not None:
            x = self.embed(x)
        for lstm in self.lstms:
            x, (last, _) = lstm(x)
        if self.kind == "lm":
            return self.head(x)  # (B, T, classes): logits at every step
        return x if self.head is None else self.head(last[0]).squeeze(-1)


def torch_rate(p) -> float:
    torch.manual_seed(1234)
    model = TorchNet(p)
    opt = torch.optim.Adam(model.parameters(), lr=p["wlnet"][2].get("LearningRate", 0.001))
    x, y = torch.from_numpy(p["x"]), torch.from_numpy(p["y"])
    lengths = torch.from_numpy(p["lengths"]) if p["lengths"] is not None else None
    n, batch = len(x), p.get("batch", BATCH)
    t0 = time.perf_counter()
    for _ in range(p["rounds"]):
        perm = torch.randperm(n)
        for j in range(0, n, batch):
            idx = perm[j:j + batch]
            if lengths is not None:
                ln = lengths[idx]
                out = model(x[idx, :int(ln.max())], ln)
            else:
                out = model(x[idx], None)
            if p["kind"] == "class":
                loss = torch.nn.functional.cross_entropy(out, y[idx])
            elif p["kind"] == "lm":
                loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), y[idx].flatten())
            else:
                loss = torch.nn.functional.mse_loss(out, y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return p["rounds"] * n / (time.perf_counter() - t0)


def keras_model(p):
    layers = [keras.Input(p["x"].shape[1:], dtype="int32" if p["kind"] == "lm" else "float32")]
    if p["lengths"] is not None:
        layers.append(keras.layers.Masking(0.0))
    if p["kind"] == "lm":
        layers.append(keras.layers.Embedding(len(LM_ALPHABET), 32))
    widths = p["width"]
    for i, w in enumerate(widths):
        every_step = p["kind"] in ("sequence", "lm") or i < len(widths) - 1
        layers.append(keras.layers.LSTM(w, return_sequences=every_step))
    if p["kind"] == "lm":
        layers.append(keras.layers.Dense(len(LM_ALPHABET), activation="softmax"))
        loss = "sparse_categorical_crossentropy"
    elif p["kind"] == "class":
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
    batch = p.get("batch", BATCH)
    warm = 2 * batch + len(p["x"]) % batch  # compiles the step for a whole batch and for the last one
    model.fit(p["x"][:warm], p["y"][:warm], batch_size=batch, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(p["x"], p["y"], batch_size=batch, epochs=p["rounds"], verbose=0, shuffle=True)
    return p["rounds"] * len(p["x"]) / (time.perf_counter() - t0)


# ---- the true floor of the wide nets --------------------------------------------------------------
def _timed(f, repeat: int = 3) -> float:
    """The best time of f() over `repeat` trials, each over enough calls to last ~2 ms."""
    f()
    t0 = time.perf_counter()
    f()
    calls = max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


_SGEMM = []


def _mkl_sgemm():
    """The Fortran sgemm_ that torch links (MKL in its x86 wheels), or None."""
    if not _SGEMM:
        import ctypes

        try:
            lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
            _SGEMM.append(lib.sgemm_)
        except (OSError, AttributeError):
            _SGEMM.append(None)
    return _SGEMM[0]


def product_seconds(m: int, k: int, n: int) -> dict:
    """The best time of the float32 product (m, k) × (k, n) by each routine a peer could call:
    torch.mm (at::mm, into a preallocated result), the BLAS's sgemm_ directly, and oneDNN's
    matmul (mkldnn linear on (m, k) and an (n, k) weight)."""
    import ctypes

    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    times = {"at::mm": _timed(lambda: torch.mm(a, b, out=out))}
    sgemm = _mkl_sgemm()
    if sgemm is not None:  # column-major: Cᵀ (n, m) = Bᵀ Aᵀ on the row-major buffers
        c_int, c_float, ptr = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        args = [ctypes.byref(ctypes.c_char(b"N")), ctypes.byref(ctypes.c_char(b"N")), ctypes.byref(c_int(n)),
                ctypes.byref(c_int(m)), ctypes.byref(c_int(k)), ctypes.byref(c_float(1.0)), ptr(b.data_ptr()),
                ctypes.byref(c_int(n)), ptr(a.data_ptr()), ctypes.byref(c_int(k)), ctypes.byref(c_float(0.0)),
                ptr(out.data_ptr()), ctypes.byref(c_int(n))]
        times["MKL sgemm"] = _timed(lambda: sgemm(*args))
    if torch.backends.mkldnn.is_available():
        w = b.T.contiguous()
        try:
            linear = torch.ops.mkldnn._linear_pointwise
            linear(a, w, None, "none", [], "")
            times["oneDNN"] = _timed(lambda: linear(a, w, None, "none", [], ""))
        except (RuntimeError, AttributeError):
            pass
    return times


def fastest_product(m: int, k: int, n: int, tally: dict) -> float:
    times = product_seconds(m, k, n)
    best = min(times, key=times.__getitem__)
    tally[best] = tally.get(best, 0) + 1
    return times[best]


def fused_layer_seconds(B: int, T: int, k: int, n: int, repeat: int = 2) -> float:
    """A training step of torch's fused LSTM layer (oneDNN's on CPU): forward and backward."""
    layer = torch.nn.LSTM(k, n, batch_first=True)
    x = torch.randn(B, T, k, requires_grad=True)

    def step():
        out, _ = layer(x)
        out.sum().backward()

    step()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def floor(p) -> tuple:
    """Examples/s if a batch cost only, per LSTM layer (input k, width n), the faster of its matrix
    products each on the fastest routine for its shape (`product_seconds`) and oneDNN's fused LSTM
    step; the products, forward: the input product of all steps (BT, k) × (k, 4n) and T state
    products (B, n) × (n, 4n); backward: T state products (B, 4n) × (4n, n), then dx (BT, 4n) ×
    (4n, k), dW_x (4n, BT) × (BT, k) and dW_s (4n, BT) × (BT, n). The character model's embedding
    gives k = 32, and its head at every step adds (BT, n) × (n, c) and its two gradients.
    → (examples/s, how: the routine count and which bound held per layer)."""
    B, T = p.get("batch", BATCH), p["x"].shape[1]
    k = 32 if p["kind"] == "lm" else p["x"].shape[2]
    seconds, tally, bounds, done = 0.0, {}, [], {}
    for n in p["width"]:
        if (k, n) not in done:
            f = fastest_product
            products = T * (f(B, n, 4 * n, tally) + f(B, 4 * n, n, tally)) + f(B * T, k, 4 * n, tally) \
                + f(B * T, 4 * n, k, tally) + f(4 * n, B * T, k, tally) + f(4 * n, B * T, n, tally)
            fused = fused_layer_seconds(B, T, k, n)
            done[k, n] = (min(products, fused), "products" if products <= fused else "oneDNN LSTM")
        seconds += done[k, n][0]
        bounds.append(done[k, n][1])
        k = n
    if p["kind"] == "lm":
        c = len(LM_ALPHABET)
        seconds += fastest_product(B * T, k, c, tally) + fastest_product(B * T, c, k, tally) \
            + fastest_product(c, B * T, k, tally)
    how = ", ".join(f"{name} ×{count}" for name, count in sorted(tally.items())) + "; " + \
        ", ".join(sorted(set(bounds)))
    return B / seconds, how


# ---- peak memory -----------------------------------------------------------------------------------
RSS_NETS = {"LSTMLarge": (1024, 1), "LSTMLargeStack": (1024, 4)}


def rss_child(net: str, peer: str) -> None:
    """Train `net` for one round with `peer`, then print this process's peak RSS in MiB. Peer
    "wlnet": NetTrain initializes the net; "wlnet-held": the caller initializes it and holds it
    (one more copy of the arrays: NetTrain leaves its argument unchanged)."""
    p = benchmark_problem(*RSS_NETS[net], rounds=1)
    if peer in ("wlnet", "wlnet-held"):
        wlnet_rate(p, initialize=peer == "wlnet-held")
    elif peer == "torch":
        torch_rate(p)
    else:
        keras_rate(p)
    print(peak_rss_mib())


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB: VmHWM of its address space, which starts
    afresh at exec (getrusage's ru_maxrss keeps the parent's peak across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss(net: str, peer: str) -> float | None:
    if peer == "keras" and keras is None:
        return None
    out = subprocess.run([sys.executable, __file__, "--rss", net, peer], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return float(out.stdout.split()[-1])


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
    parser.add_argument("--quick", action="store_true", help="one trial of the wide nets, no peak-memory runs")
    parser.add_argument("--only", nargs="+", metavar="ROW", help="train only these rows (names as printed)")
    parser.add_argument("--rss", nargs=2, metavar=("NET", "PEER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss:
        rss_child(*args.rss)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"keras {keras.__version__ + ' on ' + keras.backend.backend() if keras else 'not installed'}; "
          f"load average {os.getloadavg()[0]:.1f}")
    wide = 1 if args.quick else min(args.trials, 2)
    problems = {  # name: (problem, trials)
        "x/y classifier": (xy_problem(), args.trials),
        "addition": (addition_problem(), args.trials),
        "character model": (language_problem(), args.trials),
        "LSTM": (benchmark_problem(32, 1, rounds=8), args.trials),
        "LSTMStack": (benchmark_problem(32, 4, rounds=2), args.trials),
        "LSTMLarge": (benchmark_problem(1024, 1, rounds=1), wide),
        "LSTMLargeStack": (benchmark_problem(1024, 4, rounds=1), wide),
    }
    if args.only:
        problems = {name: v for name, v in problems.items() if name in args.only}
    rows, floors = [], []
    for name, (p, trials) in problems.items():
        warm = {**p, "rounds": 1}  # first calls' set-up, untimed
        wlnet_rate(warm)
        torch_rate(warm)
        ours, loop, ker = [], [], []
        for _ in range(trials):  # alternating
            ours.append(wlnet_rate(p))
            loop.append(torch_rate(p))
            k = keras_rate(p)
            if k is not None:
                ker.append(k)
        r_loop = statistics.median(a / b for a, b in zip(ours, loop))
        r_ker = statistics.median(a / b for a, b in zip(ours, ker)) if ker else None
        rows.append((name, max(ours), max(loop), max(ker) if ker else None, r_loop, r_ker))
        if p["width"][0] >= 1024 or p["kind"] == "lm":  # the rows whose time is mostly matrix products
            floors.append((name, *floor(p), max(ours)))
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
    print(f"\n{'true floor (ex/s)':<36}{'floor':>10}{'NetTrain':>12}{'share':>11}  fastest routines; bound")
    for name, rate, how, ours in floors:
        print(f"{name:<36}{rate:>10,.1f}{ours:>12,.1f}{ours / rate:>11.0%}  {how}")
    if not args.quick:
        print(f"\n{'peak RSS, one round (MiB)':<36}{'NetTrain':>10}{'torch loop':>12}{'Keras/JAX':>11}{'÷ loop':>8}"
              f"{'net held':>10}{'÷ loop':>8}")
        for net in RSS_NETS:
            a, b, c, d = (peak_rss(net, peer) for peer in ("wlnet", "torch", "keras", "wlnet-held"))
            print(f"{net:<36}{a:>10,.0f}{b:>12,.0f}{(f'{c:,.0f}' if c else 'n/a'):>11}{a / b:>8.2f}{d:>10,.0f}"
                  f"{d / b:>8.2f}")
        print("NetTrain: on the uninitialized net, which it initializes (as the loop and Keras make theirs); net "
              "held: the caller\ninitialized the net and holds it, one more copy of the arrays (NetTrain leaves "
              "its argument unchanged).")
    print(f"\nbest of {args.trials} alternating trials each ({wide} for LSTMLarge and LSTMLargeStack); ratios: "
          f"median of paired trials (training), best over best (evaluation). "
          f"Load average {os.getloadavg()[0]:.1f}.")


if __name__ == "__main__":
    main()
