"""NetTrain's set-up: the time from the call to its first batch, for the page's nets.

Run: PYTHONPATH=src .venv/bin/python bench/setup.py

For the x/y classifier and the addition net, five one-round NetTrain calls in one process; the
time from each call to the moment the loop takes its first batch's rows. The first call of the
process is printed apart: it also pays one-time imports (torch.optim imports torch._dynamo at
its first optimizer) and, on a machine's first run, the native kernels' GEMM measurement.
Target: at most 30 ms a call.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import peers  # noqa: E402  (the problems, as the peer benchmark builds them)
from wlnet import NetInitialize  # noqa: E402
from wlnet.train import sources  # noqa: E402
from wlnet.train.api import NetTrain  # noqa: E402

first_batch: list = []
_rows = sources.ListSource.rows


def _marked_rows(self, idx):
    if not first_batch:
        first_batch.append(time.perf_counter())
    return _rows(self, idx)


def main() -> None:
    sources.ListSource.rows = _marked_rows
    for name, make in (("x/y classifier", peers.xy_problem), ("addition", peers.addition_problem)):
        net, data, options = make()["wlnet"]
        net = NetInitialize(net)
        times = []
        for _ in range(5):
            first_batch.clear()
            t0 = time.perf_counter()
            NetTrain(net, data, "FinalNet", MaxTrainingRounds=1, BatchSize=64, TrainingProgressReporting=None,
                     **options)
            times.append((first_batch[0] - t0) * 1e3)
        first = "" if name != "x/y classifier" else f" (the process's first call: {times[0]:.0f} ms)"
        print(f"{name:16s} set-up before the first batch: {min(times[1:]):.1f}-{max(times[1:]):.1f} ms{first}")


if __name__ == "__main__":
    main()
