"""ONNX in: `import_onnx(path)` builds a NetGraph from an ONNX model.

Supported: ONNX's LSTM (no peepholes, default activations, no clip, input_forget 0), GRU with
linear_before_reset = 1 and RNN with tanh, each forward, reverse or bidirectional, either
layout (a bidirectional node is a NetBidirectionalOperator where its Y is read whole, see
`import_join`); Gemm and MatMul + Add (LinearLayer; on every step of a sequence,
NetMapOperator(LinearLayer)), Softmax, Tanh / Sigmoid / Relu / Sin / Exp (ElementwiseLayer),
Identity / Dropout, the last step of a sequence (Gather or Slice of the time axis, GatherND at
the lengths: SequenceLastLayer), ReverseSequence (SequenceReverseLayer), Concat of values along
a feature axis (CatenateLayer), ReduceSum / ReduceMean over a bidirectional node's directions,
Gather of an initializer by indices (EmbeddingLayer), OneHot (UnitVectorLayer), and the glue
exporters put around recurrent nodes: Transpose, Squeeze, Unsqueeze, Reshape, Slice, Concat,
Shape, Gather, ConstantOfShape, Expand, Constant, Cast and arithmetic on shapes, initializers
(also from external data files beside the model, as torch.onnx.export writes them).

How the graph is read: each ONNX tensor becomes an abstract value, computed node by node (only
the nodes the outputs need): a constant (folded with onnx's reference evaluator), a shape
vector whose entries are numbers or the symbols batch / time, zeros of such a shape (initial
states), the lengths of a batch's sequences, or a wlnet value: an edge source in the net being
built, and which ONNX axis is the batch, the time, or a feature axis. A recurrent node's X fixes
which axis of a graph input is the time (by its layout); the rest is batch first. Anything else
is a NotSupportedError naming the op and the node.

Bounded before it is read or computed: the file only as a regular file of at most MAX_BYTES, external
data only from regular files inside the model's folder whose offsets and lengths fit, only opsets
OPSETS; a node on constants only once the size of its result, from its inputs' shapes, is at most
MAX_FOLD elements (or no more than its inputs hold) and all that was folded within a byte budget;
shape vectors and the integer constants the handlers read entry by entry at most MAX_ENTRIES long.

The net: graph inputs keep their names and become ports of wlnet's batch-first convention (a
time-major X is a port taking a batch of sequences, "Varying" in length); int (batch,) inputs
are sequence lengths (wlnet takes them from the ragged data, so they are no ports); inputs with
an initializer are constants (their defaults). Outputs keep their names; per example, Y is
(T, directions·n), Y_h and Y_c are directions·n vectors. A Gather of an initializer by the
0-based ids of a graph input becomes an EmbeddingLayer whose port takes those same 0-based ids
(through the encoder ("Integers", n, 0)); ids that a wlnet export shifted ("ids − 1") are
Wolfram's 1-based indices. The metadata of a wlnet export brings back its encoders and
decoders and leaves out its state outputs.
"""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np

from ...coders.decoders import NetDecoder
from ...coders.encoders import CHARACTER_CLASSES, NetEncoder
from ...core.errors import FileFormatError, NetError, NotSupportedError
from ...core.net import NetPort
from ...core.shapes import VARYING
from ...layers.sequence import SequenceLastLayer
from ...nets.containers import NetGraph
from ...nets.operators import NetMapOperator
from .export import MAX_BYTES
from .import_join import materialize, resolve
from .import_ops import FOLDABLE, OPS, SUPPORTED
from .tables import DECODERS, ENCODERS, STATES, require_onnx
from .values import BATCH, TIME, Const, Data, Lazy, Lengths, Shp, Stacked, Var, Zeros


# ---- the importer ----------------------------------------------------------------------------
class Importer:
    def __init__(self, onnx, model, path: str):
        self.onnx, self.model, self.path = onnx, model, path
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.values: dict = {}
        self.static: dict = {}  # symbol → its size where the graph declares one
        self.bound: dict = {}  # Var → BATCH or TIME
        self.layers: dict = {}  # key → [layer class, args, options]
        self.edges: list = []  # (src, (key, port))
        self.outputs: dict = {}  # graph output → src
        self.recurrent: list = []  # keys of recurrent layers
        self.bidirectional: list = []  # import_join.Bidirectional records, in the graph's order
        self.reserved = {vi.name for vi in self.graph.input} | {vi.name for vi in self.graph.output}
        self.uses = {}
        for node in self.graph.node:
            for i in node.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        self.node = None
        self.folded = 0  # bytes of the constants computed so far
        self.fold_budget = MAX_FOLD_BYTES + 4 * model.ByteSize()  # (a model's weights cast wider and transposed)

    # ---- errors ----
    def fail(self, what: str, cls=NotSupportedError):
        node = self.node
        at = f'node "{node.name or "(unnamed)"}" ({node.op_type}): ' if node is not None else ""
        return cls(f"ONNX import of {self.path}: {at}{what}")

    # ---- axes ----
    def resolve(self, a):
        while isinstance(a, Var) and a in self.bound:
            a = self.bound[a]
        return a

    def bind(self, a, value) -> None:
        """Fix an axis as the batch, the time, or (1) a size-1 feature axis; its partner is then
        the other one (the batch, for a size-1 axis)."""
        a = self.resolve(a)
        if isinstance(a, Var):
            self.bound[a] = value
            if a.partner is not None and self.resolve(a.partner) is a.partner:
                self.bound[a.partner] = TIME if value == BATCH else BATCH
        elif a != value:
            raise self.fail(f"an axis that is {_axis_text(a)} is used as {_axis_text(value)}.")

    def features(self, d: Data) -> tuple:
        return tuple(a for a in self.axes(d) if isinstance(a, int))

    def axes(self, d: Data) -> tuple:
        return tuple(self.resolve(a) for a in d.axes)

    def src(self, d: Data):
        return d.src.get() if isinstance(d.src, Lazy) else d.src

    # ---- building the net ----
    def add(self, cls, inputs: dict, *args, at=None, **options):
        """A layer fed from {port: Data or src, or a list of them for a list port}, at the place of
        the key `at` (reserved by `slot`) or last; → its key."""
        base = self.node.name if self.node is not None and self.node.name else cls.__name__
        if self.model.producer_name == "wlnet" and "/" in base:  # "<layer position>/<op>": the position
            base = base.rsplit("/", 1)[0]
        base = base.replace(".", "_")
        key, i = base, 1
        while (key in self.layers and key != at) or key in self.reserved:  # (named as a graph port: ambiguous)
            i += 1
            key = f"{base}_{i}"
        if at is None:
            self.layers[key] = [cls, args, options]
        else:
            self.layers = {(key if k == at else k): ([cls, args, options] if k == at else v)
                           for k, v in self.layers.items()}
        for port, v in inputs.items():
            for u in v if isinstance(v, list) else [v]:
                self.edges.append((self.src(u) if isinstance(u, Data) else u, (key, port)))
        return key

    def slot(self) -> str:
        """A key that keeps a place among the layers, for a layer made later (`add(..., at=key)`)."""
        key = f"_slot{len(self.layers)}"
        while key in self.layers:
            key += "_"
        self.layers[key] = None
        return key

    # ---- reading the graph ----
    def run(self):
        g = self.graph
        inits = {t.name: t for t in g.initializer}
        for name, t in inits.items():
            self.values[name] = Const(self.onnx.numpy_helper.to_array(t))
        for vi in g.input:
            if vi.name not in inits:
                self.values[vi.name] = self.graph_input(vi)
        meta = {p.key: p.value for p in self.model.metadata_props}
        skip = set(_json(meta.get(STATES), {}))
        wanted = [o.name for o in g.output if o.name not in skip]
        if not wanted:
            raise NetError(f"ONNX import of {self.path}: the model has no outputs.")
        needed, stack = set(wanted), list(wanted)
        producer = {o: n for n in g.node for o in n.output}
        while stack:
            n = producer.get(stack.pop())
            if n is None:
                continue
            for i in n.input:
                if i and i not in needed:
                    needed.add(i)
                    stack.append(i)
        for node in g.node:
            if any(o in needed for o in node.output):
                self.node = node
                self.step(node)
        self.node = None
        for name in wanted:
            v = self.values.get(name)
            if isinstance(v, Stacked):
                v = materialize(self, v)
            if not isinstance(v, Data):
                raise NetError(f"ONNX import of {self.path}: the output {name!r} does not depend on the inputs "
                               "(or is not computed by the graph).")
            self.outputs[name] = (self.src(v), v)
        return self.net(meta)

    def graph_input(self, vi):
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise self.fail(f"the input {vi.name!r} is not a tensor.")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        TP = self.onnx.TensorProto
        if t.elem_type in (TP.INT64, TP.INT32):
            if len(dims) == 1:
                return Lengths()
            if len(dims) == 2:
                a, b = Var(f"0 of {vi.name}"), Var(f"1 of {vi.name}")
                a.partner, b.partner = b, a
                self.note_static(a, dims[0])
                self.note_static(b, dims[1])
                return Data(vi.name, (a, b), integer=True)
        elif t.elem_type in (TP.FLOAT, TP.DOUBLE, TP.FLOAT16):
            if len(dims) >= 2 and dims[-1] is None:
                raise self.fail(f"the size of the last axis of the input {vi.name!r} is not given.")
            if len(dims) == 2:
                self.static.setdefault(BATCH, dims[0])
                return Data(vi.name, (BATCH, dims[1]))
            if len(dims) == 3:
                a, b = Var(f"0 of {vi.name}"), Var(f"1 of {vi.name}")
                a.partner, b.partner = b, a
                self.note_static(a, dims[0])
                self.note_static(b, dims[1])
                return Data(vi.name, (a, b, dims[2]))
        raise self.fail(f"the input {vi.name!r} has {len(dims)} axes of element type {t.elem_type}; inputs are float "
                        "(batch, k) vectors, (time, batch, k) or (batch, time, k) sequences, int (batch, time) index "
                        "sequences or int (batch,) lengths.")

    def note_static(self, a, size):
        if size is not None:
            self.static[a] = size

    def size(self, a):
        """A symbol's declared size, or None."""
        a = self.resolve(a)
        if a in self.static:
            return self.static[a]
        for k, v in self.static.items():
            if isinstance(k, Var) and self.resolve(k) == a:
                return v
        return None

    # ---- one node ----
    def step(self, node):
        for name in node.input:
            if name and name not in self.values:
                raise self.fail(f"its input {name!r} is not computed before it.", NetError)
        args = [self.values[i] if i else None for i in node.input]
        if node.domain not in ("", "ai.onnx"):
            raise self.fail(f"the operator {node.domain}.{node.op_type} is not a standard ONNX operator.")
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else [x.decode() if isinstance(x, bytes) else x for x in v]
                 if isinstance(v, list) else v for k, v in attrs.items()}
        op = node.op_type
        try:
            if op not in PICKING:
                args = [materialize(self, a) for a in args]
            if (op == "Constant" or all(a is None or isinstance(a, Const) for a in args)) and op in FOLDABLE:
                outs = self.fold(node, args, attrs)
            else:
                handler = OPS.get(op)
                if handler is None:
                    raise self.fail(f"the operator {op} is not supported; supported are {', '.join(SUPPORTED)}.")
                for name, a in zip(node.input, args):  # the handlers read integer constants as shapes, axes or
                    # indices, entry by entry (a Reshape's target in combinations of its entries)
                    if isinstance(a, Const) and a.value.dtype.kind in "iu" and a.value.size > MAX_ENTRIES:
                        raise self.fail(f"its input {name!r} is an integer constant of {a.value.size} entries; as a "
                                        f"shape, axes or indices at most {MAX_ENTRIES} are read.")
                outs = handler(self, args, attrs, len(node.output))
                outs = outs if isinstance(outs, list) else [outs]
        except (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            if isinstance(e, NetError):
                raise
            raise self.fail(f"its inputs or attributes do not fit together ({type(e).__name__}: {e}).",
                            NetError) from None
        for name, v in zip(node.output, outs):
            if name:
                self.check_bounds(name, v)
                self.values[name] = v

    def fold(self, node, args, attrs) -> list:
        """A node on constants, run by onnx's reference evaluator once the size of what it makes is
        known to be bounded: at most MAX_FOLD elements (or no more than its inputs hold), and all the
        constants computed so far within the budget of bytes."""
        from onnx.reference import ReferenceEvaluator

        count = FOLD_COUNTS.get(node.op_type)
        if count is None:
            raise self.fail("it is not computed on constants.")
        count = count(args, attrs)
        held = sum(a.value.size for a in args if a is not None)
        if node.op_type == "Constant" and "value" in attrs:  # its array is in the file already
            held = count
        if count > max(MAX_FOLD, held):
            raise self.fail(f"it would make a constant of {count} elements, from inputs of {held}; at most {MAX_FOLD} "
                            "are computed while reading a graph.")
        size = count * max([8] + [a.value.itemsize for a in args if a is not None])  # (an upper bound: Cast widens)
        if self.folded + size > self.fold_budget:
            raise self.fail(f"its constant of {count} elements would take the constants computed while reading the "
                            f"graph past {self.fold_budget} bytes.")
        h = self.onnx.helper
        names = [f"i{j}" if a is not None else "" for j, a in enumerate(args)]
        n = h.make_node(node.op_type, names, [f"o{j}" for j in range(len(node.output))], domain=node.domain)
        n.attribute.extend(node.attribute)
        ins = [h.make_tensor_value_info(nm, h.np_dtype_to_tensor_dtype(a.value.dtype), a.value.shape)
               for nm, a in zip(names, args) if a is not None]
        g = h.make_graph([n], "fold", ins, [h.make_empty_tensor_value_info(f"o{j}") for j in range(len(node.output))])
        m = h.make_model(g, opset_imports=list(self.model.opset_import))
        try:
            out = ReferenceEvaluator(m).run(None, {nm: a.value for nm, a in zip(names, args) if a is not None})
        except Exception as e:
            raise self.fail(f"it cannot be evaluated on its constant inputs ({type(e).__name__}: {e}).") from None
        out = [np.asarray(v) for v in out]
        self.folded += sum(v.nbytes for v in out)
        return [Const(v) for v in out]

    def check_bounds(self, name: str, v) -> None:
        """Refuse an abstract value that grew past what a graph of tensors needs (shape vectors, axes,
        stacked values), before a later node multiplies it."""
        what = None
        if isinstance(v, Shp | Zeros | Lengths | Data):
            entries = v.entries if isinstance(v, Shp) else v.dims if isinstance(v, Zeros | Lengths) else v.axes
            if len(entries) > MAX_ENTRIES:
                what = f"{'a shape vector of' if isinstance(v, Shp) else 'a value of'} {len(entries)} " \
                       f"{'entries' if isinstance(v, Shp) else 'axes'}; at most {MAX_ENTRIES} are read"
            elif any(isinstance(e, int) and not -2**63 <= e < 2**63 for e in entries):
                what = "a shape whose sizes leave the 64-bit integers"
        elif isinstance(v, Stacked) and len(v.parts) > MAX_PARTS:
            what = f"{len(v.parts)} values stacked; at most {MAX_PARTS} are read"
        if what is not None:
            raise self.fail(f"its output {name!r} would be {what}.")

    # ---- the net ----
    def net(self, meta: dict):
        resolve(self)
        self.use_sequence_last_for_states()
        layers = {}
        for key, (cls, args, options) in self.layers.items():
            try:
                layers[key] = cls(*args, **{k: v for k, v in options.items() if not k.startswith("_")})
                if options.get("_map"):  # a linear map of every step of a sequence
                    layers[key] = NetMapOperator(layers[key])
            except NetError as e:
                raise NetError(f"ONNX import of {self.path}: layer {key!r}: {e}") from None
        edges = []
        for src, (key, port) in self.edges:
            edges.append((self.endpoint(src, layers), NetPort(key, port) if port != "Input" else key))
        ports = {}
        for name, (src, d) in self.outputs.items():
            if src == name or (isinstance(src, str) and src in self.values):
                raise self.fail(f"the output {name!r} is a graph input passed through; wlnet nets compute their "
                                "outputs.")
            edges.append((self.endpoint(src, layers), NetPort(name)))
            if not self.features(d) and not any(self.resolve(a) == TIME for a in d.axes):
                ports[name] = "Scalar"
        used = {src for src, _ in self.edges}
        for name, v in self.values.items():  # the graph inputs' shapes, which a layer behind a reverse may not tell
            if isinstance(v, Data) and v.src == name and name in used and not v.integer:
                features = int(np.prod(self.features(v)))
                seq = any(self.resolve(a) == TIME or isinstance(self.resolve(a), Var) for a in v.axes)
                ports[name] = (VARYING, features) if seq else features
        ports.update(self.coders(meta))
        for name, n in getattr(self, "zero_based_ports", {}).items():  # ONNX's 0-based ids, kept at the port
            ports.setdefault(name, NetEncoder(("Integers", n, 0)))
        try:
            return NetGraph(layers, edges, **ports)
        except NetError as e:
            raise NetError(f"ONNX import of {self.path}: the net cannot be built: {e}") from None

    def endpoint(self, src, layers):
        if isinstance(src, str):
            return NetPort(src)
        key, port = src
        return key if port == "Output" else NetPort(key, port)

    def use_sequence_last_for_states(self):
        """A recurrent layer whose output sequence nothing reads gives its final state by a
        SequenceLastLayer on that output (the same values), so that the net has no extra output."""
        read = {src for src, _ in self.edges} | {src for src, _ in self.outputs.values()}
        for key in self.recurrent:
            if (key, "Output") in read:
                continue
            state_edges = [i for i, (src, _) in enumerate(self.edges) if src == (key, "State")]
            state_outs = [n for n, (src, _) in self.outputs.items() if src == (key, "State")]
            if not state_edges and not state_outs:
                continue
            self.node = None
            last = self.add(SequenceLastLayer, {"Input": (key, "Output")})
            for i in state_edges:
                self.edges[i] = ((last, "Output"), self.edges[i][1])
            for n in state_outs:
                self.outputs[n] = ((last, "Output"), self.outputs[n][1])

    def coders(self, meta: dict) -> dict:
        """Port options for the encoders and decoders a wlnet export recorded."""
        out = {}
        for key, make in ((ENCODERS, _encoder), (DECODERS, _decoder)):
            for port, entry in _json(meta.get(key), {}).items():
                spec = entry.get("spec") if isinstance(entry, dict) else None
                if spec is None or (port not in self.values and port not in self.outputs):
                    continue
                try:
                    out[port] = make(spec)
                except (NetError, TypeError, ValueError, KeyError):
                    raise NetError(f"ONNX import of {self.path}: the metadata {key} of port {port!r} is not a valid "
                                   f"encoder or decoder: {spec!r}.") from None
        return out

    # ---- helpers for the op handlers ----
    def const(self, v, what: str) -> np.ndarray:
        if not isinstance(v, Const):
            raise self.fail(f"its {what} must be a constant (an initializer or computed from them).")
        return v.value

    def ints(self, v, what: str) -> list:
        return [int(x) for x in np.asarray(self.const(v, what)).reshape(-1)]

    def attr_or_input(self, attrs, name, args, i):
        if name in attrs:
            return list(attrs[name])
        return self.ints(args[i], name) if len(args) > i and args[i] is not None else None


PICKING = {"Gather", "Slice", "Concat", "Shape", "Identity", "ReduceSum", "ReduceMean",  # ops that take Stacked values
           "LSTM", "GRU", "RNN"}  # (initial states of both directions)
MAX_FOLD = 10**7  # elements of a constant computed while reading a graph (more only where its inputs hold more)
MAX_FOLD_BYTES = 2**28  # bytes of all the constants computed, beyond four times the model's own bytes
MAX_ENTRIES = 32  # entries of a shape vector, axes of a value, entries of an integer constant the handlers read
MAX_PARTS = 4096  # values stacked by a Concat (the directions of every layer of a recurrent stack)


# ---- the size of what a node on constants makes, from the shapes (and shape inputs) of its inputs --------
def _count(shape) -> int:
    return math.prod(max(int(d), 0) for d in shape)


def _broadcast(*shapes) -> tuple:
    """The shape numpy's broadcasting (ONNX's multidirectional broadcasting) gives `shapes`."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = {int(s[i - rank + len(s)]) for s in shapes if i - rank + len(s) >= 0}
        big = dims - {1}
        if len(big) > 1:
            raise ValueError(f"the shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _shapes(args) -> list:
    return [a.value.shape for a in args if a is not None]


def _constant_count(args, attrs) -> int:
    for key in ("value", "sparse_value"):
        if key in attrs:
            return _count(attrs[key].dims)
    lists = [v for k, v in attrs.items() if k in ("value_ints", "value_floats", "value_strings")]
    return len(lists[0]) if lists else 1


def _range_count(args, attrs) -> int:
    start, limit, delta = (np.asarray(a.value).reshape(-1)[0].item() for a in args)
    if not all(math.isfinite(x) for x in (start, limit, delta)) or delta == 0:
        raise ValueError(f"a Range from {start} to {limit} by {delta} does not end")
    if all(isinstance(x, int) for x in (start, limit, delta)):
        return max(-(-(limit - start) // delta), 0)
    return max(math.ceil((limit - start) / delta), 0)


def _gather_count(args, attrs) -> int:
    data, idx = args[0].value.shape, args[1].value.shape
    axis = attrs.get("axis", 0)
    axis = axis + len(data) if axis < 0 else axis
    return _count(data[:axis] + idx + data[axis + 1:])


FOLD_COUNTS = {  # op → (its inputs, its attributes) → elements of its largest output
    "Constant": _constant_count,
    "ConstantOfShape": lambda args, attrs: _count(np.asarray(args[0].value).reshape(-1)),
    "Expand": lambda args, attrs: _count(_broadcast(args[0].value.shape, np.asarray(args[1].value).reshape(-1))),
    "Range": _range_count,
    "Gather": _gather_count,
    **{op: lambda args, attrs: _count(_broadcast(*_shapes(args)))
       for op in ("Add", "Sub", "Mul", "Div", "Min", "Max", "Equal", "Where")},
    "Concat": lambda args, attrs: sum(_count(s) for s in _shapes(args)),
    "Shape": lambda args, attrs: len(args[0].value.shape),
    **{op: lambda args, attrs: _count(args[0].value.shape)  # (no more than their first input holds)
       for op in ("Identity", "Cast", "Neg", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Slice", "ReduceSum",
                  "ReduceMean")},
}


def _json(text, default):
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def _encoder(spec: dict) -> NetEncoder:
    if spec["type"] == "Characters":
        classes = {c.name: c for c in CHARACTER_CLASSES}
        items = spec["alphabet"]
        items = items if isinstance(items, str) else [classes[i["class"]] if isinstance(i, dict) else i for i in items]
        return NetEncoder(("Characters", items, spec["form"]), IgnoreCase=bool(spec["IgnoreCase"]))
    if spec["type"] == "Integers":
        return NetEncoder(("Integers", int(spec["size"]), int(spec["origin"])))
    return NetEncoder(("Class", spec["labels"], spec["form"]))


def _decoder(spec: dict) -> NetDecoder:
    return NetDecoder(("Class", spec["labels"]))


def _axis_text(a) -> str:
    return f"a feature axis of size {a}" if isinstance(a, int) else f"the {a}" if isinstance(a, str) else repr(a)


# ---- reading the file ------------------------------------------------------------------------------
# The standard operators' versions whose semantics the op handlers and the folding follow. From 7 on,
# Add / Sub / Mul / Div / Equal broadcast as numpy does (before, by `broadcast` / `axis` attributes the
# handlers do not read), Dropout is the identity at inference (before, `is_test` = 0 made it random), Gemm
# broadcasts C and LSTM / GRU / RNN lost `output_sequence`. The handlers read both forms of the operators
# whose arguments moved from attributes to inputs later (Slice at 10, Squeeze / Unsqueeze / ReduceSum at 13,
# ReduceMean at 18) and Softmax before and after 13 (coerced to 2-D, default axis 1; then over one axis,
# default -1). Up to 28 the versions after 17 of the imported operators add element types (float8, 4-bit,
# bfloat16), Cast's float8 rounding, Range's float16 accumulation, Shape's start / end (read) and Reshape's
# allowzero (read), nothing that changes what a net computes; a newer opset may change them unreviewed.
OPSETS = (7, 28)
MAX_EXTERNAL = 2**34  # bytes of external data read for one model (wlnet's nets hold far less; a sparse
# file claims any size at no cost)
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}
# (TensorProto's FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, BOOL, FLOAT16, DOUBLE, UINT32, UINT64,
# COMPLEX64, COMPLEX128, BFLOAT16: bytes of one element)


def _read_file(path: str) -> bytes:
    """The bytes of the model file, read only once it is known to be a regular file of at most
    MAX_BYTES (a FIFO would block forever, /dev/zero never ends)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileFormatError(f"ONNX import: the file {path!r} does not exist.") from None
    except OSError as e:
        raise FileFormatError(f"ONNX import: cannot read {path!r}: {e.strerror or e}.") from None
    if stat.S_ISDIR(st.st_mode):
        raise FileFormatError(f"ONNX import: {path!r} is a directory, not an ONNX file.")
    if not stat.S_ISREG(st.st_mode):
        raise FileFormatError(f"ONNX import: {path!r} is not a regular file (a FIFO, device or socket is not read).")
    if st.st_size > MAX_BYTES:
        raise FileFormatError(f"ONNX import: the file {path!r} has {st.st_size} bytes, more than the {MAX_BYTES} "
                              "an ONNX file can hold (larger models keep their arrays in external data files).")
    try:  # opened without blocking, and checked again: the path may have changed since the stat
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
                raise FileFormatError(f"ONNX import: {path!r} changed while it was opened (it is no longer a regular "
                                      f"file of at most {MAX_BYTES} bytes).")
            data = f.read(st.st_size + 1)  # (one byte more: a file that grew meanwhile)
    except OSError as e:
        raise FileFormatError(f"ONNX import: cannot read {path!r}: {e.strerror or e}.") from None
    if len(data) != st.st_size:
        raise FileFormatError(f"ONNX import: the file {path!r} changed while it was read ({len(data)} bytes read of "
                              f"{st.st_size}).")
    return data


def _check_opset(model, path: str) -> None:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    low, high = OPSETS
    high = min(high, _known_opset())
    if not versions:
        raise NotSupportedError(f"ONNX import: the file {path!r} imports no version of the standard ONNX operators "
                                f"(opset); the importer reads opsets {low} to {high}.")
    for v in versions:
        if not low <= v <= high:
            why = "before 7, broadcasting and Dropout were set by attributes it does not read" if v < low else \
                "newer ones may change the operators it reads" if v > OPSETS[1] else \
                "the installed onnx package knows no newer ones"
            raise NotSupportedError(f"ONNX import: the file {path!r} uses opset {v} of the standard ONNX operators; "
                                    f"the importer reads opsets {low} to {high} ({why}).")


def _known_opset() -> int:
    import onnx.defs

    return onnx.defs.onnx_opset_version()


def _tensors(graph):
    """Every TensorProto of a graph and its subgraphs: initializers, sparse ones' parts, attributes."""
    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("sparse_tensor"):
                yield a.sparse_tensor.values
                yield a.sparse_tensor.indices
            for s in a.sparse_tensors:
                yield s.values
                yield s.indices
            if a.HasField("g"):
                yield from _tensors(a.g)
            for g in a.graphs:
                yield from _tensors(g)


def _check_external(onnx, model, path: str) -> None:
    """Refuse, before anything is read, external data that is not a regular file inside the model's
    folder (no absolute path, no "..", no symbolic link anywhere on the way), whose offset and length
    leave the file, whose length differs from the tensor's, or that adds up to more than MAX_EXTERNAL."""
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    total = 0
    for t in _tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}

        def bad(why, name=t.name):
            return FileFormatError(f"ONNX import: the external data of {path!r} cannot be read: the tensor "
                                   f"{name!r} {why}.")

        location = info.get("location", "")
        parts = location.replace("\\", "/").split("/")
        if not location or os.path.isabs(location) or location[:1] in "/\\" or os.path.splitdrive(location)[0] or \
                ".." in parts:
            raise bad(f"has the location {location!r}; it must be a file inside the model's folder, named relative "
                      "to it")
        full = base
        for p in parts:
            if not p or p == ".":
                continue
            full = os.path.join(full, p)
            if os.path.islink(full):
                raise bad(f"has the location {location!r}, where {p!r} is a symbolic link")
        if os.path.commonpath([os.path.realpath(full), base]) != base:
            raise bad(f"has the location {location!r}, outside the model's folder")
        try:
            st = os.stat(full)
        except OSError as e:
            raise bad(f"has the location {location!r}, which cannot be read ({e.strerror or e})") from None
        if not stat.S_ISREG(st.st_mode):
            raise bad(f"has the location {location!r}, which is not a regular file")
        try:
            offset, length = int(info.get("offset", 0)), int(info["length"]) if "length" in info else None
        except ValueError:
            raise bad(f"has the offset {info.get('offset')!r} and length {info.get('length')!r}; they must be "
                      "whole numbers") from None
        if offset < 0 or offset > st.st_size or (length is not None and (length < 0 or offset + length > st.st_size)):
            raise bad(f"has the offset {offset} and length {length} in {location!r}, a file of {st.st_size} bytes")
        length = st.st_size - offset if length is None else length
        item = _ITEMSIZE.get(t.data_type)
        count = math.prod(int(d) for d in t.dims)
        if item is not None and length != count * item:
            raise bad(f"has {length} bytes in {location!r}, but its shape {list(t.dims)} takes {count * item}")
        total += length
        if total > MAX_EXTERNAL:
            raise bad(f"takes the external data of the model past {MAX_EXTERNAL} bytes")


def load(path):
    """The ModelProto in the file at `path`; a NetError naming the file if it is not one."""
    onnx = require_onnx("ONNX import")
    path = os.fspath(path)
    data = _read_file(path)
    if not data:
        raise FileFormatError(f"ONNX import: the file {path!r} is empty.")
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf's DecodeError and its kin
        raise FileFormatError(f"ONNX import: the file {path!r} is not an ONNX model ({type(e).__name__}).") from None
    del data
    if not model.graph.output or not model.opset_import:
        raise FileFormatError(f"ONNX import: the file {path!r} is not an ONNX model (it has no graph outputs or "
                              "opset).")
    _check_opset(model, path)
    _check_external(onnx, model, path)
    try:  # arrays in external data files beside the model (torch.onnx.export writes them): onnx's reader, which
        # refuses locations outside the model's folder
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except Exception as e:
        raise FileFormatError(f"ONNX import: the external data of {path!r} cannot be read ({type(e).__name__}: {e}).") \
            from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise FileFormatError(f"ONNX import: the file {path!r} is not a valid ONNX model: {e}") from None
    return onnx, model, path


def import_onnx(path):
    """A NetGraph computing the ONNX model in the file at `path` (see the module's description)."""
    onnx, model, path = load(path)
    try:
        return Importer(onnx, model, path).run()
    except (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
        if isinstance(e, NetError):
            raise
        raise NetError(f"ONNX import of {path}: the model does not fit together ({type(e).__name__}: {e}).") from None


__all__ = ["import_onnx"]
