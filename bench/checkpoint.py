"""The cost of TrainingProgressCheckpointing every round, as a ratio of the time of a round, on the
page's two applications (the x/y comparison classifier and the addition net), measured in the
same run: trials with and without checkpointing alternate, each a NetTrain of a few rounds, and
the medians of the seconds per round are compared.

    .venv/bin/python bench/checkpoint.py [trials] [threads] [app ...]

apps: "comparison" (the default) and "addition". threads (default 1): torch's intra-op thread
count (on a small machine shared with other work a second thread mostly waits).
"""

from __future__ import annotations

import statistics
import sys
import tempfile

import torch

from wlnet import All, NetTrain
from wlnet.examples.applications import addition_data, addition_net, comparison_data, comparison_net

APPS = {
    "comparison": (comparison_net, comparison_data, 4),
    "addition": (addition_net, lambda: dict(addition_data()[0]), 1),
}


def per_round(net, data, rounds: int, checkpoint) -> float:
    options = {"MaxTrainingRounds": rounds, "RandomSeeding": 1, "TrainingProgressReporting": None}
    if checkpoint is not None:
        options["TrainingProgressCheckpointing"] = ("Directory", checkpoint)
    res = NetTrain(net, data, All, **options)
    assert checkpoint is None or len(res["CheckpointingFiles"]) == 2 * rounds
    return res["TotalTrainingTime"] / res["TotalRounds"]


def main(trials: int = 5, threads: int = 1, apps=("comparison",)) -> None:
    torch.set_num_threads(threads)
    for app in apps:
        make, data_fn, rounds = APPS[app]
        net, data = make(), data_fn()
        per_round(net, data, 1, None)  # warm up
        plain, ckpt = [], []
        with tempfile.TemporaryDirectory() as d:
            for i in range(trials):
                plain.append(per_round(net, data, rounds, None))
                ckpt.append(per_round(net, data, rounds, f"{d}/{i}"))
        p, c = statistics.median(plain), statistics.median(ckpt)
        print(f"{app:<11} {len(data)} examples, {rounds} round(s) a trial, {trials} trials, {threads} thread(s): "
              f"round {p * 1e3:8.1f} ms   with a checkpoint every round {c * 1e3:8.1f} ms   "
              f"cost {(c - p) / p:+.3f} of a round (ratio {c / p:.3f})")


if __name__ == "__main__":
    args = sys.argv[1:]
    numbers = [int(a) for a in args if a.isdigit()]
    names = [a for a in args if not a.isdigit()] or ["comparison"]
    main(*numbers[:2], apps=names) if numbers else main(apps=names)
