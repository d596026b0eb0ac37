"""SequenceLastLayer, UnitVectorLayer, EmbeddingLayer; SequenceMostLayer, SequenceRestLayer,
SequenceReverseLayer, AggregationLayer."""

from __future__ import annotations

import numbers

import torch

from ..coders.encoders import NetEncoder
from ..core import options as O
from ..core.data import Seq, noted
from ..core.errors import InputError, OptionError, ShapeError, where
from ..core.shapes import VARYING, ArrayType, Index, Real, describe, parse_sequence_shape, unify
from ..core.symbols import All, Automatic
from .base import Layer, _unset


class SequenceLastLayer(Layer):
    """The last element of a sequence (of each sequence's own length in a ragged batch).

    >>> SequenceLastLayer()([[1, 2], [3, 4]])
    [3.0, 4.0]
    """

    OPTIONS = {"Input": Automatic}

    def __init__(self, **options):
        super().__init__((), options)
        spec = options.get("Input", Automatic)
        t = ArrayType((VARYING, None)) if _unset(spec) else parse_sequence_shape(spec, self.name, "Input")
        self._in = {"Input": t}
        self._out = {"Output": ArrayType(t.dims[1:]) if t.dims[1] is not None else ArrayType(None)}

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        if t is None or t.dims is None:
            return self
        if len(t.dims) < 1:
            raise ShapeError(
                f'{where(self.name, "Input")}the layer expects a sequence, but its input is {describe(t)}.'
            )
        new = self._copy()
        new._in["Input"] = t
        new._out["Output"] = ArrayType(t.dims[1:], t.integer, t.levels)
        return new

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        last = last_of(x.data if isinstance(x, Seq) else x)
        if last is not None:  # a recurrent layer's output: its final state, without a gather
            return {"Output": last}
        if isinstance(x, Seq):
            if x.lengths is None:
                return {"Output": x.data[:, -1]}
            idx = (x.lengths - 1).to(x.data.device)
            return {"Output": x.data[torch.arange(x.data.shape[0], device=x.data.device), idx]}
        return {"Output": x[:, -1]}


def last_of(out: torch.Tensor) -> torch.Tensor | None:
    """A recurrent layer's output sequences (B, T, n) → each one's element at its own last step,
    which is the layer's final state; None if `out` did not come so (or was changed in place)."""
    return noted(out, "_wlnet_last")


def _index_classes(layer, t: ArrayType) -> int | None:
    """The number of classes of an index input t for a layer with `layer.n` classes (None:
    infer); a ShapeError if t is not integer or its indices exceed layer.n."""
    if not t.integer:
        raise ShapeError(f'{where(layer.name, "Input")}the layer expects integer indices, but its input is '
                         f'{describe(t)}. Use an encoder in "Index" form.')
    if layer.n is not None and t.levels is not None and t.levels > layer.n:
        raise ShapeError(f'{where(layer.name, "Input")}indices go up to {t.levels}, but the layer has only '
                         f"{layer.n} classes.")
    return layer.n or t.levels


class _IndexInput(Layer):
    """A layer whose input is integer indices 1..n and whose output adds a last dimension of
    `_vector_size()` (n for one-hot vectors, d for embeddings)."""

    def _accept(self, port, t) -> None:
        _index_classes(self, t)

    def _derive(self) -> None:
        t = self._in["Input"]
        self.n = self.n or t.levels
        self._in["Input"] = ArrayType(t.dims, True, self.n)
        self._out = {"Output": Real(*t.dims, self._vector_size())}


class UnitVectorLayer(_IndexInput):
    """Integer indices 1..n → one-hot vectors of size n. Alone, it takes an index (or a list of
    them, a batch); in a net, whatever array of indices precedes it.

    >>> UnitVectorLayer(3)([1, 3])
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """

    OPTIONS = {"Input": Automatic}

    def __init__(self, n=Automatic, **options):
        super().__init__(() if n is Automatic else (n,), options)
        self.n = O.positive_int(n, self.name, "n (the number of classes)")
        self._in = {"Input": ArrayType(None, integer=True, levels=self.n)}
        self._out = {"Output": ArrayType(None)}

    def input_ports(self) -> dict:
        t = self._in["Input"]
        return {"Input": ArrayType((), True, t.levels)} if t.dims is None else dict(self._in)

    def _vector_size(self) -> int | None:
        return self.n

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        if self.n is None:
            raise ShapeError(f'{where(self.name, "Input")}the number of classes is not known; give it: '
                             "UnitVectorLayer(n).")
        dtype = torch.get_default_dtype()

        def onehot(t):
            return torch.nn.functional.one_hot((t - 1).clamp(min=0), self.n).to(dtype) * (t > 0).unsqueeze(-1)

        return {"Output": Seq(onehot(x.data), x.lengths) if isinstance(x, Seq) else onehot(x)}


class EmbeddingLayer(_IndexInput):
    """Integer indices 1..n → trainable size-d vectors (row i of "Weights", n×d).

    >>> len(NetInitialize(EmbeddingLayer(3, 5))([1, 2, 5]))
    3
    """

    OPTIONS = {"Input": Automatic, "Weights": Automatic, "LearningRateMultipliers": Automatic}

    def __init__(self, d, n=Automatic, **options):
        super().__init__((d,) if n is Automatic else (d, n), options, ("Weights",))
        self.d = O.positive_int(d, self.name, "d (the embedding size)", allow_automatic=False)
        self.n = O.positive_int(n, self.name, "n (the number of classes)")
        if not _unset(options.get("Weights")):
            w = self._array_option("Weights", options["Weights"], (self.n, self.d))
            self.n = w.shape[0]
            self._arrays["Weights"] = w
        if "Input" in options and options["Input"] not in (None, Automatic):
            spec = options["Input"]
            if spec != VARYING and spec != (VARYING,):
                raise OptionError(f'{self.name}: option Input must be "Varying" (a sequence of indices), '
                                  f"but was given {spec!r}.")
        self._in = {"Input": Index(VARYING, levels=self.n)}
        self._out = {"Output": Real(VARYING, self.d)}

    def array_shapes(self) -> dict:
        return {"Weights": (self.n, self.d) if self.n is not None else None}

    def _vector_size(self) -> int:
        return self.d

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        w = arrays["Weights"]

        def embed(t):
            return torch.nn.functional.embedding((t - 1).clamp(min=0), w)

        return {"Output": Seq(embed(x.data), x.lengths) if isinstance(x, Seq) else embed(x)}


# ---- layers on a sequence of any elements -------------------------------------------------------
def _sequence_type(layer: Layer, spec) -> ArrayType:
    """An Input option of a sequence layer: Automatic, "Varying", (len, d2, ...) with len an int or
    "Varying" and the rest sizes or Automatic, or a NetEncoder producing a sequence."""
    if _unset(spec):
        return ArrayType((VARYING, None))
    if isinstance(spec, NetEncoder):
        layer.encoders = {"Input": spec}
        return spec.output_type
    if spec == VARYING:
        return Real(VARYING, None)
    if isinstance(spec, tuple | list) and spec:
        try:
            length = spec[0] if spec[0] == VARYING else O.positive_int(spec[0], layer.name, "Input", False,
                                                                         ShapeError)
            rest = [O.positive_int(d, layer.name, "Input", True, ShapeError) for d in spec[1:]]
            return Real(length, *rest)
        except ShapeError:
            pass
    raise ShapeError(f'{where(layer.name)}option Input must be "Varying", a shape (len, d2, ...) whose first '
                     f'dimension is a length or "Varying", or a NetEncoder, but was given {spec!r}.')


class _SequenceLayer(Layer):
    """A layer on a sequence of elements of any kind (vectors, numbers, indices, ...): the
    input type is taken whole from the preceding layer, unified with the Input option if given."""

    OPTIONS = {"Input": Automatic}
    SHORTEST = 1  # the shortest sequence the layer takes
    _why = ""  # why a shorter one cannot be taken

    def __init__(self, args: tuple, options: dict):
        super().__init__(args, options)
        self._declared = not _unset(options.get("Input"))
        self._in = {"Input": _sequence_type(self, options.get("Input", Automatic))}
        self._accept("Input", self._in["Input"])
        self._derive()

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        if t is None or t.dims is None:
            return self
        self._accept("Input", t)
        if self._declared or t.rank == self._in["Input"].rank:
            t = unify(t, self._in["Input"], "the preceding layer", f'{self.name} port "Input"')
        if t == self._in["Input"]:
            return self
        new = self._copy()
        new._in = {"Input": t}
        new._declared = True  # from now on the type is the neighbour's, refined by later inference
        new._derive()
        return new

    def _accept(self, port, t) -> None:
        if t.dims is not None and len(t.dims) < 1:
            raise ShapeError(f'{where(self.name, "Input")}the layer expects a sequence, but its input is '
                             f"{describe(t)}.")
        if t.dims and isinstance(t.dims[0], int) and t.dims[0] < self.SHORTEST:
            raise ShapeError(f'{where(self.name, "Input")}the input is {describe(t)}, but the layer needs sequences of '
                             f"at least {self.SHORTEST} elements: {self._why}.")

    def _derive(self) -> None:
        t = self._in["Input"]
        length = t.dims[0]
        if isinstance(length, int):
            length -= self.SHORTEST - 1
        self._out = {"Output": ArrayType((length, *t.dims[1:]), t.integer, t.levels)}

    def _check_lengths(self, x) -> None:
        """An InputError if a sequence of the batch is shorter than SHORTEST."""
        lengths = x.length_list() if isinstance(x, Seq) else [x.shape[1]] * x.shape[0]
        j, short = min(enumerate(lengths), key=lambda e: e[1])
        if short < self.SHORTEST:
            which = f"batch element {j + 1} has" if len(lengths) > 1 else "the input has"
            raise InputError(f'{where(self.name, "Input")}the layer needs sequences of at least {self.SHORTEST} '
                             f"elements ({self._why}), but {which} {short}.")


def _drop(x, first: bool):
    """x (a Seq or a tensor (B, T, ...)) without the first or the last element of each sequence."""
    if not isinstance(x, Seq):
        return x[:, 1:] if first else x[:, :-1]
    if x.lengths is None:
        return Seq(x.data[:, 1:] if first else x.data[:, :-1], None)
    lengths = x.lengths - 1
    top = int(lengths.max())
    data = x.data[:, 1:top + 1] if first else x.data[:, :top]
    mask = Seq(data, lengths).mask().view(*data.shape[:2], *(1,) * (data.ndim - 2))
    data = torch.where(mask, data, torch.zeros((), dtype=data.dtype, device=data.device))  # the old last element
    return Seq(data, None if int(lengths.min()) == top else lengths)


class _DropLayer(_SequenceLayer):
    """A sequence without its first element (`_FIRST`) or its last."""

    SHORTEST = 2
    _FIRST = False

    def __init__(self, **options):
        super().__init__((), options)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        self._check_lengths(x)
        return {"Output": _drop(x, first=self._FIRST)}


class SequenceMostLayer(_DropLayer):
    """A sequence without its last element (each sequence of a ragged batch without its own last
    element): x_1..x_T → x_1..x_{T-1}. Every sequence needs at least 2 elements.

    Ports: "Input" (a sequence, T×...), "Output" ((T-1)×...).

    >>> SequenceMostLayer()([[1, 2], [3, 4], [5, 6]])  # doctest: +SKIP
    [[1.0, 2.0], [3.0, 4.0]]
    """

    _why = "removing the last element would leave nothing"


class SequenceRestLayer(_DropLayer):
    """A sequence without its first element: x_1..x_T → x_2..x_T. Every sequence needs at least
    2 elements.

    Ports: "Input" (a sequence, T×...), "Output" ((T-1)×...).

    >>> SequenceRestLayer()([[1, 2], [3, 4], [5, 6]])  # doctest: +SKIP
    [[3.0, 4.0], [5.0, 6.0]]
    """

    _why = "removing the first element would leave nothing"
    _FIRST = True


class SequenceReverseLayer(_SequenceLayer):
    """A sequence in reverse order: x_1..x_T → x_T..x_1; each sequence of a ragged batch is
    reversed within its own length.

    Ports: "Input" (a sequence, T×...), "Output" (T×...).

    >>> SequenceReverseLayer()([[1, 2], [3, 4], [5, 6]])  # doctest: +SKIP
    [[5.0, 6.0], [3.0, 4.0], [1.0, 2.0]]
    """

    def __init__(self, **options):
        super().__init__((), options)

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        return {"Output": x.flip() if isinstance(x, Seq) else x.flip(1)}


# ---- AggregationLayer -------------------------------------------------------------------------------
_AGGREGATE = {
    "Max": (lambda x, dims: x.amax(dims), float("-inf")),
    "Min": (lambda x, dims: x.amin(dims), float("inf")),
    "Total": (lambda x, dims: x.sum(dims), 0.0),
    "Mean": (lambda x, dims: x.mean(dims), 0.0),
    "Times": (lambda x, dims: _prod(x, dims), 1.0),
}


def _prod(x, dims):
    for d in sorted(dims, reverse=True):
        x = x.prod(d)
    return x


def _levels_code(levels) -> str:
    if isinstance(levels, slice):
        return f"{levels.start};;{'All' if levels.stop is None else levels.stop}"
    return repr(levels)


class AggregationLayer(Layer):
    """Aggregates an array with f ("Max", "Min", "Mean", "Total" or "Times") over some of its
    levels (1-based; negative levels count from the end):

    AggregationLayer(f) is AggregationLayer(f, slice(2, None)) (Wolfram's 2;;All): an array
    d1×d2×... becomes a vector of size d1, so a sequence of vectors becomes a sequence of
    numbers; AggregationLayer(f, 1) aggregates over the first level, a sequence of vectors into
    one vector (over each sequence's real steps only in a ragged batch); a list [n1, n2, ...]
    aggregates those levels, slice(n1, n2) levels n1 to n2 (slice(n1, None): n1 to the last).

    Ports: "Input" (an array), "Output" (the array without the aggregated levels).

    >>> AggregationLayer("Max", 1)([[1, 4], [3, 2]])  # doctest: +SKIP
    [3.0, 4.0]
    """

    OPTIONS = {"Input": Automatic}

    def __init__(self, f, levels=slice(2, None), **options):
        default = isinstance(levels, slice) and levels == slice(2, None)
        super().__init__((f,) if default else (f, levels), options)
        if not isinstance(f, str) or f not in _AGGREGATE:
            raise OptionError(f"{self.name}: the aggregation function must be one of "
                              f"{', '.join(repr(k) for k in _AGGREGATE)}, but was given {f!r}.")
        self.f = f
        self.levels = self._parse_levels(levels)
        spec = options.get("Input", Automatic)
        if _unset(spec):
            t = ArrayType(None)
        elif isinstance(spec, int) and not isinstance(spec, bool):
            t = Real(O.positive_int(spec, self.name, "Input", False, ShapeError))
        else:
            t = _sequence_type(self, spec)
        self._in = {"Input": t}
        self._derive()

    def _parse_levels(self, levels):
        def level(n):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n == 0:
                raise ValueError
            return int(n)

        try:
            if isinstance(levels, slice):
                if levels.step is not None:
                    raise ValueError
                return slice(level(levels.start), None if levels.stop in (None, All) else level(levels.stop))
            if isinstance(levels, list | tuple) and levels:
                return tuple(level(n) for n in levels)
            return (level(levels),)
        except (ValueError, TypeError):
            raise OptionError(f"{self.name}: the levels must be a non-zero integer n, a list of them [n1, n2, ...], "
                              f"or slice(n1, n2) (n1;;n2, with None for All), but was given {levels!r}.") from None

    def _axes(self, rank: int) -> tuple:
        """The aggregated axes (0-based) of an array of this rank; a ShapeError if there are none
        or a level does not exist."""
        def axis(n):
            if not (1 <= n <= rank or -rank <= n <= -1):
                raise ShapeError(f'{where(self.name, "Input")}level {n} does not exist for an input of rank {rank}; '
                                 f"the levels of this input are 1 to {rank} (or -{rank} to -1).")
            return n - 1 if n > 0 else rank + n

        lv = self.levels
        if isinstance(lv, slice):
            if rank == 0:
                axes = ()
            else:
                a = axis(lv.start) if -rank <= lv.start <= rank else None
                b = rank - 1 if lv.stop is None else axis(lv.stop)
                axes = () if a is None else tuple(range(a, b + 1))
        else:
            axes = tuple(sorted({axis(n) for n in lv}))
        if not axes:
            raise ShapeError(f'{where(self.name, "Input")}the levels {_levels_code(lv)} select no level of an input '
                             f"of rank {rank}. Give the levels to aggregate, e.g. AggregationLayer({self.f!r}, 1).")
        return axes

    def _accept(self, port, t) -> None:
        if t.integer:
            raise ShapeError(f'{where(self.name, "Input")}the layer aggregates real arrays, but its input is '
                             f"{describe(t)}.")
        self._axes(len(t.dims))

    def _derive(self) -> None:
        t = self._in["Input"]
        if t.dims is None:
            self._out = {"Output": ArrayType(None)}
            return
        self._accept("Input", t)
        axes = self._axes(len(t.dims))
        self._out = {"Output": Real(*(d for a, d in enumerate(t.dims) if a not in axes))}

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        data = x.data if isinstance(x, Seq) else x
        axes = self._axes(data.ndim - 1)
        dims = tuple(a + 1 for a in axes)  # in the batch frame
        reduce, fill = _AGGREGATE[self.f]
        if not isinstance(x, Seq):
            return {"Output": reduce(data, dims)}
        if 0 not in axes:
            return {"Output": Seq(reduce(data, dims), x.lengths)}
        if x.lengths is None:
            return {"Output": reduce(data, dims)}
        mask = x.mask().view(*data.shape[:2], *(1,) * (data.ndim - 2))
        if self.f == "Mean":  # over the real steps only
            total = torch.where(mask, data, torch.zeros((), dtype=data.dtype, device=data.device)).sum(dims)
            count = x.lengths.to(data.device, data.dtype)
            for a in axes[1:]:
                count = count * data.shape[a + 1]
            return {"Output": total / count.view(-1, *(1,) * (total.ndim - 1))}
        return {"Output": reduce(torch.where(mask, data, torch.full((), fill, dtype=data.dtype, device=data.device)),
                                 dims)}
