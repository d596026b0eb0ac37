"""GatedRecurrentLayer and BasicRecurrentLayer: values, final states and gradients against
the float64 numpy reference (tests/reference_cells.py, itself checked against finite differences),
against torch's nn.GRU / nn.RNN holding hand-mapped arrays, float64 gradchecks, ragged batches,
state ports (NetGraph edges, NetPort(All, "States"), NetStateObject), WorkingPrecision "Real64"
(also for the LSTM), Information, NetInitialize, bad options, and dropout (modes, seeding, and the
masks' effect against `recurrence.masked`, `recurrence.unroll` and the numpy reference)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import reference as R
import reference_cells as C
import wlnet
from wlnet import (
    All,
    Automatic,
    BasicRecurrentLayer,
    GatedRecurrentLayer,
    Information,
    InputError,
    LongShortTermMemoryLayer,
    NetChain,
    NetError,
    NetExtract,
    NetGraph,
    NetInitialize,
    NetPort,
    NetStateObject,
    OptionError,
    Options,
    ShapeError,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx
from wlnet.kernels import cells, choice, dropout, native, recurrence

LAYERS = {"GRU": GatedRecurrentLayer, "RNN": BasicRecurrentLayer}
CELLS = {"GRU": cells.GRU, "RNN": cells.RNN}
KINDS = ("GRU", "RNN")
TEST = Ctx(False, None)
F64 = torch.float64


# ---- helpers ------------------------------------------------------------------------------------
def rand(*shape, seed=0, dtype=np.float32):
    """Standard normal values rounded to float32 (returned in `dtype`)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


def make_layer(kind: str, a: dict, **options):
    n, k = a["Biases" if kind == "RNN" else "InputGateBiases"].shape[0], a[
        "InputWeights" if kind == "RNN" else "InputGateInputWeights"].shape[1]
    return LAYERS[kind](n, Input=("Varying", k), **{name: v.astype(np.float32) for name, v in a.items()}, **options)


def pad(xs: list, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(x) for x in xs]
    out = np.zeros((len(xs), max(lengths), xs[0].shape[1]))
    for b, x in enumerate(xs):
        out[b, :len(x)] = x
    return torch.tensor(out, dtype=dtype), torch.tensor(lengths)


def close(actual, expected, rtol=1e-4, atol=1e-5):
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def expect(exc, call, *parts):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


def layer_arrays(layer) -> dict:
    return {key[-1]: v for key, v in Information(layer, "Arrays").items()}


# ---- the reference itself -----------------------------------------------------------------------
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_reference_backward_matches_finite_differences(kind, masked):
    n, k, T = 3, 2, 4
    G = len(C.GATES[kind])
    rng = np.random.default_rng(1)
    a = C.random_arrays(kind, n, k, seed=2, scale=0.8)
    x, s0 = rng.standard_normal((T, k)), rng.standard_normal(n)
    w_out, w_s = rng.standard_normal((T, n)), rng.standard_normal(n)
    masks = (None, None, None)
    if masked:
        masks = (rng.integers(0, 2, (G, k)) * 2.0, rng.integers(0, 2, (G, n)) * 2.0,
                 rng.integers(0, 2, (T, n)) * 2.0 if kind == "GRU" else None)
    g = C.backward(kind, x, a, s0, w_out, w_s, *masks)

    def f():
        return C.loss(kind, x, a, s0, w_out, w_s, *masks)

    for name, v in [("x", x), ("s0", s0), *a.items()]:
        np.testing.assert_allclose(g[name], R.numeric_gradient(f, v), rtol=1e-5, atol=1e-8, err_msg=name)


def test_reference_hand_steps():
    # n = k = 1, every weight 0.5, every bias 0.1, written out from the reference page's formulas
    x, s0 = 2.0, 0.3
    gru = {name: np.array([[0.5]]) if "Weights" in name else np.array([0.1]) for name in C.array_names("GRU")}
    z = r = 1 / (1 + math.exp(-(0.5 * x + 0.5 * s0 + 0.1)))
    m = math.tanh(0.5 * x + 0.1 + r * 0.5 * s0)
    out, s = C.forward("GRU", [[x]], gru, [s0])
    assert out[0, 0] == pytest.approx((1 - z) * m + z * s0) and s[0] == out[0, 0]
    rnn = {"InputWeights": np.array([[0.5]]), "StateWeights": np.array([[-0.25]]), "Biases": np.array([0.1])}
    out, s = C.forward("RNN", [[x], [x]], rnn, [s0])
    s1 = math.tanh(0.5 * x - 0.25 * s0 + 0.1)
    assert out[0, 0] == pytest.approx(s1) and s[0] == pytest.approx(math.tanh(0.5 * x - 0.25 * s1 + 0.1))


# ---- values, final states and gradients against the reference -----------------------------------
def run_module(layer, x, lengths=None, s0=None, ctx=TEST):
    module = layer.build(trainable=True)
    out, final = module({"Input": Seq(x, lengths)}, {} if s0 is None else {("State",): s0}, ctx)
    return module, out["Output"].data, final[("State",)]


@pytest.mark.parametrize("case", ["single", "uniform", "ragged"])
@pytest.mark.parametrize("kind", KINDS)
def test_module_matches_reference(kind, case):
    n, k = 4, 3
    a = C.random_arrays(kind, n, k, seed=10)
    layer = make_layer(kind, a)
    lengths_list = {"single": [5], "uniform": [4, 4, 4], "ragged": [5, 1, 3, 2]}[case]
    xs = [rand(L, k, seed=20 + b) for b, L in enumerate(lengths_list)]
    x, lengths = pad(xs)
    lengths = lengths if case == "ragged" else None
    B, T = x.shape[:2]
    s0 = torch.from_numpy(rand(B, n, seed=30)).requires_grad_()
    x.requires_grad_()
    module, y, s_T = run_module(layer, x, lengths, s0)
    assert sorted(name for name, _ in module.named_parameters()) == sorted(C.array_names(kind))

    ref_out, ref_s = C.forward_batch(kind, xs, a, s0.detach().numpy().astype(np.float64))
    assert y.shape == (B, T, n)
    for b, L in enumerate(lengths_list):
        close(y[b, :L], ref_out[b])
        close(y[b, L:], np.zeros((T - L, n)), atol=0)
        close(s_T[b], y[b, L - 1].detach().numpy(), atol=0)
    close(s_T, ref_s)

    w_out, w_s = rand(B, T, n, seed=40), rand(B, n, seed=41)
    ((y * torch.from_numpy(w_out)).sum() + (s_T * torch.from_numpy(w_s)).sum()).backward()
    g = C.backward_batch(kind, xs, a, s0.detach().numpy().astype(np.float64),
                         [w_out[b, :L] for b, L in enumerate(lengths_list)], w_s)
    for b, L in enumerate(lengths_list):
        close(x.grad[b, :L], g["x"][b], atol=1e-4)
        close(x.grad[b, L:], np.zeros((T - L, k)), atol=0)
    close(s0.grad, g["s0"], atol=1e-4)
    params = dict(module.named_parameters())
    for name in C.array_names(kind):
        close(params[name].grad, g[name], atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_public_call_with_torch_gradient(kind):
    a = C.random_arrays(kind, 3, 2, seed=11)
    layer = make_layer(kind, a)
    xn = rand(4, 2, seed=1)
    x = torch.tensor(xn, requires_grad=True)
    out = layer(x)
    assert isinstance(out, torch.Tensor) and out.requires_grad and out.shape == (4, 3)
    close(out, C.forward(kind, xn, a)[0])
    w = rand(4, 3, seed=2)
    (out * torch.from_numpy(w)).sum().backward()
    close(x.grad, C.backward(kind, xn, a, w_out=w)["x"], atol=1e-5)
    # a ragged batch of lists: lists back, each its own length
    xs = [rand(L, 2, seed=L) for L in (3, 1, 5)]
    got = layer([v.tolist() for v in xs])
    assert [len(v) for v in got] == [3, 1, 5] and type(got[0][0][0]) is float
    for v, r in zip(got, C.forward_batch(kind, xs, a)[0]):
        close(v, r)


# ---- against torch's own nn.GRU and nn.RNN ------------------------------------------------------
def torch_module(kind: str, a: dict, dtype=torch.float32):
    """nn.GRU / nn.RNN holding the arrays, mapped by hand: torch's GRU gates are r, z, n, its
    h' = (1 − z) n + z h is Wolfram's update with z the Input gate as it is; zero hidden bias."""
    t = {name: torch.tensor(v, dtype=dtype) for name, v in a.items()}
    if kind == "GRU":
        rows = ["ResetGate", "InputGate", "MemoryGate"]
        w_ih = torch.cat([t[f"{g}InputWeights"] for g in rows])
        w_hh = torch.cat([t[f"{g}StateWeights"] for g in rows])
        b_ih = torch.cat([t[f"{g}Biases"] for g in rows])
        module = torch.nn.GRU(w_ih.shape[1], w_hh.shape[1], batch_first=True)
    else:
        w_ih, w_hh, b_ih = t["InputWeights"], t["StateWeights"], t["Biases"]
        module = torch.nn.RNN(w_ih.shape[1], w_hh.shape[1], batch_first=True, nonlinearity="tanh")
    module = module.to(dtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(w_ih)
        module.weight_hh_l0.copy_(w_hh)
        module.bias_ih_l0.copy_(b_ih)
        module.bias_hh_l0.zero_()
    return module, [w_ih, w_hh, b_ih, torch.zeros_like(b_ih)]


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_module(kind, ragged):
    n, k, T = 5, 3, 6
    a = C.random_arrays(kind, n, k, seed=15)
    layer = make_layer(kind, a)
    lengths = torch.tensor([4, 2, 6]) if ragged else None
    x = torch.from_numpy(rand(3, T, k, seed=3))
    if ragged:
        x, _ = pad([x[b, :L].numpy() for b, L in enumerate(lengths.tolist())])
    s0 = torch.from_numpy(rand(3, n, seed=4))
    ref, weights = torch_module(kind, a)
    # the cell's own table gives the same fused layout as the hand mapping
    packed = CELLS[kind].pack({name: torch.tensor(v, dtype=torch.float32) for name, v in a.items()})
    assert all(torch.equal(p, w) for p, w in zip(packed, weights))
    with torch.no_grad():
        if ragged:
            seq = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            t_out, t_s = ref(seq, s0[None])
            t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True, total_length=T)
        else:
            t_out, t_s = ref(x, s0[None])
        _, y, s_T = run_module(layer, x, lengths, s0)
    close(y, t_out.numpy(), atol=1e-6)
    close(s_T, t_s[0].numpy(), atol=1e-6)


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_module_gradcheck_float64(kind, ragged):
    n, k = 2, 2
    layer = make_layer(kind, C.random_arrays(kind, n, k, seed=16))
    module = layer.build(trainable=True).double()
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, k, generator=gen, dtype=F64, requires_grad=True)
    s0 = torch.randn(2, n, generator=gen, dtype=F64, requires_grad=True)
    lengths = torch.tensor([1, 3]) if ragged else None

    def f(x, s0, *ps):
        out, final = torch.func.functional_call(
            module, dict(zip(names, ps)), ({"Input": Seq(x, lengths)}, {("State",): s0}, TEST))
        return out["Output"].data, final[("State",)]

    assert torch.autograd.gradcheck(f, (x, s0, *params))


# ---- ragged batches and state ports -------------------------------------------------------------
def state_graph(layer):
    return NetGraph([layer], [(NetPort("s0"), NetPort(1, "State")), (NetPort(1, "State"), NetPort("sT"))])


@pytest.mark.parametrize("kind", KINDS)
def test_ragged_batch_equals_sequences_one_by_one(kind):
    a = C.random_arrays(kind, 3, 2, seed=17)
    graph = state_graph(make_layer(kind, a))
    xs = [rand(L, 2, seed=L).tolist() for L in (4, 1, 6, 2)]
    s0 = rand(4, 3, seed=9).tolist()
    batch = graph({"Input": xs, "s0": s0})
    assert [len(o) for o in batch["Output"]] == [4, 1, 6, 2]
    for b, x in enumerate(xs):
        alone = graph({"Input": x, "s0": s0[b]})
        np.testing.assert_allclose(batch["Output"][b], alone["Output"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch["sT"][b], alone["sT"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch["sT"][b], batch["Output"][b][-1], atol=0)
    ref_out, ref_s = C.forward_batch(kind, [np.array(x) for x in xs], a, np.array(s0, np.float64))
    close(batch["sT"], ref_s)


@pytest.mark.parametrize("kind", KINDS)
def test_graph_state_ports(kind):
    a = C.random_arrays(kind, 3, 2, seed=18)
    graph = state_graph(make_layer(kind, a))
    assert Information(graph, "InputPortNames") == ["Input", "s0"]
    assert Information(graph, "OutputPortNames") == ["Output", "sT"]
    x, s0 = rand(5, 2, seed=1), rand(3, seed=2)
    res = graph({"Input": x.tolist(), "s0": s0.tolist()})
    ref_out, ref_s = C.forward(kind, x, a, s0)
    close(res["Output"], ref_out)
    close(res["sT"], ref_s)
    close(graph({"Input": x.tolist(), "s0": s0.tolist()}, "sT"), ref_s)
    # the initial state matters as the recurrence says: zero s0 is the default
    close(graph({"Input": x.tolist(), "s0": [0.0, 0.0, 0.0]})["sT"], C.forward(kind, x, a)[1])
    with_only_out = NetGraph([make_layer(kind, a)], [(NetPort(1, "State"), NetPort("sT"))])
    close(with_only_out(x.tolist(), "sT"), C.forward(kind, x, a)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_all_states_port(kind):
    a = C.random_arrays(kind, 3, 2, seed=19)
    layer = make_layer(kind, a)
    x, s0 = rand(4, 2, seed=3), rand(3, seed=4)
    assert Information(layer, "RecurrentStatesPositionList") == [("State",)]
    finals = layer(x.tolist(), NetPort(All, "States"))
    assert list(finals) == [("State",)]
    close(finals[("State",)], C.forward(kind, x, a)[1])
    close(layer({"Input": x.tolist(), NetPort(All, "States"): {("State",): s0.tolist()}}), C.forward(kind, x, a, s0)[0])
    close(layer({"Input": x.tolist(), NetPort("State"): s0.tolist()}), C.forward(kind, x, a, s0)[0])
    # inside a chain the position carries the layer's place
    chain = NetChain([make_layer(kind, a)])
    assert Information(chain, "RecurrentStatesPositionList") == [(1, "State")]
    got = chain({"Input": x.tolist(), NetPort(All, "States"): {(1, "State"): s0.tolist()}}, NetPort(All, "States"))
    close(got[(1, "State")], C.forward(kind, x, a, s0)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_state_object_continues_the_sequence(kind):
    a = C.random_arrays(kind, 3, 2, seed=20)
    net = make_layer(kind, a)
    x1, x2 = rand(3, 2, seed=5), rand(4, 2, seed=6)
    obj = NetStateObject(net)
    first = obj(x1.tolist())
    second = obj(x2.tolist())
    whole, s_T = C.forward(kind, np.concatenate([x1, x2]), a)
    close(first, whole[:3])
    close(second, whole[3:])
    close(NetExtract(obj, "States")[("State",)], s_T)
    assert obj(x1.tolist()) != first  # it goes on from where it stopped
    obj.reset()
    assert obj(x1.tolist()) == first


# ---- WorkingPrecision "Real64" with states ------------------------------------------------------
def lstm_layer(a):
    return LongShortTermMemoryLayer(3, Input=("Varying", 2), **{k: v.astype(np.float32) for k, v in a.items()})


@pytest.mark.parametrize("kind", KINDS)
def test_real64_with_states(kind):
    # float32-representable data, so a float64 computation must match the float64 reference closely
    a = C.random_arrays(kind, 3, 2, seed=21)
    layer = make_layer(kind, a)
    x, s0 = rand(4, 2, seed=7, dtype=np.float64), rand(3, seed=8, dtype=np.float64)
    ref_out, ref_s = C.forward(kind, x, a, s0)
    got = layer({"Input": x, NetPort("State"): s0}, WorkingPrecision="Real64")
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    close(got, ref_out, rtol=1e-12, atol=1e-12)
    res = state_graph(layer)({"Input": x.tolist(), "s0": s0.tolist()}, WorkingPrecision="Real64")
    close(res["Output"], ref_out, rtol=1e-12, atol=1e-12)
    close(res["sT"], ref_s, rtol=1e-12, atol=1e-12)
    obj = NetStateObject(layer)
    close(obj(x, WorkingPrecision="Real64"), C.forward(kind, x, a)[0], rtol=1e-12, atol=1e-12)
    second = obj(x, WorkingPrecision="Real64")  # continues from the stored state (kept as float32)
    close(second, C.forward(kind, np.concatenate([x, x]), a)[0][4:], rtol=1e-6, atol=1e-6)


def test_real64_with_states_lstm():
    a = R.random_arrays(3, 2, seed=22)
    layer = lstm_layer(a)
    x = rand(4, 2, seed=9, dtype=np.float64)
    s0, c0 = rand(3, seed=10, dtype=np.float64), rand(3, seed=11, dtype=np.float64)
    ref_out, ref_s, ref_c = R.forward(x, a, s0, c0)
    got = layer({"Input": x, NetPort("State"): s0, NetPort("CellState"): c0}, WorkingPrecision="Real64")
    close(got, ref_out, rtol=1e-12, atol=1e-12)
    graph = NetGraph([layer], [(NetPort("s0"), NetPort(1, "State")), (NetPort("c0"), NetPort(1, "CellState")),
                               (NetPort(1, "CellState"), NetPort("cT"))])
    res = graph({"Input": x.tolist(), "s0": s0.tolist(), "c0": c0.tolist()}, WorkingPrecision="Real64")
    close(res["Output"], ref_out, rtol=1e-12, atol=1e-12)
    close(res["cT"], ref_c, rtol=1e-12, atol=1e-12)
    obj = NetStateObject(layer)
    close(obj(x, WorkingPrecision="Real64"), R.forward(x, a)[0], rtol=1e-12, atol=1e-12)
    states = NetExtract(obj, "States")
    close(states[("CellState",)], R.forward(x, a)[2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_real64_keeps_float64_inputs(kind):
    a = C.random_arrays(kind, 3, 2, seed=23)
    layer = make_layer(kind, a)
    x = np.array([[0.1, 0.2], [0.3, -0.7], [1.1, 0.5]])  # not representable in float32
    s0 = np.array([0.1, -0.2, 0.3])
    close(layer({"Input": torch.tensor(x), NetPort("State"): s0}, WorkingPrecision="Real64"),
          C.forward(kind, x, a, s0)[0], rtol=1e-12, atol=1e-12)


def test_real64_state_object_continues_in_float64():
    a = C.random_arrays("GRU", 3, 2, seed=24)
    obj = NetStateObject(make_layer("GRU", a))
    x = rand(4, 2, seed=12, dtype=np.float64)
    obj(x, WorkingPrecision="Real64")
    close(obj(x, WorkingPrecision="Real64"), C.forward("GRU", np.concatenate([x, x]), a)[0][4:],
          rtol=1e-12, atol=1e-12)


# ---- Information, Options, NetInitialize --------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_information(kind):
    n, k = 3, 2
    layer = make_layer(kind, C.random_arrays(kind, n, k, seed=25))
    G = 3 if kind == "GRU" else 1
    total = G * n * (k + n + 1)
    assert total == {"GRU": 54, "RNN": 18}[kind]
    assert Information(layer, "ArraysTotalElementCount") == total
    assert Information(layer, "ArraysTotalByteCount") == 4 * total
    assert Information(layer, "ArraysCount") == 3 * G
    assert Information(layer, "RecurrentStatesCount") == 1
    assert Information(layer, "LayerTypeCounts") == {LAYERS[kind].__name__: 1}
    assert Information(layer) == {
        "LayersCount": 1, "ArraysCount": 3 * G, "InputPortNames": ["Input"], "OutputPortNames": ["Output"],
        "ArraysTotalElementCount": total, "ArraysTotalSize": f"{4 * total} bytes"}
    assert Information(layer, "OutputPorts") == {"Output": "a sequence of size-3 vectors"}
    # known before initializing, for other sizes too
    assert Information(LAYERS[kind](7, Input=("Varying", 5)), "ArraysTotalElementCount") == G * 7 * (5 + 7 + 1)
    assert Information(LAYERS[kind](7), "ArraysTotalElementCount") is None


def test_options():
    base = {"Input": Automatic, "Output": Automatic, "Dropout": None, "LearningRateMultipliers": Automatic}
    assert Options(GatedRecurrentLayer) == {**base, **{f"{g}Gate{p}": Automatic for g in ("Input", "Reset", "Memory")
                                                       for p in ("InputWeights", "StateWeights", "Biases")}}
    assert Options(BasicRecurrentLayer) == {**base, "InputWeights": Automatic, "StateWeights": Automatic,
                                            "Biases": Automatic}


@pytest.mark.parametrize("method", ["Xavier", "Kaiming", "Orthogonal", "Random", "Identity"])
@pytest.mark.parametrize("kind", KINDS)
def test_netinitialize_biases_zero(kind, method):
    net = NetInitialize(LAYERS[kind](4, Input=("Varying", 3)), Method=method)
    for name in C.array_names(kind):
        v = NetExtract(net, name)
        assert v.dtype == np.float32
        if name.endswith("Biases"):
            assert np.array_equal(v, np.zeros(4, np.float32)), name
        else:
            assert v.shape == ((4, 3) if name.endswith("InputWeights") else (4, 4)) and np.abs(v).max() > 0
    assert np.array_equal(NetExtract(net, C.array_names(kind)[0]),
                          NetExtract(NetInitialize(LAYERS[kind](4, Input=("Varying", 3)), Method=method),
                                     C.array_names(kind)[0]))  # same seed, same arrays


# ---- bad options and inputs ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_wrong_array_shapes(kind):
    a = {name: v.astype(np.float32) for name, v in C.random_arrays(kind, 3, 2, seed=26).items()}
    iw, sw, b = (C.array_names(kind)[j] for j in range(3))
    cases = [
        (b, np.zeros(2), "must have dimensions 3, but was given an array of dimensions 2"),
        (sw, np.zeros((3, 2)), "must have dimensions 3×3", "3×2"),
        (iw, np.zeros((3, 5)), "must have dimensions 3×2", "3×5"),
        (iw, np.zeros((4, 2)), "must have dimensions 3×2", "4×2"),
        (b, 1.0, "a scalar"),
        (b, ["a", "b", "c"], "must be numeric"),
        (b, [1.0, float("nan"), 0.0], "NaN or infinite"),
    ]
    for name, value, *parts in cases:
        expect(ShapeError, lambda name=name, value=value: LAYERS[kind](3, Input=("Varying", 2), **{**a, name: value}),
               LAYERS[kind].__name__, name, *parts)
    expect(OptionError, lambda: LAYERS[kind](3, Foo=1), "'Foo'", "not a known option")
    expect(NetError, lambda: LAYERS[kind](0), "n (the output size)", "positive integer")
    # a state of the wrong size is an input error naming the state
    layer = make_layer(kind, C.random_arrays(kind, 3, 2, seed=26))
    expect(InputError, lambda: layer({"Input": [[1.0, 2.0]], NetPort("State"): [1.0, 2.0]}), "State", "size 2")
    expect(InputError, lambda: layer({"Input": [[1.0, 2.0]], NetPort("CellState"): [1.0, 2.0, 3.0]}), "CellState",
           "not a recurrent state")


def test_state_update_refused_on_basic_layer():
    msg = expect(OptionError, lambda: BasicRecurrentLayer(3, Dropout={"StateUpdate": 0.2}), "BasicRecurrentLayer",
                 "Dropout", "'StateUpdate'", "does not support")
    assert "VariationalState" in msg
    GatedRecurrentLayer(3, Dropout={"StateUpdate": 0.2})  # the GRU has a memory to drop


@pytest.mark.parametrize("spec,parts", [
    (1.0, ["Allowed forms", "1.0"]), (-0.1, ["-0.1"]), ("0.5", ["'0.5'"]), (True, ["True"]), ({}, ["{}"]),
    ({"Bogus": 0.1}, ["'Bogus'", "not known"]), ({"VariationalInput": 1.0}, ["'VariationalInput'", "1.0"]),
    ([0.5], ["[0.5]"]),
])
@pytest.mark.parametrize("kind", KINDS)
def test_bad_dropout(kind, spec, parts):
    expect(OptionError, lambda: LAYERS[kind](3, Dropout=spec), LAYERS[kind].__name__, "Dropout", *parts)


# ---- dropout --------------------------------------------------------------------------------------
def combos(kind):
    methods = CELLS[kind].dropout
    return [dict.fromkeys(c, 0.4) for r in range(1, len(methods) + 1) for c in itertools.combinations(methods, r)]


ALL_COMBOS = [(kind, spec) for kind in KINDS for spec in combos(kind)]
IDS = [f"{kind}-{'+'.join(m[len('Variational'):] if m.startswith('Var') else m for m in spec)}"
       for kind, spec in ALL_COMBOS]


def dropout_pair(kind, spec, seed=27):
    a = C.random_arrays(kind, 4, 2, seed=seed)
    return make_layer(kind, a, Dropout=spec), make_layer(kind, a), a


def numpy_with_masks(kind, xs, a, masks: dropout.Masks, s0=None):
    """The numpy reference with the drawn masks (weight masks applied to the arrays here)."""
    if masks.weights:
        a = {name: v * masks.weights[name].double().numpy() if name in masks.weights else v for name, v in a.items()}
    np_or_none = [None if m is None else m.double().numpy() for m in (masks.x, masks.s, masks.m)]
    return C.forward_batch(kind, xs, a, s0, *np_or_none)


@pytest.mark.parametrize("kind,spec", ALL_COMBOS, ids=IDS)
def test_dropout_layer_train_mode_is_masked_recurrence(kind, spec):
    layer, plain, a = dropout_pair(kind, spec)
    xs = [rand(L, 2, seed=L) for L in (3, 5, 1)]
    # test mode: exactly the plain recurrence
    assert all(np.array_equal(u, v) for u, v in zip(layer(xs), plain(xs)))
    assert all(np.array_equal(u, v) for u, v in zip(layer(xs, NetEvaluationMode="Test"), plain(xs)))
    # train mode: reproduced by RandomSeeding, and the masks drawn from that seed
    got = layer(xs, NetEvaluationMode="Train", RandomSeeding=5)
    again = layer(xs, NetEvaluationMode="Train", RandomSeeding=5)
    assert all(np.array_equal(u, v) for u, v in zip(got, again))
    x, lengths = pad(xs)
    arrays = {name: torch.tensor(v, dtype=torch.float32) for name, v in a.items()}
    masks = dropout.draw_masks(CELLS[kind], spec, 3, 5, 4, 2, torch.Generator().manual_seed(5), "cpu", torch.float32)
    want, (s_T,) = recurrence.masked(CELLS[kind], x, lengths, arrays, (None,), masks)
    ref, ref_s = numpy_with_masks(kind, xs, a, masks)
    for b, L in enumerate((3, 5, 1)):
        close(got[b], want[b, :L].numpy(), atol=1e-6)
        close(got[b], ref[b])
    close(s_T, ref_s)
    assert not all(np.allclose(u, v) for u, v in zip(got, plain(xs)))  # p = 0.4 drops something


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("kind,spec", ALL_COMBOS, ids=IDS)
def test_masked_equals_unroll_with_gradients(kind, spec, ragged):
    cell = CELLS[kind]
    n, k, B, T = 3, 2, 3, 4
    a = C.random_arrays(kind, n, k, seed=28)
    lengths_list = [4, 2, 3] if ragged else [4, 4, 4]
    xs = [rand(L, k, seed=30 + b, dtype=np.float64) for b, L in enumerate(lengths_list)]
    x, lengths = pad(xs, F64)
    lengths = lengths if ragged else None
    s0n = rand(B, n, seed=31, dtype=np.float64)
    masks = dropout.draw_masks(cell, spec, B, T, n, k, torch.Generator().manual_seed(6), "cpu", F64)

    def inputs():
        arrays = {name: torch.tensor(v, dtype=F64, requires_grad=True) for name, v in a.items()}
        return x.clone().requires_grad_(), torch.tensor(s0n, requires_grad=True), arrays

    w_out, w_s = torch.from_numpy(rand(B, T, n, seed=32, dtype=np.float64)), torch.from_numpy(
        rand(B, n, seed=33, dtype=np.float64))
    results = []
    for which in ("masked", "unroll"):
        xt, s0, arrays = inputs()
        if which == "masked":
            out, (s_T,) = recurrence.masked(cell, xt, lengths, arrays, (s0,), masks)
        else:
            masked_arrays = dropout.mask_arrays(arrays, masks.weights) if masks.weights else arrays
            out, (s_T,) = recurrence.unroll(cell, masked_arrays, xt, lengths, (s0,), masks.x, masks.s, masks.m)
        ((out * w_out).sum() + (s_T * w_s).sum()).backward()
        results.append((out.detach(), s_T.detach(), xt.grad, s0.grad, {nm: v.grad for nm, v in arrays.items()}))
    (o1, s1, gx1, gs1, ga1), (o2, s2, gx2, gs2, ga2) = results
    for u, v in [(o1, o2), (s1, s2), (gx1, gx2), (gs1, gs2), *[(ga1[nm], ga2[nm]) for nm in a]]:
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)

    # and both equal the numpy reference with the same masks, gradients included
    zw = {nm: masks.weights[nm].numpy() for nm in masks.weights} if masks.weights else {}
    am = {nm: v * zw.get(nm, 1.0) for nm, v in a.items()}
    np_masks = [None if m is None else m.numpy() for m in (masks.x, masks.s, masks.m)]
    ref_out, ref_s = C.forward_batch(kind, xs, am, s0n, *np_masks)
    g = C.backward_batch(kind, xs, am, s0n, [w_out[b, :L].numpy() for b, L in enumerate(lengths_list)],
                         w_s.numpy(), *np_masks)
    for b, L in enumerate(lengths_list):
        close(o1[b, :L], ref_out[b], rtol=1e-10, atol=1e-12)
        close(gx1[b, :L], g["x"][b], rtol=1e-10, atol=1e-12)
    close(s1, ref_s, rtol=1e-10, atol=1e-12)
    close(gs1, g["s0"], rtol=1e-10, atol=1e-12)
    for nm in a:  # d/dA of (A ∘ Z) is the masked-array gradient times Z
        close(ga1[nm], g[nm] * zw.get(nm, 1.0), rtol=1e-10, atol=1e-12)


def test_gru_input_gate_convention():
    # Wolfram's z weighs the old state: z ≈ 1 keeps s_{t-1}, z ≈ 0 takes m_t (as torch's and ONNX's z)
    a = C.random_arrays("GRU", 3, 2, seed=40)
    x, s0 = rand(1, 2, seed=1, dtype=np.float64), rand(3, seed=2, dtype=np.float64)
    r = C.sigmoid(a["ResetGateInputWeights"] @ x[0] + a["ResetGateStateWeights"] @ s0 + a["ResetGateBiases"])
    m = np.tanh(a["MemoryGateInputWeights"] @ x[0] + a["MemoryGateBiases"] + r * (a["MemoryGateStateWeights"] @ s0))
    for bias, want in ((40.0, s0), (-40.0, m)):
        b = {**a, "InputGateBiases": np.full(3, bias)}
        got = make_layer("GRU", b)({"Input": x, NetPort("State"): s0}, WorkingPrecision="Real64")
        close(got[0], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_array", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_inputform_rebuilds_with_options(kind, per_array):
    frozen = C.array_names(kind)[1]  # a state weight matrix
    if per_array:
        options = {"Dropout": 0.25, "LearningRateMultipliers": {frozen: 0.5}}
        want = {(nm,): 0.5 if nm == frozen else 1.0 for nm in C.array_names(kind)}
    else:
        options = {"Dropout": {"VariationalInput": 0.1, "VariationalState": 0.3}, "LearningRateMultipliers": 0}
        want = {(nm,): 0.0 for nm in C.array_names(kind)}
    layer = make_layer(kind, C.random_arrays(kind, 3, 2, seed=41), **options)
    assert Information(layer, "ArraysLearningRateMultipliers") == want
    code = Information(layer, "InputForm")
    rebuilt = eval(code, vars(wlnet))
    assert type(rebuilt) is type(layer) and Information(rebuilt, "InputForm") == code
    assert Information(rebuilt, "ArraysLearningRateMultipliers") == want
    assert rebuilt._dropout == layer._dropout
    x = rand(3, 2, seed=3)
    assert np.array_equal(rebuilt(x), layer(x))
    assert np.array_equal(rebuilt(x, NetEvaluationMode="Train", RandomSeeding=4),
                          layer(x, NetEvaluationMode="Train", RandomSeeding=4))


@pytest.mark.parametrize("kind", KINDS)
def test_output_option_fixes_the_length(kind):
    layer = LAYERS[kind](3, Input=("Varying", 2), Output=(4, 3))
    assert Information(layer, "InputPorts") == {"Input": "a length-4 sequence of size-2 vectors"}
    expect(ShapeError, lambda: LAYERS[kind](3, Output=("Varying", 4)), "size-3", "size-4")
    fixed = make_layer(kind, C.random_arrays(kind, 3, 2, seed=42), Output=(4, 3))
    expect(InputError, lambda: fixed(rand(3, 2).tolist()), '"Input"', "length-4 sequence")
    close(fixed(rand(4, 2, seed=5)), C.forward(kind, rand(4, 2, seed=5), C.random_arrays(kind, 3, 2, seed=42))[0])


@pytest.mark.parametrize("built", [True, False], ids=["native", "no-native"])
@pytest.mark.parametrize("kind,spec", ALL_COMBOS, ids=IDS)
def test_which_kernel_runs_the_masks(kind, spec, built, monkeypatch):
    # where the native kernel is built it runs the GRU and the basic RNN with step masks, and
    # without them the kernel measured faster on this machine; without it, weight or input masks run the
    # fused kernel (input masks on a widened input), a state or memory mask the reference step
    if built:
        monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
        if native.get() is None:
            pytest.skip("the native kernel could not be built here")
    else:
        monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    # without step masks the kernel measured on this machine runs (here made to be the fused one)
    monkeypatch.setattr(choice, "choose", lambda *args: ("fused", None))
    monkeypatch.delenv(choice.ENV, raising=False)
    masks = dropout.draw_masks(CELLS[kind], spec, 2, 3, 4, 2, torch.Generator().manual_seed(0), "cpu", F64)
    step_masks = bool({"VariationalInput", "VariationalState", "StateUpdate"} & set(spec))
    if built:
        want = "native" if step_masks else "fused"
    else:
        want = "unroll" if {"VariationalState", "StateUpdate"} & set(spec) else "fused"
    assert recurrence.choose(CELLS[kind], "cpu", F64, masks) == want
    assert recurrence.choose(CELLS[kind], "cpu", F64, dropout.Masks()) == "fused"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_numpy(kind):
    cell = CELLS[kind]
    a = C.random_arrays(kind, 4, 2, seed=43)
    xs = [rand(L, 2, seed=L, dtype=np.float64) for L in (4, 1, 3)]
    x, lengths = pad(xs, F64)
    s0 = rand(3, 4, seed=44, dtype=np.float64)
    spec = dict.fromkeys(cell.dropout, 0.3)
    masks = dropout.draw_masks(cell, spec, 3, 4, 4, 2, torch.Generator().manual_seed(8), "cuda", F64)
    arrays = {nm: torch.tensor(v, dtype=F64, device="cuda") for nm, v in a.items()}
    out, (s_T,) = recurrence.masked(cell, x.cuda(), lengths, arrays, (torch.tensor(s0, device="cuda"),), masks)
    cpu_masks = dropout.Masks({nm: masks.weights[nm].cpu() for nm in masks.weights},
                              *(None if z is None else z.cpu() for z in (masks.x, masks.s, masks.m)))
    ref, ref_s = numpy_with_masks(kind, xs, a, cpu_masks, s0)
    for b, L in enumerate((4, 1, 3)):
        close(out[b, :L].cpu(), ref[b], rtol=1e-10, atol=1e-12)
    close(s_T.cpu(), ref_s, rtol=1e-10, atol=1e-12)
    layer = make_layer(kind, a)
    seqs = [v.tolist() for v in xs]
    for u, v in zip(layer(seqs, TargetDevice="GPU"), layer(seqs)):
        np.testing.assert_allclose(u, v, atol=1e-5)

