"""ONNX in: every recurrent case of ONNX's own backend suite (onnx.backend.test.case.node: lstm,
gru, rnn) reproduces its expected outputs or is refused with the reason; models exported by
torch.onnx.export (both exporters) from nn.LSTM / nn.GRU / nn.RNN stacks, one- and bidirectional,
with an nn.Linear head (on the last step, on every step, on h_n) reproduce torch; single-node
models with lengths and initial states as graph inputs against onnxruntime on ragged batches;
wlnet → ONNX → wlnet round trips; bad files and unsupported graphs give clear errors."""

from __future__ import annotations

import copy
import logging
import os
import warnings

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.io.onnx import export_onnx, import_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402

TOL = 1e-5
RNG = np.random.default_rng(5)


def save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# ---- ONNX's backend suite ------------------------------------------------------------------------
def backend_cases():
    import onnx.backend.test.case.node as node_cases
    import onnx.backend.test.case.node.gru  # noqa: F401  (importing a case module records its cases)
    import onnx.backend.test.case.node.lstm  # noqa: F401
    import onnx.backend.test.case.node.rnn  # noqa: F401

    return {c.name: c for c in node_cases._NodeTestCases if c.model.graph.node[0].op_type in ("LSTM", "GRU", "RNN")}


CASES = backend_cases()
REPRODUCED = {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_batchwise", "test_lstm_reverse",
              "test_lstm_bidirectional", "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias",
              "test_rnn_seq_length", "test_simple_rnn_batchwise", "test_simple_rnn_reverse",
              "test_simple_rnn_bidirectional",
              # beyond Wolfram's layers: peepholes, the GRU's reset before the state product (and its Rbh)
              "test_lstm_with_peepholes", "test_gru_defaults", "test_gru_with_initial_bias", "test_gru_seq_length",
              "test_gru_batchwise", "test_gru_reverse", "test_gru_bidirectional"}
REFUSED: dict = {}


def as_initializers(case):
    """The case's model with its constant inputs (W, R, B, P; the peephole case's zero initial
    states) as initializers, as exporters write them; a sequence_lens of full lengths left out
    (which means the same)."""
    model = copy.deepcopy(case.model)
    (inputs, outputs), = case.data_sets
    node = model.graph.node[0]
    feeds = dict(zip([i for i in node.input if i], inputs))
    attrs = {a.name: h.get_attribute_value(a) for a in node.attribute}
    if "sequence_lens" in feeds and np.all(feeds["sequence_lens"] == feeds["X"].shape[attrs.get("layout", 0)]):
        node.input[list(node.input).index("sequence_lens")] = ""
        del feeds["sequence_lens"]
    constant = ("W", "R", "B", "P", "initial_h", "initial_c")
    keep = [vi for vi in model.graph.input if vi.name not in constant and vi.name in node.input]
    for name in constant:
        if name in feeds:
            model.graph.initializer.append(numpy_helper.from_array(feeds[name], name))
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model, feeds, dict(zip([o for o in node.output if o], outputs))


def test_the_backend_suite_has_the_recurrent_cases():
    assert REPRODUCED <= set(CASES) and len(CASES) >= 18
    assert set(CASES) == REPRODUCED | set(REFUSED)


@pytest.mark.parametrize("name", sorted(CASES))
def test_backend_case(name, tmp_path):
    model, feeds, expected = as_initializers(CASES[name])
    path = save(model, tmp_path)
    if name in REFUSED:
        with pytest.raises(w.NotSupportedError, match=REFUSED[name]) as e:
            import_onnx(path)
        assert str(path) in str(e.value)
        return
    net = import_onnx(path)
    attrs = {a.name: h.get_attribute_value(a) for a in model.graph.node[0].attribute}
    layout = attrs.get("layout", 0)
    x = feeds["X"] if layout else feeds["X"].transpose(1, 0, 2)  # (B, T, k)
    assert list(net.input_ports()) == ["X"] and list(net.output_ports()) == list(expected)
    got = net({"X": list(x)})
    got = got if isinstance(got, dict) else {next(iter(expected)): got}
    for out, want in expected.items():
        if out == "Y":  # (T, D, B, n) or (B, T, D, n) → per example (T, D·n)
            want = want if layout else want.transpose(2, 0, 1, 3)
        else:  # (D, B, n) or (B, D, n) → per example D·n
            want = want if layout else want.transpose(1, 0, 2)
        np.testing.assert_allclose(np.array(got[out]), want.reshape(*want.shape[:-2], -1), atol=TOL, err_msg=out)
    assert name in REPRODUCED


# ---- torch.onnx.export -----------------------------------------------------------------------------
class Head(torch.nn.Module):
    """A recurrent stack with a Linear head: on the last step, on every step, or on the last layer's final state
    (both directions' for a bidirectional stack)."""

    def __init__(self, kind, layers, batch_first, head, bidirectional=False):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(3, 4, num_layers=layers, batch_first=batch_first,
                                           bidirectional=bidirectional)
        if kind == "GRU":  # b_hn sits inside the reset product; only zero maps to GatedRecurrentLayer
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias_hh"):
                        p[8:] = 0
        self.head = torch.nn.Linear(8 if bidirectional else 4, 2)
        self.batch_first, self.kind, self.bidirectional = batch_first, head, bidirectional

    def forward(self, x):
        y, state = self.rnn(x)
        if self.kind == "last":
            return self.head(y[:, -1] if self.batch_first else y[-1])
        if self.kind == "every":
            return self.head(y)
        h_n = state[0] if isinstance(state, tuple) else state
        if self.bidirectional:  # the last layer's forward and backward final states
            return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))
        return self.head(h_n[-1])  # the last layer's final state


def torch_export(tmp_path, kind, layers, batch_first, head, dynamo, bidirectional=False):
    torch.manual_seed(layers)
    m = Head(kind, layers, batch_first, head, bidirectional).eval()
    x = torch.randn(2, 5, 3) if batch_first else torch.randn(5, 2, 3)
    path = str(tmp_path / f"{kind}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            logging.disable(logging.WARNING)
            try:
                dims = {0: torch.export.Dim("a"), 1: torch.export.Dim("b")}
                torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["y"], dynamo=True,
                                  dynamic_shapes={"x": dims}, verbose=False)
            finally:
                logging.disable(logging.NOTSET)
        else:
            axes = {0: "batch", 1: "time"} if batch_first else {0: "time", 1: "batch"}
            torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["y"], dynamo=False,
                              dynamic_axes={"x": axes})
    return m, path


def check_torch(m, net, batch_first):
    every = m.kind == "every" and not batch_first  # torch's (T, B, 2); the net's per example (T, 2)

    def run(x):
        with torch.no_grad():
            y = m(x if batch_first else x.transpose(0, 1))
        return (y.transpose(0, 1) if every else y).numpy()

    x = torch.randn(3, 7, 3)  # another batch size and length than the export's
    assert list(net.input_ports()) == ["x"] and list(net.output_ports()) == ["y"]
    np.testing.assert_allclose(net(x.numpy()), run(x), atol=TOL)
    lengths = (7, 2, 5)  # a ragged batch: each sequence as torch runs it alone
    seqs = [x[i, :t] for i, t in enumerate(lengths)]
    got = net([s.numpy() for s in seqs])
    for g, s in zip(got, seqs):
        np.testing.assert_allclose(g, run(s[None])[0], atol=TOL)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False])
def test_torch_onnx_export(kind, layers, batch_first, tmp_path):
    head = "last" if batch_first else "hn"
    m, path = torch_export(tmp_path, kind, layers, batch_first, head, dynamo=False)
    net = import_onnx(path)
    layer = {"LSTM": "LongShortTermMemoryLayer", "GRU": "GatedRecurrentLayer", "RNN": "BasicRecurrentLayer"}[kind]
    assert [type(x).__name__ for _, x in net.leaves()].count(layer) == layers
    check_torch(m, net, batch_first)


@pytest.mark.parametrize("kind, layers, batch_first, head", [("LSTM", 2, True, "last"), ("GRU", 1, False, "hn")])
def test_torch_onnx_export_dynamo(kind, layers, batch_first, head, tmp_path):
    pytest.importorskip("onnxscript")
    m, path = torch_export(tmp_path, kind, layers, batch_first, head, dynamo=True)
    check_torch(m, import_onnx(path), batch_first)


@pytest.mark.parametrize("kind, layers, batch_first", [("LSTM", 1, False), ("GRU", 2, True), ("RNN", 1, True)])
def test_torch_onnx_export_with_a_head_on_every_step(kind, layers, batch_first, tmp_path):
    m, path = torch_export(tmp_path, kind, layers, batch_first, "every", dynamo=False)
    net = import_onnx(path)
    assert [type(x).__name__ for x in net._nodes.values()].count("NetMapOperator") == 1
    check_torch(m, net, batch_first)


BIDIRECTIONAL = [(kind, layers, batch_first, head) for kind in ("LSTM", "GRU", "RNN") for layers in (1, 2)
                 for batch_first, head in ((True, "every"), (False, "last"))]
BIDIRECTIONAL += [("LSTM", 2, True, "hn"), ("GRU", 1, False, "hn"), ("RNN", 1, True, "hn")]


@pytest.mark.parametrize("kind, layers, batch_first, head", BIDIRECTIONAL)
def test_torch_onnx_export_bidirectional(kind, layers, batch_first, head, tmp_path):
    m, path = torch_export(tmp_path, kind, layers, batch_first, head, dynamo=False, bidirectional=True)
    net = import_onnx(path)
    kinds = [type(x).__name__ for x in net._nodes.values()]
    if head != "hn":  # Y read: one NetBidirectionalOperator per layer, a NetMapOperator for a head on every step
        assert kinds.count("NetBidirectionalOperator") == layers
        assert ("NetMapOperator" in kinds) == (head == "every")
    else:  # only the last layer's final states read: its two directions as two layers
        assert kinds.count("NetBidirectionalOperator") == layers - 1
    check_torch(m, net, batch_first)


@pytest.mark.parametrize("kind, layers, batch_first, head", [("LSTM", 2, True, "every"), ("GRU", 1, False, "hn")])
def test_torch_onnx_export_dynamo_bidirectional(kind, layers, batch_first, head, tmp_path):
    pytest.importorskip("onnxscript")
    m, path = torch_export(tmp_path, kind, layers, batch_first, head, dynamo=True, bidirectional=True)
    assert os.path.exists(path + ".data")  # the arrays in an external data file beside the model
    check_torch(m, import_onnx(path), batch_first)


def test_torch_dynamo_export_of_rnn_unrolls_it_and_is_refused(tmp_path):
    pytest.importorskip("onnxscript")
    _, path = torch_export(tmp_path, "RNN", 1, True, "last", dynamo=True)
    with pytest.raises(w.NotSupportedError, match=r"Slice of <axis 1 of x> axis other than its last step.*unrolled"):
        import_onnx(path)


def test_torch_gru_with_its_b_hn_maps_exactly(tmp_path):
    # a trained torch GRU's b_hn (ONNX's Rbh, inside the reset product): the layer's MemoryGateStateBiases
    torch.manual_seed(0)
    m = torch.nn.GRU(3, 4)
    path = str(tmp_path / "gru.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(5, 2, 3),), path, input_names=["x"], output_names=["y"], dynamo=False)
    net = import_onnx(path)
    (layer,) = [x for _, x in net.leaves() if isinstance(x, w.GatedRecurrentLayer)]
    np.testing.assert_array_equal(layer._arrays["MemoryGateStateBiases"].numpy(), m.bias_hh_l0[8:].detach().numpy())
    x = torch.randn(7, 2, 3)
    with torch.no_grad():
        want = m(x)[0].transpose(0, 1).numpy()
    got = net({"x": list(x.transpose(0, 1).numpy())})
    np.testing.assert_allclose(np.array(got["y"] if isinstance(got, dict) else got).reshape(want.shape), want,
                               atol=TOL)


# ---- single nodes with lengths and initial states, against onnxruntime --------------------------------
def recurrent_model(op, k, n, direction="forward", layout=0, states=True, lengths=True, **attrs):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    inits = [numpy_helper.from_array(RNG.normal(size=(1, G * n, k)).astype(np.float32), "W"),
             numpy_helper.from_array(RNG.normal(size=(1, G * n, n)).astype(np.float32), "R"),
             numpy_helper.from_array(RNG.normal(size=(1, 2 * G * n)).astype(np.float32) *
                                     np.r_[np.ones(G * n), np.zeros(G * n) if op == "GRU" else np.ones(G * n)]
                                     .astype(np.float32), "B")]
    seq = ("T", "B", k) if layout == 0 else ("B", "T", k)
    state = (1, "B", n) if layout == 0 else ("B", 1, n)
    inputs = [h.make_tensor_value_info("X", TP.FLOAT, seq)]
    if lengths:
        inputs.append(h.make_tensor_value_info("L", TP.INT32, ("B",)))
    names = ["initial_h", "initial_c"][:2 if op == "LSTM" else 1]
    if states:
        inputs += [h.make_tensor_value_info(s, TP.FLOAT, state) for s in names]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    node = h.make_node(op, ["X", "W", "R", "B", "L" if lengths else "", *(names if states else [])], outs,
                       hidden_size=n, direction=direction, layout=layout, **attrs)
    graph = h.make_graph([node], "g", inputs, [h.make_tensor_value_info(o, TP.FLOAT, [None] * (4 if o == "Y" else 3))
                                               for o in outs], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_lengths_and_initial_states_as_graph_inputs_ragged_against_onnxruntime(op, direction, tmp_path):
    model = recurrent_model(op, 2, 3, direction)
    net = import_onnx(save(model, tmp_path))
    names = ["initial_h", "initial_c"][:2 if op == "LSTM" else 1]
    assert list(net.input_ports()) == ["X", *names]  # the lengths come with the ragged data
    lengths = np.array([4, 1, 3], np.int32)
    x = RNG.normal(size=(3, 4, 2)).astype(np.float32)
    st = {s: RNG.normal(size=(1, 3, 3)).astype(np.float32) for s in names}
    want = dict(zip(["Y", "Y_h", "Y_c"], session(model).run(None, {"X": x.transpose(1, 0, 2), "L": lengths, **st})))
    got = net({"X": [x[i, :t] for i, t in enumerate(lengths)], **{s: v[0] for s, v in st.items()}})
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(got["Y"][i], want["Y"][:t, 0, i], atol=TOL)
    for out in want:
        if out != "Y":
            np.testing.assert_allclose(np.array(got[out]), want[out][0], atol=TOL, err_msg=out)


def test_layout_1_against_the_reference_evaluator(tmp_path):
    from onnx.reference import ReferenceEvaluator

    model = recurrent_model("LSTM", 2, 3, layout=1, lengths=False)
    net = import_onnx(save(model, tmp_path))
    x = RNG.normal(size=(2, 4, 2)).astype(np.float32)
    s = {n: RNG.normal(size=(2, 1, 3)).astype(np.float32) for n in ("initial_h", "initial_c")}
    want = ReferenceEvaluator(model).run(None, {"X": x, **s})
    got = net({"X": x, **{k: v[:, 0] for k, v in s.items()}})
    np.testing.assert_allclose(got["Y"], want[0][:, :, 0], atol=TOL)
    np.testing.assert_allclose(got["Y_c"], want[2][:, 0], atol=TOL)


@pytest.mark.parametrize("attrs, reason", [
    ({"clip": 2.0}, "clip"), ({"input_forget": 1}, "input_forget"),
    ({"activations": ["Sigmoid", "Tanh", "Relu"]}, "activations"),
])
def test_lstm_options_outside_wolframs_lstm_are_refused(attrs, reason, tmp_path):
    with pytest.raises(w.NotSupportedError, match=reason):
        import_onnx(save(recurrent_model("LSTM", 2, 3, states=False, lengths=False, **attrs), tmp_path))


@pytest.mark.parametrize("before", [0, 1])
def test_gru_recurrent_biases_both_forms_against_onnxruntime(before, tmp_path):
    # every bias nonzero (a Keras GRU's, exported with reset_after: linear_before_reset = 1, or without: 0)
    model = recurrent_model("GRU", 2, 3, lengths=False)
    (attr,) = [a for a in model.graph.node[0].attribute if a.name == "linear_before_reset"]
    attr.i = before
    b = model.graph.initializer[2]
    b.CopyFrom(numpy_helper.from_array(RNG.normal(size=(1, 18)).astype(np.float32), "B"))
    net = import_onnx(save(model, tmp_path))
    (layer,) = [x for _, x in net.leaves() if isinstance(x, w.GatedRecurrentLayer)]
    assert layer.cell.option("ResetGateTarget") == ("StateProduct" if before else "State")
    x = RNG.normal(size=(3, 4, 2)).astype(np.float32)
    s0 = RNG.normal(size=(1, 3, 3)).astype(np.float32)
    want = session(model).run(None, {"X": x.transpose(1, 0, 2), "initial_h": s0})
    got = net({"X": x, "initial_h": s0[0]})
    np.testing.assert_allclose(got["Y"], want[0][:, 0].transpose(1, 0, 2), atol=TOL)
    np.testing.assert_allclose(got["Y_h"], want[1][0], atol=TOL)


def test_rnn_relu_is_refused(tmp_path):
    with pytest.raises(w.NotSupportedError, match="activations"):
        import_onnx(save(recurrent_model("RNN", 2, 3, states=False, lengths=False, activations=["Relu"]), tmp_path))


def test_unsupported_ops_and_forms_name_the_op_and_the_node(tmp_path):
    x = h.make_tensor_value_info("x", TP.FLOAT, ("B", 3))
    y = h.make_tensor_value_info("y", TP.FLOAT, ("B", 3))
    g = h.make_graph([h.make_node("LeakyRelu", ["x"], ["y"], name="act")], "g", [x], [y])
    with pytest.raises(w.NotSupportedError, match=r'node "act" \(LeakyRelu\): the operator LeakyRelu is not supported'):
        import_onnx(save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), tmp_path))
    # weights that are a graph input, not an initializer
    model = recurrent_model("RNN", 2, 3, states=False, lengths=False)
    model.graph.input.append(h.make_tensor_value_info("W", TP.FLOAT, (1, 3, 2)))
    del model.graph.initializer[0]
    with pytest.raises(w.NotSupportedError, match="W must be a constant"):
        import_onnx(save(model, tmp_path))
    # a constant, nonzero initial state
    model = recurrent_model("RNN", 2, 3, states=False, lengths=False)
    node = model.graph.node[0]
    node.input.extend(["h0"])
    model.graph.initializer.append(numpy_helper.from_array(np.ones((1, 1, 3), np.float32), "h0"))
    with pytest.raises(w.NotSupportedError, match="constant nonzero state"):
        import_onnx(save(model, tmp_path))


# ---- wlnet → ONNX → wlnet ---------------------------------------------------------------------------
def init(net, seed=1):
    return w.NetInitialize(net, RandomSeeding=seed)


ROUND_TRIPS = {
    "recurrent": lambda: (init(w.NetChain([w.LongShortTermMemoryLayer(3), w.GatedRecurrentLayer(2),
                                           w.BasicRecurrentLayer(3)], Input=("Varying", 2))),
                          [RNG.normal(size=(t, 2)) for t in (4, 2, 3)]),
    "classifier": lambda: (init(w.NetChain([w.EmbeddingLayer(4), w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(),
                                            w.LinearLayer(3), w.DropoutLayer(0.2), w.SoftmaxLayer()],
                                           Input=w.NetEncoder(("Characters", [w.DigitCharacter, "+"])),
                                           Output=w.NetDecoder(("Class", ["Less", "Greater", "Equal"])))),
                           ["12+3", "7", "99+1"]),
    "one-hot": lambda: (init(w.NetChain([w.UnitVectorLayer(5), w.BasicRecurrentLayer(2)],
                                        Input=w.NetEncoder(("Characters", "abcde")))), ["abca", "e"]),
    "scalar": lambda: (init(w.NetChain([w.GatedRecurrentLayer(3), w.SequenceLastLayer(), w.LinearLayer(1)],
                                       Input=("Varying", 2), Output="Scalar")),
                       [RNG.normal(size=(t, 2)) for t in (4, 2)]),
    "vectors": lambda: (init(w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Sin"), w.LinearLayer(2),
                                         w.ElementwiseLayer("LogisticSigmoid")], Input=3)), RNG.normal(size=(3, 3))),
    "graph": lambda: (init(w.NetGraph({"lstm": w.LongShortTermMemoryLayer(3), "last": w.SequenceLastLayer()},
                                      [("lstm", "last"), (w.NetPort("s0"), w.NetPort("lstm", "State")),
                                       (w.NetPort("lstm", "CellState"), w.NetPort("cT")), ("last", w.NetPort("y"))],
                                      Input=("Varying", 2))),
                      {"Input": [RNG.normal(size=(t, 2)) for t in (4, 2)], "s0": RNG.normal(size=(2, 3))}),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_round_trip_through_onnx(name, tmp_path):
    net, x = ROUND_TRIPS[name]()
    export_onnx(tmp_path / "n.onnx", net)
    back = import_onnx(tmp_path / "n.onnx")
    assert back.input_ports() == net.input_ports() and back.output_ports() == net.output_ports()
    assert {p: e.input_form() for p, e in back.encoders.items()} == {p: e.input_form() for p, e in net.encoders.items()}
    assert back.decoders == net.decoders
    kinds = [type(x).__name__ for _, x in net.leaves() if type(x).__name__ != "DropoutLayer"]  # identity in ONNX
    assert [type(x).__name__ for _, x in back.leaves()] == kinds
    a, b = net(x), back(x)
    if name == "classifier":
        assert a == b
        a, b = net(x, "Probabilities"), back(x, "Probabilities")
        a, b = [list(p.values()) for p in a], [list(p.values()) for p in b]
    for key in a if isinstance(a, dict) else [None]:
        for p, q in zip(*(v if key is None else v[key] for v in (a, b))):
            np.testing.assert_allclose(np.asarray(q), np.asarray(p), atol=1e-6)
    original, again = w.Information(net, "Arrays"), w.Information(back, "Arrays")
    assert [k[-1] for k in original] == [k[-1] for k in again]
    for v, u in zip(original.values(), again.values()):  # the arrays come back bit for bit
        np.testing.assert_array_equal(u, v)


def test_reverse_recurrent_node_imports_and_exports_again(tmp_path):
    model = recurrent_model("GRU", 2, 3, "reverse", states=False)
    net = import_onnx(save(model, tmp_path))
    seqs = [RNG.normal(size=(t, 2)).astype(np.float32) for t in (3, 1, 4)]
    export_onnx(tmp_path / "again.onnx", net)
    again = onnx.load(str(tmp_path / "again.onnx"))
    onnx.checker.check_model(again, full_check=True)
    x = np.zeros((3, 4, 2), np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    lengths = np.array([3, 1, 4])
    want = session(model).run(None, {"X": x.transpose(1, 0, 2), "L": lengths.astype(np.int32)})
    got = dict(zip([o.name for o in again.graph.output],
                   session(again).run(None, {"X": x, "X_lengths": lengths})))
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(got["Y"][i, :t], want[0][:t, 0, i], atol=TOL)
    np.testing.assert_allclose(got["Y_h"], want[1][0], atol=TOL)
    for i, y in enumerate(net({"X": seqs})["Y"]):
        np.testing.assert_allclose(y, want[0][:len(seqs[i]), 0, i], atol=TOL)


# ---- bad files -------------------------------------------------------------------------------------
def good_file(tmp_path):
    path = tmp_path / "good.onnx"
    export_onnx(path, init(w.LongShortTermMemoryLayer(2, Input=("Varying", 2))))
    return path


@pytest.mark.parametrize("bad", ["missing", "directory", "empty", "random", "text", "truncated", "no graph"])
def test_bad_files_are_clear_errors_naming_the_file(bad, tmp_path):
    path = tmp_path / "bad.onnx"
    if bad == "directory":
        path.mkdir()
    elif bad == "empty":
        path.write_bytes(b"")
    elif bad == "random":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif bad == "text":
        path.write_text("net = LongShortTermMemoryLayer(3)\n")
    elif bad == "truncated":
        data = good_file(tmp_path).read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif bad == "no graph":
        path.write_bytes(h.make_model(h.make_graph([], "g", [], [])).SerializeToString())
    with pytest.raises(w.NetError) as e:
        import_onnx(path)
    assert str(path) in str(e.value)


def test_every_truncation_of_a_real_file_is_a_net_error(tmp_path):
    data = good_file(tmp_path).read_bytes()
    path = tmp_path / "cut.onnx"
    for cut in range(0, len(data), max(1, len(data) // 60)):
        path.write_bytes(data[:cut])
        try:
            net = import_onnx(path)
        except w.NetError:
            continue
        net([[0.5, 0.5]])  # a cut that still parses must give a working net
    assert os.path.exists(path)


def test_mutated_files_load_and_evaluate_or_raise_net_error(tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    data = good_file(tmp_path).read_bytes()
    path = tmp_path / "mutated.onnx"

    @hypothesis.settings(max_examples=80, deadline=None, derandomize=True, database=None)
    @hypothesis.given(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=4))
    def mutated(changes):
        b = bytearray(data)
        for i, v in changes:
            b[i] = v
        path.write_bytes(bytes(b))
        try:
            net = import_onnx(path)
        except w.NetError:
            return
        net([[0.5, 0.5], [0.25, -1.0]])

    mutated()


def vector_model(nodes, inits=(), outputs=("y",), meta=None):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TP.FLOAT, ("B", 3))],
                     [h.make_tensor_value_info(o, TP.FLOAT, [None, None]) for o in outputs], list(inits))
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    if meta:
        h.set_model_props(m, meta)
    return m


def test_graphs_that_do_not_map_are_clear_errors(tmp_path):
    w3 = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    cases = [
        (vector_model([h.make_node("MatMul", ["x", "w"], ["a"]), h.make_node("MatMul", ["x", "w"], ["b"]),
                       h.make_node("Concat", ["a", "b"], ["y"], axis=0)], [w3]), "Concat of wlnet values along their "
                                                                                 "batch or time axis"),
        (vector_model([h.make_node("Identity", ["x"], ["y"])]), "graph input passed through"),
        (vector_model([h.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(3, np.float32)))]),
         "does not depend on the inputs"),
        (vector_model([h.make_node("Add", ["x", "w"], ["y"])], [w3]), "bias after a MatMul"),
        (vector_model([h.make_node("ConstantOfShape", ["s"], ["z"]), h.make_node("MatMul", ["x", "w"], ["y"])],
                      [w3, numpy_helper.from_array(np.array([10**5, 10**5], np.int64), "s")], ("y", "z")),
         "a constant of 10000000000 elements"),
        (vector_model([h.make_node("MatMul", ["x", "w"], ["y"])], [w3],
                      meta={"wlnet.decoders": '{"y": {"spec": {"type": "Class", "labels": "ab"}}}'}),
         "metadata wlnet.decoders of port 'y' is not a valid"),
    ]
    for model, message in cases:
        with pytest.raises(w.NetError, match=message):
            import_onnx(save(model, tmp_path))
    model = vector_model([h.make_node("MatMul", ["x", "w"], ["y"])], [w3])
    t = model.graph.initializer[0]
    t.ClearField("float_data")
    t.ClearField("raw_data")
    t.data_location = TP.EXTERNAL
    t.external_data.add(key="location", value="weights.bin")
    with pytest.raises(w.NetError, match=r"external data of .*cannot be read"):
        import_onnx(save(model, tmp_path))
    t.external_data[0].value = "../weights.bin"  # outside the model's folder
    (tmp_path.parent / "weights.bin").write_bytes(np.ones(9, np.float32).tobytes())
    with pytest.raises(w.NetError, match=r"external data of .*cannot be read"):
        import_onnx(save(model, tmp_path))
    model = vector_model([h.make_node("MatMul", ["x", "w"], ["y"])], [w3])
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, size_threshold=0,
                    location="ext.onnx.data")
    assert (tmp_path / "ext.onnx.data").exists()
    np.testing.assert_allclose(import_onnx(tmp_path / "ext.onnx")([1.0, 2.0, 3.0]), [6.0, 6.0, 6.0])
    net = import_onnx(save(vector_model([h.make_node("MatMul", ["x", "w"], ["y"])], [w3]), tmp_path))
    np.testing.assert_allclose(net([1.0, 2.0, 3.0]), [6.0, 6.0, 6.0])
