"""NetTrain in two processes (torchrun, gloo on loopback) equals one process on the same
global batches, and both ranks end with identical arrays."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from wlnet.symbols import All
from wlnet.train import NetTrain

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_distributed import data, net, OPTIONS
    from wlnet.symbols import All
    from wlnet.train import NetTrain

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, monkeypatch):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), out=str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(script)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
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
    xs, ys, vxs, vys = data()
    single = NetTrain(net(), list(zip(xs, ys)), All, ValidationSet=list(zip(vxs, vys)),
                      **{**OPTIONS, "TrainingProgressReporting": None})
    for k, v in single["TrainedNet"].arrays().items():
        assert torch.allclose(r0["arrays"][k], v, atol=1e-5), k
    assert r0["losses"] == pytest.approx(single["RoundLossList"], rel=1e-5)
    assert r0["validation"] == pytest.approx(single["ValidationLossList"], rel=1e-5)
