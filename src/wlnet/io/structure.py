"""A net as JSON data and named tensors, and back.

A net is written as the class that built it, its constructor arguments and options, and its
arrays: `{"class": "LinearLayer", "args": [2], "options": {"Input": 3}, "arrays": {"Weights":
REF, "Biases": REF}}`, REF `{"tensor": name, "dtype": "F32", "shape": [2, 3]}` naming a tensor
of the file. Option values are JSON, with tags for what JSON lacks: `{"$tuple": [...]}`,
`{"$dict": [[key, value], ...]}` (keys that are not strings), `{"$float": "NaN"}` (and
"Infinity", "-Infinity"), `{"$slice": [start, stop, step]}`, `{"$value": "Automatic"}`
(wlnet's public constants: Automatic, All, the character classes), `{"$function": "Tanh"}` (a
named function), `{"$NetPort": [...]}` and `{"$new": NODE}` (a net, encoder or decoder inside an
option).

Decoding builds only the classes wlnet exports (`wlnet.__all__`), from data: no pickle, no
eval, no module named by the file is imported.

What a class needs to be saved: to be exported from `wlnet/__init__.py`, and to be rebuilt by
`cls(*args, **options, **arrays)` from what it keeps (`CONSTRUCTORS`): a Layer keeps `_args`
(its positional arguments), `_given` (its options, arrays left out) and `_arrays` (accepted
back as options of the same names); NetGraph and NetChain keep `_nodes`, `_user_edges` and
`_port_options`; any other net keeps `_args` and `_given` (its arrays are its inner nets').
An operator holding nets in `_args` or `_given` has them written recursively, so they must be
its current inner nets (the ones `map_leaves` gives it). Export checks this by rebuilding.
"""

from __future__ import annotations

import math

import torch

from ..coders.decoders import NetDecoder
from ..coders.encoders import CharacterClass, NetEncoder
from ..core.errors import ExportError, NetError
from ..core.net import Net, NetPort
from ..core.shapes import VARYING, ArrayType, ListType
from ..core.symbols import _Symbol
from ..layers.base import Layer
from ..nets.containers import NetChain, NetGraph
from ..nets.state import NetStateObject

FORMAT = "wlnet"
VERSION = 1
MAX_DEPTH = 200  # JSON nesting accepted when reading (a net nested 40 containers deep uses ~160)

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def float_value(v: float):
    """A float as JSON: itself, or {"$float": "NaN" | "Infinity" | "-Infinity"} (read back by NONFINITE)."""
    if math.isfinite(v):
        return v
    return {"$float": "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"}


def json_value(v, other):
    """A Python value as JSON: None, bools, strings and ints as they are, floats by `float_value`,
    lists as lists, tuples as {"$tuple": [...]}, dicts with string keys (none starting with "$")
    as objects and other dicts as {"$dict": [[key, value], ...]}; any other value is what
    `other(v)` makes of it (which raises for a value that cannot be written)."""
    if v is None or isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float_value(v)
    if isinstance(v, list):
        return [json_value(x, other) for x in v]
    if isinstance(v, tuple):
        return {"$tuple": [json_value(x, other) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: json_value(x, other) for k, x in v.items()}
        return {"$dict": [[json_value(k, other), json_value(x, other)] for k, x in v.items()]}
    return other(v)


def python_value(v, tagged, where: str, depth: int = 0):
    """JSON back to the value `json_value` wrote: `tagged(tag, x, depth, where)` reads a value
    tagged other than $tuple, $dict and $float ({tag: x}; it raises StructureError for a tag it
    does not know). Malformed JSON raises StructureError naming `where`."""
    if depth > MAX_DEPTH:
        raise StructureError(f"{where} is nested more than {MAX_DEPTH} levels deep.")
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [python_value(x, tagged, where, depth + 1) for x in v]
    v = _type(v, dict, where)
    tags = [k for k in v if k.startswith("$")]
    if not tags:
        return {k: python_value(x, tagged, where, depth + 1) for k, x in v.items()}
    if len(v) != 1:
        raise StructureError(f"{where}: a tagged value must have one field, but has {sorted(v)}.")
    tag, x = tags[0], v[tags[0]]
    if tag == "$tuple":
        return tuple(python_value(y, tagged, where, depth + 1) for y in _type(x, list, where))
    if tag == "$dict":
        out = {}
        for pair in _type(x, list, where):
            if not isinstance(pair, list) or len(pair) != 2:
                raise StructureError(f"{where}: a $dict entry must be a [key, value] pair, but is {_short(pair)}.")
            key = python_value(pair[0], tagged, where, depth + 2)
            try:
                out[key] = python_value(pair[1], tagged, where, depth + 2)
            except TypeError:
                raise StructureError(f"{where}: the $dict key {_short(key)} cannot be a key.") from None
        return out
    if tag == "$float":
        if not isinstance(x, str) or x not in NONFINITE:
            raise StructureError(f"{where}: $float must be one of {', '.join(NONFINITE)}, but is {_short(x)}.")
        return NONFINITE[x]
    return tagged(tag, x, depth, where)


def _graph_layers(g: NetGraph):
    nodes = g._nodes
    return list(nodes.values()) if all(isinstance(k, int) for k in nodes) else dict(nodes)


# class → (object → (positional arguments, options, arrays)); the first class the object is an instance of
CONSTRUCTORS = (
    (NetChain, lambda n: ((_graph_layers(n),), dict(n._port_options), {})),
    (NetGraph, lambda n: ((_graph_layers(n), list(n._user_edges)), dict(n._port_options), {})),
    (NetEncoder, lambda e: ((e._spec,), {**({"IgnoreCase": True} if e.ignore_case else {}),
                                         **({"TargetLength": e.target_length} if e.target_length else {})}, {})),
    (NetDecoder, lambda d: ((d._spec,), {}, {})),
    (Net, lambda n: (tuple(n._args), dict(n._given), dict(n._arrays) if isinstance(n, Layer) else {})),
)

_REGISTRY = None


def registry() -> tuple[dict, dict, dict]:
    """({class name: class}, {constant name: value}, {function name: function}): what a file may name."""
    global _REGISTRY
    if _REGISTRY is None:
        import wlnet

        from ..layers.basic import _FUNCTIONS

        classes, values = {}, {}
        for name in wlnet.__all__:
            obj = getattr(wlnet, name)
            if isinstance(obj, type) and issubclass(obj, Net | NetEncoder | NetDecoder):
                classes[name] = obj
            elif isinstance(obj, CharacterClass | _Symbol):
                values[name] = obj
        _REGISTRY = classes, values, dict(_FUNCTIONS)
    return _REGISTRY


def position_text(pos: tuple) -> str:
    return "" if not pos else f" at position {pos[0]!r}" if len(pos) == 1 else f" at position {pos!r}"


# ---- writing --------------------------------------------------------------------------------------
class Encoder:
    """Turns a net into JSON data, collecting its tensors ({name: tensor}) on the way."""

    def __init__(self, net: Net):
        self.classes, values, functions = registry()
        self.value_names = {id(v): k for k, v in values.items()}
        self.function_names = {id(f): k for k, f in functions.items()}
        self.positions: dict = {}
        self._index(net, ())
        self.tensors: dict = {}
        self._tensor_names: dict = {}
        self._storages: set = set()

    def _index(self, net, pos) -> None:
        for p, leaf in net.leaves():
            self.positions.setdefault(id(leaf), pos + p)
        self.positions.setdefault(id(net), pos)
        if isinstance(net, NetGraph):
            for k, node in net._nodes.items():
                self._index(node, pos + (k,))

    def where(self, obj) -> str:
        pos = self.positions.get(id(obj))
        return f"the {type(obj).__name__}{position_text(pos) if pos is not None else ''}"

    def tensor(self, t: torch.Tensor, label: str) -> dict:
        name = self._tensor_names.get(id(t))
        if name is None:
            name, i = label, 1
            while name in self.tensors:
                i += 1
                name = f"{label}#{i}"
            self._tensor_names[id(t)] = name
            t = t.detach().contiguous()
            if t.untyped_storage().data_ptr() in self._storages:  # a view of another array: stored on its own
                t = t.clone()
            self._storages.add(t.untyped_storage().data_ptr())
            self.tensors[name] = t
        t = self.tensors[name]
        if t.dtype not in DTYPE_NAMES:
            raise ExportError(f"Export: an array of dtype {t.dtype} cannot be written.")
        return {"tensor": name, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape)}

    def node(self, obj) -> dict:
        # an encoder or decoder of a kind kept in its own module (TokensEncoder) is saved as what builds it
        cls = NetEncoder if isinstance(obj, NetEncoder) else NetDecoder if isinstance(obj, NetDecoder) else type(obj)
        name = cls.__name__
        if self.classes.get(name) is not cls:
            raise ExportError(
                f"Export: {self.where(obj)} is not one of wlnet's own classes ({cls.__module__}.{name}); only "
                "the nets, layers, encoders and decoders that wlnet exports can be saved."
            )
        rule = next(r for c, r in CONSTRUCTORS if isinstance(obj, c))
        try:
            args, options, arrays = rule(obj)
        except AttributeError:
            raise ExportError(f"Export: {self.where(obj)} does not keep the arguments that built it, so it cannot "
                              "be saved.") from None
        node = {"class": name, "args": [self.value(a, obj) for a in args],
                "options": {k: self.value(v, obj, k) for k, v in options.items()}}
        pos = self.positions.get(id(obj), ())
        present = {a: t for a, t in arrays.items() if t is not None}
        if present:
            node["arrays"] = {a: self.tensor(t, "/".join(str(p) for p in (*pos, a))) for a, t in present.items()}
        return node

    def value(self, v, owner, option: str | None = None):
        return json_value(v, lambda x: self._other(x, owner, option))

    def _other(self, v, owner, option: str | None):
        """The JSON of a value that is not plain data (see `json_value`)."""
        if id(v) in self.value_names:
            return {"$value": self.value_names[id(v)]}
        if isinstance(v, NetPort):
            return {"$NetPort": [self.value(x, owner, option) for x in v.spec]}
        if isinstance(v, slice):
            return {"$slice": [self.value(x, owner, option) for x in (v.start, v.stop, v.step)]}
        if isinstance(v, Net | NetEncoder | NetDecoder):
            return {"$new": self.node(v)}
        if hasattr(v, "item") and getattr(v, "shape", None) == ():  # a numpy or torch scalar
            return self.value(v.item(), owner, option)
        what = f"option {option}" if option else "an argument"
        if callable(v):
            name = getattr(v, "__name__", repr(v))
            if id(v) in self.function_names:
                return {"$function": self.function_names[id(v)]}
            _, _, functions = registry()
            fix = (f"Use one of the named functions {', '.join(repr(f) for f in functions)} instead, e.g. "
                   f"ElementwiseLayer({next(iter(functions))!r})" if type(owner).__name__ == "ElementwiseLayer" else
                   f"Give the function by one of the names {type(owner).__name__} knows (a string) instead")
            raise ExportError(
                f"Export: {self.where(owner)} holds the Python function {name} ({what}), which cannot be saved: "
                f"a file that held code would run it when loaded. {fix}."
            )
        raise ExportError(f"Export: {self.where(owner)} holds {v!r} ({what}, of type {type(v).__name__}), which "
                          "cannot be saved.")


def port_type(t) -> dict:
    """A port type as JSON: an array's dims, integer and levels; a list port's items (None while
    their number is not known)."""
    if isinstance(t, ListType):
        return {"items": None if t.items is None else [port_type(i) for i in t.items]}
    return {"dims": None if t.dims is None else list(t.dims), "integer": t.integer, "levels": t.levels}


def port_types(ports: dict) -> dict:
    return {p: port_type(t) for p, t in ports.items()}


def encode(obj) -> tuple[dict, dict]:
    """(the JSON document, {tensor name: tensor}) of a net or NetStateObject."""
    net = obj.net if isinstance(obj, NetStateObject) else obj
    enc = Encoder(net)
    doc = {"format": FORMAT, "version": VERSION, "kind": "NetStateObject" if net is not obj else "Net",
           "net": enc.node(net),
           "ports": {"inputs": port_types(net.input_ports()), "outputs": port_types(net.output_ports())}}
    if net is not obj:
        for key, table in (("seed", obj._seed), ("states", obj._states)):
            doc[key] = [[enc.value(pos, net), enc.tensor(t, f"{key}/" + "/".join(map(str, pos)))]
                        for pos, t in table.items()]
    return doc, enc.tensors


# ---- reading --------------------------------------------------------------------------------------
class StructureError(Exception):
    """What is wrong with a document (the caller names the file)."""


def _type(x, want, what: str):
    if not isinstance(x, want) or (want is int and isinstance(x, bool)):
        raise StructureError(f"{what} must be {_TYPE_WORDS.get(want, want)}, but is {_short(x)}.")
    return x


_TYPE_WORDS = {dict: "an object", list: "a list", str: "a string", int: "an integer"}


def _short(x) -> str:
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


class Decoder:
    """Builds a net from a document; `tensors` {name: tensor} are the file's arrays. Every
    tensor is to be used: `unused()` names those no array referred to."""

    def __init__(self, tensors: dict):
        self.classes, self.values, self.functions = registry()
        self.tensors = tensors
        self.used: set = set()

    def unused(self) -> list:
        return [k for k in self.tensors if k not in self.used]

    def tensor(self, ref, what: str) -> torch.Tensor:
        ref = _type(ref, dict, what)
        if set(ref) != {"tensor", "dtype", "shape"}:
            raise StructureError(f"{what} must have the fields tensor, dtype and shape, but has {sorted(ref)}.")
        name = _type(ref["tensor"], str, f"{what}: tensor")
        if name not in self.tensors:
            raise StructureError(f"{what} refers to the array {name!r}, which the file does not hold (missing).")
        t = self.tensors[name]
        shape = _type(ref["shape"], list, f"{what}: shape")
        if ref["dtype"] != DTYPE_NAMES.get(t.dtype) or shape != list(t.shape):
            raise StructureError(
                f"{what} is recorded as {ref['dtype']!r} {shape}, but the array {name!r} in the file is "
                f"{DTYPE_NAMES.get(t.dtype)!r} {list(t.shape)}."
            )
        self.used.add(name)
        return t

    def node(self, d, depth: int, where: str) -> object:
        d = _type(d, dict, where)
        extra = set(d) - {"class", "args", "options", "arrays"}
        if extra or "class" not in d:
            raise StructureError(f"{where} must have the fields class, args, options (and arrays), but has "
                                 f"{sorted(d)}.")
        name = _type(d["class"], str, f"{where}: class")
        cls = self.classes.get(name)
        if cls is None:
            raise StructureError(f"{where} names the class {name!r}, which wlnet does not know (a file written by "
                                 "a newer wlnet, or corrupt).")
        where = f"{where} ({name})"
        raw_args = _type(d.get("args", []), list, f"{where}: args")
        if issubclass(cls, NetGraph) and raw_args:  # the layers: each with its own position in messages
            layers = raw_args[0]
            if isinstance(layers, list):
                first = [self.value(x, depth + 2, f"{where} layer {i}") for i, x in enumerate(layers, 1)]
            elif isinstance(layers, dict) and not any(k.startswith("$") for k in layers):
                first = {k: self.value(x, depth + 2, f"{where} layer {k!r}") for k, x in layers.items()}
            else:
                first = self.value(layers, depth + 1, where)
            args = [first] + [self.value(a, depth + 1, where) for a in raw_args[1:]]
        else:
            args = [self.value(a, depth + 1, where) for a in raw_args]
        options = {k: self.value(v, depth + 1, f"{where} option {k}")
                   for k, v in _type(d.get("options", {}), dict, f"{where}: options").items()}
        refs = _type(d.get("arrays", {}), dict, f"{where}: arrays")
        arrays = {a: self.tensor(r, f"{where} array {a!r}") for a, r in refs.items()}
        clash = set(arrays) & set(options)
        if clash:
            raise StructureError(f"{where} gives {sorted(clash)} both as options and as arrays.")
        try:
            obj = cls(*args, **options, **arrays)
        except NetError as e:
            raise StructureError(f"{where} cannot be rebuilt: {e}") from None
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
            raise StructureError(f"{where} cannot be rebuilt from its arguments: {type(e).__name__}: {e}") from None
        if arrays:
            held = obj._arrays if isinstance(obj, Layer) else {}
            for a, r in refs.items():
                t = held.get(a)
                if t is None or list(t.shape) != r["shape"] or DTYPE_NAMES.get(t.dtype) != r["dtype"]:
                    raise StructureError(f"{where} array {a!r} is recorded as {r['dtype']} {r['shape']}, but the "
                                         "rebuilt layer does not hold it as such.")
        return obj

    def value(self, v, depth: int, where: str):
        return python_value(v, self._tagged, where, depth)

    def _tagged(self, tag: str, x, depth: int, where: str):
        if tag == "$value":
            if not isinstance(x, str) or x not in self.values:
                raise StructureError(f"{where} names the constant {_short(x)}, which wlnet does not know.")
            return self.values[x]
        if tag == "$function":
            if not isinstance(x, str) or x not in self.functions:
                raise StructureError(f"{where} names the function {_short(x)}, which is not one of wlnet's named "
                                     f"functions ({', '.join(self.functions)}).")
            return self.functions[x]
        if tag == "$slice":
            parts = [self.value(y, depth + 1, where) for y in _type(x, list, where)]
            if len(parts) != 3:
                raise StructureError(f"{where}: a $slice must be [start, stop, step], but is {_short(x)}.")
            return slice(*parts)
        if tag == "$NetPort":
            spec = [self.value(y, depth + 1, where) for y in _type(x, list, where)]
            try:
                return NetPort(*spec)
            except NetError as e:
                raise StructureError(f"{where}: {e}") from None
        if tag == "$new":
            return self.node(x, depth + 1, where)
        raise StructureError(f"{where} has the unknown tag {_short(tag)}.")


def check_not_newer(version) -> None:
    """A StructureError when `version` (an integer) is a format version newer than this wlnet reads."""
    if isinstance(version, int) and version > VERSION:
        raise StructureError(f"it was written in format version {version} by a newer wlnet; this wlnet reads "
                             f"versions up to {VERSION}. Upgrade wlnet to read it.")


def _port_type(t, what: str):
    """The port type a `port_type` record gives (a list port's items read one level deep)."""
    t = _type(t, dict, what)
    if set(t) == {"items"}:
        items = t["items"]
        if items is None:
            return ListType(None)
        return ListType(tuple(_array_type(i, what) for i in _type(items, list, what)))
    return _array_type(t, what)


def _array_type(t, what: str) -> ArrayType:
    t = _type(t, dict, what)
    dims, integer, levels = t.get("dims"), t.get("integer"), t.get("levels")
    if set(t) != {"dims", "integer", "levels"} or not isinstance(integer, bool) or \
            not (levels is None or (isinstance(levels, int) and not isinstance(levels, bool))) or \
            not (dims is None or (isinstance(dims, list) and all(
                d is None or d == VARYING or (isinstance(d, int) and not isinstance(d, bool)) for d in dims))):
        raise StructureError(f"{what} is not a port type: {_short(t)}.")
    return ArrayType(None if dims is None else tuple(dims), integer, levels)


def _port_table(d, what: str) -> dict:
    return {port: _port_type(t, f"{what} {port!r}") for port, t in _type(d, dict, what).items()}


def decode(doc, tensors: dict):
    """The net (or NetStateObject) a document describes, its arrays taken from `tensors`;
    a StructureError for anything that does not fit."""
    doc = _type(doc, dict, "the structure")
    if doc.get("format") != FORMAT:
        raise StructureError(f"the structure's format is {_short(doc.get('format'))}, not {FORMAT!r}.")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StructureError(f"the format version must be a positive integer, but is {_short(version)}.")
    check_not_newer(version)
    kind = doc.get("kind")
    known = {"format", "version", "kind", "net", "ports"} | ({"seed", "states"} if kind == "NetStateObject" else set())
    if kind not in ("Net", "NetStateObject") or set(doc) - known:
        raise StructureError(f"the structure's kind must be 'Net' or 'NetStateObject' with the fields "
                             f"{', '.join(sorted(known))}, but it is {_short(kind)} with {sorted(doc)}.")
    dec = Decoder(tensors)
    net = dec.node(doc.get("net"), 1, "the net")
    if not isinstance(net, Net):
        raise StructureError(f"the structure describes a {type(net).__name__}, not a net.")
    ports = _type(doc.get("ports"), dict, "the ports")
    inputs = _port_table(ports.get("inputs"), "the input port")
    outputs = _port_table(ports.get("outputs"), "the output port")
    changed = {p: t for p, t in inputs.items() if net.input_ports().get(p) != t}
    if changed and set(changed) <= set(net.input_ports()):
        try:  # input types a container inferred for this net (a layer taken out of a chain)
            net = net.infer(changed)
        except NetError as e:
            raise StructureError(f"the recorded input ports do not fit the net: {e}") from None
    if net.input_ports() != inputs or net.output_ports() != outputs:
        raise StructureError("the rebuilt net's ports differ from the recorded ones.")
    for pos, leaf in net.leaves():
        shapes = leaf.array_shapes()
        for a, t in leaf._arrays.items():
            want = shapes.get(a)
            if t is not None and want is not None and tuple(t.shape) != tuple(want):
                raise StructureError(f"array {a!r} of the {leaf.name}{position_text(pos)} is "
                                     f"{'×'.join(map(str, t.shape))}, but the layer needs {'×'.join(map(str, want))}.")
    if kind == "NetStateObject":
        net = _state_object(net, dec, doc)
    unused = dec.unused()
    if unused:
        raise StructureError(f"the file holds {unused_text(unused)}.")
    return net


def unused_text(unused: list) -> str:
    return f"arrays that no layer uses (extra): {', '.join(map(repr, unused[:4]))}{' ...' if len(unused) > 4 else ''}"


def tensor_names(doc) -> set:
    """The names of the tensors a document's array references ({"tensor": name, "dtype": ...,
    "shape": ...}, anywhere in it) give: every array a file holds must be one of them, which is
    known before any array is read. (A walk with a stack: the document may be nested deeply.)"""
    names, stack = set(), [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if isinstance(x.get("tensor"), str):
                names.add(x["tensor"])
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return names


def _state_object(net: Net, dec: Decoder, doc: dict) -> NetStateObject:
    try:
        obj = NetStateObject(net)
    except NetError as e:
        raise StructureError(f"the NetStateObject cannot be rebuilt: {e}") from None
    tables = {}
    for key in ("seed", "states"):
        table = {}
        for entry in _type(doc.get(key, []), list, f"the NetStateObject's {key}"):
            if not isinstance(entry, list) or len(entry) != 2:
                raise StructureError(f"an entry of the NetStateObject's {key} must be [position, array].")
            pos = dec.value(entry[0], 2, f"the NetStateObject's {key}")
            what = f"the NetStateObject's {key[:-1] if key == 'states' else key} at {_short(pos)}"
            if not isinstance(pos, tuple) or pos not in obj._positions:
                raise StructureError(f"{what} is not a state position of the net; those are {list(obj._positions)}.")
            t = dec.tensor(entry[1], what)
            n = obj._positions[pos].dims[0]
            if t.dtype not in (torch.float32, torch.float64) or t.ndim != 2 or t.shape[0] < 1 or t.shape[1] != n:
                raise StructureError(f"{what} must be a B×{n} array of reals, but is {DTYPE_NAMES.get(t.dtype)} "
                                     f"{list(t.shape)}.")
            if not bool(torch.isfinite(t).all()):  # a NaN state would carry into every later evaluation
                raise StructureError(f"{what} holds NaN or infinite values; a stored state must be finite.")
            if key == "seed" and t.shape[0] != 1:
                raise StructureError(f"{what} must be one vector (1×{n}), but is {list(t.shape)}.")
            if pos in table:
                raise StructureError(f"{what} is given twice.")
            table[pos] = t.clone()
        rows = {t.shape[0] for t in table.values()}
        if len(rows) > 1:
            raise StructureError(f"the NetStateObject's {key} belong to batches of different sizes {sorted(rows)}.")
        tables[key] = table
    obj._seed, obj._states = tables["seed"], tables["states"]
    return obj
