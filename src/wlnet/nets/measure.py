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
  "Precision", "Recall", "F1Score"
                     per class, a dict label → value (nan for a class where it is 0/0): from
                     each class's true and false positives and negatives, tp/(tp+fp),
                     tp/(tp+fn), 2tp/(2tp+fp+fn)
  "CohenKappa"       (po − pe)/(1 − pe) of the confusion matrix: po the fraction right, pe the
                     agreement of the row and column totals by chance
  "ConfusionMatrixPlot"
                     the confusion matrix drawn (a Figure a notebook shows): actual class down,
                     predicted class across, each cell's count
  "ROCCurve"         per class, a dict label → (false positive rates, recalls), numpy arrays over
                     the thresholds 0, 0.01, ..., 1 (a class predicted when its probability is at
                     least the threshold; a 0/0 rate is 0.5)
  "Perplexity"       exp of the mean cross-entropy −log p(target) (per step, for sequences)
  "RSquared"         1 − Σ(output − target)² / Σ(target − mean target)², over every element
  "StandardDeviation"
                     √ of the mean squared residual, over every element

A measurement may also be a dict {"Measurement": name, "ClassAveraging": "Macro" | "Micro" |
None}: the per-class ones averaged, "Macro" the mean of the classes' values (those not 0/0),
"Micro" the value of the classes' counts summed (as Wolfram's <|"Measurement" -> ...,
"ClassAveraging" -> ...|>).
"""

from __future__ import annotations

import torch

from ..core.data import Seq
from ..core.errors import OptionError, TrainingError
from ..core.net import Net
from ..core.runtime import TEST, compiled
from ..layers.loss import Loss
from ..train.data import class_decoder, read_dataset, run_module

MEASUREMENTS = ("Accuracy", "ErrorRate", "ConfusionMatrix", "MeanSquare", "MeanDeviation", "Loss", "Precision",
                "Recall", "F1Score", "CohenKappa", "ConfusionMatrixPlot", "ROCCurve", "Perplexity", "RSquared",
                "StandardDeviation")
PER_CLASS = ("Precision", "Recall", "F1Score", "ROCCurve")
_THRESHOLDS = torch.linspace(0, 1, 101, dtype=torch.float64)
WHO = "NetMeasurements"
_CHUNK = 1024


def NetMeasurements(net: Net, data, measurement):
    """NetMeasurements(net, data, measurement) for a measurement of MEASUREMENTS (or a dict with
    "ClassAveraging"; see the module), or a list of them (→ a list of values).

    >>> net = NetInitialize(LinearLayer(1, Input=1), RandomSeeding=1)
    >>> isinstance(NetMeasurements(net, [([1.0], [2.0])], "Loss"), float)
    True
    """
    if not isinstance(net, Net):
        raise OptionError(f"{WHO}: expected a net, but was given {type(net).__name__}.")
    wanted = list(measurement) if isinstance(measurement, list | tuple) else [measurement]
    for m in wanted:
        parse(m, WHO)
    net._require_initialized()
    problem = read_dataset(net, data, WHO)
    if len(problem.losses) != 1:
        raise TrainingError(f"{WHO}: give targets for one output port (or measure a net with one loss port); "
                            f"the data gives losses for {', '.join(repr(p) for p in problem.losses)}.")
    port = next(iter(problem.losses))
    outputs, targets = _evaluate(net, problem.data, port)
    values = measure_outputs(wanted, net, port, problem.losses[port], outputs, targets, problem.index_targets[port])
    return values if isinstance(measurement, list | tuple) else values[0]


class Measurement(str):
    """A measurement's name that carries its class averaging: the key under which NetTrain
    records {"Measurement": name, "ClassAveraging": a} (the name, as Wolfram's default "Key")."""

    averaging = None

    def __new__(cls, name: str, averaging):
        key = super().__new__(cls, name)
        key.averaging = averaging
        return key

    def __reduce__(self):
        return Measurement, (str(self), self.averaging)


def key(spec, who: str) -> str:
    """The key of a measurement as NetTrain records it: its name, carrying its averaging."""
    name, averaging = parse(spec, who)
    return name if averaging is None else Measurement(name, averaging)


def parse(spec, who: str) -> tuple:
    """A measurement (a name, or {"Measurement": name, "ClassAveraging": ...}) → (name, averaging)."""
    if isinstance(spec, Measurement):
        return str(spec), spec.averaging
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"Measurement", "ClassAveraging"}, key=str)
        if unknown or "Measurement" not in spec:
            raise OptionError(f'{who}: a measurement given as a dict has the keys "Measurement" and optionally '
                              f'"ClassAveraging", but was given {spec!r}.')
        name, averaging = spec["Measurement"], spec.get("ClassAveraging")
        if averaging not in ("Macro", "Micro", None):
            raise OptionError(f'{who}: "ClassAveraging" must be "Macro", "Micro" or None, but was given {averaging!r}.')
        if averaging is not None and name not in PER_CLASS:
            raise OptionError(f'{who}: "ClassAveraging" applies to the per-class measurements '
                              f"{', '.join(PER_CLASS)}, not to {name!r}.")
    else:
        name, averaging = spec, None
    if not isinstance(name, str) or name not in MEASUREMENTS:
        raise OptionError(f"{who}: {name!r} is not a known measurement; the measurements are "
                          f"{', '.join(MEASUREMENTS)}.")
    return name, averaging


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


def _measure(spec, net, port, loss_kind, outputs, targets, classes: bool, size: int, reduce):
    m, averaging = parse(spec, WHO)
    if loss_kind.kind == "Port" and m != "Loss":
        raise TrainingError(f'{WHO}: "{m}" compares outputs with targets, but port "{port}" of the {net.name} is a '
                            'loss itself and has no targets; measure its "Loss".')
    if m in ("MeanSquare", "MeanDeviation", "Loss"):
        loss = loss_kind if m == "Loss" else \
            Loss({"MeanSquare": "MeanSquaredLoss", "MeanDeviation": "MeanAbsoluteLoss"}[m], index=classes)
        total = sum(float(loss.examples(o, t).sum()) for o, t in zip(outputs, targets))
        total, size = reduce(torch.tensor([total, size], dtype=torch.float64)).tolist()
        return total / size
    if m in ("RSquared", "StandardDeviation"):
        o, t = _real_elements(outputs, targets, classes, net, port)
        sums = torch.stack([((o - t) ** 2).sum(), t.sum(), (t * t).sum(), torch.tensor(float(t.numel()),
                                                                                        dtype=torch.float64)])
        res, total, squares, n = reduce(sums).tolist()
        if m == "StandardDeviation":
            return (res / n) ** 0.5
        spread = squares - total * total / n
        return 1.0 - res / spread if spread > 0 else float("nan")
    if m == "Perplexity":
        nll, n = _cross_entropy(net, port, outputs, targets, classes)
        nll, n = reduce(torch.tensor([nll, n], dtype=torch.float64)).tolist()
        return float(torch.tensor(nll / n, dtype=torch.float64).exp())
    if m == "ROCCurve":
        return _roc(net, port, outputs, targets, classes, averaging, reduce)
    predicted, actual = _decisions(net, port, outputs, targets, classes, m)
    if m in ("ConfusionMatrix", "ConfusionMatrixPlot", "CohenKappa", "Precision", "Recall", "F1Score"):
        size = _class_count(net, port, outputs)
        cm = torch.zeros(size * size, dtype=torch.int64)
        cm.index_add_(0, actual * size + predicted, torch.ones_like(actual))
        cm = reduce(cm.double()).round().long().reshape(size, size)  # (actual, predicted)
        if m == "ConfusionMatrix":
            return cm.numpy()
        if m == "ConfusionMatrixPlot":
            return confusion_matrix_plot(cm.numpy(), _labels(net, port, size))
        if m == "CohenKappa":
            return _cohen_kappa(cm.double())
        return _per_class(m, cm.double(), _labels(net, port, size), averaging)
    right, count = reduce(torch.tensor([float((predicted == actual).sum()), predicted.numel()],
                                       dtype=torch.float64)).tolist()
    accuracy = right / count
    return accuracy if m == "Accuracy" else 1.0 - accuracy


def _counts(cm: torch.Tensor) -> tuple:
    """A confusion matrix (actual, predicted) → each class's tp, fp, fn, tn (float64 (n,))."""
    tp = cm.diagonal()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    return tp, fp, fn, cm.sum() - tp - fp - fn


def _ratio(m: str, tp, fp, fn):
    num = {"Precision": tp, "Recall": tp, "F1Score": 2 * tp}[m]
    den = {"Precision": tp + fp, "Recall": tp + fn, "F1Score": 2 * tp + fp + fn}[m]
    return num / den  # nan where 0/0


def _per_class(m: str, cm: torch.Tensor, labels: list, averaging):
    tp, fp, fn, _ = _counts(cm)
    if averaging == "Micro":
        return float(_ratio(m, tp.sum(), fp.sum(), fn.sum()))
    values = _ratio(m, tp, fp, fn)
    if averaging == "Macro":
        real = values[~values.isnan()]
        return float(real.mean()) if real.numel() else float("nan")
    return dict(zip(labels, values.tolist()))


def _cohen_kappa(cm: torch.Tensor) -> float:
    total = cm.sum()
    po = cm.diagonal().sum() / total
    pe = (cm.sum(1) * cm.sum(0)).sum() / total ** 2
    if pe == 1 and po == 1:  # one class only, always right: agreement, not chance
        pe = torch.tensor(0.0, dtype=torch.float64)
    return float((po - pe) / (1 - pe))


def _labels(net, port, size: int) -> list:
    dec = class_decoder(net, port)
    return list(dec.labels) if dec is not None else list(range(1, size + 1))


def _steps(outputs, targets) -> list:
    """(output, target) chunks restricted to real steps: tensors (examples or steps, ...)."""
    pairs = []
    for o, t in zip(outputs, targets):
        p = o.data if isinstance(o, Seq) else o
        y = t.data if isinstance(t, Seq) else t
        if isinstance(o, Seq) and o.lengths is not None:
            mask = torch.arange(p.shape[1]) < o.lengths.unsqueeze(1)  # (B, T)
            p, y = p[mask], y[mask]
        pairs.append((p.double(), y))
    return pairs


def _real_elements(outputs, targets, classes: bool, net, port) -> tuple:
    """Outputs and targets of a regression, every element of every real step, flattened (float64)."""
    if classes:
        raise TrainingError(f'{WHO}: "RSquared" and "StandardDeviation" compare real outputs with real targets, but '
                            f'port "{port}" of {net.name} is measured against class targets.')
    pairs = _steps(outputs, targets)
    return torch.cat([p.reshape(-1) for p, _ in pairs]), torch.cat([y.double().reshape(-1) for _, y in pairs])


def _probabilities(net, port, outputs, m: str):
    if not _vector_output(outputs):
        raise TrainingError(f'{WHO}: "{m}" needs a classifier: an output port with a Class decoder or probability-'
                            f'vector outputs; port "{port}" of {net.name} gives other values.')


def _cross_entropy(net, port, outputs, targets, classes: bool) -> tuple:
    """Σ −log p(target) over the examples (or real steps), and their number."""
    _probabilities(net, port, outputs, "Perplexity")
    total, n = 0.0, 0
    for p, y in _steps(outputs, targets):
        logp = p.clamp_min(1e-300).log()  # (N, classes)
        nll = -logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1) if classes else -(y.double() * logp).sum(-1)
        total += float(nll.sum())
        n += nll.numel()
    return total, n


def _roc(net, port, outputs, targets, classes: bool, averaging, reduce):
    """Per class, (false positive rates, recalls) at each threshold of _THRESHOLDS."""
    _probabilities(net, port, outputs, "ROCCurve")
    size = _class_count(net, port, outputs)
    K = _THRESHOLDS.numel()
    counts = torch.zeros(4, K, size, dtype=torch.float64)  # tp, fp, fn, tn at each threshold, per class
    for p, y in _steps(outputs, targets):
        truth = torch.nn.functional.one_hot(y.long() if classes else y.argmax(-1), size).bool()  # (N, size)
        chosen = p.unsqueeze(0) >= _THRESHOLDS.view(K, 1, 1)  # (K, N, size)
        counts[0] += (chosen & truth).sum(1)
        counts[1] += (chosen & ~truth).sum(1)
        counts[2] += (~chosen & truth).sum(1)
        counts[3] += (~chosen & ~truth).sum(1)
    tp, fp, fn, tn = reduce(counts)
    if averaging == "Micro":
        tp, fp, fn, tn = (c.sum(1, keepdim=True) for c in (tp, fp, fn, tn))
    fpr = (fp / (fp + tn)).nan_to_num(0.5)  # (K, classes)
    recall = (tp / (tp + fn)).nan_to_num(0.5)
    if averaging is not None:
        return fpr.mean(1).numpy(), recall.mean(1).numpy()
    return {lab: (fpr[:, i].numpy(), recall[:, i].numpy()) for i, lab in enumerate(_labels(net, port, size))}


def confusion_matrix_plot(cm, labels: list):
    """A confusion matrix (actual, predicted) drawn: a Figure that a notebook shows."""
    from ..show.graphics import figure

    n = len(labels)
    side = min(2.0 + 0.45 * n, 10.0)
    fig = figure(figsize=(side, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    ticks = list(range(n))
    names = [str(lab) for lab in labels]
    ax.set_xticks(ticks, names if n <= 30 else [""] * n, rotation=90)
    ax.set_yticks(ticks, names if n <= 30 else [""] * n)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("actual class")
    if n <= 30:
        top = cm.max()
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > top / 2 else "black")
    fig.tight_layout()
    return fig


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


__all__ = ["NetMeasurements", "MEASUREMENTS", "PER_CLASS", "Measurement", "confusion_matrix_plot", "key",
           "measure_outputs", "parse"]
