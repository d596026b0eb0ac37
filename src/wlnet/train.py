"""NetTrain: train a net on examples, in one process or data-parallel in several.

The data is checked and converted to tensors once (`train_data.read_dataset`); each round is a
shuffled pass over it in batches; the optimizer updates a trainable copy of the net's arrays,
and the result is a new net (the argument never changes). With a validation set the net
returned is the one with the lowest validation loss.

Started by `torchrun` (WORLD_SIZE > 1), every process runs NetTrain on the same data: each
takes its shard of every global batch, DistributedDataParallel averages the gradients, so the
arrays stay identical on every rank and equal (to float tolerance) to one process training on
the same global batches. Only rank 0 reports and returns the results; the others return the
trained net.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import time

import torch

from . import options as O
from .errors import OptionError, TrainingError
from .initialize import NetInitialize
from .net import Net
from .runtime import Ctx, module_arrays, param_name
from .symbols import All, Automatic
from .train_data import Dataset, Problem, batch_loss, example_losses, read_dataset, run
from .train_report import PROPERTIES, NetTrainResultsObject, Progress, loss_plot

OPTIONS = {
    "BatchSize": Automatic,
    "MaxTrainingRounds": Automatic,
    "TimeGoal": Automatic,
    "ValidationSet": None,
    "LossFunction": Automatic,
    "Method": "ADAM",
    "LearningRate": Automatic,
    "LearningRateMultipliers": Automatic,
    "TargetDevice": "CPU",
    "RandomSeeding": 1234,
    "TrainingProgressReporting": Automatic,
}
AUTOMATIC_SECONDS = 20.0  # MaxTrainingRounds -> Automatic trains about this long
METHODS = {  # Wolfram's defaults for each method
    "ADAM": {"LearningRate": 0.001, "Beta1": 0.9, "Beta2": 0.999, "Epsilon": 1e-5, "L2Regularization": 0.0},
    "RMSProp": {"LearningRate": 0.001, "Beta": 0.95, "Epsilon": 1e-8, "Momentum": 0.0, "L2Regularization": 0.0},
    "SGD": {"LearningRate": 0.01, "Momentum": 0.93, "L2Regularization": 0.0},
}
WHO = "NetTrain"


class Scaled:
    """Scaled(f): a fraction f of something; `ValidationSet=Scaled(0.1)` holds out a random 10%
    of the training data for validation."""

    def __init__(self, f):
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
            raise OptionError(f"Scaled: the fraction must be a number strictly between 0 and 1, but was given {f!r}.")
        self.f = float(f)

    def __repr__(self) -> str:
        return f"Scaled({self.f!r})"


# ---- options -----------------------------------------------------------------------------------
def _positive_int(value, name: str, allow_automatic=True):
    if allow_automatic and value is Automatic:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"{WHO}: {name} must be a positive integer{' or Automatic' if allow_automatic else ''}, "
                          f"but was given {value!r}.")
    return value


def _method(spec, lr) -> tuple[str, dict]:
    name, sub = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1]) if (
        isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[1], dict)) else (None, None)
    if name not in METHODS:
        raise OptionError(
            f"{WHO}: Method must be one of {', '.join(repr(m) for m in METHODS)}, or (method, {{sub-option: value}}), "
            f"but was given {spec!r}."
        )
    settings = dict(METHODS[name])
    for k, v in sub.items():
        if k not in settings:
            raise OptionError(f"{WHO}: {k!r} is not a setting of Method {name!r}; its settings are "
                              f"{', '.join(settings)}.")
        settings[k] = float(v)
    if lr is not Automatic:
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
            raise OptionError(f"{WHO}: LearningRate must be a positive number or Automatic, but was given {lr!r}.")
        settings["LearningRate"] = float(lr)
    return name, settings


def _parse(options: dict) -> dict:
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        raise OptionError(f"{WHO}: {unknown[0]!r} is not an option of NetTrain; the options are {', '.join(OPTIONS)}.")
    o = {**OPTIONS, **options}
    o["BatchSize"] = _positive_int(o["BatchSize"], "BatchSize")
    o["MaxTrainingRounds"] = _positive_int(o["MaxTrainingRounds"], "MaxTrainingRounds")
    goal = o["TimeGoal"]
    if goal is Automatic or goal is None:
        o["TimeGoal"] = None
    elif isinstance(goal, bool) or not isinstance(goal, int | float) or not goal > 0:
        raise OptionError(f"{WHO}: TimeGoal must be a positive number of seconds or Automatic, but was given {goal!r}.")
    o["Method"] = _method(o["Method"], o["LearningRate"])
    report = o["TrainingProgressReporting"]
    if report not in (Automatic, None, "ProgressIndicator", "Print"):
        raise OptionError(
            f'{WHO}: TrainingProgressReporting must be Automatic, "ProgressIndicator", "Print" or None, '
            f"but was given {report!r}."
        )
    o["TrainingProgressReporting"] = None if report is None else "Print" if report == "Print" else "bar"
    seed = o["RandomSeeding"]
    if seed is not Automatic and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise OptionError(f"{WHO}: RandomSeeding must be an integer or Automatic, but was given {seed!r}.")
    return o


def _multipliers(net: Net, spec) -> dict:
    """{parameter name: learning-rate factor}: the layers' own multipliers, overridden for every
    array that a NetTrain rule matches (the first matching rule wins).

    Rules: a number (every array); or a dict whose keys are a layer position or name, a tuple
    position ending, optionally, in an array name, or All (everything not matched before)."""
    keys = {pos + (a,): f for pos, leaf in net.leaves() for a, f in leaf.learning_rate_multipliers().items()}
    if spec is Automatic or spec is None:
        rules = []
    elif isinstance(spec, int | float) and not isinstance(spec, bool):
        rules = [(All, spec)]
    elif isinstance(spec, dict):
        rules = list(spec.items())
    else:
        raise OptionError(f"{WHO}: LearningRateMultipliers must be a number or a dict of position → number, "
                          f"but was given {spec!r}.")
    matched = set()
    out = {}
    for key, base in keys.items():
        factor = base
        for rule, value in rules:
            if rule is All or _matches(rule, key):
                factor = value
                matched.add(id(rule) if rule is All else rule)
                break
        out[param_name(key[:-1], key[-1])] = factor
    for rule, value in rules:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise OptionError(f"{WHO}: LearningRateMultipliers gives {rule!r} the factor {value!r}; a factor must be "
                              "a non-negative number.")
        if rule is not All and rule not in matched and not any(_matches(rule, k) for k in keys):
            listed = ", ".join(repr(k if len(k) > 1 else k[0]) for k in list(keys)[:6])
            raise OptionError(f"{WHO}: LearningRateMultipliers names {rule!r}, which matches no array of the net; "
                              f"arrays are named by position, e.g. {listed}.")
    return {k: float(v) for k, v in out.items()}


def _matches(rule, key: tuple) -> bool:
    parts = rule if isinstance(rule, tuple) else (rule,)
    return len(parts) <= len(key) and all(str(a) == str(b) for a, b in zip(parts, key))


def _optimizer(module: torch.nn.Module, factors: dict, method: tuple) -> torch.optim.Optimizer:
    name, s = method
    groups: dict[float, list] = {}
    for pname, p in module.named_parameters():
        f = factors.get(pname, 1.0)
        if f == 0:
            p.requires_grad_(False)  # frozen: no gradient, no update, bit-identical
        else:
            groups.setdefault(f, []).append(p)
    if not groups:
        raise TrainingError(f"{WHO}: every array is frozen (LearningRateMultipliers 0); there is nothing to train.")
    lr = s["LearningRate"]
    params = [{"params": ps, "lr": lr * f} for f, ps in groups.items()]
    if name == "RMSProp":
        return torch.optim.RMSprop(params, lr=lr, alpha=s["Beta"], eps=s["Epsilon"], momentum=s["Momentum"],
                                   weight_decay=s["L2Regularization"])
    if name == "ADAM":
        make = functools.partial(torch.optim.Adam, params, lr=lr, betas=(s["Beta1"], s["Beta2"]), eps=s["Epsilon"],
                                 weight_decay=s["L2Regularization"])
    else:
        make = functools.partial(torch.optim.SGD, params, lr=lr, momentum=s["Momentum"],
                                 weight_decay=s["L2Regularization"])
    try:  # one fused kernel for all arrays: the LSTM's 12 separate arrays make per-array updates costly
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):
        return make()


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
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            atexit.register(_destroy, dist)
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            self.dist.all_reduce(t)
        return t

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

    def wrap(self, module: torch.nn.Module, find_unused: bool) -> torch.nn.Module:
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        # device_ids=None also for a GPU module: the inputs are on the device already, and Seq
        # lengths must stay on the CPU.
        return DistributedDataParallel(module, find_unused_parameters=find_unused)

    def same_arrays(self, module: torch.nn.Module) -> None:
        if self.world > 1:
            for p in module.parameters():
                self.dist.broadcast(p.data, 0)


def _destroy(dist) -> None:
    """At exit: wait for every rank, then close the group, so that no rank tears its connections
    down while a peer still uses them (which can abort the peer)."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


# ---- NetTrain --------------------------------------------------------------------------------------
def NetTrain(net: Net, data, prop="TrainedNet", **options):
    """Train `net` on `data`; returns the trained net (a new net), or with `prop` a property of
    the training (see PROPERTIES), `All` for a NetTrainResultsObject.

    data: a list of (input, target) pairs, a dict {input: target}, or a dict of port → list.
    Options: BatchSize, MaxTrainingRounds, TimeGoal, ValidationSet (data or Scaled(f)),
    LossFunction, Method ("ADAM", "SGD", "RMSProp", or (method, {setting: value})), LearningRate,
    LearningRateMultipliers, TargetDevice, RandomSeeding, TrainingProgressReporting.

    >>> trained = NetTrain(NetInitialize(LongShortTermMemoryLayer(2, Input=(3, 1))),
    ...                    [([[1], [2], [3]], [[0, 1], [1, 0], [1, 1]])], MaxTrainingRounds=5,
    ...                    TrainingProgressReporting=None)
    """
    if not isinstance(net, Net):
        raise OptionError(f"{WHO}: expected a net, but was given {type(net).__name__}.")
    if prop is not All and prop not in PROPERTIES:
        raise OptionError(f"{WHO}: {prop!r} is not a training property; give All or one of {', '.join(PROPERTIES)}.")
    o = _parse(options)
    group = _Group(o["TargetDevice"])
    seed = group.seed(o["RandomSeeding"])
    if not net.initialized():
        net = NetInitialize(net, RandomSeeding=seed)

    problem = read_dataset(net, data, WHO, o["LossFunction"])
    g = torch.Generator().manual_seed(seed)  # shuffles and splits: the same on every rank
    validation = o["ValidationSet"]
    if isinstance(validation, Scaled):
        problem, validation = _split(problem, validation.f, g)
    elif validation is not None:
        validation = read_dataset(net, validation, f"{WHO} (ValidationSet)", o["LossFunction"])
        if set(validation.losses) != set(problem.losses):
            raise TrainingError(f"{WHO}: the ValidationSet gives targets for ports {sorted(validation.losses)}, but "
                                f"the training data for ports {sorted(problem.losses)}.")
    n = problem.data.size
    batch = o["BatchSize"] or min(64, n)

    factors = _multipliers(net, o["LearningRateMultipliers"])
    module = net.build(trainable=True).to(group.device)
    optimizer = _optimizer(module, factors, o["Method"])
    model = group.wrap(module, find_unused=len(problem.losses) < len(net.output_ports()))
    run = _Run(problem, validation, model, module, optimizer, group, batch, o, g,
               O.generator(seed + 1 + group.rank, WHO, group.device))
    best = run.loop()

    group.same_arrays(module)
    final = net.with_arrays(module_arrays(net, module))
    trained = final
    if best is not None:
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(best[name])
        trained = net.with_arrays(module_arrays(net, module))
    if group.rank != 0:
        return trained
    values = {
        "TrainedNet": trained,
        "FinalNet": final,
        "RoundLossList": run.losses,
        "ValidationLossList": run.val_losses,
        "TotalTrainingTime": run.elapsed,
        "MeanExamplesPerSecond": run.examples / max(run.train_time, 1e-9),
        "BatchSize": batch,
        "TotalRounds": len(run.losses),
        "TotalBatches": run.batches,
    }
    results = NetTrainResultsObject(values)
    return results if prop is All else results[prop]


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


class _Run:
    """One training run: the loop, the stopping rule, validation and the best arrays."""

    def __init__(self, problem, validation, model, module, optimizer, group, batch, o, g, dropout_g):
        self.problem = problem
        self.data = problem.data.to(group.device)
        self.validation = validation
        self.val_data = validation.data.to(group.device) if validation is not None else None
        self.model, self.module, self.optimizer, self.group = model, module, optimizer, group
        self.batch, self.g = batch, g
        self.ctx = Ctx(True, dropout_g, exact_states=False)
        self.max_rounds = o["MaxTrainingRounds"]
        self.goal = o["TimeGoal"]
        self.automatic = self.max_rounds is None and self.goal is None
        reporting = o["TrainingProgressReporting"] if group.rank == 0 else None
        self.progress = Progress(reporting, self.max_rounds, AUTOMATIC_SECONDS if self.automatic else self.goal)
        self.losses, self.val_losses = [], []
        self.examples = self.batches = 0
        self.elapsed = self.train_time = 0.0

    def loop(self):
        n, B, dev = self.data.size, self.batch, self.group.device
        world, rank = self.group.world, self.group.rank
        steps = math.ceil(n / B)
        best, best_loss = None, math.inf
        t0 = time.perf_counter()
        val_time = 0.0
        r = 0
        stop = False
        try:
            while not stop:
                r += 1
                self.module.train()
                perm = torch.randperm(n, generator=self.g)
                total = torch.zeros((), device=dev)  # sum of example losses this round (this rank)
                seen = 0
                for j in range(steps):
                    idx = perm[j * B:(j + 1) * B]
                    size = len(idx)
                    weight = 1.0
                    if world > 1:
                        # this rank's shard; its mean loss weighted so that the gradients DDP
                        # averages are those of the global batch's mean loss
                        shard = idx[rank::world]
                        weight = len(shard) * world / size
                        idx = shard if len(shard) else idx[:1]
                    loss = self._step(idx, weight)
                    total += loss.detach() * (len(idx) if weight else 0)
                    seen += size
                    self.batches += 1
                    self.examples += size
                    now = time.perf_counter()
                    elapsed = now - t0
                    if self.goal is not None and self.group.agree(elapsed >= self.goal):
                        stop = True
                        break
                    if self.progress.due(now):
                        rate = self.examples / max(elapsed - val_time, 1e-9)
                        running = float(total) * world / max(seen, 1)  # rank 0's shard, scaled
                        last_val = self.val_losses[-1] if self.val_losses else None
                        self.progress.show(now, elapsed, r, running, last_val, rate)
                round_loss = float(self.group.sum(total)) / seen
                self.losses.append(round_loss)
                if self.val_data is not None:
                    tv = time.perf_counter()
                    val = self._validate()
                    val_time += time.perf_counter() - tv
                    self.val_losses.append(val)
                    if val < best_loss:
                        best_loss = val
                        best = {k: p.detach().clone() for k, p in self.module.named_parameters()}
                now = time.perf_counter()
                elapsed = now - t0
                if self.max_rounds is not None and r >= self.max_rounds:
                    stop = True
                elif self.automatic:
                    stop = self.group.agree(elapsed + 0.5 * elapsed / r >= AUTOMATIC_SECONDS)
                rate = self.examples / max(elapsed - val_time, 1e-9)
                self.progress.round_end(now, elapsed, r, round_loss,
                                        self.val_losses[-1] if self.val_losses else None, rate)
        finally:
            self.elapsed = time.perf_counter() - t0
            self.train_time = self.elapsed - val_time
            self.progress.close(self.elapsed)
        return best

    def _step(self, idx: torch.Tensor, weight: float) -> torch.Tensor:
        xs, ts = self.data.rows(idx)
        out = run(self.model, xs, self.ctx)
        loss = batch_loss(self.problem, out, ts)
        (loss * weight if weight != 1.0 else loss).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    @torch.no_grad()
    def _validate(self) -> float:
        """The mean validation loss over the whole validation set (sharded over the ranks)."""
        self.module.eval()
        data, dev = self.val_data, self.group.device
        world, rank = self.group.world, self.group.rank
        idx_all = torch.arange(rank, data.size, world)
        total = torch.zeros((), device=dev)
        chunk = max(self.batch, 256)
        ctx = Ctx(False, None, exact_states=False)
        for start in range(0, len(idx_all), chunk):
            idx = idx_all[start:start + chunk]
            xs, ts = data.rows(idx)
            out = run(self.module, xs, ctx)
            for port, kind in self.validation.losses.items():
                total += example_losses(kind, out[port], ts[port], self.validation.index_targets[port]).sum()
        self.module.train()
        return float(self.group.sum(total)) / data.size


__all__ = ["NetTrain", "NetTrainResultsObject", "Scaled", "loss_plot"]
