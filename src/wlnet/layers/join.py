"""Layers that take a list of arrays: CatenateLayer, TotalLayer, ThreadingLayer.

Their one input port "Input" takes a list of arrays (a `ListType`): alone, a layer is applied
to a list, `CatenateLayer()([x1, x2])` (a batch is a list of such lists); in a NetGraph a list
edge feeds it, `(["a", "b"], "cat")`, the sources in order. Sequences in a ragged batch keep
their lengths; arrays threaded or catenated along a non-sequence level must have, example by
example, the same lengths.
"""

from __future__ import annotations

import numbers

import torch

from ..core.data import Seq
from ..core.errors import InputError, OptionError, ShapeError, where
from ..core.shapes import ANY, VARYING, ArrayType, ListType, Real, _unify_dim, describe, unify
from ..core.symbols import Automatic
from .base import Layer, _unset


def _shape(spec, layer: str, i: int) -> ArrayType:
    """One array's shape in an Input=[...] option: n, (d1, d2, ...), ("Varying", d2, ...) or Automatic."""
    if _unset(spec):
        return ANY
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool) and spec >= 1:
        return Real(int(spec))
    if isinstance(spec, tuple | list):
        dims = []
        for j, d in enumerate(spec):
            if _unset(d):
                dims.append(None)
            elif d == VARYING and j == 0:
                dims.append(VARYING)
            elif isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1:
                dims.append(int(d))
            else:
                break
        else:
            return Real(*dims)
    raise ShapeError(f'{where(layer)}option Input: array {i} must have a shape n, (d1, d2, ...), ("Varying", d2, ...) '
                     f"or Automatic, but was given {spec!r}.")


def _list_input(layer: Layer, spec) -> ListType:
    if _unset(spec):
        return ListType(None)
    if not isinstance(spec, list) or not spec:
        raise ShapeError(f"{where(layer.name)}option Input must be a non-empty list of shapes, one per input array "
                         f"(e.g. Input=[3, 2]), but was given {spec!r}.")
    return ListType(tuple(_shape(s, layer.name, i) for i, s in enumerate(spec, 1)))


def _lengths(v, B: int, T: int) -> torch.Tensor:
    """(B,) int64 on the CPU: each example's length along the sequence axis."""
    if isinstance(v, Seq) and v.lengths is not None:
        return v.lengths
    return torch.full((B,), T, dtype=torch.int64)


def _pad_time(t: torch.Tensor, T: int) -> torch.Tensor:
    return t if t.shape[1] == T else torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, T - t.shape[1]))


class _ListLayer(Layer):
    """A layer whose "Input" is a list of arrays; `_derive` sets "Output" from the arrays' types."""

    OPTIONS = {"Input": Automatic}

    def _init_ports(self, options: dict) -> None:
        self._in = {"Input": _list_input(self, options.get("Input", Automatic))}
        self._derive()

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        if t is None or t == ANY:
            return self
        if not isinstance(t, ListType):
            raise ShapeError(f'{where(self.name, "Input")}the layer takes a list of arrays, but its input is '
                             f"{describe(t)}.")
        own = self._in["Input"]
        if own.items is not None and t.items is not None and len(own.items) != len(t.items):
            raise ShapeError(f'{where(self.name, "Input")}the layer takes {len(own.items)} arrays (its Input option), '
                             f"but {len(t.items)} are connected.")
        new_in = unify(t, own, "the connected arrays", f'{self.name} port "Input"')
        if new_in == own:
            return self
        new = self._copy()
        new._in = {"Input": new_in}
        new._derive()
        return new

    def _known_items(self) -> tuple | None:
        """The arrays' types once every one is known (its rank at least), else None."""
        items = self._in["Input"].items
        if items is None or any(t.dims is None for t in items):
            return None
        return items

    def _mismatch(self, i: int, items: tuple, what: str) -> ShapeError:
        return ShapeError(f'{where(self.name, "Input")}array {i} is {describe(items[i - 1])}, but array 1 is '
                          f"{describe(items[0])}; {what}.")

    def _same_types(self, items: tuple) -> ArrayType:
        """The one type of arrays that must have the same dimensions (reals only)."""
        for i, t in enumerate(items, 1):
            if t.integer:
                raise ShapeError(f'{where(self.name, "Input")}array {i} is {describe(t)}, but the layer takes real '
                                 "arrays.")
        dims = list(items[0].dims)
        for i, t in enumerate(items[1:], 2):
            if len(t.dims) != len(dims):
                raise self._mismatch(i, items, "the arrays must have the same dimensions")
            for a, (d, e) in enumerate(zip(dims, t.dims)):
                u = _same_dim(d, e, a == 0)
                if u is False:
                    raise self._mismatch(i, items, "the arrays must have the same dimensions")
                dims[a] = u
        return Real(*dims)

    def _values(self, xs: list) -> tuple[list, torch.Tensor | None, bool]:
        """The arrays of one batch as tensors (B, ...) of one sequence length, their lengths
        ((B,) or None) and whether they are sequences; an InputError if lengths differ."""
        seq = any(isinstance(x, Seq) for x in xs)
        datas = [x.data if isinstance(x, Seq) else x for x in xs]
        if not seq:
            return datas, None, False
        B = datas[0].shape[0]
        lengths = [_lengths(x, B, d.shape[1]) for x, d in zip(xs, datas)]
        for i, ln in enumerate(lengths[1:], 2):
            bad = (ln != lengths[0]).nonzero()
            if len(bad):
                j = int(bad[0])
                raise InputError(
                    f'{where(self.name, "Input")}array {i} has length {int(ln[j])} and array 1 length '
                    f"{int(lengths[0][j])}{f' in batch element {j + 1}' if B > 1 else ''}; the sequences must have "
                    "the same length."
                )
        T = int(lengths[0].max()) if B else datas[0].shape[1]
        datas = [_pad_time(d[:, :T], T) for d in datas]
        ragged = any(isinstance(x, Seq) and x.lengths is not None for x in xs)
        return datas, (lengths[0] if ragged else None), True

    def _check_count(self, xs) -> None:
        items = self._in["Input"].items
        if items is not None and len(xs) != len(items):
            raise InputError(f'{where(self.name, "Input")}the layer takes {len(items)} arrays, but was given '
                             f"{len(xs)}.")


def _same_dim(d, e, first: bool):
    """The dimension both d and e are (None: not known), or False if they differ (a varying
    length, first, meets a fixed one: the fixed one)."""
    try:
        return _unify_dim(d, e, 0 if first else 1)
    except ValueError:
        return False


class CatenateLayer(_ListLayer):
    """Joins a list of arrays at level n (1-based; negative levels count from the end):
    CatenateLayer() is CatenateLayer(1), which for vectors gives one longer vector and for
    sequences one longer sequence; CatenateLayer(-1) (or 2 for sequences of vectors) joins the
    vectors of sequences of equal length step by step.

    Arrays of lower rank are replicated over the leading dimensions of the highest-rank one
    (a vector joined with a sequence of vectors is joined to every element), and n counts from
    the first dimension of the arrays of lowest rank. Ragged sequences joined at level 1 give
    sequences as long as the sum of their lengths.

    Ports: "Input" (a list of arrays), "Output".

    >>> CatenateLayer()([[1, 2], [3]])  # doctest: +SKIP
    [1.0, 2.0, 3.0]
    """

    def __init__(self, n=1, **options):
        super().__init__((n,) if n != 1 else (), options)
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n == 0:
            raise OptionError(f"{self.name}: the level must be a non-zero integer (1 the first, -1 the last), but was "
                              f"given {n!r}.")
        self.level = int(n)
        self._init_ports(options)

    def _axis(self, ranks: list) -> int:
        """The joined axis (0-based, in the frame of the highest rank) for arrays of these ranks."""
        low, high = min(ranks), max(ranks)
        if low == 0 or not (1 <= self.level <= low or -low <= self.level <= -1):
            what = "real numbers cannot be catenated" if low == 0 else \
                f"level {self.level} does not exist for the arrays of rank {low}: it must lie between 1 and {low} " \
                f"or between -{low} and -1"
            raise ShapeError(f'{where(self.name, "Input")}{what}.')
        return high - low + self.level - 1 if self.level > 0 else high + self.level

    def _derive(self) -> None:
        items = self._known_items()
        if items is None:
            self._out = {"Output": ANY}
            return
        integer = {t.integer for t in items}
        if len(integer) > 1:
            i = next(i for i, t in enumerate(items, 1) if t.integer != items[0].integer)
            raise self._mismatch(i, items, "integer indices and real arrays cannot be catenated")
        ranks = [len(t.dims) for t in items]
        axis = self._axis(ranks)
        high = max(ranks)
        top = items[ranks.index(high)].dims
        full = [(*top[:high - len(t.dims)], *t.dims) for t in items]  # replicated to the highest rank
        dims = []
        for a in range(high):
            column = [f[a] for f in full]
            if a == axis:
                dims.append(VARYING if VARYING in column else None if None in column else sum(column))
                continue
            d = column[0]
            for i, e in enumerate(column[1:], 2):
                d = _same_dim(d, e, a == 0)
                if d is False:
                    raise self._mismatch(i, items, f"they can be catenated at level {self.level} only if their other "
                                         "dimensions agree")
            dims.append(d)
        levels = max((t.levels or 0) for t in items) or None
        self._out = {"Output": ArrayType(tuple(dims), items[0].integer, levels)}

    def forward(self, arrays, inputs, ctx):
        xs = list(inputs["Input"])
        self._check_count(xs)
        datas = [x.data if isinstance(x, Seq) else x for x in xs]
        ranks = [d.ndim - 1 for d in datas]
        axis = self._axis(ranks)
        high = max(ranks)
        top = ranks.index(high)
        if high > min(ranks):  # replicate the lower-rank arrays over the leading dimensions of the highest
            lead, lengths = datas[top].shape[1:], xs[top].lengths if isinstance(xs[top], Seq) else None
            for i, d in enumerate(datas):
                extra = high - ranks[i]
                if extra:
                    d = d.reshape(d.shape[0], *(1,) * extra, *d.shape[1:]).expand(d.shape[0], *lead[:extra],
                                                                                    *d.shape[1:])
                    xs[i] = Seq(d, lengths) if isinstance(xs[top], Seq) else d
        if axis == 0 and any(isinstance(x, Seq) for x in xs):
            return {"Output": self._join_sequences(xs)}
        datas, lengths, seq = self._values(xs)
        out = torch.cat(datas, dim=axis + 1)
        return {"Output": Seq(out, lengths) if seq else out}

    def _join_sequences(self, xs: list) -> Seq:
        """Sequences one after another, each example to its own length: (B, T_i, ...) → (B, ΣL_i, ...)."""
        datas = [x.data if isinstance(x, Seq) else x for x in xs]
        B = datas[0].shape[0]
        for i, d in enumerate(datas[1:], 2):
            if d.shape[2:] != datas[0].shape[2:]:
                raise InputError(f'{where(self.name, "Input")}array {i} has elements of dimensions '
                                 f"{tuple(d.shape[2:])}, but array 1 of dimensions {tuple(datas[0].shape[2:])}.")
        lengths = [_lengths(x, B, d.shape[1]) for x, d in zip(xs, datas)]
        if all(isinstance(x, Seq) and x.lengths is None or not isinstance(x, Seq) for x in xs):
            return Seq(torch.cat(datas, dim=1), None)
        device = datas[0].device
        total = sum(lengths)  # (B,)
        T = int(total.max())
        stacked = torch.cat([*datas, datas[0].new_zeros(B, 1, *datas[0].shape[2:])], dim=1)  # (B, ΣT_i + 1, ...)
        blank = stacked.shape[1] - 1
        s = torch.arange(T, device=device).unsqueeze(0)  # (1, T)
        src = torch.full((B, T), blank, device=device, dtype=torch.int64)
        start = torch.zeros(B, dtype=torch.int64)  # where item i begins in each output example
        base = 0  # where item i begins in `stacked`
        for d, ln in zip(datas, lengths):
            st, ln_d = start.to(device).unsqueeze(1), ln.to(device).unsqueeze(1)
            inside = (s >= st) & (s < st + ln_d)
            src = torch.where(inside, base + s - st, src)
            start = start + ln
            base += d.shape[1]
        index = src.view(B, T, *(1,) * (stacked.ndim - 2)).expand(B, T, *stacked.shape[2:])
        return Seq(stacked.gather(1, index), None if bool((total == T).all()) else total)


class TotalLayer(_ListLayer):
    """The sum of a list of arrays of the same dimensions (sequences of the same lengths).

    Ports: "Input" (a list of arrays), "Output" (an array of their dimensions).

    >>> TotalLayer()([[1, 2], [3, 4]])  # doctest: +SKIP
    [4.0, 6.0]
    """

    def __init__(self, **options):
        super().__init__((), options)
        self._init_ports(options)

    def _derive(self) -> None:
        items = self._known_items()
        self._out = {"Output": ANY if items is None else self._same_types(items)}

    def forward(self, arrays, inputs, ctx):
        xs = inputs["Input"]
        self._check_count(xs)
        datas, lengths, seq = self._values(xs)
        out = datas[0]
        for d in datas[1:]:
            out = out + d
        return {"Output": Seq(out, lengths) if seq else out}


_THREADED = {
    "Plus": (None, lambda *xs: _fold(torch.add, xs)),
    "Times": (None, lambda *xs: _fold(torch.mul, xs)),
    "Max": (None, lambda *xs: _fold(torch.maximum, xs)),
    "Min": (None, lambda *xs: _fold(torch.minimum, xs)),
    "Subtract": (2, torch.sub),
    "Divide": (2, torch.div),
    "Power": (2, torch.pow),
}


def _fold(op, xs):
    out = xs[0]
    for x in xs[1:]:
        out = op(out, x)
    return out


class ThreadingLayer(_ListLayer):
    """Applies f to the corresponding elements of a list of arrays of the same dimensions:
    f is "Plus", "Times", "Max", "Min" (any number of arrays), "Subtract", "Divide", "Power"
    (two), or a Python function of as many tensors, elementwise.

    Ports: "Input" (a list of arrays), "Output" (an array of their dimensions).

    >>> ThreadingLayer("Times")([[1, 2], [3, 4]])  # doctest: +SKIP
    [3.0, 8.0]
    """

    def __init__(self, f, **options):
        super().__init__((f,), options)
        if isinstance(f, str):
            if f not in _THREADED:
                raise OptionError(f"{self.name}: {f!r} is not a known function; use one of {', '.join(_THREADED)} or "
                                  "a Python function of tensors.")
            self._arity, self._fn = _THREADED[f]
        elif callable(f):
            self._arity, self._fn = None, f
        else:
            raise OptionError(f"{self.name}: expected a function name or a callable, but was given {f!r}.")
        self.f = f
        self._init_ports(options)

    def _derive(self) -> None:
        items = self._in["Input"].items
        if items is not None and self._arity is not None and len(items) != self._arity:
            raise ShapeError(f'{where(self.name, "Input")}{self.f!r} takes {self._arity} arrays, but '
                             f"{len(items)} are given.")
        items = self._known_items()
        self._out = {"Output": ANY if items is None else self._same_types(items)}

    def forward(self, arrays, inputs, ctx):
        xs = inputs["Input"]
        self._check_count(xs)
        if self._arity is not None and len(xs) != self._arity:
            raise InputError(f'{where(self.name, "Input")}{self.f!r} takes {self._arity} arrays, but was given '
                             f"{len(xs)}.")
        datas, lengths, seq = self._values(xs)
        shape = datas[0].shape
        for i, d in enumerate(datas[1:], 2):
            if d.shape != shape:
                raise InputError(f'{where(self.name, "Input")}array {i} has dimensions {tuple(d.shape[1:])}, but '
                                 f"array 1 has {tuple(shape[1:])}; the arrays must have the same dimensions.")
        mask = None
        if lengths is not None:  # f sees 1 at the padding (no 0/0 there), and the padding of the result is 0
            mask = Seq(datas[0], lengths).mask()
            mask = mask.view(*mask.shape, *(1,) * (len(shape) - 2))
            datas = [torch.where(mask, d, torch.ones((), dtype=d.dtype, device=d.device)) for d in datas]
        out = self._fn(*datas)
        if not isinstance(out, torch.Tensor) or out.shape != shape:
            got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(f"{where(self.name)}the function gave {got} for arrays of dimensions {tuple(shape[1:])}; "
                             "it must act element by element and keep the dimensions.")
        if mask is not None:
            out = torch.where(mask, out, torch.zeros((), dtype=out.dtype, device=out.device))
        return {"Output": Seq(out, lengths) if seq else out}
