"""NetTrain never silent, never stuck, never destructive: the functions given as options checked
when they are given, checkpoints that know their run, and data-parallel ranks given unequal data
stopped together with one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wlnet import LinearLayer, NetInitialize, NetTrain, OptionError, TrainingError

QUIET = {"TrainingProgressReporting": None}


def linear():
    return NetInitialize(LinearLayer(1, Input=1), RandomSeeding=3)


DATA = [([float(x)], [2.0 * x + 1.0]) for x in range(8)]


# ---- the functions given as options --------------------------------------------------------------------
class NoSignature:
    """A callable Python cannot give a signature for (as some builtins and C callables), that takes
    no argument."""

    __signature__ = "none"

    def __call__(self):
        return 1.0


@pytest.mark.parametrize("options, match", [
    ({"Method": ("SGD", {"LearningRateSchedule": lambda t: 1.0})},
     r'"LearningRateSchedule" setting of Method \'SGD\' must be a function f\(batch, total batches\), called '
     r"with 2 arguments, but .*<lambda>\(t\) cannot be called so"),
    ({"Method": ("ADAM", {"LearningRateSchedule": lambda t, n, m: 1.0})}, r"<lambda>\(t, n, m\) cannot be called so"),
    ({"TrainingProgressFunction": lambda: None},
     r"TrainingProgressFunction must be a function f\(progress dict\), called with 1 argument, but .*<lambda>\(\)"),
    ({"TrainingProgressFunction": (lambda a, b: None, {"Interval": ("Batches", 2)})}, r"<lambda>\(a, b\)"),
    ({"TrainingProgressFunction": lambda *, info: None}, r"<lambda>\(\*, info\)"),
    ({"TrainingStoppingCriterion": lambda a, b: False},
     r"TrainingStoppingCriterion must be a function f\(progress dict\), called with 1 argument"),
])
def test_a_function_of_the_wrong_arity_is_refused_when_given(options, match):
    calls = []

    def watch(info):
        calls.append(info["AbsoluteBatch"])

    opts = {"TrainingProgressFunction": (watch, {"Interval": ("Batches", 1)}), **options}
    with pytest.raises(OptionError, match=match):
        NetTrain(linear(), DATA, MaxTrainingRounds=2, BatchSize=4, **QUIET, **opts)
    assert calls == []  # refused before the first batch


def test_functions_that_accept_the_arity_are_taken():
    """*args, defaults, and builtins without a signature: trained as with the plain functions."""
    plain = NetTrain(linear(), DATA, MaxTrainingRounds=3, BatchSize=4, Method=("SGD", {"LearningRateSchedule":
                                                                                       lambda t, n: 0.5}), **QUIET)
    seen = []
    for schedule, progress in [(lambda *a: 0.5, lambda info, extra=1: seen.append(info["Round"])),
                               (lambda t, n=0, *rest: np.float32(0.5), lambda *a: seen.append(a[0]["Round"])),
                               (lambda t, n: torch.tensor(0.5, dtype=torch.float64), print)]:
        got = NetTrain(linear(), DATA, MaxTrainingRounds=3, BatchSize=4, Method=("SGD", {"LearningRateSchedule":
                                                                                       schedule}),
                       TrainingProgressFunction=progress, TrainingStoppingCriterion=lambda info, *more: False, **QUIET)
        for k, t in plain.arrays().items():
            torch.testing.assert_close(got.arrays()[k], t, rtol=0, atol=0)
    assert seen == [1, 2, 3, 1, 2, 3]
    # max has no signature in Python: accepted, and called as f(batch, total batches)
    NetTrain(linear(), DATA, MaxTrainingRounds=1, Method=("SGD", {"LearningRateSchedule": max}), **QUIET)


def test_a_function_without_a_signature_that_cannot_be_called_so_fails_clearly():
    with pytest.raises(OptionError, match=r"the TrainingProgressFunction NoSignature could not be called as a "
                                          r"function f\(progress dict\): TypeError"):
        NetTrain(linear(), DATA, MaxTrainingRounds=2, TrainingProgressFunction=NoSignature(), **QUIET)
    with pytest.raises(OptionError, match=r"the LearningRateSchedule function NoSignature could not be called as a "
                                          r"function f\(batch, total batches\)"):
        NetTrain(linear(), DATA, MaxTrainingRounds=2, Method=("SGD", {"LearningRateSchedule": NoSignature()}),
                 **QUIET)


def test_an_error_inside_a_checked_function_is_its_own():
    def progress(info):
        raise TypeError("the function's own mistake")

    with pytest.raises(TypeError, match="the function's own mistake"):
        NetTrain(linear(), DATA, MaxTrainingRounds=2, TrainingProgressFunction=progress, **QUIET)


@pytest.mark.parametrize("answer", [True, np.bool_(True), torch.tensor(True), np.array(True), "StopTraining"])
def test_any_boolean_scalar_true_stops(answer):
    rounds = []

    def stop(info):
        rounds.append(info["Round"])
        return answer if info["Round"] == 2 else False

    res = NetTrain(linear(), DATA, ["ReasonTrainingStopped", "RoundLossList"], MaxTrainingRounds=6, BatchSize=4,
                   TrainingStoppingCriterion=stop, **QUIET)
    assert res[0] == "StoppingCriterion" and len(res[1]) == 2 and rounds == [1, 2]


@pytest.mark.parametrize("answer", [False, np.bool_(False), torch.tensor(False), np.array(False)])
def test_any_boolean_scalar_false_goes_on(answer):
    res = NetTrain(linear(), DATA, ["ReasonTrainingStopped", "RoundLossList"], MaxTrainingRounds=3, BatchSize=4,
                   TrainingStoppingCriterion=lambda info: answer, **QUIET)
    assert res[0] == "MaxTrainingRounds" and len(res[1]) == 3


@pytest.mark.parametrize("answer, shown", [
    (np.array([True, False]), r"array\(\[ True, False\]\) \(of type ndarray\)"),
    (torch.tensor([True]), r"tensor\(\[True\]\) \(of type Tensor\)"),
    (1, r"1 \(of type int\)"),
    (None, r"None \(of type NoneType\)"),
    ("Stop", r"'Stop' \(of type str\)"),
    (torch.tensor(1.0), r"tensor\(1\.\) \(of type Tensor\)"),
])
def test_a_stopping_answer_that_is_not_a_boolean_scalar_is_refused(answer, shown):
    with pytest.raises(TrainingError, match=r'the TrainingStoppingCriterion function must return True \(to stop\), '
                                            r'False \(to go on\) or "StopTraining", but after round 1 it returned '
                                            + shown):
        NetTrain(linear(), DATA, MaxTrainingRounds=3, TrainingStoppingCriterion=lambda info: answer, **QUIET)


# ---- checkpoints that know their run ----------------------------------------------------------------------
def chain(seed):
    from wlnet import NetChain

    return NetInitialize(NetChain([LinearLayer(3), LinearLayer(1)], Input=2), RandomSeeding=seed)


PAIRS = [([float(i % 3), float(i % 5) / 2], [float(i % 4)]) for i in range(12)]
RESULTS = ["TrainedNet", "RoundLossList", "BatchLossList", "TotalBatches"]


def assert_same_run(a, b):
    for k, t in a[0].arrays().items():
        assert torch.equal(b[0].arrays()[k], t), k
    assert a[1:] == b[1:]


def test_a_net_of_the_same_shapes_but_other_arrays_is_another_run(tmp_path):
    import os

    f, d = tmp_path / "c.wlnet", tmp_path / "ck"
    opts = {"MaxTrainingRounds": 2, "BatchSize": 4, **QUIET}
    for spec in (("File", f), ("Directory", d)):
        NetTrain(chain(1), PAIRS, **opts, TrainingProgressCheckpointing=spec)
    before = f.with_name("c.wlnet.training").read_bytes()
    longer = {**opts, "MaxTrainingRounds": 4}
    with pytest.raises(TrainingError, match=r"c\.wlnet\.training' belongs to another run: its arrays differ from this "
                                            r"one's"):
        NetTrain(chain(2), PAIRS, **longer, TrainingProgressCheckpointing=("File", f, {"Resume": True}))
    assert f.with_name("c.wlnet.training").read_bytes() == before  # refused before writing anything
    from wlnet import NetWarning

    with pytest.warns(NetWarning, match=r"holds no checkpoint of this run, which starts afresh .*its arrays differ"):
        got = NetTrain(chain(2), PAIRS, RESULTS, **longer, TrainingProgressCheckpointing=("Directory", d,
                                                                                           {"Resume": True}))
    assert_same_run(NetTrain(chain(2), PAIRS, RESULTS, **longer), got)  # trained from its own arrays, all 4 rounds
    assert len(os.listdir(d)) == 4 + 8
    # the same arrays resume (rounds 3 and 4 only)
    again = NetTrain(chain(1), PAIRS, RESULTS, **longer, TrainingProgressCheckpointing=("File", f, {"Resume": True}))
    assert_same_run(NetTrain(chain(1), PAIRS, RESULTS, **longer), again)


def test_two_runs_sharing_a_directory_each_resume_their_own_latest_checkpoint(tmp_path):
    import glob
    import os
    import warnings

    d = tmp_path / "ck"
    runs = {"a": (chain(1), {"BatchSize": 4}), "b": (chain(1), {"BatchSize": 3}), "c": (chain(2), {"BatchSize": 4})}
    for rounds, (net, opts) in zip((3, 2, 1), runs.values()):  # the later runs' files are the newer
        NetTrain(net, PAIRS, MaxTrainingRounds=rounds, **opts, **QUIET, TrainingProgressCheckpointing=("Directory", d))
    assert len(glob.glob(str(d / "*.training"))) == 6
    for name, (net, opts) in runs.items():
        unbroken = NetTrain(net, PAIRS, RESULTS, MaxTrainingRounds=5, **opts, **QUIET)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # its own checkpoint found: nothing to say
            resumed = NetTrain(net, PAIRS, RESULTS + ["CheckpointingFiles"], MaxTrainingRounds=5, **opts, **QUIET,
                               TrainingProgressCheckpointing=("Directory", d, {"Resume": True}))
        assert_same_run(unbroken, resumed[:4])
        written = [os.path.basename(p) for p in resumed[4] if p.endswith(".training")]
        done = {"a": 3, "b": 2, "c": 1}[name]
        assert [w.rsplit("_", 1)[1] for w in written] == [f"round-{r:05d}.training" for r in range(done + 1, 6)]
        # under the run's own name, the one its first checkpoints have
        own = sorted(glob.glob(str(d / f"{written[0].rsplit('_', 1)[0]}_round-*.training")))
        assert len(own) == 5
    assert len(glob.glob(str(d / "*.training"))) == 15


@pytest.mark.parametrize("fingerprint", [{"$tensor": "x"}, {"$dict": [[[1], 2]]}, {"$nope": 1}, {"arrays": [1]},
                                         {"$tuple": 3}])
def test_a_malformed_fingerprint_is_a_training_error(tmp_path, fingerprint):
    from wlnet.io.wlnet import Kind, read_document, write_document
    from wlnet.train.checkpoint import KEY

    f = tmp_path / "c.wlnet"
    opts = {"MaxTrainingRounds": 1, "BatchSize": 4, **QUIET}
    NetTrain(chain(1), PAIRS, **opts, TrainingProgressCheckpointing=("File", f))
    state = str(f) + ".training"
    doc, tensors = read_document(state, Kind(KEY, "test", "checkpoint"))
    # its own run's identity: the fingerprint is read to restore the run
    write_document(state, {**doc, "fingerprint": fingerprint}, tensors, KEY, "test")
    with pytest.raises(TrainingError, match=r"c\.wlnet\.training' cannot be resumed from: StructureError: "):
        NetTrain(chain(1), PAIRS, **{**opts, "MaxTrainingRounds": 2},
                 TrainingProgressCheckpointing=("File", f, {"Resume": True}))
    # another run's: the fingerprint is read to say what differs
    write_document(state, {**doc, "identity": "0" * 32, "fingerprint": fingerprint}, tensors, KEY, "test")
    with pytest.raises(TrainingError, match=r"belongs to another run: its (fingerprint cannot be read|net, arrays, "
                                            r"data, .* differ) from this one's"):
        NetTrain(chain(1), PAIRS, **{**opts, "MaxTrainingRounds": 2},
                 TrainingProgressCheckpointing=("File", f, {"Resume": True}))


# ---- data parallel with unequal data ----------------------------------------------------------------------
UNEQUAL = """
import json, os, sys
import torch
sys.path.insert(0, {tests!r})
from test_distributed import data, net
from wlnet import TrainingError
from wlnet.train.api import NetTrain

rank = int(os.environ["RANK"])
xs, ys, vxs, vys = data()
def generator(info):  # the second batch 8 examples on rank 0, 6 on rank 1
    k = 8 - 2 * rank if info["AbsoluteBatch"] == 2 else 8
    return list(zip(xs, ys))[info["AbsoluteBatch"]:info["AbsoluteBatch"] + k]


runs = {{"data": (32 if rank == 0 else 24, {{}}),
        "validation": (32, {{"ValidationSet": list(zip(vxs, vys))[:8 - 3 * rank]}}),
        "rounds": (32, {{"MaxTrainingRounds": 2 + rank}}),
        "generator": (None, {{"RoundLength": 24}}),
        "equal": (32, {{}})}}
out = {{}}
for name, (n, options) in runs.items():
    try:
        trained = NetTrain(net(), generator if n is None else list(zip(xs[:n], ys[:n])),
                           **{{"MaxTrainingRounds": 2, "BatchSize": 8,
                           "TrainingProgressReporting": None, **options}})
        out[name] = {{"arrays": {{repr(k): v.tolist() for k, v in trained.arrays().items()}}}}
    except TrainingError as e:
        out[name] = {{"type": type(e).__name__, "message": str(e)}}

# each rank given another net: the run starts from rank 0's, which identifies its checkpoints on every rank
import warnings
from wlnet import LongShortTermMemoryLayer, NetInitialize, NetWarning

start = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)), RandomSeeding=20 + rank)
pairs, folder = list(zip(xs, ys)), os.path.join({out!r}, "ck")
same = {{"BatchSize": 8, "TrainingProgressReporting": None}}
NetTrain(start, pairs, MaxTrainingRounds=2, TrainingProgressCheckpointing=("Directory", folder), **same)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    resumed = NetTrain(start, pairs, MaxTrainingRounds=3, TrainingProgressCheckpointing=("Directory", folder,
                       {{"Resume": True}}), **same)
unbroken = NetTrain(start, pairs, MaxTrainingRounds=3, **same)
out["checkpoint"] = {{"warnings": [str(w.message) for w in caught if issubclass(w.category, NetWarning)],
                     "files": sorted(os.listdir(folder)),
                     "same": all(torch.equal(resumed.arrays()[k], t) for k, t in unbroken.arrays().items()),
                     "arrays": {{repr(k): v.tolist() for k, v in resumed.arrays().items()}}}}
with open(os.path.join({out!r}, f"unequal{{rank}}.json"), "w") as f:
    json.dump(out, f)
"""


def test_ranks_given_unequal_data_stop_alike_with_one_clear_error(tmp_path):
    """Ranks given 32 and 24 examples (or validation sets of 8 and 5, or MaxTrainingRounds 2 and 3)
    would pair up different collectives: every rank stops at the start with the same TrainingError
    naming what differs on which process. A generator giving the ranks batches of different sizes
    stops them at that batch, alike. The group goes on to train a run whose ranks agree, and ranks
    given different nets resume their run's checkpoint (identified by rank 0's net)."""
    import json

    from test_distributed import _two_processes

    _two_processes(tmp_path, "unequal.py", UNEQUAL)
    r0, r1 = (json.loads((tmp_path / f"unequal{r}.json").read_text()) for r in (0, 1))
    expected = {"data": "training examples (process 0: training examples 32; process 1: training examples 24)",
                "validation": "validation examples (process 0: validation examples 8; process 1: validation "
                              "examples 5)",
                "rounds": "MaxTrainingRounds (process 0: MaxTrainingRounds 2; process 1: MaxTrainingRounds 3)"}
    for name, what in expected.items():
        assert r0[name]["type"] == r1[name]["type"] == "TrainingError", (name, r0[name], r1[name])
        assert r0[name]["message"] == r1[name]["message"] == (
            f"NetTrain: the processes of this data-parallel run were given different {what}. Every process must be "
            "given the same data and options: each trains on its share of every batch."), name
    # a generator's batches, compared as they come
    assert r0["generator"]["type"] == r1["generator"]["type"] == "TrainingError", (r0["generator"], r1["generator"])
    assert r0["generator"]["message"] == r1["generator"]["message"] == (
        "NetTrain: the processes of this data-parallel run were given batches of different sizes in round 1, batch 2. "
        "A generator must give every process the same batch for the same info: each trains on its share of every "
        "batch.")
    assert r0["equal"]["arrays"] == r1["equal"]["arrays"] and r0["equal"]["arrays"]
    # ranks given different nets resume the checkpoint their run (rank 0's net) wrote, exactly
    for r in (r0, r1):
        ck = r["checkpoint"]
        assert ck["warnings"] == [] and ck["same"], ck
        assert [f.rsplit("_", 1)[1] for f in ck["files"]] == [f"round-0000{k}.{e}" for k in (1, 2, 3)
                                                               for e in ("training", "wlnet")]
    assert r0["checkpoint"]["arrays"] == r1["checkpoint"]["arrays"]
