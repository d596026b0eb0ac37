"""What every layer shares: options, named arrays, port types, and the module that runs it."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..errors import OptionError, ShapeError, where
from ..net import STATES, Net
from ..symbols import Automatic


class LayerModule(torch.nn.Module):
    """Runs one layer: its arrays as parameters, its pure forward, and a private cache (for
    derived values such as fused weights, used only when the module is frozen)."""

    def __init__(self, layer: Layer, trainable: bool):
        super().__init__()
        self.layer = layer
        self.frozen = False
        self.need_cell = False  # a container consumes this layer's final CellState
        self.cache: dict = {}
        for name, t in layer._arrays.items():
            t = t.clone() if trainable else t
            self.register_parameter(name, torch.nn.Parameter(t, requires_grad=trainable))

    def forward(self, inputs: dict, ctx) -> dict:
        states = inputs.get(STATES)
        if states is not None:  # {(state port,): value} → the state ports themselves
            inputs = {p: v for p, v in inputs.items() if p != STATES}
            for (port,), v in states.items():
                inputs.setdefault(port, v)
        return self.layer.forward(self._parameters, inputs, ctx, self)

    def extra_repr(self) -> str:
        return self.layer.name


class Layer(Net):
    """A layer: options checked at construction, arrays by Wolfram name, port types."""

    OPTIONS: dict = {}  # option name → default, as Options(LayerClass) shows them

    def __init__(self):
        self._arrays: dict[str, torch.Tensor | None] = {}
        self._in: dict = {}
        self._out: dict = {}
        self._encoders = {}
        self._decoders = {}
        self._lr = Automatic  # LearningRateMultipliers

    # ---- Net interface ----
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

    def build_module(self, trainable: bool) -> torch.nn.Module:
        return LayerModule(self, trainable)

    def forward(self, arrays: dict, inputs: dict, ctx, module) -> dict:
        raise NotImplementedError

    def array_shapes(self) -> dict:
        """Array name → expected shape (None where not yet known)."""
        return {}

    def initial_array(self, name: str, shape: tuple):
        """This layer's own initial value for an array, or None for the method's rule."""
        return None

    def infer(self, inputs: dict) -> Layer:
        """This layer with its input port types unified with `inputs` ({port: ArrayType}),
        its output types and array shapes following. Raises ShapeError on a conflict."""
        return self

    def _copy(self) -> Layer:
        new = copy.copy(self)
        new.__dict__.pop("_module_cache", None)
        new.__dict__.pop("_reader_cache", None)
        new._arrays = dict(self._arrays)
        new._in = dict(self._in)
        new._out = dict(self._out)
        return new

    def _with_arrays(self, arrays: dict) -> Layer:
        new = self._copy()
        for name, t in arrays.items():
            new._arrays[name] = t
        return new

    def learning_rate_multipliers(self) -> dict:
        """Array name → multiplier (1 where not set)."""
        lr = self._lr
        if lr is Automatic:
            return {a: 1.0 for a in self._arrays}
        if isinstance(lr, int | float):
            return {a: float(lr) for a in self._arrays}
        return {a: float(lr.get(a, 1.0)) for a in self._arrays}

    # ---- construction helpers ----
    def _check_options(self, given: dict) -> None:
        unknown = [k for k in given if k not in self.OPTIONS]
        if unknown:
            raise OptionError(
                f"{self.name}: {unknown[0]!r} is not a known option; the options are "
                f"{', '.join(self.OPTIONS)}."
            )

    def _parse_lr(self, value):
        if value is Automatic or value is None:
            return Automatic
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in self._arrays:
                    raise OptionError(
                        f"{self.name}: LearningRateMultipliers names {k!r}, which is not an array of this "
                        f"layer; the arrays are {', '.join(self._arrays)}."
                    )
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                    raise OptionError(
                        f"{self.name}: LearningRateMultipliers for {k!r} must be a non-negative number, "
                        f"but was given {v!r}."
                    )
            return {k: float(v) for k, v in value.items()}
        raise OptionError(
            f"{self.name}: LearningRateMultipliers must be Automatic, a non-negative number, or a dict "
            f"of array name → number, but was given {value!r}."
        )

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
        if not bool(torch.isfinite(t).all()):
            raise ShapeError(f"{where(self.name)}array {name} contains NaN or infinite values.")
        return t

    def _extract(self, spec):
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

    def input_form(self) -> str:
        """Python code that rebuilds this layer, arrays included."""
        parts = [self._option_code()]
        for name, t in self._arrays.items():
            if t is not None:
                parts.append(f"{name}={t.tolist()!r}")
        return f"{self.name}({', '.join(p for p in parts if p)})"

    # ---- display ----
    def _option_code(self) -> str:
        """The arguments of the constructor call that rebuilds this layer (without arrays)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        state = "initialized" if self.initialized() else "uninitialized"
        ins = ", ".join(f"{p}: {_short(t)}" for p, t in self._in.items())
        outs = ", ".join(f"{p}: {_short(t)}" for p, t in self._out.items())
        return f"{self.name}({self._option_code()})  <{state}; {ins} → {outs}>"


def _unset(value) -> bool:
    """An option left at its default (None or Automatic); arrays are never compared with ==."""
    return value is None or value is Automatic


def _short(t) -> str:
    from ..shapes import describe

    return describe(t)
