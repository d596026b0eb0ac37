"""CTCLossLayer: Wolfram's blank (the last class) and 1-based targets; the loss against a brute
force sum over every alignment and against torch's ctc_loss with the blank moved to class 0, on
ragged inputs and targets; the SoftmaxLayer shortcut; gradcheck; typed errors; NetTrain in a
NetGraph; Export/Import and to_torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wlnet import (
    All,
    CTCLossLayer,
    Export,
    Import,
    InputError,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetGraph,
    NetInitialize,
    NetMapOperator,
    NetPort,
    NetTrain,
    ShapeError,
    SoftmaxLayer,
    TrainingError,
    to_torch,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx
from wlnet.layers.basic import softmax

RNG = np.random.default_rng(3)
C = 4  # classes 1..3 and the blank (4)


def probs(T, c=C):
    e = np.exp(RNG.standard_normal((T, c)))
    return e / e.sum(1, keepdims=True)


def brute_force(p: np.ndarray, target: list) -> float:
    """−log of the total probability of the paths that read the target once repeats are merged
    and blanks (the last class) removed."""
    T, c = p.shape
    blank = c - 1
    total = 0.0
    for path in itertools.product(range(c), repeat=T):
        merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
        if [k + 1 for k in merged if k != blank] == target:
            total += np.prod([p[t, k] for t, k in enumerate(path)])
    return -np.log(total)


EXAMPLES = [(probs(5), [1, 2]), (probs(3), [3]), (probs(4), [2, 2]), (probs(6), [1, 3, 1]), (probs(2), [1])]


def test_the_loss_is_the_brute_force_sum_over_alignments_on_a_ragged_batch():
    layer = CTCLossLayer(Input=("Varying", C))
    out = layer({"Input": [p.tolist() for p, _ in EXAMPLES], "Target": [t for _, t in EXAMPLES]})
    assert len(out) == len(EXAMPLES)
    for got, (p, t) in zip(out, EXAMPLES):
        np.testing.assert_allclose(got, brute_force(p, t), rtol=1e-5)
        np.testing.assert_allclose(layer({"Input": p.tolist(), "Target": t}), brute_force(p, t), rtol=1e-5)


def test_the_loss_equals_torchs_ctc_loss_with_the_blank_moved_to_class_zero():
    layer = CTCLossLayer()
    Ts, Ss = [7, 3, 9, 5], [3, 1, 4, 2]
    ps = [probs(T, 6) for T in Ts]
    ts = [list(RNG.integers(1, 6, S)) for S in Ss]
    out = layer({"Input": [p.tolist() for p in ps], "Target": [[int(v) for v in t] for t in ts]})
    for got, p, t in zip(out, ps, ts):
        moved = np.concatenate([p[:, -1:], p[:, :-1]], 1)  # blank first: torch's blank=0, classes 1..c as given
        want = F.ctc_loss(torch.log(torch.tensor(moved)).unsqueeze(1), torch.tensor([t]), [len(p)], [len(t)],
                          blank=0, reduction="none")
        np.testing.assert_allclose(got, float(want), rtol=1e-5)


def test_after_a_softmax_the_loss_is_taken_from_its_logits_with_the_same_value():
    x = torch.randn(2, 5, C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lengths, target = torch.tensor([5, 3]), Seq(torch.tensor([[1, 2, 3], [2, 0, 0]]), torch.tensor([3, 1]))
    module = CTCLossLayer(Input=("Varying", C)).build(trainable=True).double()

    def loss(p):
        out, _ = module({"Input": Seq(p, lengths), "Target": target}, {}, Ctx(False, None))
        return out["Output"]

    via_logits = loss(softmax(x))
    plain = loss(torch.softmax(x, -1))
    np.testing.assert_allclose(via_logits.numpy(), plain.numpy(), rtol=1e-10)
    for j, (T, t) in enumerate([(5, [1, 2, 3]), (3, [2])]):
        np.testing.assert_allclose(float(plain[j]), brute_force(torch.softmax(x[j, :T], -1).numpy(), t), rtol=1e-8)
    xg = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: loss(softmax(z)), (xg,))
    p = torch.softmax(x, -1).clone().requires_grad_()
    assert torch.autograd.gradcheck(loss, (p,))


def test_bad_targets_and_inputs_are_input_errors_naming_the_port():
    layer = CTCLossLayer(Input=("Varying", C))
    p = probs(3).tolist()
    for target, what in (([1, 4], "between 1 and 3"), ([1, 1, 2], "needs at least 4 input steps"), ([0], "index 0")):
        with pytest.raises(InputError) as info:
            layer({"Input": p, "Target": target})
        assert 'CTCLossLayer, port "Target"' in str(info.value) and what in str(info.value), str(info.value)
    with pytest.raises(InputError) as info:
        layer({"Input": (np.array(p) * 2).tolist(), "Target": [1]})
    assert 'port "Input"' in str(info.value) and "SoftmaxLayer" in str(info.value)
    with pytest.raises(InputError) as info:  # the second example's target is too long for its input
        layer({"Input": [probs(4).tolist(), probs(1).tolist()], "Target": [[1, 2], [1, 2]]})
    assert "example 2" in str(info.value)


@pytest.mark.parametrize("make", [lambda: CTCLossLayer(Input=3), lambda: CTCLossLayer(Input=("Varying", 1)),
                                  lambda: CTCLossLayer(Target=(3, 2)), lambda: CTCLossLayer(Input=(4, 2, 2))])
def test_shapes_that_cannot_fit_are_shape_errors(make):
    with pytest.raises(ShapeError) as info:
        make()
    assert "CTCLossLayer" in str(info.value)


def _graph():
    return NetGraph({"lstm": LongShortTermMemoryLayer(8), "map": NetMapOperator(LinearLayer(C)), "sm": SoftmaxLayer(),
                     "ctc": CTCLossLayer()},
                    [(NetPort("Input"), "lstm"), ("lstm", "map"), ("map", "sm"), ("sm", NetPort("ctc", "Input")),
                     (NetPort("Target"), NetPort("ctc", "Target"))], Input=("Varying", 2))


def _data(n=12):
    out = []
    for _ in range(n):
        t = [int(v) for v in RNG.integers(1, C, RNG.integers(1, 3))]
        x = np.concatenate([np.eye(2)[[k % 2]] * k + 0.1 * RNG.standard_normal((2, 2)) for k in t])
        out.append({"Input": x.tolist(), "Target": t})
    return out


def test_net_train_minimizes_the_ctc_loss_of_a_graph():
    g = NetInitialize(_graph(), RandomSeeding=2)
    assert g.output_ports()["Output"].dims == ()
    assert g.input_ports()["Target"].levels == C - 1
    data = _data()
    res = NetTrain(g, data, All, MaxTrainingRounds=15, BatchSize=4, TrainingProgressReporting=None, RandomSeeding=1)
    losses = res["RoundLossList"]
    assert len(losses) == 15 and losses[-1] < losses[0]
    with pytest.raises(TrainingError):
        NetTrain(NetInitialize(LinearLayer(2, Input=2)), [([1.0, 2.0], [1.0, 0.0])], LossFunction=CTCLossLayer(),
                 MaxTrainingRounds=1, TrainingProgressReporting=None)


def test_export_import_and_to_torch(tmp_path):
    for net in (CTCLossLayer(Input=("Varying", C)), NetInitialize(_graph(), RandomSeeding=4)):
        Export(tmp_path / "n.wlnet", net)
        back = Import(tmp_path / "n.wlnet")
        assert type(back) is type(net) and back.input_form() == net.input_form()
        assert back.input_ports() == net.input_ports() and back.output_ports() == net.output_ports()
    example = _data(1)[0]
    assert back(example) == net(example)
    module = to_torch(net)
    got = module(torch.tensor(example["Input"], dtype=torch.float32)[None],
                 torch.tensor(example["Target"])[None])
    np.testing.assert_allclose(float(got[0].detach()), net(example), rtol=1e-5)
