"""The op handlers of ONNX import (`importer`): one function per ONNX operator, from the abstract
values of its inputs, its attributes and its number of outputs to the abstract values of its
outputs, adding layers and edges to the net being built."""

from __future__ import annotations

import itertools

import numpy as np

from ...core.errors import NetError
from ...core.shapes import VARYING
from ...kernels import cells
from ...layers.basic import ElementwiseLayer, LinearLayer, SoftmaxLayer
from ...layers.recurrent import LAYERS
from ...layers.sequence import EmbeddingLayer, SequenceLastLayer, SequenceReverseLayer, UnitVectorLayer
from .import_join import Bidirectional, joined, materialize, outputs, reduced
from .tables import FUNCTIONS
from .values import BATCH, BIG, TIME, Const, Data, Lazy, Lengths, Shp, Stacked, Var, Zeros


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def op_identity(im, args, attrs, n_out):
    return args[0] if n_out == 1 else [args[0], None]


def op_shape(im, args, attrs, n_out):
    x = args[0]
    if isinstance(x, Data):
        entries = im.axes(x)
    elif isinstance(x, Zeros):
        entries = x.dims
    elif isinstance(x, Lengths):
        entries = x.dims
    elif isinstance(x, Stacked):
        entries = tuple(len(x.parts) if i == x.axis else a for i, a in enumerate(im.axes(_data_part(x))))
    else:
        raise im.fail("Shape of this value is not supported.")
    rank = len(entries)
    start = _norm(attrs.get("start", 0), rank)
    end = _norm(attrs["end"], rank) if "end" in attrs else rank
    return Shp(tuple(entries[max(0, start):min(rank, end)]))


def _data_part(x: Stacked) -> Data:
    """A part of stacked values that is a wlnet value (the others may be zeros)."""
    return next(p for p in x.parts if isinstance(p, Data))


def _entries(im, v, what: str) -> list:
    if isinstance(v, Shp):
        return list(v.entries)
    if isinstance(v, Const) and np.asarray(v.value).dtype.kind in "iu" and np.ndim(v.value) <= 1:
        return [int(x) for x in np.asarray(v.value).reshape(-1)]
    raise im.fail(f"its {what} must be a shape vector.")


def op_gather(im, args, attrs, n_out):
    x, idx = args[0], args[1]
    axis = attrs.get("axis", 0)
    if isinstance(x, Shp):
        i = np.asarray(im.const(idx, "indices"))
        e = x.entries
        picked = [e[int(j)] for j in i.reshape(-1)]
        return Shp(tuple(picked), scalar=i.ndim == 0)
    if isinstance(x, Stacked):
        i = np.asarray(im.const(idx, "indices"))
        if _norm(axis, len(_data_part(x).axes)) != x.axis or i.ndim != 0:
            raise im.fail("a Gather of concatenated wlnet values must pick one of them.")
        part = x.parts[int(i)]
        if isinstance(part, Zeros):
            return Zeros(part.dims[:x.axis] + part.dims[x.axis + 1:])
        return part._replace(axes=part.axes[:x.axis] + part.axes[x.axis + 1:])
    if isinstance(x, Const) and isinstance(idx, Data) and idx.integer:  # an embedding
        return _embedding(im, x.value, idx, attrs)
    if isinstance(x, Data):
        i = np.asarray(im.const(idx, "indices"))
        axes = im.axes(x)
        axis = _norm(axis, len(axes))
        a = axes[axis]
        if i.ndim == 0 and isinstance(a, int) and a == 1:
            return x._replace(axes=x.axes[:axis] + x.axes[axis + 1:])
        if i.ndim == 0 and int(i) == -1 and not isinstance(a, int):
            im.bind(x.axes[axis], TIME)
            return _last(im, x, axis, keep=False)
        raise im.fail("a Gather of a wlnet value is supported for the last step of the time axis (index -1) only.")
    raise im.fail("this Gather is not supported.")


def _last(im, x: Data, axis: int, keep: bool) -> Data:
    if x.integer:
        raise im.fail("the last step of a sequence of indices is not supported.")
    key = im.add(SequenceLastLayer, {"Input": x})
    axes = x.axes[:axis] + ((1,) if keep else ()) + x.axes[axis + 1:]
    return Data((key, "Output"), axes)


def _embedding(im, w, idx: Data, attrs):
    if attrs.get("axis", 0) != 0 or w.ndim != 2:
        raise im.fail("a Gather of an initializer by indices must pick rows of a matrix (axis 0).")
    if idx.sub not in (0, 1) or not isinstance(idx.src, str):
        raise im.fail("the indices of an embedding must come from a graph input.")
    key = im.add(EmbeddingLayer, {"Input": idx}, int(w.shape[1]), Weights=w.astype(np.float32))
    _zero_based(im, idx, int(w.shape[0]))
    return Data((key, "Output"), idx.axes + (int(w.shape[1]),))


def _zero_based(im, idx: Data, n: int) -> None:
    """The graph input of ids idx, read as ONNX's 0-based ids (no "− 1" before their use, which a
    wlnet export writes): the port keeps that convention through the encoder ("Integers", n, 0)."""
    if idx.sub == 0:
        ids = im.__dict__.setdefault("zero_based_ports", {})
        if ids.get(idx.src, n) != n:
            raise im.fail(f"the ids of input {idx.src!r} pick rows of tables of {ids[idx.src]} and {n} rows; a "
                          "port's ids have one range.")
        ids[idx.src] = n


def op_onehot(im, args, attrs, n_out):
    idx = args[0]
    depth = im.ints(args[1], "depth")[0]
    values = np.asarray(im.const(args[2], "values")).reshape(-1)
    if not isinstance(idx, Data) or not idx.integer or list(values) != [0, 1] or attrs.get("axis", -1) not in (-1,
                                                                                                               len(idx.axes)):
        raise im.fail("OneHot is supported on indices of a graph input, with values [0, 1], on a new last axis.")
    if idx.sub not in (0, 1) or not isinstance(idx.src, str):
        raise im.fail("the indices of a OneHot must come from a graph input.")
    key = im.add(UnitVectorLayer, {"Input": idx}, int(depth))
    _zero_based(im, idx, int(depth))
    return Data((key, "Output"), idx.axes + (int(depth),))


def op_slice(im, args, attrs, n_out):
    x = args[0]
    if len(args) > 1:
        starts, ends = im.ints(args[1], "starts"), im.ints(args[2], "ends")
        axes = im.ints(args[3], "axes") if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = im.ints(args[4], "steps") if len(args) > 4 and args[4] is not None else [1] * len(starts)
    else:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    if isinstance(x, Shp):
        if len(axes) != 1 or _norm(axes[0], 1) != 0:
            raise im.fail("a Slice of a shape vector has one axis.")
        return Shp(tuple(x.entries[slice(starts[0], ends[0], steps[0])]))
    if isinstance(x, Stacked):
        picked = x.parts[slice(starts[0], ends[0], steps[0])] if len(axes) == 1 else ()
        if len(axes) != 1 or _norm(axes[0], len(_data_part(x).axes)) != x.axis or not picked:
            raise im.fail("a Slice of concatenated wlnet values must pick some of them.")
        return picked[0] if len(picked) == 1 else Stacked(tuple(picked), x.axis)
    dims = list(x.dims if isinstance(x, Zeros | Lengths) else im.axes(x) if isinstance(x, Data) else ())
    if not dims:
        raise im.fail("this Slice is not supported.")
    out = list(x.axes) if isinstance(x, Data) else list(dims)
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _norm(a, len(dims))
        d = dims[a]
        full = st == 1 and (s == 0 or s <= -BIG) and (e >= BIG or (isinstance(d, int) and e >= d))
        if full:
            continue
        if isinstance(d, int):
            n = len(range(*slice(s, e, st).indices(d)))
            if isinstance(x, Data) and n != d:
                raise im.fail("a Slice of the feature axes of a wlnet value is not supported.")
            out[a] = n
        elif isinstance(x, Data) and st == 1 and s == -1 and e >= BIG:
            im.bind(x.axes[a], TIME)
            return _last(im, x, a, keep=True)
        else:
            raise im.fail(f"a Slice of {'the ' + d if isinstance(d, str) else d} axis other than its last step is "
                          "not supported (a recurrence unrolled step by step cannot be imported).")
    if isinstance(x, Zeros):
        return Zeros(tuple(out))
    if isinstance(x, Data):
        return x._replace(axes=tuple(out))
    return x


def op_concat(im, args, attrs, n_out):
    if all(isinstance(a, Shp | Const) for a in args):
        out = []
        for a in args:
            out += _entries(im, a, "inputs")
        return Shp(tuple(out))
    if all(isinstance(a, Zeros) for a in args):
        axis = _norm(attrs["axis"], len(args[0].dims))
        d = [a.dims[axis] for a in args]
        if all(isinstance(x, int) for x in d):
            return Zeros(args[0].dims[:axis] + (sum(d),) + args[0].dims[axis + 1:])
    if all(isinstance(a, Data | Stacked | Zeros) for a in args) and not all(isinstance(a, Zeros) for a in args):
        first = next(a for a in args if not isinstance(a, Zeros))
        rank = len((_data_part(first) if isinstance(first, Stacked) else first).axes)
        axis = _norm(attrs["axis"], rank)
        parts = []
        for a in args:
            parts += a.parts if isinstance(a, Stacked) and a.axis == axis else [materialize(im, a)]
        if any(len(p.dims if isinstance(p, Zeros) else p.axes) != rank for p in parts):
            raise im.fail("a Concat of wlnet values of different ranks.")
        for p in parts:  # an axis of a graph input declared of size 1 (an initial state's): a feature axis
            if isinstance(p, Data) and isinstance(im.resolve(p.axes[axis]), Var) and im.size(p.axes[axis]) == 1:
                im.bind(p.axes[axis], 1)
        sizes = [p.dims[axis] if isinstance(p, Zeros) else im.axes(p)[axis] for p in parts]
        if all(d == 1 for d in sizes):
            return Stacked(tuple(parts), axis)
        if any(isinstance(p, Zeros) for p in parts):
            raise im.fail("a Concat of zeros and wlnet values is supported along a size-1 axis only (the initial "
                          "states of a bidirectional node's two directions).")
        if not all(isinstance(d, int) for d in sizes):
            raise im.fail("a Concat of wlnet values along their batch or time axis is not supported (it would not "
                          "respect the lengths of the sequences); along a feature axis it is a CatenateLayer.")
        return joined(im, tuple(parts), axis)
    raise im.fail("a Concat of these values is not supported.")


def _arith(name):
    fns = {"Mul": lambda a, b: a * b, "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b,
           "Div": lambda a, b: a // b}

    def op(im, args, attrs, n_out):
        a, b = args
        if name == "Add" and isinstance(a, Const) and isinstance(b, Data):
            a, b = b, a
        if isinstance(a, Data) and isinstance(b, Const):
            return _add_bias(im, a, b.value) if name == "Add" else _index_shift(im, a, b.value, name)
        if isinstance(a, Lengths) and isinstance(b, Const) and name == "Sub":
            return a._replace(offset=a.offset + int(np.asarray(b.value).reshape(-1)[0]))
        if isinstance(a, Shp | Const) and isinstance(b, Shp | Const):
            ea, eb = _entries(im, a, "first input"), _entries(im, b, "second input")
            if len(ea) == 1:
                ea = ea * len(eb)
            if len(eb) == 1:
                eb = eb * len(ea)
            out = []
            for x, y in zip(ea, eb):
                if isinstance(x, int) and isinstance(y, int):
                    out.append(int(fns[name](x, y)))
                elif name in ("Mul", "Div") and y == 1:
                    out.append(x)
                elif name == "Mul" and x == 1:
                    out.append(y)
                else:
                    raise im.fail(f"{name} of the dynamic sizes {x} and {y} is not supported.")
            scalar = isinstance(a, Shp) and a.scalar and (not isinstance(b, Shp) or b.scalar)
            return Shp(tuple(out), scalar)
        raise im.fail(f"{name} of these values is not supported.")

    return op


def _add_bias(im, x: Data, b):
    src = im.src(x)
    spec = im.layers.get(src[0]) if isinstance(src, tuple) else None
    b = np.asarray(b, np.float32)
    if spec is None or spec[0] is not LinearLayer or spec[2].get("_pending") is None or \
            im.uses.get(spec[2]["_pending"], 0) != 1 or b.shape[-1:] != (spec[1][0],) or b.size != spec[1][0]:
        raise im.fail("an Add of a constant is supported as the bias after a MatMul by a matrix.")
    spec[2]["Biases"] = spec[2]["Biases"] + b.reshape(-1)
    spec[2]["_pending"] = None
    return x


def _index_shift(im, x: Data, c, name):
    c = np.asarray(c).reshape(-1)
    if not x.integer or name != "Sub" or c.size != 1 or int(c[0]) != 1 or x.sub:
        raise im.fail(f"{name} of a wlnet value and a constant is not supported.")
    return x._replace(sub=1)


def op_max(im, args, attrs, n_out):
    a, b = args[0], args[1] if len(args) > 1 else None
    if isinstance(a, Data) and a.integer and isinstance(b, Const) and int(np.asarray(b.value).reshape(-1)[0]) == 0:
        return a  # indices ≥ 0 already
    raise im.fail("Max is supported as the clamp of indices at 0 only.")


def op_min(im, args, attrs, n_out):
    a, b = args[0], args[1] if len(args) > 1 else None
    if isinstance(b, Lengths):
        a, b = b, a
    if isinstance(a, Const) and isinstance(b, Shp):
        a, b = b, a
    if isinstance(a, Lengths) and isinstance(b, Shp) and len(b.entries) == 1:
        return a  # lengths never exceed the time
    if isinstance(a, Shp) and isinstance(b, Const) and int(np.min(b.value)) >= BIG:
        return a  # a default "longer than any sequence" bound
    raise im.fail("Min is supported on sequence lengths and the time only.")


def op_cast(im, args, attrs, n_out):
    x = args[0]
    if isinstance(x, Shp | Lengths | Data):
        return x
    raise im.fail("Cast of this value is not supported.")


def op_constant_of_shape(im, args, attrs, n_out):
    value = attrs.get("value")
    if value is not None and np.any(im.onnx.numpy_helper.to_array(value)):
        raise im.fail("ConstantOfShape with a nonzero value on a dynamic shape is not supported.")
    return Zeros(tuple(_entries(im, args[0], "shape")))


def op_expand(im, args, attrs, n_out):
    x, shape = args[0], _entries(im, args[1], "shape")
    if isinstance(x, Const) and not np.any(x.value):
        dims = list(x.value.shape)
    elif isinstance(x, Zeros):
        dims = list(x.dims)
    elif isinstance(x, Lengths):
        return x
    elif isinstance(x, Shp) and len(x.entries) == 1 and len(shape) == 1 and not isinstance(x.entries[0], int):
        im.bind(x.entries[0], TIME)
        return Lengths()  # the time, for every sequence: each at full length
    elif isinstance(x, Data):
        axes = im.axes(x)
        if len(shape) == len(axes) and all(s == 1 or s == a or (isinstance(a, str) and isinstance(s, int))
                                           for s, a in zip(shape, axes)):
            return x
        raise im.fail("an Expand that changes the shape of a wlnet value is not supported.")
    else:
        raise im.fail("this Expand is not supported.")
    rank = max(len(dims), len(shape))
    dims = [1] * (rank - len(dims)) + dims
    shape = [1] * (rank - len(shape)) + shape
    return Zeros(tuple(s if d == 1 else d for d, s in zip(dims, shape)))


def op_transpose(im, args, attrs, n_out):
    x = args[0]
    dims = x.dims if isinstance(x, Zeros) else x.axes if isinstance(x, Data) else None
    if dims is None:
        raise im.fail("this Transpose is not supported.")
    perm = list(attrs.get("perm", reversed(range(len(dims)))))
    new = tuple(dims[p] for p in perm)
    if isinstance(x, Zeros):
        return Zeros(new)
    if [a for a in new if isinstance(a, int) and a != 1] != [a for a in dims if isinstance(a, int) and a != 1]:
        raise im.fail("a Transpose that reorders the feature axes of a wlnet value is not supported.")
    return x._replace(axes=new)


def op_squeeze(im, args, attrs, n_out):
    x = args[0]
    axes = im.attr_or_input(attrs, "axes", args, 1)
    if isinstance(x, Shp):
        if len(x.entries) != 1:
            raise im.fail("Squeeze of a shape vector of several entries.")
        return Shp(x.entries, scalar=True)
    dims = x.dims if isinstance(x, Zeros | Lengths) else im.axes(x) if isinstance(x, Data) else None
    if dims is None:
        raise im.fail("this Squeeze is not supported.")
    if axes is None:
        axes = [i for i, d in enumerate(dims) if d == 1]
    axes = {_norm(a, len(dims)) for a in axes}
    if any(dims[a] != 1 for a in axes):
        raise im.fail("a Squeeze of an axis that is not a size-1 feature axis is not supported.")
    keep = [i for i in range(len(dims)) if i not in axes]
    if isinstance(x, Zeros):
        return Zeros(tuple(dims[i] for i in keep))
    if isinstance(x, Lengths):
        return x._replace(dims=tuple(dims[i] for i in keep))
    return x._replace(axes=tuple(x.axes[i] for i in keep))


def op_unsqueeze(im, args, attrs, n_out):
    x = args[0]
    axes = im.attr_or_input(attrs, "axes", args, 1)
    if isinstance(x, Shp):
        if not x.scalar or axes not in ([0], [-1]):
            raise im.fail("Unsqueeze of a shape vector is supported for one scalar.")
        return Shp(x.entries)
    dims = list(x.dims if isinstance(x, Zeros | Lengths) else x.axes if isinstance(x, Data) else [])
    if not isinstance(x, Zeros | Lengths | Data):
        raise im.fail("this Unsqueeze is not supported.")
    rank = len(dims) + len(axes)
    for a in sorted(_norm(a, rank) for a in axes):
        dims.insert(a, 1)
    if isinstance(x, Zeros):
        return Zeros(tuple(dims))
    if isinstance(x, Lengths):
        return x._replace(dims=tuple(dims))
    return x._replace(axes=tuple(dims))


def op_reshape(im, args, attrs, n_out):
    x = args[0]
    target = _entries(im, args[1], "shape")
    if isinstance(x, Shp):
        if target == [-1] or (len(target) == 1 and target[0] == len(x.entries)):
            return Shp(x.entries)
        raise im.fail("this Reshape of a shape vector is not supported.")
    if not isinstance(x, Data):
        raise im.fail("this Reshape is not supported.")
    axes = im.axes(x)
    if not attrs.get("allowzero", 0):
        target = [axes[i] if isinstance(t, int) and t == 0 and i < len(axes) else t for i, t in enumerate(target)]
    return x._replace(axes=_align(im, x, axes, target))


def _align(im, x: Data, axes: tuple, target: list) -> tuple:
    """The axes of Reshape(x, target): the batch and time axes must stay, in order, with the features
    between them merged or split; a target entry may stand for them as a symbol, or as a number
    (a size the exporter fixed), or -1. Raises if no reading, or more than one, fits."""
    import itertools

    bars = [i for i, a in enumerate(axes) if not isinstance(a, int)]
    segs, start = [], 0
    for b in [*bars, len(axes)]:
        segs.append(int(np.prod([a for a in axes[start:b]], dtype=np.int64)))
        start = b + 1
    fits = []
    for pos in itertools.combinations(range(len(target)), len(bars)):
        weak, ok, minus, out, binds = 0, True, None, list(target), []
        for p, b in zip(pos, bars):
            t, a = target[p], axes[b]
            if isinstance(t, int):
                if t == -1 or (t > 0 and im.size(a) in (None, t)):
                    weak += 1 if (t == -1 or im.size(a) is None) else 0
                else:
                    ok = False
            else:
                t = im.resolve(t)
                if isinstance(t, Var) and not isinstance(a, Var):
                    binds.append((t, a))
                elif isinstance(a, Var) and not isinstance(t, Var):
                    binds.append((a, t))
                elif t != a:
                    ok = False
            out[p] = x.axes[b]
        bounds = [-1, *pos, len(target)]
        for j in range(len(bounds) - 1):
            part = target[bounds[j] + 1:bounds[j + 1]]
            if not ok or any(not isinstance(t, int) for t in part):
                ok = False
                break
            known = int(np.prod([t for t in part if t != -1], dtype=np.int64))
            if -1 in part:
                if part.count(-1) > 1 or minus is not None or known == 0 or segs[j] % known:
                    ok = False
                    break
                minus = bounds[j] + 1 + part.index(-1)
                out[minus] = segs[j] // known
            elif known != segs[j]:
                ok = False
                break
        if ok:
            fits.append((weak, tuple(out), binds))
    if not fits:
        raise im.fail(f"a Reshape of a wlnet value of axes {axes} to {target} that moves its batch or time axis is not "
                      "supported.")
    fits.sort(key=lambda f: f[0])
    if len(fits) > 1 and fits[0][0] == fits[1][0] and fits[0][1] != fits[1][1]:
        raise im.fail(f"a Reshape of a wlnet value of axes {axes} to {target} is ambiguous.")
    for v, label in fits[0][2]:
        im.bind(v, label)
    return fits[0][1]


def op_matmul(im, args, attrs, n_out):
    x, w = args
    if not isinstance(x, Data) or not isinstance(w, Const) or w.value.ndim != 2:
        raise im.fail("MatMul is supported as a wlnet value times a constant matrix.")
    return _linear(im, x, w.value.T, np.zeros(w.value.shape[1], np.float32), pending=im.node.output[0])


def _linear(im, x: Data, weights, biases, pending=None):
    axes = im.axes(x)
    if not isinstance(axes[-1], int) or len(im.features(x)) != 1 and any(f != 1 for f in im.features(x)[:-1]):
        raise im.fail("a linear map acts on the last axis of a wlnet value whose only feature axis it is.")
    mapped = TIME in axes or any(isinstance(a, Var) for a in axes)  # on every step: NetMapOperator(LinearLayer)
    n = int(weights.shape[0])
    key = im.add(LinearLayer, {"Input": x}, n, Weights=weights.astype(np.float32), Biases=biases.astype(np.float32),
                 _pending=pending, _map=mapped)
    return Data((key, "Output"), tuple(axes[:-1]) + (n,))


def op_gemm(im, args, attrs, n_out):
    x, w = args[0], args[1]
    c = args[2] if len(args) > 2 else None
    if not isinstance(x, Data) or not isinstance(w, Const) or attrs.get("transA", 0) or len(im.axes(x)) != 2:
        raise im.fail("Gemm is supported as a batch of vectors times a constant matrix.")
    w = w.value if attrs.get("transB", 0) else w.value.T  # (n, k)
    w = attrs.get("alpha", 1.0) * w
    b = np.zeros(w.shape[0], np.float32) if c is None else attrs.get("beta", 1.0) * np.broadcast_to(
        im.const(c, "C"), (w.shape[0],))
    return _linear(im, x, w, np.asarray(b))


def _elementwise(f):
    def op(im, args, attrs, n_out):
        x = args[0]
        if not isinstance(x, Data) or x.integer:
            raise im.fail("it is supported on wlnet values only.")
        key = im.add(ElementwiseLayer, {"Input": x}, f)
        return x._replace(src=(key, "Output"))

    return op


def op_softmax(im, args, attrs, n_out):
    x = args[0]
    if not isinstance(x, Data):
        raise im.fail("Softmax is supported on wlnet values only.")
    rank = len(x.axes)
    axis = _norm(attrs.get("axis", -1 if im.opset >= 13 else 1), rank)
    if axis != rank - 1 or not isinstance(im.axes(x)[-1], int) or any(f != 1 for f in im.features(x)[:-1]):
        raise im.fail("Softmax is supported over the last axis, the only feature axis of its input.")
    key = im.add(SoftmaxLayer, {"Input": x})
    return x._replace(src=(key, "Output"))


def op_dropout(im, args, attrs, n_out):
    if n_out > 1:
        raise im.fail("a Dropout whose mask is read is not supported.")
    return args[0]


def op_gather_nd(im, args, attrs, n_out):
    x, idx = args
    if isinstance(x, Data) and isinstance(idx, Lengths) and idx.offset == 1 and idx.dims == (BATCH, 1) and \
            attrs.get("batch_dims", 0) == 1 and len(x.axes) >= 2:
        im.bind(x.axes[0], BATCH)
        im.bind(x.axes[1], TIME)
        return _last(im, x, 1, keep=False)
    raise im.fail("GatherND is supported as the step at each sequence's length (batch_dims = 1) only.")


def op_reverse_sequence(im, args, attrs, n_out):
    x, lengths = args
    batch, time = attrs.get("batch_axis", 1), attrs.get("time_axis", 0)
    if not isinstance(x, Data) or not isinstance(lengths, Lengths) or lengths.offset:
        raise im.fail("ReverseSequence is supported on a wlnet value by the lengths of its sequences.")
    im.bind(x.axes[batch], BATCH)
    im.bind(x.axes[time], TIME)
    key = im.add(SequenceReverseLayer, {"Input": x})
    return x._replace(src=(key, "Output"))


RECURRENT = {cell.onnx.kernel: cell for cell in cells.CELLS}  # ONNX operator → cell


def _variant(cell, attrs: dict):
    """The variant of `cell` whose ONNX attributes the node has (ONNX's default 0 where it
    gives none), or None."""
    for values in itertools.product(*cell.forms.values()):
        v = cell.variant((), dict(zip(cell.forms, values)))
        if all(int(attrs.get(a, 0)) == value for a, value in v.onnx.attrs):
            return v
    return None


def op_recurrent(im, args, attrs, n_out):
    op = im.node.op_type
    cell = RECURRENT[op]
    layer_cls = LAYERS[cell.name]
    args = args + [None] * (8 - len(args))
    x, W, R, B, lens = materialize(im, args[0]), *args[1:5]
    n = int(attrs["hidden_size"]) if "hidden_size" in attrs else None
    direction = attrs.get("direction", "forward")
    layout = attrs.get("layout", 0)
    acts = [a.lower() for a in attrs.get("activations", [])]
    default = [a.lower() for a in cell.onnx.activations]
    if acts and acts != default * (len(acts) // len(default)):
        raise im.fail(f"activations {attrs['activations']} differ from the default {list(cell.onnx.activations)}; "
                      f"{layer_cls.__name__} computes those.")
    if "clip" in attrs:
        raise im.fail(f"a clip of the cell (clip = {attrs['clip']}) is not part of {layer_cls.__name__}.")
    if attrs.get("activation_alpha") or attrs.get("activation_beta"):
        raise im.fail("activation_alpha / activation_beta are not supported.")
    if op == "LSTM" and attrs.get("input_forget", 0):
        raise im.fail("input_forget = 1 (the forget gate coupled to the input gate) is not part of "
                      "LongShortTermMemoryLayer.")
    variant = _variant(cell, attrs)
    if variant is None:
        raise im.fail(f"the attributes {', '.join(f'{a} = {attrs.get(a, 0)}' for a, _ in cell.onnx.attrs)} "
                      f"match no form of {layer_cls.__name__}.")
    peep = None
    if cell.onnx.peepholes and args[7] is not None:
        if not isinstance(args[7], Const):
            raise im.fail("the peepholes P must be a constant.")
        if np.any(args[7].value):
            peep = np.asarray(args[7].value, np.float32)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise im.fail(f"the direction {direction!r} is not known.")
    D = 2 if direction == "bidirectional" else 1
    w, r = im.const(W, "W"), im.const(R, "R")
    G = len(cell.gates)
    n = n or r.shape[-1]
    if w.ndim != 3 or w.shape[0] != D or w.shape[1] != G * n or r.shape != (D, G * n, n):
        raise im.fail(f"W and R must have shapes ({D}, {G}·{n}, k) and ({D}, {G}·{n}, {n}), but have {w.shape} and "
                      f"{r.shape}.", NetError)
    b = np.zeros((D, 2 * G * n), w.dtype) if B is None else im.const(B, "B")
    if b.shape != (D, 2 * G * n):
        raise im.fail(f"B must have shape ({D}, {2 * G * n}), but has {b.shape}.", NetError)
    k = int(w.shape[2])
    P = len(cell.onnx.peepholes)
    if peep is not None and peep.shape != (D, P * n):
        raise im.fail(f"P must have shape ({D}, {P * n}), but has {peep.shape}.", NetError)
    if not isinstance(x, Data) or x.integer or len(x.axes) != 3 or not isinstance(im.axes(x)[2], int):
        raise im.fail("its input X must be a float sequence of vectors (3 axes).")
    if im.axes(x)[2] != k:
        raise im.fail(f"X has vectors of size {im.axes(x)[2]}, but W expects {k}.", NetError)
    im.bind(x.axes[0], TIME if layout == 0 else BATCH)
    im.bind(x.axes[1], BATCH if layout == 0 else TIME)
    if lens is not None and not isinstance(lens, Lengths):
        raise im.fail("sequence_lens must be the lengths of the batch's sequences (a graph input, or all full).")
    if isinstance(lens, Lengths) and lens.offset:
        raise im.fail("sequence_lens must be the lengths themselves.")
    form = {name: value for name, value in variant.form if value != cell.forms[name][0]}
    parts = [] if peep is None else [peep[:, j * n:(j + 1) * n] for j in range(P)]  # each (D, n)
    arrays = tuple({**{name: t.copy() for name, t in variant.unpack(
        *(np.asarray(t, np.float32) for t in (w[d], r[d], b[d, :G * n], b[d, G * n:])), layout=variant.onnx).items()},
        **{name: part[d].copy() for name, part in zip(cell.onnx.peepholes, parts) if np.any(part[d])}, **form}
        for d in range(D))  # each direction's arrays (the nonzero peepholes) and options
    given = {s: _initial_states(im, v, s, n, layout, D) for s, v in zip(cell.states, args[5:5 + len(cell.states)])}
    given = {s: v for s, v in given.items() if v is not None}
    if D == 2:
        bi = Bidirectional(im, layer_cls, n, k, arrays, x, given)
        im.bidirectional.append(bi)
        return outputs(bi, layout, cell.states)[:n_out]
    src = x
    if direction == "reverse":
        src = (im.add(SequenceReverseLayer, {"Input": x}), "Output")
    inputs = {"Input": src, **{s: v[0] for s, v in given.items()}}
    key = im.add(layer_cls, inputs, n, Input=(VARYING, k), **arrays[0])
    im.recurrent.append(key)
    if direction == "reverse":
        y_src = Lazy(lambda: (im.add(SequenceReverseLayer, {"Input": (key, "Output")}), "Output"))
    else:
        y_src = (key, "Output")
    y_axes = (x.axes[0], 1, x.axes[1], n) if layout == 0 else (x.axes[0], x.axes[1], 1, n)
    state_axes = (1, BATCH, n) if layout == 0 else (BATCH, 1, n)
    outs = [Data(y_src, y_axes)] + [Data((key, s), state_axes) for s in cell.states]
    return outs[:n_out]


def _initial_states(im, v, s: str, n: int, layout: int, D: int):
    """The initial state s of each direction (a tuple of D wlnet values), or None for zeros."""
    if v is None or isinstance(v, Zeros) or (isinstance(v, Const) and not np.any(v.value)):
        return None
    if D == 2:
        if not isinstance(v, Stacked) or len(v.parts) != 2 or v.axis != (0 if layout == 0 else 1):
            raise im.fail(f"the initial {s} of a bidirectional node must be zeros, or the two directions' states "
                          "joined by a Concat; one value holding both is not supported (NetBidirectionalOperator "
                          "takes each direction's state at its own port).")
        parts = tuple(_initial_states(im, p, s, n, layout, 1) for p in v.parts)
        return tuple(p and p[0] for p in parts)  # (None: that direction's state is zeros)
    if not isinstance(v, Data):
        raise im.fail(f"the initial {s} must be zeros or a wlnet value (a graph input); a constant nonzero "
                      "state is not supported.")
    if len(v.axes) == 3:  # a graph input of 3 axes: (1, batch, n) or (batch, 1, n) by the layout
        im.bind(v.axes[0 if layout == 0 else 1], 1)
    axes = im.axes(v)
    want = (1, BATCH, n) if layout == 0 else (BATCH, 1, n)
    if len(axes) != 3 or [a for a in axes if not isinstance(a, int)] != [BATCH] or im.features(v)[-1] != n or \
            int(np.prod(im.features(v))) != n:
        raise im.fail(f"the initial {s} must have axes {want}, but has {axes}.")
    return (v,)


def _reduce(how: str):
    """ReduceSum / ReduceMean over values stacked along an axis (the two directions of a
    bidirectional node: its "Total" / "Mean")."""
    def op(im, args, attrs, n_out):
        x = args[0]
        axes = im.attr_or_input(attrs, "axes", args, 1)
        if isinstance(x, Stacked) and axes is not None and len(axes) == 1 and \
                _norm(axes[0], len(_data_part(x).axes)) == x.axis:
            return reduced(im, x, x.axis, how, bool(attrs.get("keepdims", 1)))
        raise im.fail(f"Reduce{'Sum' if how == 'Total' else 'Mean'} is supported over the two directions of a "
                      "bidirectional recurrent node's Y (or over values stacked by a Concat) only.")

    return op


OPS = {
    "Identity": op_identity, "Shape": op_shape, "Gather": op_gather, "Slice": op_slice, "Concat": op_concat,
    "Mul": _arith("Mul"), "Add": _arith("Add"), "Sub": _arith("Sub"), "Div": _arith("Div"), "Max": op_max,
    "Min": op_min, "Cast": op_cast, "ConstantOfShape": op_constant_of_shape, "Expand": op_expand,
    "Transpose": op_transpose, "Squeeze": op_squeeze, "Unsqueeze": op_unsqueeze, "Reshape": op_reshape,
    "MatMul": op_matmul, "Gemm": op_gemm, "Softmax": op_softmax, "Dropout": op_dropout, "GatherND": op_gather_nd,
    "OneHot": op_onehot, **{o: _elementwise(f) for f, o in FUNCTIONS.items()},
    "LSTM": op_recurrent, "GRU": op_recurrent, "RNN": op_recurrent, "ReverseSequence": op_reverse_sequence,
    "ReduceSum": _reduce("Total"), "ReduceMean": _reduce("Mean"),
}
FOLDABLE = {"Constant", "Identity", "Cast", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape",
            "Transpose", "Expand", "ConstantOfShape", "Add", "Sub", "Mul", "Div", "Min", "Max", "Neg", "Equal",
            "Where", "Range", "ReduceSum", "ReduceMean"}
SUPPORTED = sorted(set(OPS) | {"Constant"})
