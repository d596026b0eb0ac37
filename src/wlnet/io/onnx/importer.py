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

The net: graph inputs keep their names and become ports of wlnet's batch-first convention (a
time-major X is a port taking a batch of sequences, "Varying" in length); int (batch,) inputs
are sequence lengths (wlnet takes them from the ragged data, so they are no ports); inputs with
an initializer are constants (their defaults). Outputs keep their names; per example, Y is
(T, directions·n), Y_h and Y_c are directions·n vectors. Integer inputs are Wolfram indices
1..n: a Gather of an initializer by 0-based ONNX indices becomes an EmbeddingLayer whose port
takes those indices plus one. The metadata of a wlnet export brings back its encoders and
decoders and leaves out its state outputs.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ...coders.encoders import CHARACTER_CLASSES, NetDecoder, NetEncoder
from ...core.errors import NetError, NotSupportedError
from ...core.net import NetPort
from ...core.shapes import VARYING
from ...layers.sequence import SequenceLastLayer
from ...nets.containers import NetGraph
from ...nets.operators import NetMapOperator
from .import_join import materialize, resolve
from .import_ops import FOLDABLE, OPS, SUPPORTED
from .tables import DECODERS, ENCODERS, STATES, require_onnx
from .values import BATCH, TIME, Const, Data, Lazy, Lengths, Stacked, Var


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
                outs = self.fold(node, args)
            else:
                handler = OPS.get(op)
                if handler is None:
                    raise self.fail(f"the operator {op} is not supported; supported are {', '.join(SUPPORTED)}.")
                outs = handler(self, args, attrs, len(node.output))
                outs = outs if isinstance(outs, list) else [outs]
        except (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
            if isinstance(e, NetError):
                raise
            raise self.fail(f"its inputs or attributes do not fit together ({type(e).__name__}: {e}).",
                            NetError) from None
        for name, v in zip(node.output, outs):
            if name:
                self.values[name] = v

    def fold(self, node, args) -> list:
        """A node on constants, run by onnx's reference evaluator."""
        from onnx.reference import ReferenceEvaluator

        size = _fold_size(node.op_type, args)
        if size > MAX_FOLD:
            raise self.fail(f"it would make a constant of {size} elements.", NetError)
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
        return [Const(np.asarray(v)) for v in out]

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
MAX_FOLD = 10**7  # elements of a constant computed while reading a graph


def _fold_size(op: str, args: list) -> int:
    """The number of elements a folded node that makes arrays from a shape would make (0 for the others)."""
    def count(shape):
        return int(np.prod([max(int(d), 0) for d in np.asarray(shape).reshape(-1)], dtype=np.float64))

    if op == "ConstantOfShape":
        return count(args[0].value)
    if op == "Expand":
        return count(np.broadcast_shapes(args[0].value.shape, tuple(int(d) for d in np.asarray(args[1].value))))
    if op == "Range":
        start, limit, delta = (float(np.asarray(a.value)) for a in args)
        return int(abs((limit - start) / delta)) if delta else MAX_FOLD + 1
    return 0


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
    return NetEncoder(("Class", spec["labels"], spec["form"]))


def _decoder(spec: dict) -> NetDecoder:
    return NetDecoder(("Class", spec["labels"]))


def _axis_text(a) -> str:
    return f"a feature axis of size {a}" if isinstance(a, int) else f"the {a}" if isinstance(a, str) else repr(a)


# ---- reading the file ------------------------------------------------------------------------------
def load(path):
    """The ModelProto in the file at `path`; a NetError naming the file if it is not one."""
    onnx = require_onnx("ONNX import")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NetError(f"ONNX import: the file {path!r} does not exist.")
    if os.path.isdir(path):
        raise NetError(f"ONNX import: {path!r} is a directory, not an ONNX file.")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise NetError(f"ONNX import: the file {path!r} is empty.")
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf's DecodeError and its kin
        raise NetError(f"ONNX import: the file {path!r} is not an ONNX model ({type(e).__name__}).") from None
    if not model.graph.output or not model.opset_import:
        raise NetError(f"ONNX import: the file {path!r} is not an ONNX model (it has no graph outputs or opset).")
    try:  # arrays in external data files beside the model (torch.onnx.export writes them): onnx's reader, which
        # refuses locations outside the model's folder
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except Exception as e:
        raise NetError(f"ONNX import: the external data of {path!r} cannot be read ({type(e).__name__}: {e}).") \
            from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise NetError(f"ONNX import: the file {path!r} is not a valid ONNX model: {e}") from None
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
