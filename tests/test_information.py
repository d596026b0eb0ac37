"""NetExtract with every spec Wolfram documents, Information's layer-graph and array-size
properties, and Information of a NetStateObject."""

from __future__ import annotations

import math

import numpy as np
import pytest

import wlnet as w
from wlnet import All, NetPort


def _named():
    return w.NetInitialize(w.NetChain({"a": w.LinearLayer(4), "t": w.ElementwiseLayer("Tanh"), "b": w.LinearLayer(2)},
                                      Input=3), RandomSeeding=1)


N = _named()
A, T, B = N["a"], N["t"], N["b"]

# (Wolfram form, spec, expected: the part by identity, or a function that checks it)
EXTRACT_TABLE = [
    ("NetExtract[chain, 1]", 1, A),
    ("NetExtract[chain, \"t\"]", "t", T),
    ("NetExtract[chain, -1]", -1, B),
    ("NetExtract[chain, -3]", -3, A),
    ("NetExtract[chain, {1, \"Weights\"}]", (1, "Weights"), lambda v: np.array_equal(v, A.extract("Weights"))),
    ("NetExtract[chain, {\"b\", \"Biases\"}]", ("b", "Biases"), lambda v: np.array_equal(v, B.extract("Biases"))),
    ("NetExtract[chain, {-1, \"Biases\"}]", (-1, "Biases"), lambda v: np.array_equal(v, B.extract("Biases"))),
    ("NetExtract[chain, All]", All, lambda v: v == {"a": A, "t": T, "b": B}),
    ("NetExtract[chain, {{1, \"Weights\"}, 2}] (a list of specs)", [(1, "Weights"), 2],
     lambda v: np.array_equal(v[0], A.extract("Weights")) and v[1] is T),
    ("NetExtract[chain, {1, -1}]", [1, -1], lambda v: v[0] is A and v[1] is B),
    ("NetExtract[chain, \"Input\"] (a type)", "Input", lambda v: v.dims == (3,)),
    ("NetExtract[chain, \"Output\"]", "Output", lambda v: v.dims == (2,)),
]


@pytest.mark.parametrize("form, spec, expected", EXTRACT_TABLE, ids=[r[0] for r in EXTRACT_TABLE])
def test_net_extract_specs(form, spec, expected):
    got = w.NetExtract(N, spec)
    if callable(expected) and not isinstance(expected, w.NetChain | w.LinearLayer | w.ElementwiseLayer):
        assert expected(got), form
    else:
        assert got is expected, form


def test_net_extract_of_a_list_of_specs_does_not_crash():
    chain = w.NetChain([w.LinearLayer(2), w.SoftmaxLayer()], Input=3)
    got = w.NetExtract(chain, [1, 2])
    assert [x.name for x in got] == ["LinearLayer", "SoftmaxLayer"]


def test_net_extract_nested_and_ports_with_coders():
    enc = w.NetEncoder(("Characters", "abc", "UnitVector"))
    dec = w.NetDecoder(("Class", ["x", "y"]))
    inner = w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()])
    net = w.NetChain([inner, w.LinearLayer(2), w.SoftmaxLayer()], Input=enc, Output=dec)
    assert w.NetExtract(net, "Input") is enc and w.NetExtract(net, "Output") is dec
    assert w.NetExtract(net, (1, 1)).name == "LongShortTermMemoryLayer"
    assert w.NetExtract(net, (1, -1)).name == "SequenceLastLayer"
    assert w.NetExtract(net, (1, "Input")).dims == ("Varying", 3)  # the inner chain's port: a type
    assert [x.name for x in w.NetExtract(net, (1, All))] == ["LongShortTermMemoryLayer", "SequenceLastLayer"]
    assert w.NetExtract(net, (1, 1, "InputGateBiases")) is None  # not initialized yet
    flat = w.NetChain([w.LinearLayer(3), w.LinearLayer(2)], Input=4)
    biases = w.NetExtract(w.NetInitialize(flat), (All, "Biases"))  # (All, spec): the spec of each layer
    assert [b.shape for b in biases] == [(3,), (2,)]


def test_net_extract_errors_are_typed_and_name_the_spec():
    with pytest.raises(w.OptionError, match="position 4"):
        w.NetExtract(N, 4)
    with pytest.raises(w.OptionError, match="'x' is not a layer"):
        w.NetExtract(N, "x")
    with pytest.raises(w.OptionError, match="not an array of LinearLayer"):
        w.NetExtract(N, (1, "Kernel"))
    with pytest.raises(w.OptionError, match="All names the parts of a container"):
        w.NetExtract(N, (1, All))
    with pytest.raises(w.OptionError, match="expected a net"):
        w.NetExtract([1], 1)


def _graph():
    # Input → lin → soft; lin → t; (soft, t) → cat
    return w.NetGraph({"lin": w.LinearLayer(2), "t": w.ElementwiseLayer("Tanh"), "soft": w.SoftmaxLayer(),
                       "cat": w.CatenateLayer()}, [("lin", "soft"), ("lin", "t"), (["soft", "t"], "cat")], Input=3)


def test_layers_list_topological_order_and_layers_graph():
    g = _graph()
    assert [x.name for x in w.Information(g, "LayersList")] == ["LinearLayer", "ElementwiseLayer", "SoftmaxLayer",
                                                                "CatenateLayer"]
    order = w.Information(g, "TopologicalOrder")
    assert sorted(order) == sorted([("lin",), ("t",), ("soft",), ("cat",)])
    edges = w.Information(g, "LayersGraph")["Edges"]
    assert set(edges) == {(("lin",), ("soft",)), (("lin",), ("t",)), (("soft",), ("cat",)), (("t",), ("cat",))}
    for a, b in edges:  # a topological order: every edge goes forward
        assert order.index(a) < order.index(b)
    assert w.Information(g, "LayersGraph")["Vertices"] == order
    nested = w.NetChain([w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh")]), w.LinearLayer(2)], Input=3)
    assert w.Information(nested, "TopologicalOrder") == [(1, 1), (1, 2), (2,)]
    assert w.Information(nested, "LayersGraph")["Edges"] == [((1, 1), (1, 2)), ((1, 2), (2,))]
    lstm = w.LongShortTermMemoryLayer(2, Input=("Varying", 1))
    assert w.Information(lstm, "TopologicalOrder") == [()]


def test_arrays_sizes():
    sizes = w.Information(N, "ArraysSizes")
    assert sizes == {("a", "Weights"): "48 bytes", ("a", "Biases"): "16 bytes", ("b", "Weights"): "32 bytes",
                     ("b", "Biases"): "8 bytes"}
    dims = w.Information(N, "ArraysDimensions")
    assert all(sizes[k] == f"{4 * math.prod(d)} bytes" for k, d in dims.items())
    assert w.Information(w.LinearLayer(3), "ArraysSizes") == {("Weights",): None, ("Biases",): "12 bytes"}


def test_full_summary_graphic_shows_every_layer():
    pytest.importorskip("matplotlib")
    nested = w.NetChain([w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh")]), w.LinearLayer(2)], Input=3)
    fig = w.Information(nested, "FullSummaryGraphic")
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert texts.count("LinearLayer") == 2 and "ElementwiseLayer" in texts and "1  NetChain" not in texts
    summary = " ".join(t.get_text() for ax in w.Information(nested, "SummaryGraphic").axes for t in ax.texts)
    assert "1  NetChain" in summary  # the plain summary shows the inner chain as one box


def test_information_of_a_net_state_object():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(2), w.SequenceLastLayer()], Input=("Varying", 1)),
                          RandomSeeding=2)
    obj = w.NetStateObject(net)
    zero = w.Information(obj, "RecurrentStates")
    assert set(zero) == {(1, "State"), (1, "CellState")} and all(np.all(v == 0) for v in zero.values())
    out = obj([[1.0], [0.5]])
    states = w.Information(obj, "RecurrentStates")
    np.testing.assert_allclose(states[(1, "State")], out, rtol=1e-6)  # the last output is the final state
    assert w.Information(obj, "Net") is net
    assert w.Information(obj, "LayersCount") == 2  # the net's own properties
    summary = w.Information(obj)
    assert summary["RecurrentStatesCount"] == 2 and summary["LayersCount"] == 2
    np.testing.assert_array_equal(w.NetExtract(obj, (1, "State")), states[(1, "State")])
    assert w.NetExtract(obj, 1) is net[1]
    with pytest.raises(w.OptionError, match="not a known property of a NetStateObject"):
        w.Information(obj, "Nope")


def test_properties_lists_the_new_ones():
    props = w.Information(N, "Properties")
    for p in ("LayersList", "TopologicalOrder", "LayersGraph", "FullSummaryGraphic", "ArraysSizes"):
        assert p in props


def test_net_port_names_in_a_graph_extract():
    g = w.NetGraph({"lin": w.LinearLayer(2), "soft": w.SoftmaxLayer()}, [("lin", "soft"), ("soft", NetPort("p"))],
                   Input=3)
    assert w.NetExtract(g, "p").dims == (2,) and w.NetExtract(g, "lin").name == "LinearLayer"
