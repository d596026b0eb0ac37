"""NetTrain's options for real runs: Method sub-options against a numpy reference of SGD, the
schedules, clipping and L2; stopping criteria; measurements per round; the progress function;
divergence; Ctrl-C (in a subprocess); generator data; (inputs, targets); every results
property; length bucketing; WorkingPrecision; bad options as typed errors."""

import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.core.errors import NetWarning, NotSupportedError, OptionError, TrainingError
from wlnet.core.symbols import All
from wlnet.examples.applications import comparison_data, comparison_net
from wlnet.nets.measure import NetMeasurements
from wlnet.train import api as T
from wlnet.train.api import NetTrain, Scaled
from wlnet.train.sources import ListSource

QUIET = {"TrainingProgressReporting": None}
SRC = os.path.join(os.path.dirname(__file__), "..", "src")


# ---- a linear regression and its numpy reference -------------------------------------------------
def regression(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = x @ np.array([1.5, -2.0]) + 0.7 + 0.1 * rng.normal(size=n)
    # values a float32 holds exactly, so that a float64 reference sees the data the net reads
    return x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)


W0, B0 = np.array([0.5, -0.25]), 0.125  # exact in float32


def linear():
    return w.NetChain([w.LinearLayer(1, Weights=[W0.tolist()], Biases=[B0])], Input=2, Output="Scalar")


def sgd_reference(x, y, lr, rounds, factor, l2=0.0, gclip=None, wclip=None):
    """Plain SGD on the mean squared error, one batch of all examples per round, in float64."""
    wt, b = W0.copy(), B0
    losses = []
    for t in range(1, rounds + 1):
        d = x @ wt + b - y
        losses.append(float(np.mean(d ** 2)))
        gw, gb = 2 * d @ x / len(y), 2 * d.mean()
        if gclip is not None:
            gw, gb = np.clip(gw, -gclip, gclip), float(np.clip(gb, -gclip, gclip))
        gw, gb = gw + l2 * wt, gb + l2 * b
        step = lr * factor(t, rounds)
        wt, b = wt - step * gw, b - step * gb
        if wclip is not None:
            wt, b = np.clip(wt, -wclip, wclip), float(np.clip(b, -wclip, wclip))
    return wt, b, losses


def train_linear(x, y, settings, rounds=6, lr=0.05, **options):
    res = NetTrain(linear(), (x.tolist(), y.tolist()), All, Method=("SGD", {"Momentum": 0.0, **settings}),
                   LearningRate=lr, BatchSize=len(y), MaxTrainingRounds=rounds, **QUIET, **options)
    a = res["FinalNet"].arrays()
    return a[(1, "Weights")].numpy().ravel().astype(np.float64), float(a[(1, "Biases")][0]), res


@pytest.mark.parametrize("case", ["default", "Constant", "Cosine", "function", "L2", "GradientClipping",
                                  "WeightClipping"])
def test_sgd_sub_options_match_a_numpy_reference(case):
    x, y = regression()
    poly = lambda t, n: math.sqrt(1 - t / (n + 1))  # noqa: E731  Wolfram's SGD default
    settings, ref = {}, {"factor": poly}
    if case == "Constant":
        settings, ref = {"LearningRateSchedule": "Constant"}, {"factor": lambda t, n: 1.0}
    elif case == "Cosine":
        settings = {"LearningRateSchedule": "Cosine"}
        ref = {"factor": lambda t, n: 0.5 * (1 + math.cos(math.pi * t / (n + 1)))}
    elif case == "function":
        settings, ref = {"LearningRateSchedule": lambda t, n: 1.0 / t}, {"factor": lambda t, n: 1.0 / t}
    elif case == "L2":
        settings, ref = {"L2Regularization": 0.3}, {"factor": poly, "l2": 0.3}
    elif case == "GradientClipping":
        settings, ref = {"GradientClipping": 0.5}, {"factor": poly, "gclip": 0.5}
    elif case == "WeightClipping":
        settings, ref = {"WeightClipping": 0.6}, {"factor": poly, "wclip": 0.6}
    got_w, got_b, res = train_linear(x, y, settings)
    want_w, want_b, losses = sgd_reference(x, y, 0.05, 6, **ref)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
    assert got_b == pytest.approx(want_b, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(res["RoundLossList"], losses, rtol=1e-5)
    plain_w, _, _ = sgd_reference(x, y, 0.05, 6, factor=lambda t, n: 1.0)
    if case not in ("Constant",):
        assert not np.allclose(want_w, plain_w, rtol=1e-4)  # the option made a difference
    assert res["InitialLearningRate"] == pytest.approx(0.05 * ref["factor"](1, 6))
    assert res["FinalLearningRate"] == pytest.approx(0.05 * ref["factor"](6, 6))


def test_wolfram_defaults_per_method():
    x, y = regression(n=4)

    def method(m):
        return NetTrain(linear(), (x.tolist(), y.tolist()), "OptimizationMethod", Method=m, MaxTrainingRounds=1,
                        **QUIET)

    name, rms = method("RMSProp")
    assert name == "RMSProp" and rms["Momentum"] == 0.9 and rms["Epsilon"] == 1e-6 and rms["Beta"] == 0.95
    assert rms["LearningRateSchedule"] == "Constant" and rms["LearningRate"] == 0.001
    _, sgd = method("SGD")
    assert sgd["LearningRateSchedule"] == "Polynomial" and sgd["Momentum"] == 0.93 and sgd["LearningRate"] == 0.01
    _, adam = method("ADAM")
    assert adam["Beta1"] == 0.9 and adam["Beta2"] == 0.999 and adam["Epsilon"] == 1e-5
    assert adam["GradientClipping"] is None and adam["L2Regularization"] == 0


def test_working_precision_real64_matches_the_float64_reference():
    x, y = regression()
    _, _, losses = sgd_reference(x, y, 0.05, 6, factor=lambda t, n: 1.0)
    settings = {"LearningRateSchedule": "Constant"}
    _, _, r64 = train_linear(x, y, settings, WorkingPrecision="Real64")
    _, _, r32 = train_linear(x, y, settings)
    err64 = max(abs(a - b) / b for a, b in zip(r64["RoundLossList"], losses))
    err32 = max(abs(a - b) / b for a, b in zip(r32["RoundLossList"], losses))
    assert err64 < 1e-12 < err32 < 1e-5
    assert r64["WorkingPrecision"] == "Real64"
    assert r64["FinalNet"].arrays()[(1, "Weights")].dtype == torch.float32  # the net keeps float32 arrays


def test_bad_options_are_typed_errors_naming_the_option():
    x, y = regression(n=4)
    data = (x.tolist(), y.tolist())
    for options, words in [
        ({"Method": ("SGD", {"LearningRateSchedule": "Linear"})}, ["LearningRateSchedule", "Linear"]),
        ({"Method": ("ADAM", {"GradientClipping": -1})}, ["GradientClipping", "-1"]),
        ({"Method": ("ADAM", {"WeightClipping": "x"})}, ["WeightClipping", "'x'"]),
        ({"Method": ("ADAM", {"L2Regularization": [1]})}, ["L2Regularization", "[1]"]),
        ({"Method": ("RMSProp", {"Momentum": 1.5})}, ["Momentum", "1.5"]),
        ({"Method": ("RMSProp", {"Beta1": 0.5})}, ["Beta1", "RMSProp"]),
        ({"TrainingStoppingCriterion": "Happiness"}, ["Criterion", "Happiness"]),
        ({"TrainingStoppingCriterion": {"Criterion": "Loss", "Patience": -1}}, ["Patience", "-1"]),
        ({"TrainingStoppingCriterion": {"Criterion": "Loss", "Wait": 2}}, ["Wait", "Patience"]),
        ({"TrainingStoppingCriterion": {"Improvement": "lots"}}, ["Improvement", "lots"]),
        ({"TrainingProgressMeasurements": ["Accuracy", "Speed"]}, ["TrainingProgressMeasurements", "Speed"]),
        ({"TrainingProgressFunction": 3}, ["TrainingProgressFunction", "3"]),
        ({"TrainingProgressFunction": (print, {"Interval": ("Weeks", 1)})}, ["Interval", "Weeks"]),
        ({"WorkingPrecision": "Real16"}, ["WorkingPrecision", "Real16"]),
        ({"RoundLength": 0}, ["RoundLength", "0"]),
        ({"LengthBucketing": "yes"}, ["LengthBucketing", "yes"]),
    ]:
        with pytest.raises(OptionError) as info:
            NetTrain(linear(), data, MaxTrainingRounds=1, **options, **QUIET)
        for word in words:
            assert word in str(info.value), (options, str(info.value))
    with pytest.raises(OptionError, match="LearningRateSchedule function returned 'x'"):
        NetTrain(linear(), data, Method=("SGD", {"LearningRateSchedule": lambda t, n: "x"}), **QUIET)
    with pytest.raises(NotSupportedError, match='"Mixed".*"Real32"'):
        NetTrain(linear(), data, WorkingPrecision="Mixed", **QUIET)


# ---- stopping -----------------------------------------------------------------------------------------
def ragged(n=16, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(int(rng.integers(1, 6)), 2)).round(3).tolist() for _ in range(n)]
    ys = [[[sum(v), v[0] - v[1], 0.5] for v in x] for x in xs]
    return xs, ys


def lstm():
    return w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2)))


def expected_stop(values, patience, initial=0, improvement=0.0):
    """The documented rule, restated: after `initial` rounds, stop once patience + 1 rounds in a row
    fail to lower the best value by more than `improvement`."""
    best, waited = values[0], 0
    for r, v in enumerate(values[1:], 2):
        if best - v > improvement:
            best, waited = v, 0
            continue
        best = min(best, v)
        waited += 1
        if r > initial and waited > patience:
            return r
    return None


def test_stopping_criterion_on_the_validation_loss():
    xs, ys = ragged()
    contrary = [[[-a for a in v] for v in y] for y in ys]  # training makes this worse
    common = dict(MaxTrainingRounds=12, BatchSize=8, LearningRate=0.01, ValidationSet=list(zip(xs, contrary)), **QUIET)
    free = NetTrain(lstm(), list(zip(xs, ys)), All, **common)
    assert free["ReasonTrainingStopped"] == "MaxTrainingRounds" and free["TotalRounds"] == 12
    for spec, patience, improvement in [("Loss", 0, 0.0), ({"Criterion": "Loss", "Patience": 2}, 2, 0.0),
                                        ({"Criterion": "Loss", "Improvement": 0.5}, 0, 0.5)]:
        want = expected_stop(free["ValidationLossList"], patience, improvement=improvement)
        assert want is not None and want < 12
        res = NetTrain(lstm(), list(zip(xs, ys)), All, TrainingStoppingCriterion=spec, **common)
        assert res["ReasonTrainingStopped"] == "StoppingCriterion"
        assert res["TotalRounds"] == want, spec
        assert res["ValidationLossList"] == pytest.approx(free["ValidationLossList"][:want])
    late = NetTrain(lstm(), list(zip(xs, ys)), All, **common,
                    TrainingStoppingCriterion={"Criterion": "Loss", "InitialPatience": 6})
    assert late["TotalRounds"] == expected_stop(free["ValidationLossList"], 0, initial=6)


def test_stopping_criterion_function_and_measurement():
    xs, ys = ragged()
    seen = []

    def enough(info):
        seen.append(dict(info))
        return info["Round"] >= 3

    res = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=10, TrainingStoppingCriterion=enough, **QUIET)
    assert res["TotalRounds"] == 3 and res["ReasonTrainingStopped"] == "StoppingCriterion"
    assert [s["Round"] for s in seen] == [1, 2, 3]
    assert {"Round", "Batch", "RoundLoss", "ValidationLoss", "LearningRate"} <= set(seen[0])
    assert seen[-1]["RoundLoss"] == pytest.approx(res["RoundLossList"][-1])
    data = {s: v for s, v in list(comparison_data().items())[::4]}
    acc = NetTrain(comparison_net(), data, All, MaxTrainingRounds=30, TrainingStoppingCriterion="Accuracy", **QUIET)
    values = acc["RoundMeasurementsLists"]["Accuracy"]
    assert acc["ReasonTrainingStopped"] == "StoppingCriterion"
    assert acc["TotalRounds"] == expected_stop([-v for v in values], 0)  # higher is better


def test_automatic_rounds_are_clipped_to_ten_at_least(monkeypatch):
    monkeypatch.setattr(T, "AUTOMATIC_SECONDS", 1e-6)
    xs, ys = ragged(n=4)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, **QUIET)
    assert res["TotalRounds"] == 10 and res["ReasonTrainingStopped"] == "MaxTrainingRounds"


# ---- measurements and the progress function ----------------------------------------------------------
def test_progress_measurements_on_training_and_validation_data(capsys):
    data = comparison_data()
    keys = list(data)
    train, held = {s: data[s] for s in keys[::2]}, [(s, data[s]) for s in keys[1::2]]
    net = w.NetInitialize(comparison_net())
    wanted = ["Accuracy", "ErrorRate", "MeanSquare"]
    first = NetTrain(net, train, All, MaxTrainingRounds=1, BatchSize=len(train), LearningRate=1e-9,
                     TrainingProgressMeasurements=wanted, ValidationSet=held, **QUIET)
    # one batch with the initial arrays: the round's measurements are those of the initial net
    for m in wanted:
        assert first["RoundMeasurements"][m] == pytest.approx(NetMeasurements(net, train, m), rel=1e-5)
    res = NetTrain(net, train, All, MaxTrainingRounds=3, TrainingProgressMeasurements=wanted, ValidationSet=held,
                   TrainingProgressReporting="Print")
    for m in wanted:  # validation after the last round sees the final arrays
        assert res["ValidationMeasurements"][m] == pytest.approx(NetMeasurements(res["FinalNet"], held, m), rel=1e-5)
        assert len(res["RoundMeasurementsLists"][m]) == len(res["ValidationMeasurementsLists"][m]) == 3
    assert res["RoundMeasurementsLists"]["Loss"] == res["RoundLossList"]
    assert res["ValidationMeasurementsLists"]["Loss"] == pytest.approx(res["ValidationLossList"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "accuracy" in lines[-1] and "errorRate" in lines[-1]
    # "Loss" asked for as a measurement is the round loss, recorded once a round
    with_loss = NetTrain(net, train, All, MaxTrainingRounds=2, TrainingProgressMeasurements=["Loss", "Accuracy"],
                         ValidationSet=held, **QUIET)
    assert with_loss["RoundMeasurementsLists"]["Loss"] == with_loss["RoundLossList"]
    assert with_loss["ValidationMeasurementsLists"]["Loss"] == pytest.approx(with_loss["ValidationLossList"])
    assert len(with_loss["RoundMeasurementsLists"]["Accuracy"]) == 2


def test_progress_function_each_round_and_each_batch():
    xs, ys = ragged(n=12)
    rounds, batches = [], []
    NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=3, BatchSize=4, TrainingProgressFunction=rounds.append,
             **QUIET)
    assert [i["Round"] for i in rounds] == [1, 2, 3]
    assert isinstance(rounds[0]["Net"], w.LongShortTermMemoryLayer)  # made when asked for
    NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=2, BatchSize=4, Method="SGD", LearningRate=0.1,
             TrainingProgressFunction=(lambda i: batches.append(dict(i)), {"Interval": ("Batches", 1)}), **QUIET)
    assert [i["AbsoluteBatch"] for i in batches] == [1, 2, 3, 4, 5, 6]
    assert [i["Batch"] for i in batches] == [1, 2, 3, 1, 2, 3]
    lrs = [0.1 * math.sqrt(1 - t / 7) for t in range(1, 7)]  # SGD's Polynomial schedule over 6 batches
    assert [i["LearningRate"] for i in batches] == pytest.approx(lrs)


# ---- divergence and Ctrl-C ------------------------------------------------------------------------------
def finite(net):
    return all(bool(torch.isfinite(v).all()) for v in net.arrays().values())


def test_divergence_stops_with_the_last_finite_net_and_a_warning():
    x, y = regression()
    settings = {"LearningRateSchedule": "Constant"}
    with pytest.warns(NetWarning) as caught:
        got_w, got_b, res = train_linear(x, y, settings, rounds=200, lr=30.0)
    assert any(re.search(r"diverged.*LearningRate 30", str(c.message)) for c in caught)
    assert res["ReasonTrainingStopped"] == "Divergence" and res["TotalRounds"] < 200
    losses = res["BatchLossList"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] > 1e30
    assert finite(res["TrainedNet"]) and finite(res["FinalNet"])
    # the net returned is the one whose loss was the last finite one: after len(losses) - 1 steps
    want_w, want_b, want_losses = sgd_reference(x, y, 30.0, len(losses) - 1, factor=lambda t, n: 1.0)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-3)
    np.testing.assert_allclose(losses[:-1], want_losses, rtol=1e-3)


@pytest.mark.parametrize("lr", [1e30, 1e6])
def test_huge_learning_rates_draw_a_warning(lr):
    # saturated LSTMs and a clamped cross-entropy keep the loss finite; the arrays' growth is reported
    data = {s: v for s, v in list(comparison_data().items())[:60]}
    with pytest.warns(NetWarning, match=r"learning rate.*too large"):
        res = NetTrain(comparison_net(), data, All, MaxTrainingRounds=3, LearningRate=lr, **QUIET)
    assert finite(res["TrainedNet"])


CTRL_C = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {src!r})
    import wlnet as w
    from wlnet.examples.applications import comparison_data, comparison_net
    slow = lambda info: time.sleep({pause}) if info["Round"] > 1 else None
    res = w.NetTrain(comparison_net(), comparison_data(), w.All, TimeGoal=120, TrainingProgressReporting="Print",
                     TrainingProgressFunction=(slow, {{"Interval": ("Batches", 1)}}))
    ok = all(bool(torch.isfinite(v).all()) for v in res["TrainedNet"].arrays().values())
    print("RESULT", res["ReasonTrainingStopped"], ok, res["TotalRounds"], flush=True)
""")


def _run_and_interrupt(pause: float, signals: int):
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C.format(src=SRC, pause=pause)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait until training runs
            if line.startswith("NetTrain: round 1"):
                break
        t0 = time.perf_counter()
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.25)  # apart: two SIGINTs before Python runs its handler count as one
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out, err, time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_stops_at_the_end_of_the_batch_and_returns_a_finite_net():
    rc, out, err, seconds = _run_and_interrupt(0.0, 1)
    assert rc == 0, err
    result = [line for line in out.splitlines() if line.startswith("RESULT")]
    assert result and result[0].split()[1:3] == ["ManualStop", "True"], out + err
    assert seconds < 30


def test_a_second_ctrl_c_aborts():
    rc, out, err, _ = _run_and_interrupt(1.0, 2)  # both signals land during one (slowed) batch
    assert rc != 0 and "KeyboardInterrupt" in err
    assert "RESULT" not in out


# ---- data forms ---------------------------------------------------------------------------------------------
def test_inputs_targets_form_equals_pairs():
    xs, ys = ragged()
    a = NetTrain(lstm(), list(zip(xs, ys)), MaxTrainingRounds=2, **QUIET)
    b = NetTrain(lstm(), (xs, ys), MaxTrainingRounds=2, **QUIET)
    c = NetTrain(lstm(), ({"Input": xs}, {"Output": ys}), MaxTrainingRounds=2, **QUIET)
    for other in (b, c):
        assert all(torch.equal(a.arrays()[k], other.arrays()[k]) for k in a.arrays())
    with pytest.raises(TrainingError, match="'Target'"):
        NetTrain(lstm(), ({"Input": xs}, {"Target": ys}), **QUIET)


def test_generator_data():
    x, y = regression()
    calls = []

    def everything(info):
        calls.append(dict(info))
        return (x.tolist(), y.tolist())

    settings = {"LearningRateSchedule": "Constant"}
    gen = NetTrain(linear(), everything, All, Method=("SGD", {"Momentum": 0.0, **settings}), LearningRate=0.05,
                   BatchSize=len(y), MaxTrainingRounds=6, **QUIET)
    want_w, _, losses = sgd_reference(x, y, 0.05, 6, factor=lambda t, n: 1.0)
    np.testing.assert_allclose(gen["FinalNet"].arrays()[(1, "Weights")].numpy().ravel(), want_w, rtol=1e-5)
    np.testing.assert_allclose(gen["RoundLossList"], losses, rtol=1e-5)
    assert len(calls) == 6 and calls[0]["BatchSize"] == len(y) and [c["Round"] for c in calls] == [1, 2, 3, 4, 5, 6]
    calls.clear()

    def small(info):
        calls.append(dict(info))
        i = np.arange(info["BatchSize"]) % len(y)
        return list(zip(x[i].tolist(), y[i].tolist()))

    res = NetTrain(linear(), small, All, BatchSize=4, RoundLength=10, MaxTrainingRounds=2, ValidationSet=small,
                   **QUIET)
    assert res["TotalBatches"] == 6 and res["TrainingExamples"] == 10 and res["ExamplesProcessed"] == 24
    assert calls[0]["Validation"] is False and any(c["Validation"] for c in calls)
    assert [c["Batch"] for c in calls if not c["Validation"]] == [1, 2, 3, 1, 2, 3]
    assert len(res["ValidationLossList"]) == 2


def test_round_length_of_list_data():
    xs, ys = ragged(n=10)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, RoundLength=25, BatchSize=5, MaxTrainingRounds=2, **QUIET)
    assert res["TotalBatches"] == 10 and res["ExamplesProcessed"] == 50 and res["TrainingExamples"] == 25


# ---- the results object ----------------------------------------------------------------------------------
def test_every_results_property(tmp_path):
    xs, ys = ragged(n=20)
    res = NetTrain(lstm(), list(zip(xs, ys)), All, MaxTrainingRounds=3, BatchSize=5, Method="SGD",
                   ValidationSet=Scaled(0.25), TrainingProgressMeasurements="MeanSquare", **QUIET)
    checks = {
        "TrainedNet": lambda v: isinstance(v, w.LongShortTermMemoryLayer) and finite(v),
        "FinalNet": lambda v: isinstance(v, w.LongShortTermMemoryLayer) and finite(v),
        "BatchLossList": lambda v: len(v) == 9 and all(isinstance(x, float) for x in v),
        "RoundLossList": lambda v: len(v) == 3,
        "ValidationLossList": lambda v: len(v) == 3,
        "RoundMeasurements": lambda v: set(v) == {"Loss", "MeanSquare"},
        "ValidationMeasurements": lambda v: set(v) == {"Loss", "MeanSquare"},
        "RoundMeasurementsLists": lambda v: len(v["MeanSquare"]) == 3,
        "ValidationMeasurementsLists": lambda v: len(v["MeanSquare"]) == 3,
        "ReasonTrainingStopped": lambda v: v == "MaxTrainingRounds",
        "BestValidationRound": lambda v: v == int(np.argmin(res["ValidationLossList"])) + 1,
        "InitialLearningRate": lambda v: v == pytest.approx(0.01 * math.sqrt(1 - 1 / 10)),
        "FinalLearningRate": lambda v: v == pytest.approx(0.01 * math.sqrt(1 - 9 / 10)),
        "ExamplesProcessed": lambda v: v == 45,
        "MeanBatchesPerSecond": lambda v: 0 < v and v == pytest.approx(res["MeanExamplesPerSecond"] / 5),
        "MeanExamplesPerSecond": lambda v: v > 0,
        "TotalBatches": lambda v: v == 9,
        "TotalRounds": lambda v: v == 3,
        "TotalTrainingTime": lambda v: v > 0,
        "TrainingExamples": lambda v: v == 15,
        "ValidationExamples": lambda v: v == 5,
        "BatchSize": lambda v: v == 5,
        "OptimizationMethod": lambda v: v[0] == "SGD" and v[1]["Momentum"] == 0.93,
        "TargetDevice": lambda v: v == "CPU",
        "WorkingPrecision": lambda v: v == "Real32",
        "CheckpointingFiles": lambda v: v == [],
        "LossPlot": lambda v: hasattr(v, "savefig"),
        "FinalPlots": lambda v: set(v) == {"Loss", "MeanSquare"} and all(hasattr(f, "savefig") for f in v.values()),
        "Properties": lambda v: v == list(T.PROPERTIES),
        "FinalRoundLoss": lambda v: v == res["RoundLossList"][-1],
        "RoundLoss": lambda v: v == res["RoundLossList"][-1],
        "FinalValidationLoss": lambda v: v == res["ValidationLossList"][-1],
        "ValidationLoss": lambda v: v == res["ValidationLossList"][-1],
        "LossEvolutionPlot": lambda v: hasattr(v, "savefig") and len(v.axes[0].get_lines()[0].get_xdata()) == 9,
        "BatchesPerRound": lambda v: v == 3,
        "RoundPositions": lambda v: v == [3, 6, 9],
        "ValidationPositions": lambda v: v == [3, 6, 9],
        "BatchMeasurementsLists": lambda v: v == {"Loss": res["BatchLossList"]},
        "WeightsLearningRateMultipliers": lambda v: len(v) == 12 and set(v.values()) == {1.0},
    }
    assert set(checks) == set(T.PROPERTIES)
    for prop, check in checks.items():
        assert check(res[prop]), prop
    res["FinalPlots"]["MeanSquare"].savefig(tmp_path / "ms.png")
    assert res[["TotalRounds", "BatchSize"]] == [3, 5]
    both = NetTrain(lstm(), list(zip(xs, ys)), ["TotalRounds", "ReasonTrainingStopped"], MaxTrainingRounds=2, **QUIET)
    assert both == [2, "MaxTrainingRounds"]
    with pytest.raises(OptionError, match="not a training property"):
        NetTrain(lstm(), list(zip(xs, ys)), ["TotalRounds", "Nonsense"], **QUIET)


# ---- bucketing ---------------------------------------------------------------------------------------------
def test_bucketed_batches_cover_the_data_with_similar_lengths():
    xs, ys = ragged(n=40, seed=3)
    problem = w.train.data.read_dataset(lstm(), list(zip(xs, ys)), "test")
    lengths = torch.tensor([len(x) for x in xs])
    g = torch.Generator().manual_seed(0)
    source = ListSource(problem, torch.device("cpu"), torch.float32, 6, None, True, g)
    for _ in range(3):
        batches = source.plan()
        assert sorted(torch.cat(batches).tolist()) == list(range(40))  # every example once a round
        spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
        assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))  # lengths do not interleave
    plain = ListSource(problem, torch.device("cpu"), torch.float32, 6, None, False, torch.Generator().manual_seed(0))
    spread = lambda bs: sum(int(lengths[b].max() - lengths[b].min()) for b in bs)  # noqa: E731
    assert spread(batches) < spread(plain.plan())


def test_bucketing_changes_nothing_but_the_batch_order():
    xs, ys = ragged(n=24)
    data = list(zip(xs, ys))
    one = {"MaxTrainingRounds": 2, "BatchSize": 24, **QUIET}  # one batch a round: same batches either way
    a = NetTrain(lstm(), data, LengthBucketing=True, **one)
    b = NetTrain(lstm(), data, LengthBucketing=False, **one)
    for k in a.arrays():
        torch.testing.assert_close(a.arrays()[k], b.arrays()[k], rtol=1e-5, atol=1e-6)
    # several batches, arrays (nearly) still: the round loss is the mean example loss either way
    still = {"MaxTrainingRounds": 1, "BatchSize": 5, "LearningRate": 1e-9, **QUIET}
    on = NetTrain(lstm(), data, "RoundLossList", LengthBucketing=True, **still)
    off = NetTrain(lstm(), data, "RoundLossList", LengthBucketing=False, **still)
    assert on[0] == pytest.approx(off[0], rel=1e-5)
    assert on[0] == pytest.approx(NetMeasurements(lstm(), data, "Loss"), rel=1e-5)


def _flat_problem(seed: int):
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    return module, x, y


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_flat_arrays_and_the_direct_adam_step_equal_torch_adam_on_separate_arrays(wd):
    """NetTrain's step (`optimizer(..., flat=True)`, `step_function`): the arrays as views of one
    buffer per group, the fused Adam kernel called directly, against torch.optim.Adam stepping
    the same arrays kept apart (its own fused step and its for-loop step: to rounding).

    The fused kernel computes the elements past a range's last whole vector in double, and its
    ranges follow the tensors it is given: one flat buffer here, separate arrays there, so the
    tails fall on different elements (and where depends on the CPU's vector width). Each such
    element differs by a rounding of float32 (2^-24 relative) per step; rtol 1e-6 allows a few
    of them over the five steps and is far below any real difference in the update."""
    from wlnet.train.optim import optimizer, step_function

    spec = ("ADAM", {"LearningRate": 0.01, "Beta1": 0.9, "Beta2": 0.99, "Epsilon": 1e-8, "L2Regularization": wd})
    ours, x, y = _flat_problem(0)
    fused_twin, loop_twin = _flat_problem(0)[0], _flat_problem(0)[0]
    factors = {"0.weight": 2.0}  # two learning-rate groups, so two buffers
    opt, flats = optimizer(ours, factors, spec, flat=True)
    assert len(flats) == 2 and sum(f.leaf.numel() for f in flats) == sum(p.numel() for p in ours.parameters())
    step = step_function(opt)
    assert step != opt.step
    twins = []
    for twin, fused in ((fused_twin, True), (loop_twin, False)):
        groups = [{"params": [twin[0].weight], "lr": 0.02}, {"params": [twin[0].bias, *twin[2].parameters()]}]
        twins.append((twin, torch.optim.Adam(groups, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd,
                                             fused=fused)))
    for t in range(5):
        torch.nn.functional.mse_loss(ours(x), y).backward()
        step()
        torch._foreach_zero_([f.leaf.grad for f in flats])
        for twin, twin_opt in twins:
            torch.nn.functional.mse_loss(twin(x), y).backward()
            twin_opt.step()
            twin_opt.zero_grad()
        for (name, p), q, r in zip(ours.named_parameters(), fused_twin.parameters(), loop_twin.parameters()):
            where = f"step {t + 1}, {name}"
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=where)
            np.testing.assert_allclose(p.detach().numpy(), r.detach().numpy(), rtol=1e-5, atol=1e-7, err_msg=where)
    # the arrays stay views of the buffers: the module and the optimizer see the same numbers
    assert ours[0].weight.data_ptr() == flats[0].leaf.data_ptr()  # the group of factor 2, met first
    assert opt.state[flats[0].leaf]["step"].item() == 5


def test_the_snapshot_step_equals_the_plain_step_and_leaves_the_arrays_before_it_in_the_gradients(monkeypatch):
    """`snapshot_step` (a large net's ADAM step, chunk by chunk) against `step_function`'s step on
    a twin: the same arrays, to rounding (torch's kernel computes a range's last elements, short of
    a whole vector, in double, and its threads' ranges depend on the buffer's length); after each
    step the gradient buffers hold exactly the arrays from before it, as recorded here. Chunks of
    7 elements split the arrays and the groups unevenly."""
    from wlnet.train import optim as TO

    monkeypatch.setattr(TO, "SNAPSHOT_CHUNK", 7)
    spec = ("ADAM", {"LearningRate": 0.01, "Beta1": 0.9, "Beta2": 0.99, "Epsilon": 1e-8, "L2Regularization": 0.01})
    (ours, x, y), twin = _flat_problem(2), _flat_problem(2)[0]
    opt, flats = TO.optimizer(ours, {"0.weight": 2.0}, spec, flat=True)
    twin_opt, twin_flats = TO.optimizer(twin, {"0.weight": 2.0}, spec, flat=True)
    leaves = [f.leaf for f in flats]
    assert TO.snapshot_in_gradients(opt, leaves)
    step, twin_step = TO.snapshot_step(opt, leaves), TO.step_function(twin_opt)
    for t in range(4):
        for module, fl in ((ours, flats), (twin, twin_flats)):
            torch._foreach_zero_([f.leaf.grad for f in fl])
            torch.nn.functional.mse_loss(module(x), y).backward()
        before = [f.leaf.detach().clone() for f in flats]
        step()
        twin_step()
        for f, g, b in zip(flats, twin_flats, before):
            np.testing.assert_allclose(f.leaf.detach().numpy(), g.leaf.detach().numpy(), rtol=1e-6, atol=1e-9)
            assert torch.equal(f.leaf.grad, b) and not torch.equal(f.leaf, b), t
    assert opt.state[leaves[0]]["step"].item() == 4


def _snapshot_runs(monkeypatch, net, data, **options):
    """The same NetTrain run with the snapshot as a copy of the arrays and in the gradient buffers
    (chunks of 5 elements, so that even a small net's step runs chunk by chunk)."""
    from wlnet.train import optim as TO

    plain = NetTrain(net, data, All, **QUIET, **options)
    monkeypatch.setattr(TO, "SNAPSHOT_CHUNK", 5)
    return plain, NetTrain(net, data, All, **QUIET, **options)


def test_nettrain_with_the_snapshot_in_the_gradients_trains_as_with_a_copy(monkeypatch):
    xs, ys = ragged()
    plain, chunked = _snapshot_runs(monkeypatch, lstm(), list(zip(xs, ys)), MaxTrainingRounds=3, BatchSize=4,
                                    RandomSeeding=1)
    assert plain["BatchLossList"] == pytest.approx(chunked["BatchLossList"], rel=1e-6)
    for k, v in plain["TrainedNet"].arrays().items():
        np.testing.assert_allclose(v.numpy(), chunked["TrainedNet"].arrays()[k].numpy(), rtol=1e-5, atol=1e-8)


def test_a_diverging_adam_run_returns_the_arrays_before_the_last_step_from_the_gradients(monkeypatch):
    """ADAM's first step at LearningRate 1e38 overflows the arrays; the second batch's loss is not
    finite, and the net returned is the one before that step: the initial net, exactly."""
    x, y = regression()
    data = (x.tolist(), y.tolist())
    options = dict(Method="ADAM", LearningRate=1e38, BatchSize=len(y), MaxTrainingRounds=5, RandomSeeding=1)
    with pytest.warns(NetWarning, match="diverged"):
        plain, chunked = _snapshot_runs(monkeypatch, linear(), data, **options)
    for res in (plain, chunked):
        assert res["ReasonTrainingStopped"] == "Divergence" and res["TotalBatches"] == 1
        a = res["TrainedNet"].arrays()
        np.testing.assert_array_equal(a[(1, "Weights")].numpy().ravel(), W0)
        assert float(a[(1, "Biases")][0]) == B0


def test_other_methods_keep_the_optimizer_step():
    from wlnet.train.optim import optimizer, step_function

    module = _flat_problem(1)[0]
    sgd, _ = optimizer(module, {}, ("SGD", {"LearningRate": 0.1, "Momentum": 0.9, "L2Regularization": 0.0}), flat=True)
    assert step_function(sgd) == sgd.step


def test_outputs_kept_for_measurements_do_not_hold_a_larger_buffer():
    """A recurrent layer's training output can be a view of the kernel's buffers (gates, cells and
    states in one block): kept for the round's measurements, it is copied; an output that is its
    own tensor is kept as it is."""
    from wlnet.core.data import Seq
    from wlnet.train.hooks import _detach

    block = torch.randn(3, 7, 4, 5)  # three (T + 1, B, n) buffers
    out = block[2, 1:].transpose(0, 1)  # (B, T, n), a view of the last
    kept = _detach(Seq(out, torch.tensor([6, 6, 5, 6])))
    assert torch.equal(kept.data, out) and kept.data.untyped_storage().nbytes() == out.numel() * 4
    plain = torch.randn(4, 6, 5)
    assert _detach(plain).data_ptr() == plain.data_ptr()


def test_only_the_hooks_with_a_batch_callback_are_called_per_batch(monkeypatch):
    """The loop calls a hook's batch callback only where the hook defines one: with no per-batch
    option only the Ctrl-C check runs per batch; each per-batch option adds its own hook."""
    seen = {}
    real = T.train

    def spy(run, hooks):
        seen["batch"] = [type(h).__name__ for h in hooks if hasattr(type(h), "on_batch_end")]
        seen["rounds"] = [type(h).__name__ for h in hooks if hasattr(type(h), "on_round_end")]
        real(run, hooks)

    monkeypatch.setattr(T, "train", spy)
    x, y = regression()
    data = (x.tolist(), y.tolist())
    NetTrain(linear(), data, MaxTrainingRounds=2, **QUIET)
    assert seen["batch"] == ["Interrupt"]
    assert seen["rounds"] == ["Divergence", "Interrupt", "Rounds"]
    calls = []
    NetTrain(linear(), data, MaxTrainingRounds=2, BatchSize=4, TimeGoal=1000, TrainingProgressMeasurements="MeanSquare",
             TrainingProgressFunction=(calls.append, {"Interval": ("Batches", 2)}), TrainingStoppingCriterion="Loss",
             **QUIET)
    assert seen["batch"] == ["Measurements", "BatchProgressFunction", "Interrupt", "TimeGoal"]
    assert seen["rounds"] == ["Divergence", "Interrupt", "Rounds", "Stopping"]
    assert [c["AbsoluteBatch"] for c in calls] == [2, 4, 6]
