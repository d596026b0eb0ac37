"""The evaluation seams: explicit states through compiled modules, the packed-weight cache inside
containers, every unconsumed graph output kept, results that never share the user's memory,
standalone encoders, decoders and UnitVectorLayer, and typed errors for bad constructor calls."""

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx, compiled
from wlnet.kernels import cells


def lstm(n, k, seed=1):
    return w.NetInitialize(w.LongShortTermMemoryLayer(n, Input=("Varying", k)), RandomSeeding=seed)


def test_module_takes_and_returns_states_explicitly():
    layer = lstm(3, 2)
    module = compiled(layer, torch.device("cpu"), torch.float32)
    x = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(0))
    s0, c0 = torch.randn(2, 3), torch.randn(2, 3)
    out, final = module({"Input": Seq(x, None)}, {("State",): s0, ("CellState",): c0}, Ctx(False, None))
    assert set(out) == {"Output"} and set(final) == {("State",), ("CellState",)}
    again = layer({"Input": x, w.NetPort("State"): s0, w.NetPort("CellState"): c0})
    torch.testing.assert_close(out["Output"].data, again)
    torch.testing.assert_close(final[("State",)], again[:, -1])


def test_graph_states_are_positions_of_the_graph():
    chain = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.GatedRecurrentLayer(2)],
                                       Input=("Varying", 2)))
    module = compiled(chain, torch.device("cpu"), torch.float32)
    x = Seq(torch.randn(1, 5, 2, generator=torch.Generator().manual_seed(1)), None)
    _, final = module({"Input": x}, {}, Ctx(False, None))
    assert set(final) == {(1, "State"), (1, "CellState"), (2, "State")}
    s2 = torch.full((1, 2), 0.5)
    out_a, _ = module({"Input": x}, {(2, "State"): s2}, Ctx(False, None))
    out_b = chain({"Input": x.data, w.NetPort(w.All, "States"): {(2, "State"): s2}})
    torch.testing.assert_close(out_a["Output"].data, out_b)


def test_packed_weights_are_packed_once_inside_a_chain(monkeypatch):
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(4), w.LongShortTermMemoryLayer(3),
                                      w.SequenceLastLayer()], Input=("Varying", 2)))
    monkeypatch.setenv("WLNET_KERNEL", "fused")  # the fused kernel, also where native is built
    calls = []
    pack = cells.Cell.pack
    monkeypatch.setattr(cells.Cell, "pack", lambda self, a: calls.append(self.name) or pack(self, a))
    x = [[1.0, 2.0], [3.0, 4.0]]
    first = [net(x) for _ in range(3)]
    assert calls == ["LongShortTermMemoryLayer"] * 2  # once for each layer, not once per call
    assert first[0] == first[1] == first[2]


def test_every_unconsumed_output_is_a_graph_output():
    a, b = w.LongShortTermMemoryLayer(3), w.LongShortTermMemoryLayer(4)
    graph = w.NetInitialize(w.NetGraph({"a": a, "b": b}, [], Input=("Varying", 2)))
    assert list(graph.output_ports()) == ["Output1", "Output2"]
    out = graph([[1.0, 2.0], [0.5, 0.5]])
    assert np.shape(out["Output1"]) == (2, 3) and np.shape(out["Output2"]) == (2, 4)
    alone = w.NetExtract(graph, "b")
    np.testing.assert_allclose(out["Output2"], alone([[1.0, 2.0], [0.5, 0.5]]), atol=1e-6)
    # an explicit "Output" edge keeps its name; the layer nothing reads is kept beside it
    g2 = w.NetGraph({"a": w.LongShortTermMemoryLayer(3), "b": w.LongShortTermMemoryLayer(4)},
                    [("a", w.NetPort("Output"))], Input=("Varying", 2))
    assert list(g2.output_ports()) == ["Output1", "Output"]


@pytest.mark.parametrize("make", [lambda: w.SequenceLastLayer(Input=("Varying", 2)),
                                  lambda: w.DropoutLayer(0.5, Input=(3, 2)),
                                  lambda: w.NetGraph([w.SequenceLastLayer()], [(w.NetPort("Input"), w.NetPort("copy"))],
                                                     Input=("Varying", 2))])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_results_do_not_share_memory_with_the_input(make, kind):
    net = make()
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    data = x.copy() if kind == "numpy" else torch.from_numpy(x.copy())
    out = net(data)
    for v in (out.values() if isinstance(out, dict) else [out]):
        v[...] = -1
    assert (np.asarray(data) == x).all()


def test_unit_vector_layer_alone_takes_indices():
    layer = w.UnitVectorLayer(3)
    assert layer([1, 3, 2]) == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert layer(2) == [0.0, 1.0, 0.0]
    with pytest.raises(w.InputError, match="between 1 and 3"):
        layer([1, 4])


def test_encoders_and_decoders_are_callable():
    chars = w.NetEncoder(("Characters", "ab"))
    assert chars("abba") == [1, 2, 2, 1]
    assert chars(["ab", "b"]) == [[1, 2], [2]]
    assert w.NetEncoder(("Characters", "ab", "UnitVector"))("ba") == [[0.0, 1.0], [1.0, 0.0]]
    assert w.NetEncoder(("Class", ["x", "y", "z"], "UnitVector"))("y") == [0.0, 1.0, 0.0]
    assert w.NetEncoder(("Class", ["x", "y", "z"]))("y") == 2
    dec = w.NetDecoder(("Class", ["a", "b", "c"]))
    assert dec([0.1, 0.7, 0.2]) == "b"
    assert dec([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]]) == ["b", "a"]
    probs = dec([0.25, 0.5, 0.25], "Probabilities")
    assert probs == {"a": 0.25, "b": 0.5, "c": 0.25}
    with pytest.raises(w.EncodingError, match="'q' in 'aq' is not in the encoder's alphabet"):
        chars("aq")
    with pytest.raises(w.InputError, match="expected a vector of size 3"):
        dec([0.5, 0.5])


def test_bad_constructor_calls_are_typed_errors():
    with pytest.raises(w.OptionError, match="SoftmaxLayer: takes no positional arguments"):
        w.SoftmaxLayer(3)
    with pytest.raises(w.OptionError, match="'Foo' is not a known option; the options are Input, Output"):
        w.NetChain([w.LinearLayer(2)], Foo=1)
    with pytest.raises(w.ConstructionError, match=r"write NetChain\(\[layer, ...\]\)"):
        w.NetChain(w.LinearLayer(2))
    with pytest.raises(w.OptionError, match=r"the Dropout probability of 'StateUpdate' must be a number"):
        w.LongShortTermMemoryLayer(3, Dropout={"StateUpdate": 1.5})
    with pytest.raises(w.OptionError, match="does not support"):
        w.BasicRecurrentLayer(3, Dropout={"StateUpdate": 0.1})
    with pytest.raises(w.OptionError, match="BatchSize must be a positive integer or Automatic"):
        lstm(2, 2)([[1.0, 2.0]], BatchSize=0)
    with pytest.raises(w.OptionError, match='TargetDevice must be "CPU", "GPU"'):
        lstm(2, 2)([[1.0, 2.0]], TargetDevice="TPU")


def test_input_form_keeps_every_given_option():
    layer = w.LinearLayer(2, Input=3, LearningRateMultipliers=0)
    code = w.Information(layer, "InputForm")
    assert code == "LinearLayer(2, Input=3, LearningRateMultipliers=0)"
    again = eval(code, vars(w))
    assert w.Information(again, "ArraysLearningRateMultipliers") == {("Weights",): 0.0, ("Biases",): 0.0}
    gru = w.NetInitialize(w.GatedRecurrentLayer(2, Input=("Varying", 3), Dropout={"VariationalState": 0.2}))
    rebuilt = eval(w.Information(gru, "InputForm"), vars(w))
    assert rebuilt._dropout == {"VariationalState": 0.2}
    x = [[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]]
    np.testing.assert_array_equal(rebuilt(x), gru(x))


def test_seq_operations_keep_each_sequence():
    from wlnet.core.data import Seq, cat_rows, take_rows

    seqs = [[[1.0], [2.0], [3.0]], [[4.0]], [[5.0], [6.0]]]
    data = torch.zeros(3, 3, 1)
    for b, s in enumerate(seqs):
        data[b, :len(s)] = torch.tensor(s)
    seq = Seq(data, torch.tensor([3, 1, 2]))

    def as_lists(v):
        return [v.data[b, :n].tolist() for b, n in enumerate(v.length_list())]

    assert as_lists(seq.flip()) == [s[::-1] for s in seqs]
    assert (seq.flip().data[1, 1:] == 0).all() and (seq.flip().data[2, 2:] == 0).all()  # padding stays
    picked = seq.take(torch.tensor([2, 1]))
    assert as_lists(picked) == [seqs[2], seqs[1]] and picked.data.shape[1] == 2  # padded to its own longest
    assert as_lists(take_rows({"x": seq}, slice(0, 1))["x"]) == [seqs[0]]
    joined = cat_rows([seq.take(torch.tensor([1])), seq.take(torch.tensor([0, 2]))])
    assert as_lists(joined) == [seqs[1], seqs[0], seqs[2]]
    moved = seq.to("cpu", torch.float64)
    assert moved.data.dtype == torch.float64 and moved.lengths is seq.lengths
    ints = Seq(torch.ones(1, 2, dtype=torch.int64), None).to("cpu", torch.float64)
    assert ints.data.dtype == torch.int64  # indices keep their dtype
