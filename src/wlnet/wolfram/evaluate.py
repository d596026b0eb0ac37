"""Expression trees → wlnet objects: the net framework's part of the Wolfram Language.

Values while evaluating are Python values, with `Rule` for a rule and lists for lists; at the
call of a wlnet function they become the Python forms it takes (lists of rules → dicts, edges →
tuples, shapes → tuples, ...). Nothing is evaluated as Python: a head that is not one of
wlnet's functions, a net, an association or a pure function is a NotSupportedError.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import NotSupportedError, OptionError
from ..core.net import Net
from ..core.symbols import All, Automatic
from .functions import ELEMENTWISE_NAMES, UNARY, PureFunction, Symbol
from .syntax import Expr, Lit, Slot, Sym, parse


class Rule:
    """lhs -> rhs while evaluating."""

    __slots__ = ("lhs", "rhs")

    def __init__(self, lhs, rhs):
        self.lhs, self.rhs = lhs, rhs

    def __repr__(self) -> str:
        return f"Rule({self.lhs!r}, {self.rhs!r})"


_NUMERIC_TYPES = {"Real32": np.float32, "Real64": np.float64, "Integer8": np.int8, "Integer16": np.int16,
                  "Integer32": np.int32, "Integer64": np.int64, "UnsignedInteger8": np.uint8}


def _numeric_array(data, type_="Real32"):
    if type_ not in _NUMERIC_TYPES:
        raise OptionError(f"NumericArray: the type must be one of {', '.join(_NUMERIC_TYPES)}, but was given "
                          f"{type_!r}.")
    try:
        return np.array(data, dtype=_NUMERIC_TYPES[type_])
    except (TypeError, ValueError):
        raise OptionError(f"NumericArray: expected a rectangular array of numbers, but was given {data!r:.80}.") \
            from None


def _builtins() -> dict:
    import wlnet

    table = {}
    for name in wlnet.__all__:
        obj = getattr(wlnet, name)
        if name in ("from_wolfram", "to_wolfram", "from_torch", "to_torch", "NetTrainResultsObject") or (
                isinstance(obj, type) and issubclass(obj, BaseException | Warning)):
            continue
        table[name] = obj
    table["NumericArray"] = _numeric_array
    table["Normal"] = _normal
    return table


def _normal(x):
    """Normal[NumericArray[...]]: the array as nested lists."""
    return x.tolist() if isinstance(x, np.ndarray | torch.Tensor) else x


_VALUES = {"True": True, "False": False, "None": None, "Null": None, "Automatic": Automatic, "All": All,
           "Infinity": math.inf, "Pi": math.pi, "E": math.e, "Indeterminate": math.nan}
_BUILTINS: dict | None = None
_BUILTIN_NAMES: dict | None = None


def builtins() -> dict:
    """Wolfram name → wlnet's function or class."""
    global _BUILTINS, _BUILTIN_NAMES
    if _BUILTINS is None:
        _BUILTINS = _builtins()
        _BUILTIN_NAMES = {id(v): k for k, v in _BUILTINS.items()}
    return _BUILTINS


def builtin_names() -> dict:
    builtins()
    return _BUILTIN_NAMES


# ---- Python forms of evaluated values ------------------------------------------------------------
class Numbers(list):
    """A list of plain numbers (nested) read in one pass: its Python form is itself."""

    __slots__ = ()


def py(v):
    """The Python form of a value: a list of rules → dict, {a, b, "x" -> 1} (values then rules) →
    (a, b, {"x": 1}), a rule → a pair, dict keys that are lists → tuples."""
    if type(v) is Numbers:
        return v
    if isinstance(v, Rule):
        return (py(v.lhs), py(v.rhs))
    if isinstance(v, list):
        if not v:
            return []
        rules = [isinstance(x, Rule) for x in v]
        if all(rules):
            return _dict(v)
        if rules[-1] and not rules[0]:
            cut = rules.index(True)
            if all(rules[cut:]):
                return (*[py(x) for x in v[:cut]], _dict(v[cut:]))
        return [py(x) for x in v]
    if isinstance(v, dict):
        return {_key(py(k)): py(x) for k, x in v.items()}
    return v


def _key(k):
    if isinstance(k, list):
        return tuple(_key(x) for x in k)
    return k


def _dict(rules) -> dict:
    return {_key(py(r.lhs)): py(r.rhs) for r in rules}


def shape(v):
    """A shape: {"Varying", 2} → ("Varying", 2); a size or an encoder as it is."""
    if isinstance(v, list) and not any(isinstance(x, Rule) for x in v):
        return tuple(py(x) for x in v)
    return py(v)


def list_shapes(v):
    """A list port's shapes: {3, {"Varying", 2}} → [3, ("Varying", 2)]."""
    if isinstance(v, list):
        return [shape(x) for x in v]
    return py(v)


def edge(v):
    """a -> b -> c → (a, b, c); {a, b} -> c → ([a, b], c)."""
    if not isinstance(v, Rule):
        return py(v)
    parts = [v.lhs]
    while isinstance(v.rhs, Rule):
        v = v.rhs
        parts.append(v.lhs)
    parts.append(v.rhs)
    return tuple(py(p) for p in parts)


def data(v):
    """Training or measurement data: a list of rules → (input, target) pairs, inputs -> targets → a pair
    of lists, an association of ports → a dict."""
    if isinstance(v, Rule):
        return (py(v.lhs), py(v.rhs))
    if isinstance(v, list) and v and all(isinstance(x, Rule) for x in v):
        return [(py(x.lhs), py(x.rhs)) for x in v]
    return py(v)


def spec(v):
    """A NetExtract spec or an output port property: {1, "Weights"} → (1, "Weights")."""
    if isinstance(v, list):
        return tuple(py(x) for x in v)
    return py(v)


# ---- the evaluator --------------------------------------------------------------------------------
class Evaluator:
    """Evaluates the statements of `src`; `env` (name → value) holds the names bound from Python
    and by assignments."""

    def __init__(self, src: str, env: dict):
        self.src = src
        self.env = env

    def run(self, statements: list):
        value = None
        for s in statements:
            value = self.eval(s)
        return value

    def where(self, e) -> str:
        if isinstance(e, Expr) and e.pos >= 0:
            from .syntax import where

            line, col, _ = where(self.src, e.pos)
            return f" (line {line}, column {col})"
        return ""

    def eval(self, e):
        if isinstance(e, Expr):
            return self.eval_expr(e)
        if isinstance(e, Sym):
            return self.symbol(e.name)
        if isinstance(e, Lit):
            return Numbers(e.value)
        if isinstance(e, Slot):
            raise NotSupportedError(f"#{e.n} outside a pure function (...&).")
        return e  # a number or a string

    def symbol(self, name: str):
        if name in self.env:
            return self.env[name]
        if name in _VALUES:
            return _VALUES[name]
        b = builtins()
        if name in b:
            return b[name]
        return Symbol(name)

    def eval_expr(self, e: Expr):
        head = e.head
        if isinstance(head, Sym):
            name = head.name
            special = _SPECIAL.get(name)
            if special is not None and name not in self.env:
                return special(self, e)
            f = self.symbol(name)
        else:
            f = self.eval(head)
        args = [self.eval(a) for a in e.args]
        return self.apply(f, args, e)

    def apply(self, f, args: list, e: Expr):
        if isinstance(f, Symbol):
            raise NotSupportedError(f"from_wolfram: {f}{self.where(e)} is not a function wlnet knows; only the net "
                                    "framework's functions (layers, containers, NetTrain, ...) can be evaluated.")
        if isinstance(f, Net) or _is_state_object(f):
            return self.apply_net(f, args, e)
        if isinstance(f, PureFunction):
            return f(*[py(a) for a in args])
        if isinstance(f, dict):
            if len(args) != 1:
                raise OptionError(f"an association takes one key, but was given {len(args)}{self.where(e)}.")
            key = _key(py(args[0]))
            if key not in f:
                raise OptionError(f"the association has no key {key!r}{self.where(e)}; its keys are "
                                  f"{', '.join(map(repr, f))}.")
            return f[key]
        if _is_results(f):
            if len(args) != 1:
                raise OptionError(f"a NetTrainResultsObject takes one property, but was given {len(args)}.")
            return f[py(args[0])]
        name = builtin_names().get(id(f))
        if name is not None:
            return self.call(name, f, args, e)
        raise NotSupportedError(f"from_wolfram: {_short(f)}{self.where(e)} cannot be applied to arguments.")

    def apply_net(self, net, args: list, e: Expr):
        pos, opts = _split(args)
        if not pos or len(pos) > 2:
            raise OptionError(f"{getattr(net, 'name', 'NetStateObject')}[...]{self.where(e)}: give the input "
                              "and at most one port or property, then options, but was given "
                              f"{len(pos)} positional arguments.")
        x = py(pos[0])
        if len(pos) == 2:
            return net(x, spec(pos[1]), **opts)
        return net(x, **opts)

    def call(self, name: str, f, args: list, e: Expr):
        pos, opts = _split(args)
        convert = _CONVERSIONS.get(name)
        if convert is not None:
            pos, opts = convert(f, pos, opts)
        else:
            pos = [py(a) for a in pos]
            opts = _generic_options(f, opts)
        if name == "NetPort" and not pos:
            raise OptionError(f"NetPort{self.where(e)}: give a port name, or a layer position and a port name.")
        return f(*pos, **opts)


def _is_state_object(v) -> bool:
    return type(v).__name__ == "NetStateObject" and hasattr(v, "net")


def _is_results(v) -> bool:
    return type(v).__name__ == "NetTrainResultsObject"


def _short(v) -> str:
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


def _split(args: list) -> tuple[list, dict]:
    """Positional arguments, then options: trailing rules whose left side is a name."""
    cut = len(args)
    while cut > 0 and isinstance(args[cut - 1], Rule) and isinstance(args[cut - 1].lhs, str):
        cut -= 1
    opts = {}
    for r in args[cut:]:
        name = str(r.lhs)
        if name in opts:
            raise OptionError(f"the option {name} is given twice.")
        opts[name] = r.rhs
    return list(args[:cut]), opts


_LIST_LAYERS = {"CatenateLayer", "TotalLayer", "ThreadingLayer"}  # "Input" -> {shape1, shape2, ...}: one per array


def _is_list_layer(f) -> bool:
    return isinstance(f, type) and any(c.__name__ in _LIST_LAYERS or c.__name__ == "_ListLayer" for c in f.__mro__)


def _generic_options(f, opts: dict) -> dict:
    out = {}
    for k, v in opts.items():
        if k == "Input" and _is_list_layer(f):
            out[k] = list_shapes(v)
        elif k in ("Input", "Output") or (isinstance(f, type) and f.__name__ == "NetGraph" and isinstance(v, list)):
            out[k] = shape(v)
        else:
            out[k] = py(v)
    return out


def _function_arg(v):
    """ElementwiseLayer's function: Tanh, Ramp, ... (by name), another elementwise function as a
    pure function, "ReLU" and Wolfram's other names."""
    if isinstance(v, str):
        name = ELEMENTWISE_NAMES.get(str(v), str(v))
        from ..layers.basic import _FUNCTIONS

        if name not in _FUNCTIONS and name in UNARY:
            return PureFunction(Expr(Sym(name), (Slot(1),)), f"{name}[#1] &")
        return Symbol(name) if isinstance(v, Symbol) or name != v else v
    return py(v)


def _conv_elementwise(f, pos, opts):
    return [_function_arg(a) if i == 0 else py(a) for i, a in enumerate(pos)], _generic_options(f, opts)


def _conv_graph(f, pos, opts):
    out = [py(pos[0])] if pos else []
    if len(pos) > 1:
        edges = pos[1]
        edges = edges if isinstance(edges, list) else [edges]
        out.append([edge(x) for x in edges])
    out += [py(a) for a in pos[2:]]
    return out, _generic_options(f, opts)


def _conv_coder(f, pos, opts):
    if len(pos) == 1 and isinstance(pos[0], list):
        items = pos[0]
        inner = [x for x in items if not isinstance(x, Rule)]
        cut = len(inner)
        if any(not isinstance(x, Rule) for x in items[cut:]) or any(isinstance(x, Rule) for x in items[:cut]):
            raise OptionError(f"{f.__name__}: the parameters come first in the list, then the options, but "
                              f"was given {_short(items)}.")
        opts = {**{str(r.lhs): r.rhs for r in items[cut:]}, **opts}
        return [tuple(py(x) for x in inner)], {k: py(v) for k, v in opts.items()}
    if len(pos) == 1 and isinstance(pos[0], str):  # NetEncoder["Characters"]
        return [(str(pos[0]),)], {k: py(v) for k, v in opts.items()}
    return [py(a) for a in pos], {k: py(v) for k, v in opts.items()}


def _conv_train(f, pos, opts):
    out = [py(pos[0])] if pos else []
    if len(pos) > 1:
        out.append(data(pos[1]))
    out += [py(a) for a in pos[2:]]
    opts = {k: (data(v) if k == "ValidationSet" else py(v)) for k, v in opts.items()}
    method = opts.get("Method")
    if isinstance(method, list) and len(method) == 1:  # Method -> {"ADAM"}
        opts["Method"] = method[0]
    return out, opts


def _conv_measure(f, pos, opts):
    out = [py(pos[0])] if pos else []
    if len(pos) > 1:
        out.append(data(pos[1]))
    out += [py(a) for a in pos[2:]]
    return out, {k: py(v) for k, v in opts.items()}


def _conv_extract(f, pos, opts):
    return [py(pos[0])] + [spec(a) for a in pos[1:]] if pos else [], {k: py(v) for k, v in opts.items()}


def _conv_bidirectional(f, pos, opts):
    out = [py(a) for a in pos]
    if out and isinstance(out[0], list):
        out[0] = tuple(out[0])
    return out, _generic_options(f, opts)


def _conv_state(f, pos, opts):
    out = [py(a) for a in pos]
    return out, {k: py(v) for k, v in opts.items()}


_CONVERSIONS = {
    "ElementwiseLayer": _conv_elementwise, "NetGraph": _conv_graph, "NetEncoder": _conv_coder,
    "NetDecoder": _conv_coder, "NetTrain": _conv_train, "NetMeasurements": _conv_measure,
    "NetExtract": _conv_extract, "NetBidirectionalOperator": _conv_bidirectional, "NetStateObject": _conv_state,
}


# ---- forms evaluated specially -------------------------------------------------------------------
def _set(ev: Evaluator, e: Expr):
    target, value = e.args
    name = target.name
    from .functions import ARITHMETIC, CONSTANTS

    if name in _VALUES or name in builtins() or name in _SPECIAL or name in UNARY or name in ARITHMETIC or \
            name in CONSTANTS:
        raise NotSupportedError(f"from_wolfram: {name}{ev.where(e)} is a built-in symbol and cannot be assigned.")
    v = ev.eval(value)
    ev.env[name] = v
    return v


def _compound(ev: Evaluator, e: Expr):
    value = None
    for a in e.args:
        value = ev.eval(a)
    return value


def _list(ev: Evaluator, e: Expr):
    return [ev.eval(a) for a in e.args]


def _association(ev: Evaluator, e: Expr):
    out = {}
    for a in e.args:
        v = ev.eval(a)
        if isinstance(v, dict):
            out.update(v)
            continue
        if not isinstance(v, Rule):
            raise OptionError(f"an association holds rules key -> value, but was given {_short(v)}{ev.where(e)}.")
        out[_key(py(v.lhs))] = v.rhs
    return out


def _rule(ev: Evaluator, e: Expr):
    return Rule(ev.eval(e.args[0]), ev.eval(e.args[1]))


def _function(ev: Evaluator, e: Expr):
    from .printer import expr_text

    body = e.args[0]
    return PureFunction(_substitute(ev, body), expr_text(Expr(Sym("Function"), (body,))))


def _substitute(ev: Evaluator, body):
    """The body with names bound in the session replaced by their (numeric) values."""
    if isinstance(body, Sym) and body.name in ev.env:
        v = ev.env[body.name]
        if isinstance(v, int | float) and not isinstance(v, bool):
            return v
        raise NotSupportedError(f"from_wolfram: {body.name} in a pure function is {_short(v)}, not a number.")
    if isinstance(body, Expr):
        return Expr(body.head, tuple(_substitute(ev, a) for a in body.args), body.pos)
    return body


def _span(ev: Evaluator, e: Expr):
    parts = [ev.eval(a) for a in e.args]
    parts = [None if p is All else p for p in parts]
    return slice(*parts)


def _part(ev: Evaluator, e: Expr):
    v = ev.eval(e.args[0])
    for a in e.args[1:]:
        i = ev.eval(a)
        if isinstance(v, dict):
            if _key(py(i)) not in v:
                raise OptionError(f"Part{ev.where(e)}: the association has no key {_short(i)}.")
            v = v[_key(py(i))]
        elif isinstance(v, list | tuple) and isinstance(i, int) and not isinstance(i, bool) and 1 <= abs(i) <= len(v):
            v = v[i - 1 if i > 0 else i]
        else:
            raise OptionError(f"Part{ev.where(e)}: cannot take part {_short(i)} of {_short(v)}.")
    return v


def _arith(name):
    def f(ev: Evaluator, e: Expr):
        from .functions import ARITHMETIC

        vals = [ev.eval(a) for a in e.args]
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise NotSupportedError(f"from_wolfram: {name}{ev.where(e)} of {_short(v)}: arithmetic is "
                                        "supported on numbers (and in pure functions), not on lists or nets.")
        if name == "Divide" and all(isinstance(v, int) for v in vals):
            q = vals[0] / vals[1] if vals[1] else math.nan
            return vals[0] // vals[1] if vals[1] and vals[0] % vals[1] == 0 else q
        return ARITHMETIC[name](*vals)
    return f


def _apply(ev: Evaluator, e: Expr):
    f, xs = e.args
    lst = ev.eval(xs)
    if not isinstance(lst, list):
        raise NotSupportedError(f"Apply (@@){ev.where(e)} needs a list, but was given {_short(lst)}.")
    return ev.apply(ev.symbol(f.name) if isinstance(f, Sym) else ev.eval(f), lst, e)


def _print(ev: Evaluator, e: Expr):
    from .printer import to_wolfram

    print(*[v if isinstance(v, str) else to_wolfram(v) for v in (ev.eval(a) for a in e.args)], sep="")
    return None


def _plain(v):
    """A value compared or measured as Wolfram lists: arrays as nested lists."""
    if isinstance(v, np.ndarray | torch.Tensor):
        return v.tolist()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _equal(ev: Evaluator, e: Expr):
    vals = [_plain(py(ev.eval(a))) for a in e.args]
    return all(v == vals[0] for v in vals[1:])


def _list_function(name):
    def f(ev: Evaluator, e: Expr):
        if len(e.args) != 1:
            raise OptionError(f"{name}{ev.where(e)} takes one argument, but was given {len(e.args)}.")
        v = py(ev.eval(e.args[0]))
        v = list(v) if isinstance(v, np.ndarray | torch.Tensor | tuple | dict) else v
        if not isinstance(v, list | str):
            raise OptionError(f"{name}{ev.where(e)}: expected a list, but was given {_short(v)}.")
        if name == "Length":
            return len(v)
        if not v:
            raise OptionError(f"{name}{ev.where(e)}: the list is empty.")
        return v[0] if name == "First" else v[-1]
    return f


_SPECIAL = {
    "Equal": _equal, "First": _list_function("First"), "Last": _list_function("Last"),
    "Length": _list_function("Length"),
    "Set": _set, "CompoundExpression": _compound, "List": _list, "Association": _association, "Rule": _rule,
    "RuleDelayed": _rule, "Function": _function, "Span": _span, "Part": _part, "Apply": _apply, "Print": _print,
    **{n: _arith(n) for n in ("Plus", "Subtract", "Times", "Divide", "Power", "Minus")},
}


def from_wolfram(code: str, **names):
    """Evaluate Wolfram Language code of the net framework and return the value of its last
    statement; `names` binds Wolfram names to Python values (data, nets, numbers).

    Statements are separated by ; or by lines; `x = ...` binds x for later statements. Every
    public wlnet name is known by its Wolfram name; anything else that is called (Table,
    DeleteFile, ...) is a NotSupportedError, and nothing is evaluated as Python.

    >>> net = from_wolfram('NetInitialize@LongShortTermMemoryLayer[3, "Input" -> {"Varying", 2}]')
    >>> len(from_wolfram("net[{{1, 2}, {3, 4}}]", net=net))
    2
    """
    for k in names:
        if not k.isidentifier():
            raise OptionError(f"from_wolfram: {k!r} cannot be a Wolfram name.")
    return evaluate_in(code, dict(names))


def evaluate_in(code: str, env: dict):
    """from_wolfram with `env` as the session's names: assignments are left in it for the next call."""
    ev = Evaluator(code, env)
    try:
        value = py(ev.run(parse(code)))
        return list(value) if type(value) is Numbers else value
    except RecursionError:
        raise NotSupportedError("from_wolfram: the code is nested too deeply to read.") from None


__all__ = ["from_wolfram", "Rule", "py"]
