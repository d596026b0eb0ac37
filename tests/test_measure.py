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


# DATA's confusion matrix (actual down, predicted across): [[1, 0, 1], [0, 1, 0], [0, 1, 1]]
# Wolfram's measurement forms → their values, by hand from it
@pytest.mark.parametrize("spec, expected", [
    ("Precision", {"a": 1.0, "b": 0.5, "c": 0.5}),  # tp / (tp + fp) per class
    ("Recall", {"a": 0.5, "b": 1.0, "c": 0.5}),  # tp / (tp + fn)
    ("F1Score", {"a": 2 / 3, "b": 2 / 3, "c": 0.5}),  # 2tp / (2tp + fp + fn)
    ({"Measurement": "F1Score", "ClassAveraging": "Macro"}, (2 / 3 + 2 / 3 + 0.5) / 3),
    ({"Measurement": "F1Score", "ClassAveraging": "Micro"}, 6 / 10),  # tp 3, fp 2, fn 2 summed
    ({"Measurement": "Precision", "ClassAveraging": "Macro"}, 2 / 3),
    ({"Measurement": "Recall", "ClassAveraging": "Micro"}, 3 / 5),
    ({"Measurement": "Recall"}, {"a": 0.5, "b": 1.0, "c": 0.5}),
    ("CohenKappa", (3 / 5 - 8 / 25) / (1 - 8 / 25)),  # po 3/5; pe from totals (2, 1, 2)·(1, 2, 2) / 25
])
def test_classification_measurements_by_wolfram_form(spec, expected):
    got = NetMeasurements(classifier(), DATA, spec)
    if isinstance(expected, dict):
        assert list(got) == LABELS
        assert got == pytest.approx(expected)
    else:
        assert got == pytest.approx(expected)


def test_a_class_never_predicted_or_never_present_is_nan_and_left_out_of_the_macro_average():
    data = [([5.0, 0.0, 0.0], "a"), ([0.0, 5.0, 0.0], "a")]  # c: no examples, never predicted
    precision = NetMeasurements(classifier(), data, "Precision")
    assert precision["a"] == 1.0 and precision["b"] == 0.0 and np.isnan(precision["c"])
    assert NetMeasurements(classifier(), data, {"Measurement": "Precision", "ClassAveraging": "Macro"}) == 0.5


def test_perplexity_is_exp_of_the_mean_cross_entropy():
    p_top = np.exp(5) / (np.exp(5) + 2)  # the softmax of (5, 0, 0)
    p_low = 1 / (np.exp(5) + 2)
    mean_nll = -(3 * np.log(p_top) + 2 * np.log(p_low)) / 5  # 3 examples right, 2 wrong
    assert NetMeasurements(classifier(), DATA, "Perplexity") == pytest.approx(np.exp(mean_nll), rel=1e-5)


def test_roc_curve_per_class_against_numpy():
    net = classifier()
    xs = [x for x, _ in DATA]
    probs = np.array([[d[lab] for lab in LABELS] for d in net(xs, "Probabilities")])
    truth = np.eye(3, dtype=bool)[[LABELS.index(y) for _, y in DATA]]
    roc = NetMeasurements(net, DATA, "ROCCurve")
    thresholds = np.linspace(0, 1, 101)
    for i, lab in enumerate(LABELS):
        chosen = probs[None, :, i] >= thresholds[:, None]  # (thresholds, examples)
        tp = (chosen & truth[:, i]).sum(1)
        fp = (chosen & ~truth[:, i]).sum(1)
        positives, negatives = truth[:, i].sum(), (~truth[:, i]).sum()
        np.testing.assert_allclose(roc[lab][0], fp / negatives)
        np.testing.assert_allclose(roc[lab][1], tp / positives)
    macro = NetMeasurements(net, DATA, {"Measurement": "ROCCurve", "ClassAveraging": "Macro"})
    np.testing.assert_allclose(macro[1], np.mean([roc[lab][1] for lab in LABELS], axis=0))
    assert roc["a"][0][0] == 1.0 and roc["a"][1][-1] == 0.0  # threshold 0: all chosen; 1: none (p < 1)


def test_r_squared_and_standard_deviation_of_a_regression_net():
    net = w.NetChain([w.LinearLayer(1, Weights=[[2.0, -1.0]], Biases=[0.5])], Input=2, Output="Scalar")
    data = [([1.0, 1.0], 1.0), ([2.0, 0.0], 5.0), ([0.0, 3.0], -2.0)]
    out, t = np.array([1.5, 4.5, -2.5]), np.array([1.0, 5.0, -2.0])
    assert NetMeasurements(net, data, "RSquared") == pytest.approx(
        1 - ((out - t) ** 2).sum() / ((t - t.mean()) ** 2).sum())
    assert NetMeasurements(net, data, "StandardDeviation") == pytest.approx(np.sqrt(np.mean((out - t) ** 2)))
    with pytest.raises(w.TrainingError, match="needs a classifier"):
        NetMeasurements(net, data, "Perplexity")


def test_per_step_precision_of_ragged_sequences_counts_real_steps():
    lstm = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SoftmaxLayer()], Input=("Varying", 2)),
                           RandomSeeding=4)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(n, 2)).tolist() for n in (2, 5, 3)]
    targets = [np.eye(3)[rng.integers(0, 3, n)].tolist() for n in (2, 5, 3)]
    outs = lstm(xs)
    pred = np.concatenate([np.argmax(o, 1) for o in outs])
    true = np.concatenate([np.argmax(t, 1) for t in targets])
    expected = {}
    for c in range(3):
        tp, fp = np.sum((pred == c) & (true == c)), np.sum((pred == c) & (true != c))
        expected[c + 1] = tp / (tp + fp) if tp + fp else np.nan
    got = NetMeasurements(lstm, list(zip(xs, targets)), "Precision")
    assert list(got) == [1, 2, 3]
    np.testing.assert_allclose([got[k] for k in (1, 2, 3)], [expected[k] for k in (1, 2, 3)])


def test_confusion_matrix_plot_is_a_figure_a_notebook_shows():
    from matplotlib.figure import Figure

    fig = NetMeasurements(classifier(), DATA, "ConfusionMatrixPlot")
    assert isinstance(fig, Figure)
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == ["1", "1", "1", "1", "1"]  # the five nonzero cells' counts


def test_bad_measurement_specs_are_option_errors():
    for spec, match in [({"Measurement": "Accuracy", "ClassAveraging": "Macro"}, "applies to the per-class"),
                        ({"Measurement": "F1Score", "ClassAveraging": "Mean"}, '"Macro", "Micro" or None'),
                        ({"Measure": "F1Score"}, 'the keys "Measurement"'), ("F2Score", "not a known measurement")]:
        with pytest.raises(w.OptionError, match=match):
            NetMeasurements(classifier(), DATA, spec)


# ---- NetTrain: its results' properties, the new measurements while training, the stopping forms --------
QUIET = {"TrainingProgressReporting": None}
LINE = [([x], [2.0 * x + 1.0]) for x in np.linspace(-1, 1, 12)]


def line_run(**options):
    net = w.NetInitialize(w.LinearLayer(1, Input=1), RandomSeeding=2)
    return w.NetTrain(net, LINE, w.All, BatchSize=4, RandomSeeding=1, **{**QUIET, **options})


def test_results_properties_by_wolfram_name():
    res = line_run(MaxTrainingRounds=3, ValidationSet=LINE[:4], LearningRateMultipliers={"Biases": 0})
    assert res["FinalRoundLoss"] == res["RoundLoss"] == res["RoundLossList"][-1]
    assert res["FinalValidationLoss"] == res["ValidationLoss"] == res["ValidationLossList"][-1]
    assert res["BatchesPerRound"] == 3  # 12 examples, batches of 4
    assert res["RoundPositions"] == [3, 6, 9] and res["ValidationPositions"] == [3, 6, 9]
    assert res["BatchMeasurementsLists"] == {"Loss": res["BatchLossList"]} and len(res["BatchLossList"]) == 9
    assert res["WeightsLearningRateMultipliers"] == {("Weights",): 1.0, ("Biases",): 0.0}
    assert np.array_equal(w.NetExtract(res["FinalNet"], "Biases"), w.NetExtract(
        w.NetInitialize(w.LinearLayer(1, Input=1), RandomSeeding=2), "Biases"))  # the factor 0 held it
    plain = line_run(MaxTrainingRounds=2)
    assert plain["FinalValidationLoss"] is None and plain["ValidationPositions"] == []


def test_training_measures_the_new_measurements_each_round():
    data = [([5.0, 0.0, 0.0], "a"), ([0.0, 5.0, 0.0], "b"), ([0.0, 0.0, 5.0], "c")] * 4
    res = w.NetTrain(classifier(), data, w.All, MaxTrainingRounds=2, BatchSize=4, RandomSeeding=1,
                     TrainingProgressMeasurements=["CohenKappa", "Perplexity", "Precision"], **QUIET)
    lists = res["RoundMeasurementsLists"]
    assert len(lists["CohenKappa"]) == 2 and len(lists["Perplexity"]) == 2
    # on the round's batches, as the round's cross-entropy loss: the perplexity is its exp
    assert lists["Perplexity"] == pytest.approx(np.exp(res["RoundLossList"]), rel=1e-4)
    assert set(lists["Precision"][-1]) == set(LABELS)


@pytest.mark.parametrize("criterion, stopped_at", [
    ({"Criterion": "Loss", "TargetValue": 1e9}, 1),  # reached at once
    ({"Criterion": "Loss", "TargetValue": 1e9, "InitialPatience": 2}, 3),  # not before 2 rounds
    ({"Criterion": "Loss", "TargetValue": -1.0}, 8),  # never reached, nothing else stops it
    ({"Criterion": "Loss", "AbsoluteChange": 1e9}, 2),  # round 2 improves by less than 1e9
    ({"Criterion": "Loss", "RelativeChange": 0.999999}, 2),
])
def test_stopping_criterion_forms(criterion, stopped_at):
    res = line_run(MaxTrainingRounds=8, TrainingStoppingCriterion=criterion)
    assert res["TotalRounds"] == stopped_at
    assert res["ReasonTrainingStopped"] == ("MaxTrainingRounds" if stopped_at == 8 else "StoppingCriterion")


def test_bad_stopping_criterion_forms():
    for spec, match in [({"AbsoluteChange": 0.1, "RelativeChange": 0.1}, "give one of"),
                        ({"RelativeChange": 1.5}, "strictly between 0 and 1"),
                        ({"AbsoluteChange": -1}, "non-negative number"),
                        ({"TargetValue": "low"}, "must be a real number")]:
        with pytest.raises(w.OptionError, match=match):
            line_run(MaxTrainingRounds=1, TrainingStoppingCriterion=spec)


def test_training_measures_class_averaged_measurements():
    data = [([5.0, 0.0, 0.0], "a"), ([0.0, 5.0, 0.0], "b"), ([0.0, 0.0, 5.0], "c")] * 4
    res = w.NetTrain(classifier(), data, w.All, MaxTrainingRounds=2, BatchSize=6, RandomSeeding=1,
                     TrainingProgressMeasurements=[{"Measurement": "F1Score", "ClassAveraging": "Macro"}, "Recall"],
                     **QUIET)
    lists = res["RoundMeasurementsLists"]
    assert all(isinstance(v, float) for v in lists["F1Score"]) and all(isinstance(v, dict) for v in lists["Recall"])
    with pytest.raises(w.OptionError, match="two measurements use the key 'F1Score'"):
        w.NetTrain(classifier(), data, MaxTrainingRounds=1, **QUIET,
                   TrainingProgressMeasurements=["F1Score", {"Measurement": "F1Score", "ClassAveraging": "Micro"}])
