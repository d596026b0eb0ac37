"""NetChain, NetGraph, NetPort, NetStateObject: the reference page's examples (an LSTM behind a
Characters encoder; a chain ending in SequenceLastLayer; a graph that feeds, and one that reads,
"State" and "CellState"; a NetStateObject that remembers its state), shape inference,
construction errors, InputForm. Values are checked against the numpy recurrence in reference.py."""

import numpy as np
import pytest
import torch

import wlnet as w
from reference import backward as reference_backward
from reference import forward as lstm_forward  # the LSTM recurrence in numpy

RNG = np.random.default_rng(7)


def arrays_of(layer):
    return {k[-1]: v.astype(np.float64) for k, v in w.Information(layer, "Arrays").items()}


def random_lstm(n, k, seed=0):
    return w.NetInitialize(w.LongShortTermMemoryLayer(n, Input=("Varying", k)), RandomSeeding=seed)


# ---- scenarios -------------------------------------------------------------------------------

def test_scenario_3_characters_encoder_string_and_batch():
    enc = w.NetEncoder(("Characters", "abc", "UnitVector"))
    layer = w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=enc))
    onehot = np.eye(3)[[0, 1, 2, 2, 0]]
    out, _, _ = lstm_forward(onehot, arrays_of(layer))
    np.testing.assert_allclose(layer("abcca"), out, atol=1e-5)
    batch = layer(["abcca", "b", "cab"])
    assert [len(b) for b in batch] == [5, 1, 3]
    for s, got in zip(["abcca", "b", "cab"], batch):
        np.testing.assert_allclose(got, layer(s), atol=1e-6)


def test_scenario_4_chain_with_sequence_last():
    chain = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=("Varying", 2)))
    lstm = w.NetExtract(chain, 1)
    x = RNG.normal(size=(4, 2))
    out, s, _ = lstm_forward(x, arrays_of(lstm))
    got = chain(x.tolist())
    assert len(got) == 3
    np.testing.assert_allclose(got, out[-1], atol=1e-5)
    np.testing.assert_allclose(got, s, atol=1e-5)
    seqs = [RNG.normal(size=(t, 2)).tolist() for t in (5, 1, 3)]
    batch = chain(seqs)
    for seq, got in zip(seqs, batch):
        np.testing.assert_allclose(got, lstm_forward(np.array(seq), arrays_of(lstm))[0][-1], atol=1e-5)


def test_scenario_5_initial_states_from_graph_inputs():
    lstm = random_lstm(2, 3, seed=5)
    graph = w.NetGraph([lstm], [(w.NetPort("s0"), w.NetPort(1, "State")),
                                (w.NetPort("c0"), w.NetPort(1, "CellState"))])
    assert list(graph.input_ports()) == ["Input", "s0", "c0"]
    x = RNG.normal(size=(3, 3))
    s0, c0 = np.array([1.0, -1.0]), np.array([0.5, 0.25])
    got = graph({"Input": x.tolist(), "s0": s0.tolist(), "c0": c0.tolist()})
    np.testing.assert_allclose(got, lstm_forward(x, arrays_of(lstm), s0, c0)[0], atol=1e-5)
    zero = graph({"Input": x.tolist(), "s0": [0, 0], "c0": [0, 0]})
    np.testing.assert_allclose(zero, lstm(x.tolist()), atol=1e-6)
    assert not np.allclose(got, zero)


def test_scenario_5_batch_of_initial_states():
    lstm = random_lstm(2, 3, seed=6)
    graph = w.NetGraph([lstm], [(w.NetPort("s0"), w.NetPort(1, "State"))])
    xs = [RNG.normal(size=(t, 3)) for t in (2, 4)]
    s0 = RNG.normal(size=(2, 2))
    got = graph({"Input": [x.tolist() for x in xs], "s0": s0.tolist()})
    for x, s, g in zip(xs, s0, got):
        np.testing.assert_allclose(g, lstm_forward(x, arrays_of(lstm), s)[0], atol=1e-5)


def test_scenario_6_final_states_equal_reference_and_last_output():
    lstm = random_lstm(2, 3, seed=8)
    graph = w.NetGraph([lstm], [(w.NetPort(1, "State"), w.NetPort("state")),
                                (w.NetPort(1, "CellState"), w.NetPort("cellstate"))])
    x = RNG.normal(size=(4, 3))
    res = graph(x.tolist())
    assert set(res) == {"Output", "state", "cellstate"}
    out, s, c = lstm_forward(x, arrays_of(lstm))
    np.testing.assert_allclose(res["state"], s, atol=1e-5)
    np.testing.assert_allclose(res["cellstate"], c, atol=1e-5)
    np.testing.assert_allclose(res["state"], res["Output"][-1], atol=1e-7)
    assert graph(x.tolist(), "cellstate") == res["cellstate"]


def test_scenario_6_ragged_batch_final_state_at_each_end():
    lstm = random_lstm(3, 2, seed=9)
    graph = w.NetGraph([lstm], [(w.NetPort(1, "State"), w.NetPort("state")),
                                (w.NetPort(1, "CellState"), w.NetPort("cellstate"))])
    seqs = [RNG.normal(size=(t, 2)) for t in (5, 2, 3)]
    res = graph([s.tolist() for s in seqs])
    for i, seq in enumerate(seqs):
        out, s, c = lstm_forward(seq, arrays_of(lstm))
        np.testing.assert_allclose(res["state"][i], s, atol=1e-5)
        np.testing.assert_allclose(res["cellstate"][i], c, atol=1e-5)
        np.testing.assert_allclose(res["state"][i], res["Output"][i][-1], atol=1e-7)


def test_scenario_11_state_object_changes_state():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=("Varying", 2)))
    obj = w.NetStateObject(net)
    x = [[1.0, 2.0], [3.0, 4.0]]
    first, second = obj(x), obj(x)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(first, net(x), atol=1e-6)
    np.testing.assert_allclose(second, net(x + x), atol=1e-5)
    states = w.NetExtract(obj, "States")
    np.testing.assert_allclose(states[(1, "State")], second, atol=1e-6)


# ---- NetStateObject ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_state_object_equals_one_long_sequence(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(n), w.LongShortTermMemoryLayer(n + 1)],
                                     Input=("Varying", k)), RandomSeeding=seed)
    x = rng.normal(size=(int(rng.integers(2, 12)), k))
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=min(len(x) - 1, int(rng.integers(1, 4))), replace=False))
    obj = w.NetStateObject(net)
    pieces = [obj(p) for p in np.split(x, cuts)]
    np.testing.assert_allclose(np.concatenate(pieces), net(x), atol=1e-5)


def test_state_object_seed_and_reset():
    lstm = random_lstm(2, 2, seed=3)
    s0, c0 = [0.3, -0.2], [1.0, 0.5]
    obj = w.NetStateObject(lstm, {("State",): s0, ("CellState",): c0})
    x = RNG.normal(size=(3, 2))
    np.testing.assert_allclose(obj(x), lstm_forward(x, arrays_of(lstm), np.array(s0), np.array(c0))[0], atol=1e-5)
    obj.reset()
    np.testing.assert_allclose(obj(x), lstm_forward(x, arrays_of(lstm), np.array(s0), np.array(c0))[0], atol=1e-5)


def test_state_object_batch_rule():
    lstm = random_lstm(2, 2, seed=4)
    obj = w.NetStateObject(lstm)
    a = RNG.normal(size=(2, 3, 2)).astype(np.float32)
    b = RNG.normal(size=(2, 2, 2)).astype(np.float32)
    obj(a)
    second = obj(b)
    for i in range(2):
        np.testing.assert_allclose(second[i], lstm(np.concatenate([a[i], b[i]]))[3:], atol=1e-5)
    with pytest.raises(w.InputError, match="batch of 2"):
        obj(b[0])
    obj.reset()
    obj(b[0])


def test_state_object_refuses_net_without_state():
    with pytest.raises(w.OptionError, match="no recurrent state"):
        w.NetStateObject(w.NetInitialize(w.NetChain([w.LinearLayer(2)], Input=3)))


# ---- NetPort(All, "States") -----------------------------------------------------------------------

def test_all_states_read_and_set():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(2), w.LongShortTermMemoryLayer(3)],
                                     Input=("Varying", 2)))
    x = RNG.normal(size=(3, 2)).tolist()
    states = net(x, w.NetPort(w.All, "States"))
    assert set(states) == {(1, "State"), (1, "CellState"), (2, "State"), (2, "CellState")}
    np.testing.assert_allclose(states[(2, "State")], net(x)[-1], atol=1e-7)
    y = RNG.normal(size=(2, 2)).tolist()
    continued = net({"Input": y, w.NetPort(w.All, "States"): states})
    np.testing.assert_allclose(continued, net(x + y)[3:], atol=1e-5)
    with pytest.raises(w.InputError, match="not a recurrent state"):
        net({"Input": y, w.NetPort(w.All, "States"): {(3, "State"): [0, 0]}})


# ---- shape inference and construction errors ---------------------------------------------------------

def test_k_inferred_through_chain_and_from_encoder():
    chain = w.NetChain([w.LongShortTermMemoryLayer(4), w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(), 2],
                       Input=("Varying", 5))
    dims = w.Information(chain, "ArraysDimensions")
    assert dims[(1, "InputGateInputWeights")] == (4, 5)
    assert dims[(2, "InputGateInputWeights")] == (3, 4)
    assert dims[(4, "Weights")] == (2, 3)
    enc = w.NetEncoder(("Characters", "abcdefg", "UnitVector"))
    chain = w.NetChain([w.LongShortTermMemoryLayer(4)], Input=enc)
    assert w.Information(chain, "ArraysDimensions")[(1, "InputGateInputWeights")] == (4, 7)


def test_conflicting_sizes_name_both_sides():
    with pytest.raises(w.ShapeError) as err:
        w.NetChain([w.LongShortTermMemoryLayer(4), w.LongShortTermMemoryLayer(3, Input=("Varying", 5))])
    msg = str(err.value)
    assert "layer 1" in msg and "size-4" in msg and "size-5" in msg and "layer 2" in msg


def test_fixed_length_conflict():
    with pytest.raises(w.ShapeError, match="length-3"):
        w.NetChain([w.LongShortTermMemoryLayer(2, Input=(4, 2))], Input=(3, 2))


def test_index_encoder_into_lstm_is_refused():
    with pytest.raises(w.ShapeError, match="EmbeddingLayer"):
        w.LongShortTermMemoryLayer(3, Input=w.NetEncoder(("Characters", "ab", "Index")))


def test_embedding_then_lstm():
    chain = w.NetInitialize(w.NetChain([w.EmbeddingLayer(4), w.LongShortTermMemoryLayer(3)],
                                       Input=w.NetEncoder(("Characters", "abc"))))
    assert w.Information(chain, "ArraysDimensions")[(1, "Weights")] == (3, 4)
    assert np.array(chain("abca")).shape == (4, 3)


def test_cycle_unknown_layer_and_port_errors():
    a, b = w.LinearLayer(2, Input=2), w.LinearLayer(2)
    with pytest.raises(w.ConstructionError, match="cycle"):
        w.NetGraph({"a": a, "b": b}, [("a", "b"), ("b", "a")])
    with pytest.raises(w.ConstructionError, match="'c'"):
        w.NetGraph({"a": a, "b": b}, [("a", "c")])
    with pytest.raises(w.ConstructionError, match="no input port 'Foo'") as err:
        w.NetGraph([w.LongShortTermMemoryLayer(2)], [(w.NetPort("x"), w.NetPort(1, "Foo"))])
    assert "'State'" in str(err.value)
    with pytest.raises(w.ConstructionError, match="fed by two edges"):
        w.NetGraph({"a": a, "b": b, "c": w.LinearLayer(2)}, [("a", "c"), ("b", "c")])


def test_netport_of_a_layer_name_as_an_edge_source_is_a_construction_error():
    a, b = w.LinearLayer(2, Input=4), w.LinearLayer(3)
    for edges in ([("a", "b"), (w.NetPort("a"), w.NetPort("y"))], [(w.NetPort("a"), "b")]):
        with pytest.raises(w.ConstructionError, match=r"NetPort\('a'\) as the source of an edge.*'a' is a layer"):
            w.NetGraph({"a": a, "b": b}, edges)
    g = w.NetGraph({"a": a, "b": b}, [("a", "b"), (w.NetPort("a", "Output"), w.NetPort("y"))])
    assert set(g.output_ports()) == {"Output", "y"}


def test_scalar_output_needs_size_one():
    with pytest.raises(w.ShapeError, match="Scalar"):
        w.NetChain([w.LinearLayer(2)], Input=3, Output="Scalar")
    net = w.NetInitialize(w.NetChain([w.LinearLayer(1)], Input=3, Output="Scalar"))
    a = arrays_of(w.NetExtract(net, 1))
    y = net([1, 2, 3])
    assert isinstance(y, float) and y == pytest.approx(float(a["Weights"][0] @ [1, 2, 3] + a["Biases"][0]), rel=1e-6)
    want = a["Weights"] @ np.array([[1, 2, 3], [4, 5, 6]]).T + a["Biases"][:, None]  # (1, 2)
    assert net([[1, 2, 3], [4, 5, 6]]) == pytest.approx(want[0].tolist(), rel=1e-6)


def test_int_in_chain_is_linear_layer():
    chain = w.NetChain([3, w.ElementwiseLayer("Tanh"), 2], Input=4)
    assert w.Information(chain, "LayerTypeCounts") == {"LinearLayer": 2, "ElementwiseLayer": 1}


# ---- Information, NetExtract, InputForm -----------------------------------------------------------

def test_information_of_containers():
    net = w.NetInitialize(w.NetChain({"lstm": w.LongShortTermMemoryLayer(3), "last": w.SequenceLastLayer(),
                                      "out": 2}, Input=("Varying", 2)))
    assert w.Information(net, "LayersCount") == 3
    assert w.Information(net, "RecurrentStatesPositionList") == [("lstm", "State"), ("lstm", "CellState")]
    assert w.Information(net, "RecurrentStatesCount") == 2
    assert w.Information(net, "ArraysTotalElementCount") == 4 * 3 * (2 + 3 + 1) + 2 * 3 + 2
    assert w.NetExtract(net, ("lstm", "ForgetGateBiases")).tolist() == [1, 1, 1]
    assert isinstance(w.NetExtract(net, "lstm"), w.LongShortTermMemoryLayer)
    fig = w.Information(net, "SummaryGraphic")
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_input_form_round_trip():
    enc = w.NetEncoder(("Characters", [w.DigitCharacter, "+"], "UnitVector"))
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(), 1], Input=enc,
                                     Output="Scalar"))
    code = w.Information(net, "InputForm")
    rebuilt = eval(code, vars(w))
    assert w.Information(rebuilt, "InputForm") == code
    assert rebuilt(["12+3", "4+56"]) == net(["12+3", "4+56"])
    graph = w.NetInitialize(w.NetGraph({"a": w.LongShortTermMemoryLayer(2, Input=("Varying", 2))},
                                       [(w.NetPort("s0"), w.NetPort("a", "State"))]))
    rebuilt = eval(w.Information(graph, "InputForm"), vars(w))
    data = {"Input": [[1, 2]], "s0": [0.5, 0.5]}
    assert rebuilt(data) == graph(data)


def test_module_compiled_once_and_reused():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=("Varying", 2)))
    net([[1, 2]])
    cache = dict(net._module_cache)
    net([[3, 4], [5, 6]])
    assert net._module_cache == cache and len(cache) == 1


def test_nested_chain_in_graph():
    inner = w.NetChain([w.LongShortTermMemoryLayer(3), w.LongShortTermMemoryLayer(2)])
    graph = w.NetInitialize(w.NetGraph({"inner": inner, "last": w.SequenceLastLayer()}, [("inner", "last")],
                                       Input=("Varying", 4)))
    assert ("inner", 2, "State") in w.Information(graph, "RecurrentStatesPositionList")
    x = RNG.normal(size=(3, 4)).tolist()
    states = graph(x, w.NetPort(w.All, "States"))
    np.testing.assert_allclose(states[("inner", 2, "State")], graph(x), atol=1e-7)
    a1 = arrays_of(w.NetExtract(graph, ("inner", 1)))
    a2 = arrays_of(w.NetExtract(graph, ("inner", 2)))
    np.testing.assert_allclose(graph(x), lstm_forward(lstm_forward(np.array(x), a1)[0], a2)[0][-1], atol=1e-5)


def test_torch_in_torch_out_through_chain():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(), 2], Input=("Varying", 2)))
    x = torch.randn(4, 5, 2, requires_grad=True)
    y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == (4, 2)
    y.sum().backward()
    # d sum(W s_T + b)/d s_T = Wᵀ·1, then back through the LSTM by the reference's own backward
    a = arrays_of(w.NetExtract(net, 1))
    w_s = arrays_of(w.NetExtract(net, 3))["Weights"].T @ np.ones(2)
    want = np.stack([reference_backward(xb, a, w_s=w_s)["x"] for xb in x.detach().numpy().astype(np.float64)])
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-4, atol=1e-5)


def test_state_object_bad_seed():
    lstm = random_lstm(2, 2, seed=3)
    with pytest.raises(w.InputError, match="not a recurrent state"):
        w.NetStateObject(lstm, {("Foo",): [1, 2]})
    with pytest.raises(w.InputError, match="size 3.*size 2"):
        w.NetStateObject(lstm, {("State",): [1, 2, 3]})


def test_nested_chain_takes_integer_sequences_from_the_layer_before_it():
    # the type a nested net is fed (a sequence of indices 1..3) reaches its first layer whole,
    # and InputForm still shows only the options that were given
    enc = w.NetEncoder(("Characters", "abc"))
    chain = w.NetChain([w.SequenceMostLayer(), w.NetChain([w.EmbeddingLayer(4)])], Input=enc)
    assert w.Information(chain, "InputForm") == (
        "NetChain([SequenceMostLayer(), NetChain([EmbeddingLayer(4)])], "
        "Input=NetEncoder(('Characters', 'abc', 'Index')))"
    )
    nested = w.NetInitialize(chain)
    assert w.NetExtract(nested, (2, 1, "Weights")).shape == (3, 4)
    weights = w.NetExtract(nested, (2, 1, "Weights"))
    np.testing.assert_allclose(np.asarray(nested("cab")), weights[[2, 0]], rtol=1e-6)


def test_an_encoder_on_the_first_layer_is_the_chain_input_encoder():
    enc = w.NetEncoder(("Characters", "xy", "UnitVector"))
    inner = w.NetChain([w.LongShortTermMemoryLayer(3, Input=enc), w.SequenceLastLayer()])
    outer = w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=enc)
    assert inner.encoders == {"Input": enc}
    inner = w.NetInitialize(inner)
    outer = outer.with_arrays({(pos[:-1], pos[-1]): t for pos, t in inner.arrays().items()})
    np.testing.assert_allclose(inner(["xyx", "y"]), outer(["xyx", "y"]), rtol=1e-6)
    data = {"xy": [1.0, 0.0, 0.0], "yx": [0.0, 1.0, 0.0], "xx": [0.0, 0.0, 1.0]}
    trained = w.NetTrain(inner, data, MaxTrainingRounds=2, TrainingProgressReporting=None)
    assert trained.encoders == {"Input": enc}
