"""Evaluation options: BatchSize, WorkingPrecision, TargetDevice."""

import numpy as np
import pytest
import torch

import reference
import wlnet as w
from reference import forward


def _net():
    return w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SequenceLastLayer()], Input=("Varying", 2)))


def test_batch_size_chunks_give_the_same_results():
    rng = np.random.default_rng(0)
    layer = w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    xs = [rng.normal(size=(t, 2)).tolist() for t in (3, 1, 4, 2, 5)]
    whole, chunked = layer(xs), layer(xs, BatchSize=2)
    assert [len(c) for c in chunked] == [3, 1, 4, 2, 5]
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, atol=1e-6)
    net = _net()
    np.testing.assert_allclose(net(xs), net(xs, BatchSize=3), atol=1e-6)


def test_real64_precision():
    layer = w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    x = np.random.default_rng(1).normal(size=(4, 2))  # float64 data, read in float64
    out = layer(x, WorkingPrecision="Real64")
    assert out.dtype == np.float64
    arrays = {k[-1]: v.astype(np.float64) for k, v in w.Information(layer, "Arrays").items()}
    np.testing.assert_allclose(out, forward(x, arrays)[0], atol=1e-12)


@pytest.mark.parametrize("opt, value, text", [
    ("BatchSize", 0, "BatchSize must be a positive integer"),
    ("WorkingPrecision", "Real16", "WorkingPrecision"),
    ("TargetDevice", "TPU", "TargetDevice"),
])
def test_bad_evaluation_options(opt, value, text):
    with pytest.raises(w.OptionError, match=text):
        _net()([[1, 2]], **{opt: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_gpu_without_cuda_is_a_clear_error():
    with pytest.raises(w.OptionError, match="no CUDA device"):
        _net()([[1, 2]], TargetDevice="GPU")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_equals_cpu():
    net = _net()
    x = np.random.default_rng(2).normal(size=(3, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(net(x, TargetDevice="GPU"), net(x), atol=1e-5)


def test_padded_ragged_kernel_equals_packed():
    from wlnet.kernels.cells import LSTM
    from wlnet.kernels.recurrence import fused

    torch.manual_seed(0)
    n, k = 4, 3
    w = [torch.randn(4 * n, k), torch.randn(4 * n, n), torch.randn(4 * n), torch.zeros(4 * n)]
    x = torch.randn(5, 6, k)
    lengths = torch.tensor([6, 1, 3, 6, 2])
    x = x * (torch.arange(6)[None, :, None] < lengths[:, None, None])
    out_p, (s_p, c_p) = fused(LSTM, x, lengths, w)
    out_q, (s_q, c_q) = fused(LSTM, x, lengths, w, exact=False)
    torch.testing.assert_close(out_q, out_p)
    torch.testing.assert_close(s_q, s_p)
    assert c_q is None
    # the exact final states, each at its own end, against the float64 numpy reference
    a = {name: v.double().numpy() for name, v in LSTM.unpack(*w[:3]).items()}
    _, s_r, c_r = reference.forward_batch([x[b, :L].double().numpy() for b, L in enumerate(lengths.tolist())], a)
    np.testing.assert_allclose(s_p.numpy(), s_r, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_p.numpy(), c_r, rtol=1e-5, atol=1e-5)


def test_all_states_of_ragged_batch_are_exact():
    layer = w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2)), RandomSeeding=4)
    arrays = {k[-1]: v.astype(np.float64) for k, v in w.Information(layer, "Arrays").items()}
    rng = np.random.default_rng(5)
    seqs = [rng.normal(size=(t, 2)) for t in (4, 1, 3)]
    states = layer([s.tolist() for s in seqs], w.NetPort(w.All, "States"))
    for i, seq in enumerate(seqs):
        _, s, c = forward(seq, arrays)
        np.testing.assert_allclose(states[("State",)][i], s, atol=1e-5)
        np.testing.assert_allclose(states[("CellState",)][i], c, atol=1e-5)
