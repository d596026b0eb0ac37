"""The LSTM dropout kernels (the Dropout methods).

- The custom recurrence (`lstm_custom`) and whichever kernel `recurrence.masked` picks,
  against an independent numpy implementation of the formulas with masks, written below
  (forward and hand-derived backward, one sequence at a time), and against torch's fused
  kernel (`recurrence.fused`) when no mask drops anything: outputs, final states and the gradients
  to x, s0, c0 and all 12 arrays; uniform and ragged batches.
- `torch.autograd.gradcheck` in float64 with fixed masks.
- Every mask: which entries it drops, what it is shared by (batch, time, gate), when it is
  redrawn, its 1/(1 − p) scaling; read back both from `draw_masks` and from the pre-activations
  of nets built so that the mask shows (saturated gates, one-hot or constant inputs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wlnet.core.errors import OptionError
from wlnet.kernels import cells, dropout, lstm_custom, native, native_cells, recurrence

LSTM = cells.LSTM
GATES = LSTM.gates  # the order of the mask 4-axis: Input, Output, Forget, Memory


class lstm:
    """The LSTM's cell and fused kernel under the names these tests use."""

    GATES = LSTM.gates
    ARRAY_NAMES = LSTM.array_names
    array_shapes = LSTM.array_shapes
    pack = LSTM.pack

    @staticmethod
    def fused(x, lengths, weights, s0=None, c0=None, exact_cell=True):
        out, (s, c) = recurrence.fused(LSTM, x, lengths, weights, (s0, c0), exact_cell)
        return out, s, c


def lstm_masked(x, lengths, arrays, s0, c0, masks):
    """Whichever kernel `recurrence.choose` picks for the masks."""
    out, (s, c) = recurrence.masked(LSTM, x, lengths, arrays, (s0, c0), masks)
    return out, s, c


def lstm_dropout(x, lengths, arrays, s0, c0, spec, generator):
    """Masks drawn afresh from `generator`, then `lstm_masked`."""
    out, (s, c) = recurrence.run(LSTM, arrays, x, lengths, (s0, c0), dropout_spec=spec or None,
                                 generator=generator)
    return out, s, c
F64 = torch.float64


# ---------------------------------------------------------------- numpy reference (one sequence)

def _sig(u):
    return 1.0 / (1.0 + np.exp(-u))


def np_forward(x, a, s0, c0, zx=None, zs=None, zm=None):
    """The LSTM recurrence with masks, one sequence. x (T, k); a: the 12 arrays (numpy); zx (4, k),
    zs (4, n), zm (T, n) or None → out (T, n), s_T, c_T and the per-step cache."""
    T, k = x.shape
    n = s0.shape[0]
    zx = np.ones((4, k)) if zx is None else zx
    zs = np.ones((4, n)) if zs is None else zs
    zm = np.ones((T, n)) if zm is None else zm
    s, c, out, cache = s0, c0, [], []
    for t in range(T):
        xg = [x[t] * zx[j] for j in range(4)]  # x_t as gate j sees it
        sg = [s * zs[j] for j in range(4)]
        pre = [a[f"{g}GateInputWeights"] @ xg[j] + a[f"{g}GateStateWeights"] @ sg[j] + a[f"{g}GateBiases"]
               for j, g in enumerate(GATES)]
        i, o, f, m = _sig(pre[0]), _sig(pre[1]), _sig(pre[2]), np.tanh(pre[3])
        me = m * zm[t]
        c_new = f * c + i * me
        s_new = o * np.tanh(c_new)
        cache.append((xg, sg, i, o, f, m, me, c, c_new))
        s, c = s_new, c_new
        out.append(s)
    return np.array(out).reshape(T, n), s, c, cache


def np_backward(a, cache, g_out, g_s, g_c, zx, zs, zm):
    """Gradients of Σ out·g_out + s_T·g_s + c_T·g_c → dx (T, k), ds0, dc0, {array: grad}."""
    T = len(cache)
    n = g_s.shape[0]
    k = cache[0][0][0].shape[0]
    zx = np.ones((4, k)) if zx is None else zx
    zs = np.ones((4, n)) if zs is None else zs
    zm = np.ones((T, n)) if zm is None else zm
    grads = {name: np.zeros_like(v) for name, v in a.items()}
    dx = np.zeros((T, k))
    ds, dc = g_s.copy(), g_c.copy()
    for t in range(T - 1, -1, -1):
        xg, sg, i, o, f, m, me, c_prev, c_t = cache[t]
        ds = ds + g_out[t]
        tc = np.tanh(c_t)
        dc = dc + ds * o * (1 - tc**2)
        dpre = [dc * me * i * (1 - i), ds * tc * o * (1 - o), dc * c_prev * f * (1 - f),
                dc * i * zm[t] * (1 - m**2)]
        ds_prev = np.zeros(n)
        for j, g in enumerate(GATES):
            grads[f"{g}GateInputWeights"] += np.outer(dpre[j], xg[j])
            grads[f"{g}GateStateWeights"] += np.outer(dpre[j], sg[j])
            grads[f"{g}GateBiases"] += dpre[j]
            dx[t] += (a[f"{g}GateInputWeights"].T @ dpre[j]) * zx[j]
            ds_prev += (a[f"{g}GateStateWeights"].T @ dpre[j]) * zs[j]
        ds, dc = ds_prev, dc * f
    return dx, ds, dc, grads


def np_batch(x, lengths, a, s0, c0, masks, g_out, g_s, g_c):
    """The reference on a (ragged) batch, each sequence alone: (out, s_T, c_T), grads."""
    B, T, k = x.shape
    n = s0.shape[1]
    out, sT, cT = np.zeros((B, T, n)), np.zeros((B, n)), np.zeros((B, n))
    dx, ds0, dc0 = np.zeros_like(x), np.zeros_like(s0), np.zeros_like(c0)
    da = {name: np.zeros_like(v) for name, v in a.items()}
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        zx = None if masks.x is None else masks.x[b].numpy()
        zs = None if masks.s is None else masks.s[b].numpy()
        zm = None if masks.m is None else masks.m[b, :L].numpy()
        o, s, c, cache = np_forward(x[b, :L], a, s0[b], c0[b], zx, zs, zm)
        out[b, :L], sT[b], cT[b] = o, s, c
        gx, gs, gc, ga = np_backward(a, cache, g_out[b, :L], g_s[b], g_c[b], zx, zs, zm)
        dx[b, :L], ds0[b], dc0[b] = gx, gs, gc
        for name in da:
            da[name] += ga[name]
    return (out, sT, cT), [dx, ds0, dc0, *(da[name] for name in lstm.ARRAY_NAMES)]


# ---------------------------------------------------------------- helpers

def make_problem(B=4, T=6, n=5, k=3, lengths=None, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    arrays = {name: (torch.randn(*shape, generator=g, dtype=dtype) * 0.6).requires_grad_()
              for name, shape in lstm.array_shapes(n, k).items()}
    x = torch.randn(B, T, k, generator=g, dtype=dtype)
    if lengths is not None:
        x = x * (torch.arange(T)[None, :, None] < lengths[:, None, None])  # zero padding
    x.requires_grad_()
    s0 = (torch.randn(B, n, generator=g, dtype=dtype) * 0.5).requires_grad_()
    c0 = (torch.randn(B, n, generator=g, dtype=dtype) * 0.5).requires_grad_()
    return x, arrays, s0, c0


def random_masks(B, T, n, k, which, seed=1, dtype=F64, p=0.4):
    """Fixed masks for the methods in `which` ("x", "s", "m"); with p = None, all ones."""
    g = torch.Generator().manual_seed(seed)

    def draw(*shape):
        if p is None:
            return torch.ones(*shape, dtype=dtype)
        return (torch.rand(*shape, generator=g, dtype=dtype) >= p).to(dtype) / (1 - p)

    return dropout.Masks(None, draw(B, 4, k) if "x" in which else None,
                         draw(B, 4, n) if "s" in which else None, draw(B, T, n) if "m" in which else None)


def run_and_grad(fn, x, arrays, s0, c0, seed=5):
    """fn() → (out, s_T, c_T); a random linear loss of all three; its gradients."""
    out, s_T, c_T = fn()
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(v.shape, generator=g, dtype=v.dtype) for v in (out, s_T, c_T)]
    loss = (out * w[0]).sum() + (s_T * w[1]).sum() + (c_T * w[2]).sum()
    params = [x, s0, c0, *(arrays[name] for name in lstm.ARRAY_NAMES)]
    grads = torch.autograd.grad(loss, params)
    return (out, s_T, c_T), grads, w


def reference(x, lengths, arrays, s0, c0, masks, w):
    """`np_batch` on torch inputs, with the loss weights w of `run_and_grad`."""
    a = {name: v.detach().numpy() for name, v in arrays.items()}
    return np_batch(x.detach().numpy(), lengths, a, s0.detach().numpy(), c0.detach().numpy(), masks,
                    *(v.numpy() for v in w))


def assert_close(got, want, tol=1e-10):
    for g, w in zip(got, want):
        g = g.detach().numpy() if isinstance(g, torch.Tensor) else g
        w = w.detach().numpy() if isinstance(w, torch.Tensor) else w
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def native_or_skip():
    """The native module; a skip where it could not be built, a failure under WLNET_REQUIRE_NATIVE=1
    (where `native.get()` raises instead)."""
    lib = native.get()
    if lib is None:
        pytest.skip("the native kernel could not be built here")
    return lib


RAGGED = torch.tensor([6, 2, 5, 1])
MASK_SETS = ["", "x", "s", "m", "xs", "xm", "sm", "xsm"]


# ---------------------------------------------------------------- the custom path: values, gradients

@pytest.mark.parametrize("lengths", [None, RAGGED], ids=["uniform", "ragged"])
@pytest.mark.parametrize("which", MASK_SETS)
def test_custom_with_ones_masks_equals_fused_and_numpy(lengths, which):
    x, arrays, s0, c0 = make_problem(lengths=lengths)
    B, T, k = x.shape
    n = s0.shape[1]
    masks = random_masks(B, T, n, k, which, p=None)
    got, g_got, w = run_and_grad(
        lambda: lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m), x, arrays, s0, c0)
    fused, g_fused, _ = run_and_grad(lambda: lstm.fused(x, lengths, lstm.pack(arrays), s0, c0), x, arrays, s0, c0)
    assert_close(got, fused)
    assert_close(g_got, g_fused)
    want, g_want = reference(x, lengths, arrays, s0, c0, masks, w)
    assert_close(got, want)
    assert_close(g_got, g_want)


@pytest.mark.parametrize("path", ["custom", "lstm_masked"])
@pytest.mark.parametrize("lengths", [None, RAGGED], ids=["uniform", "ragged"])
@pytest.mark.parametrize("which", MASK_SETS[1:])
def test_random_masks_equal_numpy(which, lengths, path):
    """`path`: the custom recurrence itself, or whichever kernel `lstm_masked` picks."""
    x, arrays, s0, c0 = make_problem(lengths=lengths, seed=3)
    B, T, k = x.shape
    n = s0.shape[1]
    masks = random_masks(B, T, n, k, which, seed=4)

    def fn():
        if path == "custom":
            return lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m)
        return lstm_masked(x, lengths, arrays, s0, c0, masks)

    got, g_got, w = run_and_grad(fn, x, arrays, s0, c0)
    want, g_want = reference(x, lengths, arrays, s0, c0, masks, w)
    assert_close(got, want)
    assert_close(g_got, g_want)


@pytest.mark.parametrize("which", ["x", "xsm"])
def test_weight_masks_with_others_equal_numpy_on_masked_arrays(which):
    x, arrays, s0, c0 = make_problem(seed=6)
    B, T, k = x.shape
    n = s0.shape[1]
    m = random_masks(B, T, n, k, which, seed=7)
    g = torch.Generator().manual_seed(8)
    wm = {name: (torch.rand(arrays[name].shape, generator=g, dtype=F64) >= 0.5).to(F64) * 2
          for name in LSTM.weight_names}
    masks = dropout.Masks(wm, m.x, m.s, m.m)
    got = lstm_masked(x, None, arrays, s0, c0, masks)
    a = {name: v.detach().numpy() * (wm[name].numpy() if name in wm else 1) for name, v in arrays.items()}
    want, _ = np_batch(x.detach().numpy(), None, a, s0.detach().numpy(), c0.detach().numpy(), m,
                       np.zeros((B, T, n)), np.zeros((B, n)), np.zeros((B, n)))
    assert_close(got, want)


@pytest.mark.parametrize("which", ["", "xsm", "s"])
def test_ragged_element_equals_running_it_alone(which):
    x, arrays, s0, c0 = make_problem(lengths=RAGGED, seed=9)
    B, T, k = x.shape
    n = s0.shape[1]
    masks = random_masks(B, T, n, k, which, seed=10)
    out, s_T, c_T = lstm_custom.run(x, RAGGED, arrays, s0, c0, masks.x, masks.s, masks.m)
    for b in range(B):
        L = int(RAGGED[b])
        one = [None if z is None else z[b : b + 1] for z in (masks.x, masks.s, masks.m)]
        if one[2] is not None:
            one[2] = one[2][:, :L]
        o1, s1, c1 = lstm_custom.run(x[b : b + 1, :L], None, arrays, s0[b : b + 1], c0[b : b + 1], *one)
        assert_close([out[b, :L], s_T[b], c_T[b]], [o1[0], s1[0], c1[0]], tol=1e-12)
        assert torch.all(out[b, L:] == 0)


def test_lengths_equal_to_T_and_shorter_than_T():
    x, arrays, s0, c0 = make_problem(seed=11)
    B, T, k = x.shape
    masks = random_masks(B, T, s0.shape[1], k, "xsm", seed=12)
    z = (masks.x, masks.s, masks.m)
    full = lstm_custom.run(x, torch.full((B,), T), arrays, s0, c0, *z)
    assert_close(full, lstm_custom.run(x, None, arrays, s0, c0, *z), tol=0)
    short = torch.tensor([3, 2, 3, 1])  # the longest is shorter than T: padded with zeros to T
    x_short = x * (torch.arange(T)[None, :, None] < short[:, None, None])
    out, s_T, c_T = lstm_custom.run(x_short, short, arrays, s0, c0, *z)
    assert out.shape == (B, T, s0.shape[1])
    ref = lstm_custom.run(x_short[:, :3], short, arrays, s0, c0, masks.x, masks.s, masks.m[:, :3])
    assert_close([out[:, :3], s_T, c_T], ref, tol=0)
    assert torch.all(out[:, 3:] == 0)


def test_zero_initial_states_by_default():
    x, arrays, s0, c0 = make_problem(seed=13)
    B, T, k = x.shape
    z = random_masks(B, T, s0.shape[1], k, "xsm", seed=14)
    zeros = torch.zeros_like(s0)
    assert_close(lstm_custom.run(x, None, arrays, None, None, z.x, z.s, z.m),
                 lstm_custom.run(x, None, arrays, zeros, zeros, z.x, z.s, z.m), tol=0)


@pytest.mark.parametrize("which", ["", "x", "s", "m", "xsm"])
def test_float32_matches_float64(which):
    x, arrays, s0, c0 = make_problem(seed=15)
    B, T, k = x.shape
    masks = random_masks(B, T, s0.shape[1], k, which, seed=16)
    want = lstm_custom.run(x, RAGGED, arrays, s0, c0, masks.x, masks.s, masks.m)

    def f32(v):
        return None if v is None else v.detach().float().requires_grad_(v.requires_grad)

    got = lstm_custom.run(f32(x), RAGGED, {n_: f32(v) for n_, v in arrays.items()}, f32(s0), f32(c0),
                          f32(masks.x), f32(masks.s), f32(masks.m))
    assert all(v.dtype == torch.float32 for v in got)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), atol=2e-6)


@pytest.mark.parametrize("lengths", [None, torch.tensor([3, 1, 2])], ids=["uniform", "ragged"])
@pytest.mark.parametrize("which", ["xsm", "x", "s", "m"])
def test_gradcheck_with_fixed_masks(lengths, which):
    x, arrays, s0, c0 = make_problem(B=3, T=3, n=3, k=2, lengths=lengths, seed=17)
    masks = random_masks(3, 3, 3, 2, which, seed=18, p=0.3)
    names = list(lstm.ARRAY_NAMES)

    def f(x, s0, c0, *arrs):
        return lstm_masked(x, lengths, dict(zip(names, arrs)), s0, c0, masks)

    assert torch.autograd.gradcheck(f, (x, s0, c0, *(arrays[nm] for nm in names)))


@pytest.mark.parametrize("lengths", [None, torch.tensor([3, 1, 2])], ids=["uniform", "ragged"])
@pytest.mark.parametrize("which", ["", "xsm"])
@pytest.mark.parametrize("drawn", [True, False], ids=["packed", "per-array"])
def test_gradcheck_with_weight_masks(lengths, which, drawn):
    """VariationalWeights with the other masks: weight masks as `draw_masks` gives them (in the
    fused layout) or as a plain dict; alone they take the fused kernel, with others the custom one."""
    x, arrays, s0, c0 = make_problem(B=3, T=3, n=3, k=2, lengths=lengths, seed=23)
    m = random_masks(3, 3, 3, 2, which, seed=24, p=0.3)
    wm = dropout.draw_masks(LSTM, {"VariationalWeights": 0.4}, 3, 3, 3, 2, seeded(25), "cpu", F64).weights
    if not drawn:
        wm = {name: wm[name].clone() for name in LSTM.weight_names}
    masks = dropout.Masks(wm, m.x, m.s, m.m)
    names = list(lstm.ARRAY_NAMES)

    def f(x, s0, c0, *arrs):
        return lstm_masked(x, lengths, dict(zip(names, arrs)), s0, c0, masks)

    assert torch.autograd.gradcheck(f, (x, s0, c0, *(arrays[nm] for nm in names)))


def test_gradients_do_not_need_every_input():
    x, arrays, s0, c0 = make_problem(seed=19)
    B, T, k = x.shape
    masks = random_masks(B, T, s0.shape[1], k, "xsm", seed=20)
    x_const = x.detach()
    out, _, _ = lstm_custom.run(x_const, None, arrays, None, None, masks.x, masks.s, masks.m)
    (gw,) = torch.autograd.grad(out.sum(), [arrays["InputGateStateWeights"]])
    w = [torch.ones(B, T, s0.shape[1], dtype=F64), torch.zeros_like(s0), torch.zeros_like(c0)]
    _, want = reference(x, None, arrays, torch.zeros_like(s0), torch.zeros_like(c0), masks, w)  # s0 = c0 = 0 here
    assert_close([gw], [want[3 + lstm.ARRAY_NAMES.index("InputGateStateWeights")]])


# ---------------------------------------------------------------- masks: draw_masks

def test_draw_masks_shapes_values_and_inactive_methods():
    spec = dict.fromkeys(dropout.METHODS, 0.25)
    g = torch.Generator().manual_seed(0)
    m = dropout.draw_masks(LSTM, spec, 3, 4, 5, 2, g, "cpu", F64)
    assert set(m.weights) == set(LSTM.weight_names) and len(m.weights) == 8  # no biases
    for name, z in m.weights.items():
        assert z.shape == lstm.array_shapes(5, 2)[name]
    assert m.x.shape == (3, 4, 2) and m.s.shape == (3, 4, 5) and m.m.shape == (3, 4, 5)
    for z in [*m.weights.values(), m.x, m.s, m.m]:
        assert z.dtype == F64
        assert set(z.unique().tolist()) <= {0.0, 1 / 0.75}
    none = dropout.draw_masks(LSTM, {"VariationalInput": 0.0, "StateUpdate": 0}, 3, 4, 5, 2, g, "cpu", F64)
    assert none == dropout.Masks(None, None, None, None)
    assert dropout.draw_masks(LSTM, {}, 3, 4, 5, 2, g, "cpu", F64) == dropout.Masks()


@pytest.fixture(params=["native", "generator"])
def drawer(request, monkeypatch):
    """Masks drawn by the native kernel (from one seed), or with the generator itself."""
    if request.param == "native":
        monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
        native_or_skip()
    else:
        monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    return request.param


@pytest.mark.parametrize("method", dropout.METHODS)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mask_drop_rate_and_unit_mean(method, p, drawer):
    g = torch.Generator().manual_seed(1)
    draws = []
    for _ in range(20):
        m = dropout.draw_masks(LSTM, {method: p}, 8, 10, 16, 12, g, "cpu", torch.float32)
        draws.append(torch.cat([z.flatten() for z in m.weights.values()]) if m.weights
                     else next(z for z in (m.x, m.s, m.m) if z is not None).flatten())
    z = torch.cat(draws).double()
    N = z.numel()
    dropped = (z == 0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / N) ** 0.5
    assert torch.allclose(z[z != 0], torch.tensor(1 / (1 - p), dtype=F64))
    assert abs(z.mean().item() - 1) < 5 * (p / (1 - p) / N) ** 0.5


def test_extreme_probabilities(drawer):
    g = torch.Generator().manual_seed(3)
    high = dropout.draw_masks(LSTM, {"StateUpdate": 0.999999}, 4, 100, 100, 2, g, "cpu", F64).m
    assert (high == 0).double().mean() > 0.999
    assert torch.all(high[high != 0] == 1 / (1 - 0.999999))
    low = dropout.draw_masks(LSTM, {"StateUpdate": 0.001}, 4, 100, 100, 2, g, "cpu", F64).m
    assert 0 < (low == 0).double().mean() < 0.002


def test_masks_are_independent_across_what_they_are_not_shared_by(drawer):
    g = torch.Generator().manual_seed(2)
    m = dropout.draw_masks(LSTM, dict.fromkeys(dropout.METHODS, 0.5), 16, 12, 32, 32, g, "cpu", F64)
    w = list(m.weights.values())
    assert all(not torch.equal(w[0][:, :32], v[:, :32]) for v in w[1:])  # one mask per matrix
    for z in (m.x, m.s):
        assert not torch.equal(z[0], z[1])  # per sequence
        assert not torch.equal(z[:, 0], z[:, 1])  # per gate
    assert not torch.equal(m.m[:, 0], m.m[:, 1])  # StateUpdate: per step
    assert not torch.equal(m.m[0], m.m[1])  # and per sequence
    again = dropout.draw_masks(LSTM, dict.fromkeys(dropout.METHODS, 0.5), 16, 12, 32, 32, g, "cpu", F64)
    assert not torch.equal(again.x, m.x) and not torch.equal(again.m, m.m)  # redrawn per call


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_neighbouring_draws_are_independent(p, drawer):
    """P(both dropped) = p² for draws 1 … 8 apart (the native kernel takes 4 draws from each
    64-bit hash: lags 1-3 share a word, lag 4 and more do not)."""
    z = dropout.draw_masks(LSTM, {"StateUpdate": p}, 64, 50, 128, 2, torch.Generator().manual_seed(9), "cpu", F64).m
    d = (z.flatten() == 0).double()
    for lag in range(1, 9):
        both = (d[:-lag] * d[lag:]).mean().item()
        N = d.numel() - lag
        assert abs(both - p * p) < 5 * (p * p * (1 - p * p) / N) ** 0.5, lag


def test_native_masks_do_not_depend_on_threads():
    native_or_skip()
    spec = dict.fromkeys(dropout.METHODS, 0.4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dropout.draw_masks(LSTM, spec, 64, 50, 128, 32, torch.Generator().manual_seed(4), "cpu", F64)
        torch.set_num_threads(2)
        two = dropout.draw_masks(LSTM, spec, 64, 50, 128, 32, torch.Generator().manual_seed(4), "cpu", F64)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one[1:], two[1:]))
    assert all(torch.equal(one.weights[name], two.weights[name]) for name in LSTM.weight_names)


def test_bad_specs_are_errors():
    with pytest.raises(OptionError, match="unknown dropout method 'Variational'"):
        dropout.active({"Variational": 0.1})
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(OptionError, match=r"must be a number with 0 ≤ p < 1, but was given"):
            dropout.active({"StateUpdate": p})


# ---------------------------------------------------------------- masks seen through the recurrence

N_, K_, B_, T_ = 8, 8, 6, 5
SAT = 50.0  # σ(±50) is 1 or 0 to double precision


def probe_arrays(gate: str, wx=None, ws=None, b=0.0):
    """Arrays where only `gate` varies: the other gates saturate so that its pre-activation
    can be read back from the outputs (`read_pre`)."""
    a = {name: torch.zeros(*shape, dtype=F64) for name, shape in lstm.array_shapes(N_, K_).items()}
    fixed = {"Input": SAT, "Output": SAT, "Forget": -SAT, "Memory": SAT}
    if gate == "Forget":
        fixed["Memory"] = SAT  # c_t = f_t c_{t-1} + 1
    for g, v in fixed.items():
        a[f"{g}GateBiases"] = torch.full((N_,), v, dtype=F64)
    a[f"{gate}GateBiases"] = torch.full((N_,), b, dtype=F64)
    if wx is not None:
        a[f"{gate}GateInputWeights"] = wx
    if ws is not None:
        a[f"{gate}GateStateWeights"] = ws
    return a


def read_pre(gate: str, out, c0):
    """Pre-activations (B, T, n) of `gate` from the outputs of `probe_arrays` nets."""
    out = out.detach()
    if gate == "Memory":  # i = o = 1, f = 0: s = tanh(c), c = m
        return torch.atanh(torch.atanh(out))
    if gate == "Input":  # m = o = 1, f = 0: s = tanh(i)
        return torch.logit(torch.atanh(out))
    if gate == "Output":  # i = m = 1, f = 0: c = 1, s = o tanh(1)
        return torch.logit(out / np.tanh(1.0))
    c = torch.atanh(out)  # Forget: i = m = o = 1: c_t = f_t c_{t-1} + 1
    c_prev = torch.cat([c0.unsqueeze(1), c[:, :-1]], 1)
    return torch.logit((c - 1) / c_prev)


def spread_eye(rows, cols):
    """E[r, r mod cols] = 1: every row picks one input, every input shows in some row."""
    e = torch.zeros(rows, cols, dtype=F64)
    e[torch.arange(rows), torch.arange(rows) % cols] = 1
    return e


def seeded(seed=123):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("gate", GATES)
def test_variational_input_mask_seen_in_preactivations(gate):
    p = 0.5
    x = torch.ones(B_, T_, K_, dtype=F64)
    c0 = torch.ones(B_, N_, dtype=F64)
    a = probe_arrays(gate, wx=0.5 * spread_eye(N_, K_))
    out, _, _ = lstm_dropout(x, None, a, None, c0, {"VariationalInput": p}, seeded())
    seen = read_pre(gate, out, c0) / 0.5  # (B, T, n): zx[b, gate, r mod k]
    want = dropout.draw_masks(LSTM, {"VariationalInput": p}, B_, T_, N_, K_, seeded(), "cpu", F64).x
    j = GATES.index(gate)
    for t in range(T_):  # the same at every step
        torch.testing.assert_close(seen[:, t, :K_], want[:, j], atol=1e-9, rtol=1e-9)
    assert not torch.equal(want[0, j], want[1, j])  # per sequence
    assert not torch.equal(want[:, j], want[:, (j + 1) % 4])  # per gate


@pytest.mark.parametrize("gate", GATES)
def test_variational_state_mask_seen_and_carried_state_unmasked(gate):
    p = 0.5
    x = torch.zeros(B_, T_, K_, dtype=F64)
    s0 = torch.full((B_, N_), 0.5, dtype=F64)
    c0 = torch.ones(B_, N_, dtype=F64)
    a = probe_arrays(gate, ws=0.5 * torch.eye(N_, dtype=F64), b=0.3)
    out, _, _ = lstm_dropout(x, None, a, s0, c0, {"VariationalState": p}, seeded())
    assert torch.all(out > 0)  # the carried state (= the output) is never masked
    s_prev = torch.cat([s0.unsqueeze(1), out[:, :-1]], 1)  # the unmasked s_{t-1}
    seen = (read_pre(gate, out, c0) - 0.3) / (0.5 * s_prev)  # zs[b, gate] at every step
    want = dropout.draw_masks(LSTM, {"VariationalState": p}, B_, T_, N_, K_, seeded(), "cpu", F64).s
    j = GATES.index(gate)
    for t in range(T_):
        torch.testing.assert_close(seen[:, t], want[:, j], atol=1e-7, rtol=1e-7)
    assert not torch.equal(want[0, j], want[1, j])
    assert not torch.equal(want[:, j], want[:, (j + 1) % 4])


def test_state_update_mask_seen_redrawn_every_step():
    p = 0.5
    x = torch.zeros(B_, T_, K_, dtype=F64)
    a = probe_arrays("Memory", b=0.5)  # m_t = tanh(0.5), c_t = m_t zm_t
    out, _, _ = lstm_dropout(x, None, a, None, None, {"StateUpdate": p}, seeded())
    seen = torch.atanh(out) / np.tanh(0.5)
    want = dropout.draw_masks(LSTM, {"StateUpdate": p}, B_, T_, N_, K_, seeded(), "cpu", F64).m
    torch.testing.assert_close(seen, want, atol=1e-9, rtol=1e-9)
    assert set(want.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(want[:, 0], want[:, 1]) and not torch.equal(want[0], want[1])


def test_variational_weights_mask_shared_by_batch_and_time():
    p = 0.5
    # One-hot inputs, a different input index for each (sequence, step).
    idx = (torch.arange(B_)[:, None] * 3 + torch.arange(T_)[None, :]) % K_
    x = torch.nn.functional.one_hot(idx, K_).to(F64)
    a = probe_arrays("Memory", wx=torch.full((N_, K_), 0.5, dtype=F64))
    out, _, _ = lstm_dropout(x, None, a, None, None, {"VariationalWeights": p}, seeded())
    seen = read_pre("Memory", out, None) / 0.5  # (B, T, n): column idx[b, t] of the mask
    z = dropout.draw_masks(LSTM, {"VariationalWeights": p}, B_, T_, N_, K_, seeded(), "cpu", F64).weights
    torch.testing.assert_close(seen, z["MemoryGateInputWeights"].T[idx], atol=1e-9, rtol=1e-9)
    # State weights: one-hot initial states show the columns of the state-weight mask.
    s0 = torch.nn.functional.one_hot(torch.arange(B_) % N_, N_).to(F64)
    a = probe_arrays("Memory", ws=torch.full((N_, N_), 0.5, dtype=F64))
    out, _, _ = lstm_dropout(x[:, :1] * 0, None, a, s0, None, {"VariationalWeights": p}, seeded())
    seen = read_pre("Memory", out, None)[:, 0] / 0.5
    torch.testing.assert_close(seen, z["MemoryGateStateWeights"].T[torch.arange(B_) % N_], atol=1e-9, rtol=1e-9)


def test_biases_are_never_dropped():
    x = torch.zeros(B_, T_, K_, dtype=F64)
    a = probe_arrays("Memory", b=0.5)
    want = lstm.fused(x, None, lstm.pack(a))
    got = lstm_dropout(x, None, a, None, None, {"VariationalWeights": 0.9}, seeded())
    assert_close(got, want, tol=1e-12)


# ---------------------------------------------------------------- lstm_dropout: paths, seeds

def test_p_zero_is_no_dropout():
    x, arrays, s0, c0 = make_problem(lengths=RAGGED, seed=21)
    plain = lstm_dropout(x, RAGGED, arrays, s0, c0, {}, None)
    got = lstm_dropout(x, RAGGED, arrays, s0, c0, dict.fromkeys(dropout.METHODS, 0.0), seeded())
    assert_close(got, plain, tol=0)  # the same kernel, given no masks
    assert_close(plain, lstm.fused(x, RAGGED, lstm.pack(arrays), s0, c0))


@pytest.mark.parametrize("built", [True, False], ids=["native", "no-native"])
def test_which_kernel_runs(monkeypatch, built):
    """Where the native kernel is built it runs every masked LSTM and, without masks, the kernel
    measured faster on this machine (`choice`);
    else weight masks alone run torch's fused kernel, input masks the fused kernel on widened
    inputs, state and state-update masks the custom one."""
    if built:
        monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
        native_or_skip()
    else:
        monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    x, arrays, s0, c0 = make_problem(seed=22)
    weights_only = dropout.draw_masks(LSTM, {"VariationalWeights": 0.5}, 4, 6, 5, 3, seeded(), "cpu", F64)
    from wlnet.kernels import choice

    measured = {(5, True): "native", (5, False): "native", (1024, True): "native", (129, False): "fused"}
    monkeypatch.delenv(choice.ENV, raising=False)
    monkeypatch.setattr(choice, "choose", lambda cell, dtype, n, B, T, k, ragged, grad: (measured[n, grad], None))
    for masks in (dropout.Masks(), weights_only):
        for (n, grad), kernel in measured.items():
            assert recurrence.choose(LSTM, "cpu", F64, masks, n, grad) == (kernel if built else "fused")

    z = dropout.draw_masks(LSTM, {"VariationalWeights": 0.5}, 4, 6, 5, 3, seeded(), "cpu", F64).weights
    masked = {name: v * z[name] if name in z else v for name, v in arrays.items()}
    want = lstm.fused(x, None, lstm.pack(masked), s0, c0)[0]
    if built:
        out, _, _ = lstm_dropout(x, None, arrays, s0, c0, {"VariationalWeights": 0.5}, seeded())
        assert_close([out], [want])
        return

    def refuse(*args, **kwargs):
        raise AssertionError("the custom path ran")

    monkeypatch.setattr(lstm_custom, "run", refuse)
    out, _, _ = lstm_dropout(x, None, arrays, s0, c0, {"VariationalWeights": 0.5}, seeded())
    assert_close([out], [want], tol=0)
    lstm_dropout(x, None, arrays, s0, c0, {"VariationalInput": 0.5, "VariationalWeights": 0.5}, None)
    for method in ("VariationalState", "StateUpdate"):
        with pytest.raises(AssertionError, match="custom path"):
            lstm_dropout(x, None, arrays, s0, c0, {method: 0.5, "VariationalInput": 0.5}, None)


@pytest.mark.parametrize("spec", [{"VariationalWeights": 0.3}, {"VariationalInput": 0.3},
                                  {"VariationalState": 0.3}, {"StateUpdate": 0.3},
                                  {"VariationalInput": 0.1, "VariationalState": 0.5},
                                  dict.fromkeys(dropout.METHODS, 0.3)])
def test_seeded_generator_reproduces_and_equals_its_masks(spec):
    x, arrays, s0, c0 = make_problem(lengths=RAGGED, seed=23)
    one = lstm_dropout(x, RAGGED, arrays, s0, c0, spec, seeded(7))
    two = lstm_dropout(x, RAGGED, arrays, s0, c0, spec, seeded(7))
    assert_close(one, two, tol=0)
    masks = dropout.draw_masks(LSTM, spec, 4, 6, 5, 3, seeded(7), "cpu", F64)
    assert_close(one, lstm_masked(x, RAGGED, arrays, s0, c0, masks), tol=0)
    g = seeded(7)
    lstm_dropout(x, RAGGED, arrays, s0, c0, spec, g)
    again = lstm_dropout(x, RAGGED, arrays, s0, c0, spec, g)  # redrawn at each evaluation
    assert not torch.equal(again[0], one[0])
    plain = lstm.fused(x, RAGGED, lstm.pack(arrays), s0, c0)
    assert not torch.equal(one[0], plain[0])


def test_unseeded_runs_differ_and_use_the_global_rng():
    x, arrays, s0, c0 = make_problem(seed=24)
    spec = dict.fromkeys(dropout.METHODS, 0.5)
    one = lstm_dropout(x, None, arrays, s0, c0, spec, None)
    two = lstm_dropout(x, None, arrays, s0, c0, spec, None)
    assert not torch.equal(one[0], two[0])
    state = torch.get_rng_state()
    three = lstm_dropout(x, None, arrays, s0, c0, spec, None)
    torch.set_rng_state(state)
    assert_close(lstm_dropout(x, None, arrays, s0, c0, spec, None), three, tol=0)


def test_gradients_reach_every_input_in_training():
    x, arrays, s0, c0 = make_problem(seed=25)
    spec = {"VariationalInput": 0.2, "VariationalState": 0.2, "StateUpdate": 0.2, "VariationalWeights": 0.2}
    out, s_T, c_T = lstm_dropout(x, None, arrays, s0, c0, spec, seeded())
    params = [x, s0, c0, *(arrays[name] for name in lstm.ARRAY_NAMES)]
    grads = torch.autograd.grad(out.sum() + s_T.sum() + c_T.sum(), params)
    # the same masks, drawn again from the same seed, in the numpy reference: d/dA (A ∘ Z) = Z · d/d(A ∘ Z)
    B, T, k = x.shape
    masks = dropout.draw_masks(LSTM, spec, B, T, s0.shape[1], k, seeded(), "cpu", F64)
    z = {name: masks.weights[name] if name in masks.weights else 1.0 for name in lstm.ARRAY_NAMES}
    masked = {name: arrays[name] * z[name] for name in lstm.ARRAY_NAMES}
    w = [torch.ones_like(out), torch.ones_like(s_T), torch.ones_like(c_T)]
    (r_out, r_s, r_c), want = reference(x, None, masked, s0, c0, masks, w)
    assert_close([out, s_T, c_T], [r_out, r_s, r_c])
    assert_close(grads[:3], want[:3])
    assert_close(grads[3:], [g * np.asarray(z[name]) for g, name in zip(want[3:], lstm.ARRAY_NAMES)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec", [{"VariationalInput": 0.3}, dict.fromkeys(dropout.METHODS, 0.3)])
def test_cuda_matches_cpu(spec):
    x, arrays, s0, c0 = make_problem(lengths=RAGGED, seed=26)
    masks = dropout.draw_masks(LSTM, spec, 4, 6, 5, 3, seeded(), "cpu", F64)
    want, g_want, w = run_and_grad(lambda: lstm_masked(x, RAGGED, arrays, s0, c0, masks), x, arrays, s0, c0)
    dev = [v.detach().cuda().requires_grad_() for v in (x, s0, c0)]
    a_dev = {name: v.detach().cuda().requires_grad_() for name, v in arrays.items()}
    m_dev = dropout.Masks({k_: v.cuda() for k_, v in masks.weights.items()} if masks.weights else None,
                          *(None if z is None else z.cuda() for z in (masks.x, masks.s, masks.m)))
    out = lstm_masked(dev[0], RAGGED, a_dev, dev[1], dev[2], m_dev)
    loss = sum((o * v.cuda()).sum() for o, v in zip(out, w))
    grads = torch.autograd.grad(loss, [*dev, *(a_dev[name] for name in lstm.ARRAY_NAMES)])
    assert_close([v.cpu() for v in out], want, tol=1e-9)
    assert_close([g.cpu() for g in grads], g_want, tol=1e-9)
    # A CPU generator drives CUDA masks too (drawn on the CPU, then moved).
    got = dropout.draw_masks(LSTM, spec, 4, 6, 5, 3, seeded(), "cuda", F64)
    assert torch.equal(got.x.cpu(), masks.x)


# ---------------------------------------------------------------- the native (C++) time loops

def _run_custom(lengths, which, dtype, B=9, T=7, n=37, k=5):
    """`lstm_custom.run` on a problem with vector tails (n = 37) → (out, s_T, c_T), gradients."""
    x, arrays, s0, c0 = make_problem(B=B, T=T, n=n, k=k, lengths=lengths, seed=31, dtype=dtype)
    masks = random_masks(B, T, n, k, which, seed=32, dtype=dtype)
    got, grads, _ = run_and_grad(
        lambda: lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m), x, arrays, s0, c0)
    return got, grads


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, torch.tensor([7, 2, 5, 1, 7, 3, 6, 4, 2])], ids=["uniform", "ragged"])
@pytest.mark.parametrize("which", MASK_SETS)
def test_native_loops_equal_pure_torch_loops(which, lengths, dtype, monkeypatch):
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
    native_or_skip()
    got, g_got = _run_custom(lengths, which, dtype)
    monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    want, g_want = _run_custom(lengths, which, dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-12  # float32: sums in another order
    for g, w in zip([*got, *g_got], [*want, *g_want]):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("which", ["", "xsm"])
@pytest.mark.parametrize("ragged", [False, True], ids=["uniform", "ragged"])
def test_native_row_blocks_equal_pure_torch(which, ragged, monkeypatch):
    """A batch big enough that the native kernel runs its time loops in row blocks, one per
    thread (B ≥ 32 with 2 threads): the same numbers as the pure-torch loops."""
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
    native_or_skip()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lengths = torch.randint(1, 7, (41,), generator=torch.Generator().manual_seed(36)) if ragged else None
        got, g_got = _run_custom(lengths, which, F64, B=41, T=6, n=19, k=3)
        monkeypatch.setenv("WLNET_NO_NATIVE", "1")
        want, g_want = _run_custom(lengths, which, F64, B=41, T=6, n=19, k=3)
    finally:
        torch.set_num_threads(threads)
    for g, w in zip([*got, *g_got], [*want, *g_want]):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_native_buffers_are_not_reused_while_referenced():
    """The native kernel reuses its buffers across calls: outputs still held, and tensors saved
    for a backward not yet run, keep theirs."""
    x, arrays, s0, c0 = make_problem(B=9, T=7, n=37, k=5, seed=37)
    masks = random_masks(9, 7, 37, 5, "xsm", seed=38)

    def call(scale):
        return lstm_custom.run(x * scale, None, arrays, s0, c0, masks.x, masks.s, masks.m)

    alone, g_alone, w = run_and_grad(lambda: call(1.0), x, arrays, s0, c0)
    first = call(1.0)  # held, its backward pending
    kept = [v.detach().clone() for v in first]
    for scale in (0.5, 2.0, -1.0):  # later calls of the same shapes
        call(scale)
        with torch.no_grad():
            call(scale)
    assert all(torch.equal(a, b) for a, b in zip(first, kept))
    loss = sum((v * wv).sum() for v, wv in zip(first, w))
    grads = torch.autograd.grad(loss, [x, s0, c0, *(arrays[name] for name in lstm.ARRAY_NAMES)])
    assert_close(grads, g_alone, tol=0)


@pytest.mark.parametrize("lengths", [None, torch.tensor([7, 2, 5, 1, 7, 3, 6, 4, 2])], ids=["uniform", "ragged"])
def test_custom_path_without_grad_equals_with_grad(lengths):
    """Under no_grad the kernel runs without recording a graph: the same numbers."""
    x, arrays, s0, c0 = make_problem(B=9, T=7, n=37, k=5, lengths=lengths, seed=33)
    masks = random_masks(9, 7, 37, 5, "xsm", seed=34)
    zw = {name: (torch.rand(v.shape, generator=torch.Generator().manual_seed(35), dtype=F64) > 0.3).to(F64)
          for name, v in arrays.items() if not name.endswith("Biases")}
    want = lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m, zw)
    with torch.no_grad():
        got = lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m, zw)
    assert all(not g.requires_grad for g in got)
    assert_close(got, want, tol=0)


def test_native_loops_are_used_and_fallback_when_disabled(monkeypatch):
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
    lib = native_or_skip()
    calls = []

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(lib, name)

    monkeypatch.setattr(native, "_module", Spy())
    _run_custom(None, "sm", F64, B=3, T=3, n=4, k=2)
    assert calls == ["forward_rows", "backward_rows"]
    calls.clear()
    monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    _run_custom(None, "sm", F64, B=3, T=3, n=4, k=2)
    assert calls == []


def test_native_build_is_tried_once_and_failure_falls_back_quietly(monkeypatch, recwarn):
    tries = []

    def failing_build():
        tries.append(1)
        raise RuntimeError("no compiler")

    monkeypatch.setattr(native, "_build", failing_build)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.delenv("WLNET_REQUIRE_NATIVE", raising=False)
    monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    assert native.get() is None and tries == []  # disabled: not even tried
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.delenv("WLNET_NO_NATIVE")
    assert native.get() is None and native.get() is None and tries == [1]
    assert native.build_error() == "RuntimeError: no compiler"  # kept, not swallowed
    x = torch.zeros(2, 2)
    assert native.usable(x) is None
    lengths = torch.tensor([3, 1, 2])
    x, arrays, s0, c0 = make_problem(B=3, T=3, n=4, k=2, lengths=lengths, seed=31)
    masks = random_masks(3, 3, 4, 2, "xsm", seed=32)
    got, grads, w = run_and_grad(lambda: lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m),
                                 x, arrays, s0, c0)
    want, g_want = reference(x, lengths, arrays, s0, c0, masks, w)  # the fallback is still the recurrence
    assert_close(got, want)
    assert_close(grads, g_want)
    assert len(recwarn) == 0


@pytest.mark.parametrize("which", ["", "xsm"])
def test_native_wide_layer_one_block_with_split_passes_equals_fused_and_masked_reference(which):
    """From n = 768 the native kernel runs all rows as one block, its element-wise passes split
    over threads: values and gradients against torch's fused kernel (no masks) or the reference
    step (masks), on a ragged batch big enough for the split."""
    native_or_skip()
    B, T, n, k = 96, 3, 768, 2
    lengths = torch.tensor([3, 1, 2] * 32)
    x, arrays, s0, c0 = make_problem(B=B, T=T, n=n, k=k, lengths=lengths, seed=7)
    with torch.no_grad():
        for v in arrays.values():
            v.mul_(0.1)  # keep the gates off saturation at this width
    masks = random_masks(B, T, n, k, which, seed=8)
    got, g_got, w = run_and_grad(lambda: lstm_masked(x, lengths, arrays, s0, c0, masks), x, arrays, s0, c0)
    if which:
        want, g_want, _ = run_and_grad(lambda: _unrolled(x, lengths, arrays, s0, c0, masks), x, arrays, s0, c0)
    else:
        want, g_want, _ = run_and_grad(lambda: lstm.fused(x, lengths, lstm.pack(arrays), s0, c0), x, arrays, s0, c0)
    assert_close(got, want, tol=1e-9)
    assert_close(g_got, g_want, tol=1e-9)


def _unrolled(x, lengths, arrays, s0, c0, masks):
    out, (s, c) = recurrence.unroll(LSTM, arrays, x, lengths, (s0, c0), masks.x, masks.s, masks.m)
    return out, s, c


@pytest.mark.parametrize("backend", native.GEMMS)
def test_both_matrix_products_give_the_kernels_results(backend, monkeypatch):
    """The native kernels with either matrix product (the BLAS directly, torch's matmul) against
    the numpy reference: masks, a ragged batch, gradients."""
    native_or_skip()
    lib = native.get()
    before = lib.gemm()
    try:
        lib.set_gemm(native.GEMMS.index(backend))
        x, arrays, s0, c0 = make_problem(lengths=RAGGED, seed=31)
        B, T, k = x.shape
        masks = random_masks(B, T, s0.shape[1], k, "xsm", seed=32)
        got, g_got, w = run_and_grad(lambda: lstm_masked(x, RAGGED, arrays, s0, c0, masks), x, arrays, s0, c0)
        want, g_want = reference(x, RAGGED, arrays, s0, c0, masks, w)
        assert_close(got, want)
        assert_close(g_got, g_want)
    finally:
        lib.set_gemm(before)


def test_the_faster_matrix_product_is_chosen_and_the_environment_overrides(monkeypatch):
    native_or_skip()
    lib = native.get()
    before = lib.gemm()
    try:
        monkeypatch.delenv("WLNET_GEMM", raising=False)
        for times, want in (({"blas": 2.0, "aten": 1.0}, "aten"), ({"blas": 1.0, "aten": 3.0}, "blas")):
            monkeypatch.setattr(native, "_time_gemm", lambda lib, backend, times=times: times[backend])
            assert native.choose_gemm(lib) == want
            assert native.gemm() == want and lib.gemm() == native.GEMMS.index(want)

        def refuse(lib, backend):
            raise AssertionError("measured although WLNET_GEMM names the product")

        monkeypatch.setattr(native, "_time_gemm", refuse)
        monkeypatch.setenv("WLNET_GEMM", "aten")
        assert native.choose_gemm(lib) == "aten" and native.gemm() == "aten"
    finally:
        lib.set_gemm(before)
    monkeypatch.undo()
    assert native._time_gemm(lib, "blas", trials=1) > 0  # the real measurement runs
    lib.set_gemm(before)


def test_arrays_side_by_side_in_one_buffer_are_read_in_place_and_give_the_same_results():
    """NetTrain's flat buffer holds an LSTM's arrays in the native kernel's packed layout: the
    kernel reads the weights in place (no copy) and gives what it gives on separate arrays."""
    native_or_skip()
    x, arrays, s0, c0 = make_problem(lengths=RAGGED, seed=41)
    flat = torch.cat([arrays[name].detach().reshape(-1) for name in native_cells.LSTM_NAMES])
    views, offset = {}, 0
    for name in native_cells.LSTM_NAMES:
        size = arrays[name].numel()
        views[name] = torch.nn.Parameter(flat[offset:offset + size].view_as(arrays[name]))
        offset += size
    got, g_got, _ = run_and_grad(lambda: lstm_custom.run(x, RAGGED, views, s0, c0), x, views, s0, c0)
    want, g_want, _ = run_and_grad(lambda: lstm_custom.run(x, RAGGED, arrays, s0, c0), x, arrays, s0, c0)
    assert_close(got, want, tol=0)
    assert_close(g_got, g_want, tol=0)
    lib = native.get()
    arrs = [views[name].detach() for name in native_cells.LSTM_NAMES]
    wx, ws = lib.forward_rows(x, RAGGED.tolist(), s0, c0, arrs, [], None, None, None, False)[4:6]
    assert wx.data_ptr() == flat.data_ptr() and ws.data_ptr() == arrs[4].data_ptr()  # the buffer itself
    copied = lib.forward_rows(x, RAGGED.tolist(), s0, c0, [a.clone() for a in arrs], [], None, None, None, False)[4]
    assert copied.data_ptr() != flat.data_ptr() and torch.equal(copied, wx)


def test_nettrain_flat_buffer_holds_an_lstm_in_the_packed_layout():
    import wlnet as w
    from wlnet.train.options import optimizer

    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer(), w.LinearLayer(2)],
                                     Input=(4, 2)))
    module = net.build(trainable=True)
    _, flats = optimizer(module, {}, ("ADAM", {"LearningRate": 0.001, "Beta1": 0.9, "Beta2": 0.999,
                                               "Epsilon": 1e-8, "L2Regularization": 0.0}), flat=True)
    lstm = module._modules["1"]
    ptrs = [lstm._parameters[name].data_ptr() for name in native_cells.LSTM_NAMES]
    sizes = [lstm._parameters[name].numel() * 4 for name in native_cells.LSTM_NAMES]
    assert ptrs[0] == flats[0].leaf.data_ptr()
    assert all(b == a + s for a, b, s in zip(ptrs, ptrs[1:], sizes))


def test_the_matrix_product_measured_once_is_kept_for_the_machine(tmp_path, monkeypatch):
    class FakeModule:
        __file__ = str(tmp_path / "module.so")
        chosen = None

        def set_gemm(self, i):
            self.chosen = i

        def gemm(self):
            return self.chosen

    lib = FakeModule()
    monkeypatch.delenv("WLNET_GEMM", raising=False)
    monkeypatch.setattr(native, "_time_gemm", lambda lib, backend: {"blas": 2.0, "aten": 1.0}[backend])
    assert native._chosen_gemm(lib) == "aten" and lib.chosen == 1
    kept = (tmp_path / "wlnet_gemm.txt").read_text().splitlines()
    assert kept[1] == "aten" and torch.__version__ in kept[0]

    def refuse(lib, backend):
        raise AssertionError("measured again")

    monkeypatch.setattr(native, "_time_gemm", refuse)
    lib.chosen = None
    assert native._chosen_gemm(lib) == "aten" and lib.chosen == 1  # read back, not measured
    (tmp_path / "wlnet_gemm.txt").write_text("another machine\nblas\n")
    monkeypatch.setattr(native, "_time_gemm", lambda lib, backend: {"blas": 1.0, "aten": 2.0}[backend])
    assert native._chosen_gemm(lib) == "blas"  # a record of another machine: measured afresh


@pytest.mark.parametrize("lengths", [None, torch.tensor([6, 6, 5, 6])], ids=["in order", "one shorter"])
def test_native_stack_passes_views_and_equals_the_torch_path(lengths):
    """Two native LSTMs stacked, trained (rows in order, all of full length): the first's output is
    a view of its state buffer, which the second reads in place, and the second's input gradient
    reaches the first as a view too; values and every gradient equal the pure-torch path's.
    With a shorter row the rows move, and the outputs are plain (B, T, n) tensors."""
    native_or_skip()
    x, a1, s0, c0 = make_problem(B=4, T=6, n=5, k=3)
    a2 = make_problem(B=4, T=6, n=4, k=5, seed=1)[1]

    def stack(use_native):
        h = lstm_custom.run(x, lengths, a1, s0, c0, use_native=use_native)[0]
        out, s_T, c_T = lstm_custom.run(h, lengths, a2, use_native=use_native)
        return h, out, s_T, c_T

    got, want = stack(True), stack(False)
    B, T, n = got[0].shape
    assert got[0].stride() == ((n, B * n, 1) if lengths is None else (T * n, n, 1))
    g = torch.Generator().manual_seed(3)
    weights = [torch.randn(v.shape, generator=g, dtype=v.dtype) for v in got[1:]]
    params = [x, s0, c0, *a1.values(), *a2.values()]
    grads = [torch.autograd.grad(sum((v * w).sum() for v, w in zip(vals[1:], weights)), params)
             for vals in (got, want)]
    assert_close(got, want)
    assert_close(grads[0], grads[1])
    with torch.no_grad():  # evaluation: a copy, not a view of the kernel's buffers
        assert lstm_custom.run(x, lengths, a1, s0, c0, use_native=True)[0].is_contiguous()
