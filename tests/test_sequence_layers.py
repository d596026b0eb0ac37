"""SequenceMostLayer, SequenceRestLayer, SequenceReverseLayer, AggregationLayer, CatenateLayer,
TotalLayer, ThreadingLayer, list edges in a NetGraph, and SoftmaxLayer / ElementwiseLayer on
sequences: values against numpy on uniform and ragged batches, gradients by gradcheck in
float64 through the compiled modules, InputForm, and every bad input a clear error that
changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wlnet
from wlnet import (
    AggregationLayer,
    CatenateLayer,
    ElementwiseLayer,
    InputError,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetError,
    NetGraph,
    NetInitialize,
    NetPort,
    OptionError,
    SequenceLastLayer,
    SequenceMostLayer,
    SequenceRestLayer,
    SequenceReverseLayer,
    ShapeError,
    SoftmaxLayer,
    ThreadingLayer,
    TotalLayer,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx

RNG = np.random.default_rng(11)
RAGGED = [RNG.standard_normal((t, 3)).round(3) for t in (4, 1, 3)]  # three sequences of size-3 vectors
UNIFORM = [RNG.standard_normal((3, 3)).round(3) for _ in range(2)]
BATCHES = {"uniform": UNIFORM, "ragged": RAGGED}


def as_lists(xs):
    return [x.tolist() for x in xs]


def close(got, want, atol=1e-5):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=atol)


class Inputs(list):
    """Float64 leaves for gradcheck and how they make the port's value: one Seq, or (is_list) a
    list of Seqs; `lengths` one lengths vector (or None) for all of them, or a list, one each."""

    def __init__(self, datas, lengths=None, is_list=False):
        super().__init__(d.detach().clone().double().requires_grad_() for d in datas)
        self.lengths = lengths if isinstance(lengths, list) else [lengths] * len(datas)
        self.is_list = is_list

    def value(self, xs):
        seqs = [Seq(x, ln) for x, ln in zip(xs, self.lengths)]
        return seqs if self.is_list else seqs[0]


def gradcheck(layer, inputs: Inputs):
    """torch.autograd.gradcheck in float64 of the layer's compiled module, inputs and arrays."""
    module = layer.build(trainable=True).double()
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]

    def f(*args):
        xs, ps = args[:len(inputs)], args[len(inputs):]
        out, _ = torch.func.functional_call(module, dict(zip(names, ps)), ({"Input": inputs.value(xs)}, {},
                                                                             Ctx(False, None)))
        y = out["Output"]
        return y.data if isinstance(y, Seq) else y

    assert torch.autograd.gradcheck(f, (*inputs, *params))


def padded(xs):
    """Seq of a list of (T_i, ...) numpy arrays, float64, lengths None when all are equally long."""
    ts = [torch.tensor(x, dtype=torch.float64) for x in xs]
    lengths = torch.tensor([len(x) for x in xs])
    data = torch.nn.utils.rnn.pad_sequence(ts, batch_first=True)
    return data, (None if len(set(lengths.tolist())) == 1 else lengths)


def unchanged(net, call):
    """Run `call`, which must raise a NetError, and check the net still gives what it gave."""
    code = wlnet.Information(net, "InputForm")
    with pytest.raises(NetError) as info:
        call()
    assert wlnet.Information(net, "InputForm") == code
    return info.value


# ---- SequenceMostLayer, SequenceRestLayer, SequenceReverseLayer -----------------------------------
SEQUENCE_LAYERS = {
    "SequenceMostLayer": (SequenceMostLayer, lambda x: x[:-1]),
    "SequenceRestLayer": (SequenceRestLayer, lambda x: x[1:]),
    "SequenceReverseLayer": (SequenceReverseLayer, lambda x: x[::-1]),
}


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_sequence_layers_equal_numpy(name, batch):
    make, ref = SEQUENCE_LAYERS[name]
    xs = BATCHES[batch]
    if name != "SequenceReverseLayer":
        xs = [x for x in xs if len(x) >= 2]
    layer = make(Input=("Varying", 3))
    got = layer(as_lists(xs))
    assert [len(g) for g in got] == [len(ref(x)) for x in xs]
    for g, x in zip(got, xs):
        close(g, ref(x))
    close(layer(xs[0].tolist()), ref(xs[0]))  # one sequence
    torch_out = layer(torch.tensor(xs[0], dtype=torch.float32))
    assert isinstance(torch_out, torch.Tensor)


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
def test_sequence_layers_take_any_element_and_indices(name):
    make, ref = SEQUENCE_LAYERS[name]
    scalars = make()  # alone, a sequence of vectors; in a chain, whatever precedes it
    assert scalars.input_ports()["Input"].dims == ("Varying", None)
    enc = wlnet.NetEncoder(("Characters", "abcd"))
    chain = NetChain([make(), wlnet.EmbeddingLayer(2)], Input=enc)
    chain = NetInitialize(chain, RandomSeeding=1)
    w = wlnet.NetExtract(chain, (2, "Weights"))
    idx = np.array([0, 1, 3, 2])  # "abdc"
    close(chain("abdc"), w[ref(idx)])
    out = NetChain([make()], Input=(5,))  # a length-5 sequence of numbers
    assert out.output_ports()["Output"].dims == ((5,) if name == "SequenceReverseLayer" else (4,))
    close(out([1, 2, 3, 4, 5]), ref(np.arange(1.0, 6.0)))


@pytest.mark.parametrize("name", SEQUENCE_LAYERS)
def test_sequence_layers_gradcheck(name):
    make, _ = SEQUENCE_LAYERS[name]
    data, lengths = padded([x for x in RAGGED if len(x) >= 2])
    gradcheck(make(Input=("Varying", 3)), Inputs([data], lengths))
    data, _ = padded(UNIFORM)
    gradcheck(make(Input=("Varying", 3)), Inputs([data], None))


def test_sequence_most_ragged_padding_is_zero_and_lengths_drop_by_one():
    data, lengths = padded([np.ones((3, 2)), np.ones((2, 2))])
    out, _ = SequenceMostLayer().build(False)({"Input": Seq(data, lengths)}, {}, Ctx(False, None))
    y = out["Output"]
    assert y.lengths.tolist() == [2, 1] and y.data.shape[1] == 2
    assert y.data[1, 1].abs().sum() == 0  # the removed last element of the shorter one


@pytest.mark.parametrize("make", [SequenceMostLayer, SequenceRestLayer])
def test_too_short_sequences_are_errors_naming_the_layer(make):
    layer = make(Input=("Varying", 2))
    err = unchanged(layer, lambda: layer([[1.0, 2.0]]))
    assert isinstance(err, InputError) and make.__name__ in str(err) and "at least 2" in str(err)
    err = unchanged(layer, lambda: layer([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0]]]))
    assert "batch element 2 has 1" in str(err)
    assert layer([[1.0, 2.0], [3.0, 4.0]]) in ([[1.0, 2.0]], [[3.0, 4.0]])  # still works
    with pytest.raises(ShapeError, match="at least 2 elements"):
        make(Input=(1, 2))
    with pytest.raises(ShapeError, match=make.__name__):
        NetChain([make()], Input=(1, 3))


@pytest.mark.parametrize("make", [SequenceMostLayer, SequenceRestLayer, SequenceReverseLayer])
def test_a_non_sequence_is_refused(make):
    lstm = LongShortTermMemoryLayer(3)
    with pytest.raises(ShapeError) as info:
        NetChain([lstm, SequenceLastLayer(), ElementwiseLayer("Tanh"), AggregationLayer("Total", 1), make()],
                 Input=("Varying", 2))
    assert make.__name__ in str(info.value) and "expects a sequence" in str(info.value)
    assert lstm.input_ports()["Input"].dims == ("Varying", None)  # the layer given is unchanged
    with pytest.raises(ShapeError, match="option Input"):
        make(Input="x")


# ---- AggregationLayer --------------------------------------------------------------------------
NP = {"Max": np.max, "Min": np.min, "Mean": np.mean, "Total": np.sum, "Times": np.prod}


@pytest.mark.parametrize("f", list(NP))
@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_aggregation_over_the_sequence_equals_numpy(f, batch):
    xs = BATCHES[batch]
    layer = AggregationLayer(f, 1, Input=("Varying", 3))
    got = layer(as_lists(xs))
    for g, x in zip(got, xs):
        close(g, NP[f](x, axis=0))
    data, lengths = padded(xs)
    gradcheck(layer, Inputs([data], lengths))


@pytest.mark.parametrize("f", list(NP))
def test_aggregation_default_levels_are_wolframs_2_to_all(f):
    layer = AggregationLayer(f, Input=("Varying", 3))
    assert layer.output_ports()["Output"].dims == ("Varying",)  # a sequence of numbers
    got = layer(as_lists(RAGGED))
    for g, x in zip(got, RAGGED):
        close(g, NP[f](x, axis=1))
    m = RNG.standard_normal((2, 3, 4))
    cube = AggregationLayer(f, Input=(2, 3, 4))
    close(cube(m.tolist()), NP[f](m.reshape(2, -1), axis=1))
    close(AggregationLayer(f, [1, 3], Input=(2, 3, 4))(m.tolist()), NP[f](m, axis=(0, 2)))
    close(AggregationLayer(f, slice(2, 3), Input=(2, 3, 4))(m.tolist()), NP[f](m, axis=(1, 2)))
    close(AggregationLayer(f, -1, Input=(2, 3, 4))(m.tolist()), NP[f](m, axis=2))


def test_aggregation_of_a_sequence_to_a_vector_in_a_chain():
    chain = NetInitialize(NetChain([LongShortTermMemoryLayer(4), AggregationLayer("Max", 1)], Input=("Varying", 3)),
                          RandomSeeding=3)
    lstm = wlnet.NetExtract(chain, 1)
    got = chain(as_lists(RAGGED))
    for g, x in zip(got, RAGGED):
        close(g, np.max(lstm(x.tolist()), axis=0))
    assert "AggregationLayer(\"Max\", 1)" in wlnet.Information(chain, "InputForm").replace("'", '"')


def test_aggregation_errors():
    with pytest.raises(OptionError, match="'Max', 'Min'"):
        AggregationLayer("Median")
    with pytest.raises(OptionError, match="levels"):
        AggregationLayer("Max", 0)
    with pytest.raises(ShapeError, match="level 3 does not exist"):
        AggregationLayer("Max", 3, Input=("Varying", 2))
    with pytest.raises(ShapeError, match=r"select no level .* AggregationLayer\('Max', 1\)"):
        NetChain([AggregationLayer("Max")], Input=3)
    with pytest.raises(ShapeError, match="real arrays"):
        NetChain([AggregationLayer("Max", 1)], Input=wlnet.NetEncoder(("Characters", "ab")))


# ---- SoftmaxLayer and ElementwiseLayer on sequences -------------------------------------------------
@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_softmax_and_elementwise_act_on_each_vector_of_a_sequence(batch):
    xs = BATCHES[batch]
    soft = SoftmaxLayer(Input=("Varying", 3))
    for g, x in zip(soft(as_lists(xs)), xs):
        e = np.exp(x - x.max(-1, keepdims=True))
        close(g, e / e.sum(-1, keepdims=True))
    tanh = ElementwiseLayer("Tanh", Input=("Varying", 3))
    for g, x in zip(tanh(as_lists(xs)), xs):
        close(g, np.tanh(x))
    chain = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SoftmaxLayer()], Input=("Varying", 3)))
    for g in chain(as_lists(xs)):
        close(np.sum(g, -1), np.ones(len(g)))
    data, lengths = padded(xs)
    gradcheck(soft, Inputs([data], lengths))


# ---- CatenateLayer, TotalLayer, ThreadingLayer ------------------------------------------------------
def test_catenate_vectors_alone_and_in_batches():
    cat = CatenateLayer()
    assert cat([[1, 2], [3]]) == [1.0, 2.0, 3.0]
    typed = CatenateLayer(Input=[2, 1])
    assert typed([[[1, 2], [3]], [[4, 5], [6]]]) == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]  # a batch of two
    out = typed([np.array([1.0, 2.0], np.float32), np.array([3.0], np.float32)])
    assert isinstance(out, np.ndarray) and out.tolist() == [1.0, 2.0, 3.0]
    assert typed.output_ports()["Output"].dims == (3,)


@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_catenate_sequences_of_vectors_at_the_last_level(batch):
    xs = BATCHES[batch]
    ys = [RNG.standard_normal((len(x), 2)) for x in xs]
    cat = CatenateLayer(-1, Input=[("Varying", 3), ("Varying", 2)])
    assert cat.output_ports()["Output"].dims == ("Varying", 5)
    got = cat([[x.tolist(), y.tolist()] for x, y in zip(xs, ys)])
    for g, x, y in zip(got, xs, ys):
        close(g, np.concatenate([x, y], -1))
    assert CatenateLayer(2, Input=[("Varying", 3), ("Varying", 2)]).output_ports() == cat.output_ports()
    (dx, lengths), (dy, _) = padded(xs), padded(ys)
    gradcheck(cat, Inputs([dx, dy], lengths, is_list=True))


@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_catenate_sequences_at_level_1_joins_them_each_to_its_length(batch):
    xs = BATCHES[batch]
    ys = [RNG.standard_normal((t, 3)) for t in (2, 3, 1)[:len(xs)]]
    cat = CatenateLayer(Input=[("Varying", 3), ("Varying", 3)])
    got = cat([[x.tolist(), y.tolist()] for x, y in zip(xs, ys)])
    for g, x, y in zip(got, xs, ys):
        close(g, np.concatenate([x, y], 0))
    (dx, lx), (dy, ly) = padded(xs), padded(ys)
    gradcheck(cat, Inputs([dx, dy], [lx, ly], is_list=True))


def test_catenate_replicates_a_vector_over_a_sequence():
    cat = CatenateLayer(Input=[("Varying", 3), 2])  # level 1 of the vector: the vectors of the sequence
    assert cat.output_ports()["Output"].dims == ("Varying", 5)
    v = [0.5, -0.5]
    got = cat([[x.tolist(), v] for x in RAGGED])
    for g, x in zip(got, RAGGED):
        close(g, np.concatenate([x, np.tile(v, (len(x), 1))], -1))


@pytest.mark.parametrize("f, ref", [("Plus", np.add), ("Times", np.multiply), ("Max", np.maximum),
                                    ("Min", np.minimum), ("Subtract", np.subtract), ("Divide", np.divide),
                                    (lambda a, b: a * b + a, lambda a, b: a * b + a)])
@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_threading_equals_numpy(f, ref, batch):
    xs = BATCHES[batch]
    ys = [RNG.uniform(0.5, 2.0, size=x.shape).round(3) for x in xs]
    layer = ThreadingLayer(f, Input=[("Varying", 3), ("Varying", 3)])
    got = layer([[x.tolist(), y.tolist()] for x, y in zip(xs, ys)])
    for g, x, y in zip(got, xs, ys):
        close(g, ref(x, y))
    (dx, lengths), (dy, _) = padded(xs), padded(ys)
    gradcheck(layer, Inputs([dx, dy], lengths, is_list=True))


def test_threading_pads_with_zeros_and_has_no_nan_at_the_padding():
    layer = ThreadingLayer("Divide")
    a, b = torch.ones(2, 3, 1), torch.zeros(2, 3, 1)
    b[:, :2] = 2.0
    a.requires_grad_()
    lengths = torch.tensor([2, 1])
    out, _ = layer.build(False)({"Input": [Seq(a, lengths), Seq(b, lengths)]}, {}, Ctx(False, None))
    y = out["Output"].data
    assert torch.isfinite(y).all() and y[1, 1:].abs().sum() == 0
    y.sum().backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_total_layer_equals_the_sum(batch):
    xs = BATCHES[batch]
    ys = [RNG.standard_normal(x.shape) for x in xs]
    zs = [RNG.standard_normal(x.shape) for x in xs]
    layer = TotalLayer(Input=[("Varying", 3)] * 3)
    got = layer([[x.tolist(), y.tolist(), z.tolist()] for x, y, z in zip(xs, ys, zs)])
    for g, x, y, z in zip(got, xs, ys, zs):
        close(g, x + y + z)
    (dx, lengths), (dy, _), (dz, _) = padded(xs), padded(ys), padded(zs)
    gradcheck(layer, Inputs([dx, dy, dz], lengths, is_list=True))


def test_list_layers_inputform_round_trip():
    for layer in (CatenateLayer(), CatenateLayer(-1, Input=[("Varying", 3), ("Varying", 2)]), TotalLayer(Input=[2, 2]),
                  ThreadingLayer("Subtract", Input=[2, 2]), AggregationLayer("Mean", [1, 2]),
                  AggregationLayer("Max", slice(1, None)), SequenceMostLayer(Input=("Varying", 2)),
                  SequenceReverseLayer()):
        code = wlnet.Information(layer, "InputForm")
        rebuilt = eval(code, vars(wlnet))
        assert type(rebuilt) is type(layer) and wlnet.Information(rebuilt, "InputForm") == code
        assert rebuilt.input_ports() == layer.input_ports() and rebuilt.output_ports() == layer.output_ports()


# ---- list edges in a NetGraph -----------------------------------------------------------------------
def _two_branch_graph(join, **ports):
    return NetGraph({"a": LongShortTermMemoryLayer(3), "b": LongShortTermMemoryLayer(2), "join": join},
                    [(NetPort("x"), "a"), (NetPort("y"), "b"), (["a", "b"], "join")], **ports)


@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_graph_list_edge_feeds_sources_in_order(batch):
    g = NetInitialize(_two_branch_graph(CatenateLayer(-1), x=("Varying", 3), y=("Varying", 3)), RandomSeeding=2)
    assert g.output_ports()["Output"].dims == ("Varying", 5)
    a, b = wlnet.NetExtract(g, "a"), wlnet.NetExtract(g, "b")
    xs = BATCHES[batch]
    ys = [x[:, ::-1].copy() for x in xs]
    got = g({"x": as_lists(xs), "y": as_lists(ys)})
    for out, x, y in zip(got, xs, ys):
        close(out, np.concatenate([a(x.tolist()), b(y.tolist())], -1))
    code = wlnet.Information(g, "InputForm")
    assert '(["a", "b"], "join")' in code.replace("'", '"')
    rebuilt = eval(code, vars(wlnet))
    close(rebuilt({"x": xs[0].tolist(), "y": ys[0].tolist()}), got[0])
    fig = wlnet.Information(g, "SummaryGraphic")
    assert fig is not None


def test_separate_edges_into_a_list_port_add_in_order():
    g = NetGraph({"cat": CatenateLayer()}, [(NetPort("p"), "cat"), (NetPort("q"), "cat")], p=2, q=1)
    assert g({"p": [1, 2], "q": [3]}) == [1.0, 2.0, 3.0]
    g2 = NetGraph({"cat": CatenateLayer()}, [(NetPort("q"), "cat"), (NetPort("p"), "cat")], p=2, q=1)
    assert g2({"p": [1, 2], "q": [3]}) == [3.0, 1.0, 2.0]


def test_unconnected_list_port_is_a_list_input_of_the_graph():
    g = NetInitialize(NetChain([CatenateLayer(Input=[2, 1]), LinearLayer(1)]))
    assert isinstance(g.input_ports()["Input"], wlnet.core.shapes.ListType)
    w, b = wlnet.NetExtract(g, (2, "Weights")), wlnet.NetExtract(g, (2, "Biases"))
    close(g([[1, 2], [3]]), w @ [1, 2, 3] + b)
    res = wlnet.NetTrain(g, [([[1.0, 2.0], [3.0]], [1.0]), ([[0.0, 1.0], [1.0]], [0.0])], wlnet.All,
                         MaxTrainingRounds=3, TrainingProgressReporting=None)
    assert res["TotalRounds"] == 3


def test_list_edges_bad_inputs_are_clear_errors():
    a, b = LinearLayer(2), LinearLayer(3)
    with pytest.raises(ShapeError, match=r"TotalLayer, port \"Input\": array 2 is a vector of size 3, but array 1 is a "
                                         r"vector of size 2"):
        NetGraph({"a": a, "b": b, "t": TotalLayer()}, [(NetPort("x"), "a"), (NetPort("x"), "b"), (["a", "b"], "t")],
                 x=4)
    assert a.input_ports()["Input"].dims == (None,)  # the layers given are unchanged
    with pytest.raises(ShapeError, match="takes 3 arrays .* but 2 are connected"):
        NetGraph({"a": a, "b": b, "c": CatenateLayer(Input=[2, 3, 1])},
                 [(NetPort("x"), "a"), (NetPort("x"), "b"), (["a", "b"], "c")], x=4)
    with pytest.raises(wlnet.ConstructionError, match="2 sources feed 'b'"):
        NetGraph({"a": a, "b": b}, [([NetPort("x"), NetPort("y")], "b")])
    with pytest.raises(wlnet.ConstructionError, match="only be the source"):
        NetGraph({"a": a, "b": b}, [("a", ["b"])])
    with pytest.raises(ShapeError, match="Subtract' takes 2 arrays"):
        ThreadingLayer("Subtract", Input=[2, 2, 2])
    assert CatenateLayer(-1, Input=[("Varying", 3), (4, 2)]).output_ports()["Output"].dims == (4, 5)
    with pytest.raises(ShapeError, match="CatenateLayer.*other dimensions agree"):
        CatenateLayer(Input=[(2, 3), (2, 4)])
    with pytest.raises(ShapeError, match="integer indices and real arrays"):
        NetGraph({"e": wlnet.EmbeddingLayer(2, 3), "c": CatenateLayer(1)},
                 [(NetPort("i"), "e"), (["e", NetPort("j")], "c")],
                 i=wlnet.NetEncoder(("Characters", "abc")), j=wlnet.NetEncoder(("Characters", "abc")))
    with pytest.raises(ShapeError, match="level 2 does not exist"):
        CatenateLayer(2, Input=[3, 2])
    with pytest.raises(OptionError, match="non-zero integer"):
        CatenateLayer(0)
    with pytest.raises(OptionError, match="Plus, Times"):
        ThreadingLayer("Hypot")


def test_list_layers_bad_data_are_errors_that_change_nothing():
    cat = CatenateLayer(Input=[2, 1])
    err = unchanged(cat, lambda: cat([[1, 2]]))  # one array where two are expected
    assert isinstance(err, InputError) and "CatenateLayer" in str(err) and 'port "Input"' in str(err)
    err = unchanged(cat, lambda: cat([[1, 2], [3, 4]]))
    assert "a vector of size 1" in str(err)
    err = unchanged(cat, lambda: cat([]))
    assert "empty" in str(err)
    err = unchanged(cat, lambda: cat(np.zeros(3)))
    assert "a list of 2 arrays" in str(err)
    assert cat([[1, 2], [3]]) == [1.0, 2.0, 3.0]
    total = TotalLayer(Input=[("Varying", 2), ("Varying", 2)])
    err = unchanged(total, lambda: total([[[1, 2], [3, 4]], [[1, 2]]]))
    assert "array 2 has length 1 and array 1 length 2" in str(err) and "same length" in str(err)
    bad = ThreadingLayer(lambda a, b: (a * b).sum(-1), Input=[2, 2])
    err = unchanged(bad, lambda: bad([[1, 2], [3, 4]]))
    assert "element by element" in str(err)


def test_total_and_threading_refuse_a_sequence_with_a_vector():
    lstm, lin = LongShortTermMemoryLayer(3), LinearLayer(3)
    for join in (TotalLayer(), ThreadingLayer("Plus")):
        with pytest.raises(ShapeError) as info:
            NetGraph({"s": lstm, "v": lin, "j": join}, [(NetPort("x"), "s"), (NetPort("y"), "v"), (["s", "v"], "j")],
                     x=("Varying", 2), y=2)
        msg = str(info.value)
        assert f'{join.name}, port "Input": array 2 is a vector of size 3, but array 1 is a sequence of size-3 ' \
               "vectors; the arrays must have the same dimensions" in msg, msg
    assert lstm.input_ports()["Input"].dims == ("Varying", None) and lin.input_ports()["Input"].dims == (None,)


@pytest.mark.parametrize("kind", ["LongShortTermMemoryLayer", "GatedRecurrentLayer", "BasicRecurrentLayer"])
@pytest.mark.parametrize("ragged", [False, True])
def test_sequence_last_of_a_recurrent_layer_is_its_final_state_and_equals_the_gather(kind, ragged):
    """SequenceLastLayer reads a recurrent layer's final state instead of gathering its outputs:
    the same values and the same gradients as the gather at each sequence's last step."""
    from wlnet.layers.sequence import last_of

    chain = wlnet.NetInitialize(wlnet.NetChain([getattr(wlnet, kind)(4), wlnet.SequenceLastLayer()],
                                               Input=("Varying", 3)), RandomSeeding=5)
    module = chain.build(trainable=True).double()
    g = torch.Generator().manual_seed(2)
    data = torch.randn(5, 6, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 5, 1, 3]) if ragged else None
    x = Seq(data, lengths)
    ctx = Ctx(True, None, exact_states=False)
    rnn, last = module._modules["1"], module._modules["2"]
    out = rnn({"Input": x}, {}, ctx)[0]["Output"]
    assert last_of(out.data) is not None
    got = last({"Input": out}, {}, ctx)[0]["Output"]
    ends = (lengths - 1) if ragged else torch.full((5,), 5)
    want = out.data[torch.arange(5), ends]  # the gather on the outputs themselves
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-14)
    params = list(module.parameters())
    g_got = torch.autograd.grad(got.square().sum(), params, retain_graph=True)
    g_want = torch.autograd.grad(want.square().sum(), params)
    for a, b in zip(g_got, g_want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
    out.data.detach().mul_(1.0)  # changed in place (the version counter is shared): no longer the layer's output
    assert last_of(out.data) is None
