"""ConvolutionLayer and PoolingLayer in one dimension.

An input is k channels of length L: a k×L array ("Interleaving" -> False, Wolfram's default)
or a sequence of L size-k vectors ("Interleaving" -> True), whose length may vary. With a
kernel of size s, dilation d, stride r and padding a before and b after, the output has length

    L' = ⌊(L + a + b − d·(s − 1) − 1) / r⌋ + 1

each sequence of a ragged batch its own L'. Padding is zero for a convolution and for a mean
or total pooling (counted in the mean, as the padding positions are), and ignored by a max.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from ..core import options as O
from ..core.data import Seq
from ..core.errors import InputError, NotSupportedError, OptionError, ShapeError, where
from ..core.shapes import ANY, VARYING, ArrayType, Real, describe
from ..core.symbols import Automatic
from .base import Layer, _unset
from .shape import _input_type, _zero_padding


def _size(value, who: str, what: str, low: int = 1) -> int:
    """A size given as n or [n] (one dimension)."""
    v = value[0] if isinstance(value, list | tuple) and len(value) == 1 else value
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        raise OptionError(f"{where(who)}{what} must be an integer ≥ {low} (or a list of one), but was given {value!r}.")
    return int(v)


def _padding(value, who: str) -> tuple[int, int]:
    """PaddingSize: p (both ends), (a, b), or [[a, b]]."""
    v = value[0] if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list | tuple) else value
    if isinstance(v, list | tuple) and len(v) == 2:
        return _size(v[0], who, "PaddingSize", 0), _size(v[1], who, "PaddingSize", 0)
    p = _size(v, who, "PaddingSize", 0)
    return p, p


class _Conv1D(Layer):
    """What both layers share: the input's layout, the output length, ragged lengths."""

    def _init_geometry(self, options: dict, kernel: int, stride, dilation=1) -> None:
        self.kernel = kernel
        self.stride = _size(stride, self.name, "Stride")
        self.dilation = _size(dilation, self.name, "Dilation")
        pad = options.get("PaddingSize", 0)
        if pad == "Same":  # the output as long as the input: the kernel's reach split, the odd one after
            if self.stride != 1:
                raise NotSupportedError(f'{self.name}: PaddingSize "Same" with a stride other than 1 would pad each '
                                        "sequence of a batch by its own length; give the padding as (a, b).")
            total = self.dilation * (kernel - 1)
            self.pad = (total // 2, total - total // 2)
        else:
            self.pad = _padding(pad, self.name)
        inter = options.get("Interleaving", False)
        if not isinstance(inter, bool):
            raise OptionError(f"{self.name}: Interleaving must be True or False, but was given {inter!r}.")
        self.interleaving = inter

    def _layout(self, t: ArrayType) -> tuple:
        """(length, channels) of an input type (None where not known)."""
        if t.dims is None:
            return None, None
        if len(t.dims) != 2:
            form = "a sequence of vectors (L×k)" if self.interleaving else "a k×L array (channels first)"
            raise ShapeError(f'{where(self.name, "Input")}the layer expects {form}, but its input is {describe(t)}.')
        length, k = t.dims if self.interleaving else t.dims[::-1]
        if not self.interleaving and length == VARYING or k == VARYING:
            raise ShapeError(f'{where(self.name, "Input")}its input is {describe(t)}; with "Interleaving" -> False the '
                             'channels come first and the length cannot vary. Use "Interleaving" -> True for a '
                             "sequence of vectors.")
        return length, k

    def out_length(self, L):
        a, b = self.pad
        return (L + a + b - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    def _out_type(self, t: ArrayType, n) -> ArrayType:
        length, _ = self._layout(t)
        if isinstance(length, int):
            out = self.out_length(length)
            if out < 1:
                raise ShapeError(f'{where(self.name, "Input")}an input of length {length} is shorter than the kernel '
                                 f"(size {self.kernel}, dilation {self.dilation}, padding {self.pad}): no output "
                                 "remains.")
            length = out
        return Real(length, n) if self.interleaving else Real(n, length)

    def _channels_first(self, x, zero: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The input as (B, k, T), zero past each length (`zero`), and the output lengths (None: all
        the same)."""
        d = x.data if isinstance(x, Seq) else x
        lengths = x.lengths if isinstance(x, Seq) else None
        if d.ndim != 3:
            raise InputError(f'{where(self.name, "Input")}the layer expects a rank-2 input, but was given rank '
                             f"{d.ndim - 1}.")
        T = d.shape[1] if self.interleaving else d.shape[2]
        if self.out_length(T if lengths is None else int(lengths.min())) < 1:
            short = T if lengths is None else int(lengths.min())
            raise InputError(f'{where(self.name, "Input")}a sequence of length {short} is shorter than the kernel '
                             f"(size {self.kernel}, dilation {self.dilation}, padding {self.pad}).")
        if self.interleaving:
            d = (_zero_padding(d, lengths) if zero else d).transpose(1, 2)
        out_lengths = None if lengths is None else self.out_length(lengths)
        return d, out_lengths

    def _result(self, y: torch.Tensor, x, out_lengths):
        """y (B, n, T') → the output value in the input's layout."""
        if not self.interleaving:
            return y
        y = y.transpose(1, 2)
        if isinstance(x, Seq):
            if out_lengths is not None:
                top = int(out_lengths.max())
                y = y[:, :top]
                keep = torch.arange(top, device=y.device) < out_lengths.to(y.device).unsqueeze(1)
                y = y.masked_fill(~keep.unsqueeze(-1), 0.0)  # (a max over padding only is −inf there)
                if int(out_lengths.min()) == top:
                    out_lengths = None
            return Seq(y, out_lengths)
        return y


class ConvolutionLayer(_Conv1D):
    """A trainable 1-D convolution: n output channels, kernel size s. Each output step is
    W ⋆ (the s input steps under the kernel) + b, with "Weights" n×(k/g)×s and "Biases" n.

    Options: "Stride" (1), "PaddingSize" (0, p, (a, b), or "Same" for stride 1), "Dilation" (1), "ChannelGroups" (g, 1),
    "Interleaving" (False: input k×L, output n×L'; True: input a sequence of size-k vectors,
    output a sequence of size-n vectors), Input, "Weights", "Biases" (None for none),
    LearningRateMultipliers.

    Ports: "Input", "Output".

    >>> conv = ConvolutionLayer(1, 2, Interleaving=True, Input=("Varying", 1), Weights=[[[1.0, 1.0]]], Biases=[0.0])
    >>> conv([[1.0], [2.0], [3.0]])
    [[3.0], [5.0]]
    """

    OPTIONS = {"Input": Automatic, "Weights": Automatic, "Biases": Automatic, "Stride": 1, "PaddingSize": 0,
               "Dilation": 1, "ChannelGroups": 1, "Interleaving": False, "LearningRateMultipliers": Automatic}

    def __init__(self, n, s, **options):
        names = ("Weights",) + (("Biases",) if options.get("Biases", Automatic) is not None else ())
        super().__init__((n, s), options, names)
        self.n = O.positive_int(n, self.name, "n (the output channels)", allow_automatic=False)
        self._init_geometry(options, _size(s, self.name, "s (the kernel size)"), options.get("Stride", 1),
                            options.get("Dilation", 1))
        self.groups = _size(options.get("ChannelGroups", 1), self.name, "ChannelGroups")
        if self.n % self.groups:
            raise OptionError(f"{self.name}: the {self.n} output channels cannot be split into ChannelGroups="
                              f"{self.groups} groups.")
        spec = options.get("Input", Automatic)
        t = _input_type(self, spec)
        if t.dims is None:
            t = Real(VARYING, None) if self.interleaving else Real(None, None)
        k = self._layout(t)[1]
        if not _unset(options.get("Weights")):
            w = self._array_option("Weights", options["Weights"], (self.n, None, self.kernel))
            k = w.shape[1] * self.groups
            t = Real(t.dims[0], k) if self.interleaving else Real(k, t.dims[1])
            self._arrays["Weights"] = w
        if "Biases" in self._arrays and not _unset(options.get("Biases")):
            self._arrays["Biases"] = self._array_option("Biases", options["Biases"], (self.n,))
        self._in = {"Input": t}
        self._derive()

    def _accept(self, port, t) -> None:
        _, k = self._layout(t)
        if isinstance(k, int) and k % self.groups:
            raise ShapeError(f'{where(self.name, "Input")}its input has {k} channels, which cannot be split into '
                             f"ChannelGroups={self.groups} groups.")
        w = self._arrays.get("Weights")
        if w is not None and isinstance(k, int) and w.shape[1] * self.groups != k:
            raise ShapeError(f'{where(self.name, "Input")}its input has {k} channels, but the weights take '
                             f"{w.shape[1] * self.groups}.")

    def _derive(self) -> None:
        t = self._in["Input"]
        self._accept("Input", t)
        self._out = {"Output": self._out_type(t, self.n)}

    def array_shapes(self) -> dict:
        k = self._layout(self._in["Input"])[1]
        shapes = {"Weights": None if k is None else (self.n, k // self.groups, self.kernel)}
        if "Biases" in self._arrays:
            shapes["Biases"] = (self.n,)
        return shapes

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        d, out_lengths = self._channels_first(x)
        w = arrays["Weights"]
        if d.shape[1] != w.shape[1] * self.groups:
            raise InputError(f'{where(self.name, "Input")}the input has {d.shape[1]} channels, but the layer takes '
                             f"{w.shape[1] * self.groups}.")
        a, b = self.pad
        if a or b:
            d = F.pad(d, (a, b))
        y = F.conv1d(d, w, arrays.get("Biases"), stride=self.stride, dilation=self.dilation, groups=self.groups)
        return {"Output": self._result(y, x, out_lengths)}


_POOL = ("Max", "Mean", "Total")


class PoolingLayer(_Conv1D):
    """Pools windows of s steps of each channel with "Function" "Max" (the default), "Mean" or
    "Total": PoolingLayer(s) with stride 1, PoolingLayer(s, r) with stride r.

    Options: "Function", "Stride", "PaddingSize" (0, p, (a, b), or "Same" for stride 1), "Interleaving" (False: input
    k×L; True: a sequence of size-k vectors), Input.

    Ports: "Input", "Output" (the same channels, length L').

    >>> PoolingLayer(2, 2, Interleaving=True, Input=("Varying", 1))([[1.0], [3.0], [2.0], [0.0]])
    [[3.0], [2.0]]
    """

    OPTIONS = {"Input": Automatic, "Function": "Max", "Stride": Automatic, "PaddingSize": 0, "Interleaving": False}

    def __init__(self, s, r=Automatic, **options):
        super().__init__((s,) if r is Automatic else (s, r), options)
        stride = options.get("Stride", Automatic)
        if r is not Automatic and not _unset(stride):
            raise OptionError(f"{self.name}: give the stride once, as the second argument or as Stride.")
        stride = r if r is not Automatic else stride
        self._init_geometry(options, _size(s, self.name, "s (the window size)"), 1 if _unset(stride) else stride)
        f = options.get("Function", "Max")
        self.f = O.one_of(f, _POOL, self.name, "Function")
        t = _input_type(self, options.get("Input", Automatic))
        self._in = {"Input": t}
        self._derive()

    def _accept(self, port, t) -> None:
        self._layout(t)

    def _derive(self) -> None:
        t = self._in["Input"]
        if t.dims is None:
            self._out = {"Output": ANY}
            return
        _, k = self._layout(t)
        self._out = {"Output": self._out_type(t, k)}

    def forward(self, arrays, inputs, ctx):
        x = inputs["Input"]
        a, b = self.pad
        if self.f == "Max":
            ragged = self.interleaving and isinstance(x, Seq) and x.lengths is not None
            if ragged:  # past each length: −inf, ignored by the max (masked before the transpose: contiguous)
                x = Seq(x.data.masked_fill(~x.mask().unsqueeze(-1), float("-inf")), x.lengths)
            d, out_lengths = self._channels_first(x, zero=False)
            if a or b:
                d = F.pad(d, (a, b), value=float("-inf"))
            y = F.max_pool1d(d, self.kernel, self.stride)
            if a >= self.kernel or b >= self.kernel:  # a window of padding only gives 0
                y = torch.where(torch.isinf(y), torch.zeros((), dtype=y.dtype, device=y.device), y)
            return {"Output": self._result(y, x, out_lengths)}
        d, out_lengths = self._channels_first(x)
        if a or b:
            d = F.pad(d, (a, b))
        y = F.avg_pool1d(d, self.kernel, self.stride)
        if self.f == "Total":
            y = y * self.kernel
        return {"Output": self._result(y, x, out_lengths)}
