"""The processes of a data-parallel NetTrain run (started by `torchrun`, WORLD_SIZE > 1): the
process group, the collectives the loop and its hooks use (sums, any-rank flags, rank 0's
decisions, the gradients' average), and turning a peer's failure into a ProcessGroupError
after WLNET_DIST_TIMEOUT seconds at most instead of waiting forever. In one process every
collective is the identity."""

from __future__ import annotations

import atexit
import importlib
import math
import os
from contextlib import contextmanager
from datetime import timedelta

import torch

from ..core import options as O
from ..core.errors import NetError, OptionError, ProcessGroupError, TrainingError
from ..core.symbols import Automatic

WHO = "NetTrain"
TIMEOUT_VARIABLE = "WLNET_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 60.0  # seconds; a round's collectives take milliseconds, a slow first batch (native build) seconds


class Group:
    """The process group NetTrain runs in: world size 1 (no communication) or torch.distributed."""

    def __init__(self, device_spec):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        if self.world <= 1:
            self.world = 1
            self.device = O.device(device_spec, WHO)
            return
        import torch.distributed as dist

        self.dist = dist
        device = O.device(device_spec, WHO)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        self.device = device
        if not dist.is_initialized():
            # torch._dynamo (which the kernels' choice imports) keeps a reference to a process group
            # that exists when it is imported: the group would then outlive destroy_process_group,
            # its backend's threads running into the interpreter's exit, which can abort the process
            importlib.import_module("torch._dynamo")
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_timeout())
            atexit.register(_destroy, dist)
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()

    @contextmanager
    def failures(self):
        """Turns the failure of a collective (a peer that died closes its connections; one that hangs
        lets the wait run out) into a ProcessGroupError, and keeps the exit from waiting on the peer."""
        try:
            yield
        except RuntimeError as e:
            if self.world == 1 or isinstance(e, NetError) or not _collective_failure(self.dist, e):
                raise
            _STATE["broken"] = True
            seconds = _timeout().total_seconds()
            text = str(e)
            what = (f"it did not answer within {seconds:g} s" if "imed out" in text or "imeout" in text
                    else "its connection closed (it probably crashed or was killed)")
            detail = text.splitlines()[0] if text else type(e).__name__
            raise ProcessGroupError(
                f"{WHO}: process {self.rank} of {self.world}: another process of this data-parallel run stopped "
                f"responding: {what}, so training stopped here too. Look at the other processes' output for the "
                f"cause. {TIMEOUT_VARIABLE} sets how long a process waits for the others (now {seconds:g} s). "
                f"(torch.distributed: {detail})") from e

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            self.dist.all_reduce(t)
        return t

    def any(self, flag: bool) -> bool:
        """Whether the flag is set on any rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        self.dist.all_reduce(t)
        return bool(t.item() > 0)

    def share(self, value: int) -> int:
        """Rank 0's integer, on every rank."""
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.device)
        self.dist.broadcast(t, 0)
        return int(t.item())

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        if self.world == 1:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        self.dist.broadcast(t, 0)
        return bool(t.item())

    def seed(self, seed) -> int:
        if seed is Automatic:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            if self.world > 1:
                t = torch.tensor([seed], device=self.device)
                self.dist.broadcast(t, 0)
                seed = int(t.item())
        return seed

    def average(self, grads: list) -> None:
        """The ranks' gradients averaged in place: one all-reduce of each flat gradient buffer
        (`FlatArrays`), a collective per learning-rate group per batch; arrays without a gradient
        in a batch add zeros."""
        if self.world > 1:
            for g in grads:
                self.dist.all_reduce(g)
                g.div_(self.world)

    def same_plan(self, values: dict) -> None:
        """Refuse, on every rank alike and before any other collective, a run whose ranks were given
        data of different sizes or options that change how many batches (and so how many
        collectives) a round has: their collectives would not pair up, and the ranks would crash
        or wait on each other. `values`: {what: a plain value}, the same keys on every rank."""
        if self.world == 1:
            return
        every = [None] * self.world
        self.dist.all_gather_object(every, values)
        differ = [k for k in values if any(e[k] != every[0][k] for e in every)]
        if differ:
            shown = "; ".join(f"process {r}: " + ", ".join(f"{k} {e[k]}" for k in differ) for r, e in enumerate(every))
            raise TrainingError(
                f"{WHO}: the processes of this data-parallel run were given different {', '.join(differ)} ({shown}). "
                "Every process must be given the same data and options: each trains on its share of every batch.")

    def share_object(self, value):
        """Rank 0's value (anything pickle can send), on every rank."""
        if self.world == 1:
            return value
        box = [value]
        self.dist.broadcast_object_list(box, 0)
        return box[0]

    def same_arrays(self, module: torch.nn.Module) -> None:
        if self.world > 1:
            for p in module.parameters():
                self.dist.broadcast(p.data, 0)


def _timeout() -> timedelta:
    """How long a collective waits for the other ranks before failing: WLNET_DIST_TIMEOUT seconds.
    An environment variable rather than a NetTrain option: the process group outlives one NetTrain
    call, and every rank must use the same value, which the launching shell sets most easily."""
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        seconds = -1.0
    if not (seconds > 0 and math.isfinite(seconds)):
        raise OptionError(f"{WHO}: the environment variable {TIMEOUT_VARIABLE} must be a positive number of seconds "
                          f"(how long a rank waits for the others), but is {text!r}.")
    return timedelta(seconds=seconds)


def _collective_failure(dist, e: RuntimeError) -> bool:
    """Whether the error is a collective's (gloo raises plain RuntimeErrors naming its sources)."""
    text = str(e)
    return isinstance(e, dist.DistError) or any(s in text for s in ("gloo", "Gloo", "NCCL", "Connection closed",
                                                                     "Connection reset", "Timed out"))


_STATE = {"broken": False}  # a collective failed: the peers cannot be waited for at exit


def _destroy(dist) -> None:
    """At exit: wait for every rank, then close the group, so that no rank tears its connections
    down while a peer still uses them (which can abort the peer). After a failure the peers are
    gone or stuck: close without waiting."""
    if dist.is_initialized():
        try:
            if not _STATE["broken"]:
                dist.barrier()
        finally:
            dist.destroy_process_group()
