"""NetNestOperator: a net applied n times to its own output, its arrays shared; against numpy,
gradients by gradcheck, NetTrain, the code that rebuilds it, a saved file, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wlnet import (
    AttentionLayer,
    ElementwiseLayer,
    Export,
    Import,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetExtract,
    NetInitialize,
    NetNestOperator,
    NotSupportedError,
    OptionError,
    ShapeError,
)
from wlnet.core.runtime import Ctx
from wlnet.train.api import NetTrain


def test_applies_the_net_n_times_with_one_set_of_arrays():
    step = NetChain([LinearLayer(3), ElementwiseLayer("Tanh")])
    net = NetInitialize(NetNestOperator(step, 4, Input=3), RandomSeeding=3)
    W = np.asarray(NetExtract(net, ("Net", 1, "Weights")), np.float64)
    b = np.asarray(NetExtract(net, ("Net", 1, "Biases")), np.float64)
    x = np.random.default_rng(0).standard_normal((5, 3))
    want = x
    for _ in range(4):
        want = np.tanh(want @ W.T + b)
    np.testing.assert_allclose(net(x.astype(np.float32)), want, rtol=1e-5, atol=1e-6)
    assert sorted(k[-1] for k in net.arrays()) == ["Biases", "Weights"]  # one LinearLayer's, shared


def test_gradients_sum_over_the_applications():
    net = NetInitialize(NetNestOperator(LinearLayer(2), 3, Input=2))
    module = net.build(trainable=True).double()
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        out, _ = torch.func.functional_call(module, dict(zip(names, ps)), ({"Input": x}, {}, Ctx(False, None)))
        return out["Output"]

    assert torch.autograd.gradcheck(f, (x, *params))


def test_trains_a_nested_linear_map_to_a_cube_of_a_matrix():
    rng = np.random.default_rng(1)
    A = np.array([[0.9, 0.2], [-0.1, 0.8]])
    x = rng.standard_normal((256, 2)).astype(np.float32)
    y = (x @ np.linalg.matrix_power(A, 3).T).astype(np.float32)
    net = NetNestOperator(LinearLayer(2), 3, Input=2)
    trained = NetTrain(net, {"Input": x, "Output": y}, MaxTrainingRounds=150, BatchSize=64, LearningRate=0.02,
                       RandomSeeding=2, TrainingProgressReporting=None)
    np.testing.assert_allclose(trained(x[:16]), y[:16], atol=0.05)


def test_input_form_and_a_saved_file_rebuild_it(tmp_path):
    net = NetInitialize(NetNestOperator(LinearLayer(3), 2, Input=3))
    x = [[1.0, 2.0, 3.0]]
    rebuilt = eval(net.input_form(), {"NetNestOperator": NetNestOperator, "LinearLayer": LinearLayer})
    np.testing.assert_array_equal(rebuilt(x), net(x))
    path = str(tmp_path / "nest.wlnet")
    Export(path, net)
    np.testing.assert_array_equal(Import(path)(x), net(x))


def test_bad_nets_and_counts_are_typed_errors():
    with pytest.raises(OptionError, match="number of applications"):
        NetNestOperator(LinearLayer(3), 0)
    with pytest.raises(ShapeError, match="output must be able to feed its input"):
        NetNestOperator(LinearLayer(2, Input=3), 2)
    with pytest.raises(ShapeError, match="one input port"):
        NetNestOperator(AttentionLayer("Dot"), 2)
    with pytest.raises(NotSupportedError, match="recurrent states"):
        NetNestOperator(LongShortTermMemoryLayer(3), 2)
