"""The reference page's two applications (scenarios 9 and 10): nets trained with NetTrain.

Run with `python -m wlnet.examples 9 10`. Each shows a live progress bar, prints the trained
net's answers, measures it, and saves its loss plot under out/ in the current directory.
"""

from __future__ import annotations

import itertools
import os
import random
import time

from .. import (
    DigitCharacter,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetDecoder,
    NetEncoder,
    SequenceLastLayer,
    SoftmaxLayer,
)
from ..core.symbols import All, Automatic
from ..io.files import atomic_write
from ..nets.measure import NetMeasurements
from ..train.api import NetTrain
from .registry import scenario
from .registry import show as _show


def addition_data(seed: int = 1234) -> tuple[list, list]:
    """The 10,000 strings "a+b" for two-digit a, b (zero-padded: "07+45") → a + b, shuffled and
    split 90% / 10% into training and held-out examples."""
    pairs = [(f"{a:02d}+{b:02d}", float(a + b)) for a in range(100) for b in range(100)]
    random.Random(seed).shuffle(pairs)
    return pairs[:9000], pairs[9000:]


def addition_net() -> NetChain:
    """Two stacked LSTMs read the string; the last state gives the sum as a number."""
    return NetChain(
        [LongShortTermMemoryLayer(80), LongShortTermMemoryLayer(80), SequenceLastLayer(), LinearLayer(1)],
        Input=NetEncoder(("Characters", [DigitCharacter, "+"], "UnitVector")),
        Output="Scalar",
    )


def comparison_data() -> dict:
    """Every string of x and y of length 1 to 8 (510 of them) → "Less", "Greater" or "Equal",
    the order of its count of x against its count of y."""
    data = {}
    for n in range(1, 9):
        for chars in itertools.product("xy", repeat=n):
            s = "".join(chars)
            d = s.count("x") - s.count("y")
            data[s] = "Less" if d < 0 else "Greater" if d > 0 else "Equal"
    return data


def comparison_net() -> NetChain:
    """An LSTM classifier: one-hot characters in, a Class decoder over the three orders out."""
    return NetChain(
        [LongShortTermMemoryLayer(20), SequenceLastLayer(), LinearLayer(3), SoftmaxLayer()],
        Input=NetEncoder(("Characters", "xy", "UnitVector")),
        Output=NetDecoder(("Class", ["Less", "Greater", "Equal"])),
    )


def _save(fig, name: str, out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), "savefig", sync_directory=False)
    return path


@scenario(9, "Application: stacked LSTMs learn to add two-digit numbers written as strings")
def scenario_9(MaxTrainingRounds=40, out_dir="out", **options):
    train, held_out = addition_data()
    net = addition_net()
    print(f"  {len(train)} training strings such as {train[0]!r}, {len(held_out)} held out")
    t0 = time.perf_counter()
    results = NetTrain(net, train, All, MaxTrainingRounds=MaxTrainingRounds, LearningRate=0.003, BatchSize=64,
                       **options)
    seconds = time.perf_counter() - t0
    trained = results["TrainedNet"]
    queries = ["25+33", "14+13", "12+75"] + [s for s, _ in held_out[:3]]  # the page's, then held-out ones
    answers = trained(queries)
    for q, a in zip(queries, answers):
        print(f"  {q} → {a:.2f}   (true {int(q[:2]) + int(q[3:])})")
    error = NetMeasurements(trained, held_out, "MeanDeviation")
    print(f"  held-out mean absolute error: {error:.3f} over {len(held_out)} strings")
    print(f"  {results['TotalRounds']} rounds in {seconds:.1f} s, {results['MeanExamplesPerSecond']:,.0f} examples/s")
    path = _save(results["LossPlot"], "addition_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "answers": dict(zip(queries, answers)),
            "held_out_error": error, "seconds": seconds, "plot": path}


@scenario(10, "Application: an LSTM classifier compares the counts of x and y in a string")
def scenario_10(MaxTrainingRounds=Automatic, out_dir="out", **options):
    data = comparison_data()
    net = comparison_net()
    print(f"  {len(data)} strings of x and y, such as {next(iter(data.items()))!r}")
    t0 = time.perf_counter()
    results = NetTrain(net, data, All, MaxTrainingRounds=MaxTrainingRounds, **options)
    seconds = time.perf_counter() - t0
    trained = results["TrainedNet"]
    queries = ["xyxyxyx", "xxxxyyy", "xxyyyyy", "yx", "xxxxxxxx"]
    answers = trained(queries)
    _show(f"trained net on {queries}", answers)
    accuracy = NetMeasurements(trained, data, "Accuracy")
    print(f"  accuracy on all {len(data)} strings: {accuracy:.4f}")
    print(f"  {results['TotalRounds']} rounds in {seconds:.1f} s, {results['MeanExamplesPerSecond']:,.0f} examples/s")
    path = _save(results["LossPlot"], "comparison_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "answers": dict(zip(queries, answers)),
            "accuracy": accuracy, "seconds": seconds, "plot": path}
