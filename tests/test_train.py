"""NetTrain: data forms, automatic losses, every option's effect, validation checkpoints,
reproducibility, freezing, the results object, bad data, and short runs of the page's two
applications."""

import math
import random
import time

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.core.symbols import All
from wlnet.examples.applications import addition_data, addition_net, comparison_data, comparison_net
from wlnet.nets.measure import NetMeasurements
from wlnet.train import api as T
from wlnet.train.api import NetTrain, Scaled

QUIET = {"TrainingProgressReporting": None}


def ragged_data(n=24, k=2, m=3, seed=0):
    """Sequences of lengths 1..5 of size-k vectors → sequences of size-m targets."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(int(rng.integers(1, 6)), k)).round(3).tolist() for _ in range(n)]
    ys = [[[sum(v), v[0] - v[1], 0.5][:m] for v in x] for x in xs]
    return xs, ys


def lstm(n=3, k=2, **options):
    return w.NetInitialize(w.LongShortTermMemoryLayer(n, Input=("Varying", k), **options))


def arrays(net):
    return {k: v.clone() for k, v in net.arrays().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- data forms and losses ---------------------------------------------------------------------
def test_the_three_data_forms_train_identically():
    xs, ys = ragged_data()
    net = lstm()
    by_pairs = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, **QUIET)
    by_ports = NetTrain(net, {"Input": xs, "Output": ys}, MaxTrainingRounds=2, **QUIET)
    assert same(arrays(by_pairs), arrays(by_ports))
    assert not same(arrays(by_pairs), arrays(net))
    strings = comparison_data()
    keys = list(strings)[:40]
    cnet = w.NetInitialize(comparison_net())
    by_dict = NetTrain(cnet, {s: strings[s] for s in keys}, MaxTrainingRounds=2, **QUIET)
    by_pairs = NetTrain(cnet, [(s, strings[s]) for s in keys], MaxTrainingRounds=2, **QUIET)
    assert same(arrays(by_dict), arrays(by_pairs))


def test_mean_squared_loss_of_ragged_sequences_averages_real_steps_only():
    xs, ys = ragged_data(n=10)
    net = lstm()
    res = NetTrain(net, list(zip(xs, ys)), All, MaxTrainingRounds=1, BatchSize=10, **QUIET)
    outs = net(xs)  # the round's only step sees the initial arrays
    expected = np.mean([np.mean((np.array(o) - np.array(y)) ** 2) for o, y in zip(outs, ys)])
    assert res["RoundLossList"][0] == pytest.approx(expected, rel=1e-5)


def test_scalar_output_uses_mean_squared_error():
    data = [(s, float(s.count("x"))) for s in list(comparison_data())[:30]]
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(4), w.SequenceLastLayer(), w.LinearLayer(1)],
                                     Input=w.NetEncoder(("Characters", "xy", "UnitVector")), Output="Scalar"))
    res = NetTrain(net, data, All, MaxTrainingRounds=1, BatchSize=30, **QUIET)
    pred = np.array(net([s for s, _ in data]))
    assert res["RoundLossList"][0] == pytest.approx(np.mean((pred - [y for _, y in data]) ** 2), rel=1e-5)


def test_class_decoder_uses_cross_entropy():
    data = comparison_data()
    keys = list(data)[:50]
    net = w.NetInitialize(comparison_net())
    res = NetTrain(net, {s: data[s] for s in keys}, All, MaxTrainingRounds=1, BatchSize=50, **QUIET)
    probs = net(keys, "Probabilities")
    expected = -np.mean([math.log(p[data[s]]) for p, s in zip(probs, keys)])
    assert res["RoundLossList"][0] == pytest.approx(expected, rel=1e-5)


def test_softmax_output_without_decoder_uses_cross_entropy_with_vector_or_index_targets():
    net = w.NetInitialize(w.NetChain([w.LinearLayer(3), w.SoftmaxLayer()], Input=2))
    xs = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    onehot = [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    p = np.array(net(xs))
    expected = -np.mean(np.log(p[[0, 1, 2], [0, 2, 1]]))
    by_vectors = NetTrain(net, list(zip(xs, onehot)), "RoundLossList", MaxTrainingRounds=1, **QUIET)
    by_index = NetTrain(net, list(zip(xs, [1, 3, 2])), "RoundLossList", MaxTrainingRounds=1, **QUIET)
    assert by_vectors[0] == pytest.approx(expected, rel=1e-5)
    assert by_index[0] == pytest.approx(expected, rel=1e-5)


def test_loss_function_option():
    xs, ys = ragged_data(n=8)
    net = lstm()
    outs = net(xs)
    mae = np.mean([np.mean(np.abs(np.array(o) - np.array(y))) for o, y in zip(outs, ys)])
    got = NetTrain(net, list(zip(xs, ys)), "RoundLossList", MaxTrainingRounds=1, BatchSize=8,
                   LossFunction="MeanAbsoluteLoss", **QUIET)
    assert got[0] == pytest.approx(mae, rel=1e-5)
    with pytest.raises(w.TrainingError, match="LossFunction"):
        NetTrain(net, list(zip(xs, ys)), LossFunction="Hinge", **QUIET)


# ---- options -------------------------------------------------------------------------------------
def test_batch_size_and_rounds():
    xs, ys = ragged_data(n=25)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=3, BatchSize=10, **QUIET)
    assert res["BatchSize"] == 10 and res["TotalRounds"] == 3 and len(res["RoundLossList"]) == 3
    assert res["TotalBatches"] == 9  # ceil(25/10) per round
    auto = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=1, **QUIET)
    assert auto["BatchSize"] == 25  # Automatic: 64, or fewer for small data
    xs, ys = ragged_data(n=100)
    assert NetTrain(lstm(), list(zip(xs, ys)), "BatchSize", MaxTrainingRounds=1, **QUIET) == 64


def test_time_goal_stops_training_on_time():
    xs, ys = ragged_data(n=8)
    # the goal is sized from one measured round, so that a loaded machine still fits several rounds
    one = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=1, BatchSize=4, **QUIET)["TotalTrainingTime"]
    goal = max(0.4, 3 * one)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, TimeGoal=goal, BatchSize=4, **QUIET)
    assert goal <= res["TotalTrainingTime"] < goal + one + 1.0  # stops at the first batch past the goal
    assert res["TotalRounds"] > 1


def test_automatic_rounds_train_for_about_the_automatic_time(monkeypatch):
    # a clock that ticks 0.02 s at every reading, and 0.5 s once in the first round (a slow
    # first round: the warm-up must not shorten the run to the 10-round floor)
    import types

    from wlnet.train import loop as train_loop

    readings = []

    def perf_counter():
        readings.append(None)
        return 0.02 * len(readings) + (0.5 if len(readings) >= 2 else 0.0)

    monkeypatch.setattr(train_loop, "time", types.SimpleNamespace(perf_counter=perf_counter))
    monkeypatch.setattr(T, "AUTOMATIC_SECONDS", 2.0)
    xs, ys = ragged_data(n=8)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, **QUIET)
    per_round = (res["TotalTrainingTime"] - 0.5) / res["TotalRounds"]
    assert res["TotalRounds"] == len(res["RoundLossList"]) > 10
    assert abs(res["TotalTrainingTime"] - 2.0) <= 2 * per_round


def test_methods_and_learning_rate():
    xs, ys = ragged_data(n=16)
    net = lstm()
    start = arrays(net)

    def moved(**options):
        new = arrays(NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, BatchSize=8, **options, **QUIET))
        return sum(float((new[k] - start[k]).norm()) for k in start), new

    adam, adam_arrays = moved()
    sgd, sgd_arrays = moved(Method="SGD")
    rms, rms_arrays = moved(Method="RMSProp")
    assert not same(adam_arrays, sgd_arrays) and not same(adam_arrays, rms_arrays)
    small, _ = moved(LearningRate=1e-4)
    large, _ = moved(LearningRate=1e-2)
    assert small < adam < large
    tuned, _ = moved(Method=("ADAM", {"Beta1": 0.5}))
    assert tuned != adam
    with pytest.raises(w.OptionError, match="Method"):
        moved(Method="LBFGS")
    with pytest.raises(w.OptionError, match="not a setting"):
        moved(Method=("SGD", {"Beta1": 0.5}))
    with pytest.raises(w.OptionError, match="LearningRate"):
        moved(LearningRate=-1)


def test_unknown_option_and_property():
    xs, ys = ragged_data(n=4)
    with pytest.raises(w.OptionError, match="not an option of NetTrain"):
        NetTrain(lstm(), list(zip(xs, ys)), MaxRounds=3)
    with pytest.raises(w.OptionError, match="not a training property"):
        NetTrain(lstm(), list(zip(xs, ys)), "Nonsense")
    with pytest.raises(w.OptionError, match="MaxTrainingRounds"):
        NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=0)


def test_gpu_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    xs, ys = ragged_data(n=4)
    with pytest.raises(w.OptionError, match="no CUDA device"):
        NetTrain(lstm(), list(zip(xs, ys)), TargetDevice="GPU", **QUIET)


def test_random_seeding_reproduces_training():
    xs, ys = ragged_data(n=30)
    net = w.LongShortTermMemoryLayer(3, Input=("Varying", 2))  # uninitialized: NetTrain initializes it
    a = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=3, BatchSize=7, RandomSeeding=5, **QUIET)
    b = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=3, BatchSize=7, RandomSeeding=5, **QUIET)
    c = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=3, BatchSize=7, RandomSeeding=6, **QUIET)
    assert same(arrays(a), arrays(b))
    assert not same(arrays(a), arrays(c))
    assert not net.initialized()


def test_dropout_masks_follow_the_seed():
    xs, ys = ragged_data(n=12)
    net = lstm(Dropout={"VariationalInput": 0.3, "StateUpdate": 0.3})
    a = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, RandomSeeding=1, **QUIET)
    b = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, RandomSeeding=1, **QUIET)
    assert same(arrays(a), arrays(b))


def test_training_never_changes_the_net_passed_in():
    xs, ys = ragged_data(n=10)
    net = lstm()
    before = arrays(net)
    out_before = net(xs[0])
    NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, **QUIET)
    assert same(before, arrays(net))
    assert net(xs[0]) == out_before


# ---- freezing ------------------------------------------------------------------------------------
def test_learning_rate_multiplier_zero_freezes_arrays_bit_identically():
    xs, ys = ragged_data(n=12)
    net = lstm()
    frozen = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2,
                      LearningRateMultipliers={"InputGateBiases": 0, "ForgetGateStateWeights": 0}, **QUIET)
    for name in ("InputGateBiases", "ForgetGateStateWeights"):
        assert torch.equal(frozen.arrays()[(name,)], net.arrays()[(name,)])
    assert not torch.equal(frozen.arrays()[("OutputGateBiases",)], net.arrays()[("OutputGateBiases",)])


def test_layer_option_freezes_and_net_train_rules_override_it():
    xs, ys = ragged_data(n=12)
    net = lstm(LearningRateMultipliers={"MemoryGateBiases": 0})
    trained = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, **QUIET)
    assert torch.equal(trained.arrays()[("MemoryGateBiases",)], net.arrays()[("MemoryGateBiases",)])
    thawed = NetTrain(net, list(zip(xs, ys)), MaxTrainingRounds=2, LearningRateMultipliers={"MemoryGateBiases": 1},
                      **QUIET)
    assert not torch.equal(thawed.arrays()[("MemoryGateBiases",)], net.arrays()[("MemoryGateBiases",)])


def test_freezing_a_layer_of_a_chain_by_position():
    data = {s: v for s, v in list(comparison_data().items())[:30]}
    net = w.NetInitialize(comparison_net())
    trained = NetTrain(net, data, MaxTrainingRounds=2, LearningRateMultipliers={1: 0, (3, "Biases"): 0}, **QUIET)
    before, after = net.arrays(), trained.arrays()
    for key in before:
        if key[0] == 1 or key == (3, "Biases"):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before[(3, "Weights")], after[(3, "Weights")])
    everything_else = NetTrain(net, data, MaxTrainingRounds=1, LearningRateMultipliers={(3, "Weights"): 1, All: 0},
                               **QUIET).arrays()
    assert all(torch.equal(before[k], everything_else[k]) for k in before if k != (3, "Weights"))
    with pytest.raises(w.OptionError, match="matches no array"):
        NetTrain(net, data, LearningRateMultipliers={7: 0}, **QUIET)
    with pytest.raises(w.TrainingError, match="every array is frozen"):
        NetTrain(net, data, LearningRateMultipliers=0, **QUIET)


# ---- validation ----------------------------------------------------------------------------------
def test_validation_set_gives_the_best_validation_net():
    xs, ys = ragged_data(n=16)
    contrary = [[[-a for a in v] for v in y] for y in ys]  # the further training goes, the worse this gets
    net = lstm()
    res = NetTrain(net, list(zip(xs, ys)), All, MaxTrainingRounds=6, BatchSize=4, LearningRate=0.01,
                   ValidationSet=list(zip(xs, contrary)), **QUIET)
    val = res["ValidationLossList"]
    assert len(val) == 6
    best = int(np.argmin(val))
    assert best < 5
    assert not same(arrays(res["TrainedNet"]), arrays(res["FinalNet"]))
    vdata = list(zip(xs, contrary))
    assert NetMeasurements(res["TrainedNet"], vdata, "Loss") == pytest.approx(val[best], rel=1e-4)
    assert NetMeasurements(res["FinalNet"], vdata, "Loss") == pytest.approx(val[-1], rel=1e-4)


def test_scaled_validation_set_holds_out_a_fraction():
    xs, ys = ragged_data(n=20)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=2, BatchSize=5, ValidationSet=Scaled(0.25),
                   **QUIET)
    assert res["TotalBatches"] == 6  # 15 training examples: 3 batches per round
    assert len(res["ValidationLossList"]) == 2
    with pytest.raises(w.OptionError, match="Scaled"):
        Scaled(1.5)


# ---- the results object and reporting ------------------------------------------------------------
def test_results_object(tmp_path):
    xs, ys = ragged_data(n=12)
    t0 = time.perf_counter()
    res = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=3, ValidationSet=Scaled(0.25), **QUIET)
    wall = time.perf_counter() - t0
    for prop in T.PROPERTIES:
        res[prop]
    assert isinstance(res["TrainedNet"], w.LongShortTermMemoryLayer) and res["FinalNet"].initialized()
    # 9 training examples (12 less a quarter held out) per round, in one batch of 9 each: the time spent
    # on them (examples / rate) is within the training loop's time, itself within the call's
    assert res["TotalRounds"] == 3 and res["BatchSize"] == 9 and res["TotalBatches"] == 3
    assert 0 < 3 * 9 / res["MeanExamplesPerSecond"] <= res["TotalTrainingTime"] <= wall
    assert "NetTrainResultsObject" in repr(res)
    fig = res["LossPlot"]
    path = tmp_path / "loss.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(w.OptionError, match="not a property"):
        res["Nonsense"]
    assert NetTrain(lstm(), list(zip(xs, ys)), "TotalRounds", MaxTrainingRounds=2, **QUIET) == 2


def test_progress_reporting(capsys):
    xs, ys = ragged_data(n=8)
    NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=2, **QUIET)
    silent = capsys.readouterr()
    assert silent.out == "" and silent.err == ""
    NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=2)
    bar = capsys.readouterr().err
    assert "NetTrain" in bar and "examples/s" in bar and "2/2" in bar
    NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=2, TrainingProgressReporting="Print")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("NetTrain: round 2: loss")


# ---- bad data --------------------------------------------------------------------------------------
def test_bad_data_is_rejected_before_training_naming_example_and_port():
    xs, ys = ragged_data(n=6)
    net = lstm()
    bad = list(zip(xs, ys))
    bad[3] = (xs[3], [[1.0, 2.0]] * len(xs[3]))  # size-2 target vectors for a size-3 output
    with pytest.raises(w.TrainingError, match=r'example 4: .*port "Output"'):
        NetTrain(net, bad, **QUIET)
    bad = list(zip(xs, ys))
    bad[2] = ([[1.0, 2.0, 3.0]], ys[2])
    with pytest.raises(w.TrainingError, match=r'example 3: .*port "Input"'):
        NetTrain(net, bad, **QUIET)


def test_sequence_target_of_the_wrong_length():
    xs, ys = ragged_data(n=6)
    bad = list(zip(xs, ys))
    bad[4] = (xs[4], ys[4] + [[0.0, 0.0, 0.0]])
    with pytest.raises(w.TrainingError, match=r'example 5, port "Output".*length'):
        NetTrain(lstm(), bad, **QUIET)


def test_targets_outside_the_class_labels_and_characters_outside_the_alphabet():
    net = comparison_net()
    with pytest.raises(w.TrainingError, match=r'example 2: .*port "Output".*\'Bigger\''):
        NetTrain(net, [("xy", "Equal"), ("xxy", "Bigger")], **QUIET)
    with pytest.raises(w.TrainingError, match=r'example 3: .*port "Input".*\'z\''):
        NetTrain(net, [("xy", "Equal"), ("x", "Greater"), ("xz", "Less")], **QUIET)


def test_empty_and_malformed_data():
    net = lstm()
    with pytest.raises(w.TrainingError, match="empty"):
        NetTrain(net, [], **QUIET)
    with pytest.raises(w.TrainingError, match="empty"):
        NetTrain(net, {"Input": [], "Output": []}, **QUIET)
    xs, ys = ragged_data(n=4)
    with pytest.raises(w.TrainingError, match="different numbers of examples"):
        NetTrain(net, {"Input": xs, "Output": ys[:3]}, **QUIET)
    with pytest.raises(w.TrainingError, match="example 2 is not an"):
        NetTrain(net, [(xs[0], ys[0]), (xs[1],)], **QUIET)
    with pytest.raises(w.TrainingError, match="no targets"):
        NetTrain(net, {"Input": xs}, **QUIET)
    with pytest.raises(w.TrainingError, match=r'example 2, port "Input": the example has one dimension too many'):
        NetTrain(net, [(xs[0], ys[0]), ([xs[1]], ys[1])], **QUIET)


# ---- the page's applications, briefly ----------------------------------------------------------------
def test_comparison_classifier_loss_falls():
    res = NetTrain(comparison_net(), comparison_data(), All, MaxTrainingRounds=12, **QUIET)
    losses = res["RoundLossList"]
    assert losses[-1] < 0.9 * losses[0]


def test_addition_net_loss_falls():
    train, _ = addition_data()
    res = NetTrain(addition_net(), train[:1000], All, MaxTrainingRounds=4, LearningRate=0.003, **QUIET)
    losses = res["RoundLossList"]
    assert losses[-1] < 0.8 * losses[0]


def test_scenario_functions_run_and_save_their_plots(tmp_path):
    from wlnet.examples import SCENARIOS
    from wlnet.examples.applications import scenario_9, scenario_10

    assert SCENARIOS[9][1] is scenario_9 and SCENARIOS[10][1] is scenario_10
    ten = scenario_10(MaxTrainingRounds=2, TimeGoal=0.5, out_dir=str(tmp_path), **QUIET)
    assert set(ten["answers"]) == {"xyxyxyx", "xxxxyyy", "xxyyyyy", "yx", "xxxxxxxx"}
    data = comparison_data()
    answers = ten["net"](list(data))  # the accuracy, counted by hand over all 510 strings
    assert ten["accuracy"] == pytest.approx(np.mean([a == data[s] for s, a in zip(data, answers)]), abs=1e-12)
    assert ten["answers"] == dict(zip(ten["answers"], ten["net"](list(ten["answers"]))))
    assert (tmp_path / "comparison_loss.png").exists()
    nine = scenario_9(MaxTrainingRounds=1, TimeGoal=0.5, out_dir=str(tmp_path), **QUIET)
    _, held_out = addition_data()  # the held-out error, computed by hand: mean |net(s) − (a + b)|
    predictions = nine["net"]([s for s, _ in held_out])
    want = np.mean([abs(p - (int(s[:2]) + int(s[3:]))) for p, (s, _) in zip(predictions, held_out)])
    assert nine["held_out_error"] == pytest.approx(want, rel=1e-5)
    assert (tmp_path / "addition_loss.png").exists()


def test_addition_data_is_zero_padded_and_split_90_10():
    train, held = addition_data()
    assert len(train) == 9000 and len(held) == 1000
    assert all(len(s) == 5 and s[2] == "+" for s, _ in train + held)
    s, v = random.Random(0).choice(train)
    assert v == int(s[:2]) + int(s[3:])
    assert len(comparison_data()) == 510
