"""Evaluation options: BatchSize, WorkingPrecision, TargetDevice."""

import numpy as np
import pytest
import torch

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
    x = np.random.default_rng(1).normal(size=(4, 2))
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
