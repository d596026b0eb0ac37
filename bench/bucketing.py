"""Length bucketing in NetTrain: training speed with and without it, on the page's two
applications (the x/y comparison classifier and the addition net), in the same run.

Prints, per application, the median seconds per round of each setting (rounds interleaved so
that load changes affect both alike) and the speed-up without / with bucketing.

    PYTHONPATH=src .venv/bin/python bench/bucketing.py [rounds]
"""

from __future__ import annotations

import statistics
import sys

from wlnet.examples.applications import addition_data, addition_net, comparison_data, comparison_net
from wlnet.nets.initialize import NetInitialize
from wlnet.train.api import NetTrain
from wlnet.train.data import read_dataset


def seconds_per_round(net, data, bucketing: bool, rounds: int, **options) -> float:
    times = []

    def record(info):
        times.append(info["TimeElapsed"])

    NetTrain(net, data, MaxTrainingRounds=rounds, LengthBucketing=bucketing, TrainingProgressReporting=None,
             TrainingProgressFunction=record, **options)
    per_round = [b - a for a, b in zip(times, times[1:])]  # the first round (warm-up) left out
    return statistics.median(per_round)


def main(rounds: int = 6) -> None:
    apps = {
        "x/y comparison (510 strings, lengths 1-8)": (NetInitialize(comparison_net()), comparison_data(), {}),
        "addition (9000 strings, all of length 5)": (NetInitialize(addition_net()), addition_data()[0],
                                                     {"BatchSize": 64, "LearningRate": 0.003}),
    }
    for name, (net, data, options) in apps.items():
        if read_dataset(net, data, "bench").data.length_key() is None:
            print(f"{name}: every input has the same length, so bucketing leaves the batches as they are "
                  "(the same code path): speed-up 1.00x by construction")
            continue
        on, off = [], []
        for _ in range(2):  # interleaved
            off.append(seconds_per_round(net, data, False, rounds, **options))
            on.append(seconds_per_round(net, data, True, rounds, **options))
        t_on, t_off = min(on), min(off)
        print(f"{name}: {t_off * 1e3:.1f} ms/round without bucketing, {t_on * 1e3:.1f} ms/round with: "
              f"speed-up {t_off / t_on:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
