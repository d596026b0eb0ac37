"""Wolfram's own training benchmark through NetTrain, against a hand-written PyTorch loop.

The nets of Wolfram's LSTM training benchmark: an LSTM 32 or 1024 wide, alone or 4 stacked,
input size 16, sequence length 32, batch 64, 256 examples, mean-squared loss of the output
sequence against a target sequence, ADAM. Each is trained by `NetTrain` and by a plain torch
loop (nn.LSTM stack, torch.optim.Adam, MSE) on the same data in the same run; examples/s of
each, their ratio, and Wolfram's published figures (a MacBook Pro CPU) are printed.

    python bench/wolfram_benchmark.py            # all four nets, a few minutes on 2 cores
    python bench/wolfram_benchmark.py --quick    # fewer trials
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from wlnet import All, LongShortTermMemoryLayer, NetChain, NetInitialize
from wlnet.train.api import NetTrain

EXAMPLES, LENGTH, INPUT, BATCH = 256, 32, 16, 64
# name: (width, depth, Wolfram's examples/s, rounds per trial, trials)
NETS = {
    "LSTM": (32, 1, 5142.0, 4, 7),
    "LSTMStack": (32, 4, 1320.0, 2, 7),
    "LSTMLarge": (1024, 1, 98.0, 1, 3),
    "LSTMLargeStack": (1024, 4, 17.6, 1, 2),
}


def data(width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(EXAMPLES, LENGTH, INPUT, generator=g)
    y = torch.rand(EXAMPLES, LENGTH, width, generator=g) * 2 - 1
    return x, y


def wlnet_rate(width: int, depth: int, rounds: int, x, y) -> float:
    layers = [LongShortTermMemoryLayer(width) for _ in range(depth)]
    net = NetInitialize(NetChain(layers, Input=(LENGTH, INPUT)))
    results = NetTrain(net, {"Input": x, "Output": y}, All, MaxTrainingRounds=rounds, BatchSize=BATCH,
                       TrainingProgressReporting=None)
    return results["MeanExamplesPerSecond"]


def torch_rate(width: int, depth: int, rounds: int, x, y) -> float:
    torch.manual_seed(1234)
    lstm = torch.nn.LSTM(INPUT, width, num_layers=depth, batch_first=True)
    opt = torch.optim.Adam(lstm.parameters(), lr=0.001)
    g = torch.Generator().manual_seed(1234)
    t0 = time.perf_counter()
    for _ in range(rounds):
        perm = torch.randperm(EXAMPLES, generator=g)
        for j in range(0, EXAMPLES, BATCH):
            idx = perm[j:j + BATCH]
            out, _ = lstm(x[idx])
            loss = torch.nn.functional.mse_loss(out, y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return rounds * EXAMPLES / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials")
    parser.add_argument("--nets", nargs="*", default=list(NETS), choices=list(NETS))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {EXAMPLES} examples, length {LENGTH}, "
          f"input {INPUT}, batch {BATCH}, ADAM, mean-squared loss; load average {os.getloadavg()[0]:.1f}")
    rows = []
    start = time.perf_counter()
    for name in args.nets:
        width, depth, wolfram, rounds, repeats = NETS[name]
        if args.quick:
            repeats = max(1, repeats // 3)
        x, y = data(width)
        if width <= 64:  # warm both up (first-call set-up of the kernels) before timing
            torch_rate(width, depth, 1, x, y)
            wlnet_rate(width, depth, 1, x, y)
        ours, theirs = [], []
        for _ in range(repeats):  # alternate short trials, keep the best of each: the machine is shared
            theirs.append(torch_rate(width, depth, rounds, x, y))
            ours.append(wlnet_rate(width, depth, rounds, x, y))
        rows.append((name, max(ours), max(theirs), wolfram))
        print(f"  {name}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print(f"{'net':<16}{'NetTrain ex/s':>15}{'torch loop ex/s':>17}{'ratio':>8}{'Wolfram ex/s':>14}{'vs Wolfram':>12}")
    for name, ours, theirs, wolfram in rows:
        print(f"{name:<16}{ours:>15,.1f}{theirs:>17,.1f}{ours / theirs:>8.2f}{wolfram:>14,.1f}{ours / wolfram:>12.2f}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}.")
    print("Wolfram's figures: its published LSTM training benchmark (examples/s, MacBook Pro CPU); ours: this "
          "machine. Each figure is the best of several alternating trials.")


if __name__ == "__main__":
    main()
