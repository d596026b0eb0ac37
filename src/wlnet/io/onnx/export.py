"""ONNX out: `export_onnx(path, net)` writes an initialized net as an ONNX model (ONNX in is
`importer`).

The exported model (opset 17) computes the net in evaluation mode:

- inputs: one per input port, named after it, batch first: (batch, time, k) for a sequence of
  vectors, (batch, time) int64 for a sequence of indices 1..n, (batch, k) for a vector; batch and
  time are dynamic (a fixed-length port keeps its length). Each "Varying" port also has an
  optional int64 input `<port>_lengths` (batch,), by default every sequence at full length, fed
  to the recurrent nodes' `sequence_lens` and to SequenceLastLayer: a zero-padded ragged batch
  gives wlnet's results within each length (values past a length are unspecified).
- recurrent states: each one not fed by an edge is an optional input `<NetPort>_initial`
  (batch, n), zeros by default; the final value of every one is an extra output named after its
  NetPort, e.g. `NetPort(1, "State")`.
- outputs: one per output port, named after it; a "Scalar" port gives (batch,).
- recurrent layers are ONNX's own LSTM, GRU and RNN nodes with the layouts of `kernels.cells`
  (its attributes, linear_before_reset = 1 for Wolfram's GRU; a GRU's MemoryGateStateBiases in
  Rbh, an LSTM's peepholes in P), time-major (layout 0, the only layout onnxruntime runs)
  between two Transposes.
- encoders and decoders stay outside the graph; the metadata ("wlnet.encoders",
  "wlnet.decoders") records them as JSON, with their code.

- a NetBidirectionalOperator over two recurrent layers of one kind and size is one
  bidirectional node (forward first), its states "ForwardNet"/"BackwardNet" positions; over
  other nets, the backward net runs between two ReverseSequences. A NetMapOperator runs its net
  on the elements (B·T, ...) of its sequences.

Each layer class has one converter in `CONVERTERS` (class name → function emitting nodes; those
of the sequence and list layers in `export_sequence`, of the shape, normalization and convolution
layers in `export_layers`); NetChain, NetGraph and the operators
(`NESTED`) convert the nets they hold.
"""

from __future__ import annotations

import json

import numpy as np

from ...coders.encoders import CharacterClass, NetEncoder
from ...core.errors import NetError, NotSupportedError
from ...core.net import Net
from ...core.shapes import ListType
from ...kernels.cells import CELLS
from ...nets.containers import GRAPH, NetGraph
from ..files import atomic_write
from .export_graph import BIG, Builder, Value, reduce_axes, reverse
from .export_layers import LAYER_CONVERTERS
from .export_sequence import CONVERTERS as SEQUENCE_CONVERTERS
from .tables import DECODERS, ENCODERS, FUNCTIONS, STATES, port_name, require_onnx

OPSET = 17
IR_VERSION = 8
BIG_LENGTH = 2**62  # the default of a `<port>_lengths` input: min(length, T) is T
MAX_BYTES = 2**31 - 1  # protobuf's limit on one message: the largest ONNX file without external data


# ---- one converter per layer class -----------------------------------------------------------
def _arrays(layer) -> dict:
    return {a: t.detach().numpy() for a, t in layer._arrays.items()}


def _gates(layer) -> tuple:
    """W (G·n, k), R (G·n, n), B (2·G·n: the input biases, then the recurrent ones, zero but for
    the arrays the layout puts there) and P (3n, an LSTM's peepholes, zero where absent; None for
    the other cells) of a recurrent layer, in ONNX's gate order (`kernels.cells`)."""
    import torch

    cell = layer.cell
    a = {name: torch.as_tensor(v) for name, v in _arrays(layer).items()}
    w, r, bias, rbias = (t.numpy() for t in cell.pack(a, cell.onnx))
    p = None
    if cell.onnx.peepholes:
        zero = np.zeros(layer.n, np.float32)
        p = np.concatenate([a[name].numpy() if name in a else zero for name in cell.onnx.peepholes])
    return w, r, np.concatenate([bias, rbias]), p


def _recurrent_node(b: Builder, layers: list, x: Value, state_in: dict, where: str) -> tuple:
    """ONNX's LSTM / GRU / RNN node of one recurrent layer, or of two of one kind and size
    (forward, backward) as a bidirectional node, time-major after a Transpose. state_in: state
    → (D, B, n) initial value (D directions). → Y (T, D, B, n), {state: (D, B, n) final value}."""
    cell, n = layers[0].cell, layers[0].n
    gates = [_gates(layer) for layer in layers]
    W, R, B = (np.stack([g[j] for g in gates]) for j in range(3))
    xt = b.op("Transpose", [x.name], where, perm=[1, 0, 2])  # (T, B, k)
    seq_lens = b.op("Cast", [x.lengths], where, to=b.onnx.TensorProto.INT32) if x.lengths else ""
    attrs = {"hidden_size": n, **dict(cell.onnx.attrs)}
    if len(layers) == 2:
        attrs["direction"] = "bidirectional"
    inputs = [xt, b.const(f"{where}/W", W), b.const(f"{where}/R", R), b.const(f"{where}/B", B),
              seq_lens, *(state_in[s] for s in cell.states)]
    if any(layer.cell.present & set(cell.onnx.peepholes) for layer in layers):
        inputs.append(b.const(f"{where}/P", np.stack([g[3] for g in gates])))
    outs = b.op(cell.onnx.kernel, inputs, where, n_out=1 + len(cell.states), **attrs)
    return outs[0], dict(zip(cell.states, outs[1:]))


def _recurrent(b: Builder, layer, ins: dict, initial, where: str):
    """ONNX's LSTM / GRU / RNN node, time-major between two Transposes."""
    n, x = layer.n, ins["Input"]
    state_in = {s: b.op("Unsqueeze", [initial((s,), n), b.ints("axes0", [0])], where) for s in layer.CELL.states}
    y, states = _recurrent_node(b, [layer], x, state_in, where)
    y = b.op("Squeeze", [y, b.ints("axes1", [1])], where)  # (T, B, n)
    out = Value(b.op("Transpose", [y], where, perm=[1, 0, 2]), (*x.dims[:2], n), False, x.lengths)
    finals = {s: Value(b.op("Squeeze", [h, b.ints("axes0", [0])], where), ("batch", n)) for s, h in states.items()}
    return {"Output": out}, finals


def _linear(b: Builder, layer, ins: dict, initial, where: str):
    a = _arrays(layer)
    x = ins["Input"]
    y = b.op("MatMul", [x.name, b.const(f"{where}/Weights", a["Weights"].T)], where)
    y = b.op("Add", [y, b.const(f"{where}/Biases", a["Biases"])], where)
    return {"Output": Value(y, (*x.dims[:-1], layer.n), False, x.lengths)}, {}


def _elementwise(b: Builder, layer, ins: dict, initial, where: str):
    f = layer.f
    if not isinstance(f, str) or f not in FUNCTIONS:
        name = getattr(f, "__name__", repr(f))
        raise NotSupportedError(
            f"ONNX export: the ElementwiseLayer at {where} applies the Python function {name}, which has no ONNX "
            f"form; use one of the named functions {', '.join(repr(k) for k in FUNCTIONS)}."
        )
    x = ins["Input"]
    return {"Output": x._replace(name=b.op(FUNCTIONS[f], [x.name], where))}, {}


def _softmax(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    return {"Output": x._replace(name=b.op("Softmax", [x.name], where, axis=-1))}, {}


def _identity(b: Builder, layer, ins: dict, initial, where: str):
    return {"Output": ins["Input"]}, {}


def _sequence_last(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    if x.lengths:  # x[i, lengths[i] - 1]
        last = b.op("Sub", [x.lengths, b.ints("one", 1)], where)
        idx = b.op("Unsqueeze", [last, b.ints("axes1", [1])], where)  # (B, 1)
        y = b.op("GatherND", [x.name, idx], where, batch_dims=1)
    else:
        y = b.op("Gather", [x.name, b.ints("minus_one", -1)], where, axis=1)
    return {"Output": Value(y, (x.dims[0], *x.dims[2:]), x.integer)}, {}


def _zero_based(b: Builder, x: Value, where: str) -> str:
    """Indices 1..n → 0..n-1 (the padding index 0 → 0)."""
    return b.op("Max", [b.op("Sub", [x.name, b.ints("one", 1)], where), b.ints("zero", 0)], where)


def _embedding(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    y = b.op("Gather", [b.const(f"{where}/Weights", _arrays(layer)["Weights"]), _zero_based(b, x, where)], where,
             axis=0)
    return {"Output": Value(y, (*x.dims, layer.d), False, x.lengths)}, {}


def _unit_vector(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    y = b.op("OneHot", [_zero_based(b, x, where), b.ints("depth", layer.n),
                        b.const("off_on", np.array([0, 1], np.float32))], where, axis=-1)
    return {"Output": Value(y, (*x.dims, layer.n), False, x.lengths)}, {}


CONVERTERS = {
    **dict.fromkeys((cell.name for cell in CELLS), _recurrent),
    "LinearLayer": _linear,
    "ElementwiseLayer": _elementwise,
    "SoftmaxLayer": _softmax,
    "DropoutLayer": _identity,
    "SequenceLastLayer": _sequence_last,
    "EmbeddingLayer": _embedding,
    "UnitVectorLayer": _unit_vector,
    **SEQUENCE_CONVERTERS,
    **LAYER_CONVERTERS,
}


def _where(position: tuple) -> str:
    return "layer " + "/".join(str(p) for p in position) if position else "the net"


def _convert(b: Builder, net: Net, ins: dict, initial, position: tuple):
    """The nodes of `net` on input values `ins` ({port: Value}, a list of them for a list port);
    initial(state position, n) → the name of a (batch, n) initial state.
    → ({output port: Value}, {state position: Value})."""
    if isinstance(net, NetGraph):
        return _convert_graph(b, net, ins, initial, position)
    nested = NESTED.get(type(net).__name__)
    if nested is not None:
        return nested(b, net, ins, initial, position)
    convert = CONVERTERS.get(type(net).__name__)
    if convert is None:
        raise NotSupportedError(
            f"ONNX export: {_where(position)} is a {net.name}, which has no ONNX form yet; the layers that have one "
            f"are {', '.join(CONVERTERS)}, in NetChain, NetGraph, {' and '.join(NESTED)}."
        )
    outs, finals = convert(b, net, ins, initial, "/".join(str(p) for p in position) or net.name)
    return outs, {(s,): v for s, v in finals.items()}


def _convert_graph(b: Builder, g: NetGraph, ins: dict, initial, position: tuple):
    env, finals = {}, {}

    def value(src):
        return ins[src[1]] if src[0] == GRAPH else env[src]

    for k in g._order:
        node = g._nodes[k]
        states = node.state_ports()
        node_in, fed = {}, {}
        for port, src in g._feeds[k].items():
            if port in states:
                fed[node.state_port_position(port)] = value(src)
            else:
                node_in[port] = [value(s) for s in src] if isinstance(src, list) else value(src)

        def node_initial(pos, n, k=k, fed=fed):
            return fed[pos].name if pos in fed else initial((k, *pos), n)

        outs, node_finals = _convert(b, node, node_in, node_initial, (*position, k))
        for port, v in outs.items():
            env[(k, port)] = v
        for pos, v in node_finals.items():
            finals[(k, *pos)] = v
        for port in states:
            env[(k, port)] = node_finals[node.state_port_position(port)]
    outs = {}
    for port, src in g._graph_out.items():
        v = value(src)
        if port in g._scalar:
            v = Value(b.op("Reshape", [v.name, b.ints("batch_only", [-1])], port), ("batch",), v.integer)
        outs[port] = v
    return outs, finals


# ---- operators ---------------------------------------------------------------------------------
POINTWISE = {"LinearLayer", "ElementwiseLayer", "SoftmaxLayer", "DropoutLayer", "EmbeddingLayer", "UnitVectorLayer"}


def _pointwise(net) -> bool:
    """Whether the net's nodes act on the last axis alone, whatever the axes before it."""
    if isinstance(net, NetGraph):
        return not net._scalar and all(_pointwise(node) for node in net._nodes.values())
    return type(net).__name__ in POINTWISE


def _map(b: Builder, op, ins: dict, initial, position: tuple):
    """NetMapOperator: a net of layers that act on the last axis alone (LinearLayer, ...) on the
    sequences themselves (a MatMul on (B, T, k)); any other net on the sequences' elements
    (B, T, ...) as one batch (B·T, ...), and back."""
    if _pointwise(op.net):
        outs, _ = _convert(b, op.net, ins, initial, (*position, "Net"))
        return outs, {}
    where = "/".join(str(p) for p in (*position, "Net"))
    first = next(iter(ins.values()))
    shape = b.op("Shape", [first.name], where)
    lead = b.op("Slice", [shape, b.ints("zero1", [0]), b.ints("two1", [2])], where)  # (B, T)
    flat = {}
    for port, v in ins.items():
        rest = b.op("Slice", [b.op("Shape", [v.name], where), b.ints("two1", [2]), b.ints("big", [BIG])], where)
        target = b.op("Concat", [b.ints("minus_one1", [-1]), rest], where, axis=0)
        flat[port] = Value(b.op("Reshape", [v.name, target], where), ("batch", *v.dims[2:]), v.integer)
    outer_batch, b.batch = b.batch, b.op("ReduceProd", [lead], where, keepdims=1)  # B·T is the inner batch
    try:
        outs, _ = _convert(b, op.net, flat, initial, (*position, "Net"))
    finally:
        b.batch = outer_batch
    result = {}
    for port, v in outs.items():
        rest = b.op("Slice", [b.op("Shape", [v.name], where), b.ints("one1", [1]), b.ints("big", [BIG])], where)
        y = b.op("Reshape", [v.name, b.op("Concat", [lead, rest], where, axis=0)], where)
        result[port] = Value(y, (*first.dims[:2], *v.dims[1:]), v.integer, first.lengths)
    return result, {}


_RECURRENT = {cell.name for cell in CELLS}


def _bidirectional(b: Builder, op, ins: dict, initial, position: tuple):
    """NetBidirectionalOperator: over two recurrent layers of one kind and size, ONNX's
    bidirectional node (forward first); over any other nets, the forward net's nodes and the
    backward net's between two ReverseSequences. Then the two outputs joined."""
    where = "/".join(str(p) for p in position) or op.name
    x = ins["Input"]
    fw, bw = op.forward_net, op.backward_net
    if type(fw).__name__ in _RECURRENT and type(fw) is type(bw) and fw.n == bw.n and fw.cell.onnx == bw.cell.onnx:
        return _bidirectional_node(b, op, x, initial, position, where)
    outs, finals = {}, {}
    for key, net in (("ForwardNet", fw), ("BackwardNet", bw)):
        port_in, port_out = next(iter(net.input_ports())), next(iter(net.output_ports()))
        inner = x if key == "ForwardNet" else reverse(b, x, where)
        out, states = _convert(b, net, {port_in: inner}, lambda pos, n, key=key: initial((key, *pos), n),
                               (*position, key))
        y = out[port_out]
        outs[key] = reverse(b, y, where) if key == "BackwardNet" and op._sequence_out else y
        finals.update({(key, *pos): v for pos, v in states.items()})
    yf, yb = outs["ForwardNet"], outs["BackwardNet"]
    if op.aggregator == "Catenate":
        axis = 2 if op._sequence_out else 1
        y = b.op("Concat", [yf.name, yb.name], where, axis=axis)
        size = [yf.dims[axis], yb.dims[axis]]
        dims = (*yf.dims[:axis], sum(size) if all(isinstance(d, int) for d in size) else None, *yf.dims[axis + 1:])
        return {"Output": yf._replace(name=y, dims=dims)}, finals
    y = b.op("Add", [yf.name, yb.name], where)
    if op.aggregator == "Mean":
        y = b.op("Div", [y, b.const("two", np.float32(2))], where)
    return {"Output": yf._replace(name=y)}, finals


def _bidirectional_node(b: Builder, op, x: Value, initial, position: tuple, where: str):
    fw, bw = op.forward_net, op.backward_net
    n = fw.n
    state_in = {s: b.op("Concat", [b.op("Unsqueeze", [initial((key, s), n), b.ints("axes0", [0])], where)
                                   for key in ("ForwardNet", "BackwardNet")], where, axis=0)
                for s in fw.CELL.states}  # (2, B, n)
    y, states = _recurrent_node(b, [fw, bw], x, state_in, where)  # Y (T, 2, B, n)
    if op.aggregator == "Catenate":
        y = b.op("Transpose", [y], where, perm=[2, 0, 1, 3])  # (B, T, 2, n)
        y = b.op("Reshape", [y, b.ints("merge", [0, 0, -1])], where)  # (B, T, 2n): forward, then backward
        size = 2 * n
    else:
        y = reduce_axes(b, "ReduceSum" if op.aggregator == "Total" else "ReduceMean", y, [1], where)  # (T, B, n)
        y = b.op("Transpose", [y], where, perm=[1, 0, 2])  # (B, T, n)
        size = n
    finals = {(key, s): Value(b.op("Gather", [h, b.ints("index", i)], where, axis=0), ("batch", n))
              for s, h in states.items() for i, key in enumerate(("ForwardNet", "BackwardNet"))}
    return {"Output": Value(y, (*x.dims[:2], size), False, x.lengths)}, finals


NESTED = {"NetMapOperator": _map, "NetBidirectionalOperator": _bidirectional}


# ---- the model -------------------------------------------------------------------------------
def _input_dims(t, port: str, time: str) -> tuple:
    if isinstance(t, ListType):
        raise NotSupportedError(f"ONNX export: the input port {port!r} takes a list of arrays, which an ONNX input "
                                "cannot be; put the layer in a NetGraph whose input ports feed it, e.g. "
                                "NetGraph({\"cat\": CatenateLayer()}, [(NetPort(\"a\"), \"cat\"), "
                                "(NetPort(\"b\"), \"cat\")]).")
    dims = t.dims
    if dims is None or any(d is None for d in dims):
        raise NotSupportedError(f"ONNX export: an input port's shape is not fully known ({dims!r}); give the net's "
                                "Input option, e.g. Input=(\"Varying\", k).")
    return ("batch", *(time if d == "Varying" else d for d in dims))


def _coder_json(c) -> dict:
    """An encoder or decoder as JSON data: its spec (None where its labels are not JSON values) and its code."""
    if isinstance(c, NetEncoder) and c.kind == "Characters":
        items = c._spec[1]
        items = items if isinstance(items, str) else [{"class": i.name} if isinstance(i, CharacterClass) else i
                                                      for i in items]
        spec = {"type": "Characters", "alphabet": items, "form": c.form, "IgnoreCase": c.ignore_case}
    elif isinstance(c, NetEncoder) and c.kind == "Integers":
        spec = {"type": "Integers", "size": c.size, "origin": c.origin}
    else:
        labels = c.labels
        ok = all(isinstance(x, str | int | float | bool) for x in labels)
        spec = {"type": "Class", "labels": labels, **({"form": c.form} if isinstance(c, NetEncoder) else {})} \
            if ok else None
    return {"spec": spec, "code": c.input_form()}


def to_model(net: Net):
    """The ONNX ModelProto of an initialized net."""
    onnx = require_onnx("ONNX export")
    if not isinstance(net, Net):
        kind = type(net).__name__
        fix = " Export the net it holds instead." if kind == "NetStateObject" else ""
        raise NetError(f"ONNX export: expected a net, but was given a {kind}.{fix}")
    net._require_initialized()
    b = Builder(onnx)
    ports = net.input_ports()
    varying = [p for p, t in ports.items() if getattr(t, "varying", False)]
    ins = {}
    for port, t in ports.items():
        time = "time" if len(varying) == 1 else f"time_{port}"
        dims = _input_dims(t, port, time)
        name = b.input(port, t.integer, dims)
        shape = b.op("Shape", [name], port)
        if b.batch is None:
            b.batch = b.op("Slice", [shape, b.ints("zero1", [0]), b.ints("one1", [1])], "batch")
        lengths = None
        if t.varying:  # min(lengths, T), broadcast to (batch,)
            given = b.input(f"{port}_lengths", True, ("batch",), np.array([BIG_LENGTH], np.int64))
            T = b.op("Slice", [shape, b.ints("one1", [1]), b.ints("two1", [2])], port)
            lengths = b.op("Expand", [b.op("Min", [given, T], port), b.batch], f"{port}_lengths")
        ins[port] = Value(name, dims, t.integer, lengths)

    state_inputs = {}

    def initial(pos, n):
        name = port_name(pos) + "_initial"
        if pos not in state_inputs:
            given = b.input(name, False, ("batch", n), np.zeros((1, n), np.float32))
            state_inputs[pos] = b.op("Expand", [given, b.op("Concat", [b.batch, b.ints("one1", [1])], name, axis=0)],
                                     name)
        return state_inputs[pos]

    outs, finals = _convert(b, net, ins, initial, ())
    for port, v in outs.items():
        b.output(port, v)
    for pos, v in finals.items():
        b.output(port_name(pos), v)
    graph = b.h.make_graph(b.nodes, net.name, b.inputs, b.outputs, b.inits)
    from ... import __name__ as package

    model = b.h.make_model(graph, opset_imports=[b.h.make_opsetid("", OPSET)], producer_name=package,
                           producer_version=_version())
    model.ir_version = IR_VERSION
    meta = {
        ENCODERS: json.dumps({p: _coder_json(e) for p, e in net.encoders.items()}),
        DECODERS: json.dumps({p: _coder_json(d) for p, d in net.decoders.items()}),
        STATES: json.dumps({port_name(pos): list(pos) for pos in finals}),
    }
    b.h.set_model_props(model, meta)
    return model


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("wlnet")
    except Exception:  # not installed as a distribution (a source checkout)
        return "0"


def export_onnx(path, net: Net) -> None:
    """Write `net` (initialized) as an ONNX model to `path`; see the module's description."""
    model = to_model(net)
    size = model.ByteSize()
    if size > MAX_BYTES:
        raise NotSupportedError(f"Export: the net's ONNX model would take {size / 2**30:.1f} GB; an ONNX file holds at "
                                f"most 2 GB, and wlnet writes no external data files.")
    atomic_write(path, model.SerializeToString(), "Export")


__all__ = ["export_onnx", "to_model", "CONVERTERS"]
