"""TrainingProgressCheckpointing: the files written, exact resumption (the same arrays and loss
lists as a run never interrupted) after losing the later checkpoints, after kill -9 in a
subprocess, and under torchrun; another run's checkpoints refused; bad option values."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch

from wlnet import (
    All,
    FileFormatError,
    Import,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetDecoder,
    NetEncoder,
    NetTrain,
    NetWarning,
    OptionError,
    Scaled,
    SequenceLastLayer,
    SoftmaxLayer,
    TrainingError,
)
from wlnet.train.checkpoint import ROUND_FILE

QUIET = {"TrainingProgressReporting": None}
LISTS = ("RoundLossList", "ValidationLossList", "BatchLossList", "RoundMeasurementsLists",
         "ValidationMeasurementsLists", "TotalBatches", "ExamplesProcessed", "BestValidationRound",
         "ReasonTrainingStopped", "FinalLearningRate")


def regression(n=40, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(int(rng.integers(1, 6)), 2)).round(3).tolist() for _ in range(n)]
    return [(x, [sum(map(sum, x)), len(x) / 3]) for x in xs]


def regression_net(**lstm):
    return NetChain([LongShortTermMemoryLayer(4, Input=("Varying", 2), **lstm), SequenceLastLayer(), LinearLayer(2)])


def classifier_net():
    return NetChain([LongShortTermMemoryLayer(5), SequenceLastLayer(), LinearLayer(3), SoftmaxLayer()],
                    Input=NetEncoder(("Characters", "xy", "UnitVector")),
                    Output=NetDecoder(("Class", ["Less", "Greater", "Equal"])))


def comparison(n=30, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    while len(out) < n:
        s = "".join(rng.choice(["x", "y"], size=int(rng.integers(1, 7))))
        d = s.count("x") - s.count("y")
        out[s] = "Less" if d < 0 else "Greater" if d > 0 else "Equal"
    return out


def generated(info):
    """A batch of regression examples that depends only on the batch's number."""
    return regression(info["BatchSize"], seed=info["AbsoluteBatch"] + 100 * info["Validation"])


def same_results(a, b):
    for key in ("TrainedNet", "FinalNet"):
        arrays_a, arrays_b = a[key].arrays(), b[key].arrays()
        assert arrays_a.keys() == arrays_b.keys()
        for k, t in arrays_a.items():
            assert torch.equal(arrays_b[k], t), (key, k)
    for key in LISTS:
        assert equal(a[key], b[key]), key


def equal(x, y) -> bool:
    """==, with numpy arrays (a ConfusionMatrix) compared by value and type."""
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return type(x) is type(y) and x.dtype == y.dtype and np.array_equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return type(x) is type(y) and len(x) == len(y) and all(equal(u, v) for u, v in zip(x, y))
    return x == y


def drop_after(folder, r):
    """Remove the checkpoints of the rounds after r (as if the run had stopped after round r)."""
    for f in glob.glob(os.path.join(folder, "*")):
        m = ROUND_FILE.match(os.path.basename(f).replace(".wlnet", ".training"))
        if m and int(m["round"]) > r:
            os.remove(f)


CASES = {
    "ADAM, dropout, validation, bucketing": (
        regression_net, regression, {"Method": "ADAM", "ValidationSet": Scaled(0.2), "BatchSize": 8,
                                     "MaxTrainingRounds": 5}),
    "SGD's polynomial schedule, RoundLength, Real64, Interval 2": (
        lambda: regression_net(Dropout={"VariationalState": 0.3}), regression,
        {"Method": "SGD", "RoundLength": 28, "BatchSize": 8, "WorkingPrecision": "Real64", "MaxTrainingRounds": 6,
         "interval": 2}),
    "a generator, RoundLength": (
        regression_net, lambda: generated, {"BatchSize": 6, "RoundLength": 12, "MaxTrainingRounds": 4,
                                            "ValidationSet": generated}),
    "RMSProp, measurements, a stopping criterion, no bucketing": (
        classifier_net, comparison, {"Method": ("RMSProp", {"GradientClipping": 0.5}), "BatchSize": 6,
                                     "TrainingProgressMeasurements": ["Accuracy", "ConfusionMatrix"],
                                     "TrainingStoppingCriterion": {"Criterion": "Loss", "Patience": 1,
                                                                   "Improvement": 0.05},
                                     "ValidationSet": Scaled(0.25), "LengthBucketing": False,
                                     "MaxTrainingRounds": 8}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resuming_after_the_later_checkpoints_are_lost_ends_as_an_unbroken_run(case, tmp_path):
    make, data, options = CASES[case]
    options = dict(options)
    interval = options.pop("interval", 1)
    d = tmp_path / "checkpoints"
    unbroken = NetTrain(make(), data(), All, RandomSeeding=5, **options, **QUIET)
    written = NetTrain(make(), data(), All, RandomSeeding=5, **options, **QUIET,
                       TrainingProgressCheckpointing=("Directory", d, {"Interval": ("Rounds", interval)}))
    same_results(unbroken, written)  # checkpointing does not change the run
    rounds = written["TotalRounds"]
    files = written["CheckpointingFiles"]
    assert [os.path.basename(f).rsplit("_", 1)[1] for f in files] == [
        f"round-{r:05d}{ext}" for r in range(interval, rounds + 1, interval) for ext in (".wlnet", ".training")]
    assert sorted(files) == sorted(glob.glob(str(d / "*")))
    keep = interval if rounds > interval else 0
    drop_after(d, keep)
    resumed = NetTrain(make(), data(), All, RandomSeeding=5, **options, **QUIET,
                       TrainingProgressCheckpointing=("Directory", d, {"Interval": interval, "Resume": True}))
    same_results(unbroken, resumed)
    assert len(resumed["CheckpointingFiles"]) == len(files) - 2 * (keep // interval)


def test_resuming_a_run_whose_divergence_snapshot_is_in_the_gradients(monkeypatch, tmp_path):
    """The same with the ADAM step of a large net (`snapshot_step`, its snapshot in the gradient
    buffers; chunks of 5 elements make this small net one): the restored optimizer state is what
    the resumed steps update."""
    from wlnet.train import optim

    monkeypatch.setattr(optim, "SNAPSHOT_CHUNK", 5)
    test_resuming_after_the_later_checkpoints_are_lost_ends_as_an_unbroken_run("ADAM, dropout, validation, bucketing",
                                                                                tmp_path)


def test_a_checkpoint_net_is_the_net_of_its_round_and_file_mode_overwrites(tmp_path):
    path = tmp_path / "latest.wlnet"
    two = NetTrain(regression_net(), regression(), All, MaxTrainingRounds=2, BatchSize=8, **QUIET,
                   TrainingProgressCheckpointing=("File", path))
    assert two["CheckpointingFiles"] == [str(path), str(path) + ".training"]
    assert sorted(os.listdir(tmp_path)) == ["latest.wlnet", "latest.wlnet.training"]
    saved = Import(path)
    with pytest.raises(FileFormatError, match="training state of a NetTrain checkpoint, not a net; Import the .wlnet"):
        Import(str(path) + ".training", "WLNet")
    for k, t in two["FinalNet"].arrays().items():
        assert torch.equal(saved.arrays()[k], t), k
    # resuming a finished run trains nothing more; raising MaxTrainingRounds trains on as one longer run
    again = NetTrain(regression_net(), regression(), All, MaxTrainingRounds=2, BatchSize=8, **QUIET,
                     TrainingProgressCheckpointing=("File", path, {"Resume": True}))
    same_results(two, again)
    four = NetTrain(regression_net(), regression(), All, MaxTrainingRounds=4, BatchSize=8, **QUIET)
    longer = NetTrain(regression_net(), regression(), All, MaxTrainingRounds=4, BatchSize=8, **QUIET,
                      TrainingProgressCheckpointing=("File", path, {"Resume": True}))
    same_results(four, longer)


def test_resume_without_checkpoints_starts_afresh_and_a_damaged_one_is_skipped(tmp_path):
    d = tmp_path / "new"
    opts = {"MaxTrainingRounds": 3, "BatchSize": 8, **QUIET}
    fresh = NetTrain(regression_net(), regression(), All, **opts,
                     TrainingProgressCheckpointing=("Directory", d, {"Resume": True}))
    same_results(NetTrain(regression_net(), regression(), All, **opts), fresh)
    assert len(os.listdir(d)) == 6
    latest = sorted(glob.glob(str(d / "*.training")))[-1]
    with open(latest, "r+b") as f:
        f.truncate(100)
    drop_after(d, 3)
    with pytest.warns(NetWarning, match=r"skipping the checkpoint .*round-00003\.training.*truncated"):
        resumed = NetTrain(regression_net(), regression(), All, **opts,
                           TrainingProgressCheckpointing=("Directory", d, {"Resume": True}))
    same_results(fresh, resumed)
    assert [os.path.basename(f).rsplit("_", 1)[1] for f in resumed["CheckpointingFiles"]] == [
        "round-00003.wlnet", "round-00003.training"]


def test_another_runs_checkpoints_are_never_resumed(tmp_path):
    """Another run's checkpoints (other BatchSize, data, net): in a directory the run says what
    differs, starts afresh and leaves them; in a file, which it would overwrite, it is an error."""
    d, f = tmp_path / "ck", tmp_path / "one.wlnet"
    for spec in (("Directory", d), ("File", f)):
        NetTrain(regression_net(), regression(), MaxTrainingRounds=1, BatchSize=8, **QUIET,
                 TrainingProgressCheckpointing=spec)
    theirs = sorted(os.listdir(d))
    cases = [(regression_net, regression(), {"BatchSize": 4}, r"its BatchSize differs"),
             (regression_net, regression(seed=3), {}, r"its data differs"),
             (lambda: NetChain([LongShortTermMemoryLayer(5, Input=("Varying", 2)), SequenceLastLayer(),
                                LinearLayer(2)]), regression(), {}, r"its net, arrays differ")]
    for i, (make, data, options, match) in enumerate(cases):
        opts = {"MaxTrainingRounds": 2, "BatchSize": 8, **QUIET, **options}
        with pytest.raises(TrainingError, match=r"the checkpoint .*one\.wlnet\.training' belongs to another run: "
                                                + match + r" from this one's\. Resume with the same net"):
            NetTrain(make(), data, **opts, TrainingProgressCheckpointing=("File", f, {"Resume": True}))
        mine = tmp_path / f"ck{i}"
        shutil.copytree(d, mine)
        with pytest.warns(NetWarning, match=r"holds no checkpoint of this run, which starts afresh \(the checkpoint "
                                            r".*round-00001\.training' belongs to another run: " + match):
            got = NetTrain(make(), data, All, **opts,
                           TrainingProgressCheckpointing=("Directory", mine, {"Resume": True}))
        same_results(got, NetTrain(make(), data, All, **opts))
        assert set(theirs) < set(os.listdir(mine)) and len(os.listdir(mine)) == len(theirs) + 4
    assert len(os.listdir(d)) == 2


@pytest.mark.parametrize("spec, match", [
    (("Folder", "x"), "must be None, .*\"Directory\""),
    ("ck", "must be None"),
    (("Directory", "x", {"Every": 2}), "'Every' is not a setting"),
    (("Directory", "x", {"Interval": 0}), "\"Interval\" must be a positive number of rounds"),
    (("Directory", "x", {"Interval": ("Batches", 3)}), "\"Interval\" must be a positive number of rounds"),
    (("Directory", "x", {"Resume": "yes"}), "\"Resume\" must be True or False"),
    (("Directory", "x", [("Resume", True)]), "the settings must be a dict"),
])
def test_bad_checkpointing_options(spec, match, tmp_path):
    with pytest.raises(OptionError, match=match):
        NetTrain(regression_net(), regression(), MaxTrainingRounds=1, **QUIET, TrainingProgressCheckpointing=spec)
    with pytest.raises(OptionError, match=r"names a directory; use \(\"Directory\""):
        NetTrain(regression_net(), regression(), MaxTrainingRounds=1, **QUIET,
                 TrainingProgressCheckpointing=("File", tmp_path))
    assert not os.path.exists("x")


# ---- kill -9 in a subprocess, then resume in another ------------------------------------------------
SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_train_checkpoint import regression, regression_net
    from wlnet import All, Export, NetTrain, Scaled

    folder, out = sys.argv[1], sys.argv[2]
    options = dict(MaxTrainingRounds=14, BatchSize=4, ValidationSet=Scaled(0.2), TrainingProgressReporting=None)
    if folder != "-":
        options["TrainingProgressCheckpointing"] = ("Directory", folder, {{"Resume": True}})
    res = NetTrain(regression_net(Dropout={{"VariationalInput": 0.2}}), regression(80), All, **options)
    Export(out + ".trained.wlnet", res["TrainedNet"])
    Export(out + ".final.wlnet", res["FinalNet"])
    print(repr(res["RoundLossList"]))
""")


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def test_kill_9_mid_run_then_resume_ends_as_an_unbroken_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__)))
    d = tmp_path / "ck"
    cmd = [sys.executable, str(script)]
    first = subprocess.Popen([*cmd, str(d), str(tmp_path / "first")], env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(glob.glob(str(d / "*.training"))) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    done = len(glob.glob(str(d / "*.training")))
    assert 3 <= done < 14
    resumed = subprocess.run([*cmd, str(d), str(tmp_path / "resumed")], env=_env(), capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    unbroken = subprocess.run([*cmd, "-", str(tmp_path / "unbroken")], env=_env(), capture_output=True, text=True,
                              timeout=180)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    assert resumed.stdout == unbroken.stdout  # the round losses, every one
    for which in ("trained", "final"):
        a = Import(tmp_path / f"unbroken.{which}.wlnet").arrays()
        b = Import(tmp_path / f"resumed.{which}.wlnet").arrays()
        for k, t in a.items():
            torch.testing.assert_close(b[k], t, rtol=1e-6, atol=1e-7)
    assert len(glob.glob(str(d / "*.training"))) == 14


# ---- torchrun ----------------------------------------------------------------------------------------
DDP = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_train_checkpoint import regression, regression_net
    from wlnet import Export, NetTrain, Scaled

    folder, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "resume"
    net = NetTrain(regression_net(Dropout={{"VariationalInput": 0.2}}), regression(24), MaxTrainingRounds=4,
                   BatchSize=6, ValidationSet=Scaled(0.25), TrainingProgressReporting=None,
                   TrainingProgressCheckpointing=("Directory", folder, {{"Resume": resume}}))
    Export(out + os.environ["RANK"] + ".wlnet", net)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_under_torchrun_rank_0_writes_and_every_rank_resumes(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP.format(tests=os.path.dirname(__file__)))
    env = {k: v for k, v in _env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                         "MASTER_PORT")}
    d = tmp_path / "ck"

    def launch(out, mode):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", str(script), str(d), str(tmp_path / out), mode]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    launch("unbroken", "fresh")
    assert len(os.listdir(d)) == 8
    drop_after(d, 2)
    launch("resumed", "resume")
    assert len(os.listdir(d)) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nets = {(w, r): Import(tmp_path / f"{w}{r}.wlnet") for w in ("unbroken", "resumed") for r in (0, 1)}
    reference = nets[("unbroken", 0)].arrays()
    for key, net in nets.items():
        for k, t in net.arrays().items():
            assert torch.equal(t, reference[k]), (key, k)


def test_a_checkpoint_holds_every_parts_state(tmp_path):
    """The .training file holds {name: part.state_dict()} of each stateful part, its tensors as the
    file's; the encoding reads back tuples, non-string keys, non-finite floats, numpy arrays (with
    their dtype) and tensors; a checkpoint of an older format is skipped with a warning."""
    import math

    from wlnet.io.wlnet import Kind, read_document, write_document
    from wlnet.train.checkpoint import KEY, decode, encode

    path = tmp_path / "c.wlnet"
    options = dict(MaxTrainingRounds=2, BatchSize=8, ValidationSet=Scaled(0.2), TrainingStoppingCriterion="Loss",
                   **QUIET)
    res = NetTrain(regression_net(), regression(), All, **options, TrainingProgressCheckpointing=("File", path))
    doc, tensors = read_document(str(path) + ".training", Kind(KEY, "test", "checkpoint"))
    assert set(doc["parts"]) == {"run", "optimizer", "source", "dropout", "validation", "divergence", "rounds",
                                 "stopping"}
    run = decode(doc["parts"]["run"], tensors, "run")
    assert run["round"] == 2 and run["losses"] == res["RoundLossList"] and run["reason"] == "MaxTrainingRounds"
    arrays = decode(doc["parts"]["optimizer"], tensors, "optimizer")["arrays"]
    final = res["FinalNet"].arrays()
    assert len(arrays) == len(final)  # the module's arrays, by the module's names: compared as sorted values
    assert torch.equal(torch.cat([t.flatten() for t in arrays.values()]).sort().values,
                       torch.cat([t.flatten() for t in final.values()]).sort().values)

    state = {"t": (1, 2.5), 3: [math.inf, -math.inf], "n": np.arange(3, dtype=np.int32), "x": torch.tensor([1.0, 2.0]),
             "$k": None}
    held: dict = {}
    back = decode(encode(state, held, "p"), held, "p")
    assert list(back) == list(state) and back["t"] == (1, 2.5) and back[3] == [math.inf, -math.inf]
    assert back["n"].dtype == np.int32 and np.array_equal(back["n"], state["n"]) and torch.equal(back["x"], state["x"])
    assert back["$k"] is None and math.isnan(decode(encode(math.nan, {}, "p"), {}, "p"))

    write_document(str(path) + ".training", {**doc, "version": 1}, tensors, KEY, "test")
    with pytest.warns(NetWarning, match="format version 1 by an older wlnet"):
        again = NetTrain(regression_net(), regression(), All, **options,
                         TrainingProgressCheckpointing=("File", path, {"Resume": True}))
    same_results(res, again)  # started afresh
