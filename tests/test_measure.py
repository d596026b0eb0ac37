"""NetMeasurements on nets whose outputs are known exactly."""

import numpy as np
import pytest

import wlnet as w
from wlnet.nets.measure import NetMeasurements

LABELS = ["a", "b", "c"]


def classifier():
    """Input a size-3 vector; the softmax of the input itself (identity weights): the decision
    is the index of the largest entry."""
    return w.NetChain([w.LinearLayer(3, Weights=np.eye(3).tolist(), Biases=[0.0, 0.0, 0.0]), w.SoftmaxLayer()], Input=3,
                      Output=w.NetDecoder(("Class", LABELS)))


DATA = [
    ([5.0, 0.0, 0.0], "a"),  # predicted a
    ([0.0, 5.0, 0.0], "b"),  # b
    ([0.0, 0.0, 5.0], "a"),  # c, wrong
    ([0.0, 5.0, 0.0], "c"),  # b, wrong
    ([0.0, 0.0, 5.0], "c"),  # c
]


def test_accuracy_error_rate_and_confusion_matrix():
    net = classifier()
    assert NetMeasurements(net, DATA, "Accuracy") == pytest.approx(0.6)
    assert NetMeasurements(net, DATA, "ErrorRate") == pytest.approx(0.4)
    cm = NetMeasurements(net, DATA, "ConfusionMatrix")
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 1]]  # rows: target class; columns: predicted
    both = NetMeasurements(net, DATA[:2], ["Accuracy", "ErrorRate"])
    assert both == [1.0, 0.0]


def test_mean_square_and_mean_deviation_of_a_regression_net():
    net = w.NetChain([w.LinearLayer(1, Weights=[[2.0, -1.0]], Biases=[0.5])], Input=2, Output="Scalar")
    data = [([1.0, 1.0], 1.0), ([2.0, 0.0], 5.0), ([0.0, 3.0], -2.0)]
    # outputs 1.5, 4.5, -2.5 → differences 0.5, -0.5, -0.5
    assert NetMeasurements(net, data, "MeanSquare") == pytest.approx(0.25)
    assert NetMeasurements(net, data, "MeanDeviation") == pytest.approx(0.5)
    assert NetMeasurements(net, data, "Loss") == pytest.approx(0.25)


def test_mean_square_of_class_outputs_compares_probabilities_with_one_hot_targets():
    net = classifier()
    p = np.array(net([x for x, _ in DATA], "Probabilities"))
    probs = np.array([[d[lab] for lab in LABELS] for d in p])
    onehot = np.eye(3)[[LABELS.index(y) for _, y in DATA]]
    assert NetMeasurements(net, DATA, "MeanSquare") == pytest.approx(np.mean((probs - onehot) ** 2), rel=1e-5)


def test_accuracy_of_ragged_sequence_outputs_counts_real_steps():
    lstm = w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    xs = [[[1.0, 0.0]] * 2, [[0.0, 1.0]] * 4]
    outs = lstm(xs)
    targets = [[[1.0 if j == int(np.argmax(v)) else 0.0 for j in range(3)] for v in o] for o in outs]
    assert NetMeasurements(lstm, list(zip(xs, targets)), "Accuracy") == 1.0
    targets[1][3] = [float(v) for v in np.roll(targets[1][3], 1)]
    assert NetMeasurements(lstm, list(zip(xs, targets)), "Accuracy") == pytest.approx(5 / 6)


def test_errors():
    net = classifier()
    with pytest.raises(w.OptionError, match="not a known measurement"):
        NetMeasurements(net, DATA, "Precision!")
    scalar = w.NetChain([w.LinearLayer(1, Weights=[[1.0, 1.0]], Biases=[0.0])], Input=2, Output="Scalar")
    with pytest.raises(w.TrainingError, match="needs a classifier"):
        NetMeasurements(scalar, [([1.0, 1.0], 2.0)], "Accuracy")
    with pytest.raises(w.TrainingError, match=r"NetMeasurements: example 2: .*port \"Output\".*'d'"):
        NetMeasurements(net, [([1.0, 0.0, 0.0], "a"), ([1.0, 0.0, 0.0], "d")], "Accuracy")
    with pytest.raises(w.InitializationError):
        NetMeasurements(w.NetChain([w.LinearLayer(3), w.SoftmaxLayer()], Input=3), DATA, "Accuracy")
