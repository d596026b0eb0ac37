"""NetTrain in two processes (torchrun, gloo on loopback) equals one process on the same
global batches, and both ranks end with identical arrays."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from wlnet.core.symbols import All
from wlnet.train.api import NetTrain

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_distributed import data, net, OPTIONS
    from wlnet.core.symbols import All
    from wlnet.train.api import NetTrain

    xs, ys, vxs, vys = data()
    out = NetTrain(net(), list(zip(xs, ys)), All, ValidationSet=list(zip(vxs, vys)), **OPTIONS)
    rank = int(os.environ["RANK"])
    trained = out if rank else out["TrainedNet"]
    record = {{"arrays": {{k: v for k, v in trained.arrays().items()}}, "type": type(out).__name__}}
    if rank == 0:
        record["losses"] = out["RoundLossList"]
        record["validation"] = out["ValidationLossList"]
    torch.save(record, os.path.join({out!r}, f"rank{{rank}}.pt"))
    """
)
OPTIONS = {"MaxTrainingRounds": 3, "BatchSize": 15, "RandomSeeding": 7, "TrainingProgressReporting": "Print"}


def data():
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 7, (41,), generator=g).tolist()
    xs = [torch.randn(n, 2, generator=g).tolist() for n in lengths]
    ys = [[[v[0] + v[1], v[0] * v[1], 1.0] for v in x] for x in xs]
    return xs[:33], ys[:33], xs[33:], ys[33:]


def net():
    from wlnet import LongShortTermMemoryLayer, NetInitialize

    return NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)), RandomSeeding=11)


def _one_process():
    """SCRIPT's training run, in this process."""
    xs, ys, vxs, vys = data()
    return NetTrain(net(), list(zip(xs, ys)), All, ValidationSet=list(zip(vxs, vys)),
                    **{**OPTIONS, "TrainingProgressReporting": None})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, monkeypatch):
    run = _two_processes(tmp_path, "train_ddp.py", SCRIPT)
    # only rank 0 reports: one line per round
    assert sum(line.startswith("NetTrain: round") for line in run.stdout.splitlines()) == OPTIONS["MaxTrainingRounds"]

    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["type"] == "NetTrainResultsObject" and r1["type"] == "LongShortTermMemoryLayer"
    assert r0["arrays"].keys() == r1["arrays"].keys()
    for k in r0["arrays"]:
        assert torch.equal(r0["arrays"][k], r1["arrays"][k]), k

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    single = _one_process()
    for k, v in single["TrainedNet"].arrays().items():
        assert torch.allclose(r0["arrays"][k], v, atol=1e-5), k
    assert r0["losses"] == pytest.approx(single["RoundLossList"], rel=1e-5)
    assert r0["validation"] == pytest.approx(single["ValidationLossList"], rel=1e-5)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT", "WLNET_DIST_TIMEOUT")}
    env["OMP_NUM_THREADS"] = "1"
    return {**env, **extra}


def _two_processes(tmp_path, name: str, template: str) -> subprocess.CompletedProcess:
    """The script `template` (formatted with the tests' folder and tmp_path) run by one torchrun
    launch of two processes; it must succeed."""
    script = tmp_path / name
    script.write_text(template.format(tests=os.path.dirname(__file__), out=str(tmp_path)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script)]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _nodes(script, env) -> list:
    """Two torchrun launches, one process each, meeting on loopback as two "machines" would; each
    in a session of its own, so that `_finish` can stop a launch with its workers."""
    port = _free_port()
    return [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                              f"--node_rank={r}", "--master_addr=127.0.0.1", f"--master_port={port}", str(script)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
            for r in (0, 1)]


def _finish(launches: list, timeout: float) -> list:
    """Each launch's output, all read at once (a launch blocked on a full pipe cannot hold up the
    others) within one deadline. A launch still running then is killed with its workers, and the
    test fails showing every launch's output."""
    outs = [None] * len(launches)

    def read(i):
        outs[i] = launches[i].communicate()[0]

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(launches))]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    for t in readers:
        t.join(max(0.0, deadline - time.monotonic()))
    late = [i for i, p in enumerate(launches) if p.poll() is None]
    for i in late:
        os.killpg(launches[i].pid, signal.SIGKILL)
    for t in readers:
        t.join(10)
    if late:
        shown = "\n".join(f"--- launch {i} (node_rank {i}){' still running' if i in late else ''}:\n"
                           f"{(out or '')[-3000:]}" for i, out in enumerate(outs))
        pytest.fail(f"launches {late} did not end within {timeout:g} s:\n{shown}")
    return outs


def test_two_nodes_match_one(tmp_path):
    """Two separate torchrun launches (--nnodes=2, --node_rank=0/1) train as one data-parallel run."""
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), out=str(tmp_path)))
    launches = _nodes(script, _env(LOGLEVEL="INFO"))  # torchrun's agents say what they wait for
    for p, out in zip(launches, _finish(launches, 120)):
        assert p.returncode == 0, out[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for k in r0["arrays"]:
        assert torch.equal(r0["arrays"][k], r1["arrays"][k]), k
    single = _one_process()
    for k, v in single["TrainedNet"].arrays().items():
        assert torch.allclose(r0["arrays"][k], v, atol=1e-5), k
    assert r0["losses"] == pytest.approx(single["RoundLossList"], rel=1e-5)


EXIT_SCRIPT = textwrap.dedent(
    """
    import glob, json, os, sys
    import torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from test_distributed import data, net
    from wlnet.train.api import NetTrain
    from wlnet.train.distributed import _destroy

    xs, ys, _, _ = data()
    NetTrain(net(), list(zip(xs, ys)), MaxTrainingRounds=1, BatchSize=15, TrainingProgressReporting=None)
    _destroy(dist)  # as at exit
    threads = sorted(open(os.path.join(t, "comm")).read().strip() for t in glob.glob("/proc/self/task/*"))
    with open(os.path.join({out!r}, f"threads{{os.environ['RANK']}}.json"), "w") as f:
        json.dump(threads, f)
    """
)


START_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_distributed import data
    from wlnet import LongShortTermMemoryLayer, NetInitialize
    from wlnet.train.api import NetTrain

    rank = int(os.environ["RANK"])
    xs, ys, _, _ = data()
    start = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)), RandomSeeding=20 + rank)
    out = NetTrain(start, list(zip(xs, ys)), MaxTrainingRounds=2, BatchSize=15, RandomSeeding=7,
                   TrainingProgressReporting=None)
    torch.save({{"start": start.arrays(), "arrays": out.arrays()}}, os.path.join({out!r}, f"start{{rank}}.pt"))
    """
)


def test_ranks_given_different_nets_train_from_rank_0s(tmp_path, monkeypatch):
    """Each rank passes a net initialized differently: training starts from rank 0's arrays on
    every rank, so both end equal, and equal to one process trained from rank 0's net."""
    _two_processes(tmp_path, "start.py", START_SCRIPT)
    r0, r1 = torch.load(tmp_path / "start0.pt"), torch.load(tmp_path / "start1.pt")
    assert any(not torch.equal(r0["start"][k], r1["start"][k]) for k in r0["start"])
    for k in r0["arrays"]:
        assert torch.equal(r0["arrays"][k], r1["arrays"][k]), k
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    from wlnet import LongShortTermMemoryLayer, NetInitialize

    xs, ys, _, _ = data()
    single = NetTrain(NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)), RandomSeeding=20),
                      list(zip(xs, ys)), MaxTrainingRounds=2, BatchSize=15, RandomSeeding=7,
                      TrainingProgressReporting=None)
    for k, v in single.arrays().items():
        assert torch.allclose(r0["arrays"][k], v, atol=1e-5), k


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="threads are listed from /proc")
def test_the_process_group_is_gone_before_the_interpreter_exits(tmp_path):
    """After a data-parallel NetTrain, closing the group at exit (`_destroy`) ends gloo's threads:
    none is left running into the interpreter's exit, where it could abort the process."""
    import json

    _two_processes(tmp_path, "exit.py", EXIT_SCRIPT)
    for rank in (0, 1):
        threads = json.loads((tmp_path / f"threads{rank}.json").read_text())
        assert not [t for t in threads if "gloo" in t], threads


PEER_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from test_distributed import data, net
    from wlnet.train.api import NetTrain

    rank, mode = int(os.environ["RANK"]), {mode!r}
    xs, ys, _, _ = data()
    calls = []

    def progress(info):
        calls.append(1)
        if rank == 1 and len(calls) == 3:  # rank 1 stops in its third batch
            with open(os.path.join({out!r}, "stopped.json"), "w") as f:
                json.dump({{"time": time.time(), "pid": os.getpid()}}, f)
            os.kill(os.getpid(), signal.SIGKILL if mode == "dies" else signal.SIGSTOP)

    try:
        NetTrain(net(), list(zip(xs, ys)), MaxTrainingRounds=1000, BatchSize=15, RandomSeeding=7,
                 TrainingProgressReporting=None, TrainingProgressFunction=(progress, {{"Interval": ("Batches", 1)}}))
    except Exception as e:
        with open(os.path.join({out!r}, "error.json"), "w") as f:
            json.dump({{"time": time.time(), "type": type(e).__name__, "message": str(e)}}, f)
        raise
    """
)
TIMEOUT = 2.0


@pytest.mark.parametrize("mode", ["dies", "hangs"])
def test_a_peer_that_stops_stops_the_others(tmp_path, mode):
    """Rank 1 is killed (its connections close) or stops (SIGSTOP: its connections stay open but
    nothing answers): rank 0 ends with a ProcessGroupError saying so, within WLNET_DIST_TIMEOUT."""
    import json

    script = tmp_path / "peer.py"
    script.write_text(PEER_SCRIPT.format(tests=os.path.dirname(__file__), out=str(tmp_path), mode=mode))
    node0, node1 = _nodes(script, _env(WLNET_DIST_TIMEOUT=str(TIMEOUT)))
    try:
        out = _finish([node0], 60)[0]
    finally:
        stopped = json.loads((tmp_path / "stopped.json").read_text()) if (tmp_path / "stopped.json").exists() else None
        if stopped and mode == "hangs":
            os.kill(stopped["pid"], 9)  # the stopped worker; its torchrun then exits
        _finish([node1], 60)
    assert node0.returncode != 0 and stopped is not None, out[-3000:]
    error = json.loads((tmp_path / "error.json").read_text())
    assert error["type"] == "ProcessGroupError", error
    waited = error["time"] - stopped["time"]
    print(f"rank 1 {mode}: rank 0 stopped {waited:.2f} s later")
    if mode == "dies":
        assert "connection closed" in error["message"] and waited < TIMEOUT, (waited, error)
    else:
        assert f"did not answer within {TIMEOUT:g} s" in error["message"], error
        assert TIMEOUT - 0.5 < waited < TIMEOUT + 3.0, waited
    assert "WLNET_DIST_TIMEOUT" in error["message"]


# ---- the options under torchrun: one launch, three runs, each against one process ---------------------
def generator(info):
    """Batches drawn from data() by AbsoluteBatch: the same batch for the same info on every rank."""
    xs, ys, _, _ = data()
    g = torch.Generator().manual_seed(info["AbsoluteBatch"])
    pick = torch.randperm(len(xs), generator=g)[:info["BatchSize"]].tolist()
    return [(xs[i], ys[i]) for i in pick]


def option_runs(rank: int) -> dict:
    """The runs, as this rank (0 in one process) performs them: {name: (net, data, options)}."""
    import signal

    from wlnet import LinearLayer, NetInitialize

    xs, ys, vxs, vys = data()
    batches = []

    def interrupt(info):  # Ctrl-C reaches rank 1 only (rank 0 in one process) in the 4th batch
        batches.append(1)
        if len(batches) == 4 and rank == int(os.environ.get("WORLD_SIZE", "1")) - 1:
            os.kill(os.getpid(), signal.SIGINT)

    base = {"BatchSize": 8, "RandomSeeding": 5, "TrainingProgressReporting": None}
    return {
        # rank 0 alone decides to stop after round 2; Real64; global measurements, a rank without validation
        # examples (1 of them), generator data
        "generator": (net(), generator, {**base, "MaxTrainingRounds": 4, "RoundLength": 20,
                                         "WorkingPrecision": "Real64", "ValidationSet": list(zip(vxs[:1], vys[:1])),
                                  "TrainingProgressMeasurements": ["MeanSquare", "Accuracy", "ConfusionMatrix"],
                                  "TrainingStoppingCriterion": lambda info: rank == 0 and info["Round"] == 2}),
        "interrupt": (net(), list(zip(xs, ys)), {**base, "MaxTrainingRounds": 5, "LengthBucketing": False,
                                          "ValidationSet": list(zip(vxs, vys)),
                                          "TrainingProgressMeasurements": ["MeanDeviation"],
                                          "TrainingProgressFunction": (interrupt, {"Interval": ("Batches", 1)})}),
        # a linear layer's loss overflows after the first step (an LSTM's saturates)
        "divergence": (NetInitialize(LinearLayer(3, Input=2), RandomSeeding=11), [(x[0], y[0]) for x, y in zip(xs, ys)],
                       {**base, "MaxTrainingRounds": 5, "Method": "SGD", "LearningRate": 1e38}),
    }


KEYS = ("ReasonTrainingStopped", "BatchLossList", "RoundLossList", "ValidationLossList", "RoundMeasurementsLists",
        "ValidationMeasurementsLists", "TotalBatches", "ExamplesProcessed")
OPTIONS_SCRIPT = textwrap.dedent(
    """
    import os, sys, warnings
    import torch
    sys.path.insert(0, {tests!r})
    from test_distributed import option_runs, KEYS
    from wlnet.core.symbols import All
    from wlnet.train.api import NetTrain

    warnings.simplefilter("ignore")
    rank = int(os.environ["RANK"])
    record = {{}}
    for name, (n, d, options) in option_runs(rank).items():
        out = NetTrain(n, d, All, **options)
        trained = out if rank else out["TrainedNet"]
        record[name] = {{"arrays": trained.arrays(), **({{k: out[k] for k in KEYS}} if rank == 0 else {{}})}}
    torch.save(record, os.path.join({out!r}, f"rank{{rank}}.pt"))
    """
)


def _same(a, b, key):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            _same(a[k], b[k], f"{key}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{key}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-9, nan_ok=True), key
    else:
        assert (a == b).all() if hasattr(a, "all") else a == b, key


def test_options_under_torchrun(tmp_path, monkeypatch):
    """Generator data, Real64, global measurements, rank 0's stopping decision, Ctrl-C on one rank,
    divergence: two processes give the results of one on the same global batches."""
    _two_processes(tmp_path, "options.py", OPTIONS_SCRIPT)
    r0, r1 = torch.load(tmp_path / "rank0.pt", weights_only=False), torch.load(tmp_path / "rank1.pt")

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = {name: NetTrain(n, d, All, **options) for name, (n, d, options) in option_runs(0).items()}
    assert r0["generator"]["ReasonTrainingStopped"] == "StoppingCriterion"
    assert len(r0["generator"]["RoundLossList"]) == 2
    assert r0["interrupt"]["ReasonTrainingStopped"] == "ManualStop" and r0["interrupt"]["TotalBatches"] == 4
    assert r0["divergence"]["ReasonTrainingStopped"] == "Divergence" and r0["divergence"]["TotalBatches"] < 5
    for name, one in single.items():
        for k in r0[name]["arrays"]:
            assert torch.equal(r0[name]["arrays"][k], r1[name]["arrays"][k]), (name, k)
            assert r0[name]["arrays"][k].dtype == one["TrainedNet"].arrays()[k].dtype, (name, k)
            assert torch.allclose(r0[name]["arrays"][k], one["TrainedNet"].arrays()[k], atol=1e-5), (name, k)
        for key in KEYS:
            _same(r0[name][key], one[key], f"{name}/{key}")


def test_the_timeout_comes_from_the_environment(monkeypatch):
    from datetime import timedelta

    from wlnet.core.errors import OptionError
    from wlnet.train.distributed import _timeout

    monkeypatch.delenv("WLNET_DIST_TIMEOUT", raising=False)
    assert _timeout() == timedelta(seconds=60)
    monkeypatch.setenv("WLNET_DIST_TIMEOUT", "2.5")
    assert _timeout() == timedelta(seconds=2.5)
    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("WLNET_DIST_TIMEOUT", bad)
        with pytest.raises(OptionError, match="WLNET_DIST_TIMEOUT must be a positive number of seconds"):
            _timeout()
