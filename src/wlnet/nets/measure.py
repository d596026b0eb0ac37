"""NetMeasurements: how well a net does on labelled examples.

NetMeasurements(net, data, "Accuracy") with data in any NetTrain form; a list of measurements
gives a list of values. Measurements:

  "Accuracy"         fraction of examples whose most probable class is the target class
  "ErrorRate"        1 − Accuracy
  "ConfusionMatrix"  counts C[i, j] of examples of class i (target) predicted as class j, a
                     numpy int64 array in the order of the decoder's labels
  "MeanSquare"       mean over examples of the mean squared difference output − target
                     (for class outputs: probabilities against one-hot targets)
  "MeanDeviation"    the same with absolute differences
  "Loss"             the mean of NetTrain's automatic loss (for a net whose output is a loss
                     layer's: that output's mean)
"""

from __future__ import annotations

import torch

from ..core.data import Seq
from ..core.errors import OptionError, TrainingError
from ..core.net import Net
from ..core.runtime import TEST, compiled
from ..layers.loss import Loss
from ..train.data import class_decoder, read_dataset, run_module

MEASUREMENTS = ("Accuracy", "ErrorRate", "ConfusionMatrix", "MeanSquare", "MeanDeviation", "Loss")
WHO = "NetMeasurements"
_CHUNK = 1024


def NetMeasurements(net: Net, data, measurement):
    """NetMeasurements(net, data, "Accuracy" | "ErrorRate" | "ConfusionMatrix" | "MeanSquare" |
    "MeanDeviation" | "Loss"), or a list of them (→ a list of values).

    >>> net = NetInitialize(LinearLayer(1, Input=1), RandomSeeding=1)
    >>> isinstance(NetMeasurements(net, [([1.0], [2.0])], "Loss"), float)
    True
    """
    if not isinstance(net, Net):
        raise OptionError(f"{WHO}: expected a net, but was given {type(net).__name__}.")
    wanted = list(measurement) if isinstance(measurement, list | tuple) else [measurement]
    for m in wanted:
        if m not in MEASUREMENTS:
            raise OptionError(f"{WHO}: {m!r} is not a known measurement; the measurements are "
                              f"{', '.join(MEASUREMENTS)}.")
    net._require_initialized()
    problem = read_dataset(net, data, WHO)
    if len(problem.losses) != 1:
        raise TrainingError(f"{WHO}: give targets for one output port (or measure a net with one loss port); "
                            f"the data gives losses for {', '.join(repr(p) for p in problem.losses)}.")
    port = next(iter(problem.losses))
    outputs, targets = _evaluate(net, problem.data, port)
    values = measure_outputs(wanted, net, port, problem.losses[port], outputs, targets, problem.index_targets[port])
    return values if isinstance(measurement, list | tuple) else values[0]


def measure_outputs(wanted: list, net, port: str, loss_kind, outputs: list, targets: list, classes: bool,
                    reduce=None) -> list:
    """The measurements of outputs already computed: lists of chunks of outputs and targets of one
    port (NetTrain's TrainingProgressMeasurements use this on each round's batches). `reduce`
    sums a float64 tensor over the processes of a data-parallel run, each holding a shard of the
    outputs: every measurement is a ratio of sums (or a sum), so the value is the global one."""
    size = sum(int((o.data if isinstance(o, Seq) else o).shape[0]) for o in outputs)
    return [_measure(m, net, port, loss_kind, outputs, targets, classes, size, reduce or (lambda t: t))
            for m in wanted]


def _evaluate(net: Net, data, port: str) -> tuple[list, list]:
    """The net's outputs for every example, in chunks: ([output chunk], [target chunk])."""
    module = compiled(net, torch.device("cpu"), torch.float32)
    outs, tgts = [], []
    with torch.no_grad():
        for start in range(0, data.size, _CHUNK):
            idx = torch.arange(start, min(start + _CHUNK, data.size))
            xs, ts = data.rows(idx)
            outs.append(run_module(module, xs, TEST)[port])
            tgts.append(ts.get(port))
    return outs, tgts


def _measure(m: str, net, port, loss_kind, outputs, targets, classes: bool, size: int, reduce):
    if loss_kind.kind == "Port" and m != "Loss":
        raise TrainingError(f'{WHO}: "{m}" compares outputs with targets, but port "{port}" of the {net.name} is a '
                            'loss itself and has no targets; measure its "Loss".')
    if m in ("MeanSquare", "MeanDeviation", "Loss"):
        loss = loss_kind if m == "Loss" else \
            Loss({"MeanSquare": "MeanSquaredLoss", "MeanDeviation": "MeanAbsoluteLoss"}[m], index=classes)
        total = sum(float(loss.examples(o, t).sum()) for o, t in zip(outputs, targets))
        total, size = reduce(torch.tensor([total, size], dtype=torch.float64)).tolist()
        return total / size
    predicted, actual = _decisions(net, port, outputs, targets, classes, m)
    if m == "ConfusionMatrix":
        size = _class_count(net, port, outputs)
        cm = torch.zeros(size * size, dtype=torch.int64)
        cm.index_add_(0, actual * size + predicted, torch.ones_like(actual))
        return reduce(cm.double()).round().long().reshape(size, size).numpy()
    right, count = reduce(torch.tensor([float((predicted == actual).sum()), predicted.numel()],
                                       dtype=torch.float64)).tolist()
    accuracy = right / count
    return accuracy if m == "Accuracy" else 1.0 - accuracy


def _decisions(net, port, outputs, targets, classes: bool, m: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and target classes (0-based) of every example (or every real step of a sequence)."""
    if not classes and not _vector_output(outputs):
        raise TrainingError(
            f'{WHO}: "{m}" needs a classifier: an output port with a Class decoder (NetDecoder(("Class", '
            f'labels))) or probability-vector outputs; port "{port}" of {net.name} gives other values. '
            'Use "MeanSquare" or "MeanDeviation" for other outputs.'
        )
    pred, act = [], []
    for o, t in zip(outputs, targets):
        p = o.data if isinstance(o, Seq) else o
        y = t.data if isinstance(t, Seq) else t
        guess = p.argmax(-1)
        truth = y if classes else y.argmax(-1)
        if isinstance(o, Seq) and o.lengths is not None:
            mask = torch.arange(p.shape[1]) < o.lengths.unsqueeze(1)  # (B, T): real steps only
            guess, truth = guess[mask], truth[mask]
        pred.append(guess.reshape(-1))
        act.append(truth.reshape(-1))
    return torch.cat(pred), torch.cat(act)


def _vector_output(outputs) -> bool:
    o = outputs[0]
    return (o.data if isinstance(o, Seq) else o).dim() >= 2


def _class_count(net, port, outputs) -> int:
    dec = class_decoder(net, port)
    if dec is not None:
        return len(dec.labels)
    o = outputs[0]
    return int((o.data if isinstance(o, Seq) else o).shape[-1])


__all__ = ["NetMeasurements", "MEASUREMENTS", "measure_outputs"]
