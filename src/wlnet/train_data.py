"""Training data for NetTrain and NetMeasurements: the data forms, their conversion to tensors
once for the whole set, row selection per batch, and the losses.

Data forms (Wolfram → Python):
  {in1 -> out1, in2 -> out2, ...}      a list of (input, target) pairs
  {in1, in2, ...} -> {out1, out2, ...}  a tuple (inputs, targets) of two lists (or arrays); for
                                       several ports, dicts port → list on either side
  <|in1 -> out1, ...|>                 a dict {input: target}
  <|"Input" -> {...}, "Output" -> {...}|>   a dict of port → list (or array) of examples
  {<|"Input" -> .., "Output" -> ..|>, ...}  a list of dicts port → value

A bad example is reported before anything runs, by its 1-based index and its port.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .data import Seq, move_all, take_rows
from .encoders import NetDecoder
from .errors import NetError, TrainingError
from .evaluate import readers
from .net import Net
from .runtime import TEST, compiled
from .shapes import ArrayType, Index

LOSSES = ("MeanSquaredLoss", "MeanAbsoluteLoss", "CrossEntropyLoss")
_EPS = 1e-7  # probabilities are clamped to at least this before the log


# ---- the one place a compiled module is called ---------------------------------------------------
def run_module(module, inputs: dict, ctx) -> dict:
    """Run a net's compiled module on a batch, every recurrent state starting at zero:
    {port: value} → {port: value}."""
    return module(inputs, {}, ctx)[0]


# ---- the data forms ----------------------------------------------------------------------------
def _count(x) -> int | None:
    if isinstance(x, list | tuple):
        return len(x)
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else None


def _is_pair(e) -> bool:
    return isinstance(e, tuple | list) and len(e) == 2


def _transpose(items: list, ports, who: str, what: str) -> dict:
    """A list of dicts port → value (one per example) → dict port → list."""
    cols = {p: [] for p in ports}
    for i, e in enumerate(items):
        if not isinstance(e, dict):
            raise TrainingError(
                f"{who}: the net has several {what} ports ({', '.join(repr(p) for p in ports)}), so the "
                f"{what} of each example must be a dict of port → value; example {i + 1} gives {type(e).__name__}."
            )
        for p in ports:
            if p not in e:
                raise TrainingError(f'{who}: example {i + 1} gives no value for the {what or "input"} port "{p}".')
            cols[p].append(e[p])
    return cols


def columns(net: Net, data, who: str) -> tuple[dict, dict, int]:
    """User data in any accepted form → ({input port: examples}, {output port: examples}, count)."""
    ins, outs = list(net.input_ports()), list(net.output_ports())
    if isinstance(data, dict) and data and all(isinstance(k, str) for k in data) and set(ins) <= set(data) \
            and set(data) <= set(ins) | set(outs):
        cols = dict(data)
    elif isinstance(data, dict):
        cols = _pair_columns(list(data.items()), ins, outs, who)
    elif _is_inputs_targets(data):
        cols = _inputs_targets_columns(data, ins, outs, who)
    elif isinstance(data, list | tuple) and data and all(isinstance(e, dict) for e in data):
        cols = _transpose(list(data), ins + [p for p in outs if p in data[0]], who, "")
    elif isinstance(data, list | tuple):
        cols = _pair_columns(data, ins, outs, who)
    else:
        raise TrainingError(
            f"{who}: the data must be a list of (input, target) pairs, a tuple (inputs, targets), a dict "
            f"{{input: target}}, a dict of port → list of examples, or a generator function, but was given "
            f"{type(data).__name__}."
        )
    targets = {p: cols.pop(p) for p in outs if p in cols}
    if not targets:
        raise TrainingError(
            f"{who}: the data gives no targets: supply examples for at least one output port "
            f"({', '.join(repr(p) for p in outs)})."
        )
    counts = {p: _count(v) for p, v in {**cols, **targets}.items()}
    for p, c in counts.items():
        if c is None:
            raise TrainingError(f'{who}: the data for port "{p}" must be a list or array of examples.')
    if len(set(counts.values())) > 1:
        listed = ", ".join(f'"{p}": {c}' for p, c in counts.items())
        raise TrainingError(f"{who}: the ports were given different numbers of examples ({listed}).")
    n = next(iter(counts.values()))
    if n == 0:
        raise TrainingError(f"{who}: the data is empty; give at least one example.")
    return cols, targets, n


def _is_inputs_targets(data) -> bool:
    """A tuple (inputs, targets): two lists, arrays or dicts of port → list (a list of pairs is a list)."""
    return isinstance(data, tuple) and len(data) == 2 and all(
        isinstance(x, dict) or _count(x) is not None for x in data)


def _inputs_targets_columns(data, ins, outs, who) -> dict:
    inputs, targets = data
    cols = {}
    for side, ports, what in ((inputs, ins, "inputs"), (targets, outs, "targets")):
        if isinstance(side, dict):
            bad = [p for p in side if p not in ports]
            if bad:
                raise TrainingError(f"{who}: the {what} of (inputs, targets) name the port {bad[0]!r}, which is not "
                                    f"an {'input' if what == 'inputs' else 'output'} port of the net "
                                    f"({', '.join(repr(p) for p in ports)}).")
            cols.update(side)
        elif len(ports) == 1:
            cols[ports[0]] = side
        else:
            raise TrainingError(f"{who}: the net has several {'input' if what == 'inputs' else 'output'} ports "
                                f"({', '.join(repr(p) for p in ports)}), so the {what} of (inputs, targets) must be a "
                                f"dict of port → list; it is {_what(side)}.")
    return cols


def _pair_columns(pairs, ins, outs, who) -> dict:
    if not pairs:
        raise TrainingError(f"{who}: the data is empty; give at least one example.")
    for i, e in enumerate(pairs):
        if not _is_pair(e):
            raise TrainingError(
                f"{who}: example {i + 1} is not an (input, target) pair; it is {_what(e)}. Give a list of "
                "(input, target) pairs, a dict {input: target}, or a dict of port → list."
            )
    xs = [e[0] for e in pairs]
    ys = [e[1] for e in pairs]
    cols = {ins[0]: xs} if len(ins) == 1 else _transpose(xs, ins, who, "input")
    cols.update({outs[0]: ys} if len(outs) == 1 else _transpose(ys, outs, who, "output"))
    return cols


def _what(e) -> str:
    if isinstance(e, tuple | list):
        return f"a {type(e).__name__} of length {len(e)}"
    return f"a {type(e).__name__}"


# ---- conversion ----------------------------------------------------------------------------------
def _read_all(reader, port: str, items, who: str):
    """Read every example of one port at once; on failure find the first bad example."""
    try:
        batch = reader.read(items)
    except (NetError, TypeError, ValueError) as err:
        raise _first_bad(reader, port, items, who) or TrainingError(
            f'{who}: the data for port "{port}" could not be read: {err}') from None
    if not batch.batched or batch.size != _count(items):
        raise TrainingError(
            f'{who}: the data for port "{port}" must be a list of examples, one per example; '
            f"it was read as {'a single example' if not batch.batched else f'{batch.size} examples'}."
        )
    return batch.value


def _first_bad(reader, port: str, items, who: str) -> TrainingError | None:
    """The error of the first example that cannot be read on its own, naming it and its port."""
    for i in range(_count(items)):
        try:
            b = reader.read(items[i])
            problem = None if not b.batched else "the example has one dimension too many: it reads as a batch"
        except (NetError, TypeError, ValueError) as e:
            problem = str(e)
        if problem is not None:
            place = f"example {i + 1}" if f'port "{port}"' in problem else f'example {i + 1}, port "{port}"'
            return TrainingError(f"{who}: {place}: {problem}")
    return None


def class_decoder(net: Net, port: str):
    """The port's Class decoder, or None."""
    dec = net.decoders.get(port)
    return dec if isinstance(dec, NetDecoder) else None


def _last_is_softmax(net: Net, port: str) -> bool:
    return type(net.output_leaf(port)).__name__ == "SoftmaxLayer"


def _target_reader(net: Net, port: str, t: ArrayType, probabilities: bool, items):
    """Reader for one output port's targets (and whether they come out as class indices)."""
    from .data import PortReader

    dec = class_decoder(net, port)
    if dec is not None:
        return dec.target_reader(net.name, port), True
    reader = PortReader(t, net.name, port)
    if probabilities and t.dims and isinstance(t.dims[-1], int):
        # targets may also be 1-based class indices, one rank lower than the probabilities
        index = PortReader(Index(*t.dims[:-1], levels=t.dims[-1]), net.name, port)
        try:
            index.read(items)
            return _OneBased(index), True
        except (NetError, TypeError, ValueError):
            pass
    return reader, False


class _OneBased:
    """Reads 1-based class indices as 0-based ones."""

    def __init__(self, reader):
        self.reader = reader

    def read(self, items):
        b = self.reader.read(items)
        v = b.value
        v = Seq(v.data - 1, v.lengths) if isinstance(v, Seq) else v - 1
        return b._replace(value=v)


class Dataset(NamedTuple):
    """Examples converted once: {port: Tensor (N, ...) or Seq}, for inputs and targets."""

    inputs: dict
    targets: dict
    size: int

    def rows(self, idx: torch.Tensor) -> tuple[dict, dict]:
        """The examples at `idx` (int64, CPU), sequences padded to the longest among them."""
        return take_rows(self.inputs, idx), take_rows(self.targets, idx)

    def to(self, device, dtype=torch.float32) -> Dataset:
        """On `device`, with real-valued data in `dtype` (integer data, e.g. class indices, kept)."""
        return Dataset(move_all(self.inputs, device, dtype), move_all(self.targets, device, dtype), self.size)

    def length_key(self) -> torch.Tensor | None:
        """Per example, the total length of its sequence inputs of varying length (None if there are
        none): the key examples are sorted by to cut batches of similar lengths."""
        key = None
        for v in self.inputs.values():
            if isinstance(v, Seq) and v.lengths is not None:
                key = v.lengths.clone() if key is None else key + v.lengths
        return key


class Problem(NamedTuple):
    """What is trained or measured: the data and, per target port, its loss."""

    data: Dataset
    losses: dict  # port → loss name
    index_targets: dict  # port → whether targets are 0-based class indices


def read_dataset(net: Net, data, who: str, loss_spec=None) -> Problem:
    """Check and convert user data for `net`; every error names the example and port."""
    cols, target_cols, n = columns(net, data, who)
    ports = readers(net)
    inputs = {p: _read_all(ports[p], p, items, who) for p, items in cols.items()}
    out_types = net.output_ports()
    targets, losses, index = {}, {}, {}
    for port, items in target_cols.items():
        probabilities = class_decoder(net, port) is not None or _last_is_softmax(net, port)
        reader, is_index = _target_reader(net, port, out_types[port], probabilities, items)
        targets[port] = _read_all(reader, port, items, who)
        losses[port] = choose_loss(loss_spec, probabilities, who)
        index[port] = is_index
    ds = Dataset(inputs, targets, n)
    _check_lengths(net, ds, who)
    return Problem(ds, losses, index)


def choose_loss(spec, probabilities: bool, who: str):
    from .symbols import Automatic

    if spec is Automatic or spec is None:
        return "CrossEntropyLoss" if probabilities else "MeanSquaredLoss"
    if spec in LOSSES or callable(spec):
        return spec
    raise TrainingError(
        f"{who}: LossFunction must be Automatic, one of {', '.join(repr(x) for x in LOSSES)}, or a function "
        f"(output, target) → scalar tensor, but was given {spec!r}."
    )


def _check_lengths(net: Net, ds: Dataset, who: str) -> None:
    """A sequence target must have, example by example, the length of the net's output. Every
    layer keeps sequence lengths, so targets as long as the (single) sequence input pass at once;
    otherwise the net is run to find the outputs' lengths."""
    seq_targets = {p: v for p, v in ds.targets.items() if isinstance(v, Seq) and net.output_ports()[p].varying}
    if not seq_targets:
        return
    seq_inputs = [v for v in ds.inputs.values() if isinstance(v, Seq)]
    if len(seq_inputs) == 1 and all(_same_lengths(seq_inputs[0], t) for t in seq_targets.values()):
        return
    module = compiled(net, torch.device("cpu"), torch.float32)
    for start in range(0, ds.size, 256):
        idx = torch.arange(start, min(start + 256, ds.size))
        xs, ts = ds.rows(idx)
        with torch.no_grad():
            out = run_module(module, xs, TEST)
        for p, t in ts.items():
            if p not in seq_targets:
                continue
            got, want = _lengths(out[p]), _lengths(t)
            bad = (got != want).nonzero()
            if len(bad):
                j = int(bad[0])
                raise TrainingError(
                    f'{who}: example {start + j + 1}, port "{p}": the target is a sequence of length '
                    f"{int(want[j])}, but the net's output for this example has length {int(got[j])}. "
                    "A sequence target must be as long as the output."
                )


def _lengths(v) -> torch.Tensor:
    if isinstance(v, Seq):
        return v.lengths if v.lengths is not None else torch.full((v.data.shape[0],), v.data.shape[1])
    return torch.full((v.shape[0],), -1)


def _same_lengths(a: Seq, b: Seq) -> bool:
    return bool(torch.equal(_lengths(a), _lengths(b)))


# ---- losses --------------------------------------------------------------------------------------
def _per_example(d: torch.Tensor, out) -> torch.Tensor:
    """Elementwise losses d (B, ...) → the mean per example (B,), over real steps only for a
    ragged sequence output."""
    if isinstance(out, Seq) and out.lengths is not None:
        lengths = out.lengths.to(d.device)
        T = d.shape[1]
        mask = torch.arange(T, device=d.device) < lengths.unsqueeze(1)  # (B, T)
        per_step = d.flatten(2) if d.dim() > 2 else d.unsqueeze(2)  # (B, T, F); flatten: B may be 0
        total = (per_step.sum(2) * mask).sum(1)
        return total / (lengths * per_step.shape[2])
    return d.flatten(1).mean(1) if d.dim() > 1 else d


def example_losses(kind, out, target, is_index: bool) -> torch.Tensor:
    """The loss of each example (B,) of one port."""
    o = out.data if isinstance(out, Seq) else out
    t = target.data if isinstance(target, Seq) else target
    if callable(kind):
        value = kind(o, t)
        return value.expand(o.shape[0]) if value.dim() == 0 else value
    if kind == "CrossEntropyLoss":
        p = o.clamp_min(_EPS)
        if is_index:
            d = -torch.log(p.gather(-1, t.unsqueeze(-1))).squeeze(-1)  # (B, ...)
        else:
            d = -(t * torch.log(p)).sum(-1)
        return _per_example(d, out) if d.dim() > 1 else d
    if is_index:  # a squared or absolute loss against class indices: compare with one-hot vectors
        t = torch.nn.functional.one_hot(t, o.shape[-1]).to(o.dtype)
    d = (o - t).abs() if kind == "MeanAbsoluteLoss" else (o - t).square()
    return _per_example(d, out)


def batch_loss(problem: Problem, outputs: dict, targets: dict) -> torch.Tensor:
    """The mean over the batch of the summed per-port losses (a 0-dim tensor)."""
    total = None
    for port, kind in problem.losses.items():
        out, target = outputs[port], targets[port]
        if kind in _FLAT and not problem.index_targets[port] and not (isinstance(out, Seq) and out.lengths is not None):
            # every example the same size: the mean of the per-example means is the overall mean
            o = out.data if isinstance(out, Seq) else out
            loss = _FLAT[kind](o, target.data if isinstance(target, Seq) else target)
        else:
            loss = example_losses(kind, out, target, problem.index_targets[port]).mean()
        total = loss if total is None else total + loss
    return total


_FLAT = {"MeanSquaredLoss": torch.nn.functional.mse_loss, "MeanAbsoluteLoss": torch.nn.functional.l1_loss}
