"""ONNX forms of the convolution, pooling, normalization and reshaping layers (`LAYER_CONVERTERS`,
by layer name, each converter(b, layer, ins, initial, where) → ({port: Value}, {})).

A ragged sequence is masked as the layers mask it: zero past each length before a convolution
or a mean, the lowest float before a max; outputs zero past their own lengths, which follow the layer's rule
L' = ⌊(L + a + b − d·(s − 1) − 1) / r⌋ + 1.

Legend: B batch, T (padded) length, k channels.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import NotSupportedError
from .export_graph import Builder, Value, derived, step_mask

LOWEST = float(np.finfo(np.float32).min)


def _arrays(layer) -> dict:
    return {a: t.numpy() for a, t in layer._arrays.items()}


def _masked(b: Builder, x: Value, fill: float, where: str) -> str:
    """x's data with `fill` past each sequence's length (x itself when it has no lengths)."""
    if not x.lengths:
        return x.name
    return b.op("Where", [step_mask(b, x, where), x.name, b.const("fill", np.array(fill, np.float32))], where)


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


LAYER_CONVERTERS = {
    "ConvolutionLayer": _convolution,
    "PoolingLayer": _pooling,
    "NormalizationLayer": _normalization,
    "BatchNormalizationLayer": _batch_normalization,
    "ReshapeLayer": _reshape,
    "FlattenLayer": _flatten,
}
