"""Loss layers and the losses NetTrain and NetMeasurements attach: one implementation.

Every loss is a mean of per-position terms, taken per example (B,): over every element of an
example's input, or over its real steps only for a ragged sequence. Per position:

  MeanSquaredLoss                   (x − t)²
  MeanAbsoluteLoss                  |x − t|
  CrossEntropyLoss "Index"          −log p_t              (p a probability vector, t a class)
  CrossEntropyLoss "Probabilities"  −Σ_i t_i log p_i      (t a probability vector)
  CrossEntropyLoss "Binary"         −(t log p + (1 − t) log(1 − p))   (p, t numbers in [0, 1])

Probabilities are clamped to at least 1e-7 before the log. Where p is the output of a
SoftmaxLayer (`basic.with_logits`), log p is the log_softmax of the layer's input, clamped alike:
the same value, in fewer operations. A cross-entropy whose input is not
made of probabilities (entries outside [0, 1], or vectors that do not sum to 1) is an error,
not a clamped log: the net needs a SoftmaxLayer (or a LogisticSigmoid for "Binary") before it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..core.data import Seq
from ..core.errors import InputError, OptionError, ShapeError, where
from ..core.shapes import ANY, SCALAR, VARYING, ArrayType, Index, Real, describe, parse_sequence_shape, unify
from ..core.symbols import Automatic
from .base import Layer
from .basic import with_logits

EPS = 1e-7  # probabilities are clamped to at least this before the log
FORMS = ("Index", "Probabilities", "Binary")
KINDS = ("MeanSquaredLoss", "MeanAbsoluteLoss", "CrossEntropyLoss")
_RANGE_TOL = 1e-4  # how far outside [0, 1] a probability may lie (rounding)
_SUM_TOL = 1e-3  # how far from 1 a probability vector may sum (float32 rounding over many classes)


def _data(v):
    return v.data if isinstance(v, Seq) else v


def _mask(v) -> torch.Tensor | None:
    """(B, T) True at the real steps of a ragged sequence; None when every position is real."""
    return v.mask() if isinstance(v, Seq) else None


def per_example(terms: torch.Tensor, like) -> torch.Tensor:
    """Per-position terms (B, ...) → the mean per example (B,), over the real steps only when
    `like` (the value the terms came from) is a ragged sequence."""
    mask = _mask(like)
    if mask is None:
        return terms.flatten(1).mean(1) if terms.dim() > 1 else terms
    per_step = terms.flatten(2) if terms.dim() > 2 else terms.unsqueeze(2)  # (B, T, F); flatten: B may be 0
    total = (per_step.sum(2) * mask).sum(1)
    return total / (like.lengths.to(terms.device) * per_step.shape[2])


class Loss(NamedTuple):
    """The loss of one port: `kind` one of KINDS, "Port" (the port's value is the loss itself), or
    a function (output, target) → a tensor (a scalar or one value per example). `form`: the
    cross-entropy's form. `index`: the targets are 0-based class indices (compared with one-hot
    vectors by every loss but the "Index" cross-entropy). `who`: where an error is placed;
    `hint`: the fix an error about probabilities suggests."""

    kind: object
    form: str | None = None
    index: bool = False
    who: str = ""
    hint: str = ""

    def examples(self, out, target) -> torch.Tensor:
        """The loss of each example (B,)."""
        o = _data(out)
        if self.kind == "Port":
            if o.dim() != 1:
                raise InputError(f"{self.who}the port's value must be one real number per example to be a loss, "
                                 f"but it has dimensions {tuple(o.shape[1:])}.")
            return o
        t = _data(target)
        if callable(self.kind):
            value = self.kind(o, t)
            return value.expand(o.shape[0]) if value.dim() == 0 else value
        if self.kind == "CrossEntropyLoss":
            return per_example(self._cross_entropy(out, o, t), out)
        if self.index:  # a squared or absolute loss against class indices: compare with one-hot vectors
            t = torch.nn.functional.one_hot(t, o.shape[-1]).to(o.dtype)
        d = (o - t).abs() if self.kind == "MeanAbsoluteLoss" else (o - t).square()
        return per_example(d, out)

    def mean(self, out, target) -> torch.Tensor:
        """The mean over the batch of the examples' losses (a 0-dim tensor)."""
        if self.kind in _FLAT and not self.index and _mask(out) is None:
            # every example the same size: the mean of the per-example means is the overall mean
            return _FLAT[self.kind](_data(out), _data(target))
        return self.examples(out, target).mean()

    def _cross_entropy(self, out, o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        form = "Index" if self.index else self.form
        logits = with_logits(o) if form != "Binary" else None
        if logits is not None:  # o = softmax(logits): probabilities by construction
            return self._from_logits(logits, t, form)
        check_probabilities(o, _mask(out), form != "Binary", self.who, self.hint)
        if form == "Binary":
            return -(t * torch.log(o.clamp_min(EPS)) + (1 - t) * torch.log((1 - o).clamp_min(EPS)))
        p = o.clamp_min(EPS)
        if form == "Index":
            return -torch.log(p.gather(-1, t.unsqueeze(-1))).squeeze(-1)  # (B, ...)
        return -(t * torch.log(p)).sum(-1)

    @staticmethod
    def _from_logits(logits: torch.Tensor, t: torch.Tensor, form: str) -> torch.Tensor:
        """The cross-entropy of p = softmax(logits) with log p = log_softmax(logits), clamped as
        log max(p, EPS) is."""
        if form == "Index":
            c = logits.shape[-1]
            terms = torch.nn.functional.cross_entropy(logits.reshape(-1, c), t.reshape(-1), reduction="none")
            return terms.view(t.shape).clamp_max(_NEG_LOG_EPS)
        return -(t * torch.log_softmax(logits, -1).clamp_min(-_NEG_LOG_EPS)).sum(-1)


_NEG_LOG_EPS = -math.log(EPS)  # −log p of the clamped p
_FLAT = {"MeanSquaredLoss": torch.nn.functional.mse_loss, "MeanAbsoluteLoss": torch.nn.functional.l1_loss}


def check_probabilities(p: torch.Tensor, mask, vectors: bool, who: str, hint: str, what="the cross-entropy") -> None:
    """An InputError unless every entry of p (at the real steps) lies in [0, 1] and, for
    `vectors`, every vector along the last axis sums to 1. NaN passes: divergence is reported
    by training, not here."""
    if p.numel() == 0:
        return
    with torch.no_grad():
        x = p.detach()
        if mask is not None:
            x = x[mask]  # (real steps, ...)
            if x.numel() == 0:
                return
        low, high = x.min(), x.max()
        dev = (x.sum(-1) - 1).abs().max() if vectors and x.dim() > 0 else torch.zeros((), dtype=x.dtype)
        low, high, dev = torch.stack([low, high, dev.to(x.dtype)]).tolist()
    if low < -_RANGE_TOL or high > 1 + _RANGE_TOL:
        bad = low if low < -_RANGE_TOL else high
        raise InputError(f"{who}{what} needs probabilities between 0 and 1, but the input has an entry "
                         f"{bad:.4g}.{hint}")
    if dev > _SUM_TOL:
        raise InputError(f"{who}{what} needs probability vectors that sum to 1, but the input has a vector whose "
                         f"entries sum to {_sum_text(x)}.{hint}")


def _sum_text(x: torch.Tensor) -> str:
    s = x.sum(-1).reshape(-1)
    return f"{float(s[(s - 1).abs().argmax()]):.4g}"


def target_type(form: str | None, t: ArrayType) -> ArrayType:
    """The Target port's type for a loss of `form` whose Input has type t."""
    if t.dims is None:
        return ANY
    if form == "Index":
        return Index(*t.dims[:-1], levels=t.dims[-1] if isinstance(t.dims[-1], int) else None)
    return ArrayType(t.dims)


# ---- the layers ----------------------------------------------------------------------------------
def _port_type(layer: str, option: str, spec) -> ArrayType:
    if spec is Automatic or spec is None:
        return ANY
    if spec == "Scalar":
        return SCALAR
    if spec == VARYING:
        return Real(VARYING)  # a sequence of numbers
    if isinstance(spec, int) and not isinstance(spec, bool) and spec > 0:
        return Real(spec)
    if isinstance(spec, tuple | list) and len(spec) == 2 and spec[0] == VARYING:
        return parse_sequence_shape(spec, layer, option)
    if isinstance(spec, tuple | list) and all(d is Automatic or (isinstance(d, int) and d > 0) or d == VARYING
                                             for d in spec):
        return Real(*[None if d is Automatic else d for d in spec])
    raise ShapeError(f'{where(layer)}option {option} must be "Scalar", a size, a tuple of sizes or '
                     f'("Varying", n), but was given {spec!r}.')


class _LossLayer(Layer):
    """Ports "Input" and "Target"; output "Loss", one real number per example: the mean of the
    per-position terms over the example (over its real steps for a ragged sequence)."""

    OPTIONS = {"Input": Automatic, "Target": Automatic}
    form: str | None = None
    kind = ""

    def _init_ports(self, options: dict) -> None:
        t = _port_type(self.name, "Input", options.get("Input", Automatic))
        self._accept("Input", t)
        self._in = {"Input": t, "Target": ANY}
        target = options.get("Target", Automatic)
        if target is not Automatic and target is not None:
            given = _port_type(self.name, "Target", target)
            self._in["Target"] = ArrayType(given.dims, self.form == "Index")
        self._derive()
        self._out = {"Loss": SCALAR}

    def input_ports(self) -> dict:
        ports = dict(self._in)
        if ports["Input"].dims is None and self.form in ("Index", "Probabilities"):
            # not yet inferred: read data as probability vectors (lists of them are batches)
            ports["Input"] = Real(None)
            ports["Target"] = Index() if self.form == "Index" else Real(None)
        return ports

    def _accept(self, port: str, t: ArrayType) -> None:
        if port == "Input" and t.dims is not None:
            if t.integer:
                raise ShapeError(f'{where(self.name, "Input")}the layer expects real numbers, but its input is '
                                 f"{describe(t)}.")
            if self.form in ("Index", "Probabilities") and (not t.dims or t.dims[-1] == VARYING):
                raise ShapeError(f'{where(self.name, "Input")}the layer expects a vector of probabilities (or an '
                                 f"array or sequence of them), but its input is {describe(t)}.")

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        new = self._copy()
        if t is not None and t.dims is not None:
            self._accept("Input", t)
            new._in["Input"] = unify(t, self._in["Input"], "the preceding layer", f'{self.name} port "Input"')
        g = inputs.get("Target")
        if g is not None and g.dims is not None:
            new._in["Target"] = unify(g, self._in["Target"], "the layer feeding the target",
                                      f'{self.name} port "Target"')
        new._derive()
        if new._in == self._in:
            return self
        return new

    def _derive(self) -> None:
        want = target_type(self.form, self._in["Input"])
        self._in["Target"] = unify(self._in["Target"], want, f'{self.name} port "Target"',
                                   f'{self.name} (for its input {describe(self._in["Input"])})')

    def loss(self) -> Loss:
        hint = ' Put ElementwiseLayer("LogisticSigmoid") before it.' if self.form == "Binary" else \
            " Put a SoftmaxLayer before it."
        return Loss(self.kind, self.form, self.form == "Index", where(self.name, "Input"), hint)

    def forward(self, arrays, inputs, ctx):
        x, t = inputs["Input"], inputs["Target"]
        self._check_target(x, t)
        if self.form == "Index":
            td = _data(t) - 1
            t = Seq(td.clamp(min=0), t.lengths) if isinstance(t, Seq) else td  # padding → class 0, masked
        return {"Loss": self.loss().examples(x, t)}

    def _check_target(self, x, t) -> None:
        xd, td = _data(x), _data(t)
        want = xd.shape[:-1] if self.form == "Index" else xd.shape
        if isinstance(x, Seq) and isinstance(t, Seq) and x.length_list() != t.length_list():
            j, (a, b) = next((j, ab) for j, ab in enumerate(zip(x.length_list(), t.length_list())) if ab[0] != ab[1])
            raise InputError(f'{where(self.name, "Target")}the target of example {j + 1} is a sequence of length {b}, '
                             f"but its input has length {a}; a target sequence must be as long as the input.")
        if tuple(td.shape) != tuple(want):
            raise InputError(f'{where(self.name, "Target")}the target has dimensions {tuple(td.shape[1:])} for an '
                             f"input of dimensions {tuple(xd.shape[1:])}; expected {tuple(want[1:])}.")
        if self.form == "Index":
            n = xd.shape[-1]
            mask = _mask(t)
            real = td[mask] if mask is not None else td
            lo, hi = (int(real.min()), int(real.max())) if real.numel() else (1, n)
            if lo < 1 or hi > n:
                bad = lo if lo < 1 else hi
                raise InputError(f'{where(self.name, "Target")}the class index {bad} is out of range: the input has '
                                 f"{n} probabilities, so indices must lie between 1 and {n}.")


class CrossEntropyLossLayer(_LossLayer):
    """The cross-entropy between probabilities and a target, as a loss.

    CrossEntropyLossLayer("Index"): Input a probability vector p (size n), Target a class index
    t in 1..n; loss −log p_t. "Probabilities": Target a probability vector t; loss −Σ t_i log p_i.
    "Binary": Input a probability p (or an array of them), Target 0, 1 or a probability; loss
    −(t log p + (1 − t) log(1 − p)). On arrays and sequences the loss is the mean over positions
    (real steps only for a ragged batch).

    Ports: "Input" (..., n) probabilities, "Target" (...) indices for "Index", else the Input's
    shape; output "Loss", a real number per example. Options Input, Target: shapes.

    >>> CrossEntropyLossLayer("Index")({"Input": [0.25, 0.75], "Target": 2})  # doctest: +SKIP
    0.2876...
    """

    kind = "CrossEntropyLoss"

    def __init__(self, form="Index", **options):
        if form not in FORMS:
            raise OptionError(f"CrossEntropyLossLayer: the form must be one of {', '.join(repr(f) for f in FORMS)}, "
                              f"but was given {form!r}.")
        super().__init__((form,), options)
        self.form = form
        self._init_ports(options)


class MeanSquaredLossLayer(_LossLayer):
    """The mean squared difference between Input and Target (arrays of one shape), as a loss:
    mean((x − t)²) over the elements of each example (real steps only for a ragged batch).

    >>> MeanSquaredLossLayer()({"Input": [1.0, 2.0], "Target": [0.0, 0.0]})  # doctest: +SKIP
    2.5
    """

    kind = "MeanSquaredLoss"

    def __init__(self, **options):
        super().__init__((), options)
        self._init_ports(options)


class MeanAbsoluteLossLayer(_LossLayer):
    """The mean absolute difference between Input and Target (arrays of one shape), as a loss:
    mean(|x − t|) over the elements of each example (real steps only for a ragged batch).

    >>> MeanAbsoluteLossLayer()({"Input": [1.0, -2.0], "Target": [0.0, 0.0]})  # doctest: +SKIP
    1.5
    """

    kind = "MeanAbsoluteLoss"

    def __init__(self, **options):
        super().__init__((), options)
        self._init_ports(options)


LOSS_LAYERS = (CrossEntropyLossLayer, MeanSquaredLossLayer, MeanAbsoluteLossLayer)


def is_loss_layer(x) -> bool:
    return isinstance(x, _LossLayer)
