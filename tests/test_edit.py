"""Taking nets apart and putting them together, as Wolfram documents it: NetTake, NetDrop,
NetAppend, NetPrepend, NetInsert, NetDelete, NetJoin, NetReplacePart, NetReplace, NetFlatten,
NetRename, Normal, part access and NetPortGradient. Each table row is a Wolfram form and the
result it documents; numbers are compared with numpy formulas of the layers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import wlnet as w
from wlnet import NetPort

X = np.array([0.5, -1.0, 2.0], np.float32)


def _chain():
    """Linear(4) → Tanh → Linear(2) on vectors of 3, initialized."""
    return w.NetInitialize(w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh"), w.LinearLayer(2)], Input=3),
                           RandomSeeding=3)


def _named():
    return w.NetInitialize(w.NetChain({"a": w.LinearLayer(4), "t": w.ElementwiseLayer("Tanh"), "b": w.LinearLayer(2)},
                                      Input=3), RandomSeeding=4)


def _np(layer, x):
    """A layer of the chains here, in numpy."""
    if layer.name == "LinearLayer":
        return w.NetExtract(layer, "Weights") @ x + w.NetExtract(layer, "Biases")
    if layer.name == "ElementwiseLayer":
        return np.tanh(x)
    if layer.name == "SoftmaxLayer":
        e = np.exp(x - x.max())
        return e / e.sum()
    raise AssertionError(layer.name)


def _np_chain(layers, x):
    for layer in layers:
        x = _np(layer, x)
    return x


def _names(net):
    return [layer.name for layer in w.Normal(net)] if isinstance(w.Normal(net), list) else \
        {k: v.name for k, v in w.Normal(net).items()}


C = _chain()
L1, T, L2 = w.Normal(C)

# (the Wolfram form, the call, the layers it documents as the result by identity)
CHAIN_TABLE = [
    ("NetTake[chain, 2]", lambda: w.NetTake(C, 2), [L1, T]),
    ("NetTake[chain, {2, 3}]", lambda: w.NetTake(C, (2, 3)), [T, L2]),
    ("NetTake[chain, 2;;3]", lambda: w.NetTake(C, slice(2, 3)), [T, L2]),
    ("NetTake[chain, 2;;All]", lambda: w.NetTake(C, slice(2, None)), [T, L2]),
    ("NetTake[chain, -2] (up to the second-last layer)", lambda: w.NetTake(C, -2), [L1, T]),
    ("NetTake[chain, {-2, -1}]", lambda: w.NetTake(C, (-2, -1)), [T, L2]),
    ("NetDrop[chain, 1]", lambda: w.NetDrop(C, 1), [T, L2]),
    ("NetDrop[chain, -1]", lambda: w.NetDrop(C, -1), [L1, T]),
    ("NetDrop[chain, {2, 2}]", lambda: w.NetDrop(C, (2, 2)), [L1, L2]),
    ("NetDelete[chain, 2]", lambda: w.NetDelete(C, 2), [L1, L2]),
    ("NetDelete[chain, {2, 3}]", lambda: w.NetDelete(C, [2, 3]), [L1]),
    ("NetJoin[NetTake[chain, 1], NetDrop[chain, 1]]", lambda: w.NetJoin(w.NetTake(C, 1), w.NetDrop(C, 1)), [L1, T, L2]),
    ("NetJoin[NetTake[chain, 1], NetTake[chain, {2,2}], NetDrop[chain, 2]]",
     lambda: w.NetJoin(w.NetTake(C, 1), w.NetTake(C, (2, 2)), w.NetDrop(C, 2)), [L1, T, L2]),
    ("Normal[chain] → NetChain[...] rebuilds it", lambda: w.NetChain(w.Normal(C)), [L1, T, L2]),
]


@pytest.mark.parametrize("form, call, layers", CHAIN_TABLE, ids=[r[0] for r in CHAIN_TABLE])
def test_chain_edits_keep_the_layers_and_their_arrays(form, call, layers):
    net = call()
    assert isinstance(net, w.NetChain)
    got = w.Normal(net)
    assert [id(x) for x in got] == [id(x) for x in layers], form  # the same layers, trained arrays and all
    first, last = layers[0], layers[-1]
    assert net.input_ports()["Input"] == first.input_ports()["Input"]
    assert net.output_ports()["Output"] == last.output_ports()["Output"]
    x = np.random.default_rng(0).normal(size=first.input_ports()["Input"].dims).astype(np.float32)
    np.testing.assert_allclose(net(x), _np_chain(layers, x), rtol=1e-5, atol=1e-6)


def test_the_original_is_unchanged_by_every_edit():
    before = {k: v.copy() for k, v in w.Information(C, "Arrays").items()}
    form = C.input_form()
    for _, call, _ in CHAIN_TABLE:
        call()
    w.NetReplacePart(C, {(1, "Biases"): np.ones(4)})
    assert C.input_form() == form
    for k, v in w.Information(C, "Arrays").items():
        assert np.array_equal(v, before[k])


ADD_TABLE = [
    ("NetAppend[chain, SoftmaxLayer[]]", lambda: w.NetAppend(C, w.SoftmaxLayer()),
     ["LinearLayer", "ElementwiseLayer", "LinearLayer", "SoftmaxLayer"], (3,), (2,)),
    ("NetAppend[chain, {LinearLayer[5], SoftmaxLayer[]}]", lambda: w.NetAppend(C, [w.LinearLayer(5), w.SoftmaxLayer()]),
     ["LinearLayer", "ElementwiseLayer", "LinearLayer", "LinearLayer", "SoftmaxLayer"], (3,), (5,)),
    ("NetPrepend[chain, LinearLayer[3, \"Input\" -> 6]]", lambda: w.NetPrepend(C, w.LinearLayer(3, Input=6)),
     ["LinearLayer", "LinearLayer", "ElementwiseLayer", "LinearLayer"], (6,), (2,)),
    ("NetInsert[chain, ElementwiseLayer[Tanh], 3]", lambda: w.NetInsert(C, w.ElementwiseLayer("Tanh"), 3),
     ["LinearLayer", "ElementwiseLayer", "ElementwiseLayer", "LinearLayer"], (3,), (2,)),
    ("NetInsert[chain, layer, -1] (last)", lambda: w.NetInsert(C, w.SoftmaxLayer(), -1),
     ["LinearLayer", "ElementwiseLayer", "LinearLayer", "SoftmaxLayer"], (3,), (2,)),
    ("NetReplacePart[chain, 3 -> LinearLayer[5]]", lambda: w.NetReplacePart(C, {3: w.LinearLayer(5)}),
     ["LinearLayer", "ElementwiseLayer", "LinearLayer"], (3,), (5,)),
    ("NetReplacePart[chain, -1 -> LinearLayer[7]]", lambda: w.NetReplacePart(C, [(-1, w.LinearLayer(7))]),
     ["LinearLayer", "ElementwiseLayer", "LinearLayer"], (3,), (7,)),
    ("NetReplace[chain, _ElementwiseLayer -> SoftmaxLayer[]]",
     lambda: w.NetReplace(C, {w.ElementwiseLayer: w.SoftmaxLayer()}), ["LinearLayer", "SoftmaxLayer", "LinearLayer"],
     (3,), (2,)),
    ("NetReplace[chain, _ElementwiseLayer -> Nothing]", lambda: w.NetReplace(C, {w.ElementwiseLayer: None}),
     ["LinearLayer", "LinearLayer"], (3,), (2,)),
    ("NetReplace[chain, _LinearLayer -> NetChain[{lin, Tanh}]] (spliced)",
     lambda: w.NetReplace(w.NetChain([w.LinearLayer(4)], Input=3),
                          {w.LinearLayer: lambda layer: w.NetChain([layer, w.ElementwiseLayer("Tanh")])}),
     ["LinearLayer", "ElementwiseLayer"], (3,), (4,)),
]


@pytest.mark.parametrize("form, call, names, din, dout", ADD_TABLE, ids=[r[0] for r in ADD_TABLE])
def test_chain_additions_and_replacements(form, call, names, din, dout):
    net = call()
    assert _names(net) == names, form
    assert net.input_ports()["Input"].dims == din and net.output_ports()["Output"].dims == dout
    original = {("LinearLayer", (4, 3)): L1, ("LinearLayer", (2, 4)): L2}
    trained = 0
    for i, layer in enumerate(w.Normal(net), 1):  # a trained layer kept keeps its arrays
        dims = w.Information(layer, "ArraysDimensions").get(("Weights",))
        if (layer.name, dims) in original and layer.initialized():
            trained += 1
            for a in ("Weights", "Biases"):
                assert np.array_equal(w.NetExtract(net, (i, a)), w.NetExtract(original[(layer.name, dims)], a))
    assert trained == sum(1 for x in w.Normal(net) if x.initialized() and x.name == "LinearLayer")


def test_a_new_layer_after_kept_ones_is_uninitialized_and_fits():
    net = w.NetReplacePart(C, {3: w.LinearLayer(5)})
    assert w.Information(net, "ArraysDimensions")[(3, "Weights")] == (5, 4)
    assert net.missing_arrays() == [(3, "Weights"), (3, "Biases")]
    assert np.array_equal(w.NetExtract(net, (1, "Weights")), w.NetExtract(C, (1, "Weights")))


def test_named_chains_by_name_and_position():
    n = _named()
    a, t, b = w.Normal(n).values()
    assert list(w.Normal(w.NetTake(n, ("t", "b")))) == ["t", "b"]
    assert list(w.Normal(w.NetTake(n, "t"))) == ["a", "t"]
    assert list(w.Normal(w.NetDrop(n, ("t", "t")))) == ["a", "b"]
    assert list(w.Normal(w.NetDelete(n, "t"))) == ["a", "b"]
    assert list(w.Normal(w.NetAppend(n, {"soft": w.SoftmaxLayer()}))) == ["a", "t", "b", "soft"]
    assert list(w.Normal(w.NetInsert(n, {"t2": w.ElementwiseLayer("Tanh")}, "b"))) == ["a", "t", "t2", "b"]
    assert list(w.Normal(w.NetAppend(n, w.SoftmaxLayer()))) == ["a", "t", "b", "4"]  # an unnamed layer: its position
    assert w.NetReplacePart(n, {"b": w.LinearLayer(6)}).output_ports()["Output"].dims == (6,)
    assert n["t"] is t and n[1] is a and n[-1] is b and len(n) == 3 and list(n) == [a, t, b]
    joined = w.NetJoin(n, w.NetChain({"a": w.SoftmaxLayer()}))  # a repeated name is renamed
    assert list(w.Normal(joined)) == ["a", "t", "b", "a$2"]


def test_part_access_and_normal():
    assert C[1] is L1 and C[2] is T and C[3] is L2 and C[-1] is L2 and C[-3] is L1
    assert len(C) == 3 and list(C) == [L1, T, L2]
    assert [id(x) for x in w.Normal(C[2:3])] == [id(T), id(L2)]  # a span: NetTake
    assert w.Normal(L1) is L1
    with pytest.raises(w.OptionError, match="position 4"):
        C[4]
    with pytest.raises(w.OptionError, match="'x' is not a layer"):
        C["x"]


# ---- errors: typed, naming the position, and nothing changed ------------------------------------


def test_wrong_edits_are_typed_errors_naming_the_position():
    with pytest.raises(w.OptionError, match="position 5"):
        w.NetTake(C, 5)
    with pytest.raises(w.OptionError, match="position -4"):
        w.NetTake(C, (-4, 2))
    with pytest.raises(w.OptionError, match="empty"):
        w.NetTake(C, (3, 2))
    with pytest.raises(w.OptionError, match="cannot drop 4"):
        w.NetDrop(C, 4)
    # removing layers inside a chain: the input of the first removed and the output of the last must match
    with pytest.raises(w.ShapeError, match="NetDrop: dropping layers 1 to 1"):
        w.NetDrop(w.NetInitialize(w.NetChain([w.LinearLayer(4), w.LinearLayer(2)], Input=3)), (1, 1), Input=5)
    # a layer without trained arrays infers its shapes again
    assert w.NetDrop(w.NetChain([w.LinearLayer(4), w.LinearLayer(2)], Input=3), 1, Input=5)[1].input_ports()[
        "Input"].dims == (5,)
    with pytest.raises(w.ShapeError, match="NetDelete"):
        w.NetDelete(w.NetInitialize(w.NetChain([w.LinearLayer(4), w.LinearLayer(5), w.LinearLayer(2)], Input=3)), 2)
    with pytest.raises(w.ShapeError, match="NetInsert: inserting at position 2"):
        w.NetInsert(C, w.LinearLayer(3, Input=7), 2)
    with pytest.raises(w.ShapeError, match="NetReplacePart: replacing layer 1"):
        w.NetReplacePart(C, {1: w.LinearLayer(6)})  # layer 2 (Tanh) was inferred for 4, and layer 3 has 4×... arrays
    with pytest.raises(w.ShapeError, match="Weights must have dimensions 4×3"):
        w.NetReplacePart(C, {(1, "Weights"): np.zeros((3, 3))})
    with pytest.raises(w.OptionError, match="not an array"):
        w.NetReplacePart(C, {(1, "Kernel"): np.zeros((4, 3))})
    with pytest.raises(w.ConstructionError, match="same name"):
        w.NetRename(_named(), {"a": "b"})
    with pytest.raises(w.ShapeError, match="NetJoin"):
        w.NetJoin(C, w.NetChain([w.LinearLayer(3, Input=5)]))
    with pytest.raises(w.NotSupportedError, match="expected a NetChain"):
        w.NetDrop(w.NetGraph([w.LinearLayer(2)], Input=3), 1)
    with pytest.raises(w.OptionError, match="expected a NetChain or NetGraph"):
        w.NetTake(L1, 1)


def test_replace_part_arrays_and_ports():
    net = w.NetReplacePart(C, {(1, "Biases"): [1.0, 2.0, 3.0, 4.0], (3, "Weights"): np.eye(2, 4)})
    np.testing.assert_array_equal(w.NetExtract(net, (1, "Biases")), [1, 2, 3, 4])
    np.testing.assert_array_equal(w.NetExtract(net, (3, "Weights")), np.eye(2, 4))
    np.testing.assert_array_equal(w.NetExtract(net, (1, "Weights")), w.NetExtract(C, (1, "Weights")))
    np.testing.assert_allclose(net(X), np.eye(2, 4) @ np.tanh(w.NetExtract(C, (1, "Weights")) @ X + [1, 2, 3, 4])
                               + w.NetExtract(C, (3, "Biases")), rtol=1e-5)
    layer = w.NetReplacePart(L1, {"Biases": np.zeros(4)})
    assert np.array_equal(w.NetExtract(layer, "Biases"), np.zeros(4)) and layer.name == "LinearLayer"
    # ports: "Output" -> a decoder, then None removes it; "Input" -> an encoder
    dec = w.NetDecoder(("Class", ["x", "y"]))
    classed = w.NetReplacePart(w.NetAppend(C, w.SoftmaxLayer()), {"Output": dec})
    assert classed(X) in ("x", "y") and w.NetExtract(classed, "Output") is dec
    plain = w.NetReplacePart(classed, {"Output": None})
    assert not plain.decoders and plain(X).shape == (2,)
    enc = w.NetEncoder(("Characters", "abc", "UnitVector"))
    seq = w.NetChain([w.LongShortTermMemoryLayer(2), w.SequenceLastLayer()], Input=("Varying", 3))
    coded = w.NetReplacePart(seq, {"Input": enc})
    assert coded.encoders["Input"] is enc and len(w.NetInitialize(coded)("abca")) == 2
    with pytest.raises(w.ShapeError, match="NetReplacePart"):
        w.NetReplacePart(C, {"Input": 5})  # layer 1's trained weights take vectors of 3


def test_net_replace_patterns():
    net = w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh"), w.ElementwiseLayer("Ramp"), w.LinearLayer(2)],
                     Input=3)
    # a literal layer matches its parameters exactly; ports need not match
    got = w.NetReplace(net, {w.ElementwiseLayer("Tanh"): w.SoftmaxLayer()})
    assert _names(got) == ["LinearLayer", "SoftmaxLayer", "ElementwiseLayer", "LinearLayer"]
    assert w.Normal(got)[2]._args == ("Ramp",)
    got = w.NetReplace(net, [(lambda layer: layer.name == "LinearLayer" and layer._args == (4,), w.LinearLayer(5))])
    assert w.Information(got, "ArraysDimensions")[(4, "Weights")] == (2, 5)
    nested = w.NetChain([w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh")]), w.LinearLayer(2)], Input=3)
    got = w.NetReplace(nested, {w.ElementwiseLayer: w.SoftmaxLayer()})  # at any depth
    assert w.Normal(w.Normal(got)[0])[1].name == "SoftmaxLayer"
    with pytest.warns(w.NetWarning, match="no layer"):
        same = w.NetReplace(net, {w.SoftmaxLayer: w.ElementwiseLayer("Tanh")})
    assert same is net


def test_net_flatten():
    inner = w.NetChain([w.LinearLayer(4), w.ElementwiseLayer("Tanh")])
    nested = w.NetInitialize(w.NetChain([inner, w.LinearLayer(2)], Input=3), RandomSeeding=1)
    flat = w.NetFlatten(nested)
    assert isinstance(flat, w.NetChain) and _names(flat) == ["LinearLayer", "ElementwiseLayer", "LinearLayer"]
    np.testing.assert_allclose(flat(X), nested(X), rtol=1e-6)
    np.testing.assert_allclose(flat(X), _np_chain(w.Normal(flat), X), rtol=1e-5)
    # two levels, the first only
    deep = w.NetChain([w.NetChain([w.NetChain([w.LinearLayer(4)]), w.ElementwiseLayer("Tanh")])], Input=3)
    one = w.NetFlatten(deep, 1)
    assert [x.name for x in w.Normal(one)] == ["NetChain", "ElementwiseLayer"]
    assert _names(w.NetFlatten(deep)) == ["LinearLayer", "ElementwiseLayer"]
    # a chain holding a graph becomes a graph; names "outer/inner"
    g = w.NetGraph({"a": w.LinearLayer(2), "b": w.ElementwiseLayer("Tanh"), "c": w.TotalLayer()},
                   [("a", "b"), (["a", "b"], "c")])
    net = w.NetInitialize(w.NetChain([g, w.LinearLayer(3)], Input=3), RandomSeeding=2)
    flat = w.NetFlatten(net)
    assert isinstance(flat, w.NetGraph) and list(w.Normal(flat)) == ["1/a", "1/b", "1/c", "2"]
    a, lin = w.NetExtract(net, (1, "a")), w.NetExtract(net, 2)
    h = _np(a, X)
    np.testing.assert_allclose(flat(X), _np(lin, h + np.tanh(h)), rtol=1e-5, atol=1e-6)


def _graph():
    return w.NetInitialize(w.NetGraph({"lin": w.LinearLayer(2), "soft": w.SoftmaxLayer(),
                                       "t": w.ElementwiseLayer("Tanh")}, [("lin", "soft"), ("lin", "t")], Input=3),
                           RandomSeeding=5)


def test_graph_edits():
    g = _graph()
    lin = w.NetExtract(g, "lin")
    h = _np(lin, X)
    assert g.output_ports().keys() == {"Output1", "Output2"}
    took = w.NetTake(g, "soft")  # the layers up to "soft": lin → soft, one output
    assert list(w.Normal(took)) == ["lin", "soft"] and list(took.output_ports()) == ["Output"]
    np.testing.assert_allclose(took(X), _np(w.SoftmaxLayer(), h), rtol=1e-5)
    took = w.NetTake(g, (NetPort("Input"), NetPort("Output2")))
    assert list(w.Normal(took)) == ["lin", "t"]
    deleted = w.NetDelete(g, "t")
    assert list(w.Normal(deleted)) == ["lin", "soft"] and list(deleted.output_ports()) == ["Output"]
    pruned = w.NetDelete(g, NetPort("Output2"))  # an output port, and the layer that only computed it
    assert list(w.Normal(pruned)) == ["lin", "soft"] and list(pruned.output_ports()) == ["Output1"]
    bridged = w.NetDelete(w.NetGraph({"a": w.LinearLayer(3), "t": w.ElementwiseLayer("Tanh"), "b": w.LinearLayer(2)},
                                     [("a", "t", "b")], Input=3), "t")
    assert bridged.output_ports()["Output"].dims == (2,) and list(w.Normal(bridged)) == ["a", "b"]
    appended = w.NetAppend(deleted, w.LinearLayer(5))
    assert list(w.Normal(appended)) == ["lin", "soft", "3"] and appended.output_ports()["Output"].dims == (5,)
    renamed = w.NetRename(g, {"lin": "L", NetPort("Input"): NetPort("x"), NetPort("Output1"): NetPort("p")})
    assert list(w.Normal(renamed)) == ["L", "soft", "t"]
    assert list(renamed.input_ports()) == ["x"] and set(renamed.output_ports()) == {"p", "Output2"}
    np.testing.assert_allclose(renamed({"x": X})["p"], g(X)["Output1"], rtol=1e-6)
    assert w.NetExtract(renamed, "L") is lin
    with pytest.raises(w.ConstructionError, match="2 output ports"):
        w.NetAppend(g, w.SoftmaxLayer())
    with pytest.raises(w.OptionError, match="not an output port"):
        w.NetDelete(g, NetPort("Nope"))


def test_net_rename_by_function_and_chain_port_rename():
    n = w.NetRename(_named(), lambda name: name.upper())
    assert list(w.Normal(n)) == ["A", "T", "B"]
    g = w.NetRename(C, {NetPort("Input"): NetPort("in")})
    assert isinstance(g, w.NetGraph) and list(g.input_ports()) == ["in"]
    np.testing.assert_allclose(g({"in": X}), C(X), rtol=1e-6)
    positional = w.NetRename(C, {2: "tanh"})
    assert list(w.Normal(positional)) == ["1", "tanh", "3"]


# ---- NetPortGradient ------------------------------------------------------------------------------


def test_port_gradient_of_a_chain_against_the_formula():
    W1, b1 = w.NetExtract(C, (1, "Weights")), w.NetExtract(C, (1, "Biases"))
    W2 = w.NetExtract(C, (3, "Weights"))
    # d/dx sum(W2 tanh(W1 x + b1) + b2) = W1ᵀ ((1 - tanh²(W1 x + b1)) ⊙ W2ᵀ 1)
    want = W1.T @ ((1 - np.tanh(W1 @ X + b1) ** 2) * (W2.T @ np.ones(2)))
    np.testing.assert_allclose(C(X, w.NetPortGradient("Input")), want, rtol=1e-5, atol=1e-6)
    batch = np.stack([X, -X])
    got = C(batch, w.NetPortGradient("Input"))
    np.testing.assert_allclose(got[1], W1.T @ ((1 - np.tanh(-W1 @ X + b1) ** 2) * (W2.T @ np.ones(2))), rtol=1e-5,
                               atol=1e-6)
    assert np.asarray(got).shape == (2, 3)


def test_port_gradient_of_a_sequence_by_finite_differences():
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=("Varying", 2)),
                          RandomSeeding=6)
    seq = np.random.default_rng(1).normal(size=(4, 2))
    got = np.array(net(seq, w.NetPortGradient("Input"), WorkingPrecision="Real64"))
    eps, num = 1e-6, np.zeros_like(seq)
    for i in np.ndindex(seq.shape):
        up, down = seq.copy(), seq.copy()
        up[i] += eps
        down[i] -= eps
        num[i] = (np.sum(net(up, WorkingPrecision="Real64")) - np.sum(net(down, WorkingPrecision="Real64"))) / (2 * eps)
    np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-7)


def test_port_gradient_errors():
    with pytest.raises(w.InputError, match="names no input port"):
        C(X, w.NetPortGradient("x"))
    enc = w.NetChain([w.LongShortTermMemoryLayer(2), w.SequenceLastLayer()],
                     Input=w.NetEncoder(("Characters", "ab", "UnitVector")))
    with pytest.raises(w.NotSupportedError, match="no gradient"):
        w.NetInitialize(enc)("ab", w.NetPortGradient("Input"))
    with pytest.raises(w.OptionError):
        w.NetPortGradient(1)


def test_no_warning_from_ordinary_edits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w.NetTake(C, 2)
        w.NetReplace(C, {w.ElementwiseLayer: w.SoftmaxLayer()})


def test_replace_part_at_once_and_joins_with_graphs():
    trained = w.NetInitialize(w.NetChain([w.LinearLayer(4), w.LinearLayer(3), w.SoftmaxLayer()], Input=2,
                                         Output=w.NetDecoder(("Class", ["a", "b", "c"]))), RandomSeeding=7)
    two = w.NetDecoder(("Class", ["p", "q"]))
    # one at a time neither fits the other (3 classes against a size-2 layer); together they do
    with pytest.raises(w.ShapeError):
        w.NetReplacePart(trained, {2: w.LinearLayer(2)})
    new = w.NetReplacePart(trained, {2: w.LinearLayer(2), "Output": two})
    assert new.decoders["Output"] is two and new.missing_arrays() == [(2, "Weights"), (2, "Biases")]
    g = w.NetGraph({"a": w.LinearLayer(3), "t": w.ElementwiseLayer("Tanh")}, [("a", "t")], Input=2)
    joined = w.NetJoin(g, w.NetChain([w.LinearLayer(2)]))
    # a line of layers: NetFlatten (and so NetJoin) gives a NetChain, as for a fully flat graph
    assert isinstance(joined, w.NetChain) and list(w.Normal(joined)) == ["1/a", "1/t", "2/1"]
    branched = w.NetJoin(w.NetGraph({"x": w.LinearLayer(3), "y": w.ElementwiseLayer("Tanh"),
                                    "s": w.TotalLayer()}, [("x", "y"), (["x", "y"], "s")], Input=2),
                         w.NetChain([w.LinearLayer(2)]))
    assert isinstance(branched, w.NetGraph) and not isinstance(branched, w.NetChain)
    assert list(w.Normal(branched)) == ["1/x", "1/y", "1/s", "2/1"]
    flat_line = w.NetGraph([w.LinearLayer(3), w.ElementwiseLayer("Tanh")], [(1, 2)], Input=2)
    assert isinstance(w.NetFlatten(flat_line), w.NetChain)


def test_net_delete_a_state_input_port():
    lstm = w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=("Varying", 1)), RandomSeeding=8)
    g = w.NetGraph([lstm], [(NetPort("s0"), NetPort(1, "State"))])
    seq = [[1.0], [0.5]]
    assert set(g.input_ports()) == {"Input", "s0"}
    freed = w.NetDelete(g, NetPort("s0"))
    assert list(freed.input_ports()) == ["Input"]
    np.testing.assert_allclose(freed(seq), g({"Input": seq, "s0": [0.0, 0.0]}), rtol=1e-6)
    np.testing.assert_allclose(freed(seq), lstm(seq), rtol=1e-6)


def test_coders_kept_where_their_layers_stay_and_replaced_by_port_options():
    enc = w.NetEncoder(("Characters", "xy", "UnitVector"))
    dec = w.NetDecoder(("Class", ["a", "b", "c"]))
    net = w.NetChain([w.LongShortTermMemoryLayer(4), w.SequenceLastLayer(), w.LinearLayer(3), w.SoftmaxLayer()],
                     Input=enc, Output=dec)
    front = w.NetTake(net, 2)
    assert front.encoders == {"Input": enc} and not front.decoders
    back = w.NetTake(net, (2, 4))
    assert back.decoders == {"Output": dec} and not back.encoders
    assert back.input_ports()["Input"].dims == ("Varying", 4)
    other = w.NetDecoder(("Class", ["p", "q", "r"]))
    assert w.NetTake(net, (2, 4), Output=other).decoders == {"Output": other}  # "port" -> spec replaces it
    assert w.NetDrop(net, -2, Output=None).decoders == {}
    joined = w.NetJoin(front, w.NetDrop(net, 2))
    assert joined.encoders == {"Input": enc} and joined.decoders == {"Output": dec}
