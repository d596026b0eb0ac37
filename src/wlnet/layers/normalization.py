"""NormalizationLayer (statistics over levels of each example) and BatchNormalizationLayer
(statistics over the batch, moving averages for evaluation).

  NormalizationLayer       y = (x − μ) / √(σ² + ε) · γ + β    μ, σ² over the aggregation levels
                           of each example ("RMS": y = x / √(mean x² + ε) · γ + β)
  BatchNormalizationLayer  y = (x − μ_c) / √(σ²_c + ε) · γ_c + β_c  per channel c, μ_c and σ²_c
                           over the batch and every other level in training, the moving ones
                           (m ← momentum·m + (1 − momentum)·batch statistic) in evaluation

σ² is the biased variance (the mean of squared deviations; "Unbiased" -> True divides by n − 1).
A ragged sequence counts its real steps only.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ..core import options as O
from ..core.data import Seq
from ..core.errors import InputError, OptionError, ShapeError, where
from ..core.shapes import ANY, VARYING, ArrayType, describe
from ..core.symbols import Automatic
from .base import Layer, _unset
from .shape import _input_type


def _levels(spec, rank: int, who: str, what: str) -> list:
    """A level spec (n, slice(a, b) for a;;b, slice(a, None) for a;;All, or a list) → sorted
    0-based levels of an example of this rank; negative levels count from the end."""
    def one(n):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n == 0:
            raise OptionError(f"{where(who)}{what} must be non-zero integers (1 the first level, -1 the last), a "
                              f"slice or a list, but contain {n!r}.")
        p = n - 1 if n > 0 else rank + n
        if not 0 <= p < rank:
            raise ShapeError(f'{where(who, "Input")}{what} name level {n}, but the input has rank {rank}.')
        return p

    if isinstance(spec, slice):
        a = 0 if spec.start is None else one(spec.start) if rank else spec.start - 1
        b = rank - 1 if spec.stop is None else one(spec.stop)
        return list(range(a, b + 1))
    if isinstance(spec, list | tuple):
        return sorted({one(n) for n in spec})
    return [one(spec)]


def _check_levels_spec(spec, who: str, what: str) -> None:
    """Checked once at construction, before the input's rank is known."""
    parts = [spec.start, spec.stop] if isinstance(spec, slice) else list(spec) if isinstance(spec, list | tuple) \
        else [spec]
    if isinstance(spec, slice) and spec.step not in (None, 1):
        raise OptionError(f"{where(who)}{what} cannot have a step, but were given {spec!r}.")
    for n in parts:
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n == 0):
            raise OptionError(f"{where(who)}{what} must be non-zero integers (1 the first level, -1 the last), a "
                              f"slice or a list, but were given {spec!r}.")


def _mask_of(x, d: torch.Tensor) -> torch.Tensor | None:
    """(B, T, 1, ...) real-step weights of a ragged sequence, broadcastable to d; None otherwise."""
    if not isinstance(x, Seq) or x.lengths is None:
        return None
    m = x.mask().to(d.dtype)
    return m.view(*m.shape, *(1,) * (d.ndim - 2))


class NormalizationLayer(Layer):
    """Normalizes each example over its aggregation levels, then scales and shifts it with
    trainable arrays at its scaling levels: NormalizationLayer() aggregates levels 2;;All
    (`slice(2, None)`) and scales level 1 (each row of a matrix normalized, one scale per row);
    NormalizationLayer(levels, scaling) names both (scaling "Complement": the levels not
    aggregated, the default; "Same": the aggregated ones; or levels). On a vector the default
    normalizes the vector and scales each component. NormalizationLayer(2, "Same") on a
    sequence of vectors is a layer norm of each step.

    Options: "Epsilon" (0.001), Method ("Standardize" or "RMS"), "Unbiased" (False), Input,
    "Scaling" and "Biases" (arrays, or None for neither), LearningRateMultipliers.

    Ports: "Input" (an array or a sequence), "Output" (its dimensions).

    >>> net = NetInitialize(NormalizationLayer(Input=3))
    >>> [round(v, 3) for v in net([1.0, 2.0, 3.0])]
    [-1.224, 0.0, 1.224]
    """

    OPTIONS = {"Input": Automatic, "Epsilon": 0.001, "Method": "Standardize", "Unbiased": False,
               "Scaling": Automatic, "Biases": Automatic, "LearningRateMultipliers": Automatic}

    def __init__(self, levels=slice(2, None), scaling="Complement", **options):
        default = isinstance(levels, slice) and levels == slice(2, None)
        args = () if default and scaling == "Complement" else (levels,) if scaling == "Complement" else \
            (levels, scaling)
        names = tuple(a for a in ("Scaling", "Biases") if options.get(a, Automatic) is not None)
        super().__init__(args, options, names)
        _check_levels_spec(levels, self.name, "the aggregation levels")
        if not (isinstance(scaling, str) and scaling in ("Complement", "Same")):
            if isinstance(scaling, str):
                raise OptionError(f'{self.name}: the scaling levels must be "Complement", "Same" or levels, but were '
                                  f"given {scaling!r}.")
            _check_levels_spec(scaling, self.name, "the scaling levels")
        self.levels, self.scaling, self._default = levels, scaling, default
        self.eps = O.positive_number(options.get("Epsilon", 0.001), self.name, "Epsilon", allow_automatic=False)
        self.method = O.one_of(options.get("Method", "Standardize"), ("Standardize", "RMS"), self.name, "Method")
        unbiased = options.get("Unbiased", False)
        if not isinstance(unbiased, bool):
            raise OptionError(f"{self.name}: Unbiased must be True or False, but was given {unbiased!r}.")
        self.unbiased = unbiased
        self._in = {"Input": _input_type(self, options.get("Input", Automatic))}
        want = self._array_dims()
        for a in self._arrays:
            v = options.get(a, Automatic)
            if not _unset(v):  # checked against the input once its dimensions are known
                self._arrays[a] = self._array_option(a, v, want if want is not None else (None,) * np.ndim(v))
        self._derive()

    def _plan(self, rank: int) -> tuple[list, list]:
        """(aggregated levels, scaled levels), 0-based, for an input of this rank."""
        if rank == 1 and self._default:
            return [0], [0]  # a vector: normalized whole, a scale per component
        agg = _levels(self.levels, rank, self.name, "the aggregation levels")
        if not agg:
            raise ShapeError(f'{where(self.name, "Input")}the aggregation levels {self.levels!r} name no level of an '
                             f"input of rank {rank}.")
        if self.scaling == "Complement":
            scale = [i for i in range(rank) if i not in agg]
        elif self.scaling == "Same":
            scale = agg
        else:
            scale = _levels(self.scaling, rank, self.name, "the scaling levels")
        return agg, scale

    def _array_dims(self) -> tuple | None:
        t = self._in["Input"]
        if t.dims is None or any(d is None for d in t.dims):
            return None
        _, scale = self._plan(len(t.dims))
        return tuple(t.dims[i] for i in scale)

    def _accept(self, port, t) -> None:
        if t.dims is None:
            return
        if not t.dims:
            raise ShapeError(f'{where(self.name, "Input")}the layer expects an array, but its input is {describe(t)}.')
        _, scale = self._plan(len(t.dims))
        if 0 in scale and t.dims[0] == VARYING:
            raise ShapeError(f'{where(self.name, "Input")}its input is {describe(t)}, and a scale per step of a '
                             "sequence of varying length cannot be learned; scale the elements instead, e.g. "
                             'NormalizationLayer(2, "Same") for each step normalized over its vector.')

    def _derive(self) -> None:
        t = self._in["Input"]
        self._accept("Input", t)
        self._out = {"Output": ANY if t.dims is None else ArrayType(t.dims)}
        want = self._array_dims()
        if want is not None:
            for a, v in self._arrays.items():
                if v is not None and tuple(v.shape) != want:
                    raise ShapeError(f"{where(self.name)}array {a} has dimensions {tuple(v.shape)}, but the input "
                                     f"{describe(t)} needs {want}.")

    def array_shapes(self) -> dict:
        dims = self._array_dims()
        return dict.fromkeys(self._arrays, dims)

    def initial_array(self, name, shape):
        return torch.ones(shape) if name == "Scaling" else torch.zeros(shape)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = x.data if isinstance(x, Seq) else x
        rank = d.ndim - 1
        agg, scale = self._plan(rank)
        axes = [a + 1 for a in agg]
        if self.method == "Standardize" and not self.unbiased and 0 not in agg and agg == list(range(agg[0], rank)):
            # the trailing levels: torch's layer_norm, its affine part where the scale is on those levels
            same = scale == agg
            y = F.layer_norm(d, d.shape[axes[0]:], arrays.get("Scaling") if same else None,
                             arrays.get("Biases") if same else None, self.eps)
            if not same:
                y = self._affine(y, arrays, scale)
            if isinstance(x, Seq) and x.lengths is not None:
                y = y * _mask_of(x, d)
            return {"Output": Seq(y, x.lengths) if isinstance(x, Seq) else y}
        m = _mask_of(x, d) if 0 in agg else None
        if m is None:
            count = torch.tensor(float(torch.Size([d.shape[a] for a in axes]).numel()), dtype=d.dtype)
            weights = None
        else:
            weights = m.expand_as(d)
            count = weights.sum(axes, keepdim=True)
        if self.method == "RMS":
            sq = d.square() if weights is None else d.square() * weights
            y = d * torch.rsqrt(sq.sum(axes, keepdim=True) / count + self.eps)
        else:
            s = d.sum(axes, keepdim=True) if weights is None else (d * weights).sum(axes, keepdim=True)
            mu = s / count
            dev = d - mu
            sq = dev.square() if weights is None else dev.square() * weights
            n = count - 1 if self.unbiased else count
            if self.unbiased and float(torch.as_tensor(n).min()) <= 0:
                raise InputError(f'{where(self.name, "Input")}"Unbiased" -> True needs at least 2 values to '
                                 "aggregate.")
            y = dev * torch.rsqrt(sq.sum(axes, keepdim=True) / n + self.eps)
        y = self._affine(y, arrays, scale)
        if m is not None or isinstance(x, Seq) and x.lengths is not None:
            y = y * (m if m is not None else _mask_of(x, d))
        return {"Output": Seq(y, x.lengths) if isinstance(x, Seq) else y}


    @staticmethod
    def _affine(y, arrays, scale):
        """y · γ + β, the arrays spread over the scaling levels (0-based) of y (B, ...)."""
        shape = [1] * y.ndim
        for i in scale:
            shape[i + 1] = y.shape[i + 1]
        if "Scaling" in arrays:
            y = y * arrays["Scaling"].reshape(shape)
        if "Biases" in arrays:
            y = y + arrays["Biases"].reshape(shape)
        return y


class BatchNormalizationLayer(Layer):
    """Normalizes each channel over the batch: in training with the batch's mean and variance
    (over the examples and every level but the channel's, a ragged sequence's real steps only),
    which update the arrays "MovingMean" and "MovingVariance" (m ← Momentum·m + (1 − Momentum)·
    batch value, the biased variance); in evaluation with those moving values. Then a trainable
    scale and bias per channel. The channel is level 1 ("Interleaving" -> False, as for c×L
    arrays) or the last level ("Interleaving" -> True, a sequence of vectors).

    Options: "Epsilon" (0.001), "Momentum" (0.9), "Interleaving" (False), Input, the arrays
    "Scaling", "Biases", "MovingMean", "MovingVariance", LearningRateMultipliers (the moving
    arrays are not trained: their multiplier is 0).

    Ports: "Input", "Output" (its dimensions).

    >>> net = NetInitialize(BatchNormalizationLayer(Input=2))
    >>> net([1.0, 2.0])  # evaluation: moving mean 0 and variance 1
    [0.9995..., 1.9990...]
    """

    OPTIONS = {"Input": Automatic, "Epsilon": 0.001, "Momentum": 0.9, "Interleaving": False,
               "Scaling": Automatic, "Biases": Automatic, "MovingMean": Automatic, "MovingVariance": Automatic,
               "LearningRateMultipliers": Automatic}
    ARRAYS = ("Scaling", "Biases", "MovingMean", "MovingVariance")

    def __init__(self, **options):
        super().__init__((), options, self.ARRAYS)
        self.eps = O.positive_number(options.get("Epsilon", 0.001), self.name, "Epsilon", allow_automatic=False)
        mom = options.get("Momentum", 0.9)
        if isinstance(mom, bool) or not isinstance(mom, numbers.Real) or not 0 <= mom <= 1:
            raise OptionError(f"{self.name}: Momentum must be a number between 0 and 1, but was given {mom!r}.")
        self.momentum = float(mom)
        inter = options.get("Interleaving", False)
        if not isinstance(inter, bool):
            raise OptionError(f"{self.name}: Interleaving must be True or False, but was given {inter!r}.")
        self.interleaving = inter
        self._in = {"Input": _input_type(self, options.get("Input", Automatic))}
        self._given_arrays(options, dict.fromkeys(self.ARRAYS, (self._channels(),)))
        self._derive()

    def _channels(self) -> int | None:
        t = self._in["Input"]
        if t.dims is None or not t.dims:
            return None
        c = t.dims[-1] if self.interleaving else t.dims[0]
        return c if isinstance(c, int) else None

    def _accept(self, port, t) -> None:
        if t.dims is None:
            return
        if not t.dims:
            raise ShapeError(f'{where(self.name, "Input")}the layer expects an array of rank at least 1, but its input '
                             f"is {describe(t)}.")
        if not self.interleaving and t.dims[0] == VARYING:
            raise ShapeError(f'{where(self.name, "Input")}its input is {describe(t)}; with "Interleaving" -> False the '
                             'channels are its first level, which varies. Use "Interleaving" -> True for a sequence '
                             "of vectors.")

    def _derive(self) -> None:
        t = self._in["Input"]
        self._accept("Input", t)
        self._out = {"Output": ANY if t.dims is None else ArrayType(t.dims)}
        c = self._channels()
        for a, v in self._arrays.items():
            if v is not None and c is not None and tuple(v.shape) != (c,):
                raise ShapeError(f"{where(self.name)}array {a} has dimensions {tuple(v.shape)}, but the input "
                                 f"{describe(t)} has {c} channels.")

    def array_shapes(self) -> dict:
        c = self._channels()
        return dict.fromkeys(self.ARRAYS, None if c is None else (c,))

    def initial_array(self, name, shape):
        return torch.ones(shape) if name in ("Scaling", "MovingVariance") else torch.zeros(shape)

    def learning_rate_multipliers(self) -> dict:
        lr = super().learning_rate_multipliers()
        return {a: (0.0 if a.startswith("Moving") else f) for a, f in lr.items()}

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = x.data if isinstance(x, Seq) else x
        if d.ndim < 2:
            raise InputError(f'{where(self.name, "Input")}the layer expects an array of rank at least 1.')
        ch = d.ndim - 1 if self.interleaving else 1
        shape = [1] * d.ndim
        shape[ch] = d.shape[ch]
        axes = [a for a in range(d.ndim) if a != ch]
        if ctx.train:
            m = _mask_of(x, d)
            if m is None:
                mean = d.mean(axes, keepdim=True)
                var = (d - mean).square().mean(axes, keepdim=True)
            else:
                w = m.expand_as(d)
                count = w.sum(axes, keepdim=True)
                mean = (d * w).sum(axes, keepdim=True) / count
                var = ((d - mean).square() * w).sum(axes, keepdim=True) / count
            with torch.no_grad():
                for name, v in (("MovingMean", mean), ("MovingVariance", var)):
                    arr = arrays[name]
                    arr.mul_(self.momentum).add_(v.detach().reshape(-1).to(arr.dtype), alpha=1 - self.momentum)
        else:
            mean = arrays["MovingMean"].reshape(shape)
            var = arrays["MovingVariance"].reshape(shape)
        y = (d - mean) * torch.rsqrt(var + self.eps) * arrays["Scaling"].reshape(shape) + \
            arrays["Biases"].reshape(shape)
        m = _mask_of(x, d)
        if m is not None:
            y = y * m
        return {"Output": Seq(y, x.lengths) if isinstance(x, Seq) else y}
