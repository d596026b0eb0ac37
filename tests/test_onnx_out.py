"""ONNX out: every exported model passes onnx.checker (full check) and reproduces wlnet's values
(≤ 1e-5) in onnxruntime on ragged, zero-padded batches with their lengths, and in onnx's reference
evaluator (which ignores sequence_lens, so it gets batches of equal lengths and single examples):
each layer with a converter, chains, graphs with state ports, random nets; errors; metadata;
atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import wlnet as w
from wlnet.io.onnx import export_onnx, port_name, to_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx.reference import ReferenceEvaluator  # noqa: E402

TOL = 1e-5
RNG = np.random.default_rng(11)


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # optional inputs are initializers that are also inputs: ORT warns
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def pad(seqs, dtype=np.float32):
    seqs = [np.asarray(s) for s in seqs]
    out = np.zeros((len(seqs), max(len(s) for s in seqs), *seqs[0].shape[1:]), dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, np.array([len(s) for s in seqs], np.int64)


def outputs(model, result) -> dict:
    return dict(zip([o.name for o in model.graph.output], result))


def check(net, seqs, extra=None, port="Input", states=None, user=None):
    """The exported net in onnxruntime on the ragged batch `seqs` (plus `extra` inputs, initial
    `states` {position: (B, n)}) against wlnet's outputs and final states, within each length;
    then onnx's reference evaluator on each example alone. `user`: what wlnet gets for `seqs`
    where an encoder stands outside the graph."""
    model = to_model(net)
    onnx.checker.check_model(model, full_check=True)
    data = {port: user or [np.asarray(s).tolist() for s in seqs], **(extra or {})}
    given = dict(data)
    if states:
        given[w.NetPort(w.All, "States")] = {p: v.tolist() for p, v in states.items()}
    want = net(given)
    want = want if isinstance(want, dict) else {next(iter(net.output_ports())): want}
    final = net(given, w.NetPort(w.All, "States")) if net.state_positions() else {}
    integer = net.input_ports()[port].integer
    x, lengths = pad(seqs, np.int64 if integer else np.float32)
    feeds = {port: x, f"{port}_lengths": lengths, **{k: np.asarray(v, np.float32) for k, v in (extra or {}).items()}}
    for p, v in (states or {}).items():
        feeds[port_name(p) + "_initial"] = v.astype(np.float32)
    got = outputs(model, session(model).run(None, feeds))
    for name, v in want.items():
        for i, (a, b) in enumerate(zip(got[name], v)):
            b = np.asarray(b)
            np.testing.assert_allclose(a[:len(b)] if b.ndim and a.ndim == b.ndim and len(b) < len(a) else a, b,
                                       atol=TOL, err_msg=f"{name}, example {i}")
    for pos, v in final.items():
        np.testing.assert_allclose(got[port_name(pos)], np.asarray(v), atol=TOL, err_msg=str(pos))
    ref = ReferenceEvaluator(model)
    for i, s in enumerate(seqs[:2]):  # one example: no padding, so sequence_lens does not matter
        rest = {k: v[i:i + 1] for k, v in feeds.items() if k not in (port, f"{port}_lengths")}
        one = {port: x[i:i + 1, :len(s)], **rest}
        r = outputs(model, ref.run(None, one))
        for name, v in want.items():
            np.testing.assert_allclose(r[name][0], np.asarray(v[i]), atol=TOL, err_msg=f"reference {name}")
    return model, got


def ragged(k, lengths=(4, 2, 1, 3)):
    return [RNG.normal(size=(t, k)).astype(np.float32) for t in lengths]


def init(net, seed=1):
    return w.NetInitialize(net, RandomSeeding=seed)


# ---- each layer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", [w.LongShortTermMemoryLayer, w.GatedRecurrentLayer, w.BasicRecurrentLayer])
def test_recurrent_layer_alone_ragged_with_and_without_initial_states(layer):
    net = init(layer(3, Input=("Varying", 2)))
    model, _ = check(net, ragged(2))
    names = [i.name for i in model.graph.input]
    assert names[:2] == ["Input", "Input_lengths"]
    assert 'NetPort("State")_initial' in names
    assert [o.name for o in model.graph.output][:2] == ["Output", 'NetPort("State")']
    states = {p: RNG.normal(size=(4, 3)) for p in net.state_positions()}
    check(net, ragged(2), states=states)


def test_recurrent_nodes_are_onnx_own_with_the_gate_tables():
    nets = [init(c(2, Input=("Varying", 3))) for c in (w.LongShortTermMemoryLayer, w.GatedRecurrentLayer,
                                                       w.BasicRecurrentLayer)]
    for net, op in zip(nets, ("LSTM", "GRU", "RNN")):
        model = to_model(net)
        (node,) = [n for n in model.graph.node if n.op_type == op]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["hidden_size"] == 2 and attrs.get("layout", 0) == 0
        assert attrs.get("linear_before_reset", 1 if op == "GRU" else 0) == (1 if op == "GRU" else 0)
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        W, R, B = (inits[i] for i in node.input[1:4])
        a = {k[-1]: v for k, v in w.Information(net, "Arrays").items()}
        if op == "LSTM":  # i, o, f, c
            blocks = ["Input", "Output", "Forget", "Memory"]
            np.testing.assert_array_equal(W[0], np.concatenate([a[f"{g}GateInputWeights"] for g in blocks]))
            np.testing.assert_array_equal(R[0], np.concatenate([a[f"{g}GateStateWeights"] for g in blocks]))
            np.testing.assert_array_equal(B[0], np.concatenate([a[f"{g}GateBiases"] for g in blocks] + [np.zeros(8)]))
        if op == "GRU":  # z, r, h: z is Wolfram's input gate as it is
            np.testing.assert_array_equal(W[0, :2], a["InputGateInputWeights"])
            np.testing.assert_array_equal(W[0, 2:4], a["ResetGateInputWeights"])
            np.testing.assert_array_equal(R[0, 4:], a["MemoryGateStateWeights"])
            np.testing.assert_array_equal(B[0, 6:], np.zeros(6))


def test_vector_layers_linear_elementwise_softmax_dropout():
    for f in ("Tanh", "LogisticSigmoid", "Ramp", "Sin", "Exp"):
        net = init(w.NetChain([w.LinearLayer(4), w.ElementwiseLayer(f), w.DropoutLayer(0.3), w.LinearLayer(3),
                               w.SoftmaxLayer()], Input=5))
        model = to_model(net)
        onnx.checker.check_model(model, full_check=True)
        x = RNG.normal(size=(6, 5)).astype(np.float32)
        np.testing.assert_allclose(session(model).run(None, {"Input": x})[0], net(x), atol=TOL)
        np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"Input": x})[0], net(x), atol=TOL)


def test_sequence_last_on_ragged_batches_and_fixed_lengths():
    net = init(w.NetChain([w.GatedRecurrentLayer(3), w.SequenceLastLayer(), w.LinearLayer(2)], Input=("Varying", 2)))
    check(net, ragged(2, (5, 1, 3)))
    fixed = init(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=(4, 2)))
    model = to_model(fixed)
    assert [i.name for i in model.graph.input][0] == "Input" and "Input_lengths" not in [i.name for i in
                                                                                       model.graph.input]
    x = RNG.normal(size=(3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(session(model).run(None, {"Input": x})[0], fixed(x), atol=TOL)


def test_embedding_and_unit_vector_on_index_sequences_with_encoder_and_decoder_metadata():
    enc = w.NetEncoder(("Characters", [w.DigitCharacter, "+"]))
    dec = w.NetDecoder(("Class", ["Less", "Greater", "Equal"]))
    net = init(w.NetChain([w.EmbeddingLayer(4), w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(),
                           w.LinearLayer(3), w.SoftmaxLayer()], Input=enc, Output=dec))
    strings = ["12+3", "7", "99+11"]
    idx = [enc(s) for s in strings]
    model = to_model(net)
    onnx.checker.check_model(model, full_check=True)
    x, lengths = pad(idx, np.int64)
    got = session(model).run(None, {"Input": x, "Input_lengths": lengths})[0]
    np.testing.assert_allclose(got, [[p[c] for c in dec.labels] for p in net(strings, "Probabilities")], atol=TOL)
    meta = {p.key: p.value for p in model.metadata_props}
    encoders, decoders = json.loads(meta["wlnet.encoders"]), json.loads(meta["wlnet.decoders"])
    assert encoders["Input"]["spec"] == {"type": "Characters", "alphabet": [{"class": "DigitCharacter"}, "+"],
                                         "form": "Index", "IgnoreCase": False}
    assert encoders["Input"]["code"] == enc.input_form()
    assert decoders["Output"]["spec"] == {"type": "Class", "labels": ["Less", "Greater", "Equal"]}
    one_hot = init(w.NetChain([w.UnitVectorLayer(5), w.BasicRecurrentLayer(2)], Input=w.NetEncoder(("Characters",
                                                                                                     "abcde"))))
    strings = ["abca", "e", "dd"]
    check(one_hot, [np.array(one_hot.encoders["Input"](s)) for s in strings], user=strings)


def test_graph_with_state_ports_fed_and_read_and_a_nested_chain():
    lstm = w.LongShortTermMemoryLayer(3)
    inner = w.NetChain([w.GatedRecurrentLayer(2), w.BasicRecurrentLayer(3)])
    net = init(w.NetGraph({"lstm": lstm, "inner": inner, "last": w.SequenceLastLayer()},
                          [("lstm", "inner", "last"), (w.NetPort("s0"), w.NetPort("lstm", "State")),
                           (w.NetPort("lstm", "CellState"), w.NetPort("cT")), ("last", w.NetPort("y"))],
                          Input=("Varying", 2)))
    s0 = RNG.normal(size=(3, 3)).astype(np.float32)
    model, got = check(net, ragged(2, (3, 5, 2)), extra={"s0": s0.tolist()})
    names = [i.name for i in model.graph.input]
    assert "s0" in names and 'NetPort("lstm", "State")_initial' not in names  # fed by an edge
    assert 'NetPort("lstm", "CellState")_initial' in names
    assert 'NetPort("inner", 1, "State")_initial' in names
    outs = [o.name for o in model.graph.output]
    assert outs[:2] == list(net.output_ports()) and set(outs[:2]) == {"y", "cT"}
    assert 'NetPort("inner", 2, "State")' in outs
    inner_states = {("inner", 1, "State"): RNG.normal(size=(3, 2)), ("lstm", "CellState"): RNG.normal(size=(3, 3))}
    check(net, ragged(2, (3, 5, 2)), extra={"s0": s0.tolist()}, states=inner_states)


def test_scalar_output():
    net = init(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(), w.LinearLayer(1)],
                          Input=("Varying", 2), Output="Scalar"))
    model, got = check(net, ragged(2))
    assert got["Output"].shape == (4,)


@pytest.mark.parametrize("seed", range(4))
def test_random_nets(seed):
    rng = np.random.default_rng(seed)
    kinds = (w.LongShortTermMemoryLayer, w.GatedRecurrentLayer, w.BasicRecurrentLayer)
    layers = [kinds[i](int(rng.integers(1, 5))) for i in rng.integers(0, 3, size=rng.integers(1, 4))]
    if rng.random() < 0.5:
        layers += [w.SequenceLastLayer(), w.LinearLayer(int(rng.integers(1, 4))), w.ElementwiseLayer("Tanh")]
    k = int(rng.integers(1, 4))
    net = init(w.NetChain(layers, Input=("Varying", k)), seed)
    lengths = [int(t) for t in rng.integers(1, 6, size=rng.integers(1, 5))]
    check(net, [rng.normal(size=(t, k)).astype(np.float32) for t in lengths])


# ---- errors, files ---------------------------------------------------------------------------
def test_python_function_is_refused_naming_the_layer(tmp_path):
    net = init(w.NetChain([w.LinearLayer(2), w.ElementwiseLayer(lambda x: x * 2)], Input=3))
    with pytest.raises(w.NotSupportedError, match=r"ElementwiseLayer at 2 .*<lambda>.*'Tanh'"):
        export_onnx(tmp_path / "n.onnx", net)
    assert not os.listdir(tmp_path)


def test_uninitialized_and_unsupported_and_not_a_net(tmp_path):
    with pytest.raises(w.InitializationError, match="NetInitialize"):
        export_onnx(tmp_path / "n.onnx", w.LongShortTermMemoryLayer(2, Input=("Varying", 2)))

    class OtherLayer(w.DropoutLayer):
        pass

    net = init(w.NetChain([w.LinearLayer(2), OtherLayer()], Input=3))
    with pytest.raises(w.NotSupportedError, match="layer 2 is a OtherLayer, which has no ONNX form"):
        export_onnx(tmp_path / "n.onnx", net)
    lstm = init(w.LongShortTermMemoryLayer(2, Input=("Varying", 2)))
    with pytest.raises(w.NetError, match="NetStateObject.*Export the net"):
        export_onnx(tmp_path / "n.onnx", w.NetStateObject(lstm))
    with pytest.raises(w.NotSupportedError, match="not fully known"):
        export_onnx(tmp_path / "n.onnx", w.NetChain([w.SoftmaxLayer()]))
    assert not os.listdir(tmp_path)


def test_bad_paths_and_atomic_replacement(tmp_path, monkeypatch):
    net = init(w.LongShortTermMemoryLayer(2, Input=("Varying", 2)))
    with pytest.raises(w.NetError, match="is a directory"):
        export_onnx(tmp_path, net)
    with pytest.raises(w.NetError, match="does not exist"):
        export_onnx(tmp_path / "missing" / "n.onnx", net)
    target = tmp_path / "n.onnx"
    target.write_bytes(b"old")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(w.ExportError, match=r"Export: cannot write .*n\.onnx.*disk full"):
        export_onnx(target, net)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["n.onnx"]
    monkeypatch.undo()
    export_onnx(target, net)
    onnx.checker.check_model(onnx.load(str(target)), full_check=True)
    assert os.listdir(tmp_path) == ["n.onnx"]


def test_a_model_over_protobufs_2_gb_is_refused(tmp_path, monkeypatch):
    import wlnet.io.onnx.export as module

    monkeypatch.setattr(module, "MAX_BYTES", 1000)
    with pytest.raises(w.NotSupportedError, match="at most 2 GB"):
        export_onnx(tmp_path / "n.onnx", init(w.LongShortTermMemoryLayer(8, Input=("Varying", 8))))
    assert not os.listdir(tmp_path)


def test_import_wlnet_imports_no_onnx():
    code = "import sys, wlnet, wlnet.io.onnx, wlnet.io.torch; print(sorted(m for m in ('onnx', 'onnxruntime', " \
           "'onnxscript', 'safetensors', 'hypothesis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


def test_names_that_collide_are_refused(tmp_path):
    net = init(w.NetGraph([w.LongShortTermMemoryLayer(2), w.SequenceLastLayer(), w.LinearLayer(2)],
                          [(1, 2), (w.NetPort("Input_lengths"), 3)], Input=("Varying", 2), Input_lengths=4))
    with pytest.raises(w.NetError, match="two inputs of the net would both be named 'Input_lengths'"):
        export_onnx(tmp_path / "n.onnx", net)
    net = init(w.NetGraph([w.LongShortTermMemoryLayer(2)], [(1, w.NetPort("Input_lengths"))], Input=("Varying", 2)))
    with pytest.raises(w.NetError, match="the output 'Input_lengths' has the name of another tensor"):
        export_onnx(tmp_path / "n.onnx", net)
    assert not os.listdir(tmp_path)
