"""wlnet objects → Wolfram Language input form.

A net is written as Wolfram's constructor of its class with the arguments and options that
built it and its arrays as options (`LinearLayer[2, "Weights" -> {{...}}, "Biases" -> {...}]`),
read from what each net keeps for saving (`io.structure.CONSTRUCTORS`), so no layer needs its
own rule. Arrays are nested lists of reals, each float32 in the shortest decimal that reads back
to the same float32 (`1.5*^-7`): Mathematica takes a nested list as an array option of any layer
and stores it as Real32, and `from_wolfram` reads the same list back bit for bit.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ..core.errors import NetError, NotSupportedError
from ..core.net import Net, NetPort
from .functions import PureFunction, Symbol
from .syntax import Expr, Slot, Sym

_IDENT = re.compile(r"[A-Za-z$][A-Za-z0-9$]*\Z")
_BARE_MANTISSA = re.compile(r"(?<![\d.])(\d+)e")
_EXP_PLUS = re.compile(r"e\+0*(?=\d)")
_EXP_MINUS = re.compile(r"e-0*(?=\d)")

# options Wolfram names by a symbol (the others by a string: "Input", "Dropout", array names)
SYMBOL_OPTIONS = {
    "LearningRateMultipliers", "IgnoreCase", "BatchSize", "NetEvaluationMode", "TargetDevice", "WorkingPrecision",
    "RandomSeeding", "Method", "LossFunction", "MaxTrainingRounds", "TimeGoal", "ValidationSet", "LearningRate",
    "TrainingProgressReporting", "TrainingProgressFunction", "TrainingProgressMeasurements",
    "TrainingProgressCheckpointing", "TrainingStoppingCriterion", "TrainingUpdateSchedule", "RoundLength",
}


def _fix_exponents(text: str) -> str:
    """numpy/Python float text → Wolfram: 1e+20 → 1.0*^20, 1.5e-07 → 1.5*^-7."""
    if "e" not in text:
        return text
    text = _BARE_MANTISSA.sub(r"\1.0e", text)
    return _EXP_MINUS.sub("*^-", _EXP_PLUS.sub("*^", text))


def real(x: float) -> str:
    if math.isnan(x):
        return "Indeterminate"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return _fix_exponents(repr(float(x)))


def string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if any(ord(c) < 32 for c in out):
        out = "".join(f"\\:{ord(c):04x}" if ord(c) < 32 else c for c in out)
    return f'"{out}"'


def array_text(a) -> str:
    """A float32 array as nested lists, each number the shortest text that reads back to it."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.dtype != np.float32:
        a = a.astype(np.float32) if a.dtype.kind == "f" else a
    if a.ndim == 0:
        return _fix_exponents(str(a.item() if a.dtype.kind != "f" else a))
    if a.size and a.dtype.kind == "f" and not np.isfinite(a).all():
        return _nested([real(float(x)) for x in a.ravel().tolist()], a.shape)
    flat = a.ravel()
    strs = flat.astype(str).tolist()
    if flat.dtype.kind == "f":  # numpy writes an exponent only for |x| ≤ 1e-4 or ≥ 1e6: fix those few
        size = np.abs(flat)
        for i in np.flatnonzero(((size < 2e-4) & (size > 0)) | (size >= 1e5)).tolist():
            strs[i] = _fix_exponents(strs[i])
    return _nested(strs, a.shape)


def _nested(strs: list, shape: tuple) -> str:
    if len(shape) == 1:
        return "{" + ",".join(strs) + "}"
    step = len(strs) // shape[0] if shape[0] else 0
    return "{" + ",".join(_nested(strs[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "}"


# ---- expression trees (pure functions) -----------------------------------------------------------
_PREC = {"Plus": 310, "Subtract": 310, "Times": 400, "Divide": 400, "Minus": 480, "Power": 590}
_OPS = {"Plus": " + ", "Subtract": " - ", "Times": "*", "Divide": "/", "Power": "^"}


def _prec(e) -> int:
    if isinstance(e, Expr) and isinstance(e.head, Sym) and e.head.name in _PREC:
        return _PREC[e.head.name]
    if isinstance(e, int | float) and e < 0:
        return 480
    if isinstance(e, Expr) and e.is_("Function"):
        return 90
    return 1000


def expr_text(e) -> str:
    """An expression tree as Wolfram input form."""
    if isinstance(e, bool):
        return "True" if e else "False"
    if isinstance(e, int):
        return str(e)
    if isinstance(e, float):
        return real(e)
    if isinstance(e, str):
        return string(e)
    if isinstance(e, Sym):
        return e.name
    if isinstance(e, Slot):
        return f"#{e.n}"
    if isinstance(e.head, Sym) and e.head.name == "Function":
        return f"{expr_text(e.args[0])} &"
    if isinstance(e.head, Sym) and e.head.name in _PREC:
        name, p = e.head.name, _PREC[e.head.name]
        if name == "Minus":
            return "-" + _wrap(e.args[0], _prec(e.args[0]) < p)
        parts = []
        for i, a in enumerate(e.args):
            if name == "Power":
                paren = _prec(a) <= p if i == 0 else _prec(a) < p
            else:
                paren = _prec(a) < p if i == 0 else _prec(a) <= p
            parts.append(_wrap(a, paren))
        return _OPS[name].join(parts)
    head = expr_text(e.head) if not isinstance(e.head, Expr) else _wrap(e.head, _prec(e.head) < 1000)
    return f"{head}[{', '.join(expr_text(a) for a in e.args)}]"


def _wrap(e, paren: bool) -> str:
    t = expr_text(e)
    return f"({t})" if paren else t


# ---- values and nets ------------------------------------------------------------------------------
# ElementwiseLayer's names that are Wolfram symbols (ElementwiseLayer[Tanh]); its other names are strings
_ELEMENTWISE_SYMBOLS = {"Tanh", "LogisticSigmoid", "Ramp", "Sin", "Cos", "Exp", "Log", "Sqrt", "Abs"}


class Printer:
    def __init__(self):
        from ..io.structure import registry
        from ..layers.basic import _FUNCTIONS

        _, values, _ = registry()
        self.value_names = {id(v): k for k, v in values.items()}
        self.function_names = {id(f): k for k, f in _FUNCTIONS.items()}

    def value(self, v, inside_net: bool = False) -> str:
        if v is None:
            return "None"
        if isinstance(v, bool | np.bool_):
            return "True" if v else "False"
        if isinstance(v, Symbol):
            return str(v) if _IDENT.match(v) else string(v)
        if isinstance(v, str):
            return string(v)
        if isinstance(v, int | np.integer):
            return str(int(v))
        if isinstance(v, np.floating):
            return array_text(np.asarray(v, dtype=v.dtype)) if v.dtype == np.float32 else real(float(v))
        if isinstance(v, float):
            return real(v)
        if id(v) in self.value_names:
            return self.value_names[id(v)]
        if isinstance(v, tuple) and len(v) > 1 and isinstance(v[-1], dict) and v[-1]:
            # (name, {option: value}) as Wolfram writes it: {name, option -> value}
            head = ", ".join(self.value(x, inside_net) for x in v[:-1])
            rules = ", ".join(f"{self.key(k, True)} -> {self.value(x, inside_net)}" for k, x in v[-1].items())
            return "{" + head + ", " + rules + "}"
        if isinstance(v, list | tuple):
            return "{" + ", ".join(self.value(x, inside_net) for x in v) + "}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{self.key(k, inside_net)} -> {self.value(x, inside_net)}" for k, x in v.items()) \
                + "}"
        if isinstance(v, slice):
            start = "1" if v.start is None else self.value(v.start)
            stop = "All" if v.stop is None else self.value(v.stop)
            return f"{start} ;; {stop}" + ("" if v.step is None else f" ;; {self.value(v.step)}")
        if isinstance(v, NetPort):
            return f"NetPort[{', '.join(self.value(x) for x in v.spec)}]"
        if isinstance(v, PureFunction):
            return f"({v.source})"
        if id(v) in self.function_names:
            return self.function_names[id(v)]
        if isinstance(v, np.ndarray | torch.Tensor):
            return self.numeric_array(v)
        if type(v).__name__ == "Scaled" and hasattr(v, "f"):
            return f"Scaled[{real(v.f)}]"
        if type(v).__name__ == "NetStateObject" and hasattr(v, "net"):
            return self.state_object(v)
        if _is_constructed(v):
            return self.net(v)
        raise NotSupportedError(f"to_wolfram: {_what(v)} has no Wolfram form.")

    def key(self, k, inside_net: bool) -> str:
        if not inside_net and isinstance(k, str) and k in SYMBOL_OPTIONS:
            return k
        return self.value(k, inside_net)

    def numeric_array(self, a) -> str:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
        kinds = {np.dtype(np.float32): "Real32", np.dtype(np.float64): "Real64", np.dtype(np.int64): "Integer64",
                 np.dtype(np.int32): "Integer32", np.dtype(np.int8): "Integer8", np.dtype(np.int16): "Integer16",
                 np.dtype(np.uint8): "UnsignedInteger8"}
        if a.dtype not in kinds:
            raise NotSupportedError(f"to_wolfram: an array of dtype {a.dtype} has no Wolfram form.")
        body = array_text(a) if a.dtype == np.float32 else (
            _nested([real(x) for x in a.ravel().tolist()], a.shape) if a.dtype.kind == "f" else
            _nested([str(x) for x in a.ravel().tolist()], a.shape))
        return f'NumericArray[{body}, "{kinds[a.dtype]}"]'

    def option_name(self, k: str) -> str:
        return k if k in SYMBOL_OPTIONS else string(k)

    def net(self, obj, extra: dict | None = None) -> str:
        from ..io.structure import CONSTRUCTORS

        name = type(obj).__name__
        rule = next(r for c, r in CONSTRUCTORS if isinstance(obj, c))
        try:
            args, options, arrays = rule(obj)
        except AttributeError:
            raise NotSupportedError(f"to_wolfram: the {name} does not keep the arguments that built it.") from None
        options = {**options, **(extra or {})}
        if name in ("NetEncoder", "NetDecoder"):
            items = [self.value(x, True) for x in args[0]]
            items += [f"{self.option_name(k)} -> {self.value(v, True)}" for k, v in options.items()]
            return f"{name}[{{{', '.join(items)}}}]"
        parts = [self.argument(obj, i, a) for i, a in enumerate(args)]
        parts += [f"{self.option_name(k)} -> {self.value(v, True)}" for k, v in options.items()]
        parts += [f"{string(k)} -> {array_text(t)}" for k, t in arrays.items() if t is not None]
        return f"{name}[{', '.join(parts)}]"

    def argument(self, obj, i: int, a) -> str:
        name = type(obj).__name__
        if i == 0 and name == "ElementwiseLayer":
            if isinstance(a, tuple) and len(a) == 2 and a[0] == "Power":  # ("Power", p): Wolfram's #^p &
                q = a[1]
                return f"#^{int(q) if float(q).is_integer() else real(float(q))} &"
            if a == "Square":
                return "#^2 &"
            if isinstance(a, str) and a not in _ELEMENTWISE_SYMBOLS:  # "ELU", "GELU", "ReLU", ...: a string
                return string(a)
        if i == 0 and name in ("ElementwiseLayer", "ThreadingLayer", "AggregationLayer"):
            if isinstance(a, str) and _IDENT.match(a):
                return str(a)
            if callable(a) and not isinstance(a, PureFunction) and id(a) not in self.function_names:
                raise NotSupportedError(
                    f"to_wolfram: the {name} holds the Python function {getattr(a, '__name__', repr(a))}, which has "
                    "no Wolfram form; give it as a named function or a pure function (from_wolfram(\"Tanh[#] &\")).")
        if name in ("NetGraph", "NetChain") and i == 0 and isinstance(a, dict):
            return "<|" + ", ".join(f"{self.value(k)} -> {self.value(x, True)}" for k, x in a.items()) + "|>"
        if name == "NetGraph" and i == 1:
            return "{" + ", ".join(self.edge(e) for e in a) + "}"
        return self.value(a, True)

    def edge(self, e) -> str:
        if isinstance(e, tuple):
            return " -> ".join(self.value(x) for x in e)
        return self.value(e)

    def state_object(self, obj) -> str:
        seed = getattr(obj, "_seed", {}) or {}
        net = self.net(obj.net)
        if not seed:
            return f"NetStateObject[{net}]"
        rules = ", ".join(f"{self.value(list(p))} -> {{{', '.join(real(x) for x in t.reshape(-1).tolist())}}}"
                          for p, t in seed.items())
        return f"NetStateObject[{net}, <|{rules}|>]"


def _is_constructed(v) -> bool:
    from ..coders.decoders import NetDecoder
    from ..coders.encoders import NetEncoder

    return isinstance(v, Net | NetEncoder | NetDecoder)


def _what(v) -> str:
    r = repr(v)
    return f"{type(v).__name__} {r if len(r) < 60 else r[:57] + '...'}"


def to_wolfram(obj) -> str:
    """Wolfram Language input form of a net, layer, operator, encoder, decoder, NetStateObject,
    options (a dict) or data: Wolfram's own constructors, arrays as options in full float32
    precision. `from_wolfram` reads it back to the same net.

    >>> to_wolfram(LinearLayer(2, Input=3))
    'LinearLayer[2, "Input" -> 3]'
    >>> to_wolfram({"MaxTrainingRounds": 5, "Dropout": 0.5})
    '{MaxTrainingRounds -> 5, "Dropout" -> 0.5}'
    """
    printer = Printer()
    extra = _inferred_input(obj)
    return printer.net(obj, extra) if extra else printer.value(obj)


def _inferred_input(obj) -> dict | None:
    """{"Input": shape} for a layer whose input a container inferred (a layer taken out of a chain),
    which its own arguments do not give; None otherwise."""
    from ..core.shapes import ArrayType
    from ..layers.base import Layer

    if not isinstance(obj, Layer) or "Input" not in obj.OPTIONS or "Input" in obj._given:
        return None
    t = obj.input_ports().get("Input")
    if not isinstance(t, ArrayType) or t.dims is None or t.integer:
        return None
    try:
        fresh = type(obj)(*obj._args, **obj._given)
    except (NetError, TypeError, ValueError):  # a layer that cannot be rebuilt without its arrays prints as it is
        return None
    if fresh.input_ports() == obj.input_ports():
        return None
    from ..core.symbols import Automatic

    dims = tuple(Automatic if d is None else d for d in t.dims)
    return {"Input": dims[0] if len(dims) == 1 and isinstance(dims[0], int) else dims}
