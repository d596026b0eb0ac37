"""ONNX out converters of the layers on sequences and on lists of arrays: SequenceMostLayer,
SequenceRestLayer, SequenceReverseLayer, AggregationLayer, CatenateLayer, TotalLayer,
ThreadingLayer (see `export` for the model they are part of).

A batch of "Varying" sequences is a padded (B, T, ...) tensor with its (B,) lengths; what a
converter writes past a sequence's length is unspecified, and every converter that reads
across steps (reversing, aggregating over the sequence, joining sequences) reads the real
steps only.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import NotSupportedError
from .export_graph import BIG, Builder, Value, derived, lengths_of, reduce_axes, reverse, same_time, step_mask, time_of


def _drop(b: Builder, layer, ins: dict, initial, where: str):
    """SequenceMostLayer (x_1..x_{T-1}) and SequenceRestLayer (x_2..x_T): each sequence one shorter."""
    x = ins["Input"]
    rest = type(layer).__name__ == "SequenceRestLayer"
    start, end = (1, BIG) if rest else (0, -1)
    y = b.op("Slice", [x.name, b.ints("start", [start]), b.ints("end", [end]), b.ints("axes1", [1])], where)
    lengths = b.op("Sub", [x.lengths, b.ints("one", 1)], where) if x.lengths else None
    T = x.dims[1] - 1 if isinstance(x.dims[1], int) else derived(x.dims[1], "-1")
    return {"Output": Value(y, (x.dims[0], T, *x.dims[2:]), x.integer, lengths)}, {}


def _sequence_reverse(b: Builder, layer, ins: dict, initial, where: str):
    return {"Output": reverse(b, ins["Input"], where)}, {}


_REDUCE = {"Max": ("ReduceMax", -np.inf), "Min": ("ReduceMin", np.inf), "Total": ("ReduceSum", 0.0),
           "Mean": ("ReduceMean", 0.0), "Times": ("ReduceProd", 1.0)}


def _aggregation(b: Builder, layer, ins: dict, initial, where: str):
    """AggregationLayer: a Reduce over its levels; over the sequence of a ragged batch, over the
    real steps only (the padding replaced by the reduction's identity; a mean is the sum over
    the number of real entries)."""
    x = ins["Input"]
    axes = layer._axes(len(x.dims) - 1)  # 0-based, without the batch
    onnx_axes = [a + 1 for a in axes]
    op, identity = _REDUCE[layer.f]
    if 0 in axes and x.lengths is not None:
        data = b.op("Where", [step_mask(b, x, where), x.name, b.const("identity", np.float32(identity))], where)
        if layer.f != "Mean":
            y = reduce_axes(b, op, data, onnx_axes, where)
        else:
            size = int(np.prod([x.dims[a + 1] for a in axes[1:]], dtype=np.int64))  # entries per step
            count = b.op("Cast", [b.op("Mul", [x.lengths, b.ints("size", size)], where)], where,
                         to=b.onnx.TensorProto.FLOAT)
            count = b.op("Reshape", [count, b.ints("count_shape", [-1] + [1] * (len(x.dims) - 1 - len(axes)))],
                         where)
            y = b.op("Div", [reduce_axes(b, "ReduceSum", data, onnx_axes, where), count], where)
    else:
        y = reduce_axes(b, op, x.name, onnx_axes, where)
    dims = tuple(d for i, d in enumerate(x.dims) if i - 1 not in axes)
    return {"Output": Value(y, dims, False, None if 0 in axes else x.lengths)}, {}


# ---- layers on lists of arrays -----------------------------------------------------------------
def _items(ins: dict) -> list:
    return list(ins["Input"])


def _lengths(xs: list):
    return next((x.lengths for x in xs if x.lengths), None)


def _catenate(b: Builder, layer, ins: dict, initial, where: str):
    """CatenateLayer: Concat after the lower-rank arrays are repeated over the leading dimensions
    of the highest-rank one; sequences joined one after another (level 1) each to its own length."""
    xs = _items(ins)
    ranks = [len(x.dims) - 1 for x in xs]
    axis = layer._axis(ranks)  # in the frame of the highest rank, without the batch
    high = max(ranks)
    top = xs[ranks.index(high)]
    if high > min(ranks):
        shape = b.op("Shape", [top.name], where)
        for i, x in enumerate(xs):
            extra = high - ranks[i]
            if extra:
                lead = b.op("Slice", [shape, b.ints("zero1", [0]), b.ints("lead", [1 + extra])], where)
                target = b.op("Concat", [lead, b.ints("ones", [1] * ranks[i])], where, axis=0)
                up = b.op("Unsqueeze", [x.name, b.ints("axes", list(range(1, 1 + extra)))], where)
                xs[i] = Value(b.op("Expand", [up, target], where), (*top.dims[:1 + extra], *x.dims[1:]), x.integer,
                              top.lengths)
    if axis == 0 and _lengths(xs):
        return {"Output": _join_sequences(b, xs, where)}, {}
    if axis > 0 and any(len(x.dims) > 1 and not isinstance(x.dims[1], int) for x in xs):
        xs = same_time(b, xs, where)
    y = b.op("Concat", [x.name for x in xs], where, axis=axis + 1)
    size = [x.dims[axis + 1] for x in xs]
    dims = list(xs[0].dims)
    dims[axis + 1] = sum(size) if all(isinstance(d, int) for d in size) else None
    return {"Output": Value(y, tuple(dims), xs[0].integer, _lengths(xs))}, {}


def _join_sequences(b: Builder, xs: list, where: str) -> Value:
    """Sequences (B, T_i, ...) one after another within each example's lengths: (B, ΣT_i, ...),
    lengths Σ lengths_i. Step s of example j reads step s − start_ij of item i, where start_ij is
    the sum of the lengths before item i; a GatherND of the items concatenated along the time."""
    stacked = b.op("Concat", [x.name for x in xs], where, axis=1)  # (B, ΣT_i, ...)
    times = [time_of(b, x, where) for x in xs]  # (1,) each
    total_T = times[0]
    for T in times[1:]:
        total_T = b.op("Add", [total_T, T], where)  # (Sum takes no integers)
    total_T = b.op("Squeeze", [total_T, b.ints("axes0", [0])], where)
    s = b.op("Unsqueeze", [b.op("Range", [b.ints("zero", 0), total_T, b.ints("one", 1)], where),
                           b.ints("axes0", [0])], where)  # (1, ΣT_i)
    src, start, base = b.ints("zero", 0), None, None
    for x, T in zip(xs, times):
        ln = lengths_of(b, x, where)  # (B,)
        ln1 = b.op("Unsqueeze", [ln, b.ints("axes1", [1])], where)  # (B, 1)
        if start is None:
            inside, shift = b.op("Less", [s, ln1], where), s
        else:
            st = b.op("Unsqueeze", [start, b.ints("axes1", [1])], where)
            inside = b.op("And", [b.op("GreaterOrEqual", [s, st], where),
                                  b.op("Less", [s, b.op("Add", [st, ln1], where)], where)], where)
            shift = b.op("Add", [b.op("Sub", [s, st], where), base], where)
        src = b.op("Where", [inside, shift, src], where)  # (B, ΣT_i)
        start = ln if start is None else b.op("Add", [start, ln], where)
        base = T if base is None else b.op("Add", [base, T], where)
    idx = b.op("Unsqueeze", [src, b.ints("axes2", [2])], where)  # (B, ΣT_i, 1)
    y = b.op("GatherND", [stacked, idx], where, batch_dims=1)
    T = derived("+".join(str(x.dims[1]) for x in xs), "") if all(x.dims[1] is not None for x in xs) else None
    return Value(y, (xs[0].dims[0], T, *xs[0].dims[2:]), xs[0].integer, start)


def _total(b: Builder, layer, ins: dict, initial, where: str):
    xs = same_time(b, _items(ins), where)
    return {"Output": xs[0]._replace(name=b.op("Sum", [x.name for x in xs], where), lengths=_lengths(xs))}, {}


_THREADED = {"Plus": "Sum", "Max": "Max", "Min": "Min", "Times": "Mul", "Subtract": "Sub", "Divide": "Div",
             "Power": "Pow"}


def _threading(b: Builder, layer, ins: dict, initial, where: str):
    f = layer.f
    if not isinstance(f, str):
        name = getattr(f, "__name__", repr(f))
        raise NotSupportedError(
            f"ONNX export: the ThreadingLayer at {where} applies the Python function {name}, which has no ONNX form; "
            f"use one of the named functions {', '.join(repr(k) for k in _THREADED)}."
        )
    xs = same_time(b, _items(ins), where)
    op = _THREADED[f]
    if op in ("Sum", "Max", "Min"):  # variadic
        y = b.op(op, [x.name for x in xs], where)
    else:
        y = xs[0].name
        for x in xs[1:]:
            y = b.op(op, [y, x.name], where)
    return {"Output": xs[0]._replace(name=y, lengths=_lengths(xs))}, {}


CONVERTERS = {
    "SequenceMostLayer": _drop,
    "SequenceRestLayer": _drop,
    "SequenceReverseLayer": _sequence_reverse,
    "AggregationLayer": _aggregation,
    "CatenateLayer": _catenate,
    "TotalLayer": _total,
    "ThreadingLayer": _threading,
}
