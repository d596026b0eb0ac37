"""LongShortTermMemoryLayer: values, final states and gradients against the float64 numpy
reference of the page's recurrence (tests/reference.py), the fused kernel against torch.nn.LSTM, float64
gradchecks, data kinds, NetInitialize, Options/Information/NetExtract, the reference page's scenarios 1-2,
and one test per bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import reference as R
import wlnet
from wlnet import (
    All,
    Automatic,
    Information,
    InitializationError,
    InputError,
    LongShortTermMemoryLayer,
    NetError,
    NetExtract,
    NetInitialize,
    OptionError,
    Options,
    ShapeError,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx
from wlnet.kernels import cells, recurrence

NAMES = R.ARRAY_NAMES
TEST = Ctx(False, None)


class K:
    """The LSTM cell's torch table and kernels under the names these tests use."""

    pack = cells.LSTM.pack
    unpack = cells.LSTM.unpack

    @staticmethod
    def fused(x, lengths, weights, s0=None, c0=None, exact_cell=True):
        out, (s, c) = recurrence.fused(cells.LSTM, x, lengths, weights, (s0, c0), exact_cell)
        return out, s, c

    @staticmethod
    def reference(x, lengths, a, s0=None, c0=None):
        out, (s, c) = recurrence.unroll(cells.LSTM, a, x, lengths, (s0, c0))
        return out, s, c
X = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]  # the page's scenario 2 input


# ---- helpers ------------------------------------------------------------------------------------
def make_layer(a: dict, n=None, k=None, **options) -> LongShortTermMemoryLayer:
    """A layer holding the reference arrays `a` (given as float32 numpy options)."""
    n = n or a["InputGateBiases"].shape[0]
    k = k or a["InputGateInputWeights"].shape[1]
    arrays = {name: a[name].astype(np.float32) for name in NAMES}
    return LongShortTermMemoryLayer(n, Input=("Varying", k), **arrays, **options)


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def pad(xs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (T_b, k) arrays → zero-padded (B, T, k) float32 tensor and lengths (B,)."""
    lengths = [len(x) for x in xs]
    out = np.zeros((len(xs), max(lengths), xs[0].shape[1]), np.float32)
    for b, x in enumerate(xs):
        out[b, :len(x)] = x
    return torch.from_numpy(out), torch.tensor(lengths)


def run_module(layer, x, lengths=None, s0=None, c0=None):
    """The trainable module of `layer` on a (B, T, k) tensor; returns (module, outputs)."""
    module = layer.build(trainable=True)
    states = {}
    if s0 is not None:
        states[("State",)] = s0
    if c0 is not None:
        states[("CellState",)] = c0
    out, final = module({"Input": Seq(x, lengths)}, states, TEST)
    return module, {**out, **{pos[0]: v for pos, v in final.items()}}


def close(actual, expected, rtol=1e-4, atol=1e-5):
    actual = actual.detach().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# ---- the reference itself -----------------------------------------------------------------------
def test_reference_backward_matches_finite_differences():
    # the hand-derived backward of tests/reference.py against central differences (float64)
    n, k, T = 2, 3, 4
    a = R.random_arrays(n, k, seed=1, scale=0.8)
    x = rand(T, k, seed=2, dtype=np.float64)
    s0, c0 = rand(n, seed=3, dtype=np.float64), rand(n, seed=4, dtype=np.float64)
    w_out, w_s, w_c = rand(T, n, seed=5, dtype=np.float64), rand(n, seed=6, dtype=np.float64), rand(
        n, seed=7, dtype=np.float64)
    g = R.backward(x, a, s0, c0, w_out, w_s, w_c)

    def f():
        return R.loss(x, a, s0, c0, w_out, w_s, w_c)

    for name, v in [("x", x), ("s0", s0), ("c0", c0), *[(name, a[name]) for name in NAMES]]:
        np.testing.assert_allclose(g[name], R.numeric_gradient(f, v), rtol=1e-5, atol=1e-8, err_msg=name)


def test_reference_hand_step():
    # one step with n = k = 1 written out by hand from the page's formulas
    a = {name: np.array([[0.5]]) if "Weights" in name else np.array([0.1]) for name in NAMES}
    x, s0, c0 = 2.0, 0.3, -0.4
    z = 0.5 * x + 0.5 * s0 + 0.1
    i = o = f = 1 / (1 + math.exp(-z))
    m = math.tanh(z)
    c = f * c0 + i * m
    s = o * math.tanh(c)
    out, s_T, c_T = R.forward([[x]], a, [s0], [c0])
    assert out[0, 0] == pytest.approx(s) and s_T[0] == pytest.approx(s) and c_T[0] == pytest.approx(c)


# ---- values, final states and gradients against the reference -----------------------------------
@pytest.mark.parametrize("case", ["single", "uniform", "ragged"])
def test_module_matches_reference(case):
    n, k = 4, 3
    a = R.random_arrays(n, k, seed=10)
    layer = make_layer(a)
    lengths_list = {"single": [5], "uniform": [4, 4, 4], "ragged": [5, 1, 3, 2]}[case]
    xs = [rand(L, k, seed=20 + b) for b, L in enumerate(lengths_list)]
    x, lengths = pad(xs)
    lengths = lengths if case == "ragged" else None
    B, T = x.shape[:2]
    s0 = torch.from_numpy(rand(B, n, seed=30)).requires_grad_()
    c0 = torch.from_numpy(rand(B, n, seed=31)).requires_grad_()
    x.requires_grad_()
    module, out = run_module(layer, x, lengths, s0, c0)
    assert set(out) == {"Output", "State", "CellState"}
    assert sorted(name for name, _ in module.named_parameters()) == sorted(NAMES)

    ref_out, ref_s, ref_c = R.forward_batch(xs, a, s0.detach().numpy(), c0.detach().numpy())
    y = out["Output"].data
    assert y.shape == (B, T, n)
    for b, L in enumerate(lengths_list):
        close(y[b, :L], ref_out[b])
        close(y[b, L:], np.zeros((T - L, n)), atol=0)  # past a sequence's end: zeros
        close(out["State"][b], y[b, L - 1].detach().numpy(), atol=0)  # the final state is the last output
    close(out["State"], ref_s)
    close(out["CellState"], ref_c)

    # gradients of sum(w*out) + sum(w_s*s_T) + sum(w_c*c_T) to x, s0, c0 and the 12 arrays
    w_out = rand(B, T, n, seed=40)
    w_s, w_c = rand(B, n, seed=41), rand(B, n, seed=42)
    loss = (y * torch.from_numpy(w_out)).sum() + (out["State"] * torch.from_numpy(w_s)).sum() + (
        out["CellState"] * torch.from_numpy(w_c)).sum()
    loss.backward()
    g = R.backward_batch(xs, a, s0.detach().numpy(), c0.detach().numpy(),
                         [w_out[b, :L] for b, L in enumerate(lengths_list)], w_s, w_c)
    for b, L in enumerate(lengths_list):
        close(x.grad[b, :L], g["x"][b], atol=1e-4)
        close(x.grad[b, L:], np.zeros((T - L, k)), atol=0)
    close(s0.grad, g["s0"], atol=1e-4)
    close(c0.grad, g["c0"], atol=1e-4)
    params = dict(module.named_parameters())
    for name in NAMES:
        close(params[name].grad, g[name], atol=1e-4)


def test_default_initial_states_are_zero():
    a = R.random_arrays(3, 2, seed=11)
    x = torch.from_numpy(rand(2, 4, 2, seed=1))
    _, with_zeros = run_module(make_layer(a), x, None, torch.zeros(2, 3), torch.zeros(2, 3))
    _, default = run_module(make_layer(a), x)
    for port in ("Output", "State", "CellState"):
        v0 = with_zeros[port].data if port == "Output" else with_zeros[port]
        v1 = default[port].data if port == "Output" else default[port]
        assert torch.equal(v0, v1)


def test_public_call_matches_reference_single_and_ragged():
    n, k = 3, 2
    a = R.random_arrays(n, k, seed=12)
    layer = make_layer(a)
    xs = [rand(L, k, seed=50 + L) for L in (4, 1, 6)]
    ref_out, _, _ = R.forward_batch(xs, a)
    singles = [layer(x.tolist()) for x in xs]
    batch = layer([x.tolist() for x in xs])
    assert len(batch) == 3
    for b in range(3):
        close(singles[b], ref_out[b])
        assert len(batch[b]) == len(xs[b])
        np.testing.assert_allclose(batch[b], singles[b], rtol=1e-5, atol=1e-6)
    # numpy elements: each result a numpy array equal to evaluating it alone
    batch_np = layer(xs)
    assert all(isinstance(r, np.ndarray) and r.dtype == np.float32 for r in batch_np)
    for b in range(3):
        np.testing.assert_allclose(batch_np[b], layer(xs[b]), rtol=1e-5, atol=1e-6)


def test_train_mode_without_dropout_is_the_recurrence():
    a = R.random_arrays(3, 2, seed=13)
    layer = make_layer(a)
    assert layer(X, NetEvaluationMode="Train") == layer(X)
    close(layer(X, NetEvaluationMode="Train"), R.forward(X, a)[0])


# ---- the fused kernel against torch.nn.LSTM and the plain reference step ---------------------
def torch_lstm(a: dict, dtype=torch.float32) -> torch.nn.LSTM:
    """torch's own LSTM holding the arrays, through K.pack (i, f, g, o; zero second bias)."""
    w_ih, w_hh, b_ih, b_hh = K.pack({name: torch.tensor(v, dtype=dtype) for name, v in a.items()})
    lstm = torch.nn.LSTM(w_ih.shape[1], w_hh.shape[1], batch_first=True).to(dtype)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(w_ih)
        lstm.weight_hh_l0.copy_(w_hh)
        lstm.bias_ih_l0.copy_(b_ih)
        lstm.bias_hh_l0.copy_(b_hh)
    assert not b_hh.any()
    return lstm


def test_pack_layout_and_unpack_roundtrip():
    a = {name: torch.tensor(v) for name, v in R.random_arrays(3, 2, seed=14).items()}
    w_ih, w_hh, b_ih, b_hh = K.pack(a)
    assert w_ih.shape == (12, 2) and w_hh.shape == (12, 3) and b_ih.shape == (12,) and b_hh.shape == (12,)
    # torch's gate order: input, forget, cell (memory), output
    assert torch.equal(w_ih[3:6], a["ForgetGateInputWeights"])
    assert torch.equal(w_hh[6:9], a["MemoryGateStateWeights"])
    assert torch.equal(b_ih[9:12], a["OutputGateBiases"])
    back = K.unpack(w_ih, w_hh, b_ih, b_hh)
    assert set(back) == set(NAMES)
    assert all(torch.equal(back[name], a[name]) for name in NAMES)


@pytest.mark.parametrize("ragged", [False, True])
def test_fused_matches_torch_lstm_and_reference(ragged):
    n, k = 5, 3
    a = R.random_arrays(n, k, seed=15)
    at = {name: torch.tensor(v, dtype=torch.float32) for name, v in a.items()}
    lengths = torch.tensor([4, 2, 6]) if ragged else None
    x = torch.from_numpy(rand(3, 6, k, seed=3))
    if ragged:
        x, _ = pad([x[b, :L].numpy() for b, L in enumerate(lengths.tolist())])
    s0, c0 = torch.from_numpy(rand(3, n, seed=4)), torch.from_numpy(rand(3, n, seed=5))
    out, s, c = K.fused(x, lengths, K.pack(at), s0, c0)

    lstm = torch_lstm(a)
    with torch.no_grad():
        if ragged:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            t_out, (t_s, t_c) = lstm(packed, (s0[None], c0[None]))
            t_out, _ = torch.nn.utils.rnn.pad_packed_sequence(t_out, batch_first=True, total_length=6)
        else:
            t_out, (t_s, t_c) = lstm(x, (s0[None], c0[None]))
    close(out, t_out.numpy(), atol=1e-6)
    close(s, t_s[0].numpy(), atol=1e-6)
    close(c, t_c[0].numpy(), atol=1e-6)

    r_out, r_s, r_c = K.reference(x, lengths, at, s0, c0)
    close(out, r_out.numpy())
    close(s, r_s.numpy())
    close(c, r_c.numpy())


@pytest.mark.parametrize("ragged", [False, True])
def test_fused_gradcheck_float64(ragged):
    n, k = 2, 3
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_()

    x, s0, c0 = t(2, 3, k), t(2, n), t(2, n)
    w_ih, w_hh, b = t(4 * n, k), t(4 * n, n), t(4 * n)
    lengths = torch.tensor([3, 1]) if ragged else None

    def f(x, s0, c0, w_ih, w_hh, b):
        return K.fused(x, lengths, [w_ih, w_hh, b, torch.zeros_like(b)], s0, c0)

    assert torch.autograd.gradcheck(f, (x, s0, c0, w_ih, w_hh, b))


@pytest.mark.parametrize("ragged", [False, True])
def test_module_gradcheck_float64(ragged):
    # through the public module: gradients to x, s0, c0 and every one of the 12 arrays
    n, k = 2, 2
    layer = make_layer(R.random_arrays(n, k, seed=16))
    module = layer.build(trainable=True).double()
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, k, generator=gen, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(2, n, generator=gen, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, n, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([1, 3]) if ragged else None

    def f(x, s0, c0, *ps):
        out, final = torch.func.functional_call(
            module, dict(zip(names, ps)), ({"Input": Seq(x, lengths)}, {("State",): s0, ("CellState",): c0}, TEST))
        return out["Output"].data, final[("State",)], final[("CellState",)]

    assert torch.autograd.gradcheck(f, (x, s0, c0, *params))


# ---- data kinds ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    a = R.random_arrays(3, 2, seed=17)
    return make_layer(a), a


def test_list_in_list_of_floats_out(small):
    layer, a = small
    out = layer(X)
    assert isinstance(out, list) and len(out) == 3
    assert all(isinstance(row, list) and len(row) == 3 and all(type(v) is float for v in row) for row in out)
    close(out, R.forward(X, a)[0])
    # integers are numbers too
    assert layer([[1, 2], [3, 4], [5, 6]]) == out


def test_numpy_in_numpy_float32_out(small):
    layer, a = small
    for dtype in (np.float64, np.float32, np.int64):
        out = layer(np.array(X, dtype=dtype))
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, 3)
        close(out, R.forward(X, a)[0])
    batch = layer(np.stack([np.array(X), np.array(X[::-1])]))
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.shape == (2, 3, 3)
    close(batch[1], R.forward(X[::-1], a)[0])


def test_torch_in_torch_out_and_gradient_flows(small):
    layer, a = small
    x = torch.tensor(X, requires_grad=True)
    out = layer(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 3)
    assert out.requires_grad
    out.sum().backward()
    g = R.backward(X, a, w_out=np.ones((3, 3)))
    close(x.grad, g["x"], atol=1e-5)
    # a tensor without grad gives a tensor without grad
    out = layer(torch.tensor(X))
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    close(out, R.forward(X, a)[0])


def test_list_of_arrays_gives_list_of_arrays(small):
    layer, a = small
    for xs in ([np.array(X), np.array(X[:2])], [np.array(X), np.array(X)]):
        out = layer(xs)
        assert isinstance(out, list) and len(out) == 2
        assert all(isinstance(r, np.ndarray) and r.dtype == np.float32 for r in out)
        for x, r in zip(xs, out):
            close(r, R.forward(x, a)[0])
    out = layer([torch.tensor(X), torch.tensor(X[:1])])
    assert isinstance(out, list) and all(isinstance(r, torch.Tensor) for r in out)
    assert [tuple(r.shape) for r in out] == [(3, 3), (1, 3)]


def test_single_versus_batch_detection(small):
    layer, _ = small
    single = layer(X)
    assert len(single) == 3 and len(single[0]) == 3  # T × n
    batch = layer([X])
    assert len(batch) == 1 and batch[0] == single  # one result per element
    assert len(layer([X, X[:1], X[:2]])) == 3
    assert np.asarray(layer(np.array([X, X]))).shape == (2, 3, 3)
    assert layer(X, "Output") == single


# ---- NetInitialize ------------------------------------------------------------------------------
def test_array_snapshot():
    net = NetInitialize(LongShortTermMemoryLayer(4, Input=("Varying", 3)))
    shapes = {name: NetExtract(net, name).shape for name in NAMES}
    assert shapes == {
        "InputGateInputWeights": (4, 3), "InputGateStateWeights": (4, 4), "InputGateBiases": (4,),
        "OutputGateInputWeights": (4, 3), "OutputGateStateWeights": (4, 4), "OutputGateBiases": (4,),
        "ForgetGateInputWeights": (4, 3), "ForgetGateStateWeights": (4, 4), "ForgetGateBiases": (4,),
        "MemoryGateInputWeights": (4, 3), "MemoryGateStateWeights": (4, 4), "MemoryGateBiases": (4,),
    }
    assert list(Information(net, "ArraysDimensions")) == [(name,) for name in NAMES]  # the order too
    assert all(NetExtract(net, name).dtype == np.float32 for name in NAMES)


def _arrays(net) -> dict:
    return {name: NetExtract(net, name) for name in NAMES}


def _same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[name], b[name]) for name in NAMES)


def test_netinitialize_determinism_all_none_and_kept_arrays():
    blank = LongShortTermMemoryLayer(4, Input=("Varying", 3))
    first = NetInitialize(blank)
    assert not blank.initialized() and first.initialized()  # the argument is not changed
    assert _same(_arrays(first), _arrays(NetInitialize(blank)))  # same seed, same arrays
    assert _same(_arrays(first), _arrays(NetInitialize(blank, RandomSeeding=1234)))
    other = NetInitialize(blank, RandomSeeding=99)
    assert not np.array_equal(NetExtract(other, "InputGateInputWeights"), NetExtract(first, "InputGateInputWeights"))
    fresh1, fresh2 = NetInitialize(blank, RandomSeeding=Automatic), NetInitialize(blank, RandomSeeding=Automatic)
    assert not np.array_equal(NetExtract(fresh1, "MemoryGateStateWeights"),
                              NetExtract(fresh2, "MemoryGateStateWeights"))

    # an already initialized layer is left as it is; All refills every array
    assert _same(_arrays(NetInitialize(other)), _arrays(other))
    refilled = NetInitialize(other, All)
    assert _same(_arrays(refilled), _arrays(first))
    assert _same(_arrays(other), _arrays(NetInitialize(blank, RandomSeeding=99)))  # `other` unchanged

    # None empties them
    emptied = NetInitialize(first, None)
    assert not emptied.initialized() and first.initialized()
    assert all(NetExtract(emptied, name) is None for name in NAMES)
    assert Information(emptied, "ArraysTotalElementCount") == 4 * 4 * (3 + 4 + 1)
    with pytest.raises(InitializationError):
        emptied([[1, 2, 3]])

    # arrays given as options are kept; the missing ones are filled
    given_b = np.array([0.5, -0.5, 0.25, 2.0], np.float32)
    given_w = rand(4, 4, seed=8)
    partial = LongShortTermMemoryLayer(4, Input=("Varying", 3), InputGateBiases=given_b, MemoryGateStateWeights=given_w)
    filled = NetInitialize(partial)
    assert filled.initialized() and not partial.initialized()
    assert np.array_equal(NetExtract(filled, "InputGateBiases"), given_b)
    assert np.array_equal(NetExtract(filled, "MemoryGateStateWeights"), given_w)
    assert not np.array_equal(NetExtract(NetInitialize(partial, All), "MemoryGateStateWeights"), given_w)


@pytest.mark.parametrize("method", ["Kaiming", "Xavier", "Orthogonal", "Random", "Identity"])
def test_forget_bias_rule(method):
    net = NetInitialize(LongShortTermMemoryLayer(4, Input=("Varying", 3)), Method=method)
    assert np.array_equal(NetExtract(net, "ForgetGateBiases"), np.ones(4, np.float32))
    for gate in ("Input", "Output", "Memory"):
        assert np.array_equal(NetExtract(net, f"{gate}GateBiases"), np.zeros(4, np.float32))


def _weights(net) -> list:
    """[(array, fan_in, fan_out)] of the 8 weight matrices."""
    return [(NetExtract(net, name), NetExtract(net, name).shape[1], NetExtract(net, name).shape[0])
            for name in NAMES if "Weights" in name]


def test_method_kaiming():
    # normal, mean 0, standard deviation √(2/fan_in)  (src/wlnet/initialize.py)
    net = NetInitialize(LongShortTermMemoryLayer(64, Input=("Varying", 32)), Method="Kaiming")
    for w, fan_in, _ in _weights(net):
        sd = math.sqrt(2 / fan_in)
        assert abs(w.std() / sd - 1) < 0.1
        assert abs(w.mean()) < 4 * sd / math.sqrt(w.size)


def test_method_xavier_is_the_default():
    # Xavier (Wolfram's default): uniform on ±√(6/(fan_in + fan_out))
    net = NetInitialize(LongShortTermMemoryLayer(64, Input=("Varying", 32)), Method="Xavier")
    default = NetInitialize(LongShortTermMemoryLayer(64, Input=("Varying", 32)))
    assert _same(_arrays(default), _arrays(net))
    for w, fan_in, fan_out in _weights(net):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.95 * bound
        assert abs(w.var() / (bound ** 2 / 3) - 1) < 0.1  # variance of a uniform on ±bound


@pytest.mark.parametrize("n,k", [(8, 5), (4, 6)])
def test_method_orthogonal(n, k):
    net = NetInitialize(LongShortTermMemoryLayer(n, Input=("Varying", k)), Method="Orthogonal")
    for w, _, _ in _weights(net):
        w = w.astype(np.float64)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T  # orthonormal columns or rows
        np.testing.assert_allclose(gram, np.eye(min(w.shape)), atol=1e-5)
    a = NetExtract(net, "InputGateStateWeights")
    b = NetExtract(net, "OutputGateStateWeights")
    assert not np.allclose(a, b)  # each matrix drawn afresh


def test_method_identity():
    net = NetInitialize(LongShortTermMemoryLayer(4, Input=("Varying", 3)), Method="Identity")
    for name in NAMES:
        if "InputWeights" in name:
            assert np.array_equal(NetExtract(net, name), np.eye(4, 3, dtype=np.float32))
        elif "StateWeights" in name:
            assert np.array_equal(NetExtract(net, name), np.eye(4, dtype=np.float32))


# ---- Options, Information, NetExtract, InputForm, repr -----------------------------------------
def test_options():
    assert Options(LongShortTermMemoryLayer) == {
        "Input": Automatic, "Output": Automatic, "Dropout": None, "LearningRateMultipliers": Automatic,
        "InputGateInputWeights": Automatic, "InputGateStateWeights": Automatic, "InputGateBiases": Automatic,
        "OutputGateInputWeights": Automatic, "OutputGateStateWeights": Automatic, "OutputGateBiases": Automatic,
        "ForgetGateInputWeights": Automatic, "ForgetGateStateWeights": Automatic, "ForgetGateBiases": Automatic,
        "MemoryGateInputWeights": Automatic, "MemoryGateStateWeights": Automatic, "MemoryGateBiases": Automatic,
    }
    layer = LongShortTermMemoryLayer(3)
    assert Options(layer) == {
        "BatchSize": Automatic, "NetEvaluationMode": "Test", "TargetDevice": "CPU",
        "WorkingPrecision": "Real32", "RandomSeeding": Automatic,
    }


def test_information_properties():
    n, k = 3, 2
    a = R.random_arrays(n, k, seed=18)
    layer = make_layer(a, LearningRateMultipliers={"ForgetGateBiases": 0})
    total = 4 * n * (k + n + 1)
    assert total == 72
    assert Information(layer) == {
        "LayersCount": 1, "ArraysCount": 12, "InputPortNames": ["Input"], "OutputPortNames": ["Output"],
        "ArraysTotalElementCount": total, "ArraysTotalSize": "288 bytes",
    }
    arrays = Information(layer, "Arrays")
    assert list(arrays) == [(name,) for name in NAMES]
    for name in NAMES:
        assert isinstance(arrays[(name,)], np.ndarray)
        assert np.array_equal(arrays[(name,)], a[name].astype(np.float32))
    dims = {(name,): (n, k) if "InputWeights" in name else (n, n) if "StateWeights" in name else (n,)
            for name in NAMES}
    assert Information(layer, "ArraysCount") == 12
    assert Information(layer, "ArraysDimensions") == dims
    assert Information(layer, "ArraysElementCounts") == {key: math.prod(d) for key, d in dims.items()}
    assert Information(layer, "ArraysTotalElementCount") == total
    assert Information(layer, "ArraysTotalByteCount") == 4 * total
    assert Information(layer, "ArraysTotalSize") == "288 bytes"
    assert Information(layer, "ArraysLearningRateMultipliers") == {
        (name,): 0.0 if name == "ForgetGateBiases" else 1.0 for name in NAMES}
    assert Information(layer, "InputPorts") == {"Input": "a sequence of size-2 vectors"}
    assert Information(layer, "OutputPorts") == {"Output": "a sequence of size-3 vectors"}
    assert Information(layer, "InputPortNames") == ["Input"]
    assert Information(layer, "OutputPortNames") == ["Output"]
    assert Information(layer, "Layers") == {(): layer}
    assert Information(layer, "LayersCount") == 1
    assert Information(layer, "LayerTypeCounts") == {"LongShortTermMemoryLayer": 1}
    assert Information(layer, "RecurrentStatesCount") == 2
    assert Information(layer, "RecurrentStatesPositionList") == [("State",), ("CellState",)]
    props = Information(layer, "Properties")
    for p in ("Arrays", "ArraysCount", "ArraysDimensions", "ArraysElementCounts", "ArraysTotalElementCount",
              "ArraysTotalByteCount", "ArraysTotalSize", "ArraysLearningRateMultipliers", "InputPorts",
              "OutputPorts", "InputPortNames", "OutputPortNames", "Layers", "LayersCount", "LayerTypeCounts",
              "RecurrentStatesCount", "RecurrentStatesPositionList", "InputForm", "SummaryGraphic", "Properties"):
        assert p in props
    with pytest.raises(OptionError, match="NotAProperty"):
        Information(layer, "NotAProperty")


@pytest.mark.parametrize("n,k", [(4, 3), (128, 32), (1, 1)])
def test_arrays_total_element_count(n, k):
    layer = LongShortTermMemoryLayer(n, Input=("Varying", k))
    assert Information(layer, "ArraysTotalElementCount") == 4 * n * (k + n + 1)  # known before initializing
    assert Information(NetInitialize(layer), "ArraysTotalByteCount") == 16 * n * (k + n + 1)


def test_information_with_unknown_input_size():
    layer = LongShortTermMemoryLayer(3)
    assert Information(layer, "ArraysTotalElementCount") is None
    assert Information(layer, "ArraysDimensions")[("InputGateStateWeights",)] == (3, 3)
    assert Information(layer, "OutputPorts") == {"Output": "a sequence of size-3 vectors"}


def test_netextract_returns_a_numpy_copy():
    a = R.random_arrays(3, 2, seed=19)
    layer = make_layer(a)
    before = layer(X)
    b = NetExtract(layer, "ForgetGateBiases")
    assert isinstance(b, np.ndarray) and b.dtype == np.float32
    assert np.array_equal(b, a["ForgetGateBiases"].astype(np.float32))
    b[:] = 100.0  # changing the copy changes nothing
    assert np.array_equal(NetExtract(layer, "ForgetGateBiases"), a["ForgetGateBiases"].astype(np.float32))
    assert layer(X) == before
    assert NetExtract(LongShortTermMemoryLayer(3), "ForgetGateBiases") is None
    with pytest.raises(OptionError, match="ForgetGateBias'"):
        NetExtract(layer, "ForgetGateBias")


@pytest.mark.parametrize("options", [
    {},
    {"Dropout": 0.25, "LearningRateMultipliers": {"InputGateBiases": 0.5}},
    {"Dropout": {"VariationalInput": 0.1, "StateUpdate": 0.3}, "LearningRateMultipliers": 2},
])
def test_inputform_rebuilds_the_layer(options):
    layer = make_layer(R.random_arrays(3, 2, seed=20), **options)
    code = Information(layer, "InputForm")
    rebuilt = eval(code, vars(wlnet))
    assert isinstance(rebuilt, LongShortTermMemoryLayer)
    assert Information(rebuilt, "InputForm") == code
    assert _same(_arrays(rebuilt), _arrays(layer))
    for prop in ("InputPorts", "OutputPorts", "ArraysLearningRateMultipliers"):
        assert Information(rebuilt, prop) == Information(layer, prop)
    assert rebuilt(X) == layer(X)


@pytest.mark.parametrize("layer", [
    LongShortTermMemoryLayer(3),
    LongShortTermMemoryLayer(3, Input=(5, 2)),
    LongShortTermMemoryLayer(3, Input=("Varying", Automatic), Dropout={"VariationalState": 0.5}),
])
def test_inputform_of_uninitialized_layers(layer):
    code = Information(layer, "InputForm")
    rebuilt = eval(code, vars(wlnet))
    assert not rebuilt.initialized()
    assert Information(rebuilt, "InputForm") == code
    assert Information(rebuilt, "InputPorts") == Information(layer, "InputPorts")


def test_repr():
    blank = LongShortTermMemoryLayer(3, Input=("Varying", 2))
    r = repr(blank)
    assert "LongShortTermMemoryLayer" in r and "uninitialized" in r
    assert "a sequence of size-2 vectors" in r and "a sequence of size-3 vectors" in r
    r = repr(NetInitialize(blank))
    assert "initialized" in r and "uninitialized" not in r


# ---- the page's scenarios 1 and 2 ------------------------------------------------------------------
def test_scenario_1_uninitialized_layer_of_size_3():
    layer = LongShortTermMemoryLayer(3)
    assert isinstance(layer, LongShortTermMemoryLayer)
    assert not layer.initialized()
    assert "uninitialized" in repr(layer)
    assert Information(layer, "OutputPorts") == {"Output": "a sequence of size-3 vectors"}
    assert Information(layer, "InputPorts") == {"Input": "a sequence of vectors"}


def test_scenario_2_initialized_layer_on_three_vectors():
    layer = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    out = layer([[1, 2], [3, 4], [5, 6]])
    assert len(out) == 3 and all(len(v) == 3 for v in out)
    a = {name: NetExtract(layer, name).astype(np.float64) for name in NAMES}
    close(out, R.forward([[1, 2], [3, 4], [5, 6]], a)[0])


# ---- bad input: a clear error, and nothing changes ----------------------------------------------
@pytest.fixture
def good():
    """(layer, reference arrays, (layer(X), layer([X, X[:1]])) before any error)."""
    a = R.random_arrays(3, 2, seed=21)
    layer = make_layer(a)
    return layer, a, (layer(X), layer([X, X[:1]]))


def unchanged(layer, a, before):
    """The layer holds the same arrays and gives the same values (single and ragged batch)."""
    assert layer.initialized()
    assert _same(_arrays(layer), {name: a[name].astype(np.float32) for name in NAMES})
    assert layer(X) == before[0]
    assert layer([X, X[:1]]) == before[1]


def expect(exc, call, *parts):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


PORT = 'data supplied to port "Input"'


def test_empty_input(good):
    layer, a, before = good
    for data in ([], np.zeros((0, 2)), torch.zeros(0, 2), [[]]):
        expect(InputError, lambda data=data: layer(data),
               "LongShortTermMemoryLayer", '"Input"', "empty inputs are not permitted")
    unchanged(layer, a, before)


def test_empty_sequence_in_a_batch(good):
    layer, a, before = good
    for data in ([X, []], [np.array(X), np.zeros((0, 2))], [torch.tensor(X), torch.zeros(0, 2)],
                 np.zeros((2, 0, 2)), [[]], [X, [[]]]):
        expect(InputError, lambda data=data: layer(data),
               "LongShortTermMemoryLayer", '"Input"', "empty inputs are not permitted")
    unchanged(layer, a, before)


def test_wrong_vector_size(good):
    layer, a, before = good
    bad = [[1, 2, 3, 4]] * 3
    expect(InputError, lambda: layer(bad), "LongShortTermMemoryLayer",
           f"{PORT} was a 3×4 matrix, but expected a sequence of size-2 vectors")
    expect(InputError, lambda: layer(np.ones((3, 4))), f"{PORT} was a 3×4 matrix")
    expect(InputError, lambda: layer([X, bad]), "3×4 matrix", "size-2 vectors", "batch element 2")
    expect(InputError, lambda: layer(np.ones((2, 3, 4))), "size-2 vectors", "3×4")
    unchanged(layer, a, before)


def test_wrong_rank(good):
    layer, a, before = good
    expect(InputError, lambda: layer([1, 2]), "LongShortTermMemoryLayer",
           f"{PORT} was a vector of size 2, but expected a sequence of size-2 vectors")
    expect(InputError, lambda: layer(np.ones((1, 1, 3, 2))), f"{PORT} was a 1×1×3×2 array")
    expect(InputError, lambda: layer(5), f"{PORT} was a number")
    expect(InputError, lambda: layer(None), f"{PORT} was None (of type NoneType)")
    expect(InputError, lambda: layer({"Foo": X}), "'Foo'")
    expect(InputError, lambda: layer([X, [1, 2]]), "a vector of size 2", "batch element 2")
    unchanged(layer, a, before)


def test_non_numeric_data(good):
    layer, a, before = good
    expect(InputError, lambda: layer([["a", "b"], ["c", "d"]]), "LongShortTermMemoryLayer", PORT,
           "non-numeric", "expected a sequence of size-2 vectors")
    expect(InputError, lambda: layer("ab"), PORT, "the string 'ab'", "NetEncoder")
    expect(InputError, lambda: layer(np.array([["a", "b"]])), PORT, "dtype <U1")
    expect(InputError, lambda: layer([X, [["a", "b"]]]), "non-numeric", "batch element 2")
    unchanged(layer, a, before)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf(good, value):
    layer, a, before = good
    bad = [[1.0, 2.0], [value, 4.0]]
    for data in (bad, np.array(bad), torch.tensor(bad), [X, bad], np.array([bad, bad])):
        expect(InputError, lambda data=data: layer(data), "LongShortTermMemoryLayer", '"Input"',
               "NaN or infinite")
    unchanged(layer, a, before)


@pytest.mark.parametrize("T", [2, 300])  # a small input (scanned in Python) and a large one (a torch reduction)
def test_nan_inf_and_large_finite_values_of_any_size(good, T):
    layer, a, before = good
    big = np.full((T, 2), 3e38, np.float32)  # finite entries whose sum overflows float32
    assert len(layer(big)) == T
    assert len(layer([big, big[:1]])) == 2
    for value in (np.nan, np.inf):
        bad = big.copy()
        bad[T // 2, 1] = value
        expect(InputError, lambda bad=bad: layer(bad), '"Input"', "NaN or infinite")
        expect(InputError, lambda bad=bad: layer(torch.from_numpy(bad)), '"Input"', "NaN or infinite")
        expect(InputError, lambda bad=bad: layer(bad.tolist()), '"Input"', "NaN or infinite")
        expect(InputError, lambda bad=bad: layer(np.stack([big, bad])), '"Input"', "NaN or infinite")
    # a Python float beyond float32's range becomes inf in float32: refused as well
    expect(InputError, lambda: layer([[1e39, 0.0]]), '"Input"', "NaN or infinite")
    unchanged(layer, a, before)


def test_fixed_length_port():
    a = R.random_arrays(3, 2, seed=22)
    layer = make_layer(a)
    fixed = LongShortTermMemoryLayer(3, Input=(3, 2), **{name: a[name].astype(np.float32) for name in NAMES})
    assert Information(fixed, "InputPorts") == {"Input": "a length-3 sequence of size-2 vectors"}
    before = fixed(X)
    assert before == layer(X)
    expect(InputError, lambda: fixed(X + [[7, 8]]), "LongShortTermMemoryLayer",
           f"{PORT} was a 4×2 matrix, but expected a length-3 sequence of size-2 vectors")
    expect(InputError, lambda: fixed(X[:2]), "2×2 matrix", "length-3 sequence")
    expect(InputError, lambda: fixed([X, X[:2]]), "length-3", "batch element 2")
    expect(InputError, lambda: fixed(np.ones((2, 4, 2))), "length-3 sequence", "4×2")
    assert fixed(X) == before
    assert fixed([X, X]) == [before, before]


def test_wrong_array_shapes():
    a = R.random_arrays(3, 2, seed=23)
    given = {name: a[name].astype(np.float32) for name in NAMES}
    snapshot = {name: v.copy() for name, v in given.items()}
    cases = [
        ("InputGateBiases", np.zeros(2), "must have dimensions 3, but was given an array of dimensions 2"),
        ("ForgetGateStateWeights", np.zeros((3, 2)), "must have dimensions 3×3", "3×2"),
        ("MemoryGateInputWeights", np.zeros((3, 5)), "must have dimensions 3×2", "3×5"),
        ("OutputGateInputWeights", np.zeros((4, 2)), "must have dimensions 3×2", "4×2"),
        ("InputGateBiases", np.zeros((3, 1)), "must have dimensions 3,", "3×1"),
        ("InputGateBiases", 1.0, "must have dimensions 3,", "a scalar"),
        ("InputGateBiases", ["a", "b", "c"], "must be numeric"),
        ("InputGateBiases", [1.0, float("nan"), 0.0], "NaN or infinite"),
    ]
    for name, value, *parts in cases:
        expect(ShapeError, lambda name=name, value=value: LongShortTermMemoryLayer(
            3, Input=("Varying", 2), **{**given, name: value}), "LongShortTermMemoryLayer", name, *parts)
    # without an Input option, the input weights must agree with each other on k
    expect(ShapeError, lambda: LongShortTermMemoryLayer(3, InputGateInputWeights=np.zeros((3, 2)),
                                                        OutputGateInputWeights=np.zeros((3, 4))),
           "OutputGateInputWeights", "must have dimensions 3×2", "3×4")
    assert all(np.array_equal(given[name], snapshot[name]) for name in NAMES)  # inputs untouched
    # k inferred from the arrays
    inferred = LongShortTermMemoryLayer(3, **given)
    assert Information(inferred, "InputPorts") == {"Input": "a sequence of size-2 vectors"}
    close(inferred(X), R.forward(X, a)[0])


def test_arrays_given_as_options_are_copied():
    a = R.random_arrays(3, 2, seed=24)
    given = {name: a[name].astype(np.float32) for name in NAMES}
    layer = LongShortTermMemoryLayer(3, Input=("Varying", 2), **given)
    before = layer(X)
    for v in given.values():
        v[...] = 7.0
    assert layer(X) == before


def test_unknown_options():
    expect(OptionError, lambda: LongShortTermMemoryLayer(3, Foo=1), "LongShortTermMemoryLayer", "'Foo'",
           "not a known option", "Dropout")
    expect(OptionError, lambda: LongShortTermMemoryLayer(3, InputGateBias=[0, 0, 0]), "'InputGateBias'",
           "InputGateBiases")


@pytest.mark.parametrize("spec,parts", [
    (1, ["probability", "1", "Allowed forms"]),
    (1.0, ["Allowed forms", "1.0"]),
    (-0.1, ["Allowed forms", "-0.1"]),
    ({"VariationalInput": 1.0}, ["'VariationalInput'", "0 ≤ p < 1", "1.0"]),
    ({"VariationalState": -0.5}, ["'VariationalState'", "-0.5"]),
    ({"Bogus": 0.1}, ["'Bogus'", "VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate"]),
    ("0.5", ["'0.5'", "Allowed forms"]),
    ([0.5], ["[0.5]", "Allowed forms"]),
    (True, ["True", "Allowed forms"]),
    ({}, ["{}", "Allowed forms"]),
    ({"VariationalInput": "0.1"}, ["'VariationalInput'", "'0.1'"]),
])
def test_bad_dropout(spec, parts):
    snapshot = repr(spec)
    expect(OptionError, lambda: LongShortTermMemoryLayer(3, Dropout=spec), "LongShortTermMemoryLayer", "Dropout",
           *parts)
    assert repr(spec) == snapshot


def test_good_dropout_forms():
    for spec in (None, 0, 0.5, 0.999, {"VariationalWeights": 0.2}, {"VariationalInput": 0.1, "VariationalState": 0.5},
                 {"StateUpdate": 0.0}):
        LongShortTermMemoryLayer(3, Dropout=spec)


@pytest.mark.parametrize("n", [0, -1, 2.5, "3", None, True, Automatic])
def test_bad_n(n):
    expect(NetError, lambda: LongShortTermMemoryLayer(n), "LongShortTermMemoryLayer", "n (the output size)",
           "positive integer", repr(n))


def test_numpy_integers_are_sizes():
    layer = LongShortTermMemoryLayer(np.int64(3), Input=(np.int32(4), np.int64(2)))
    assert layer.n == 3 and type(layer.n) is int
    assert Information(layer, "InputForm") == "LongShortTermMemoryLayer(3, Input=(4, 2))"
    assert Information(layer, "ArraysTotalElementCount") == 4 * 3 * (2 + 3 + 1)


@pytest.mark.parametrize("spec,parts", [
    (("Varying",), ["Input", "('Varying',)", '("Varying", k)']),
    (("Varying", 0), ["Input", "vector size", "0"]),
    (("Varying", 2.5), ["Input", "2.5"]),
    (("Varying", "2"), ["Input", "'2'"]),
    ((0, 2), ["Input", "sequence length", "0"]),
    ((-1, 2), ["Input", "sequence length", "-1"]),
    ((2.5, 2), ["Input", "sequence length", "2.5"]),
    ("foo", ["Input", "'foo'"]),
    (5, ["Input", "5", '("Varying", k)']),
    ((1, 2, 3), ["Input", "(1, 2, 3)"]),
])
def test_bad_input_forms(spec, parts):
    expect(ShapeError, lambda: LongShortTermMemoryLayer(3, Input=spec), "LongShortTermMemoryLayer", *parts)


def test_input_and_output_options_must_agree():
    expect(ShapeError, lambda: LongShortTermMemoryLayer(3, Output=("Varying", 4)), "size-3", "size-4")
    expect(ShapeError, lambda: LongShortTermMemoryLayer(3, Input=(5, 2), Output=(4, 3)), "length-5", "length-4")
    fixed = LongShortTermMemoryLayer(3, Input=("Varying", 2), Output=(4, 3))
    assert Information(fixed, "InputPorts") == {"Input": "a length-4 sequence of size-2 vectors"}


def test_bad_net_evaluation_mode(good):
    layer, a, before = good
    for mode in ("Training", "test", None, 1):
        expect(OptionError, lambda mode=mode: layer(X, NetEvaluationMode=mode), "LongShortTermMemoryLayer",
               "NetEvaluationMode", '"Test" or "Train"', repr(mode))
    unchanged(layer, a, before)


def test_unknown_evaluation_option(good):
    layer, a, before = good
    expect(OptionError, lambda: layer(X, Foo=1), "LongShortTermMemoryLayer", "'Foo'", "not an evaluation option",
           "NetEvaluationMode")
    expect(OptionError, lambda: layer(X, Dropout=0.5), "'Dropout'", "not an evaluation option")
    unchanged(layer, a, before)


def test_unknown_output_port(good):
    layer, a, before = good
    expect(InputError, lambda: layer(X, "Outputs"), "'Outputs'", "not an output port", "'Output'")
    unchanged(layer, a, before)


def test_uninitialized_layer_refuses_to_evaluate():
    blank = LongShortTermMemoryLayer(3, Input=("Varying", 2))
    expect(InitializationError, lambda: blank(X), "LongShortTermMemoryLayer", "InputGateInputWeights", "missing",
           "NetInitialize")
    # one array missing: the message names it
    a = R.random_arrays(3, 2, seed=25)
    partial = LongShortTermMemoryLayer(3, Input=("Varying", 2),
                                       **{name: a[name] for name in NAMES if name != "ForgetGateBiases"})
    msg = expect(InitializationError, lambda: partial(X), '"ForgetGateBiases"', "is missing", "NetInitialize")
    assert "InputGateBiases" not in msg
    assert not blank.initialized() and not partial.initialized()
    # NetInitialize fixes it, and the given arrays stay
    fixed = NetInitialize(partial)
    assert np.array_equal(NetExtract(fixed, "InputGateBiases"), a["InputGateBiases"].astype(np.float32))
    assert len(fixed(X)) == 3


def test_netinitialize_with_unknown_input_size():
    layer = LongShortTermMemoryLayer(3)
    expect(InitializationError, lambda: NetInitialize(layer), "LongShortTermMemoryLayer", "InputGateInputWeights",
           "input size", "Input")
    assert not layer.initialized()
    assert all(NetExtract(layer, name) is None for name in NAMES)
    assert NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2))).initialized()


def test_bad_netinitialize_arguments():
    layer = LongShortTermMemoryLayer(3, Input=("Varying", 2))
    expect(OptionError, lambda: NetInitialize(layer, Method="Glorot"), "Method", "'Glorot'", "'Kaiming'")
    expect(OptionError, lambda: NetInitialize(layer, "Everything"), "All or None", "'Everything'")
    expect(OptionError, lambda: NetInitialize(layer, RandomSeeding="x"), "RandomSeeding", "'x'")
    assert not layer.initialized()
