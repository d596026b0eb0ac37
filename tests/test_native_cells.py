"""The masked GRU and basic RNN of `kernels.native_cells` (native C++ kernels), and the cells'
reference step that runs where those cannot.

Against an independent implementation of the formulas written below (plain torch, one sequence
at a time, unrolled, differentiated by autograd): outputs, final states and the gradients to x,
s0 and every array; uniform and ragged batches; each mask alone and all together; float32 and
float64. Also `torch.autograd.gradcheck` with masks, no_grad against grad, and row blocks on
two threads against one thread.
"""

from __future__ import annotations

import pytest
import torch

from wlnet.kernels import cells, dropout, native, native_cells, recurrence

F64 = torch.float64
GATES = native_cells.GRU_GATES  # Input, Reset, Memory: the order of the masks' gate axis
RAGGED = torch.tensor([6, 2, 5, 1, 6])


def native_or_skip():
    """The native module; a skip where it could not be built (a failure under
    WLNET_REQUIRE_NATIVE=1, where `native.get()` raises instead)."""
    lib = native.get()
    if lib is None:
        pytest.skip("the native kernel could not be built here")
    return lib


@pytest.fixture(autouse=True)
def _native_enabled(monkeypatch):
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)


# ---------------------------------------------------------------- reference (one sequence)

def ref_gru_seq(x, a, s, zx, zs, zm):
    """x (L, k); s (n,); zx (3, k), zs (3, n), zm (L, n) (ones for no mask); a: masked arrays."""
    out = []
    for t in range(x.shape[0]):
        wx = [a[f"{g}GateInputWeights"] @ (x[t] * zx[j]) + a[f"{g}GateBiases"] for j, g in enumerate(GATES)]
        ws = [a[f"{g}GateStateWeights"] @ (s * zs[j]) for j, g in enumerate(GATES)]
        z = torch.sigmoid(wx[0] + ws[0])
        r = torch.sigmoid(wx[1] + ws[1])
        m = torch.tanh(wx[2] + r * ws[2])
        s = (1 - z) * (m * zm[t]) + z * s
        out.append(s)
    return torch.stack(out), s


def ref_rnn_seq(x, a, s, zx, zs, zm):
    out = []
    for t in range(x.shape[0]):
        s = torch.tanh(a["InputWeights"] @ (x[t] * zx[0]) + a["StateWeights"] @ (s * zs[0]) + a["Biases"])
        out.append(s)
    return torch.stack(out), s


def reference(cell, x, lengths, arrays, s0, masks):
    """The batch, one sequence at a time, zeros past each end → out (B, T, n), s_T (B, n)."""
    B, T, k = x.shape
    n = s0.shape[1]
    G = 3 if cell == "gru" else 1
    zx = masks.get("zx", torch.ones(B, G, k, dtype=x.dtype))
    zs = masks.get("zs", torch.ones(B, G, n, dtype=x.dtype))
    zm = masks.get("zm", torch.ones(B, T, n, dtype=x.dtype))
    zw = masks.get("zw", {})
    a = {name: v * zw[name] if name in zw else v for name, v in arrays.items()}
    seq = ref_gru_seq if cell == "gru" else ref_rnn_seq
    outs, finals = [], []
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        o, s = seq(x[b, :L], a, s0[b], zx[b], zs[b], zm[b])
        outs.append(torch.cat([o, o.new_zeros(T - L, n)]))
        finals.append(s)
    return torch.stack(outs), torch.stack(finals)


# ---------------------------------------------------------------- problems

def shapes(cell, n, k):
    if cell == "rnn":
        return {"InputWeights": (n, k), "StateWeights": (n, n), "Biases": (n,)}
    return {f"{g}Gate{part}": shape for g in GATES
            for part, shape in (("InputWeights", (n, k)), ("StateWeights", (n, n)), ("Biases", (n,)))}


def problem(cell, B=5, T=6, n=37, k=5, lengths=None, which="", dtype=F64, seed=0, p=0.4):
    """Inputs, arrays and masks (`which`: letters of x, s, m, w), drawn in float64 and then cast
    to `dtype` (the same numbers in both), the inputs and arrays with gradients on."""
    g = torch.Generator().manual_seed(seed)

    def leaf(v):
        return v.to(dtype).requires_grad_()

    scale = min(0.5, 1.5 / (n + k) ** 0.5)  # pre-activations of order 1: no chaotic growth of rounding errors
    arrays = {name: leaf(torch.randn(shape, generator=g, dtype=F64) * scale)
              for name, shape in shapes(cell, n, k).items()}
    x = torch.randn(B, T, k, generator=g, dtype=F64)
    if lengths is not None:
        x = x * (torch.arange(T)[None, :, None] < lengths[:, None, None])
    x = leaf(x)
    s0 = leaf(torch.randn(B, n, generator=g, dtype=F64) * 0.5)
    G = 3 if cell == "gru" else 1

    def draw(*shape):
        return ((torch.rand(shape, generator=g, dtype=F64) >= p).to(F64) / (1 - p)).to(dtype)

    masks = {}
    if "x" in which:
        masks["zx"] = draw(B, G, k)
    if "s" in which:
        masks["zs"] = draw(B, G, n)
    if "m" in which:
        masks["zm"] = draw(B, T, n)
    if "w" in which:
        masks["zw"] = {name: draw(*v.shape) for name, v in arrays.items() if not name.endswith("Biases")}
    return x, arrays, s0, masks


def as_f64(x, arrays, s0, masks):
    """The problem in float64 (for the reference of a float32 run)."""
    def leaf(v):
        return v.detach().double().requires_grad_()

    cast = {name: {k_: z.double() for k_, z in v.items()} if name == "zw" else v.double() for name, v in masks.items()}
    return leaf(x), {name: leaf(v) for name, v in arrays.items()}, leaf(s0), cast


def call(cell, x, lengths, arrays, s0, masks):
    if cell == "gru":
        return native_cells.gru(x, lengths, arrays, s0, masks.get("zx"), masks.get("zs"), masks.get("zm"),
                                masks.get("zw"))
    return native_cells.rnn(x, lengths, arrays, s0, masks.get("zx"), masks.get("zs"), masks.get("zw"))


def with_grads(fn, x, arrays, s0, seed=5):
    """fn() → (out, s_T); a random linear loss of both; (out, s_T, gradients of x, s0, arrays)."""
    out, s_T = fn()
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(v.shape, generator=g, dtype=F64).to(v.dtype) for v in (out, s_T)]
    loss = (out * w[0]).sum() + (s_T * w[1]).sum()
    return [out, s_T, *torch.autograd.grad(loss, [x, s0, *arrays.values()])]


def assert_close(got, want, tol, scaled=False):
    """Elementwise within tol (relative and absolute); scaled: the absolute part relative to
    each tensor's largest entry (float32 against float64: gradients that are sums of many terms)."""
    for i, (g, w) in enumerate(zip(got, want)):
        atol = tol * max(1.0, float(w.detach().abs().max())) if scaled else tol
        torch.testing.assert_close(g, w.to(g.dtype), rtol=tol, atol=atol, msg=lambda m, i=i: f"item {i}: {m}")


GRU_MASKS = ["", "x", "s", "m", "w", "xsmw"]
RNN_MASKS = ["", "x", "s", "w", "xsw"]
CASES = [("gru", w) for w in GRU_MASKS] + [("rnn", w) for w in RNN_MASKS]


# ---------------------------------------------------------------- values and gradients

@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, RAGGED], ids=["uniform", "ragged"])
@pytest.mark.parametrize(("cell", "which"), CASES)
def test_native_equals_reference(cell, which, lengths, dtype):
    """float64 against the reference in float64; float32 against it too (the same inputs),
    within 1e-5 of each tensor's scale."""
    native_or_skip()
    x, arrays, s0, masks = problem(cell, lengths=lengths, which=which, dtype=dtype)
    got = with_grads(lambda: call(cell, x, lengths, arrays, s0, masks), x, arrays, s0)
    assert got[0].shape == (5, 6, 37) and got[1].shape == (5, 37) and all(v.dtype == dtype for v in got)
    if lengths is not None:
        assert torch.all(got[0][3, 1:] == 0)  # past the end of a sequence of length 1
    x, arrays, s0, masks = as_f64(x, arrays, s0, masks)
    want = with_grads(lambda: reference(cell, x, lengths, arrays, s0, masks), x, arrays, s0)
    if dtype == torch.float32:
        assert_close(got, want, 1e-5, scaled=True)
    else:
        assert_close(got, want, 1e-10)


@pytest.mark.parametrize("lengths", [None, RAGGED], ids=["uniform", "ragged"])
@pytest.mark.parametrize(("cell", "which"), [("gru", ""), ("gru", "xsmw"), ("rnn", "xsw")])
def test_without_the_native_kernel_the_cells_run_their_reference_step(cell, which, lengths, monkeypatch):
    """Where the native kernel cannot run, `recurrence.masked` runs the cell's reference step
    (`recurrence.unroll`, or the fused kernel for weight masks alone): the same values and gradients."""
    monkeypatch.setenv("WLNET_NO_NATIVE", "1")
    x, arrays, s0, masks = problem(cell, B=5, T=6, n=6, k=3, lengths=lengths, which=which)
    c = cells.GRU if cell == "gru" else cells.RNN
    m = dropout.Masks(masks.get("zw"), masks.get("zx"), masks.get("zs"), masks.get("zm"))
    assert recurrence.choose(c, x.device, x.dtype, m) == ("unroll" if which not in ("", "w") else "fused")

    def masked():
        out, (s,) = recurrence.masked(c, x, lengths, arrays, (s0,), m)
        return out, s

    got = with_grads(masked, x, arrays, s0)
    want = with_grads(lambda: reference(cell, x, lengths, arrays, s0, masks), x, arrays, s0)
    assert_close(got, want, 1e-10)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_zero_initial_state_and_lengths_shorter_than_T(cell):
    native_or_skip()
    x, arrays, s0, masks = problem(cell, n=9, which="xsmw" if cell == "gru" else "xsw", seed=3)
    zeros = torch.zeros_like(s0)
    assert_close(call(cell, x, None, arrays, None, masks), call(cell, x, None, arrays, zeros, masks), 0)
    short = torch.tensor([3, 2, 3, 1, 2])  # the longest is shorter than T: padded with zeros to T
    out, s_T = call(cell, x, short, arrays, s0, masks)
    want = reference(cell, x, short, arrays, s0, masks)
    assert_close([out, s_T], want, 1e-10)
    assert torch.all(out[:, 3:] == 0)
    assert_close(call(cell, x, torch.full((5,), 6), arrays, s0, masks), call(cell, x, None, arrays, s0, masks), 0)


@pytest.mark.parametrize("lengths", [None, torch.tensor([3, 1, 2])], ids=["uniform", "ragged"])
@pytest.mark.parametrize(("cell", "which"), [("gru", "xsmw"), ("gru", "m"), ("rnn", "xsw")])
def test_gradcheck_with_masks(cell, which, lengths):
    native_or_skip()
    x, arrays, s0, masks = problem(cell, B=3, T=3, n=3, k=2, lengths=lengths, which=which, seed=7, p=0.3)
    names = list(arrays)

    def f(x, s0, *arrs):
        return call(cell, x, lengths, dict(zip(names, arrs)), s0, masks)

    assert torch.autograd.gradcheck(f, (x, s0, *arrays.values()))


@pytest.mark.parametrize("lengths", [None, RAGGED], ids=["uniform", "ragged"])
@pytest.mark.parametrize(("cell", "which"), [("gru", "xsmw"), ("rnn", "xsw")])
def test_no_grad_equals_grad(cell, which, lengths):
    native_or_skip()
    x, arrays, s0, masks = problem(cell, lengths=lengths, which=which, seed=9)
    want = call(cell, x, lengths, arrays, s0, masks)
    with torch.no_grad():
        got = call(cell, x, lengths, arrays, s0, masks)
    assert all(not v.requires_grad for v in got) and all(v.requires_grad for v in want)
    assert_close(got, want, 0)


@pytest.mark.parametrize("ragged", [False, True], ids=["uniform", "ragged"])
@pytest.mark.parametrize(("cell", "which"), [("gru", ""), ("gru", "xsmw"), ("rnn", "xsw")])
def test_row_blocks_on_two_threads_equal_one_thread(cell, which, ragged):
    """B = 41: with 2 threads the kernels run their time loops in two row blocks."""
    native_or_skip()
    lengths = torch.randint(1, 7, (41,), generator=torch.Generator().manual_seed(11)) if ragged else None
    x, arrays, s0, masks = problem(cell, B=41, T=6, n=19, k=3, lengths=lengths, which=which, seed=12)
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2):
            torch.set_num_threads(t)
            results.append(with_grads(lambda: call(cell, x, lengths, arrays, s0, masks), x, arrays, s0))
    finally:
        torch.set_num_threads(threads)
    assert_close(results[1], results[0], 1e-12)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_masks_of_the_wrong_shape_or_dtype_are_errors(cell):
    native_or_skip()
    x, arrays, s0, masks = problem(cell, B=3, T=3, n=4, k=2, which="xsw")
    G = 3 if cell == "gru" else 1
    bad = [{"zx": masks["zx"][:, :, :1]}, {"zs": torch.ones(3, G + 1, 4, dtype=F64)}, {"zx": masks["zx"].float()},
           {"zw": {next(iter(masks["zw"])): torch.ones(4, dtype=F64)}}]
    if cell == "gru":
        bad.append({"zm": torch.ones(3, 2, 4, dtype=F64)})
    for b in bad:
        with pytest.raises(RuntimeError, match="wlnet native: mask"):
            call(cell, x, None, arrays, s0, b)


def test_the_native_kernels_run(monkeypatch):
    lib = native_or_skip()
    calls = []

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(lib, name)

    monkeypatch.setattr(native, "_module", Spy())
    for cell in ("gru", "rnn"):
        x, arrays, s0, masks = problem(cell, B=3, T=3, n=4, k=2, which="xs")
        with_grads(lambda cell=cell, x=x, arrays=arrays, s0=s0, masks=masks: call(cell, x, None, arrays, s0, masks),
                   x, arrays, s0)
    assert calls == ["gru_forward", "gru_backward", "rnn_forward", "rnn_backward"]
