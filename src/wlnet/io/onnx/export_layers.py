"""ONNX forms of the convolution, pooling, normalization, reshaping and sequence-part layers
(`LAYER_CONVERTERS`, by layer name, each converter(b, layer, ins, initial, where) → ({port:
Value}, {})).

A ragged sequence is masked as the layers mask it: zero past each length before a convolution
or a mean, the lowest float before a max; outputs zero past their own lengths, which follow the layer's rule
L' = ⌊(L + a + b − d·(s − 1) − 1) / r⌋ + 1.

Legend: B batch, T (padded) length, k channels.
"""

from __future__ import annotations

import math

import numpy as np

from ...core.errors import NotSupportedError
from ...core.symbols import All
from .export_graph import BIG, Builder, Value, derived, step_mask, time_of

LOWEST = float(np.finfo(np.float32).min)


def _arrays(layer) -> dict:
    return {a: t.numpy() for a, t in layer._arrays.items()}


def _masked(b: Builder, x: Value, fill: float, where: str) -> str:
    """x's data with `fill` past each sequence's length (x itself when it has no lengths)."""
    if not x.lengths:
        return x.name
    value = np.array(int(fill), np.int64) if x.integer else np.array(fill, np.float32)
    return b.op("Where", [step_mask(b, x, where), x.name, b.const("fill", value)], where)


def _zero_past(b: Builder, y: Value, where: str) -> Value:
    return y._replace(name=_masked(b, y, 0.0, where)) if y.lengths else y


def _out_lengths(b: Builder, layer, lengths: str, where: str) -> str:
    """(B,) int64: L' for each length L (the numerator is ≥ 0: a shorter input is refused by wlnet)."""
    a, c = layer.pad
    reach = a + c - layer.dilation * (layer.kernel - 1) - 1
    num = b.op("Add", [lengths, b.ints("reach", reach)], where)
    return b.op("Add", [b.op("Div", [num, b.ints("stride", layer.stride)], where), b.ints("one", 1)], where)


def _window_op(b: Builder, layer, x: Value, op: str, attrs: dict, n, fill: float, where: str) -> Value:
    """A Conv / MaxPool / AveragePool over the length of x, in the layer's layout."""
    data = _masked(b, x, fill, where)
    if layer.interleaving:
        data = b.op("Transpose", [data], where, perm=[0, 2, 1])  # (B, k, T)
    a, c = layer.pad
    if op != "Conv" and max(a, c) >= layer.kernel:  # onnxruntime's pools take pads smaller than the window only
        data = b.op("Pad", [data, b.ints("pads", [0, 0, a, 0, 0, c]), b.const("fill", np.array(fill, np.float32))],
                    where)
        a = c = 0
    inputs = [data, *attrs.pop("inputs", [])]
    y = b.op(op, inputs, where, pads=[a, c], strides=[layer.stride], **attrs)
    length = x.dims[1] if layer.interleaving else x.dims[2]
    out = layer.out_length(length) if isinstance(length, int) else derived(length, "'")
    if layer.interleaving:
        y = b.op("Transpose", [y], where, perm=[0, 2, 1])
        dims = (x.dims[0], out, n)
    else:
        dims = (x.dims[0], n, out)
    lengths = _out_lengths(b, layer, x.lengths, where) if x.lengths else None
    return _zero_past(b, Value(y, dims, False, lengths), where)


def _convolution(b: Builder, layer, ins: dict, initial, where: str):
    a = _arrays(layer)
    inputs = [b.const(f"{where}/Weights", a["Weights"])]
    if "Biases" in a:
        inputs.append(b.const(f"{where}/Biases", a["Biases"]))
    attrs = {"inputs": inputs, "kernel_shape": [layer.kernel], "dilations": [layer.dilation], "group": layer.groups}
    return {"Output": _window_op(b, layer, ins["Input"], "Conv", attrs, layer.n, 0.0, where)}, {}


def _pooling(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    k = x.dims[2] if layer.interleaving else x.dims[1]
    if layer.f == "Max":
        # the padding: the lowest float (onnxruntime's own start of a max), a window of padding only gives 0
        y = _window_op(b, layer, x, "MaxPool", {"kernel_shape": [layer.kernel]}, k, LOWEST, where)
        if max(layer.pad) >= layer.kernel:
            low = b.op("LessOrEqual", [y.name, b.const("lowest", np.float32(LOWEST))], where)
            y = y._replace(name=b.op("Where", [low, b.const("zero_f", np.float32(0)), y.name], where))
        return {"Output": y}, {}
    y = _window_op(b, layer, x, "AveragePool", {"kernel_shape": [layer.kernel], "count_include_pad": 1}, k, 0.0,
                   where)
    if layer.f == "Total":
        y = y._replace(name=b.op("Mul", [y.name, b.const("window", np.float32(layer.kernel))], where))
    return {"Output": y}, {}


def _spread(b: Builder, array: np.ndarray, rank: int, axes: list, base: str) -> str:
    """A constant laid out to broadcast over a (B, ...) value of this rank: its dims at `axes`
    (0-based levels of an example), 1 elsewhere."""
    shape = [1] * (rank + 1)
    for i, d in zip(axes, array.shape):
        shape[i + 1] = d
    return b.const(base, array.reshape(shape).astype(np.float32))


def _normalization(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    rank = len(x.dims) - 1
    agg, scale = layer._plan(rank)
    if 0 in agg and x.lengths or agg != list(range(agg[0], rank)) or layer.unbiased:
        raise NotSupportedError(f"ONNX export: the NormalizationLayer at {where} aggregates levels {agg} "
                                f"{'with Unbiased -> True' if layer.unbiased else 'not the last ones of each element'}"
                                "; only an aggregation over the trailing levels of each element has an ONNX form.")
    axis = agg[0] + 1
    if layer.method == "RMS":
        sq = b.op("Mul", [x.name, x.name], where)
        ms = b.op("ReduceMean", [sq], where, axes=list(range(axis, rank + 1)), keepdims=1)
        y = b.op("Div", [x.name, b.op("Sqrt", [b.op("Add", [ms, b.const("eps", np.float32(layer.eps))], where)],
                                      where)], where)
    else:
        ones = np.ones([d for d in x.dims[axis:]], np.float32)
        y = b.op("LayerNormalization", [x.name, b.const("ones", ones)], where, axis=axis, epsilon=layer.eps)
    a = _arrays(layer)
    if "Scaling" in a:
        y = b.op("Mul", [y, _spread(b, a["Scaling"], rank, scale, f"{where}/Scaling")], where)
    if "Biases" in a:
        y = b.op("Add", [y, _spread(b, a["Biases"], rank, scale, f"{where}/Biases")], where)
    return {"Output": _zero_past(b, x._replace(name=y), where)}, {}


def _batch_normalization(b: Builder, layer, ins: dict, initial, where: str):
    """The evaluation form: y = x · s / √(v + ε) + (β − m · s / √(v + ε)) per channel."""
    x = ins["Input"]
    a = _arrays(layer)
    rank = len(x.dims) - 1
    factor = a["Scaling"] / np.sqrt(a["MovingVariance"] + layer.eps)
    shift = a["Biases"] - a["MovingMean"] * factor
    ch = [rank - 1 if layer.interleaving else 0]
    y = b.op("Mul", [x.name, _spread(b, factor, rank, ch, f"{where}/factor")], where)
    y = b.op("Add", [y, _spread(b, shift, rank, ch, f"{where}/shift")], where)
    return {"Output": _zero_past(b, x._replace(name=y), where)}, {}


def _reshape_to(b: Builder, x: Value, lead: int, dims: tuple, where: str) -> str:
    """x with its first `lead` axes kept (ONNX's 0) and the rest reshaped to dims (-1: inferred)."""
    return b.op("Reshape", [x.name, b.ints("shape", [0] * lead + list(dims))], where)


def _reshape(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    out = layer.output_ports()["Output"].dims
    lead = 2 if layer.varying else 1
    y = _reshape_to(b, x, lead, [-1 if d is None else d for d in layer.dims], where)
    return {"Output": Value(y, (*x.dims[:lead], *out[lead - 1:]), x.integer, x.lengths)}, {}


def _flatten(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    a, c = layer._span(len(x.dims) - 1)
    rest = list(x.dims[c + 1:])
    if a == 0 and x.lengths:  # the steps joined with their elements: each length × the element size
        per = int(np.prod(x.dims[2:c + 1]))
        y = _reshape_to(b, x, 1, [-1, *rest], where)
        lengths = b.op("Mul", [x.lengths, b.ints("per", per)], where)
        return {"Output": Value(y, (x.dims[0], derived(x.dims[1], f"*{per}"), *rest), x.integer, lengths)}, {}
    joined = x.dims[a + 1:c + 1]
    size = int(np.prod(joined)) if all(isinstance(d, int) for d in joined) else None
    y = _reshape_to(b, x, a + 1, [-1, *rest], where)
    dims = (*x.dims[:a + 1], size if size is not None else derived(joined[0], "*"), *rest)
    return {"Output": Value(y, dims, x.integer, x.lengths)}, {}


def _sequence_indices(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    T = b.op("Squeeze", [time_of(b, x, where), b.ints("axes0", [0])], where)
    idx = b.op("Range", [b.ints("one", 1), b.op("Add", [T, b.ints("one", 1)], where), b.ints("one", 1)], where)
    if layer.maximum != math.inf:
        idx = b.op("Min", [idx, b.ints("maximum", layer.maximum)], where)
    shape = b.op("Concat", [b.batch, time_of(b, x, where)], where, axis=0)
    idx = b.op("Expand", [b.op("Unsqueeze", [idx, b.ints("axes0", [0])], where), shape], where)  # (B, T)
    y = Value(idx, x.dims[:2], True, x.lengths)
    return {"Output": _zero_past(b, y, where) if x.lengths else y}, {}


def _slice_bounds(s: slice) -> tuple[int, int, int]:
    """A Wolfram span i;;j;;k (1-based, inclusive, negative from the end) as ONNX Slice's start, end, step."""
    start = 0 if s.start is None else s.start - 1 if s.start > 0 else s.start
    end = BIG if s.stop is None or s.stop == -1 else s.stop if s.stop > 0 else s.stop + 1
    return start, end, s.step or 1


def _part(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    name, dims, lengths = x.name, list(x.dims), x.lengths
    axis = 1
    for level, spec in enumerate(layer.specs, 1):
        if spec is All:
            axis += 1
            continue
        if level == 1 and x.lengths:  # positions within each sequence's own length
            L = x.lengths
            if isinstance(spec, int):
                pos = b.ints("pos", spec - 1) if spec > 0 else b.op("Add", [L, b.ints("pos", spec)], where)
                pos = b.op("Expand", [pos, b.batch], where) if spec > 0 else pos
                idx = b.op("Unsqueeze", [pos, b.ints("axes1", [1])], where)  # (B, 1)
                name = b.op("GatherND", [name, idx], where, batch_dims=1)
                del dims[1]
                lengths = None
                continue
            if isinstance(spec, slice) and (spec.step or 1) == 1 and (spec.start is None or spec.start > 0):
                start = 0 if spec.start is None else spec.start - 1
                stop = b.op("Sub", [L, b.ints("one", 1)], where) if spec.stop is None else \
                    b.op("Add", [L, b.ints("stop", spec.stop)], where) if spec.stop < 0 else \
                    b.op("Expand", [b.ints("stop", spec.stop - 1), b.batch], where)
                fixed = layer._fixed_span(spec)
                if fixed is not None:
                    name = b.op("Slice", [name, b.ints("start", [start]), b.ints("end", [start + fixed]),
                                          b.ints("axes1", [1])], where)
                    dims[1], lengths = fixed, None
                else:
                    n = b.op("Sub", [b.op("Add", [stop, b.ints("one", 1)], where), b.ints("start", start)], where)
                    top = b.op("ReduceMax", [n], where, keepdims=1)
                    end = b.op("Add", [top, b.ints("start", start)], where)
                    name = b.op("Slice", [name, b.ints("start", [start]), end, b.ints("axes1", [1])], where)
                    dims[1], lengths = derived(dims[1], "'"), n
                    name = _masked(b, Value(name, tuple(dims), x.integer, n), 0.0, where)
                axis += 1
                continue
            raise NotSupportedError(f"ONNX export: the PartLayer at {where} takes {spec!r} from sequences of varying "
                                    "length; only a position or a span i;;j with i > 0 has an ONNX form.")
        d = dims[axis]
        if isinstance(spec, int):
            name = b.op("Gather", [name, b.ints("index", spec - 1 if spec > 0 else spec)], where, axis=axis)
            del dims[axis]
            continue
        if isinstance(spec, list):
            idx = [i - 1 if i > 0 else d + i for i in spec]
            name = b.op("Gather", [name, b.ints("indices", idx)], where, axis=axis)
            dims[axis] = len(idx)
        else:
            start, end, step = _slice_bounds(spec)
            name = b.op("Slice", [name, b.ints("start", [start]), b.ints("end", [end]), b.ints("axis", [axis]),
                                  b.ints("step", [step])], where)
            dims[axis] = len(range(d)[slice(start, None if end == BIG else end, step)])
        axis += 1
    return {"Output": Value(name, tuple(dims), x.integer, lengths)}, {}


def _append(b: Builder, layer, ins: dict, initial, where: str):
    x, e = ins["Input"], ins["Element"]
    e1 = b.op("Unsqueeze", [e.name, b.ints("axes1", [1])], where)  # (B, 1, ...)
    longer = derived(x.dims[1], "+1") if isinstance(x.dims[1], str) else x.dims[1] + 1
    dims = (x.dims[0], longer, *x.dims[2:])
    if not x.lengths:
        return {"Output": Value(b.op("Concat", [x.name, e1], where, axis=1), dims, x.integer)}, {}
    data = b.op("Concat", [_masked(b, x, 0.0, where), b.op("Mul", [e1, b.const("zero_f", np.float32(0))], where)],
                where, axis=1)
    rows = b.op("Range", [b.ints("zero", 0), b.op("Squeeze", [b.batch, b.ints("axes0", [0])], where),
                          b.ints("one", 1)], where)
    at = b.op("Concat", [b.op("Unsqueeze", [rows, b.ints("axes1", [1])], where),
                         b.op("Unsqueeze", [x.lengths, b.ints("axes1", [1])], where)], where, axis=1)  # (B, 2)
    y = b.op("ScatterND", [data, at, e.name], where)
    return {"Output": Value(y, dims, x.integer, b.op("Add", [x.lengths, b.ints("one", 1)], where))}, {}


def _prepend(b: Builder, layer, ins: dict, initial, where: str):
    x, e = ins["Input"], ins["Element"]
    e1 = b.op("Unsqueeze", [e.name, b.ints("axes1", [1])], where)
    longer = derived(x.dims[1], "+1") if isinstance(x.dims[1], str) else x.dims[1] + 1
    y = b.op("Concat", [e1, x.name], where, axis=1)
    lengths = b.op("Add", [x.lengths, b.ints("one", 1)], where) if x.lengths else None
    return {"Output": Value(y, (x.dims[0], longer, *x.dims[2:]), x.integer, lengths)}, {}


_PAD_MODES = {"Fixed": "edge", "Reflected": "reflect"}  # ("Periodic", ONNX's "wrap", needs opset 19)


def _padding(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    name, dims, lengths = x.name, list(x.dims), x.lengths
    rank = len(dims)
    for level, (a, c) in enumerate(layer.pads, 1):
        if a == 0 and c == 0:
            continue
        pads = [0] * (2 * rank)
        pads[level], pads[rank + level] = a, c
        if level == 1 and x.lengths:
            if layer.value is None:
                raise NotSupportedError(f'ONNX export: the PaddingLayer at {where} pads sequences of varying length '
                                        f'with {layer.how!r}; only a constant has an ONNX form there.')
            name = b.op("Pad", [_masked(b, x, 0.0, where), b.ints("pads", pads), b.const("zero_f", np.float32(0))],
                        where)
            lengths = b.op("Add", [x.lengths, b.ints("grow", a + c)], where)
            dims[1] = derived(dims[1], f"+{a + c}")
            if layer.value != 0:  # the constant before the steps and after each length
                T = b.op("Squeeze", [time_of(b, Value(name, tuple(dims)), where), b.ints("axes0", [0])], where)
                s = b.op("Unsqueeze", [b.op("Range", [b.ints("zero", 0), T, b.ints("one", 1)], where),
                                       b.ints("axes0", [0])], where)  # (1, T')
                end = b.op("Unsqueeze", [b.op("Add", [x.lengths, b.ints("a", a)], where), b.ints("axes1", [1])],
                           where)  # (B, 1)
                before = b.op("Less", [s, b.ints("a", a)], where)
                after = b.op("And", [b.op("GreaterOrEqual", [s, end], where),
                                     b.op("Less", [s, b.op("Add", [end, b.ints("c", c)], where)], where)], where)
                pad = b.op("Or", [before, after], where)
                if rank > 2:
                    pad = b.op("Unsqueeze", [pad, b.ints("axes", list(range(2, rank)))], where)
                name = b.op("Where", [pad, b.const("value", np.float32(layer.value)), name], where)
            continue
        if layer.value is not None:
            name = b.op("Pad", [name, b.ints("pads", pads), b.const("value", np.float32(layer.value))], where)
        elif layer.how in _PAD_MODES:
            name = b.op("Pad", [name, b.ints("pads", pads)], where, mode=_PAD_MODES[layer.how])
        else:
            raise NotSupportedError(f'ONNX export: the PaddingLayer at {where} pads with "Periodic", which needs '
                                    "ONNX opset 19 (the export writes 17).")
        dims[level] = dims[level] + a + c if isinstance(dims[level], int) else derived(dims[level], f"+{a + c}")
    return {"Output": Value(name, tuple(dims), False, lengths)}, {}


def _replicate(b: Builder, layer, ins: dict, initial, where: str):
    x = ins["Input"]
    m, k = layer.m, len(layer.ns)
    y = b.op("Unsqueeze", [x.name, b.ints("axes", list(range(m, m + k)))], where)
    shape = [1] * m + list(layer.ns) + [1] * (len(x.dims) - m)  # Expand broadcasts: 1 keeps a dimension
    y = b.op("Expand", [y, b.ints("shape", shape)], where)
    return {"Output": Value(y, (*x.dims[:m], *layer.ns, *x.dims[m:]), x.integer, x.lengths)}, {}


def _dot(b: Builder, layer, ins: dict, initial, where: str):
    xs = ins["Input"]
    out = xs[0]
    for x in xs[1:]:
        if x.lengths:  # contracted over its steps: one value of `out` per step, the padding zero in both
            a, c = _masked(b, out._replace(lengths=x.lengths), 0.0, where), _masked(b, x, 0.0, where)
        else:
            a, c = out.name, x.name
        if len(out.dims) == 2 and len(x.dims) == 2:  # vector · vector
            y = b.op("ReduceSum", [b.op("Mul", [a, c], where), b.ints("axes1", [1])], where, keepdims=0)
            out = Value(y, (out.dims[0],))
            continue
        if len(out.dims) > 3 or len(x.dims) > 3:
            raise NotSupportedError(f"ONNX export: the DotLayer at {where} takes arrays of rank above 2, which have "
                                    "no ONNX form yet.")
        a3 = a if len(out.dims) == 3 else b.op("Unsqueeze", [a, b.ints("axes1", [1])], where)  # (B, P, k)
        c3 = c if len(x.dims) == 3 else b.op("Unsqueeze", [c, b.ints("axes_last", [2])], where)  # (B, k, Q)
        y = b.op("MatMul", [a3, c3], where)  # (B, P, Q)
        if len(out.dims) == 2:
            y = b.op("Squeeze", [y, b.ints("axes1", [1])], where)
        if len(x.dims) == 2:
            y = b.op("Squeeze", [y, b.ints("axes_last", [-1])], where)
        dims = (out.dims[0], *out.dims[1:-1], *x.dims[2:])
        lengths = out.lengths if len(out.dims) == 3 and not x.lengths else None
        out = Value(y, dims, False, lengths)
    return {"Output": _zero_past(b, out, where)}, {}


LAYER_CONVERTERS = {
    "ReplicateLayer": _replicate,
    "DotLayer": _dot,
    "SequenceIndicesLayer": _sequence_indices,
    "PartLayer": _part,
    "AppendLayer": _append,
    "PrependLayer": _prepend,
    "PaddingLayer": _padding,
    "ConvolutionLayer": _convolution,
    "PoolingLayer": _pooling,
    "NormalizationLayer": _normalization,
    "BatchNormalizationLayer": _batch_normalization,
    "ReshapeLayer": _reshape,
    "FlattenLayer": _flatten,
}
