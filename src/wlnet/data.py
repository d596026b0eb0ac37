"""User data ⇄ batched tensors.

Lists, numpy arrays and torch tensors come in; the same kind goes out. Data one rank deeper
than the port is a batch. A batch of sequences of different lengths becomes a zero-padded
tensor with a lengths vector (`Seq`). Inside a net every value has a leading batch axis B.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .errors import InputError, where
from .shapes import VARYING, ArrayType, describe, describe_dims


class Seq(NamedTuple):
    """A batch of sequences: data (B, T, ...) zero-padded past each length; lengths (B,) int64
    on the CPU, or None when every sequence has length T."""

    data: torch.Tensor
    lengths: torch.Tensor | None

    @property
    def max_length(self) -> int:
        return self.data.shape[1]

    def length_list(self) -> list[int]:
        if self.lengths is None:
            return [self.data.shape[1]] * self.data.shape[0]
        return self.lengths.tolist()


class Batch(NamedTuple):
    """What a port read: the value, whether the user gave a batch, and the user's data kind."""

    value: object  # torch.Tensor or Seq
    batched: bool
    kind: str  # "list", "numpy" or "torch"
    size: int


def _kind(x) -> str:
    if isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    return "list"


def _depth(x) -> int:
    """Nesting depth of list data, following first elements (numpy/torch leaves add their rank)."""
    d = 0
    while True:
        if isinstance(x, list | tuple):
            if not x:
                return d + 1
            x = x[0]
            d += 1
        elif isinstance(x, np.ndarray | torch.Tensor):
            return d + x.ndim
        else:
            return d


def _received(x) -> str:
    if isinstance(x, str):
        return f"the string {x!r}"
    if isinstance(x, np.ndarray | torch.Tensor):
        return describe_dims(tuple(x.shape))
    try:
        return describe_dims(np.shape(x))
    except ValueError:
        return "a ragged nested list"


class PortReader:
    """Checks and converts the data of one port. Built once per port and reused across calls."""

    __slots__ = ("t", "layer", "port", "dtype", "rank", "varying")

    def __init__(self, t: ArrayType, layer: str, port: str):
        self.t = t
        self.layer = layer
        self.port = port
        self.dtype = torch.int64 if t.integer else torch.float32
        self.rank = t.rank
        self.varying = t.varying

    def fail(self, received: str, extra: str = "") -> InputError:
        return InputError(
            f"{where(self.layer)}data supplied to port \"{self.port}\" was {received}, "
            f"but expected {describe(self.t)}{' or a list of them' if self.rank is not None else ''}.{extra}"
        )

    def read(self, data) -> Batch:
        kind = _kind(data)
        if isinstance(data, str):
            raise self.fail(_received(data), " Strings need a NetEncoder on the port.")
        depth = data.ndim if kind != "list" else _depth(data)
        if self.rank is None:
            raise self.fail(_received(data))
        if depth == self.rank:
            value = self._tensor(data, kind)
            self._check(value, data)
            value = value.unsqueeze(0)
            if self.varying:
                value = Seq(value, None)
            return Batch(value, False, kind, 1)
        if depth == self.rank + 1:
            return self._read_batch(data, kind)
        raise self.fail(_received(data))

    def _tensor(self, data, kind) -> torch.Tensor:
        try:
            if kind == "torch":
                if data.dtype.is_complex or data.dtype == torch.bool:
                    raise TypeError
                x = data if data.dtype == self.dtype else data.to(self.dtype)
            elif kind == "numpy":
                if data.dtype.kind not in "biuf":
                    raise TypeError
                x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32 if self.dtype ==
                                                          torch.float32 else np.int64))
            else:
                x = torch.tensor(data, dtype=self.dtype)
        except (TypeError, ValueError, RuntimeError):
            raise self.fail(_received_kind(data), " Every entry must be a number.") from None
        return x

    def _check(self, x: torch.Tensor, data) -> None:
        dims = self.t.dims
        shape = x.shape
        if len(shape) != len(dims):
            raise self.fail(describe_dims(tuple(shape)))
        for i, (d, s) in enumerate(zip(dims, shape)):
            if s == 0:
                raise InputError(
                    f"{where(self.layer, self.port)}empty inputs are not permitted: the data had "
                    f"length 0 along dimension {i + 1}. Give at least one element."
                )
            if isinstance(d, int) and d != s:
                raise self.fail(describe_dims(tuple(shape)))
        if self.t.integer:
            if self.t.levels is not None and (x.min() < 1 or x.max() > self.t.levels):
                raise self.fail("an index out of range", f" Indices must lie between 1 and {self.t.levels}.")
        elif not bool(torch.isfinite(x).all()):
            raise InputError(
                f"{where(self.layer, self.port)}the data contains NaN or infinite values, which are not "
                "permitted. Replace them with finite numbers."
            )

    def _read_batch(self, data, kind) -> Batch:
        n = len(data)
        if n == 0:
            raise InputError(
                f"{where(self.layer, self.port)}empty inputs are not permitted: the batch has no "
                "elements. Give at least one example."
            )
        if kind != "list":
            x = self._tensor(data, kind)
            for el in x[:1]:
                self._check(el, data)
            self._check_batch(x)
            value = Seq(x, None) if self.varying else x
            return Batch(value, True, kind, n)
        try:
            x = self._tensor(data, "list") if not any(
                isinstance(e, np.ndarray | torch.Tensor) for e in data[:1]) else None
        except InputError:
            x = None
        if x is not None and x.ndim == self.rank + 1:
            self._check_batch(x)
            return Batch(Seq(x, None) if self.varying else x, True, kind, n)
        # ragged, or a list of arrays: convert each element
        elems = []
        for j, e in enumerate(data):
            try:
                t = self._tensor(e, _kind(e))
                self._check(t, e)
            except InputError as err:
                raise InputError(f"{err} (batch element {j + 1})") from None
            elems.append(t)
        lengths = [e.shape[0] for e in elems]
        if not self.varying and len(set(lengths)) > 1:
            raise self.fail("a ragged batch")
        x = torch.nn.utils.rnn.pad_sequence(elems, batch_first=True)
        if not self.varying:
            return Batch(x, True, kind if kind != "list" else "list", n)
        ragged = len(set(lengths)) > 1
        return Batch(Seq(x, torch.tensor(lengths) if ragged else None), True, "list", n)

    def _check_batch(self, x: torch.Tensor) -> None:
        dims = (None, *self.t.dims)
        shape = x.shape
        if len(shape) != len(dims):
            raise self.fail(describe_dims(tuple(shape)))
        if 0 in shape:
            raise InputError(
                f"{where(self.layer, self.port)}empty inputs are not permitted: the data had "
                f"shape {tuple(shape)}. Give at least one element in each sequence."
            )
        for d, s in zip(dims[1:], shape[1:]):
            if isinstance(d, int) and d != s:
                raise self.fail(f"a batch of {describe_dims(tuple(shape[1:]))}")
        if self.t.integer:
            if self.t.levels is not None and (x.min() < 1 or x.max() > self.t.levels):
                raise self.fail("an index out of range", f" Indices must lie between 1 and {self.t.levels}.")
        elif not bool(torch.isfinite(x).all()):
            raise InputError(
                f"{where(self.layer, self.port)}the data contains NaN or infinite values, which are not "
                "permitted. Replace them with finite numbers."
            )


def _received_kind(data) -> str:
    if isinstance(data, np.ndarray):
        return f"an array of dtype {data.dtype}"
    return "non-numeric data"


def write_port(value, batched: bool, kind: str):
    """The user's form of a port value (tensor (B, ...) or Seq)."""
    if isinstance(value, Seq):
        data, lengths = value
        if lengths is not None:
            items = [data[i, :l] for i, l in enumerate(lengths.tolist())]
            out = [_convert(e, kind) for e in items]
            return out if batched else out[0]
        value = data
    if not batched:
        value = value[0]
    return _convert(value, kind)


def _convert(x: torch.Tensor, kind: str):
    if kind == "torch":
        return x
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    if kind == "numpy":
        return x.numpy()
    return x.tolist()


__all__ = ["Seq", "Batch", "PortReader", "write_port", "VARYING"]
