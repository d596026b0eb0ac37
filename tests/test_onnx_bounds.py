"""ONNX in, bounded before it reads or computes: the model file only as a regular file of at most
MAX_BYTES (a FIFO, /dev/zero, a sparse file of more are refused without being read), external data only
from regular files inside the model's folder with offsets and lengths that fit, only the opsets whose
semantics the importer follows, and every constant folded while reading a graph sized from its inputs'
shapes before it is computed (models whose constants would take 40 GB and more, checked with an
evaluator that refuses, by onnx's own shape inference, to compute anything large)."""

from __future__ import annotations

import math
import os
import threading
import tracemalloc

import numpy as np
import pytest

import wlnet as w
from wlnet.io.onnx import import_onnx, importer
from wlnet.io.onnx.import_ops import FOLDABLE

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

N = 10**5  # N × N float32 constants: 40 GB
W3 = np.arange(9, dtype=np.float32).reshape(3, 3) / 10


def model(nodes, inits=(), outputs=("y", "z"), opset=17):
    """x (batch, 3) → y = x·w, and the nodes under test computing z (which the graph needs)."""
    inputs = [h.make_tensor_value_info("x", TP.FLOAT, ("B", 3))]
    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"]), *nodes], "g", inputs,
                     [h.make_tensor_value_info(o, TP.FLOAT, [None, None]) for o in outputs],
                     [numpy_helper.from_array(W3, "w"), *inits])
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def save(m, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def const(name, value):
    return h.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name + "_value"))


def ints(name, values):
    return const(name, np.asarray(values, np.int64))


def square(n=N):
    """Nodes making a (n, 1) "col" and a (1, n) "row" from a Range: inputs of a 240 kB-free bomb."""
    return [const("start", np.float32(0)), const("limit", np.float32(n)), const("delta", np.float32(1)),
            h.make_node("Range", ["start", "limit", "delta"], ["r"]), ints("a1", [1]), ints("a0", [0]),
            h.make_node("Unsqueeze", ["r", "a1"], ["col"]), h.make_node("Unsqueeze", ["r", "a0"], ["row"])]


class Unbounded(Exception):
    pass


@pytest.fixture
def evaluator(monkeypatch):
    """onnx's reference evaluator as the importer's folding uses it, which first asks onnx's shape
    inference for the size of each output and refuses (Unbounded) to compute more than 10⁸ elements,
    and records the largest output and the bytes of all that it computed."""
    record = {"largest": 0, "bytes": 0, "runs": 0}

    class Guarded(ReferenceEvaluator):
        def __init__(self, proto, *args, **kwargs):
            self.guarded_proto = proto
            super().__init__(proto, *args, **kwargs)

        def run(self, names, feeds, *args, **kwargs):
            m = onnx.ModelProto.FromString(self.guarded_proto.SerializeToString())
            small = {k: v for k, v in feeds.items() if np.size(v) <= 64}  # shapes, Range bounds: as values
            keep = [vi for vi in m.graph.input if vi.name not in small]
            del m.graph.input[:]
            m.graph.input.extend(keep)
            m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in small.items())
            inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
            for vi in [*inferred.graph.output, *inferred.graph.value_info]:
                t = vi.type.tensor_type
                dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                if t.HasField("shape") and None not in dims and math.prod(dims) > 10**8:
                    raise Unbounded(f"asked to compute {dims}")
            out = super().run(names, feeds, *args, **kwargs)
            record["runs"] += 1
            record["largest"] = max([record["largest"], *(np.size(o) for o in out)])
            record["bytes"] += sum(np.asarray(o).nbytes for o in out)
            return out

    monkeypatch.setattr("onnx.reference.ReferenceEvaluator", Guarded)
    return record


def refused(path, match, cls=w.NetError):
    """The import's error (of `cls`, matching `match`) and the peak of memory numpy and Python took."""
    tracemalloc.start()
    try:
        with pytest.raises(cls, match=match) as e:
            import_onnx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "Unbounded" not in str(e.value)
    return e.value, peak


# ---- folding ------------------------------------------------------------------------------------------
def test_every_foldable_op_has_a_size_bound():
    assert set(FOLDABLE) <= set(importer.FOLD_COUNTS)


C = importer.Const
R = np.random.default_rng(3)
EXACT = [  # (op, inputs, attributes): the count is the size of the output
    ("Constant", [], {"value": numpy_helper.from_array(np.ones((2, 3), np.float32))}),
    ("Constant", [], {"value_ints": [1, 2, 3]}),
    ("Constant", [], {"value_float": 2.0}),
    ("Identity", [R.random((2, 3))], {}),
    ("Cast", [R.random((2, 3)).astype(np.float16)], {"to": TP.DOUBLE}),
    ("Neg", [R.random((4,))], {}),
    ("Shape", [R.random((2, 3, 4))], {}),
    ("Gather", [R.random((2, 3, 4)), np.zeros((5, 6), np.int64)], {"axis": 1}),
    ("Gather", [R.random((2, 3, 4)), np.array(1, np.int64)], {"axis": -1}),
    ("Unsqueeze", [R.random((2, 3)), np.array([0, 3])], {}),
    ("Squeeze", [R.random((2, 1, 3)), np.array([1])], {}),
    ("Reshape", [R.random((2, 6)), np.array([3, -1])], {}),
    ("Transpose", [R.random((2, 3, 4))], {"perm": [2, 0, 1]}),
    ("Concat", [R.random((2, 3)), R.random((4, 3)), R.random((1, 3))], {"axis": 0}),
    ("Expand", [R.random((3, 1)), np.array([2, 1, 4])], {}),
    ("Expand", [R.random((3, 4)), np.array([1])], {}),
    ("ConstantOfShape", [np.array([3, 4])], {}),
    ("Add", [R.random((3, 1)), R.random((1, 4))], {}),
    ("Sub", [R.random((2, 1, 1)), R.random((3, 4))], {}),
    ("Mul", [R.random((3, 4)), np.float64(2.0)], {}),
    ("Div", [R.random((5,)), R.random((2, 1))], {}),
    ("Min", [R.random((3, 1)), R.random((1, 4)), R.random((2, 1, 1))], {}),
    ("Max", [R.random((1, 4)), R.random((3, 1))], {}),
    ("Equal", [np.arange(3)[:, None], np.arange(4)[None, :]], {}),
    ("Where", [np.ones((3, 1), bool), R.random((1, 4)), np.float64(0.0)], {}),
    ("Range", [np.array(1), np.array(10), np.array(3)], {}),
    ("Range", [np.array(10), np.array(4), np.array(-2)], {}),
    ("Range", [np.array(0.0), np.array(1.0), np.array(0.3)], {}),
    ("Range", [np.array(5), np.array(1), np.array(1)], {}),
]
AT_MOST = [  # the count bounds the output (its first input's size)
    ("Slice", [R.random((4, 5)), np.array([1]), np.array([3]), np.array([1])], {}),
    ("ReduceSum", [R.random((4, 5)), np.array([0])], {"keepdims": 0}),
    ("ReduceMean", [R.random((4, 5))], {"axes": [1]}),
]


@pytest.mark.parametrize("case, exact", [(c, True) for c in EXACT] + [(c, False) for c in AT_MOST],
                         ids=lambda c: c[0] if isinstance(c, tuple) else "")
def test_the_size_of_each_folded_op_against_the_reference_evaluator(case, exact):
    op, arrays, attrs = case
    names = [f"i{j}" for j in range(len(arrays))]
    node = h.make_node(op, names, ["o"], **attrs)
    ins = [h.make_tensor_value_info(n, h.np_dtype_to_tensor_dtype(np.asarray(a).dtype), np.shape(a))
           for n, a in zip(names, arrays)]
    m = h.make_model(h.make_graph([node], "g", ins, [h.make_empty_tensor_value_info("o")]),
                     opset_imports=[h.make_opsetid("", 17)])
    (out,) = ReferenceEvaluator(m).run(None, {n: np.asarray(a) for n, a in zip(names, arrays)})
    count = importer.FOLD_COUNTS[op]([C(np.asarray(a)) for a in arrays], attrs)
    if exact:
        assert count == np.size(out)
    else:
        assert np.size(out) <= count == np.size(arrays[0])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Min", "Max", "Equal"])
def test_broadcasting_constants_of_40_gb_are_refused_before_they_are_made(op, evaluator, tmp_path):
    path = save(model([*square(), h.make_node(op, ["col", "row"], ["z"])]), tmp_path)
    assert os.path.getsize(path) < 2000
    e, peak = refused(path, rf"\({op}\): it would make a constant of {N * N} elements")
    assert isinstance(e, w.NotSupportedError)
    assert evaluator["runs"] >= 3 and evaluator["largest"] == N  # the Range, and its Unsqueezes
    assert peak < 50 * 2**20


def test_a_chain_of_broadcasts_is_refused_at_its_first_large_step(evaluator, tmp_path):
    # (n, 1) + (1, n) of 2000 each: 4·10⁶ elements, allowed; that times the (n, 1) column again stays;
    # times a (1, 1, 3000) row it would be 1.2·10¹⁰
    n = 2000
    nodes = [*square(n), h.make_node("Add", ["col", "row"], ["s1"]), h.make_node("Mul", ["s1", "col"], ["s2"]),
             const("three", np.ones((3000, 1, 1), np.float32)), h.make_node("Mul", ["s2", "three"], ["z"])]
    e, _ = refused(save(model(nodes), tmp_path), rf"it would make a constant of {n * n * 3000} elements")
    assert evaluator["largest"] == n * n


def test_where_gather_expand_range_constant_of_shape_and_a_sparse_constant_are_sized_first(evaluator, tmp_path):
    cases = {
        "Where": [*square(), h.make_node("Cast", ["col"], ["c"], to=TP.BOOL), const("one", np.float32(1)),
                  h.make_node("Where", ["c", "row", "one"], ["z"])],
        "Gather": [*square(), ints("n", [N]), h.make_node("ConstantOfShape", ["n"], ["idx"],
                                                          value=numpy_helper.from_array(np.array([0], np.int64))),
                   h.make_node("Gather", ["row", "idx"], ["z"], axis=0)],  # (1, N) by N indices: (N, N)
        "Expand": [*square(), ints("shape", [1, N]), h.make_node("Expand", ["col", "shape"], ["z"])],
        "Range": [const("s", np.float32(0)), const("l", np.float32(N * N)), const("d", np.float32(1)),
                  h.make_node("Range", ["s", "l", "d"], ["z"])],
        "ConstantOfShape": [ints("shape", [N, N]), h.make_node("ConstantOfShape", ["shape"], ["z"])],
        "Constant": [h.make_node("Constant", [], ["z"], sparse_value=h.make_sparse_tensor(
            numpy_helper.from_array(np.array([1.0], np.float32)), numpy_helper.from_array(np.array([3], np.int64)),
            [N, N]))],
    }
    for op, nodes in cases.items():
        e, peak = refused(save(model(nodes), tmp_path), rf"\({op}\): it would make a constant of {N * N} elements")
        assert peak < 50 * 2**20, op
    assert evaluator["largest"] <= N


def test_a_range_without_end_is_refused(evaluator, tmp_path):
    nodes = [const("s", np.float32(0)), const("l", np.float32(1)), const("d", np.float32(0)),
             h.make_node("Range", ["s", "l", "d"], ["z"])]
    refused(save(model(nodes), tmp_path), r"Range from 0.0 to 1.0 by 0.0 does not end")
    assert evaluator["runs"] == 3 and evaluator["largest"] == 1  # its three Constant nodes only


def test_constants_doubled_node_by_node_are_refused_by_the_byte_budget(evaluator, tmp_path, monkeypatch):
    # each Concat makes no more than its inputs hold, but 14 of them would make 1.6·10⁹ elements
    monkeypatch.setattr(importer, "MAX_FOLD_BYTES", 2**24)
    nodes = [const("s", np.float32(0)), const("l", np.float32(10**5)), const("d", np.float32(1)),
             h.make_node("Range", ["s", "l", "d"], ["c0"])]
    for i in range(14):
        nodes.append(h.make_node("Concat", [f"c{i}", f"c{i}"], [f"c{i + 1}"], axis=0))
    nodes.append(h.make_node("Identity", ["c14"], ["z"]))
    m = model(nodes)
    budget = importer.MAX_FOLD_BYTES + 4 * m.ByteSize()
    e, _ = refused(save(m, tmp_path), rf"\(Concat\): its constant of \d+ elements would take the constants computed "
                                      rf"while reading the graph past {budget} bytes")
    assert 0 < evaluator["bytes"] <= budget


def test_a_large_weight_may_be_cast_and_transposed(evaluator, tmp_path):
    # 1.2·10⁷ elements, more than MAX_FOLD, but no more than the file holds: the usual weight glue
    big = R.standard_normal((3, 4 * 10**6)).astype(np.float16)
    nodes = [h.make_node("Cast", ["big"], ["big32"], to=TP.FLOAT), h.make_node("Transpose", ["big32"], ["bigT"]),
             h.make_node("Transpose", ["bigT"], ["bigTT"]), h.make_node("MatMul", ["x", "bigTT"], ["z"])]
    net = import_onnx(save(model(nodes, [numpy_helper.from_array(big, "big")], ("z",)), tmp_path))
    assert evaluator["largest"] == big.size
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    np.testing.assert_allclose(np.asarray(net(x)), x @ big.astype(np.float32), rtol=1e-5)


# ---- values the op handlers grow ------------------------------------------------------------------------
def test_shape_vectors_are_bounded(tmp_path):
    nodes = [h.make_node("Shape", ["x"], ["s0"])]
    for i in range(10):
        nodes.append(h.make_node("Concat", [f"s{i}", f"s{i}"], [f"s{i + 1}"], axis=0))
    nodes.append(h.make_node("ConstantOfShape", ["s10"], ["z"]))
    refused(save(model(nodes), tmp_path), r"its output 's5' would be a shape vector of 64 entries; at most 32")


def test_shape_entries_squared_node_by_node_are_bounded(tmp_path):
    # 3 squared 24 times has 2.7·10⁷ digits
    nodes = [h.make_node("Shape", ["x"], ["shape"]), ints("one", 1), h.make_node("Gather", ["shape", "one"], ["s0"])]
    for i in range(24):
        nodes.append(h.make_node("Mul", [f"s{i}", f"s{i}"], [f"s{i + 1}"]))
    nodes.append(h.make_node("Unsqueeze", ["s24", "zero"], ["v"]))
    nodes.append(h.make_node("ConstantOfShape", ["v"], ["z"]))
    nodes.insert(0, ints("zero", [0]))
    refused(save(model(nodes), tmp_path), r"its output 's6' would be a shape whose sizes leave the 64-bit integers")


def test_a_long_integer_constant_given_to_a_handler_is_refused(tmp_path):
    # as a Reshape's target of 10⁴ entries, read in combinations of its entries
    nodes = [ints("target", np.ones(10**4)), h.make_node("Reshape", ["y", "target"], ["z"])]
    refused(save(model(nodes), tmp_path), r"\(Reshape\): its input 'target' is an integer constant of 10000 entries; "
                                          r"as a shape, axes or indices at most 32", w.NotSupportedError)


def test_values_stacked_node_by_node_are_bounded(tmp_path):
    nodes = [ints("one", [1]), h.make_node("Unsqueeze", ["y", "one"], ["u0"])]
    for i in range(14):
        nodes.append(h.make_node("Concat", [f"u{i}", f"u{i}"], [f"u{i + 1}"], axis=1))
    nodes.append(h.make_node("ReduceSum", ["u14", "one"], ["z"]))
    refused(save(model(nodes), tmp_path), r"its output 'u13' would be 8192 values stacked; at most 4096")


# ---- the model file ---------------------------------------------------------------------------------------
def good(tmp_path, name="good.onnx"):
    return save(model([], outputs=("y",)), tmp_path, name)


def in_thread(fn, seconds=60):
    """fn's exception (or None), failing the test if fn is still running after `seconds` (a read that blocks)."""
    out = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            out["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    return out.get("e")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_is_refused_without_being_opened(tmp_path):
    path = tmp_path / "fifo.onnx"
    os.mkfifo(path)
    e = in_thread(lambda: import_onnx(path))
    assert isinstance(e, w.FileFormatError) and "is not a regular file" in str(e) and str(path) in str(e)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_devices_and_links_to_them_are_refused(tmp_path):
    link = tmp_path / "zero.onnx"
    link.symlink_to("/dev/zero")
    for path in (link, "/dev/zero", "/dev/null"):
        e = in_thread(lambda p=path: import_onnx(p))
        assert isinstance(e, w.FileFormatError) and "is not a regular file" in str(e) and str(path) in str(e)
    ok = tmp_path / "ok.onnx"
    ok.symlink_to(good(tmp_path))  # a link to a model file is read as the file
    np.testing.assert_allclose(np.asarray(import_onnx(ok)([1.0, 2.0, 3.0])), np.array([1.0, 2.0, 3.0]) @ W3,
                               rtol=1e-6)


def test_a_file_larger_than_an_onnx_file_can_be_is_refused_unread(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:
        f.truncate(importer.MAX_BYTES + 1)  # sparse: 2 GiB that take no disk
    if os.stat(path).st_blocks * 512 > 2**20:
        pytest.skip("the file system has no sparse files")
    tracemalloc.start()
    try:
        with pytest.raises(w.FileFormatError, match=rf"has {importer.MAX_BYTES + 1} bytes, more than the "
                                                    rf"{importer.MAX_BYTES}"):
            import_onnx(path)
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bad", ["missing", "directory"])
def test_missing_files_and_directories_are_file_format_errors(bad, tmp_path):
    path = tmp_path / "bad.onnx"
    if bad == "directory":
        path.mkdir()
    with pytest.raises(w.FileFormatError, match="does not exist" if bad == "missing" else "is a directory"):
        import_onnx(path)


# ---- external data ------------------------------------------------------------------------------------------
def external(tmp_path, location, offset=None, length=None):
    """A model file in tmp_path/m whose w lives in external data at `location`."""
    m = model([], outputs=("y",))
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TP.EXTERNAL
    t.external_data.add(key="location", value=str(location))
    for key, v in (("offset", offset), ("length", length)):
        if v is not None:
            t.external_data.add(key=key, value=str(v))
    (tmp_path / "m").mkdir(exist_ok=True)
    return save(m, tmp_path / "m")


def test_external_data_that_fits_is_read_at_its_offset(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"12345678" + W3.tobytes() + b"tail")
    path = external(tmp_path, "w.bin", offset=8, length=36)
    np.testing.assert_allclose(np.asarray(import_onnx(path)([1.0, 2.0, 3.0])), np.array([1.0, 2.0, 3.0]) @ W3,
                               rtol=1e-6)
    (tmp_path / "m" / "sub").mkdir()
    (tmp_path / "m" / "sub" / "w.bin").write_bytes(W3.tobytes())
    np.testing.assert_allclose(np.asarray(import_onnx(external(tmp_path, "sub/w.bin"))([1.0, 0.0, 0.0])), W3[0],
                               rtol=1e-6)


@pytest.mark.parametrize("form", ["absolute", "parent", "inner parent", "link inside", "link outside",
                                  "linked folder", "fifo", "dev zero", "offset past the end", "length past the end",
                                  "shorter than the tensor", "longer than the tensor", "missing", "folder",
                                  "bad offset"])
def test_external_data_is_refused_in_every_form_outside_the_models_folder(form, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    data = W3.tobytes()
    (tmp_path / "outside.bin").write_bytes(data)
    (m / "w.bin").write_bytes(data)
    where, offset, length = {
        "absolute": (tmp_path / "outside.bin", None, None), "parent": ("../outside.bin", None, None),
        "inner parent": ("sub/../../outside.bin", None, None), "link inside": ("link.bin", None, None),
        "link outside": ("out.bin", None, None), "linked folder": ("d/outside.bin", None, None),
        "fifo": ("fifo", None, None), "dev zero": ("zero", None, None), "offset past the end": ("w.bin", 40, None),
        "length past the end": ("w.bin", 4, 36), "shorter than the tensor": ("w.bin", 0, 32),
        "longer than the tensor": ("long.bin", None, None), "missing": ("nothing.bin", None, None),
        "folder": ("sub", None, None), "bad offset": ("w.bin", "x", None),
    }[form]
    (m / "sub").mkdir()
    (m / "link.bin").symlink_to(m / "w.bin")
    (m / "out.bin").symlink_to(tmp_path / "outside.bin")
    (m / "d").symlink_to(tmp_path)
    (m / "long.bin").write_bytes(data + b"\0\0\0\0")
    if hasattr(os, "mkfifo"):
        os.mkfifo(m / "fifo")
    if os.path.exists("/dev/zero"):
        (m / "zero").symlink_to("/dev/zero")
    path = external(tmp_path, where, offset, length)
    e = in_thread(lambda: import_onnx(path))
    assert isinstance(e, w.FileFormatError), e
    assert f"external data of {str(path)!r} cannot be read" in str(e)


def test_external_data_beyond_the_cap_is_refused_unread(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(W3.tobytes())
    monkeypatch.setattr(importer, "MAX_EXTERNAL", 35)
    with pytest.raises(w.FileFormatError, match="past 35 bytes"):
        import_onnx(external(tmp_path, "w.bin"))


# ---- opsets -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [1, 6, 29, 99])
def test_opsets_outside_the_range_are_refused_with_it(opset, tmp_path):
    high = min(28, onnx.defs.onnx_opset_version())
    with pytest.raises(w.NotSupportedError, match=rf"uses opset {opset} of the standard ONNX operators; the importer "
                                                  rf"reads opsets 7 to {high}"):
        import_onnx(save(model([], outputs=("y",), opset=opset), tmp_path))


def test_a_model_without_the_standard_opset_is_refused(tmp_path):
    m = model([], outputs=("y",))
    del m.opset_import[:]
    m.opset_import.append(h.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(w.NotSupportedError, match="imports no version of the standard ONNX operators"):
        import_onnx(save(m, tmp_path))


def glue(opset):
    """Gemm (C broadcast), Tanh, Unsqueeze / Squeeze (axes an attribute before 13, an input from 13) and
    Softmax (its default axis 1 before 13, -1 from 13)."""
    axes = {"axes": [1]} if opset < 13 else {}
    extra = [] if opset < 13 else [ints("ax", [1])]
    nodes = [*extra, h.make_node("Gemm", ["x", "gw", "gc"], ["g"], transB=1), h.make_node("Tanh", ["g"], ["t"]),
             h.make_node("Unsqueeze", ["t"] + ([] if opset < 13 else ["ax"]), ["u"], **axes),
             h.make_node("Squeeze", ["u"] + ([] if opset < 13 else ["ax"]), ["s"], **axes),
             h.make_node("Softmax", ["s"], ["z"])]
    inits = [numpy_helper.from_array(R.standard_normal((4, 3)).astype(np.float32), "gw"),
             numpy_helper.from_array(R.standard_normal(4).astype(np.float32), "gc")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TP.FLOAT, ("B", 3))],
                     [h.make_tensor_value_info("z", TP.FLOAT, [None, None])], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [7, 11, 13, 17, 18, 28])
def test_opsets_in_the_range_import_with_their_semantics(opset, tmp_path):
    if opset > onnx.defs.onnx_opset_version():
        pytest.skip("the installed onnx knows no such opset")
    m = glue(opset)
    x = R.standard_normal((5, 3)).astype(np.float32)
    (want,) = ReferenceEvaluator(m).run(None, {"x": x})
    np.testing.assert_allclose(np.asarray(import_onnx(save(m, tmp_path))(x)), want, rtol=1e-5, atol=1e-6)
