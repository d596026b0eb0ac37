"""SequenceLastLayer, UnitVectorLayer, EmbeddingLayer."""

from __future__ import annotations

import torch

from ..data import Seq
from ..errors import OptionError, ShapeError, where
from ..shapes import VARYING, ArrayType, Index, Real, describe, parse_sequence_shape, parse_size, unify
from ..symbols import Automatic
from .base import Layer, _unset


class SequenceLastLayer(Layer):
    """The last element of a sequence (of each sequence's own length in a ragged batch)."""

    OPTIONS = {"Input": Automatic}

    def __init__(self, **options):
        super().__init__()
        self._check_options(options)
        self._given = options
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

    def forward(self, arrays, inputs, ctx, module):
        x = inputs["Input"]
        if isinstance(x, Seq):
            if x.lengths is None:
                return {"Output": x.data[:, -1]}
            idx = (x.lengths - 1).to(x.data.device)
            return {"Output": x.data[torch.arange(x.data.shape[0], device=x.data.device), idx]}
        return {"Output": x[:, -1]}

    def _option_code(self) -> str:
        return ""


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


class UnitVectorLayer(Layer):
    """Integer indices 1..n → one-hot vectors of size n."""

    OPTIONS = {"Input": Automatic}

    def __init__(self, n=Automatic, **options):
        super().__init__()
        self._check_options(options)
        self.n = parse_size(n, self.name, "n (the number of classes)")
        self._given = options
        self._in = {"Input": ArrayType(None, integer=True, levels=self.n)}
        self._out = {"Output": ArrayType(None)}

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        if t is None or t.dims is None:
            return self
        n = _index_classes(self, t)
        new = self._copy()
        new.n = n
        new._in["Input"] = ArrayType(t.dims, True, n)
        new._out["Output"] = Real(*t.dims, n)
        return new

    def forward(self, arrays, inputs, ctx, module):
        x = inputs["Input"]
        dtype = next((p.dtype for p in module.parameters()), torch.get_default_dtype())

        def onehot(t):
            return torch.nn.functional.one_hot((t - 1).clamp(min=0), self.n).to(dtype) * (t > 0).unsqueeze(-1)

        return {"Output": Seq(onehot(x.data), x.lengths) if isinstance(x, Seq) else onehot(x)}

    def _option_code(self) -> str:
        return "" if self.n is None else str(self.n)


class EmbeddingLayer(Layer):
    """Integer indices 1..n → trainable size-d vectors (row i of "Weights", n×d)."""

    OPTIONS = {"Input": Automatic, "Weights": Automatic, "LearningRateMultipliers": Automatic}

    def __init__(self, d, n=Automatic, **options):
        super().__init__()
        self._check_options(options)
        self.d = parse_size(d, self.name, "d (the embedding size)", allow_automatic=False)
        self.n = parse_size(n, self.name, "n (the number of classes)")
        self._given = options
        self._arrays = {"Weights": None}
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
        self._lr = self._parse_lr(options.get("LearningRateMultipliers", Automatic))

    def array_shapes(self) -> dict:
        return {"Weights": (self.n, self.d) if self.n is not None else None}

    def infer(self, inputs: dict) -> Layer:
        t = inputs.get("Input")
        if t is None or t.dims is None:
            return self
        n = _index_classes(self, t)
        new_t = unify(t, self._in["Input"], "the preceding layer", f'{self.name} port "Input"')
        new = self._copy()
        new.n = n
        new._in["Input"] = ArrayType(new_t.dims, True, new.n)
        new._out["Output"] = Real(*new_t.dims, self.d)
        return new

    def forward(self, arrays, inputs, ctx, module):
        x = inputs["Input"]
        w = arrays["Weights"]

        def embed(t):
            return torch.nn.functional.embedding((t - 1).clamp(min=0), w)

        return {"Output": Seq(embed(x.data), x.lengths) if isinstance(x, Seq) else embed(x)}

    def _option_code(self) -> str:
        return f"{self.d}" + (f", {self.n}" if self.n is not None else "")
