"""Layers that rearrange arrays and sequences: SequenceIndicesLayer, ReshapeLayer, FlattenLayer,
PartLayer, ReplicateLayer (and, in `extend`, AppendLayer, PrependLayer, PaddingLayer, DotLayer).

Levels are 1-based as in Wolfram (level 1 of a sequence is its steps). A ragged batch keeps,
example by example, its own lengths: a part taken from the end of a sequence, an element
appended, a padding added, are placed at each sequence's own end.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..core.data import Seq
from ..core.errors import InputError, OptionError, ShapeError, where
from ..core.shapes import ANY, VARYING, ArrayType, Index, Real, describe, unify
from ..core.symbols import All, Automatic
from .base import Layer, _unset
from .join import _shape


def _input_type(layer: Layer, spec, option: str = "Input") -> ArrayType:
    """A shape option: Automatic, "Real" (a number), "Varying" (a sequence of numbers), n, or
    (d1, d2, ...) whose first entry may be "Varying" and any entry Automatic."""
    if spec == "Real":
        return Real()
    if spec == VARYING:
        return Real(VARYING)
    try:
        return _shape(spec, layer.name, 1)
    except ShapeError:
        raise ShapeError(f'{where(layer.name)}option {option} must be "Real", "Varying", a size n, or a shape '
                         f'(d1, d2, ...) whose first entry may be "Varying", but was given {spec!r}.') from None


def _int(value, who: str, what: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (low is not None and value < low):
        must = "an integer" if low is None else f"an integer ≥ {low}"
        raise OptionError(f"{where(who)}{what} must be {must}, but was given {value!r}.")
    return int(value)


def _data(x):
    return x.data if isinstance(x, Seq) else x


def _lengths_of(x) -> torch.Tensor:
    """(B,) int64 on the CPU: each example's sequence length (the data's T where not ragged)."""
    if isinstance(x, Seq) and x.lengths is not None:
        return x.lengths
    d = _data(x)
    return torch.full((d.shape[0],), d.shape[1], dtype=torch.int64)


def _zero_padding(data: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """data (B, T, ...) with the steps past each length set to 0."""
    if lengths is None:
        return data
    mask = torch.arange(data.shape[1], device=data.device) < lengths.to(data.device).unsqueeze(1)
    return data * mask.view(*mask.shape, *(1,) * (data.ndim - 2)).to(data.dtype)


def _out_seq(data: torch.Tensor, lengths: torch.Tensor | None, varying: bool):
    """A layer's output: a Seq (ragged only where lengths differ) for a varying type, else the tensor."""
    if not varying:
        return data
    if lengths is not None and bool((lengths == data.shape[1]).all()):
        lengths = None
    return Seq(data, lengths)


class _OneInput(Layer):
    """A layer with one port "Input" (its shape the Input option) and one port "Output", whose
    type `_output(dims)` derives from the input's dimensions once they are known."""

    OPTIONS = {"Input": Automatic}

    def _init_ports(self, options: dict) -> None:
        self._in = {"Input": _input_type(self, options.get("Input", Automatic))}
        self._derive()

    def _derive(self) -> None:
        t = self._in["Input"]
        if t.dims is None or any(d is None for d in t.dims):
            self._out = {"Output": ANY}
            return
        self._out = {"Output": self._output(t)}

    def _accept(self, port, t) -> None:
        if t.dims is not None and t.known:
            self._output(t)  # raises the ShapeError that this input would give

    def _output(self, t: ArrayType) -> ArrayType:
        raise NotImplementedError


# ---- SequenceIndicesLayer -----------------------------------------------------------------------
class SequenceIndicesLayer(_OneInput):
    """The positions of a sequence's elements: x_1..x_T → 1, 2, ..., T (each sequence of a
    ragged batch to its own length); with Maximum=m, min(m, i) (for an EmbeddingLayer of m
    positions).

    Ports: "Input" (a sequence of arrays of any dimensions), "Output" (a sequence of integers).

    >>> SequenceIndicesLayer(Input=("Varying", 2))([[0.5, 1.0], [2.0, 3.0], [4.0, 5.0]])
    [1, 2, 3]
    """

    OPTIONS = {"Input": Automatic, "Maximum": math.inf}

    def __init__(self, **options):
        super().__init__((), options)
        m = options.get("Maximum", math.inf)
        if not (isinstance(m, float) and m == math.inf):
            m = _int(m, self.name, "Maximum", 1)
        self.maximum = m
        spec = options.get("Input", Automatic)
        self._in = {"Input": ArrayType((VARYING, None)) if _unset(spec) else _input_type(self, spec)}
        self._accept("Input", self._in["Input"])
        self._derive()

    def _derive(self) -> None:
        t = self._in["Input"]
        levels = None if self.maximum == math.inf else self.maximum
        if t.dims is not None and isinstance(t.dims[0], int):  # a fixed length T: indices up to T
            levels = t.dims[0] if levels is None else min(levels, t.dims[0])
        length = VARYING if t.dims is None else t.dims[0]
        self._out = {"Output": Index(length, levels=levels)}

    def _accept(self, port, t) -> None:
        if t.dims is not None and len(t.dims) < 1:
            raise ShapeError(f'{where(self.name, "Input")}the layer expects a sequence, but its input is '
                             f"{describe(t)}.")

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        if t is None or t.dims is None:
            return self
        self._accept("Input", t)
        own = self._in["Input"]
        if own.dims is not None and own.rank == t.rank:
            t = unify(t, own, "the preceding layer", f'{self.name} port "Input"')
        if t == own:
            return self
        new = self._copy()
        new._in = {"Input": t}
        new._derive()
        return new

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = _data(x)
        B, T = d.shape[:2]
        idx = torch.arange(1, T + 1, device=d.device).expand(B, T)
        if self.maximum != math.inf:
            idx = idx.clamp(max=self.maximum)
        if isinstance(x, Seq):
            return {"Output": Seq(_zero_padding(idx, x.lengths), x.lengths)}  # padding: index 0
        return {"Output": idx.contiguous()}


# ---- ReshapeLayer, FlattenLayer -----------------------------------------------------------------
class ReshapeLayer(_OneInput):
    """Its input's elements, in order, as an array of dimensions dims: ReshapeLayer((d1, d2, ...));
    one entry may be Automatic (inferred from the input's size). ReshapeLayer(("Varying", d2, ...))
    reshapes each element of a sequence into d2×... (lengths kept).

    Ports: "Input" (an array), "Output" (an array of dimensions dims).

    >>> ReshapeLayer((2, 2), Input=4)([1, 2, 3, 4])
    [[1.0, 2.0], [3.0, 4.0]]
    """

    def __init__(self, dims, **options):
        super().__init__((dims,), options)
        if not isinstance(dims, tuple | list) or not dims:
            raise OptionError(f"{self.name}: the dimensions must be a non-empty tuple of sizes, one of them may be "
                              f"Automatic, but were given {dims!r}.")
        self.varying = dims[0] == VARYING
        rest = list(dims[1:] if self.varying else dims)
        parsed = []
        for d in rest:
            parsed.append(None if d is Automatic else _int(d, self.name, "each dimension", 1))
        if parsed.count(None) > 1:
            raise OptionError(f"{self.name}: at most one dimension may be Automatic, but {dims!r} has "
                              f"{parsed.count(None)}.")
        self.dims = tuple(parsed)
        self._init_ports(options)

    def _output(self, t: ArrayType) -> ArrayType:
        dims = t.dims
        if self.varying:
            if not t.varying:
                raise ShapeError(f'{where(self.name, "Input")}the layer reshapes the elements of a sequence ("Varying" '
                                 f"first), but its input is {describe(t)}.")
            dims = dims[1:]
        elif VARYING in dims:
            raise ShapeError(f'{where(self.name, "Input")}its input is {describe(t)}, whose length varies; reshape '
                             f'each element instead: ReshapeLayer(("Varying", ...)).')
        size = math.prod(dims)
        known = math.prod(d for d in self.dims if d is not None)
        out = self.dims
        if None in out:
            if size % known:
                raise ShapeError(f'{where(self.name, "Input")}an input of {size} elements ({describe(t)}) cannot be '
                                 f"reshaped into dimensions {self._text()}.")
            out = tuple(size // known if d is None else d for d in out)
        elif known != size:
            raise ShapeError(f'{where(self.name, "Input")}an input of {size} elements ({describe(t)}) cannot be '
                             f"reshaped into dimensions {self._text()} ({known} elements).")
        return Real(VARYING, *out) if self.varying else Real(*out)

    def _text(self) -> str:
        return "×".join("Automatic" if d is None else str(d) for d in self.dims)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = _data(x)
        lead = 2 if self.varying else 1
        shape = tuple(-1 if s is None else s for s in self.dims)
        per = math.prod(d.shape[lead:])
        known = math.prod(s for s in self.dims if s is not None)
        if (per % known if -1 in shape else per != known):
            raise InputError(f'{where(self.name, "Input")}an input of {per} elements cannot be reshaped into '
                             f"dimensions {self._text()}.")
        out = d.reshape(*d.shape[:lead], *shape)
        return {"Output": Seq(out, x.lengths) if isinstance(x, Seq) else out}


class FlattenLayer(_OneInput):
    """Joins levels of an array into one: FlattenLayer() (math.inf) every level into a vector;
    FlattenLayer(n) the first n+1 levels; FlattenLayer(-n) the last n+1 levels. Flattening the
    steps of a ragged sequence with its elements gives each sequence length × (element size).

    Ports: "Input" (an array of rank ≥ 2 for n ≠ ∞), "Output".

    >>> FlattenLayer(Input=(2, 2))([[1, 2], [3, 4]])
    [1.0, 2.0, 3.0, 4.0]
    """

    def __init__(self, n=math.inf, **options):
        super().__init__(() if n == math.inf else (n,), options)
        if not (isinstance(n, float) and n == math.inf):
            n = _int(n, self.name, "n (the levels to flatten)")
            if n == 0:
                raise OptionError(f"{self.name}: n (the levels to flatten) must be a non-zero integer or math.inf, "
                                  "but was given 0.")
        self.n = n
        self._init_ports(options)

    def _span(self, rank: int) -> tuple[int, int]:
        """The 0-based levels [a, b) joined, for an input of this rank."""
        if self.n == math.inf:
            return 0, rank
        k = abs(self.n) + 1
        if k > rank:
            raise ShapeError(f'{where(self.name, "Input")}FlattenLayer({self.n}) joins {k} levels, but its input has '
                             f"rank {rank}.")
        return (0, k) if self.n > 0 else (rank - k, rank)

    def _output(self, t: ArrayType) -> ArrayType:
        if not t.dims:
            raise ShapeError(f'{where(self.name, "Input")}the layer expects an array, but its input is {describe(t)}.')
        a, b = self._span(len(t.dims))
        joined = t.dims[a:b]
        d = VARYING if VARYING in joined else math.prod(joined)
        return ArrayType((*t.dims[:a], d, *t.dims[b:]), t.integer, t.levels)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = _data(x)
        a, b = self._span(d.ndim - 1)
        out = d.flatten(a + 1, b) if b - a > 1 else d
        if isinstance(x, Seq):
            if a == 0:  # the steps joined with their elements: each length × the element size
                per = math.prod(d.shape[2:b + 1])
                return {"Output": Seq(out, None if x.lengths is None else x.lengths * per)}
            return {"Output": Seq(out, x.lengths)}
        return {"Output": out}


# ---- PartLayer ---------------------------------------------------------------------------------
def _span_text(s: slice) -> str:
    parts = ["1" if s.start is None else str(s.start), "All" if s.stop is None else str(s.stop)]
    if s.step not in (None, 1):
        parts.append(str(s.step))
    return ";;".join(parts)


class PartLayer(_OneInput):
    """A part of an array, as Wolfram's Part: PartLayer(i) the i-th element (negative i counts
    from the end); PartLayer(slice(i, j)) elements i through j (Wolfram's i;;j, 1-based and
    inclusive; slice(i, None) is i;;All, a step k as slice(i, j, k)); PartLayer([s1, s2, ...]) (or
    a tuple) s1 at level 1, s2 at level 2, ..., as Wolfram's PartLayer[{s1, s2, ...}], each one
    of the above, All, or a list of positions [i1, i2, ...] (those elements, in that order). On a
    ragged batch of sequences, positions at level 1 count within each sequence's own length; a
    span whose end is not fixed gives sequences of varying length.

    Ports: "Input" (an array or a sequence), "Output".

    >>> PartLayer(-1, Input=("Varying", 2))([[1, 2], [3, 4], [5, 6]])
    [5.0, 6.0]
    """

    def __init__(self, spec, **options):
        super().__init__((spec,), options)
        specs = tuple(spec) if isinstance(spec, tuple | list) else (spec,)
        if not specs:
            raise OptionError(f"{self.name}: the part specification must not be empty.")
        for s in specs:
            self._check_spec(s)
        self.specs = specs
        self._init_ports(options)

    def _check_spec(self, s) -> None:
        bad = OptionError(f"{self.name}: each part specification must be a non-zero integer, a slice (i;;j), a list of "
                          f"non-zero integers, or All, but was given {s!r}.")
        if s is All:
            return
        if isinstance(s, slice):
            for v in (s.start, s.stop):
                if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v == 0):
                    raise bad
            if s.step is not None and (isinstance(s.step, bool) or not isinstance(s.step, numbers.Integral)
                                       or s.step < 1):
                raise OptionError(f"{self.name}: the step of the span {_span_text(s)} must be a positive integer.")
            return
        if isinstance(s, list):
            if not s:
                raise bad
            if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v == 0 for v in s):
                raise bad
            return
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s == 0:
            raise bad

    @staticmethod
    def _fixed_span(s: slice) -> int | None:
        """The length of a span at a varying level when it is the same for every sequence."""
        if s.start is not None and s.start > 0 and s.stop is not None and s.stop > 0 and s.stop >= s.start:
            return (s.stop - s.start) // (s.step or 1) + 1
        return None

    def _positions(self, s, d: int, level: int) -> list:
        """0-based positions of spec s in a level of size d (a ShapeError if out of range)."""
        def pos(i):
            p = i - 1 if i > 0 else d + i
            if not 0 <= p < d:
                raise ShapeError(f'{where(self.name, "Input")}part {i} at level {level} does not exist: the input has '
                                 f"{d} elements there.")
            return p

        if isinstance(s, slice):
            a = pos(s.start) if s.start is not None else 0
            b = pos(s.stop) if s.stop is not None else d - 1
            if b < a:
                raise ShapeError(f'{where(self.name, "Input")}the span {_span_text(s)} at level {level} is empty for '
                                 f"a level of {d} elements.")
            return list(range(a, b + 1, s.step or 1))
        if isinstance(s, list):
            return [pos(i) for i in s]
        return [pos(s)]

    def _output(self, t: ArrayType) -> ArrayType:
        if len(self.specs) > len(t.dims):
            raise ShapeError(f'{where(self.name, "Input")}the part specification has {len(self.specs)} levels, but its '
                             f"input is {describe(t)}.")
        dims = []
        for level, (s, d) in enumerate(zip(self.specs, t.dims), 1):
            if s is All:
                dims.append(d)
            elif d == VARYING:
                if isinstance(s, list):
                    dims.append(len(s))
                elif isinstance(s, slice):
                    fixed = self._fixed_span(s)
                    dims.append(VARYING if fixed is None else fixed)
            else:
                p = self._positions(s, d, level)
                if isinstance(s, list | slice):
                    dims.append(len(p))
        dims += t.dims[len(self.specs):]
        return ArrayType(tuple(dims), t.integer, t.levels)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = _data(x)
        lengths = None
        varying = False
        axis = 1
        for level, s in enumerate(self.specs, 1):
            if s is All:
                axis += 1
                continue
            if level == 1 and (isinstance(x, Seq) or self._in["Input"].dims[:1] == (VARYING,)):
                d, lengths, varying = self._steps(x, d, s)
                if isinstance(s, list | slice):
                    axis += 1
                continue
            if axis >= d.ndim:
                raise InputError(f'{where(self.name, "Input")}the part specification has {len(self.specs)} levels, but '
                                 f"the input has rank {d.ndim - 1}.")
            try:
                p = self._positions(s, d.shape[axis], level)
            except ShapeError as e:
                raise InputError(str(e)) from None
            if isinstance(s, list | slice):
                d = d.index_select(axis, torch.tensor(p, device=d.device))
                axis += 1
            else:
                d = d.select(axis, p[0])
        if varying:
            return {"Output": _out_seq(d, lengths, True)}
        if isinstance(x, Seq) and self.specs[0] is All:
            return {"Output": Seq(d, x.lengths)}
        return {"Output": d}

    def _steps(self, x, d: torch.Tensor, s):
        """Level 1 of a sequence, each example within its own length L_b: (data, lengths, varying)."""
        L = _lengths_of(x)  # (B,)
        B = d.shape[0]

        shortest = int(L.min())

        def pos(i):  # (B,) 0-based positions of part i, checked against every length
            p = torch.full((B,), i - 1) if i > 0 else L + i
            if abs(i) > shortest:
                j = int((L < abs(i)).nonzero()[0])
                raise InputError(f'{where(self.name, "Input")}part {i} at level 1 does not exist'
                                 f"{f' in batch element {j + 1}' if B > 1 else ''}: that sequence has {int(L[j])} "
                                 "elements.")
            return p

        rows = torch.arange(B, device=d.device)

        def take(idx):  # idx (B, K) → data (B, K, ...)
            return d[rows.unsqueeze(1), idx.to(d.device)]

        if isinstance(s, list):
            return take(torch.stack([pos(i) for i in s], 1)), None, False
        if not isinstance(s, slice):
            return d[rows, pos(s).to(d.device)], None, False
        a = pos(s.start) if s.start is not None else torch.zeros(B, dtype=torch.int64)
        if (s.step or 1) == 1 and (s.start is None or s.start > 0):  # one start for all: a slice of the steps
            n = (L - 1 if s.stop is None else pos(s.stop)) - a + 1
            if int(n.min()) < 1:
                j = int((n < 1).nonzero()[0])
                raise InputError(f'{where(self.name, "Input")}the span {_span_text(s)} is empty'
                                 f"{f' in batch element {j + 1}' if B > 1 else ''}: that sequence has {int(L[j])} "
                                 "elements.")
            K = int(n.max())
            start = int(a[0])
            out = _zero_padding(d[:, start:start + K], n if int(n.min()) < K else None)
            fixed = self._fixed_span(s) is not None
            return out, (None if fixed else n), not fixed
        b = pos(s.stop) if s.stop is not None else L - 1
        step = s.step or 1
        n = torch.div(b - a, step, rounding_mode="floor") + 1
        short = (n < 1).nonzero()
        if len(short):
            j = int(short[0])
            raise InputError(f'{where(self.name, "Input")}the span {_span_text(s)} is empty'
                             f"{f' in batch element {j + 1}' if B > 1 else ''}: that sequence has {int(L[j])} "
                             "elements.")
        K = int(n.max())
        k = torch.arange(K).unsqueeze(0)  # (1, K)
        idx = (a.unsqueeze(1) + step * k).clamp(max=d.shape[1] - 1)  # past n_b: any real step, zeroed next
        out = _zero_padding(take(idx), n if int(n.min()) < K else None)
        fixed = self._fixed_span(s) is not None
        return out, (None if fixed else n), not fixed


# ---- ReplicateLayer ----------------------------------------------------------------------------
class ReplicateLayer(_OneInput):
    """Copies of its input along new levels: ReplicateLayer(n) an input of dimensions d1×d2×...
    → n×d1×d2×...; ReplicateLayer([n1, n2, ...]) → n1×n2×...×d1×...; ReplicateLayer(dims, m)
    with the new levels at position m (1-based) of the output's dimensions. A sequence stays a
    sequence (m ≥ 2): each of its elements is replicated.

    Ports: "Input" (an array), "Output" (its rank + the number of new levels).

    >>> ReplicateLayer(3, Input="Real")(2.0)
    [2.0, 2.0, 2.0]
    """

    def __init__(self, n, m=1, **options):
        super().__init__((n,) if m == 1 else (n, m), options)
        ns = n if isinstance(n, list | tuple) else [n]
        if not ns:
            raise OptionError(f"{self.name}: the replication sizes must not be empty.")
        self.ns = tuple(_int(k, self.name, "each replication size", 1) for k in ns)
        self.m = _int(m, self.name, "m (the position of the new levels)", 1)
        self._init_ports(options)

    def _output(self, t: ArrayType) -> ArrayType:
        rank = len(t.dims)
        if self.m > rank + 1:
            raise ShapeError(f'{where(self.name, "Input")}the new levels cannot be placed at position {self.m}: its '
                             f"input ({describe(t)}) has rank {rank}, so the position must be at most {rank + 1}.")
        if t.varying and self.m == 1:
            raise ShapeError(f'{where(self.name, "Input")}its input is a sequence of varying length, which must stay '
                             "the first level; place the new levels after it (m ≥ 2).")
        i = self.m - 1
        return ArrayType((*t.dims[:i], *self.ns, *t.dims[i:]), t.integer, t.levels)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d = _data(x)
        rank = d.ndim - 1
        if self.m > rank + 1:
            raise InputError(f'{where(self.name, "Input")}the new levels cannot be placed at position {self.m} of an '
                             f"input of rank {rank}.")
        i = self.m  # in the batched frame
        shape = (*d.shape[:i], *(1,) * len(self.ns), *d.shape[i:])
        out = d.reshape(shape).expand(*d.shape[:i], *self.ns, *d.shape[i:])
        return {"Output": Seq(out, x.lengths) if isinstance(x, Seq) else out}
