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

import hashlib
from typing import NamedTuple

import torch

from ..coders.decoders import NetDecoder
from ..core.data import PortReader, Seq, _depth, move_all, take_rows
from ..core.errors import NetError, ShapeError, TrainingError
from ..core.net import Net
from ..core.runtime import TEST, compiled
from ..core.shapes import VARYING, Index, describe
from ..core.symbols import Automatic
from ..layers.loss import KINDS as LOSSES
from ..layers.loss import Loss, is_loss_layer
from ..nets.evaluate import readers


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


def columns(net: Net, data, who: str, own=()) -> tuple[dict, dict, int]:
    """User data in any accepted form → ({input port: examples}, {output port: examples}, count).
    `own`: the output ports that are losses themselves (a loss layer's output): they take no
    targets. A net whose outputs are all such losses, with input ports "Input" and "Target",
    reads (input, target) pairs into those two."""
    ins = list(net.input_ports())
    outs = [p for p in net.output_ports() if p not in own]
    x_ports, y_ports = ins, outs
    if not outs and set(ins) == {"Input", "Target"}:
        x_ports, y_ports = ["Input"], ["Target"]
    if isinstance(data, dict) and data and all(isinstance(k, str) for k in data) and set(ins) <= set(data) \
            and set(data) <= set(ins) | set(net.output_ports()):
        cols = dict(data)
    elif isinstance(data, dict) and data and set(data) & set(ins) and set(data) <= set(ins) | set(net.output_ports()):
        missing = [p for p in ins if p not in data]
        raise TrainingError(f'{who}: the data gives no examples for the input port "{missing[0]}"; give a list of '
                            f"examples for each input port ({', '.join(repr(p) for p in ins)}).")
    elif not y_ports and len(ins) == 1 and isinstance(data, list | tuple) and data \
            and not any(isinstance(e, dict) for e in data):
        cols = {ins[0]: list(data)}  # a net that is its own loss, with one input: a list of its examples
    elif not y_ports and not (isinstance(data, list | tuple) and data and all(isinstance(e, dict) for e in data)):
        raise TrainingError(
            f"{who}: the outputs of the {net.name} are losses ({', '.join(repr(p) for p in own)}), so the data "
            f"supplies its input ports ({', '.join(repr(p) for p in ins)}): give a dict of port → list of examples "
            "or a list of dicts port → value.")
    elif isinstance(data, dict):
        cols = _pair_columns(list(data.items()), x_ports, y_ports, who)
    elif _is_inputs_targets(data):
        cols = _inputs_targets_columns(data, x_ports, y_ports, who)
    elif isinstance(data, list | tuple) and data and all(isinstance(e, dict) for e in data):
        cols = _transpose(list(data), ins + [p for p in outs if p in data[0]], who, "")
    elif isinstance(data, list | tuple):
        cols = _pair_columns(data, x_ports, y_ports, who)
    else:
        raise TrainingError(
            f"{who}: the data must be a list of (input, target) pairs, a tuple (inputs, targets), a dict "
            f"{{input: target}}, a dict of port → list of examples, or a generator function, but was given "
            f"{type(data).__name__}."
        )
    given_own = [p for p in own if p in cols]
    if given_own:
        raise TrainingError(f'{who}: the output port "{given_own[0]}" is a loss (its value is minimized), so it takes '
                            "no targets; leave it out of the data.")
    targets = {p: cols.pop(p) for p in outs if p in cols}
    if not targets and not own:
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
    """The port's decoder (Class or Characters: it reads labels as class indices), or None."""
    dec = net.decoders.get(port)
    return dec if isinstance(dec, NetDecoder) else None


def _last_is_softmax(net: Net, port: str) -> bool:
    return type(net.output_leaf(port)).__name__ == "SoftmaxLayer"


def _example_depth(items) -> int | None:
    """The nesting depth of one example of a port's column of examples."""
    if isinstance(items, list | tuple):
        return _depth(items[0]) if items else None
    shape = getattr(items, "shape", None)
    return len(shape) - 1 if shape is not None else None


class _OneBased:
    """Reads 1-based class indices as 0-based ones (a ragged batch's padding stays 0)."""

    def __init__(self, reader):
        self.reader = reader

    def read(self, items):
        b = self.reader.read(items)
        v = b.value
        v = Seq((v.data - 1).clamp(min=0), v.lengths) if isinstance(v, Seq) else v - 1
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

    def digest(self) -> str:
        """A hash of the examples (their ports, shapes, dtypes and values)."""
        h = hashlib.sha256()
        for side in (self.inputs, self.targets):
            for port in sorted(side):
                v = side[port]
                for t in (v.data, v.lengths) if isinstance(v, Seq) else (v,):
                    if t is not None:
                        h.update(f"{port}{tuple(t.shape)}{t.dtype}".encode())
                        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def length_key(self) -> torch.Tensor | None:
        """Per example, the total length of its sequence inputs of varying length (None if there are
        none): the key examples are sorted by to cut batches of similar lengths."""
        key = None
        for v in self.inputs.values():
            if isinstance(v, Seq) and v.lengths is not None:
                key = v.lengths.clone() if key is None else key + v.lengths
        return key


class Problem(NamedTuple):
    """What is trained or measured: the data and, per port, its loss (ports whose value is a loss
    themselves have no targets)."""

    data: Dataset
    losses: dict  # port → Loss
    index_targets: dict  # port → whether targets are 0-based class indices


def read_dataset(net: Net, data, who: str, loss_spec=None) -> Problem:
    """Check and convert user data for `net`; every error names the example and port."""
    own, specs = loss_plan(net, loss_spec, who)
    cols, target_cols, n = columns(net, data, who, own)
    if specs is not None:
        bad = [p for p in target_cols if p not in specs]
        if bad:
            raise TrainingError(f'{who}: the data gives targets for the port "{bad[0]}", but LossFunction names '
                                f"no loss for it; the losses are {', '.join(repr(p) for p in [*specs, *own])}.")
    ports = readers(net)
    inputs = {p: _read_all(ports[p], p, items, who) for p, items in cols.items()}
    targets, losses, index = {}, {}, {}
    for port, items in target_cols.items():
        spec = loss_spec if specs is None else specs[port]
        loss, reader = _port_loss(net, port, spec, items, who)
        targets[port] = _read_all(reader, port, items, who)
        if loss.kind == "CrossEntropyLoss" and loss.form == "Binary" and not loss.index:
            _check_binary_targets(targets[port], port, who)
        losses[port], index[port] = loss, loss.index
    for port in own:
        losses[port], index[port] = Loss("Port", who=f'{who}, port "{port}": '), False
    ds = Dataset(inputs, targets, n)
    _check_lengths(net, ds, who)
    return Problem(ds, losses, index)


def loss_plan(net: Net, spec, who: str) -> tuple[list, dict | None]:
    """LossFunction → (the output ports that are losses themselves, {target port: its loss spec}
    or None when one spec applies to every port given targets).

    Automatic, a loss name, a loss layer or a function: the outputs of the net's loss layers are
    minimized as they are, and the spec is attached to every other port the data gives targets
    for. The name of an output port (or a list of names): those ports are the loss. A dict
    {port: spec}: each spec attached to its port, the loss layers' outputs minimized besides."""
    outs = net.output_ports()
    layered = [p for p in outs if is_loss_layer(net.output_leaf(p))]
    if isinstance(spec, str) and spec not in LOSSES and spec in outs:
        spec = [spec]
    if isinstance(spec, list) and spec and all(isinstance(p, str) for p in spec):
        bad = [p for p in spec if p not in outs]
        if bad:
            raise TrainingError(f"{who}: LossFunction names {bad[0]!r}, which is not an output port of the "
                                f"{net.name}; its output ports are {', '.join(repr(p) for p in outs)}.")
        for p in spec:
            t = outs[p]
            if t.dims is not None and t.dims != ():
                raise TrainingError(f'{who}: LossFunction names the port "{p}" as the loss, but it gives '
                                    f"{describe(t)}; a loss port gives one real number per example.")
        return list(spec), {}
    if isinstance(spec, dict):
        bad = [p for p in spec if p not in outs]
        if bad:
            raise TrainingError(f"{who}: LossFunction gives a loss for {bad[0]!r}, which is not an output port of "
                                f"the {net.name}; its output ports are {', '.join(repr(p) for p in outs)}.")
        for s in spec.values():
            _check_spec(s, who)
        return [p for p in layered if p not in spec], dict(spec)
    _check_spec(spec, who)
    return layered, None


def _check_spec(spec, who: str) -> None:
    if spec is Automatic or spec is None or spec in LOSSES or is_loss_layer(spec):
        return
    if callable(spec) and not isinstance(spec, Net):
        return
    raise TrainingError(
        f"{who}: LossFunction must be Automatic, one of {', '.join(repr(x) for x in LOSSES)}, a loss layer "
        "(CrossEntropyLossLayer, MeanSquaredLossLayer, MeanAbsoluteLossLayer), the name of an output port, a dict "
        f"port → loss, or a function (output, target) → scalar tensor, but was given {spec!r}."
    )


def _hint(dec, form: str | None) -> str:
    if form == "Binary":
        return ' End the net with ElementwiseLayer("LogisticSigmoid") to give probabilities.'
    if dec is not None:
        return f" The port's {dec.kind} decoder reads probability vectors: end the net with a SoftmaxLayer."
    return " End the net with a SoftmaxLayer."


def _port_loss(net: Net, port: str, spec, items, who: str):
    """(the port's Loss, the reader of its targets) for a loss spec other than a port name."""
    t = net.output_ports()[port]
    dec = class_decoder(net, port)
    place = f'{who}, port "{port}": '
    if is_loss_layer(spec):
        try:
            layer = spec.infer({"Input": t})
        except ShapeError as e:
            raise TrainingError(f'{who}: LossFunction {spec.name} cannot take the output port "{port}": {e}') from None
        if dec is not None:
            reader, index = dec.target_reader(net.name, port, t), True
        else:
            target = layer.input_ports()["Target"]
            index = layer.form == "Index"
            reader = PortReader(target, net.name, port)
            reader = _OneBased(reader) if index else reader
        return Loss(layer.kind, layer.form, index, place, _hint(dec, layer.form)), reader
    if dec is not None:
        reader, index = dec.target_reader(net.name, port, t), True
    else:
        probabilities = _last_is_softmax(net, port) or spec == "CrossEntropyLoss"
        index = probabilities and bool(t.dims) and isinstance(t.dims[-1], int) \
            and _example_depth(items) == len(t.dims) - 1  # class indices, one rank lower than the probabilities
        reader = _OneBased(PortReader(Index(*t.dims[:-1], levels=t.dims[-1]), net.name, port)) if index \
            else PortReader(t, net.name, port)
    if callable(spec) and not isinstance(spec, str):
        return Loss(spec, None, index, place), reader
    kind = spec if spec in LOSSES else "CrossEntropyLoss" if dec is not None or _last_is_softmax(net, port) \
        else "MeanSquaredLoss"
    form = None
    if kind == "CrossEntropyLoss":
        # "Index" for class targets, "Binary" for a number (or a sequence of numbers) per example
        form = "Index" if index else "Binary" if t.dims is not None and (not t.dims or t.dims[-1] == VARYING) \
            else "Probabilities"
    return Loss(kind, form, index, place, _hint(dec, form)), reader


def _check_binary_targets(v, port: str, who: str) -> None:
    d = v.data if isinstance(v, Seq) else v
    bad = ((d < 0) | (d > 1)).reshape(d.shape[0], -1).any(1).nonzero()
    if len(bad):
        j = int(bad[0])
        row = d[j].reshape(-1)
        value = float(row[((row < 0) | (row > 1)).nonzero()[0]])
        raise TrainingError(f'{who}: example {j + 1}, port "{port}": the target {value:g} is not a probability; the '
                            "binary cross-entropy's targets lie between 0 and 1.")


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
def batch_loss(problem: Problem, outputs: dict, targets: dict) -> torch.Tensor:
    """The mean over the batch of the summed per-port losses (a 0-dim tensor)."""
    total = None
    for port, loss in problem.losses.items():
        value = loss.mean(outputs[port], targets.get(port))
        total = value if total is None else total + value
    return total
