"""The abstract values of ONNX import: what an ONNX tensor is while the graph is read (a
constant, a shape vector, zeros of a shape, the lengths of a batch's sequences, or a wlnet value
with the role of each of its ONNX axes), shared by `importer`, `import_ops` and `import_join`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BATCH, TIME = "batch", "time"
BIG = 2**31  # a Slice end or a Min bound at least this large means "to the end"


class Var:
    """An axis of a rank-3 graph input that is the batch or the time, not yet known which."""

    __slots__ = ("name", "partner")

    def __init__(self, name: str):
        self.name, self.partner = name, None

    def __repr__(self) -> str:
        return f"<axis {self.name}>"


class Const(NamedTuple):
    value: np.ndarray


class Shp(NamedTuple):
    """An int vector (or, scalar, one int) whose entries are ints or the symbols batch / time."""

    entries: tuple
    scalar: bool = False


class Zeros(NamedTuple):
    dims: tuple  # ints and symbols


class Lengths(NamedTuple):
    """The lengths of the batch's sequences (all full for a default), minus `offset`; `dims` its axes."""

    offset: int = 0
    dims: tuple = (BATCH,)


class Data(NamedTuple):
    """A wlnet value: `src` an edge source (a graph port name, (layer, port), or a Lazy), `axes`
    per ONNX axis BATCH, TIME, a Var, or an int (a feature axis of that size; the features in
    this order, flattened, are wlnet's per-step vector); integer indices minus `sub`."""

    src: object
    axes: tuple
    integer: bool = False
    sub: int = 0


class Stacked(NamedTuple):
    """wlnet values concatenated along a size-1 feature axis (torch's h_n of several layers, the
    two directions of a bidirectional node), to be picked out again or joined (`import_join`);
    a part may be Zeros (a direction's initial state left at zero)."""

    parts: tuple
    axis: int


class Lazy:
    """An edge source made on first use (the reversed output of a reverse recurrent node)."""

    def __init__(self, make):
        self.make, self.src = make, None

    def get(self):
        if self.src is None:
            self.src = self.make()
        return self.src
