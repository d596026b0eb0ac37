"""Export/Import of a large LSTM (.wlnet) against torch.save/torch.load(weights_only=True) of the
same arrays, in the same run.

The net: LongShortTermMemoryLayer(1024, Input=("Varying", 1024)) (wlnet's examples define no
"LSTMLarge"; this is the 1024-wide LSTM of Wolfram's training benchmark, with input size 1024),
8.4 M arrays, 33.6 MB. Prints the file sizes, the median Export and Import times over the trials
(run alternately) and the ratios wlnet / torch. Export writes atomically (a temporary file,
fsync, rename) and checks that the file will read back; torch.save does neither.

    .venv/bin/python bench/export.py [trials] [threads]

threads (default 1) is torch's intra-op thread count: the copies and the finiteness check that
Import makes are memory-bound, and on a small machine shared with other work a second thread
mostly waits for a busy core (parallel copies then ran up to 50x slower here).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import torch

import wlnet as w


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(trials: int = 7, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    net = w.NetInitialize(w.LongShortTermMemoryLayer(1024, Input=("Varying", 1024)))
    arrays = {k[-1]: t for k, t in net.arrays().items()}
    with tempfile.TemporaryDirectory() as d:
        ours, theirs = os.path.join(d, "lstm.wlnet"), os.path.join(d, "lstm.pt")
        w.Export(ours, net)
        torch.save(arrays, theirs)
        loaded = w.Import(ours)
        assert all(torch.equal(loaded.arrays()[k], t) for k, t in net.arrays().items())
        assert all(torch.equal(torch.load(theirs, weights_only=True)[k], t) for k, t in arrays.items())
        times = {"export": [], "import": [], "save": [], "load": []}
        for _ in range(trials):
            times["export"].append(timed(lambda: w.Export(ours, net)))
            times["save"].append(timed(lambda: torch.save(arrays, theirs)))
            times["import"].append(timed(lambda: w.Import(ours)))
            times["load"].append(timed(lambda: torch.load(theirs, weights_only=True)))
        med = {k: statistics.median(v) for k, v in times.items()}
        size, peer = os.path.getsize(ours), os.path.getsize(theirs)
    count = sum(t.numel() for t in arrays.values())
    print(f'LongShortTermMemoryLayer(1024, Input=("Varying", 1024)): {count:,} array elements, {trials} trials, '
          f"{threads} thread{'s' if threads > 1 else ''}")
    print(f"file size   .wlnet {size / 1e6:8.3f} MB   torch.save {peer / 1e6:8.3f} MB   ratio {size / peer:5.3f}")
    print(f"write       Export {med['export'] * 1e3:8.1f} ms   torch.save {med['save'] * 1e3:8.1f} ms   "
          f"ratio {med['export'] / med['save']:5.2f}")
    print(f"read        Import {med['import'] * 1e3:8.1f} ms   torch.load {med['load'] * 1e3:8.1f} ms   "
          f"ratio {med['import'] / med['load']:5.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
