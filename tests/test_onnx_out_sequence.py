"""ONNX out of the sequence layers, the list layers and the operators: each exported model passes
onnx.checker (full check) and reproduces wlnet's values (≤ 1e-5) in onnxruntime on ragged,
zero-padded batches (each "Varying" port with its own lengths), and in onnx's reference
evaluator on single examples; the bidirectional operator over one kind of recurrent layer is
one bidirectional node; what has no ONNX form is refused naming the layer."""

from __future__ import annotations

import os

import numpy as np
import pytest

import wlnet as w
from wlnet.io.onnx import export_onnx, port_name, to_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx.reference import ReferenceEvaluator  # noqa: E402

TOL = 1e-5
RNG = np.random.default_rng(23)
P = w.NetPort


def session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def pad(seqs, dtype):
    out = np.zeros((len(seqs), max(len(s) for s in seqs), *np.shape(seqs[0])[1:]), dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, np.array([len(s) for s in seqs], np.int64)


def near(got, want, what):
    """got (padded) equals want within want's own length."""
    got, want = np.asarray(got), np.asarray(want)
    if want.ndim and got.ndim == want.ndim and len(want) < len(got):
        got = got[:len(want)]
    np.testing.assert_allclose(got, want, atol=TOL, err_msg=what)


def check(net, data: dict, states=None):
    """The exported net in onnxruntime on the batch `data` ({port: examples}; "Varying" ports
    ragged, with their lengths) and initial `states` ({position: (B, n)}) against wlnet's outputs
    and final states; then onnx's reference evaluator on the first two examples alone."""
    model = to_model(net)
    onnx.checker.check_model(model, full_check=True)
    given = {p: [np.asarray(x).tolist() for x in xs] for p, xs in data.items()}
    if states:
        given[P(w.All, "States")] = {p: v.tolist() for p, v in states.items()}
    want = net(given)
    want = want if isinstance(want, dict) else {next(iter(net.output_ports())): want}
    final = net(given, P(w.All, "States")) if net.state_positions() else {}
    ports = net.input_ports()
    feeds = {}
    for port, xs in data.items():
        dtype = np.int64 if ports[port].integer else np.float32
        if ports[port].varying:
            feeds[port], feeds[f"{port}_lengths"] = pad(xs, dtype)
        else:
            feeds[port] = np.asarray(xs, dtype)
    for pos, v in (states or {}).items():
        feeds[port_name(pos) + "_initial"] = v.astype(np.float32)
    names = [o.name for o in model.graph.output]
    got = dict(zip(names, session(model).run(None, feeds)))
    for name, v in want.items():
        for i, b in enumerate(v):
            near(got[name][i], b, f"{name}, example {i}")
    for pos, v in final.items():
        near(got[port_name(pos)], v, str(pos))
    ref = ReferenceEvaluator(model)
    for i in range(2):
        one = {port: (np.asarray(xs[i], np.int64 if ports[port].integer else np.float32)[None]) for port, xs in
               data.items()}
        one.update({f"{p}_initial": v[i:i + 1].astype(np.float32) for p, v in
                    ((port_name(q), u) for q, u in (states or {}).items())})
        r = dict(zip(names, ref.run(None, one)))
        for name, v in want.items():
            near(r[name][0], v[i], f"reference {name}, example {i}")
    return model, got


def seqs(k, lengths=(4, 2, 5)):
    return [RNG.normal(size=(t, k)).astype(np.float32) for t in lengths]


def init(net, seed=3):
    return w.NetInitialize(net, RandomSeeding=seed)


def ops(model) -> list:
    return [n.op_type for n in model.graph.node]


# ---- sequence layers -------------------------------------------------------------------------------
def test_sequence_most_rest_reverse_ragged():
    net = init(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceMostLayer(), w.GatedRecurrentLayer(2),
                           w.SequenceRestLayer(), w.SequenceReverseLayer(), w.BasicRecurrentLayer(2)],
                          Input=("Varying", 2)))
    check(net, {"Input": seqs(2, (4, 3, 5))})
    last = init(w.NetChain([w.SequenceRestLayer(), w.SequenceReverseLayer(), w.LongShortTermMemoryLayer(3),
                            w.SequenceLastLayer()], Input=("Varying", 2)))
    check(last, {"Input": seqs(2, (2, 6, 3))})
    fixed = init(w.NetChain([w.SequenceMostLayer(), w.GatedRecurrentLayer(2)], Input=(4, 3)))
    model, got = check(fixed, {"Input": RNG.normal(size=(3, 4, 3))})
    assert got["Output"].shape == (3, 3, 2)


@pytest.mark.parametrize("f", ["Max", "Min", "Mean", "Total", "Times"])
def test_aggregation_over_the_real_steps_and_over_each_element(f):
    over_steps = init(w.NetChain([w.LongShortTermMemoryLayer(3), w.AggregationLayer(f, 1), w.LinearLayer(2)],
                                 Input=("Varying", 2)))
    check(over_steps, {"Input": seqs(2)})
    per_step = init(w.NetChain([w.GatedRecurrentLayer(3), w.AggregationLayer(f)], Input=("Varying", 2)))
    check(per_step, {"Input": seqs(2)})
    matrix = init(w.NetChain([w.AggregationLayer(f, [1, 2])], Input=(2, 3, 2)))
    check(matrix, {"Input": RNG.normal(size=(3, 2, 3, 2))})


# ---- list layers ----------------------------------------------------------------------------------
def two_sequences(join):
    """Two LSTMs on a sequence, joined by `join`."""
    return init(w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.LongShortTermMemoryLayer(3), "j": join},
                           [(P("Input"), "a"), (P("Input"), "b"), (["a", "b"], "j")], Input=("Varying", 2)))


def test_catenate_step_by_step_and_of_vectors():
    check(two_sequences(w.CatenateLayer(-1)), {"Input": seqs(2)})
    vectors = init(w.NetGraph({"a": w.LinearLayer(3), "b": w.LinearLayer(2), "j": w.CatenateLayer()},
                              [(P("x"), "a"), (P("x"), "b"), (["a", "b"], "j")], x=4))
    check(vectors, {"x": RNG.normal(size=(3, 4))})


def test_catenate_a_vector_to_every_step_of_sequences_from_two_ports():
    net = init(w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.GatedRecurrentLayer(2), "v": w.LinearLayer(2),
                           "j": w.CatenateLayer(-1), "r": w.BasicRecurrentLayer(2)},
                          [(P("s"), "a"), (P("t"), "b"), (P("x"), "v"), (["a", "v", "b"], "j"), ("j", "r")],
                          s=("Varying", 2), t=("Varying", 3), x=4))
    lengths = (3, 1, 4)
    data = {"s": seqs(2, lengths), "t": seqs(3, lengths), "x": RNG.normal(size=(3, 4))}
    model, got = check(net, data)
    # the same sequences, t's batch padded two steps longer than s's
    feeds = {"s": pad(data["s"], np.float32)[0], "s_lengths": np.array(lengths), "t_lengths": np.array(lengths),
             "t": np.pad(pad(data["t"], np.float32)[0], ((0, 0), (0, 2), (0, 0))), "x": data["x"].astype(np.float32)}
    longer = session(model).run(None, feeds)[0]
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(longer[i, :t], got["Output"][i, :t], atol=TOL)


def test_shortened_sequences_from_two_ports_padded_differently_are_aligned():
    net = init(w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.GatedRecurrentLayer(3),
                           "ma": w.SequenceMostLayer(), "rb": w.SequenceRestLayer(), "j": w.TotalLayer()},
                          [(P("s"), "a", "ma"), (P("t"), "b", "rb"), (["ma", "rb"], "j")], s=("Varying", 2),
                          t=("Varying", 2)))
    lengths = (3, 2, 4)
    data = {"s": seqs(2, lengths), "t": seqs(2, lengths)}
    model, got = check(net, data)
    feeds = {"s": pad(data["s"], np.float32)[0], "t": np.pad(pad(data["t"], np.float32)[0], ((0, 0), (0, 3), (0, 0))),
             "s_lengths": np.array(lengths), "t_lengths": np.array(lengths)}
    longer = session(model).run(None, feeds)[0]
    for i, t in enumerate(lengths):
        np.testing.assert_allclose(longer[i, :t - 1], got["Output"][i, :t - 1], atol=TOL)


def test_catenate_sequences_one_after_another_each_to_its_own_length():
    net = init(w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.GatedRecurrentLayer(3), "j": w.CatenateLayer(),
                           "r": w.BasicRecurrentLayer(2)},
                          [(P("s"), "a"), (P("t"), "b"), (["a", "b"], "j"), ("j", "r")], s=("Varying", 2),
                          t=("Varying", 2)))
    model, got = check(net, {"s": seqs(2, (3, 1, 4)), "t": seqs(2, (2, 5, 1))})
    assert "GatherND" in ops(model)
    indices = init(w.NetGraph({"j": w.CatenateLayer(), "e": w.EmbeddingLayer(3, 5)}, [(P("s"), "j"), (P("t"), "j"),
                                                                                     ("j", "e")],
                              s=w.NetEncoder(("Characters", "abcde")), t=w.NetEncoder(("Characters", "abcde"))))
    enc = indices.encoders["s"]
    words = (["ab", "c", "eed"], ["dd", "abcde", "b"])
    model = to_model(indices)
    onnx.checker.check_model(model, full_check=True)
    feeds = {}
    for port, ws in zip("st", words):
        feeds[port], feeds[f"{port}_lengths"] = pad([enc(x) for x in ws], np.int64)
    out = session(model).run(None, feeds)[0]
    for i, want in enumerate(indices({"s": words[0], "t": words[1]})):
        near(out[i], want, f"example {i}")


def test_total_and_threading_with_each_named_function():
    check(two_sequences(w.TotalLayer()), {"Input": seqs(2)})
    for f in ("Plus", "Times", "Max", "Min", "Subtract", "Divide", "Power"):
        net = init(w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.LongShortTermMemoryLayer(3),
                               "ea": w.ElementwiseLayer("Exp"), "eb": w.ElementwiseLayer("Exp"),
                               "j": w.ThreadingLayer(f)},  # on values in (1/e, e)
                              [(P("Input"), "a", "ea"), (P("Input"), "b", "eb"), (["eb", "ea"], "j")],
                              Input=("Varying", 2)))
        check(net, {"Input": seqs(2)})


def test_list_layer_errors_name_the_layer(tmp_path):
    net = init(w.NetGraph({"a": w.LinearLayer(2), "j": w.ThreadingLayer(lambda x, y: x * y)},
                          [(P("x"), "a"), (["a", "a"], "j")], x=3))
    with pytest.raises(w.NotSupportedError, match=r"ThreadingLayer at j applies the Python function <lambda>.*'Plus'"):
        export_onnx(tmp_path / "n.onnx", net)
    with pytest.raises(w.NotSupportedError, match="'Input' takes a list of arrays.*NetGraph"):
        export_onnx(tmp_path / "n.onnx", w.CatenateLayer(Input=[2, 3]))
    assert not os.listdir(tmp_path)


# ---- operators ------------------------------------------------------------------------------------
def test_map_of_a_linear_layer_and_of_a_chain_on_ragged_sequences():
    net = init(w.NetChain([w.LongShortTermMemoryLayer(3), w.NetMapOperator(w.LinearLayer(4)), w.SoftmaxLayer()],
                          Input=("Varying", 2)))
    check(net, {"Input": seqs(2)})
    chain = init(w.NetChain([w.NetMapOperator(w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh"),
                                                           w.LinearLayer(2), w.SoftmaxLayer()])),
                             w.GatedRecurrentLayer(2)], Input=("Varying", 3)))
    check(chain, {"Input": seqs(3)})


@pytest.mark.parametrize("layer", [w.LongShortTermMemoryLayer, w.GatedRecurrentLayer, w.BasicRecurrentLayer])
@pytest.mark.parametrize("aggregator", ["Catenate", "Total", "Mean"])
def test_bidirectional_operator_is_one_bidirectional_node(layer, aggregator):
    net = init(w.NetBidirectionalOperator(layer(3), aggregator, Input=("Varying", 2)))
    model, _ = check(net, {"Input": seqs(2)})
    (node,) = [n for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == b"bidirectional"
    names = [i.name for i in model.graph.input]
    assert 'NetPort("ForwardNet", "State")_initial' in names and 'NetPort("BackwardNet", "State")_initial' in names
    states = {p: RNG.normal(size=(3, 3)) for p in net.state_positions()}
    check(net, {"Input": seqs(2)}, states=states)


def test_bidirectional_operator_state_ports_fed_and_read_in_a_graph():
    bi = w.NetBidirectionalOperator(w.LongShortTermMemoryLayer(3))
    net = init(w.NetGraph({"bi": bi, "last": w.SequenceLastLayer()},
                          [("bi", "last"), (P("s0"), P("bi", "BackwardState")), (P("bi", "ForwardCellState"), P("c")),
                           ("last", P("y"))], Input=("Varying", 2)))
    s0 = RNG.normal(size=(3, 3))
    model, got = check(net, {"Input": seqs(2), "s0": s0}, states={("bi", "ForwardNet", "State"): RNG.normal(size=(3,
                                                                                                               3))})
    names = [i.name for i in model.graph.input]
    assert "s0" in names and 'NetPort("bi", "BackwardNet", "State")_initial' not in names


def test_bidirectional_operator_over_two_different_nets_is_two_passes():
    pair = init(w.NetBidirectionalOperator((w.LongShortTermMemoryLayer(3), w.GatedRecurrentLayer(2)),
                                           Input=("Varying", 2)))
    model, _ = check(pair, {"Input": seqs(2)})
    assert ops(model).count("LSTM") == 1 and ops(model).count("GRU") == 1 and "ReverseSequence" in ops(model)
    states = {p: RNG.normal(size=(3, 3 if p[0] == "ForwardNet" else 2)) for p in pair.state_positions()}
    check(pair, {"Input": seqs(2)}, states=states)
    last = init(w.NetBidirectionalOperator(w.NetChain([w.BasicRecurrentLayer(3), w.SequenceLastLayer()]), "Total",
                                           Input=("Varying", 2)))
    check(last, {"Input": seqs(2)})
