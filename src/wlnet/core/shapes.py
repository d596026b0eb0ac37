"""Port types and pure shape inference on them; no torch here.

A port type is an `ArrayType`: a tuple of dimensions, each an int, `None` (not yet known), or
`"Varying"` (first dimension only: a sequence whose length varies from example to example),
and whether the entries are reals or integer indices in 1..levels. `dims=None` means any shape.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from .errors import ShapeError, where
from .options import positive_int

VARYING = "Varying"


@dataclass(frozen=True)
class ArrayType:
    dims: tuple | None = None
    integer: bool = False
    levels: int | None = None  # integer entries lie in 1..levels

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    @property
    def varying(self) -> bool:
        return bool(self.dims) and self.dims[0] == VARYING

    @property
    def known(self) -> bool:
        """Every dimension known (a varying length counts as known)."""
        return self.dims is not None and all(d is not None for d in self.dims)

    def with_dims(self, dims) -> ArrayType:
        return ArrayType(tuple(dims), self.integer, self.levels)


def Real(*dims) -> ArrayType:
    return ArrayType(tuple(dims))


def Index(*dims, levels=None) -> ArrayType:
    return ArrayType(tuple(dims), integer=True, levels=levels)


ANY = ArrayType(None)
SCALAR = ArrayType(())


@dataclass(frozen=True)
class ListType:
    """The type of a port that takes a list of arrays (CatenateLayer's "Input", ...): one
    ArrayType per array, or `items=None` while their number is not known."""

    items: tuple | None = None


def _size(d) -> str:
    return "n" if d is None else str(d)


def describe(t: ArrayType) -> str:
    """English for a port type: 'a sequence of size-2 vectors', 'a 3×4 matrix', ..."""
    if isinstance(t, ListType):
        if t.items is None:
            return "a list of arrays"
        return f"a list of {len(t.items)} arrays ({'; '.join(describe(i) for i in t.items)})"
    if t.dims is None:
        return "an array"
    dims = t.dims
    if t.integer:
        what = "integers" if t.levels is None else f"integers between 1 and {t.levels}"
        if not dims:
            return "an integer" if t.levels is None else f"an integer between 1 and {t.levels}"
        if len(dims) == 1:
            if dims[0] == VARYING:
                return f"a sequence of {what}"
            return f"a length-{_size(dims[0])} vector of {what}"
        return f"a {'×'.join(_size(d) for d in dims)} array of {what}"
    if not dims:
        return "a real number"
    if dims[0] == VARYING or len(dims) == 2:
        head = "a sequence" if dims[0] == VARYING else f"a length-{_size(dims[0])} sequence"
        rest = dims[1:]
        if not rest:
            return f"{head} of real numbers"
        if len(rest) == 1:
            return f"{head} of size-{_size(rest[0])} vectors" if rest[0] is not None else f"{head} of vectors"
        return f"{head} of {'×'.join(_size(d) for d in rest)} arrays"
    if len(dims) == 1:
        return f"a vector of size {_size(dims[0])}" if dims[0] is not None else "a vector"
    return f"a {'×'.join(_size(d) for d in dims)} array"


def describe_dims(shape: tuple) -> str:
    """English for the shape of data that was received."""
    if len(shape) == 0:
        return "a number"
    if len(shape) == 1:
        return f"a vector of size {shape[0]}" if shape[0] else "an empty list"
    if len(shape) == 2:
        return f"a {shape[0]}×{shape[1]} matrix"
    return f"a {'×'.join(str(s) for s in shape)} array"


def _unify_dim(a, b, i: int):
    if a is None:
        return b
    if b is None or a == b:
        return a
    if a == VARYING and isinstance(b, int) and i == 0:
        return b
    if b == VARYING and isinstance(a, int) and i == 0:
        return a
    raise ValueError


def unify(a: ArrayType, b: ArrayType, what_a: str, what_b: str) -> ArrayType:
    """The most specific type that is both a and b; a ShapeError naming both sides otherwise."""
    if isinstance(a, ListType) or isinstance(b, ListType):
        return _unify_lists(a, b, what_a, what_b)
    if a.dims is None:
        dims = b.dims
    elif b.dims is None:
        dims = a.dims
    else:
        try:
            if len(a.dims) != len(b.dims):
                raise ValueError
            dims = tuple(_unify_dim(x, y, i) for i, (x, y) in enumerate(zip(a.dims, b.dims)))
        except ValueError:
            raise ShapeError(
                f"{what_a} produces {describe(a)}, but {what_b} expects {describe(b)}; "
                "these cannot be connected. Change one side's size so that they agree."
            ) from None
    if a.integer != b.integer and a.dims is not None and b.dims is not None:
        raise ShapeError(
            f"{what_a} produces {describe(a)}, but {what_b} expects {describe(b)}; "
            "integer indices and real arrays cannot be connected."
        )
    levels = a.levels or b.levels
    return ArrayType(dims, a.integer or b.integer, levels)


def _unify_lists(a, b, what_a: str, what_b: str) -> ListType:
    if a == ANY or b == ANY:
        return a if b == ANY else b
    if not (isinstance(a, ListType) and isinstance(b, ListType)):
        raise ShapeError(f"{what_a} produces {describe(a)}, but {what_b} expects {describe(b)}; "
                         "a list of arrays and a single array cannot be connected.")
    if a.items is None or b.items is None:
        return a if b.items is None else b
    if len(a.items) != len(b.items):
        raise ShapeError(f"{what_a} produces a list of {len(a.items)} arrays, but {what_b} expects "
                         f"{len(b.items)}.")
    return ListType(tuple(unify(x, y, f"{what_a} (array {i})", f"{what_b} (array {i})")
                          for i, (x, y) in enumerate(zip(a.items, b.items), 1)))


def parse_sequence_shape(spec, layer: str, option: str) -> ArrayType:
    """Parse the Input/Output shape forms (len, k), (len, Automatic), ("Varying", k), ("Varying", Automatic)."""
    allowed = '(len, k), (len, Automatic), ("Varying", k), ("Varying", Automatic), or "Varying"'
    if isinstance(spec, str) and spec == VARYING:
        return Real(VARYING, None)
    if not isinstance(spec, tuple | list) or len(spec) != 2:
        raise ShapeError(f"{where(layer)}option {option} must be one of {allowed}; it was given {spec!r}.")
    length, k = spec
    if length != VARYING:
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise ShapeError(
                f"{where(layer)}option {option}: the sequence length must be a positive integer or "
                f'"Varying", but was given {length!r}. Allowed forms: {allowed}.'
            )
    k = positive_int(k, layer, f"option {option} (vector size)", error=ShapeError)
    return Real(length if length == VARYING else int(length), k)


def shape_code(t: ArrayType) -> str:
    """The Python form of a port type, for InputForm."""
    if t.dims is None:
        return "None"
    return repr(tuple("Automatic" if d is None else d for d in t.dims)).replace("'Automatic'", "Automatic")
