"""NaN stays NaN, ±inf behaves as in torch, in every recurrent kernel: the native kernels against
the cells' reference step (`recurrence.unroll`, plain torch ops), forward and backward, with NaN
and ±inf in the inputs, the initial states and the arrays; and a diverging run is caught at its
first non-finite loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.core.errors import NetWarning
from wlnet.kernels import cells, native, native_cells, recurrence

pytestmark = pytest.mark.skipif(native.usable_for(torch.device("cpu"), torch.float32) is None,
                                reason="the native kernels are not built")

NATIVE = {"LongShortTermMemoryLayer": native_cells.lstm, "GatedRecurrentLayer": native_cells.gru,
          "BasicRecurrentLayer": native_cells.rnn}
B, T, k, n = 4, 5, 3, 6  # n = 6 puts elements in a vector's tail as well as its body on every CPU


def _arrays(cell, dtype, g):
    return {name: (torch.randn(*shape, generator=g, dtype=dtype) * 0.5).requires_grad_()
            for name, shape in cell.array_shapes(n, k).items()}


def _poisoned(where: str, value: float, cell, dtype):
    """x (B, T, k), the initial states and the arrays, one entry of one of them set to `value`."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, k, generator=g, dtype=dtype)
    states = [torch.randn(B, n, generator=g, dtype=dtype) for _ in cell.states]
    a = {name: t.detach() for name, t in _arrays(cell, dtype, g).items()}
    if where == "input":
        x[1, 2, 0] = value
    elif where == "state":
        states[0][2, 4] = value
    else:
        a[cell.array(cell.gates[0], "InputWeights")][3, 1] = value
    return x, states, a


def _run(f, cell, x, states, a):
    """out, finals and the gradients of (out.sum() + finals' sums) with respect to x, the states, the arrays."""
    x = x.clone().requires_grad_()
    states = [s.clone().requires_grad_() for s in states]
    a = {name: t.clone().requires_grad_() for name, t in a.items()}
    out, finals = f(x, states, a)
    total = out.sum() + sum(s.sum() for s in finals)
    grads = torch.autograd.grad(total, [x, *states, *a.values()])
    return [out, *finals], list(grads)


def _same_non_finite(got, want, what):
    for i, (g, r) in enumerate(zip(got, want)):
        g, r = g.detach().numpy(), r.detach().numpy()
        assert np.array_equal(np.isnan(g), np.isnan(r)), f"{what} {i}: NaN at other places"
        assert np.array_equal(np.isposinf(g), np.isposinf(r)) and np.array_equal(np.isneginf(g), np.isneginf(r)), \
            f"{what} {i}: infinities at other places"
        finite = np.isfinite(r)
        np.testing.assert_allclose(g[finite], r[finite], rtol=1e-4, atol=1e-5, err_msg=f"{what} {i}")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["input", "state", "array"])
@pytest.mark.parametrize("name", list(NATIVE))
def test_native_kernels_propagate_nan_and_inf_as_the_reference_step(name, where, value):
    cell = next(c for c in cells.CELLS if c.name == name)
    x, states, a = _poisoned(where, value, cell, torch.float32)
    # full lengths: past a sequence's end the reference step still runs (its result discarded by a
    # select), and a NaN there reaches its gradients as 0·NaN, which is no property of the kernels
    lengths = None

    def reference(x, states, a):
        return recurrence.unroll(cell, a, x, lengths, tuple(states))

    def fast(x, states, a):
        out = NATIVE[name](x, lengths, a, *states)
        return out[0], tuple(out[1:])

    want_out, want_grads = _run(reference, cell, x, states, a)
    got_out, got_grads = _run(fast, cell, x, states, a)
    if value != value:  # NaN must reach the outputs (the kernels once clamped it to a finite number)
        assert torch.isnan(want_out[0]).any()
    _same_non_finite(got_out, want_out, "output")
    _same_non_finite(got_grads, want_grads, "gradient")


def test_a_diverging_run_through_a_native_lstm_stops_at_once_with_finite_arrays():
    # the net's output is the LSTM's: with NaN clamped by the kernel its loss looked finite for ever
    net = w.NetChain([w.LongShortTermMemoryLayer(1), w.SequenceLastLayer()], Input=("Varying", 2))
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((5, 2)).tolist(), [float(rng.standard_normal())]) for _ in range(64)]
    with pytest.warns(NetWarning):
        res = w.NetTrain(net, data, w.All, Method="ADAM", LearningRate=1e38, BatchSize=8, MaxTrainingRounds=5,
                         TrainingProgressReporting=None, RandomSeeding=1)
    assert res["ReasonTrainingStopped"] == "Divergence"
    assert len(res["BatchLossList"]) <= 3, res["BatchLossList"]  # not 40 batches of a fake constant loss
    trained = res["TrainedNet"]
    for pos, leaf in trained.leaves():
        for name, t in leaf._arrays.items():
            assert torch.isfinite(torch.as_tensor(t)).all(), (pos, name)
