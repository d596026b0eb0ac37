"""Pure functions (`Tanh[#] + #^2 &`) as tensor functions, and the symbols that name wlnet's
values: the arithmetic and elementwise functions a pure function may use, and `Symbol`."""

from __future__ import annotations

import math

import torch

from ..core.errors import NotSupportedError
from .syntax import Expr, Slot, Sym


class Symbol(str):
    """A bare Wolfram symbol used as a value (a class label such as Less, a function name such as
    Tanh): equal to the string of its name, written back without quotes.

    >>> Symbol("Less") == "Less"
    True
    """

    __slots__ = ()


def _ramp(x):
    return torch.relu(x) if isinstance(x, torch.Tensor) else max(x, 0.0)


def _sigmoid(x):
    return torch.sigmoid(x) if isinstance(x, torch.Tensor) else 1.0 / (1.0 + math.exp(-x))


def _erf(x):
    return torch.erf(x) if isinstance(x, torch.Tensor) else math.erf(x)


def _unary(torch_fn, math_fn):
    def f(x):
        return torch_fn(x) if isinstance(x, torch.Tensor) else math_fn(x)
    return f


def _sign(x):
    return torch.sign(x) if isinstance(x, torch.Tensor) else float((x > 0) - (x < 0))


# name → (arity, function of tensors or Python numbers); the elementwise functions a pure function may use
UNARY = {
    "Tanh": _unary(torch.tanh, math.tanh), "LogisticSigmoid": _sigmoid, "Ramp": _ramp,
    "Sin": _unary(torch.sin, math.sin), "Cos": _unary(torch.cos, math.cos), "Tan": _unary(torch.tan, math.tan),
    "Exp": _unary(torch.exp, math.exp), "Log": _unary(torch.log, math.log), "Sqrt": _unary(torch.sqrt, math.sqrt),
    "Abs": _unary(torch.abs, abs), "Sinh": _unary(torch.sinh, math.sinh), "Cosh": _unary(torch.cosh, math.cosh),
    "ArcTan": _unary(torch.atan, math.atan), "ArcSin": _unary(torch.asin, math.asin),
    "ArcCos": _unary(torch.acos, math.acos), "ArcTanh": _unary(torch.atanh, math.atanh),
    "ArcSinh": _unary(torch.asinh, math.asinh), "ArcCosh": _unary(torch.acosh, math.acosh), "Erf": _erf,
    "Sign": _sign, "Floor": _unary(torch.floor, math.floor), "Ceiling": _unary(torch.ceil, math.ceil),
    "Round": _unary(torch.round, round),
}


def _as_tensor(x, like):
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _extremum(tensor_fn, py_fn):
    def f(*xs):
        ts = [x for x in xs if isinstance(x, torch.Tensor)]
        if not ts:
            return py_fn(xs)
        out = _as_tensor(xs[0], ts[0])
        for x in xs[1:]:
            out = tensor_fn(out, _as_tensor(x, ts[0]))
        return out
    return f


def _plus(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _times(*xs):
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def _power(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.pow(a, b)
    if isinstance(a, int) and isinstance(b, int) and abs(b) > 64 and abs(a) > 1:  # a real, not a huge integer
        try:
            return float(a) ** b
        except OverflowError:
            return math.inf if a > 0 or b % 2 == 0 else -math.inf
    return a ** b


ARITHMETIC = {
    "Plus": _plus, "Times": _times, "Subtract": lambda a, b: a - b, "Divide": lambda a, b: a / b,
    "Minus": lambda a: -a, "Power": _power,
    "Max": _extremum(torch.maximum, max), "Min": _extremum(torch.minimum, min),
}
CONSTANTS = {"Pi": math.pi, "E": math.e, "Degree": math.pi / 180}
ELEMENTWISE_NAMES = {"ReLU": "Ramp", "Sigmoid": "LogisticSigmoid", "Tanh": "Tanh"}  # strings Wolfram accepts


def check_body(body, where: str) -> int:
    """The number of slots the body of a pure function uses; a NotSupportedError for a head
    that is not arithmetic or an elementwise function."""
    if isinstance(body, Slot):
        return body.n
    if isinstance(body, bool) or body is None:
        raise NotSupportedError(f"{where}: a pure function may use numbers, #, #1, #2, ..., arithmetic and "
                                f"elementwise functions, but it contains {body!r}.")
    if isinstance(body, int | float):
        return 0
    if isinstance(body, Sym):
        if body.name in CONSTANTS:
            return 0
        raise NotSupportedError(f"{where}: the symbol {body.name} in a pure function is not a number; a pure "
                                "function for a layer may use #, #1, #2, ..., numbers, Pi and E.")
    if isinstance(body, Expr) and isinstance(body.head, Sym):
        name = body.head.name
        if name not in ARITHMETIC and name not in UNARY:
            raise NotSupportedError(
                f"{where}: {name} is not supported in a pure function; the functions are "
                f"{', '.join(list(ARITHMETIC) + list(UNARY))}.")
        if name in UNARY and len(body.args) != 1:
            raise NotSupportedError(f"{where}: {name} takes one argument in a pure function, but was given "
                                    f"{len(body.args)}.")
        return max((check_body(a, where) for a in body.args), default=0)
    raise NotSupportedError(f"{where}: {body!r} is not supported in a pure function.")


class PureFunction:
    """A Wolfram pure function of tensors, e.g. from `Tanh[#] + #^2 &`: called with tensors (or
    numbers) it applies the arithmetic and elementwise functions element by element.

    >>> from wlnet.wolfram import from_wolfram
    >>> f = from_wolfram("#1 * #2 - 1 &")
    >>> f(3.0, 2.0)
    5.0
    """

    def __init__(self, body, source: str):
        self.body = body
        self.arity = check_body(body, "Function")
        self.source = source
        self.__name__ = source

    def __call__(self, *args):
        if len(args) < self.arity:
            raise NotSupportedError(f"the pure function {self.source} uses #{self.arity}, but was given "
                                    f"{len(args)} argument{'s' if len(args) != 1 else ''}.")
        return self._eval(self.body, args)

    def _eval(self, e, args):
        if isinstance(e, Slot):
            return args[e.n - 1]
        if isinstance(e, int | float):
            return e
        if isinstance(e, Sym):
            return CONSTANTS[e.name]
        name = e.head.name
        vals = [self._eval(a, args) for a in e.args]
        return (UNARY.get(name) or ARITHMETIC[name])(*vals)

    def __repr__(self) -> str:
        return self.source
