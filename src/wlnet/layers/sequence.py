"""SequenceLastLayer, UnitVectorLayer, EmbeddingLayer."""

from __future__ import annotations

import torch

from .. import options as O
from ..data import Seq
from ..errors import OptionError, ShapeError, where
from ..shapes import VARYING, ArrayType, Index, Real, describe, parse_sequence_shape
from ..symbols import Automatic
from .base import Layer, _unset


class SequenceLastLayer(Layer):
    """The last element of a sequence (of each sequence's own length in a ragged batch)."""

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
        if isinstance(x, Seq):
            if x.lengths is None:
                return {"Output": x.data[:, -1]}
            idx = (x.lengths - 1).to(x.data.device)
            return {"Output": x.data[torch.arange(x.data.shape[0], device=x.data.device), idx]}
        return {"Output": x[:, -1]}


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
    them, a batch); in a net, whatever array of indices precedes it."""

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
    """Integer indices 1..n → trainable size-d vectors (row i of "Weights", n×d)."""

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
