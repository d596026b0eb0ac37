"""NetMapOperator and NetBidirectionalOperator: values against numpy (the recurrences of
reference.py and reference_cells.py, the affine map) and against the operators' two nets run
separately on reversed inputs, per example of ragged batches; float64 gradchecks; state ports of
both directions; dropout; NetExtract, Information, InputForm, NetInitialize, NetTrain; and the
errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reference as R
import reference_cells as C
import wlnet
from wlnet import (
    All,
    BasicRecurrentLayer,
    GatedRecurrentLayer,
    Information,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetBidirectionalOperator,
    NetChain,
    NetError,
    NetExtract,
    NetGraph,
    NetInitialize,
    NetMapOperator,
    NetPort,
    NetStateObject,
    NetTrain,
    NotSupportedError,
    OptionError,
    SequenceLastLayer,
    ShapeError,
    SoftmaxLayer,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx

RNG = np.random.default_rng(5)
RAGGED = [RNG.standard_normal((t, 2)).round(3) for t in (4, 1, 3)]
UNIFORM = [RNG.standard_normal((3, 2)).round(3) for _ in range(2)]
BATCHES = {"uniform": UNIFORM, "ragged": RAGGED}
CELLS = {"LSTM": LongShortTermMemoryLayer, "GRU": GatedRecurrentLayer, "RNN": BasicRecurrentLayer}
QUIET = {"TrainingProgressReporting": None}


def close(got, want, atol=1e-5):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=atol)


def arrays64(net) -> dict:
    return {k[-1]: v.astype(np.float64) for k, v in Information(net, "Arrays").items()}


def recurrence(cell: str, layer, x, s0=None, c0=None):
    """numpy: the layer's output sequence and final states for one sequence x."""
    a = arrays64(layer)
    if cell == "LSTM":
        out, s, c = R.forward(x, a, s0, c0)
        return out, (s, c)
    out, s = C.forward(cell, x, a, s0)
    return out, (s,)


def combine(f, b, aggregator):
    return {"Catenate": lambda: np.concatenate([f, b], -1), "Total": lambda: f + b, "Mean": lambda: (f + b) / 2}[
        aggregator]()


def padded(xs, dtype=torch.float64):
    data = torch.nn.utils.rnn.pad_sequence([torch.tensor(x, dtype=dtype) for x in xs], batch_first=True)
    lengths = torch.tensor([len(x) for x in xs])
    return data, (None if len(set(lengths.tolist())) == 1 else lengths)


def gradcheck(net, data, lengths):
    module = net.build(trainable=True).double()
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    x = data.detach().clone().requires_grad_()

    def f(x, *ps):
        out, _ = torch.func.functional_call(module, dict(zip(names, ps)),
                                            ({"Input": Seq(x, lengths)}, {}, Ctx(False, None)))
        return out["Output"].data

    assert torch.autograd.gradcheck(f, (x, *params))


# ---- NetMapOperator ----------------------------------------------------------------------------
@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_map_of_linear_after_lstm_is_a_per_step_classifier(batch):
    chain = NetChain([LongShortTermMemoryLayer(4), NetMapOperator(LinearLayer(3)), SoftmaxLayer()],
                     Input=("Varying", 2))
    assert chain.output_ports()["Output"].dims == ("Varying", 3)
    chain = NetInitialize(chain, RandomSeeding=7)
    lstm, w, b = NetExtract(chain, 1), NetExtract(chain, (2, "Net", "Weights")), NetExtract(chain, (2, "Net", "Biases"))
    xs = BATCHES[batch]
    got = chain([x.tolist() for x in xs])
    for g, x in zip(got, xs):
        z = recurrence("LSTM", lstm, x)[0] @ w.T.astype(np.float64) + b
        e = np.exp(z - z.max(-1, keepdims=True))
        close(g, e / e.sum(-1, keepdims=True))


@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_map_alone_equals_the_affine_map_per_step_and_gradcheck(batch):
    op = NetInitialize(NetMapOperator(LinearLayer(3), Input=("Varying", 2)), RandomSeeding=2)
    assert op.input_ports()["Input"].dims == ("Varying", 2) and op.output_ports()["Output"].dims == ("Varying", 3)
    a = arrays64(op)
    xs = BATCHES[batch]
    for g, x in zip(op([x.tolist() for x in xs]), xs):
        close(g, x @ a["Weights"].T + a["Biases"])
    close(op(xs[0].tolist()), xs[0] @ a["Weights"].T + a["Biases"])
    data, lengths = padded(xs)
    out, _ = op.build(False).double()({"Input": Seq(data, lengths)}, {}, Ctx(False, None))
    if lengths is not None:
        assert out["Output"].lengths.tolist() == lengths.tolist()
        assert out["Output"].data[1, 1:].abs().sum() == 0  # the padding stays zero
    gradcheck(op, data, lengths)


def test_map_of_fixed_length_sequences_and_of_indices():
    op = NetInitialize(NetMapOperator(LinearLayer(2), Input=(3, 4)))
    assert op.output_ports()["Output"].dims == (3, 2)
    x = RNG.standard_normal((3, 4))
    a = arrays64(op)
    close(op(x.tolist()), x @ a["Weights"].T + a["Biases"])
    onehot = NetMapOperator(wlnet.UnitVectorLayer(4))
    chain = NetChain([onehot], Input=wlnet.NetEncoder(("Characters", "abcd")))
    assert chain("dab") == np.eye(4)[[3, 0, 1]].tolist()


def test_map_extract_information_inputform_and_initialize():
    chain = NetChain([LongShortTermMemoryLayer(4), NetMapOperator(LinearLayer(3))], Input=("Varying", 2))
    assert Information(chain, "ArraysDimensions")[(2, "Net", "Weights")] == (3, 4)
    assert chain.missing_arrays()[-2:] == [(2, "Net", "Weights"), (2, "Net", "Biases")]
    net = NetInitialize(chain, RandomSeeding=3)
    inner = NetExtract(net, (2, "Net"))
    assert isinstance(inner, LinearLayer) and inner.initialized()
    np.testing.assert_array_equal(NetExtract(NetExtract(net, 2), ("Net", "Biases")), NetExtract(inner, "Biases"))
    assert Information(net, "LayerTypeCounts") == {"LongShortTermMemoryLayer": 1, "LinearLayer": 1}
    code = Information(net, "InputForm")
    rebuilt = eval(code, vars(wlnet))
    assert Information(rebuilt, "InputForm") == code
    x = RAGGED[0].tolist()
    assert rebuilt(x) == net(x)
    assert "NetMapOperator(LinearLayer(3))" in repr(NetExtract(chain, 2))
    with pytest.raises(OptionError, match="'Net'"):
        NetExtract(net, (2, "Weights"))


def test_map_errors():
    lstm = LongShortTermMemoryLayer(5)
    with pytest.raises(ShapeError, match="use NetMapOperator\\(LinearLayer\\(3\\)\\)"):
        NetChain([lstm, LinearLayer(3)], Input=("Varying", 2))
    with pytest.raises(ShapeError, match="NetMapOperator: the mapped net cannot take the elements"):
        NetChain([lstm, NetMapOperator(LinearLayer(3, Input=4))], Input=("Varying", 2))
    assert lstm.input_ports()["Input"].dims == ("Varying", None)  # unchanged
    with pytest.raises(NotSupportedError, match="recurrent states"):
        NetMapOperator(lstm)
    with pytest.raises(OptionError, match="must be a net"):
        NetMapOperator(3)
    with pytest.raises(ShapeError, match="over the elements of a sequence, but its input is a real number"):
        NetChain([NetMapOperator(LinearLayer(2))], Input="Scalar")
    op = NetInitialize(NetMapOperator(LinearLayer(2), Input=("Varying", 3)))
    with pytest.raises(wlnet.InputError, match='NetMapOperator: data supplied to port "Input"'):
        op([[1.0, 2.0]])


# ---- NetBidirectionalOperator -------------------------------------------------------------------
def bidirectional(cell: str, aggregator="Catenate", seed=1, **options):
    net = NetBidirectionalOperator(CELLS[cell](3), aggregator, Input=("Varying", 2), **options)
    return NetInitialize(net, RandomSeeding=seed)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("aggregator", ["Catenate", "Total", "Mean"])
@pytest.mark.parametrize("batch", ["uniform", "ragged"])
def test_bidirectional_equals_its_two_nets_on_reversed_inputs(cell, aggregator, batch):
    bi = bidirectional(cell, aggregator)
    assert bi.output_ports()["Output"].dims == ("Varying", 6 if aggregator == "Catenate" else 3)
    fwd, bwd = NetExtract(bi, "ForwardNet"), NetExtract(bi, "BackwardNet")
    xs = BATCHES[batch]
    got = bi([x.tolist() for x in xs])
    for g, x in zip(got, xs):
        f = np.asarray(fwd(x.tolist()))
        b = np.asarray(bwd(x[::-1].tolist()))[::-1]  # the backward net alone, on the reversed sequence
        close(g, combine(f, b, aggregator))
        nf, nb = recurrence(cell, fwd, x)[0], recurrence(cell, bwd, x[::-1])[0][::-1]  # numpy
        close(g, combine(nf, nb, aggregator))


@pytest.mark.parametrize("cell", list(CELLS))
def test_bidirectional_gradcheck_and_gradient_of_the_two_nets(cell):
    bi = bidirectional(cell)
    data, lengths = padded(RAGGED[:2])
    gradcheck(bi, data, lengths)
    x = torch.tensor(RAGGED[0], requires_grad=True)
    w = torch.tensor(RNG.standard_normal((len(RAGGED[0]), 6)))
    (bi(x.float()).double() * w).sum().backward()
    g_op = x.grad.clone()
    x.grad = None
    fwd, bwd = NetExtract(bi, "ForwardNet"), NetExtract(bi, "BackwardNet")
    y = torch.cat([fwd(x.float()), bwd(x.float().flip(0)).flip(0)], -1)
    (y.double() * w).sum().backward()
    close(g_op, x.grad)


def test_bidirectional_of_fixed_length_and_of_a_net_that_ends_in_a_vector():
    bi = NetInitialize(NetBidirectionalOperator(LongShortTermMemoryLayer(3), Input=(4, 2)), RandomSeeding=2)
    assert bi.output_ports()["Output"].dims == (4, 6)
    x = RNG.standard_normal((4, 2))
    fwd, bwd = NetExtract(bi, "ForwardNet"), NetExtract(bi, "BackwardNet")
    close(bi(x.tolist()), np.concatenate([fwd(x.tolist()), np.asarray(bwd(x[::-1].tolist()))[::-1]], -1))
    last = NetBidirectionalOperator(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()]), Input=("Varying", 2))
    last = NetInitialize(last, RandomSeeding=4)
    assert last.output_ports()["Output"].dims == (6,)
    fwd, bwd = NetExtract(last, "ForwardNet"), NetExtract(last, "BackwardNet")
    for x in RAGGED:
        close(last(x.tolist()), np.concatenate([fwd(x.tolist()), bwd(x[::-1].tolist())]))  # not reversed back


def test_one_net_is_two_independent_copies():
    lstm = LongShortTermMemoryLayer(3)
    bi = NetBidirectionalOperator(lstm, Input=("Varying", 2))
    assert Information(bi, "InputForm").startswith("NetBidirectionalOperator(LongShortTermMemoryLayer(3), Input=")
    init = NetInitialize(bi, RandomSeeding=5)
    f, b = (arrays64(NetExtract(init, k)) for k in ("ForwardNet", "BackwardNet"))
    assert not np.allclose(f["InputGateInputWeights"], b["InputGateInputWeights"])  # drawn separately
    assert Information(init, "ArraysTotalElementCount") == 2 * 4 * 3 * (2 + 3 + 1)
    assert Information(init, "LayersCount") == 2
    same = NetBidirectionalOperator(NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2))))
    trained = NetTrain(same, [(x.tolist(), np.ones((len(x), 6)).tolist()) for x in RAGGED], MaxTrainingRounds=10,
                       LearningRate=0.05, **QUIET)
    f0, b0 = (arrays64(NetExtract(same, k)) for k in ("ForwardNet", "BackwardNet"))
    f1, b1 = (arrays64(NetExtract(trained, k)) for k in ("ForwardNet", "BackwardNet"))
    assert all(np.array_equal(f0[k], b0[k]) for k in f0)  # the same arrays to begin with
    assert np.abs(f1["InputGateInputWeights"] - b1["InputGateInputWeights"]).max() > 1e-3  # trained independently
    code = Information(trained, "InputForm")
    assert code.startswith("NetBidirectionalOperator((LongShortTermMemoryLayer(")
    rebuilt = eval(code, vars(wlnet))
    assert Information(rebuilt, "InputForm") == code
    assert rebuilt(RAGGED[0].tolist()) == trained(RAGGED[0].tolist())


def test_bidirectional_extract_and_information():
    net = NetInitialize(NetChain([NetBidirectionalOperator(GatedRecurrentLayer(3)), NetMapOperator(LinearLayer(2))],
                                 Input=("Varying", 2)))
    assert isinstance(NetExtract(net, (1, "BackwardNet")), GatedRecurrentLayer)
    assert NetExtract(net, (1, "ForwardNet", "ResetGateBiases")).shape == (3,)
    assert Information(net, "RecurrentStatesPositionList") == [(1, "ForwardNet", "State"), (1, "BackwardNet", "State")]
    assert Information(net, "LayerTypeCounts") == {"GatedRecurrentLayer": 2, "LinearLayer": 1}
    assert NetExtract(net, 1).state_ports().keys() == {"ForwardState", "BackwardState"}
    with pytest.raises(OptionError, match="'ForwardNet', 'BackwardNet'"):
        NetExtract(net, (1, "Net"))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_state_ports_of_both_directions_in_a_graph(cell):
    bi = bidirectional(cell)
    ports = ["State", "CellState"] if cell == "LSTM" else ["State"]
    edges = [(NetPort(f"b{p}"), NetPort("bi", f"Backward{p}")) for p in ports]
    edges += [(NetPort("bi", f"{d}{p}"), NetPort(f"{d}{p}Out")) for d in ("Forward", "Backward") for p in ports]
    g = NetGraph({"bi": bi}, edges)
    fwd, bwd = NetExtract(bi, "ForwardNet"), NetExtract(bi, "BackwardNet")
    seeds = {p: RNG.standard_normal(3).round(3) for p in ports}
    for x in RAGGED:
        got = g({"Input": x.tolist(), **{f"b{p}": v.tolist() for p, v in seeds.items()}})
        f_out, f_states = recurrence(cell, fwd, x)
        b_out, b_states = recurrence(cell, bwd, x[::-1], *(seeds[p] for p in ports))
        close(got["Output"], np.concatenate([f_out, b_out[::-1]], -1))
        for p, fs, bs in zip(ports, f_states, b_states):
            close(got[f"Forward{p}Out"], fs)
            close(got[f"Backward{p}Out"], bs)  # after reading the first element
    # a ragged batch: each final state at its own end
    batch = g({"Input": [x.tolist() for x in RAGGED], **{f"b{p}": [v.tolist()] * 3 for p, v in seeds.items()}})
    for j, x in enumerate(RAGGED):
        close(batch["ForwardStateOut"][j], recurrence(cell, fwd, x)[1][0])
        close(batch["BackwardStateOut"][j], recurrence(cell, bwd, x[::-1], *(seeds[p] for p in ports))[1][0])


def test_bidirectional_states_by_netport_alone_and_in_a_chain():
    bi = bidirectional("LSTM")
    fwd, bwd = NetExtract(bi, "ForwardNet"), NetExtract(bi, "BackwardNet")
    x = RAGGED[0]
    close(bi(x.tolist(), NetPort("ForwardState")), recurrence("LSTM", fwd, x)[1][0])
    close(bi(x.tolist(), NetPort("BackwardNet", "CellState")), recurrence("LSTM", bwd, x[::-1])[1][1])
    states = bi(x.tolist(), NetPort(All, "States"))
    assert list(states) == [("ForwardNet", "State"), ("ForwardNet", "CellState"), ("BackwardNet", "State"),
                            ("BackwardNet", "CellState")]
    s0 = RNG.standard_normal(3).round(3)
    got = bi({"Input": x.tolist(), NetPort(All, "States"): {("BackwardNet", "State"): s0.tolist()}})
    close(got, np.concatenate([recurrence("LSTM", fwd, x)[0], recurrence("LSTM", bwd, x[::-1], s0)[0][::-1]], -1))
    chain = NetChain([bi, SequenceLastLayer()])
    close(chain(x.tolist(), NetPort(1, "BackwardState")), recurrence("LSTM", bwd, x[::-1])[1][0])


def test_state_object_refuses_a_bidirectional_net():
    chain = NetChain([bidirectional("LSTM"), SequenceLastLayer()])
    code = Information(chain, "InputForm")
    with pytest.raises(OptionError, match="NetBidirectionalOperator at position 1") as info:
        NetStateObject(chain)
    assert "cannot carry a sequence over" in str(info.value)
    assert Information(chain, "InputForm") == code
    forward_only = NetChain([NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))])
    assert NetStateObject(forward_only)(RAGGED[0].tolist())  # a forward net still works


@pytest.mark.parametrize("cell", list(CELLS))
def test_dropout_each_direction_draws_its_own_masks(cell):
    layer = NetInitialize(CELLS[cell](3, Input=("Varying", 2), Dropout={"VariationalInput": 0.5}), RandomSeeding=3)
    bi = NetBidirectionalOperator(layer)  # the same arrays in both directions
    x = RAGGED[0]
    x = np.concatenate([x, x[::-1]])  # a palindrome: both directions read the same sequence
    test = np.asarray(bi(x.tolist()))
    close(test[:, :3], test[::-1, 3:])  # without dropout the two halves agree
    train = np.asarray(bi(x.tolist(), NetEvaluationMode="Train", RandomSeeding=9))
    assert not np.allclose(train[:, :3], train[::-1, 3:])  # with it, each direction has its own masks
    assert not np.allclose(train, test)
    np.testing.assert_array_equal(train, bi(x.tolist(), NetEvaluationMode="Train", RandomSeeding=9))


def test_train_a_bidirectional_per_step_tagger_lowers_the_loss():
    net = NetChain([NetBidirectionalOperator(LongShortTermMemoryLayer(4)), NetMapOperator(LinearLayer(2)),
                    SoftmaxLayer()], Input=("Varying", 1))
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 2, size=(int(rng.integers(2, 6)), 1)).astype(float) for _ in range(24)]
    # tag: is the next element a 1 (needs the backward direction)
    ys = [[[1.0, 0.0] if t + 1 < len(x) and x[t + 1, 0] else [0.0, 1.0] for t in range(len(x))] for x in xs]
    res = NetTrain(net, [(x.tolist(), y) for x, y in zip(xs, ys)], All, MaxTrainingRounds=40, BatchSize=8,
                   RandomSeeding=1, LearningRate=0.02, **QUIET)
    losses = res["RoundLossList"]
    assert losses[-1] < 0.6 * losses[0]
    trained = res["TrainedNet"]
    assert len(trained(xs[0].tolist())) == len(xs[0])


def test_bidirectional_errors():
    lstm = LongShortTermMemoryLayer(3)
    with pytest.raises(OptionError, match="'Catenate', 'Total', 'Mean'"):
        NetBidirectionalOperator(lstm, "Max")
    with pytest.raises(OptionError, match="pair"):
        NetBidirectionalOperator([lstm, lstm, lstm])
    with pytest.raises(OptionError, match="forward net must be a net"):
        NetBidirectionalOperator("LSTM")
    with pytest.raises(ShapeError, match='"Total" the forward and backward nets must give outputs of the same'):
        NetBidirectionalOperator((LongShortTermMemoryLayer(3), LongShortTermMemoryLayer(4)), "Total")
    with pytest.raises(ShapeError, match="NetBidirectionalOperator: the forward net takes a sequence of size-2"):
        NetBidirectionalOperator((LongShortTermMemoryLayer(3, Input=("Varying", 2)),
                                  LongShortTermMemoryLayer(3, Input=("Varying", 4))))
    with pytest.raises(ShapeError, match='a vector of size 2, but NetBidirectionalOperator port "Input" expects a seq'):
        NetChain([LinearLayer(2), NetBidirectionalOperator(lstm)], Input=3)
    with pytest.raises(ShapeError, match="takes a sequence, but its input is a real number"):
        NetChain([NetBidirectionalOperator(lstm)], Input="Scalar")
    with pytest.raises(ShapeError, match="must have one output port, but NetGraph has 2"):
        NetBidirectionalOperator(NetGraph({"a": LinearLayer(2), "b": LinearLayer(2)}, []))
    assert lstm.input_ports()["Input"].dims == ("Varying", None)  # the layer given is unchanged
    bi = bidirectional("LSTM")
    code = Information(bi, "InputForm")
    with pytest.raises(NetError):
        bi([[1.0, 2.0, 3.0]])
    with pytest.raises(NetError):
        bi({"Input": [[1.0, 2.0]], NetPort(All, "States"): {("BackwardNet", "State"): [1.0]}})
    assert Information(bi, "InputForm") == code


def test_initialize_doubles_the_variance_of_a_mapped_layer_before_a_ramp():
    plain = NetChain([NetMapOperator(LinearLayer(3)), wlnet.ElementwiseLayer("Tanh")], Input=("Varying", 4))
    ramp = NetChain([NetMapOperator(LinearLayer(3)), wlnet.ElementwiseLayer("Ramp")], Input=("Varying", 4))
    w0 = NetExtract(NetInitialize(plain, RandomSeeding=8), (1, "Net", "Weights"))
    w1 = NetExtract(NetInitialize(ramp, RandomSeeding=8), (1, "Net", "Weights"))
    close(w1, np.sqrt(2) * w0)  # the same draws, the Xavier bound √(6/(fan_in+fan_out)) times √2
    inner = NetChain([NetMapOperator(NetChain([LinearLayer(3), wlnet.ElementwiseLayer("Ramp")]))], Input=("Varying", 4))
    close(NetExtract(NetInitialize(inner, RandomSeeding=8), (1, "Net", 1, "Weights")), w1)


def test_options_of_the_operators():
    assert wlnet.Options(NetMapOperator) == {"Input": wlnet.Automatic}
    assert wlnet.Options(NetBidirectionalOperator) == {"Input": wlnet.Automatic}
    with pytest.raises(OptionError, match="'Dropout' is not a known option"):
        NetMapOperator(LinearLayer(2), Dropout=0.5)


def test_a_pair_of_different_nets():
    bi = NetBidirectionalOperator((LongShortTermMemoryLayer(3, Input=("Varying", 2)), BasicRecurrentLayer(3)), "Total")
    assert NetExtract(bi, "BackwardNet").input_ports()["Input"].dims == ("Varying", 2)  # k from the forward net
    assert Information(bi, "ArraysDimensions")[("BackwardNet", "InputWeights")] == (3, 2)
    bi = NetInitialize(bi, RandomSeeding=6)
    fwd, bwd = NetExtract(bi, "ForwardNet"), NetExtract(bi, "BackwardNet")
    for x in RAGGED:
        close(bi(x.tolist()), recurrence("LSTM", fwd, x)[0] + recurrence("RNN", bwd, x[::-1])[0][::-1])
    code = Information(bi, "InputForm")
    assert code.startswith("NetBidirectionalOperator((LongShortTermMemoryLayer(3, Input=") and "'Total')" in code
    assert eval(code, vars(wlnet))(RAGGED[0].tolist()) == bi(RAGGED[0].tolist())
