"""ONNX in of bidirectional recurrent nodes, Concat of values and linear maps on every step:
single-node models (either layout, lengths and initial states as graph inputs) against
onnxruntime on ragged batches; Y read whole (NetBidirectionalOperator, "Catenate", or "Total" /
"Mean" for a sum or mean over the directions), each direction's Y apart or only the final states
(two layers); wlnet → ONNX → wlnet round trips of the operators and the list layers, arrays bit
for bit; what does not map, refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest

import wlnet as w
from wlnet.io.onnx import export_onnx, import_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402

TOL = 1e-5
RNG = np.random.default_rng(31)
P = w.NetPort


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def out(name):
    return h.make_tensor_value_info(name, TP.FLOAT, [None] * (4 if name == "Y" else 3))


def bidirectional_model(op, k, n, layout=0, tail=(), outputs=("y",), states=False):
    """One bidirectional node on X (time-major for layout 0) with lengths L, its outputs named
    Y, Y_h (, Y_c), followed by the nodes `tail`; with `states` its initial states are the two
    directions' graph inputs joined by a Concat."""
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    bias = RNG.normal(size=(2, 2 * G * n)).astype(np.float32)
    if op == "GRU":
        bias[:, G * n:] = 0  # (a nonzero Rbh does not map)
    inits = [numpy_helper.from_array(RNG.normal(size=(2, G * n, k)).astype(np.float32), "W"),
             numpy_helper.from_array(RNG.normal(size=(2, G * n, n)).astype(np.float32), "R"),
             numpy_helper.from_array(bias, "B")]
    inputs = [h.make_tensor_value_info("X", TP.FLOAT, ("T", "N", k) if layout == 0 else ("N", "T", k)),
              h.make_tensor_value_info("L", TP.INT32, ("N",))]
    names = ["h", "c"][:2 if op == "LSTM" else 1]
    nodes, given = [], ["", ""]
    if states:
        one = (1, "N", n) if layout == 0 else ("N", 1, n)
        for s in names:
            inputs += [h.make_tensor_value_info(f"{s}_f", TP.FLOAT, one), h.make_tensor_value_info(f"{s}_b", TP.FLOAT,
                                                                                                   one)]
            nodes.append(h.make_node("Concat", [f"{s}_f", f"{s}_b"], [f"{s}0"], axis=0 if layout == 0 else 1))
        given = [f"{s}0" for s in names] + [""] * (2 - len(names))
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    nodes.append(h.make_node(op, ["X", "W", "R", "B", "L", *given[:len(names)]], outs, hidden_size=n,
                             direction="bidirectional", layout=layout, **attrs))
    nodes += list(tail)
    graph = h.make_graph(nodes, "g", inputs, [out(o) for o in outputs], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def run_both(model, net, lengths, k, layout=0, states=None):
    """onnxruntime's outputs on a zero-padded ragged batch, and the net's on the same sequences
    (for layout 1, which onnxruntime does not run, onnx's reference evaluator, which takes no
    ragged batches)."""
    x = RNG.normal(size=(len(lengths), max(lengths), k)).astype(np.float32)
    for i, t in enumerate(lengths):
        x[i, t:] = 0
    feeds = {"X": x.transpose(1, 0, 2) if layout == 0 else x, "L": np.array(lengths, np.int32)}
    data = {"X": [x[i, :t] for i, t in enumerate(lengths)]}
    for name, v in (states or {}).items():
        feeds[name] = v[None] if layout == 0 else v[:, None]
        data[name] = v
    if layout == 0:
        got = session(model).run(None, feeds)
    else:
        from onnx.reference import ReferenceEvaluator

        assert len(set(lengths)) == 1
        got = ReferenceEvaluator(model).run(None, feeds)
    want = dict(zip([o.name for o in model.graph.output], got))
    got = net(data)
    return want, got if isinstance(got, dict) else {next(iter(want)): got}


Y_CATENATED = [h.make_node("Transpose", ["Y"], ["Yt"], perm=[2, 0, 1, 3]),  # (N, T, 2, n)
               h.make_node("Reshape", ["Yt", "shape"], ["y"])]  # (N, T, 2n)
SHAPE = numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape")


def with_inits(model, *tensors):
    model.graph.initializer.extend(tensors)
    return model


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_y_catenated_with_initial_states_is_a_bidirectional_operator(op, tmp_path):
    model = with_inits(bidirectional_model(op, 2, 3, tail=Y_CATENATED, outputs=("y", "Y_h"), states=True), SHAPE)
    net = import_onnx(save(model, tmp_path))
    (bi,) = [x for x in net._nodes.values() if isinstance(x, w.NetBidirectionalOperator)]
    assert bi.aggregator == "Catenate" and list(net.output_ports()) == ["y", "Y_h"]
    names = ["h", "c"][:2 if op == "LSTM" else 1]
    st = {f"{s}_{d}": RNG.normal(size=(3, 3)).astype(np.float32) for s in names for d in "fb"}
    want, got = run_both(model, net, (4, 1, 3), 2, states=st)
    for i, t in enumerate((4, 1, 3)):
        np.testing.assert_allclose(got["y"][i], want["y"][i, :t], atol=TOL)
    np.testing.assert_allclose(np.array(got["Y_h"]), want["Y_h"].transpose(1, 0, 2).reshape(3, 6), atol=TOL)


@pytest.mark.parametrize("how", ["ReduceSum", "ReduceMean"])
def test_y_summed_or_averaged_over_the_directions_layout_1(how, tmp_path):
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    node = h.make_node(how, ["Y", "axes"], ["y"], keepdims=0) if how == "ReduceSum" else \
        h.make_node(how, ["Y"], ["y"], axes=[2], keepdims=0)
    model = with_inits(bidirectional_model("GRU", 2, 3, layout=1, tail=[node]), axes)
    net = import_onnx(save(model, tmp_path))
    (bi,) = net._nodes.values()
    assert bi.aggregator == ("Total" if how == "ReduceSum" else "Mean")
    want, got = run_both(model, net, (4, 4, 4), 2, layout=1)
    for i, t in enumerate((4, 4, 4)):
        np.testing.assert_allclose(got["y"][i], want["y"][i, :t], atol=TOL)


def test_each_directions_y_apart_and_the_final_states_only_are_two_layers(tmp_path):
    model = bidirectional_model("LSTM", 2, 3, tail=[h.make_node("Gather", ["Y", "one"], ["y"], axis=1)])
    with_inits(model, numpy_helper.from_array(np.array(1, np.int64), "one"))
    net = import_onnx(save(model, tmp_path))  # the backward direction's Y alone
    assert sorted(type(x).__name__ for x in net._nodes.values()) == [
        "LongShortTermMemoryLayer", "LongShortTermMemoryLayer", "SequenceReverseLayer", "SequenceReverseLayer"]
    want, got = run_both(model, net, (3, 5, 1), 2)
    for i, t in enumerate((3, 5, 1)):
        np.testing.assert_allclose(got["y"][i], want["y"][:t, i], atol=TOL)
    model = bidirectional_model("LSTM", 2, 3, outputs=("Y_c", "Y_h"))
    net = import_onnx(save(model, tmp_path))
    assert not any(isinstance(x, w.NetBidirectionalOperator) for x in net._nodes.values())
    want, got = run_both(model, net, (3, 5, 1), 2)
    for out in ("Y_c", "Y_h"):
        np.testing.assert_allclose(np.array(got[out]), want[out].transpose(1, 0, 2).reshape(3, 6), atol=TOL)


def test_y_whole_and_apart_and_the_states_together(tmp_path):
    tail = [*Y_CATENATED, h.make_node("Gather", ["Y", "zero"], ["yf"], axis=1)]
    model = with_inits(bidirectional_model("RNN", 2, 3, tail=tail, outputs=("y", "yf", "Y_h")), SHAPE,
                       numpy_helper.from_array(np.array(0, np.int64), "zero"))
    net = import_onnx(save(model, tmp_path))
    assert "CatenateLayer" in [type(x).__name__ for x in net._nodes.values()]
    want, got = run_both(model, net, (3, 5, 1), 2)
    for i, t in enumerate((3, 5, 1)):
        np.testing.assert_allclose(got["y"][i], want["y"][i, :t], atol=TOL)
        np.testing.assert_allclose(got["yf"][i], want["yf"][:t, i], atol=TOL)
    np.testing.assert_allclose(np.array(got["Y_h"]), want["Y_h"].transpose(1, 0, 2).reshape(3, 6), atol=TOL)


def test_concat_of_values_and_a_linear_map_on_every_step(tmp_path):
    w3 = numpy_helper.from_array(RNG.normal(size=(3, 2)).astype(np.float32), "w")
    w4 = numpy_helper.from_array(RNG.normal(size=(3, 4)).astype(np.float32), "v")
    b6 = numpy_helper.from_array(RNG.normal(size=6).astype(np.float32), "b")
    x = h.make_tensor_value_info("x", TP.FLOAT, ("N", "T", 3))
    nodes = [h.make_node("MatMul", ["x", "w"], ["a"]), h.make_node("MatMul", ["x", "v"], ["c"]),
             h.make_node("Concat", ["a", "c"], ["ac"], axis=-1), h.make_node("Add", ["ac", "b"], ["y"])]
    model = h.make_model(h.make_graph(nodes[:3] + [h.make_node("Tanh", ["ac"], ["y"])], "g", [x],
                                      [out("y")], [w3, w4]),
                         opset_imports=[h.make_opsetid("", 17)])
    net = import_onnx(save(model, tmp_path))
    kinds = [type(n).__name__ for n in net._nodes.values()]
    assert kinds.count("NetMapOperator") == 2 and "CatenateLayer" in kinds
    data = RNG.normal(size=(2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(net(data), session(model).run(None, {"x": data})[0], atol=TOL)
    # a bias after a Concat is no linear map's bias
    model = h.make_model(h.make_graph(nodes, "g", [x], [out("y")], [w3, w4, b6]),
                         opset_imports=[h.make_opsetid("", 17)])
    with pytest.raises(w.NotSupportedError, match="bias after a MatMul"):
        import_onnx(save(model, tmp_path))


def test_refusals_name_the_node_and_the_reason(tmp_path):
    model = bidirectional_model("LSTM", 2, 3)  # one graph input holding both directions' initial state
    model.graph.input.append(h.make_tensor_value_info("h0", TP.FLOAT, (2, "N", 3)))
    model.graph.node[0].input[5] = "h0"
    model.graph.output[0].name = "Y_h"
    with pytest.raises(w.NotSupportedError, match=r"initial State of a bidirectional node.*each direction's state"):
        import_onnx(save(model, tmp_path))
    tail = [h.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 3, 1]), h.make_node("Reshape", ["Yt", "s"], ["y"])]
    model = with_inits(bidirectional_model("RNN", 2, 3, tail=tail),
                       numpy_helper.from_array(np.array([0, 0, -1], np.int64), "s"))
    with pytest.raises(w.NotSupportedError, match="reorders the feature axes"):
        import_onnx(save(model, tmp_path))
    x = h.make_tensor_value_info("x", TP.FLOAT, ("N", 3))
    nodes = [h.make_node("Unsqueeze", ["x", "a2"], ["u"]), h.make_node("Concat", ["u", "u"], ["c"], axis=1),
             h.make_node("Reshape", ["c", "flat"], ["y"])]  # (N, 3, 1) joined along axis 2 interleaves
    model = h.make_model(h.make_graph(nodes[:1] + [h.make_node("Concat", ["u", "u"], ["c"], axis=2), nodes[2]], "g",
                                      [x], [out("y")],
                                      [numpy_helper.from_array(np.array([2], np.int64), "a2"),
                                       numpy_helper.from_array(np.array([0, -1], np.int64), "flat")]),
                         opset_imports=[h.make_opsetid("", 17)])
    with pytest.raises(w.NotSupportedError, match="interleaves their features"):
        import_onnx(save(model, tmp_path))


def vector_graph(nodes, x_shape=("N", 3)):
    x = h.make_tensor_value_info("x", TP.FLOAT, x_shape)
    inits = [numpy_helper.from_array(np.array([1], np.int64), name) for name in ("a1", "axes")]
    return h.make_model(h.make_graph(nodes, "g", [x], [out("y")], inits), opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("case", ["ranks", "axes", "sum", "mean of stacked", "mean beside"])
def test_joins_and_reductions_that_do_not_map(case, tmp_path):
    if case == "ranks":
        model = vector_graph([h.make_node("Unsqueeze", ["x", "a1"], ["u"]), h.make_node("Concat", ["x", "u"], ["y"],
                                                                                        axis=-1)])
        message = "different ranks"
    elif case == "axes":  # a sequence and its transpose
        model = vector_graph([h.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
                              h.make_node("Concat", ["x", "t"], ["y"], axis=2)], x_shape=("N", "T", 3))
        message = "their other axes differ"
    elif case == "sum":
        model = vector_graph([h.make_node("ReduceSum", ["x", "axes"], ["y"])])
        message = "ReduceSum is supported over the two directions"
    elif case == "mean of stacked":
        model = vector_graph([h.make_node("Unsqueeze", ["x", "a1"], ["u"]), h.make_node("Concat", ["u", "u"], ["c"],
                                                                                        axis=1),
                              h.make_node("ReduceMean", ["c"], ["y"], axes=[1], keepdims=0)])
        message = "ReduceMean over wlnet values stacked"
    else:
        tail = [h.make_node("ReduceMean", ["Y"], ["m"], axes=[1], keepdims=0),
                h.make_node("Gather", ["Y", "zero"], ["f"], axis=1)]
        model = with_inits(bidirectional_model("RNN", 2, 3, tail=tail, outputs=("m", "f")),
                           numpy_helper.from_array(np.array(0, np.int64), "zero"))
        message = "mean of the two directions' Y is used beside another use"
    with pytest.raises(w.NotSupportedError, match=message) as e:
        import_onnx(save(model, tmp_path))
    assert str(tmp_path) in str(e.value)


# ---- wlnet → ONNX → wlnet ---------------------------------------------------------------------------
def init(net, seed=2):
    return w.NetInitialize(net, RandomSeeding=seed)


def sequences(lengths=(4, 1, 3)):
    return [RNG.normal(size=(t, 2)) for t in lengths]


ROUND_TRIPS = {
    "bidirectional": lambda: init(w.NetChain([w.NetBidirectionalOperator(w.LongShortTermMemoryLayer(3)),
                                              w.NetBidirectionalOperator(w.GatedRecurrentLayer(2), "Total"),
                                              w.NetBidirectionalOperator(w.BasicRecurrentLayer(2), "Mean"),
                                              w.NetMapOperator(w.LinearLayer(2))], Input=("Varying", 2))),
    "catenate": lambda: init(w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.GatedRecurrentLayer(2),
                                         "cat": w.CatenateLayer(-1), "last": w.SequenceLastLayer(),
                                         "out": w.LinearLayer(2)},
                                        [(P("Input"), "a"), (P("Input"), "b"), (["a", "b"], "cat", "last", "out")],
                                        Input=("Varying", 2))),
    "state ports": lambda: init(w.NetGraph({"bi": w.NetBidirectionalOperator(w.LongShortTermMemoryLayer(3)),
                                            "last": w.SequenceLastLayer()},
                                           [("bi", "last"), (P("s0"), P("bi", "BackwardState")),
                                            (P("bi", "ForwardCellState"), P("c")), ("last", P("y"))],
                                           Input=("Varying", 2))),
}
DATA = {"state ports": lambda: {"Input": sequences(), "s0": RNG.normal(size=(3, 3))}}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_round_trip_through_onnx(name, tmp_path):
    net = ROUND_TRIPS[name]()
    export_onnx(tmp_path / "n.onnx", net)
    back = import_onnx(tmp_path / "n.onnx")
    assert back.input_ports() == net.input_ports() and back.output_ports() == net.output_ports()
    assert sorted(type(x).__name__ for _, x in back.leaves()) == sorted(type(x).__name__ for _, x in net.leaves())
    if name == "bidirectional":
        ops = [x for x in back._nodes.values() if isinstance(x, w.NetBidirectionalOperator)]
        assert [op.aggregator for op in ops] == ["Catenate", "Total", "Mean"]
    x = DATA.get(name, sequences)()
    a, b = net(x), back(x)
    for key in a if isinstance(a, dict) else [None]:
        for u, v in zip(*(y if key is None else y[key] for y in (a, b))):
            np.testing.assert_allclose(np.asarray(v), np.asarray(u), atol=1e-6)
    def arrays(n):
        return sorted((k[-1], v.tobytes()) for k, v in w.Information(n, "Arrays").items())

    assert arrays(back) == arrays(net)  # the arrays come back bit for bit
