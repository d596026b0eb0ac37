"""Layers that extend or combine arrays: AppendLayer, PrependLayer, PaddingLayer, DotLayer.

Levels are 1-based as in Wolfram. A ragged batch keeps, example by example, its own lengths:
an element appended, a padding added, are placed at each sequence's own end.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ..core.data import Seq
from ..core.errors import InputError, NotSupportedError, OptionError, ShapeError, where
from ..core.shapes import ANY, VARYING, ArrayType, Real, describe, unify
from ..core.symbols import Automatic
from .base import Layer
from .join import _ListLayer
from .shape import _data, _input_type, _lengths_of, _OneInput, _out_seq, _zero_padding


# ---- AppendLayer, PrependLayer -----------------------------------------------------------------
class _JoinElement(Layer):
    """Ports "Input" (an array of rank n, a sequence) and "Element" (rank n−1); output "Output"
    one element longer."""

    OPTIONS = {"Input": Automatic, "Element": Automatic}

    def __init__(self, **options):
        super().__init__((), options)
        seq = _input_type(self, options.get("Input", Automatic))
        elem = _input_type(self, options.get("Element", Automatic), "Element")
        self._in = {"Input": seq, "Element": elem}
        self._derive()

    def _accept(self, port, t) -> None:
        if port == "Input" and t.dims is not None and not t.dims:
            raise ShapeError(f'{where(self.name, "Input")}the layer expects an array of rank at least 1, but its input '
                             f"is {describe(t)}.")

    def _derive(self) -> None:
        seq, elem = self._in["Input"], self._in["Element"]
        if seq.dims is not None and elem.dims is not None:
            if len(elem.dims) != len(seq.dims) - 1:
                raise ShapeError(f'{where(self.name, "Element")}the element must have rank one less than the input '
                                 f"({describe(seq)}), but it is {describe(elem)}.")
            e = unify(elem, ArrayType(seq.dims[1:], seq.integer), f'{self.name} port "Element"',
                      f'{self.name} (for its input {describe(seq)})')
            seq = ArrayType((seq.dims[0], *e.dims), seq.integer, seq.levels)
            self._in = {"Input": seq, "Element": e}
        elif seq.dims is not None:
            self._in["Element"] = ArrayType(seq.dims[1:], seq.integer, seq.levels)
        elif elem.dims is not None:
            self._in["Input"] = ArrayType((VARYING, *elem.dims), elem.integer, elem.levels)
            seq = self._in["Input"]
        if seq.dims is None:
            self._out = {"Output": ANY}
            return
        n = seq.dims[0]
        self._out = {"Output": ArrayType((n + 1 if isinstance(n, int) else n, *seq.dims[1:]), seq.integer,
                                         seq.levels)}

    def forward(self, arrays, inputs, ctx):
        x, e = inputs["Input"], inputs["Element"]
        d = _data(x)
        if tuple(e.shape[1:]) != tuple(d.shape[2:]) or e.shape[0] != d.shape[0]:
            raise InputError(f'{where(self.name, "Element")}the element has dimensions {tuple(e.shape[1:])}, but the '
                             f"input's elements have {tuple(d.shape[2:])}.")
        e = e.to(d.dtype).unsqueeze(1)  # (B, 1, ...)
        lengths = x.lengths if isinstance(x, Seq) else None
        out = self._join(d, e, lengths)
        new = None if lengths is None else lengths + 1
        return {"Output": Seq(out, new) if isinstance(x, Seq) else out}


class AppendLayer(_JoinElement):
    """Its "Element" appended to its "Input": x_1..x_T, e → x_1..x_T, e (each sequence of a
    ragged batch gets e after its own last element).

    Ports: "Input" (a sequence or array of rank n), "Element" (rank n−1), "Output".

    >>> AppendLayer(Input=("Varying", 2))({"Input": [[1, 2], [3, 4]], "Element": [5, 6]})
    [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    """

    @staticmethod
    def _join(d, e, lengths):
        if lengths is None:
            return torch.cat([d, e], 1)
        out = torch.cat([d, torch.zeros_like(e)], 1)  # (B, T+1, ...)
        rows = torch.arange(d.shape[0], device=d.device)
        return out.index_put((rows, lengths.to(d.device)), e.squeeze(1))


class PrependLayer(_JoinElement):
    """Its "Element" put before its "Input": e, x_1..x_T → e, x_1..x_T.

    Ports: "Input" (a sequence or array of rank n), "Element" (rank n−1), "Output".

    >>> PrependLayer(Input=("Varying", 2))({"Input": [[1, 2], [3, 4]], "Element": [5, 6]})
    [[5.0, 6.0], [1.0, 2.0], [3.0, 4.0]]
    """

    @staticmethod
    def _join(d, e, lengths):
        return torch.cat([e, d], 1)


# ---- PaddingLayer ------------------------------------------------------------------------------
_PADDINGS = ("Fixed", "Reflected", "Periodic")


def _source(s: torch.Tensor, m, L, how) -> tuple[torch.Tensor, torch.Tensor]:
    """For output positions s of a level padded with m before a length L: (the source position in
    the input, True where it is inside the input)."""
    L = torch.as_tensor(L, device=s.device)
    j = s - m
    inside = (j >= 0) & (j < L)
    if how == "Fixed":
        src = torch.minimum(j.clamp(min=0), L - 1)
    elif how == "Periodic":
        src = torch.remainder(j, L)
    elif how == "Reflected":
        period = (2 * (L - 1)).clamp(min=1)
        r = torch.remainder(j, period)
        src = torch.where(r >= L, period - r, r)
        src = torch.where(L == 1, torch.zeros_like(src), src)
    else:  # a constant: any position inside, replaced by the constant next
        src = torch.minimum(j.clamp(min=0), L - 1)
    return src, inside


class PaddingLayer(_OneInput):
    """Pads an array with m_i elements before and n_i after at level i: PaddingLayer([[m1, n1],
    [m2, n2], ...]), the levels not named left as they are. Padding=c pads with the constant c
    (0 by default), "Fixed" repeats the boundary elements, "Reflected" reflects the array in its
    boundary (the boundary element not repeated), "Periodic" repeats it cyclically. A ragged
    sequence is padded at level 1 each to its own length.

    Ports: "Input" (an array of rank ≥ 1), "Output".

    >>> PaddingLayer([[1, 2]], Input=2)([1, 2])
    [0.0, 1.0, 2.0, 0.0, 0.0]
    """

    OPTIONS = {"Input": Automatic, "Padding": 0}

    def __init__(self, spec, **options):
        super().__init__((spec,), options)
        ok = isinstance(spec, list | tuple) and spec and all(
            isinstance(p, list | tuple) and len(p) == 2 and all(
                not isinstance(v, bool) and isinstance(v, numbers.Integral) and v >= 0 for v in p) for p in spec)
        if not ok:
            raise OptionError(f"{self.name}: the padding must be a list of pairs [m, n] of non-negative integers, one "
                              f"per level, but was given {spec!r}.")
        self.pads = tuple((int(a), int(b)) for a, b in spec)
        how = options.get("Padding", 0)
        if isinstance(how, str):
            if how not in _PADDINGS:
                raise OptionError(f"{self.name}: Padding must be a number or one of {', '.join(map(repr, _PADDINGS))}, "
                                  f"but was given {how!r}.")
            self.value = None
        elif isinstance(how, bool) or not isinstance(how, numbers.Real) or not math.isfinite(how):
            raise OptionError(f"{self.name}: Padding must be a finite number or one of "
                              f"{', '.join(map(repr, _PADDINGS))}, but was given {how!r}.")
        else:
            self.value = float(how)
        self.how = how
        self._init_ports(options)

    def _output(self, t: ArrayType) -> ArrayType:
        if len(self.pads) > len(t.dims):
            raise ShapeError(f'{where(self.name, "Input")}the padding names {len(self.pads)} levels, but its input is '
                             f"{describe(t)}.")
        dims = list(t.dims)
        for i, (a, b) in enumerate(self.pads):
            if dims[i] != VARYING:
                dims[i] = dims[i] + a + b
        return Real(*dims)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = _data(x)
        if len(self.pads) > d.ndim - 1:
            raise InputError(f'{where(self.name, "Input")}the padding names {len(self.pads)} levels, but the input has '
                             f"rank {d.ndim - 1}.")
        how = None if self.value is not None else self.how
        lengths = None
        for level, (a, b) in enumerate(self.pads, 1):
            if a == 0 and b == 0:
                continue
            if level == 1 and isinstance(x, Seq):
                d, lengths = self._pad_steps(d, _lengths_of(x), a, b, how, x.lengths)
                continue
            if how is None:
                d = F.pad(d, (0, 0) * (d.ndim - 1 - level) + (a, b), value=self.value)
                continue
            L = d.shape[level]
            s = torch.arange(a + L + b, device=d.device)
            src, inside = _source(s, a, L, how)
            d = d.index_select(level, src)
            if how is None:
                shape = [1] * d.ndim
                shape[level] = -1
                d = torch.where(inside.view(shape), d, torch.full((), self.value, dtype=d.dtype, device=d.device))
        if isinstance(x, Seq):
            return {"Output": _out_seq(d, lengths if lengths is not None else x.lengths, True)}
        return {"Output": d}

    def _pad_steps(self, d, L, a, b, how, ragged):
        """Level 1 of a ragged batch: (B, T, ...) → (B, max L + a + b, ...), each padded at its own ends."""
        B, T = d.shape[:2]
        new = L + a + b
        Tn = int(new.max())
        if how is None:  # a constant: the steps shifted by a, the constant before them and after each length
            out = F.pad(_zero_padding(d, ragged), (0, 0) * (d.ndim - 2) + (a, b))
            if self.value != 0:
                s = torch.arange(Tn, device=d.device).unsqueeze(0)
                end = (L + a).to(d.device).unsqueeze(1)
                pad = (s < a) | ((s >= end) & (s < end + b))  # (B, Tn)
                out = torch.where(pad.view(B, Tn, *(1,) * (d.ndim - 2)),
                                  torch.full((), self.value, dtype=d.dtype, device=d.device), out)
            return out, new
        s = torch.arange(Tn).unsqueeze(0).expand(B, Tn)
        src, inside = _source(s, a, L.unsqueeze(1), how)
        index = src.to(d.device).view(B, Tn, *(1,) * (d.ndim - 2)).expand(B, Tn, *d.shape[2:])
        out = d.gather(1, index)
        if how is None:
            mask = inside.to(d.device).view(B, Tn, *(1,) * (d.ndim - 2))
            out = torch.where(mask, out, torch.full((), self.value, dtype=d.dtype, device=d.device))
        return _zero_padding(out, new), new


# ---- DotLayer ----------------------------------------------------------------------------------
class DotLayer(_ListLayer):
    """The dot product of a list of arrays, as Wolfram's Dot: the last level of each array is
    contracted with the first level of the next (vector·vector a number, matrix·vector a vector,
    ...). The first array may be a sequence (T×k · k×m → T×m); a later one contracted over its
    steps sums over each sequence's real steps only.

    Ports: "Input" (a list of arrays), "Output".

    >>> DotLayer()([[1, 2], [3, 4]])
    11.0
    """

    def __init__(self, specs=None, **options):
        if specs is not None:
            raise NotSupportedError("DotLayer: transpose specifications (DotLayer([spec1, spec2, ...])) are not "
                                    "supported yet; transpose the arrays before the layer.")
        super().__init__((), options)
        self._init_ports(options)

    def _derive(self) -> None:
        items = self._known_items()
        if items is None:
            self._out = {"Output": ANY}
            return
        if len(items) < 2:
            raise ShapeError(f'{where(self.name, "Input")}the layer takes at least 2 arrays, but {len(items)} are '
                             "given.")
        dims = list(items[0].dims)
        for i, t in enumerate(items, 1):
            if t.integer or not t.dims:
                raise ShapeError(f'{where(self.name, "Input")}array {i} is {describe(t)}, but the layer takes real '
                                 "arrays of rank at least 1.")
            if VARYING in t.dims[1:] or (i > 2 and t.varying) or (i == 2 and t.varying and len(dims) > 1):
                raise ShapeError(f'{where(self.name, "Input")}array {i} is {describe(t)}: only the first array may be '
                                 "a sequence, or the second when the first is a vector of one value per step.")
        for i, t in enumerate(items[1:], 2):
            a, b = dims[-1], t.dims[0]
            if a is not None and b is not None and a != b and VARYING not in (a, b):
                raise ShapeError(f'{where(self.name, "Input")}array {i - 1} ends in a level of size {a}, but array {i} '
                                 f"begins with one of size {b}; Dot needs them equal.")
            dims = dims[:-1] + list(t.dims[1:])
        self._out = {"Output": Real(*dims)}

    def forward(self, arrays, inputs, ctx):
        xs = list(inputs["Input"])
        self._check_count(xs)
        if len(xs) < 2:
            raise InputError(f'{where(self.name, "Input")}the layer takes at least 2 arrays, but was given {len(xs)}.')
        first = xs[0]
        out = _data(first)
        lengths = first.lengths if isinstance(first, Seq) else None
        seq_out = isinstance(first, Seq)
        for i, x in enumerate(xs[1:], 2):
            d = _data(x)
            if isinstance(x, Seq):  # contracted over its steps: the first array is one value per step
                out = _zero_padding(out, x.lengths)
                d = _zero_padding(d, x.lengths)
                if out.shape[1] != d.shape[1]:
                    raise InputError(f'{where(self.name, "Input")}array {i - 1} has {out.shape[1]} entries, but array '
                                     f"{i} has {d.shape[1]} steps.")
                seq_out = False
            if out.shape[-1] != d.shape[1]:
                raise InputError(f'{where(self.name, "Input")}array {i - 1} ends in a level of size {out.shape[-1]}, '
                                 f"but array {i} begins with one of size {d.shape[1]}; Dot needs them equal.")
            a = out.reshape(out.shape[0], -1, out.shape[-1])  # (B, P, k)
            b = d.reshape(d.shape[0], d.shape[1], -1)  # (B, k, Q)
            out = torch.bmm(a, b).reshape(*out.shape[:-1], *d.shape[2:])
        return {"Output": Seq(_zero_padding(out, lengths), lengths) if seq_out else out}
