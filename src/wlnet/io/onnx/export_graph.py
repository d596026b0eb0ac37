"""The ONNX graph being written by `export_onnx`: its values, the builder of its nodes, and the
pieces of graph that several converters share (a sequence's length, its mask of real steps,
a sequence reversed within each length).

Legend: B batch, T (padded) length, k feature size.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...core.errors import NetError

BIG = 2**62  # a Slice end past any length


class Value(NamedTuple):
    """A tensor of the graph: its name, dims (ints, or "batch" / a time name for dynamic
    sizes), whether it holds int64 indices, and the name of its lengths (batch,) int64 tensor
    when it is a batch of "Varying" sequences (None otherwise)."""

    name: str
    dims: tuple
    integer: bool = False
    lengths: str | None = None


class Builder:
    """Nodes, initializers, inputs and outputs of the graph being written; names made unique."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.h = onnx.helper
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.used: set = set()
        self.batch = None  # (1,) int64: the batch size, from the first input

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def const(self, base: str, array) -> str:
        name = self.fresh(base)
        array = np.asarray(array)  # (np.ascontiguousarray would make a scalar a vector)
        self.inits.append(self.onnx.numpy_helper.from_array(array if array.flags.c_contiguous else array.copy(), name))
        return name

    def ints(self, base: str, values) -> str:
        return self.const(base, np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, inputs: list, base: str, n_out: int = 1, **attrs):
        outs = [self.fresh(f"{base}/{op_type}" + (f"_{i}" if n_out > 1 else "")) for i in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, inputs, outs, name=outs[0], **attrs))  # (names of their own kind)
        return outs[0] if n_out == 1 else outs

    def input(self, name: str, integer: bool, dims: tuple, default=None) -> str:
        """A graph input; with `default` (an array) an optional one whose default it is."""
        if name in self.used:
            raise NetError(f"ONNX export: two inputs of the net would both be named {name!r}; rename a port.")
        self.used.add(name)
        elem = self.onnx.TensorProto.INT64 if integer else self.onnx.TensorProto.FLOAT
        self.inputs.append(self.h.make_tensor_value_info(name, elem, list(dims)))
        if default is not None:
            self.inits.append(self.onnx.numpy_helper.from_array(default, name))
        return name

    def output(self, name: str, v: Value) -> None:
        if name in self.used:
            raise NetError(f"ONNX export: the output {name!r} has the name of another tensor of the model; "
                           "rename the port.")
        self.used.add(name)
        self.nodes.append(self.h.make_node("Identity", [v.name], [name], name=name))
        elem = self.onnx.TensorProto.INT64 if v.integer else self.onnx.TensorProto.FLOAT
        self.outputs.append(self.h.make_tensor_value_info(name, elem, list(v.dims)))



# ---- shared pieces ------------------------------------------------------------------------------
def time_of(b: Builder, x: Value, where: str) -> str:
    """(1,) int64: the padded length T of a batch of sequences x (B, T, ...)."""
    return b.op("Slice", [b.op("Shape", [x.name], where), b.ints("one1", [1]), b.ints("two1", [2])], where)


def lengths_of(b: Builder, x: Value, where: str) -> str:
    """(B,) int64: the lengths of x's sequences (T for each when x has no lengths)."""
    return x.lengths or b.op("Expand", [time_of(b, x, where), b.batch], where)


def step_mask(b: Builder, x: Value, where: str) -> str:
    """(B, T, 1, ...) bool of x's rank: True at the real steps of each sequence."""
    T = b.op("Squeeze", [time_of(b, x, where), b.ints("axes0", [0])], where)
    steps = b.op("Range", [b.ints("zero", 0), T, b.ints("one", 1)], where)  # (T,)
    mask = b.op("Less", [b.op("Unsqueeze", [steps, b.ints("axes0", [0])], where),
                         b.op("Unsqueeze", [x.lengths, b.ints("axes1", [1])], where)], where)  # (B, T)
    extra = list(range(2, len(x.dims)))
    return b.op("Unsqueeze", [mask, b.ints("axes", extra)], where) if extra else mask


def reverse(b: Builder, x: Value, where: str) -> Value:
    """x (B, T, ...) with each sequence reversed within its own length."""
    y = b.op("ReverseSequence", [x.name, lengths_of(b, x, where)], where, batch_axis=0, time_axis=1)
    return x._replace(name=y)


def reduce_axes(b: Builder, op: str, data: str, axes: list, where: str) -> str:
    """A ReduceSum / ReduceMean / ... of `data` over `axes`, dropping them."""
    if op == "ReduceSum":  # axes an input from opset 13 on; the other reductions take an attribute up to 17
        return b.op(op, [data, b.ints("axes", axes)], where, keepdims=0)
    return b.op(op, [data], where, axes=axes, keepdims=0)


def derived(dim, change: str):
    """The name of a dynamic dimension computed from `dim`: "time-1" from "time" (None: unknown)."""
    return f"{dim}{change}" if isinstance(dim, str) else None


def same_time(b: Builder, xs: list, where: str) -> list:
    """Sequences of the same lengths padded to different T (from different ports), cut to the
    shortest T (which no length exceeds); values of one named T unchanged."""
    times = {x.dims[1] for x in xs}
    if len(times) <= 1 and None not in times:
        return xs
    T = b.op("Min", [time_of(b, x, where) for x in xs], where)
    dim = "min(" + ",".join(sorted(str(t) for t in times)) + ")" if None not in times else None
    return [x._replace(name=b.op("Slice", [x.name, b.ints("zero1", [0]), T, b.ints("axes1", [1])], where),
                       dims=(x.dims[0], dim, *x.dims[2:])) for x in xs]
