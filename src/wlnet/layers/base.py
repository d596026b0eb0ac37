"""What every layer shares: options checked once, named arrays, port types inferred by one rule,
the code that rebuilds it, and the module that runs it."""

from __future__ import annotations

import numpy as np
import torch

from ..coders.decoders import NetDecoder
from ..coders.encoders import NetEncoder
from ..core import options as O
from ..core.data import _all_finite
from ..core.errors import OptionError, ShapeError, where
from ..core.net import Net
from ..core.shapes import unify
from ..core.symbols import Automatic
from ..show import display


class LayerModule(torch.nn.Module):
    """Runs one layer: its arrays as parameters, its pure `run`, and, in an evaluation module
    (not trainable: the arrays never change), a cache for values derived from the arrays such as
    a kernel's packed weights."""

    def __init__(self, layer: Layer, trainable: bool):
        super().__init__()
        # a trainable module runs a copy of the layer without its arrays: it holds its own, and
        # the layer's (the net's) are not kept alive by it
        self.layer = layer._with_arrays(dict.fromkeys(layer._arrays)) if trainable and layer._arrays else layer
        self.cache = None if trainable else {}
        for name, t in layer._arrays.items():
            t = t.clone() if trainable else t
            self.register_parameter(name, torch.nn.Parameter(t, requires_grad=trainable))

    def forward(self, inputs: dict, states: dict, ctx) -> tuple[dict, dict]:
        return self.layer.run(self._parameters, inputs, states, ctx, self.cache)

    def extra_repr(self) -> str:
        return self.layer.name


class Layer(Net):
    """A layer: options checked at construction, arrays by Wolfram name, port types.

    Subclasses call `Layer.__init__` with their positional arguments, their options and their
    array names; set `_in` (and `encoders`); and define `_derive` (the output types and
    sizes that follow from the input types) and `forward` (or `run`, for state)."""

    OPTIONS: dict = {}  # option name → default, as Options(LayerClass) shows them

    def __init__(self, args: tuple = (), options: dict | None = None, arrays: tuple = ()):
        options = options or {}
        O.known(options, self.OPTIONS, self.name)
        self._args = args
        self._given = {k: v for k, v in options.items() if k not in arrays}
        self._arrays: dict[str, torch.Tensor | None] = dict.fromkeys(arrays)
        self._in: dict = {}
        self._out: dict = {}
        self.encoders = {}
        self.decoders = {}
        self._lr = self._parse_lr(options.get("LearningRateMultipliers", Automatic)) \
            if "LearningRateMultipliers" in self.OPTIONS else Automatic

    # ---- Net protocol ----
    def input_ports(self) -> dict:
        return dict(self._in)

    def output_ports(self) -> dict:
        return dict(self._out)

    def leaves(self) -> list:
        return [((), self)]

    def map_leaves(self, fn) -> Net:
        return fn((), self)

    def output_leaf(self, port: str):
        return self

    def build(self, trainable: bool) -> torch.nn.Module:
        return LayerModule(self, trainable)

    def infer(self, inputs: dict) -> Layer:
        new_in = dict(self._in)
        for port, t in inputs.items():
            if port in self._in and t.dims is not None:
                self._accept(port, t)
                new_in[port] = unify(t, self._in[port], "the preceding layer", f'{self.name} port "{port}"')
        if new_in == self._in:
            return self
        new = self._copy()
        new._in = new_in
        new._derive()
        return new

    def _accept(self, port: str, t) -> None:
        """Raise a ShapeError if type t can never feed `port` (wrong rank, reals for indices...)."""

    def _derive(self) -> None:
        """Set the output types (and sizes) that follow from the input types."""

    def run(self, arrays: dict, inputs: dict, states: dict, ctx, cache: dict | None) -> tuple[dict, dict]:
        """outputs, final states (see `runtime`); a layer without state runs `forward`."""
        return self.forward(arrays, inputs, ctx), {}

    def forward(self, arrays: dict, inputs: dict, ctx) -> dict:
        raise NotImplementedError

    def array_shapes(self) -> dict:
        """Array name → expected shape (None where not yet known)."""
        return {}

    def initial_array(self, name: str, shape: tuple):
        """This layer's own initial value for an array, or None for the method's rule."""
        return None

    def _copy(self) -> Layer:
        new = self._uncached_copy()
        new._arrays = dict(self._arrays)
        new._in = dict(self._in)
        new._out = dict(self._out)
        return new

    def _with_arrays(self, arrays: dict) -> Layer:
        new = self._copy()
        new._arrays.update(arrays)
        return new

    def learning_rate_multipliers(self) -> dict:
        """Array name → multiplier (1 where not set)."""
        lr = self._lr
        if lr is Automatic:
            return {a: 1.0 for a in self._arrays}
        if isinstance(lr, float):
            return {a: lr for a in self._arrays}
        return {a: lr.get(a, 1.0) for a in self._arrays}

    # ---- construction helpers ----
    def _parse_lr(self, value):
        if value is Automatic or value is None:
            return Automatic
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in self._arrays:
                    raise OptionError(
                        f"{self.name}: LearningRateMultipliers names {k!r}, which is not an array of this "
                        f"layer; the arrays are {', '.join(self._arrays)}."
                    )
                O.number(v, self.name, f"LearningRateMultipliers for {k!r}", low=0)
            return {k: float(v) for k, v in value.items()}
        try:
            return O.number(value, self.name, "LearningRateMultipliers", low=0)
        except OptionError:
            raise OptionError(
                f"{self.name}: LearningRateMultipliers must be Automatic, a non-negative number, or a dict "
                f"of array name → number, but was given {value!r}."
            ) from None

    def _array_option(self, name: str, value, expected: tuple) -> torch.Tensor:
        """An array given as an option, as a float32 tensor of the expected shape (None entries
        of `expected` are free)."""
        try:
            if isinstance(value, torch.Tensor):
                t = value.detach().to("cpu", torch.float32).clone()
            else:
                t = torch.from_numpy(np.array(value, dtype=np.float32))
        except (TypeError, ValueError):
            raise ShapeError(f"{where(self.name)}array {name} must be numeric, but was given {value!r}.") from None
        want = "×".join("k" if d is None else str(d) for d in expected)
        if t.ndim != len(expected) or any(d is not None and d != s for d, s in zip(expected, t.shape)):
            got = "×".join(str(s) for s in t.shape) or "a scalar"
            raise ShapeError(
                f"{where(self.name)}array {name} must have dimensions {want}, but was given an array of "
                f"dimensions {got}."
            )
        if not _all_finite(t):
            raise ShapeError(f"{where(self.name)}array {name} contains NaN or infinite values.")
        return t

    def _given_arrays(self, options: dict, shapes: dict) -> None:
        """Store the arrays given as options, checked against `shapes` (name → shape, None entries free)."""
        for name in self._arrays:
            value = options.get(name, Automatic)
            if value is not Automatic and value is not None:
                self._arrays[name] = self._array_option(name, value, shapes[name])

    def extract(self, spec):
        name = spec[0] if isinstance(spec, tuple) and len(spec) == 1 else spec
        if isinstance(name, str) and name in self._arrays:
            t = self._arrays[name]
            return None if t is None else t.numpy().copy()
        if isinstance(name, str) and name in self.state_ports():
            raise OptionError(
                f'{self.name}: "{name}" is a state port; read its final value with a NetGraph '
                f'NetPort edge or a NetStateObject.'
            )
        raise OptionError(
            f"NetExtract: {spec!r} is not an array of {self.name}; its arrays are {', '.join(self._arrays)}."
        )

    # ---- the code that rebuilds it, and display ----
    def _option_code(self) -> str:
        """The constructor's arguments as given (arrays left out)."""
        parts = [value_code(a) for a in self._args]
        parts += [f"{k}={value_code(v)}" for k, v in self._given.items()]
        return ", ".join(parts)

    def summary_code(self) -> str:
        return f"{self.name}({self._option_code()})"

    def input_form(self) -> str:
        parts = [self._option_code()]
        parts += [f"{name}={t.tolist()!r}" for name, t in self._arrays.items() if t is not None]
        return f"{self.name}({', '.join(p for p in parts if p)})"

    def __repr__(self) -> str:
        state = "initialized" if self.initialized() else "uninitialized"
        return f"{self.name}({self._option_code()})  <{state}; {display.ports_text(self)}; {display.arrays_text(self)}>"


def value_code(v) -> str:
    """Python code for an option value: encoders and decoders by their own code, Automatic and
    All by name, functions by name, containers element by element."""
    if isinstance(v, NetEncoder | NetDecoder | Net):
        return v.input_form()
    if isinstance(v, tuple):
        return "(" + ", ".join(value_code(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(value_code(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{value_code(k)}: {value_code(x)}" for k, x in v.items()) + "}"
    if callable(v) and hasattr(v, "__name__") and not isinstance(v, type):
        return v.__name__
    if isinstance(v, np.generic):
        return repr(v.item())
    return repr(v)


def _unset(value) -> bool:
    """An option left at its default (None or Automatic); arrays are never compared with ==."""
    return value is None or value is Automatic
