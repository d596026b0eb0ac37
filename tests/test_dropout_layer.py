"""Dropout at the layer level: the page's scenarios 7 and 8, modes, seeding, and the layer's use of
the kernels (tests/test_dropout_kernels.py checks the masks themselves)."""

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.kernels import dropout, recurrence

X = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def _pair(n, spec):
    """A layer with dropout and the same arrays without it."""
    layer = w.NetInitialize(w.LongShortTermMemoryLayer(n, Input=("Varying", 2), Dropout=spec))
    arrays = {k[-1]: v for k, v in w.Information(layer, "Arrays").items()}
    return layer, w.LongShortTermMemoryLayer(n, Input=("Varying", 2), **arrays)


def test_scenario_7_variational_input_and_state():
    layer, plain = _pair(10, {"VariationalInput": 0.1, "VariationalState": 0.5})
    assert np.array_equal(layer(X), plain(X))  # test mode: bit for bit the plain recurrence
    a = layer(X, NetEvaluationMode="Train", RandomSeeding=1)
    b = layer(X, NetEvaluationMode="Train", RandomSeeding=1)
    assert np.array_equal(a, b)
    assert not np.allclose(a, plain(X))


def test_scenario_8_dropout_only_in_training():
    layer, plain = _pair(3, 0.5)
    assert layer._dropout == {"VariationalWeights": 0.5}
    assert np.array_equal(layer(X), layer(X)) and np.array_equal(layer(X), plain(X))
    runs = [layer(X, NetEvaluationMode="Train") for _ in range(4)]
    assert any(not np.array_equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("spec", [0.3, {"VariationalInput": 0.3}, {"VariationalState": 0.3}, {"StateUpdate": 0.3},
                                  {"VariationalWeights": 0.2, "VariationalInput": 0.2, "VariationalState": 0.2,
                                   "StateUpdate": 0.2}])
def test_train_mode_is_the_kernel_with_masks_from_the_seed(spec):
    layer, _ = _pair(4, spec)
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    got = layer(x, NetEvaluationMode="Train", RandomSeeding=7)
    arrays = {k[-1]: torch.from_numpy(v) for k, v in w.Information(layer, "Arrays").items()}
    g = torch.Generator().manual_seed(7)
    masks = dropout.draw_masks(layer.CELL, layer._dropout, 3, 5, 4, 2, g, "cpu", torch.float32)
    want, _ = recurrence.masked(layer.CELL, torch.from_numpy(x), None, arrays, (), masks)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


def test_zero_probabilities_equal_no_dropout_in_train_mode():
    layer, plain = _pair(4, {"VariationalState": 0.0, "StateUpdate": 0.0})
    seqs = [np.random.default_rng(t).normal(size=(t, 2)).tolist() for t in (3, 1, 4)]
    for a, b in zip(layer(seqs, NetEvaluationMode="Train"), plain(seqs)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_ragged_batch_in_train_mode_keeps_lengths_and_final_states():
    layer, _ = _pair(3, {"StateUpdate": 0.4, "VariationalState": 0.4})
    graph = w.NetGraph([layer], [(w.NetPort(1, "State"), w.NetPort("s"))])
    seqs = [np.random.default_rng(t).normal(size=(t, 2)).tolist() for t in (4, 1, 2)]
    res = graph(seqs, NetEvaluationMode="Train", RandomSeeding=3)
    assert [len(o) for o in res["Output"]] == [4, 1, 2]
    for out, s in zip(res["Output"], res["s"]):
        np.testing.assert_allclose(out[-1], s, atol=1e-7)


def test_training_with_every_method_lowers_the_loss():
    spec = {"VariationalWeights": 0.1, "VariationalInput": 0.1, "VariationalState": 0.1, "StateUpdate": 0.1}
    net = w.NetChain([w.LongShortTermMemoryLayer(8, Dropout=spec), w.SequenceLastLayer(), 1], Input=("Varying", 2),
                     Output="Scalar")
    rng = np.random.default_rng(1)
    data = [(x.tolist(), float(x.sum())) for x in (rng.normal(size=(int(rng.integers(1, 6)), 2)) for _ in range(256))]
    res = w.NetTrain(net, data, w.All, MaxTrainingRounds=20, LearningRate=0.02, BatchSize=32,
                     TrainingProgressReporting=None)
    assert res["RoundLossList"][-1] < 0.5 * res["RoundLossList"][0]
