"""LinearLayer, ElementwiseLayer, SoftmaxLayer, DropoutLayer."""

from __future__ import annotations

import torch

from ..core import options as O
from ..core.data import Seq, note, noted
from ..core.errors import OptionError, ShapeError, where
from ..core.shapes import ANY, ArrayType, Real, describe
from ..core.symbols import Automatic
from .base import Layer, _unset


def _map(x, fn):
    """Apply fn to the data of a value, keeping a sequence's lengths."""
    return Seq(fn(x.data), x.lengths) if isinstance(x, Seq) else fn(x)


def _input_type(layer: Layer, spec) -> ArrayType:
    if spec is Automatic or spec is None:
        return ANY
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Real(O.positive_int(spec, layer.name, "Input", allow_automatic=False))
    if isinstance(spec, tuple | list):
        return Real(*[None if d is Automatic else d for d in spec])
    raise ShapeError(f"{where(layer.name)}option Input must be a size or a tuple of sizes, but was given {spec!r}.")


class LinearLayer(Layer):
    """A trainable affine layer: a size-k vector x → W·x + b, a size-n vector.

    Arrays: "Weights" (n×k), "Biases" (n). k is inferred from the input.

    >>> NetInitialize(LinearLayer(2, Input=3))([1, 2, 3])  # doctest: +SKIP
    """

    OPTIONS = {"Input": Automatic, "Weights": Automatic, "Biases": Automatic, "LearningRateMultipliers": Automatic}

    def __init__(self, n, **options):
        super().__init__((n,), options, ("Weights", "Biases"))
        self.n = O.positive_int(n, self.name, "n (the output size)", allow_automatic=False)
        spec = options.get("Input", Automatic)
        if isinstance(spec, tuple | list) and len(spec) != 1:  # (checked before its sizes: it may be huge)
            shape = "×".join(str(d)[:12] for d in spec[:4]) + ("×..." if len(spec) > 4 else "")
            raise OptionError(
                f"{self.name}: option Input must be a size k (a length-k vector), but was given "
                + (f"the shape {shape}, an array of rank {len(spec)}" if spec else "the shape (), a real number")
                + ": input of any other rank is not supported yet."
                + (f" To apply the layer to every element of a sequence, use NetMapOperator(LinearLayer({self.n}))."
                   if spec and spec[0] == "Varying" else
                   f" Flatten the array first, as Wolfram's LinearLayer does: NetChain([FlattenLayer(), "
                   f"LinearLayer({self.n})], Input=...)." if len(spec) > 1 else "")
            )
        in_type = _input_type(self, spec)
        if in_type.dims is None:
            in_type = Real(None)
        k = in_type.dims[0] if in_type.rank == 1 else None
        if not _unset(options.get("Weights")):
            w = self._array_option("Weights", options["Weights"], (self.n, k))
            k = w.shape[1]
            self._arrays["Weights"] = w
        if not _unset(options.get("Biases")):
            self._arrays["Biases"] = self._array_option("Biases", options["Biases"], (self.n,))
        self._in = {"Input": Real(k)}
        self._out = {"Output": Real(self.n)}

    def array_shapes(self) -> dict:
        k = self._in["Input"].dims[0]
        return {"Weights": (self.n, k) if k is not None else None, "Biases": (self.n,)}

    def _accept(self, port, t) -> None:
        if len(t.dims) != 1:
            hint = f" To apply it to every element of a sequence, use NetMapOperator(LinearLayer({self.n}))." \
                if len(t.dims) == 2 else ""
            raise ShapeError(f'{where(self.name, "Input")}the layer expects a vector, but its input is '
                             f"{describe(t)}.{hint}")

    def forward(self, arrays, inputs, ctx):
        return {"Output": torch.nn.functional.linear(inputs["Input"], arrays["Weights"], arrays["Biases"])}


class _PassThrough(Layer):
    """A layer whose output has its input's type."""

    def _init_ports(self, spec):
        self._in = {"Input": _input_type(self, spec)}
        self._derive()

    def _derive(self) -> None:
        self._out = {"Output": ArrayType(self._in["Input"].dims, False, None)}


_SELU_SCALE, _SELU_NEGATIVE = 1.0507009873554805, 1.758099340847161  # Wolfram's: λ and λα


def _elu(x):
    return torch.where(x >= 0, x, torch.expm1(torch.clamp(x, max=0)))  # (the clamp keeps exp finite on x ≥ 0)


def _selu(x):
    return torch.where(x >= 0, _SELU_SCALE * x, _SELU_NEGATIVE * torch.expm1(torch.clamp(x, max=0)))


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x * 0.7071067811865476))


def _swish(x):
    return x * torch.sigmoid(x)


def _hard_swish(x):
    return x * torch.clamp(x + 3, 0, 6) / 6


def _mish(x):
    return x * torch.tanh(torch.nn.functional.softplus(x))


def _soft_sign(x):
    return x / (1 + torch.abs(x))


def _soft_plus(x):
    return torch.nn.functional.softplus(x)  # log(e^x + 1), without overflow for large x


def _hard_tanh(x):
    return torch.clamp(x, -1, 1)


def _hard_sigmoid(x):
    return torch.clamp((x + 1) / 2, 0, 1)


def _square(x):
    return x * x


# Wolfram's names for ElementwiseLayer["name"], and the symbols f of ElementwiseLayer[f]
_FUNCTIONS = {
    "Tanh": torch.tanh,
    "LogisticSigmoid": torch.sigmoid,
    "Sigmoid": torch.sigmoid,
    "Ramp": torch.relu,
    "ReLU": torch.relu,
    "RectifiedLinearUnit": torch.relu,
    "ELU": _elu,
    "ExponentialLinearUnit": _elu,
    "SELU": _selu,
    "ScaledExponentialLinearUnit": _selu,
    "GELU": _gelu,
    "GaussianErrorLinearUnit": _gelu,
    "Swish": _swish,
    "HardSwish": _hard_swish,
    "Mish": _mish,
    "SoftSign": _soft_sign,
    "SoftPlus": _soft_plus,
    "HardTanh": _hard_tanh,
    "HardSigmoid": _hard_sigmoid,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Abs": torch.abs,
    "Square": _square,
}


class _Power:
    """x ↦ x^p, the function of ElementwiseLayer(("Power", p)) (Wolfram: ElementwiseLayer[#^p &])."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, x):
        return x * x if self.p == 2 else torch.pow(x, self.p)


class ElementwiseLayer(_PassThrough):
    """Applies f to every element: f is a Wolfram name ("Tanh", "LogisticSigmoid" or "Sigmoid",
    "Ramp" or "ReLU", "ELU", "SELU", "GELU", "Swish", "HardSwish", "Mish", "SoftSign", "SoftPlus",
    "HardTanh", "HardSigmoid", "Sin", "Cos", "Exp", "Log", "Sqrt", "Abs", "Square"; the long names
    "RectifiedLinearUnit", "ExponentialLinearUnit", "ScaledExponentialLinearUnit",
    "GaussianErrorLinearUnit" too), ("Power", p) for x^p, or a Python function of a torch tensor.

    >>> ElementwiseLayer("Tanh", Input=2)([0.0, 0.0])
    [0.0, 0.0]
    """

    OPTIONS = {"Input": Automatic}

    def __init__(self, f, **options):
        if isinstance(f, list):
            f = tuple(f)
        super().__init__((f,), options)
        if isinstance(f, str):
            if f not in _FUNCTIONS:
                raise OptionError(
                    f"{self.name}: {f!r} is not a known function; use one of {', '.join(_FUNCTIONS)}, "
                    '("Power", p) or a Python function of a tensor.'
                )
            self._fn = _FUNCTIONS[f]
        elif isinstance(f, tuple) and len(f) == 2 and f[0] == "Power":
            p = f[1]
            if isinstance(p, bool) or not isinstance(p, int | float) or p != p:
                raise OptionError(f'{self.name}: ("Power", p) needs a real exponent p, but was given {p!r}.')
            self._fn = _Power(float(p))
        elif callable(f):
            self._fn = f
        else:
            raise OptionError(f"{self.name}: expected a function name, (\"Power\", p) or a callable, but was given "
                              f"{f!r}.")
        self.f = f
        self._init_ports(options.get("Input", Automatic))

    def forward(self, arrays, inputs, ctx):
        return {"Output": _map(inputs["Input"], self._fn)}


class SoftmaxLayer(_PassThrough):
    """Normalizes the last dimension into probabilities: exp(x_i) / Σ_j exp(x_j).

    >>> [round(p, 3) for p in SoftmaxLayer()([0.0, 0.0])]
    [0.5, 0.5]
    """

    OPTIONS = {"Input": Automatic}

    def __init__(self, *args, **options):
        if args:
            raise OptionError(f"SoftmaxLayer: takes no positional arguments (only the option Input=...), but was "
                              f"given {', '.join(repr(a) for a in args)}.")
        super().__init__((), options)
        self._init_ports(options.get("Input", Automatic))

    def forward(self, arrays, inputs, ctx):
        return {"Output": _map(inputs["Input"], softmax)}


def softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax along the last axis; the result carries its input (`with_logits`), from which a
    cross-entropy takes log p as one log_softmax: the same values in fewer operations."""
    p = torch.softmax(x, -1)
    note(p, "_wlnet_logits", x)
    return p


def with_logits(p: torch.Tensor) -> torch.Tensor | None:
    """The input of the `softmax` that made p, or None (p made otherwise, or changed since in place)."""
    return noted(p, "_wlnet_logits")


class DropoutLayer(_PassThrough):
    """In training, sets each element to 0 with probability p and scales the rest by 1/(1−p);
    otherwise passes its input through unchanged.

    >>> DropoutLayer(0.5, Input=4)([1.0, 2.0, 3.0, 4.0])  # evaluation: unchanged
    [1.0, 2.0, 3.0, 4.0]
    """

    OPTIONS = {"Input": Automatic}

    def __init__(self, p=0.5, **options):
        super().__init__((p,) if p != 0.5 else (), options)
        self.p = O.probability(p, self.name, "the dropout probability")
        self._init_ports(options.get("Input", Automatic))

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        if not ctx.train or self.p == 0:
            return {"Output": x}
        keep = 1.0 - self.p

        def drop(t):
            mask = torch.empty_like(t).bernoulli_(keep, generator=ctx.generator)
            return t * mask / keep

        return {"Output": _map(x, drop)}
