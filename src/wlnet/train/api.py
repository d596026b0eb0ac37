"""NetTrain: train a net on examples, in one process or data-parallel in several.

The data is checked and converted to tensors once (`train_data.read_dataset`), or, for a
generator function, batch by batch; each round is a shuffled pass over it in batches, bucketed
by length for sequence inputs (`train_loop`); the optimizer updates a trainable copy of the
net's arrays, and the result is a new net (the argument never changes). With a validation set
the net returned is the one with the lowest validation loss. The options are checked and
turned into the optimizer, schedule and stopping rules in `train_options`.

Started by `torchrun` (WORLD_SIZE > 1), every process runs NetTrain on the same data: each
takes its shard of every global batch, and one all-reduce of each flat gradient buffer averages
the gradients (`_Group.average`), so the arrays stay identical on every rank and equal (to float
tolerance) to one process training on the same global batches. Only rank 0 reports and returns
the results; the others return the trained net. Losses and measurements are summed over the
ranks, so they are the global batches'; decisions (stopping, time goal) are rank 0's, a
divergence or Ctrl-C on any rank stops all. A generator is called with the same info on every
rank, each keeping its shard of the batch. A rank whose peer dies or stops answering raises a
ProcessGroupError (after WLNET_DIST_TIMEOUT seconds at most) instead of waiting forever.
"""

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
from ..core.net import Net
from ..core.runtime import module_arrays
from ..core.symbols import All, Automatic
from ..nets.initialize import NetInitialize
from .checkpoint import Checkpointer, fingerprint
from .data import Dataset, Problem, read_dataset
from .loop import GeneratorSource, ListSource, Run, latest
from .options import METHODS, OPTIONS, multipliers, optimizer, parse, precision
from .report import PROPERTIES, NetTrainResultsObject, loss_plot

AUTOMATIC_SECONDS = 20.0  # MaxTrainingRounds -> Automatic trains about this long (Wolfram's rule)
AUTOMATIC_BATCH = 64
WHO = "NetTrain"
TIMEOUT_VARIABLE = "WLNET_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 60.0  # seconds; a round's collectives take milliseconds, a slow first batch (native build) seconds


class Scaled:
    """Scaled(f): a fraction f of something; `ValidationSet=Scaled(0.1)` holds out a random 10%
    of the training data for validation.

    >>> Scaled(0.1)
    Scaled(0.1)
    """

    def __init__(self, f):
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
            raise OptionError(f"Scaled: the fraction must be a number strictly between 0 and 1, but was given {f!r}.")
        self.f = float(f)

    def __repr__(self) -> str:
        return f"Scaled({self.f!r})"


# ---- several processes -------------------------------------------------------------------------
class _Group:
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


# ---- NetTrain --------------------------------------------------------------------------------------
def NetTrain(net: Net, data, prop="TrainedNet", **options):
    """Train `net` on `data`; returns the trained net (a new net), or with `prop` a property of
    the training (see PROPERTIES; a list of properties gives a list), `All` for a
    NetTrainResultsObject.

    data: a list of (input, target) pairs, a tuple (inputs, targets), a dict {input: target}, a
    dict of port → list, or a generator function f(info) → a batch of examples in any of those
    forms, called for every batch with info {"BatchSize", "Round", "Batch", "AbsoluteBatch",
    "Validation"}.
    Options: BatchSize, MaxTrainingRounds, TimeGoal, RoundLength (examples per round; Automatic:
    the data, or one batch of a generator), ValidationSet (data in the same forms, or Scaled(f)),
    LossFunction (Automatic: the net's loss-layer outputs as they are, and CrossEntropyLoss or
    MeanSquaredLoss attached to each port given targets; a loss name, a loss layer, a function, the
    name of an output port that is the loss, or a dict port → loss), Method ("ADAM", "SGD",
    "RMSProp", or (method, {setting: value}); see train_options), LearningRate,
    LearningRateMultipliers, TargetDevice, WorkingPrecision
    ("Real32", "Real64"; "Mixed" is refused with a clear error), RandomSeeding, TrainingStoppingCriterion,
    TrainingProgressMeasurements, TrainingProgressFunction, TrainingProgressReporting,
    LengthBucketing (Automatic/True: batches of similar lengths; False), TrainingProgressCheckpointing
    (("Directory", dir) or ("File", path), optionally with {"Interval": rounds, "Resume": True}; see
    train_checkpoint).

    >>> trained = NetTrain(NetInitialize(LongShortTermMemoryLayer(2, Input=(3, 1))),
    ...                    [([[1], [2], [3]], [[0, 1], [1, 0], [1, 1]])], MaxTrainingRounds=5,
    ...                    TrainingProgressReporting=None)
    """
    if not isinstance(net, Net):
        raise OptionError(f"{WHO}: expected a net, but was given {type(net).__name__}.")
    for p in (prop if isinstance(prop, list) else [prop]):
        if p is not All and (not isinstance(p, str) or p not in PROPERTIES):
            raise OptionError(f"{WHO}: {p!r} is not a training property; give All, one of {', '.join(PROPERTIES)}, "
                              "or a list of them.")
    o = parse(options)
    group = _Group(o["TargetDevice"])
    with group.failures():
        return _train(net, data, prop, o, group)


def _train(net: Net, data, prop, o: dict, group: _Group):
    checkpoints = Checkpointer(o["TrainingProgressCheckpointing"], group) if o["TrainingProgressCheckpointing"] \
        else None
    resumed = checkpoints.find() if checkpoints is not None else None
    seed = resumed["seed"] if resumed is not None else group.seed(o["RandomSeeding"])
    dtype = precision(o["WorkingPrecision"])

    g = torch.Generator().manual_seed(seed)  # shuffles and splits: the same on every rank
    batch = o["BatchSize"]
    generator = _is_generator(data)
    if generator:
        batch = batch or AUTOMATIC_BATCH
        first = data({"BatchSize": batch, "Round": 1, "Batch": 1, "AbsoluteBatch": 1, "Validation": False})
        problem = read_dataset(net, first, f"{WHO} (generator, round 1, batch 1)", o["LossFunction"])
    else:
        problem = read_dataset(net, data, WHO, o["LossFunction"])
    validation = o["ValidationSet"]
    if isinstance(validation, Scaled):
        if generator:
            raise TrainingError(f"{WHO}: ValidationSet=Scaled(f) needs training data held in a list, not a "
                                "generator function; give the ValidationSet as data or as a generator.")
        problem, validation = _split(problem, validation.f, g)
    elif validation is not None:
        if _is_generator(validation):
            validation = validation({"BatchSize": batch or AUTOMATIC_BATCH, "Round": 0, "Batch": 1,
                                     "AbsoluteBatch": 0, "Validation": True})
        validation = read_dataset(net, validation, f"{WHO} (ValidationSet)", o["LossFunction"])
        if set(validation.losses) != set(problem.losses):
            raise TrainingError(f"{WHO}: the ValidationSet gives targets for ports {sorted(validation.losses)}, but "
                                f"the training data for ports {sorted(problem.losses)}.")
    if generator:
        source = GeneratorSource(data, net, problem, o["LossFunction"], group.device, dtype, batch, o["RoundLength"])
    else:
        n = problem.data.size
        batch = batch or min(AUTOMATIC_BATCH, n)
        source = ListSource(problem, group.device, dtype, batch, o["RoundLength"], o["LengthBucketing"], g)

    factors = multipliers(net, o["LearningRateMultipliers"])
    # an uninitialized net is initialized only to build the module: its arrays then live there
    # alone, and the nets returned are made from the module's arrays on `net`'s structure
    module = (net if net.initialized() else NetInitialize(net, RandomSeeding=seed)).build(trainable=True)
    module = module.to(group.device, dtype)
    group.same_arrays(module)  # every rank starts from rank 0's arrays (a net each rank initialized alike or not)
    opt, flats = optimizer(module, factors, o["Method"], flat=True)  # one buffer per group (`FlatArrays`)
    run = Run(net, problem, source, validation, module, opt, group, o,
              O.generator(seed + 1 + group.rank, WHO, group.device), AUTOMATIC_SECONDS, dtype, flats)
    run.seed = seed
    if checkpoints is not None:
        run.checkpointer = checkpoints
        run.fingerprint = fingerprint(module, problem, validation, batch, o["Method"], dtype, group.world, source)
        if resumed is not None:
            checkpoints.restore(run, run.fingerprint)
    best = run.loop()
    run.release()  # the optimizer's state, the gradients and the snapshot: not needed to make the nets

    group.same_arrays(module)
    final = net.with_arrays(module_arrays(net, module))
    trained = final
    if best is not None and run.reason != "Divergence":
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(best[name])
        trained = net.with_arrays(module_arrays(net, module))
    if group.rank != 0:
        return trained
    val = run.val_losses
    name, settings = o["Method"]
    values = {
        "TrainedNet": trained,
        "FinalNet": final,
        "BatchLossList": run.batch_losses,
        "RoundLossList": run.losses,
        "ValidationLossList": val,
        "RoundMeasurements": latest(run.round_measurements),
        "ValidationMeasurements": latest(run.val_measurements),
        "RoundMeasurementsLists": run.round_measurements,
        "ValidationMeasurementsLists": run.val_measurements,
        "ReasonTrainingStopped": run.reason,
        "BestValidationRound": (min(range(len(val)), key=val.__getitem__) + 1) if val else None,
        "InitialLearningRate": run.lr_first if run.lr_first is not None else settings["LearningRate"],
        "FinalLearningRate": run.lr_last if run.lr_last is not None else settings["LearningRate"],
        "ExamplesProcessed": run.examples,
        "MeanBatchesPerSecond": run.batches / max(run.train_time, 1e-9),
        "MeanExamplesPerSecond": run.examples / max(run.train_time, 1e-9),
        "TotalBatches": run.batches,
        "TotalRounds": len(run.losses),
        "TotalTrainingTime": run.elapsed,
        "TrainingExamples": source.round_length,
        "ValidationExamples": validation.data.size if validation is not None else 0,
        "BatchSize": batch,
        "OptimizationMethod": (name, dict(settings)),
        "TargetDevice": "GPU" if group.device.type == "cuda" else "CPU",
        "WorkingPrecision": o["WorkingPrecision"] if o["WorkingPrecision"] is not Automatic else "Real32",
        "CheckpointingFiles": list(checkpoints.written) if checkpoints is not None else [],
    }
    results = NetTrainResultsObject(values)
    return results if prop is All else results[prop]


def _is_generator(data) -> bool:
    """Whether data (training or validation) is a generator function f(info) rather than examples."""
    return callable(data) and not isinstance(data, dict | list | tuple)


def _split(problem: Problem, f: float, g: torch.Generator) -> tuple[Problem, Problem]:
    n = problem.data.size
    if n < 2:
        raise TrainingError(f"{WHO}: ValidationSet=Scaled({f}) needs at least 2 examples; the data has {n}.")
    k = min(n - 1, max(1, round(f * n)))
    perm = torch.randperm(n, generator=g)
    val_idx, train_idx = perm[:k].sort().values, perm[k:].sort().values

    def subset(idx):
        xs, ts = problem.data.rows(idx)
        return problem._replace(data=Dataset(xs, ts, len(idx)))

    return subset(train_idx), subset(val_idx)


__all__ = ["NetTrain", "NetTrainResultsObject", "Scaled", "loss_plot", "METHODS", "OPTIONS", "PROPERTIES"]
