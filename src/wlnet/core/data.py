"""User data ⇄ batched tensors.

Lists, numpy arrays and torch tensors come in; the same kind goes out. Data one rank deeper
than the port is a batch. A batch of sequences of different lengths becomes a zero-padded
tensor with a lengths vector (`Seq`). Inside a net every value has a leading batch axis B.
"""

from __future__ import annotations

import itertools
import math
import numbers
from typing import NamedTuple

import numpy as np
import torch

from .errors import InputError, where
from .shapes import ANY, VARYING, ArrayType, ListType, describe, describe_dims


class Seq(NamedTuple):
    """A batch of sequences: data (B, T, ...) zero-padded past each length; lengths (B,) int64
    on the CPU, or None when every sequence has length T."""

    data: torch.Tensor
    lengths: torch.Tensor | None

    def length_list(self) -> list[int]:
        if self.lengths is None:
            return [self.data.shape[1]] * self.data.shape[0]
        return self.lengths.tolist()

    def take(self, rows) -> Seq:
        """The sequences at `rows` (a slice, or int64 indices on the CPU), padded only to
        their own longest length."""
        if isinstance(rows, slice):
            if self.lengths is None:
                return Seq(self.data[rows], None)
            lengths = self.lengths[rows]
            top, low = int(lengths.max()), int(lengths.min())
            return Seq(self.data[rows, :top], None if low == top else lengths)
        if self.lengths is None:
            return Seq(self.data.index_select(0, rows.to(self.data.device)), None)
        lengths = torch.from_numpy(self.lengths.numpy()[rows.numpy()])  # (numpy: µs less than torch here)
        ln = lengths.numpy()
        top, low = int(ln.max()), int(ln.min())
        data = self.data.narrow(1, 0, top) if top < self.data.shape[1] else self.data
        return Seq(data.index_select(0, rows.to(self.data.device)), None if low == top else lengths)  # (B', T', ...)

    def to(self, device, dtype=None) -> Seq:
        """Moved to `device`; real data cast to `dtype` (integer indices keep theirs); lengths stay on the CPU."""
        return Seq(move(self.data, device, dtype), self.lengths)

    @staticmethod
    def cat(parts: list) -> Seq:
        """Batches of sequences one after another, padded to the longest."""
        T = max(p.data.shape[1] for p in parts)
        data = torch.cat([torch.nn.functional.pad(p.data, (0, 0) * (p.data.ndim - 2) + (0, T - p.data.shape[1]))
                          for p in parts])
        if all(p.lengths is None and p.data.shape[1] == T for p in parts):
            return Seq(data, None)
        return Seq(data, torch.cat([torch.tensor(p.length_list()) for p in parts]))

    def mask(self) -> torch.Tensor | None:
        """(B, T) bool on the data's device: True at the real steps (None when every sequence has length T)."""
        if self.lengths is None:
            return None
        T = self.data.shape[1]
        return torch.arange(T, device=self.data.device) < self.lengths.to(self.data.device).unsqueeze(1)

    def flip(self) -> Seq:
        """Each sequence reversed within its own length (padding stays at the end)."""
        if self.lengths is None:
            return Seq(self.data.flip(1), None)
        B, T = self.data.shape[:2]
        lengths = self.lengths.to(self.data.device)
        t = torch.arange(T, device=self.data.device).unsqueeze(0)  # (1, T)
        src = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)  # (B, T)
        index = src.view(B, T, *(1,) * (self.data.ndim - 2)).expand_as(self.data)
        return Seq(self.data.gather(1, index), self.lengths)


def note(t: torch.Tensor, key: str, value) -> None:
    """Attach to the tensor a layer made something a later layer can use instead of recomputing
    it from t (`noted`): softmax's input, a recurrent layer's final state."""
    setattr(t, key, (value, t._version))


def noted(t: torch.Tensor, key: str):
    """What `note` attached to t under key, or None: none attached, or t changed in place since."""
    made = getattr(t, key, None)
    return made[0] if made is not None and made[1] == t._version else None


def move(t: torch.Tensor, device, dtype=None) -> torch.Tensor:
    """t on `device`, real entries as `dtype` (None: unchanged); integer tensors keep their dtype."""
    keep_dtype = dtype is None or not t.dtype.is_floating_point
    if t.device == device and (keep_dtype or t.dtype == dtype):  # (a call to `to` costs µs even then)
        return t
    return t.to(device=device) if keep_dtype else t.to(device=device, dtype=dtype)


def take_rows(v, rows):
    """Rows of a value (tensor (B, ...) or Seq), of a list of values (a list port's) or of a dict of values."""
    if isinstance(v, dict):
        return {p: take_rows(x, rows) for p, x in v.items()}
    if isinstance(v, list):
        return [take_rows(x, rows) for x in v]
    if isinstance(v, Seq):
        return v.take(rows)
    if v is None:
        return None
    return v[rows] if isinstance(rows, slice) else v.index_select(0, rows.to(v.device))


def cat_rows(parts: list):
    """Values (tensors, Seqs, dicts of them, None for a state left out) joined along the batch axis."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, dict):
        return {p: cat_rows([v[p] for v in parts]) for p in first}
    if isinstance(first, Seq):
        return Seq.cat(parts)
    return torch.cat(parts)


def move_all(values: dict, device, dtype) -> dict:
    """Every value of a dict (tensor, Seq, list of them, or None) moved to `device` and `dtype` (None: dtypes kept)."""
    def one(v):
        if v is None:
            return None
        if isinstance(v, list):
            return [one(x) for x in v]
        return v.to(device, dtype) if isinstance(v, Seq) else move(v, device, dtype)

    return {p: one(v) for p, v in values.items()}


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


def _is_empty(x) -> bool:
    """Whether list data, following first elements, reaches an empty list or array."""
    while True:
        if isinstance(x, list | tuple):
            if not x:
                return True
            x = x[0]
        elif isinstance(x, np.ndarray | torch.Tensor):
            return 0 in x.shape
        else:
            return False


_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64}
_SMALL = 512  # up to this many entries, a scan in Python is cheaper than a torch reduction


def _all_finite(x: torch.Tensor) -> bool:
    if x.requires_grad:
        x = x.detach()
    if x.numel() <= _SMALL and x.dim() <= 2:
        values = x.tolist()
        if x.dim() == 2:
            values = itertools.chain.from_iterable(values)
        elif x.dim() == 0:
            values = (values,)
        return all(map(math.isfinite, values))
    # One reduction first: a finite sum means every entry is finite (NaN and ±inf propagate);
    # only a non-finite sum (or an overflow of large finite entries) needs the elementwise test.
    if math.isfinite(x.sum()):
        return True
    return bool(torch.isfinite(x).all())


def _received(x) -> str:
    if isinstance(x, str):
        return f"the string {x!r}"
    if isinstance(x, np.ndarray | torch.Tensor):
        return describe_dims(tuple(x.shape))
    if isinstance(x, dict):
        return f"a dict with keys {', '.join(repr(k) for k in x)}"
    if not isinstance(x, list | tuple | numbers.Number | np.generic):
        return f"{x!r} (of type {type(x).__name__})"
    try:
        return describe_dims(np.shape(x))
    except ValueError:
        return "a ragged nested list"


class PortReader:
    """Checks and converts the data of one port. Built once per port and reused across calls."""

    __slots__ = ("t", "layer", "port", "dtype", "rank", "varying")

    def __init__(self, t: ArrayType, layer: str, port: str, real: torch.dtype = torch.float32):
        self.t = t
        self.layer = layer
        self.port = port
        self.dtype = torch.int64 if t.integer else real  # real: the working precision
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
        if self.rank is None:  # a port of any shape: the data is one example
            if _is_empty(data):
                raise self._empty("the data is empty")
            value = self._tensor(data, kind)
            self._check_values(value, False)
            return Batch(value.unsqueeze(0), False, kind, 1)
        if depth not in (self.rank, self.rank + 1) and _is_empty(data):
            raise self._empty("the data is empty")
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

    def _tensor(self, data, kind, batched: bool = False) -> torch.Tensor:
        try:
            if kind == "torch":
                if data.dtype.is_complex or data.dtype == torch.bool:
                    raise TypeError
                if self.t.integer and data.dtype.is_floating_point:
                    x = data.detach().to(torch.float64)
                else:
                    x = data if data.dtype == self.dtype else data.to(self.dtype)
            elif kind == "numpy":
                if data.dtype.kind not in "biuf":
                    raise TypeError
                real = self.t.integer and data.dtype.kind == "f"
                x = np.asarray(data, dtype=np.float64 if real else _NUMPY[self.dtype])
                x = torch.from_numpy(x if x.flags.c_contiguous else x.copy())  # (0-d arrays stay 0-d)
            elif self.t.integer:
                x = torch.tensor(data)
                if x.dtype.is_floating_point:  # read again in float64: float32 would round large integers
                    x = torch.tensor(data, dtype=torch.float64)
                elif x.dtype != torch.int64:
                    x = x.to(torch.int64)
            else:
                x = torch.tensor(data, dtype=self.dtype)
        except (TypeError, ValueError, RuntimeError):
            raise self.fail(_received_kind(data), " Every entry must be a number.") from None
        return self._integral(x, batched) if self.t.integer and x.dtype.is_floating_point else x

    def _integral(self, x: torch.Tensor, batched: bool) -> torch.Tensor:
        """Real data for an index port → int64; integral values only (2.0 is 2, 1.5 an error)."""
        bad = ~torch.isfinite(x) | (x != x.round())
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise _entry_error(
                f"{where(self.layer, self.port)}the index {x[idx].item():g}{self._place(idx, batched)} is not an "
                f"integer; indices must be integers{self._range()}."
            )
        return x.to(torch.int64)

    def _range(self) -> str:
        return f" between 1 and {self.t.levels}" if self.t.levels is not None else ""

    def _place(self, idx: tuple, batched: bool) -> str:
        """' at example 2, step 3' for the entry at `idx` of the data (a batch when `batched`)."""
        parts = []
        if batched:
            parts.append(f"example {idx[0] + 1}")
            idx = idx[1:]
        if idx and self.varying:
            parts.append(f"step {idx[0] + 1}")
            idx = idx[1:]
        if idx:
            parts.append(f"position {', '.join(str(i + 1) for i in idx)}")
        return " at " + ", ".join(parts) if parts else ""

    def _empty(self, what: str) -> InputError:
        return InputError(
            f"{where(self.layer, self.port)}empty inputs are not permitted: {what}. "
            f"Give at least one element; the port expects {describe(self.t)}."
        )

    def _check(self, x: torch.Tensor, data) -> None:
        self._check_shape(x)
        self._check_values(x, False)

    def _check_shape(self, x: torch.Tensor) -> None:
        dims = self.t.dims
        shape = x.shape
        if 0 in shape:
            raise self._empty(f"the data had length 0 along dimension {tuple(shape).index(0) + 1}")
        if len(shape) != len(dims):
            raise self.fail(describe_dims(tuple(shape)))
        for d, s in zip(dims, shape):
            if isinstance(d, int) and d != s:
                raise self.fail(describe_dims(tuple(shape)))

    def _check_values(self, x: torch.Tensor, batched: bool) -> None:
        if self.t.integer:
            if self.t.levels is not None and (x.min() < 1 or x.max() > self.t.levels):
                idx = tuple(int(i) for i in ((x < 1) | (x > self.t.levels)).nonzero()[0])
                raise InputError(
                    f"{where(self.layer, self.port)}the index {int(x[idx])}{self._place(idx, batched)} is out of "
                    f"range: indices must be integers{self._range()}."
                )
        elif not _all_finite(x):
            raise InputError(
                f"{where(self.layer, self.port)}the data contains NaN or infinite values, which are not "
                "permitted. Replace them with finite numbers."
            )

    def _read_batch(self, data, kind) -> Batch:
        n = len(data)
        if n == 0:
            raise self._empty("the batch has no elements")
        if kind != "list":
            x = self._tensor(data, kind, True)
            if len(x):
                self._check_shape(x[0])  # the message describes one element, as for a single input
            self._check_batch(x)
            value = Seq(x, None) if self.varying else x
            return Batch(value, True, kind, n)
        try:
            x = self._tensor(data, "list", True) if not any(
                isinstance(e, np.ndarray | torch.Tensor) for e in data[:1]) else None
        except InputError as err:
            if getattr(err, "entry", False):
                raise
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
        # a list of numpy arrays (torch tensors) gives back a list of numpy arrays (torch tensors)
        inner = _kind(data[0])
        kind = "list" if inner == "list" else f"list:{inner}"
        if not self.varying:
            return Batch(x, True, kind, n)
        ragged = len(set(lengths)) > 1
        return Batch(Seq(x, torch.tensor(lengths) if ragged else None), True, kind, n)

    def _check_batch(self, x: torch.Tensor) -> None:
        dims = (None, *self.t.dims)
        shape = x.shape
        if len(shape) != len(dims):
            raise self.fail(describe_dims(tuple(shape)))
        if 0 in shape:
            raise self._empty(f"the data had shape {tuple(shape)}")
        for d, s in zip(dims[1:], shape[1:]):
            if isinstance(d, int) and d != s:
                raise self.fail(f"a batch of {describe_dims(tuple(shape[1:]))}")
        self._check_values(x, True)


def _entry_error(message: str) -> InputError:
    """A bad entry of data whose shape was read: reported where it is, not element by element."""
    err = InputError(message)
    err.entry = True
    return err


class ListReader:
    """Reads the data of a port that takes a list of arrays (ListType): one example is a list
    of the arrays, [x1, x2, ...]; a batch is a list of examples, [[x1, x2, ...], [y1, y2, ...], ...].
    While the arrays' shapes are not known, the data is read as one example."""

    __slots__ = ("t", "layer", "port", "real", "items")

    def __init__(self, t: ListType, layer: str, port: str, real: torch.dtype = torch.float32):
        self.t, self.layer, self.port, self.real = t, layer, port, real
        self.items = None if t.items is None else [PortReader(i, layer, f"{port}, array {j}", real)
                                                   for j, i in enumerate(t.items, 1)]

    def fail(self, received: str) -> InputError:
        return InputError(f"{where(self.layer)}data supplied to port \"{self.port}\" was {received}, but expected "
                          f"{describe(self.t)} or a list of such lists.")

    def read(self, data) -> Batch:
        if isinstance(data, np.ndarray | torch.Tensor) or not isinstance(data, list | tuple):
            raise self.fail(_received(data))
        if not data:
            raise InputError(f"{where(self.layer, self.port)}empty inputs are not permitted: the list is empty. "
                             f"The port expects {describe(self.t)}.")
        items = self.items
        if items is None:
            return self._read(data, [PortReader(ANY, self.layer, f"{self.port}, array {j}", self.real)
                                     for j in range(1, len(data) + 1)])
        rank = items[0].rank  # one example: data[0] is the first array; a batch: the first example's list
        if rank is None or _depth(data[0]) != rank + 1 or not isinstance(data[0], list | tuple):
            return self._read(data, items)
        for j, e in enumerate(data):
            if not isinstance(e, list | tuple) or len(e) != len(items):
                raise InputError(f"{self.fail(_received(e))} (batch element {j + 1})")
        columns = [[e[i] for e in data] for i in range(len(items))]
        parts = [r.read(c) for r, c in zip(items, columns)]
        if not all(b.batched for b in parts):
            raise self.fail("a list whose elements are not all arrays of the expected dimensions")
        return Batch([b.value for b in parts], True, parts[0].kind, len(data))

    def _read(self, data, readers) -> Batch:
        if len(data) != len(readers):
            raise self.fail(f"a list of {len(data)} arrays")
        parts = [r.read(x) for r, x in zip(readers, data)]
        if any(b.batched for b in parts):
            raise self.fail("a list whose elements are batches")
        return Batch([b.value for b in parts], False, parts[0].kind, 1)


def reader(t, layer: str, port: str, real: torch.dtype = torch.float32):
    """The reader of a port of type t (an ArrayType or a ListType)."""
    if isinstance(t, ListType):
        return ListReader(t, layer, port, real)
    return PortReader(t, layer, port, real)


def _received_kind(data) -> str:
    if isinstance(data, np.ndarray):
        return f"an array of dtype {data.dtype}"
    return "non-numeric data"


def write_port(value, batched: bool, kind: str):
    """The user's form of a port value (tensor (B, ...) or Seq). `kind` is "list", "numpy",
    "torch", or "list:numpy" / "list:torch" for a batch given as a list of arrays."""
    if isinstance(value, Seq):
        data, lengths = value
        if lengths is not None:
            items = [data[i, :l] for i, l in enumerate(lengths.tolist())]
            out = [_convert(e, kind) for e in items]
            return out if batched else out[0]
        value = data
    if not batched:
        value = value[0]
    elif kind.startswith("list:"):
        return [_convert(e, kind) for e in value.unbind(0)]
    return _convert(value, kind)


def _convert(x: torch.Tensor, kind: str):
    if kind.endswith("torch"):
        return x
    x = x.detach()
    if x.device.type != "cpu":
        x = x.cpu()
    if kind.endswith("numpy"):
        return x.numpy()
    return x.tolist()


__all__ = ["Seq", "Batch", "PortReader", "ListReader", "reader", "write_port", "move", "move_all", "take_rows",
           "cat_rows", "VARYING"]
