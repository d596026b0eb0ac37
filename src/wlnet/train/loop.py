"""NetTrain's loop: rounds of batches, each batch's forward pass, loss and step, and the calls
of the run's hooks (`hooks`), which do everything else: the progress reports and function, the
time goal, the rounds' count, stopping, validation and the best arrays, measurements,
checkpoints, divergence and Ctrl-C.

A hook defines only the callbacks it needs, and the loop calls only those, in the hooks' order:

  on_restore(run)        before anything else (a checkpoint puts the run's parts back)
  on_start(run)          before the first round
  on_batch_end(run, out, targets, weight)   after each batch's step; the loop stops the round
                         as soon as one sets `run.reason`
  on_divergence(run, what)   a batch's loss is not finite: the run stops before its step
  on_round_measured(run) after a round's loss is recorded (measurements, validation); the
                         clock is read after these
  on_round_end(run)      after that (reports, the stopping rules, checkpoints)
  on_close(run)          when the loop ends, however it ends
  on_end(run)            after a loop that ended without an error
"""

from __future__ import annotations

import math
import time

import torch

from ..core.data import Seq
from ..core.errors import TrainingError
from ..core.runtime import Ctx, module_arrays
from .data import batch_loss, run_module
from .results import latest

WHO = "NetTrain"
MIN_AUTOMATIC_ROUNDS = 10  # the schedule's estimate before the rounds are planned (Automatic's floor)
CALLBACKS = ("on_restore", "on_start", "on_batch_end", "on_divergence", "on_round_measured", "on_round_end",
             "on_close", "on_end")


class Run:
    """What a training run's parts share: the module, its optimizer (`optim.Stepper`), the source
    of batches, the process group, and the records every part reads (the counters, the loss and
    measurement lists, the time, why training stopped). Its own state is `state_dict()`."""

    name = "run"

    def __init__(self, net, problem, source, module, stepper, group, dropout_g, o):
        self.net, self.problem, self.source = net, problem, source
        self.module, self.stepper, self.group = module, stepper, group
        self.ctx = Ctx(True, dropout_g, exact_states=False)
        self.steps = source.steps()  # batches a round
        self.max_rounds, self.goal = o.max_rounds, o.time_goal
        self.planned_rounds = o.max_rounds  # with MaxTrainingRounds Automatic, set by the `Rounds` hook
        measured = ["Loss", *o.measurements]
        self.losses, self.val_losses, self.batch_losses = [], [], []
        self.round_measurements = {m: [] for m in measured}
        self.val_measurements = {m: [] for m in measured} if o.validation is not None else {}
        self.examples = self.batches = 0  # in all
        self.round = self.batch = 0  # the current round, and its batch
        self.total, self.seen, self.done = 0.0, 0, 0  # this round: the sum of its example losses, examples, batches
        self.reason = None  # why training stopped (None: it goes on)
        self.t0 = self.now = self.elapsed = 0.0
        self.elapsed_before = 0.0  # a resumed run's time before it
        self.val_time = 0.0  # seconds spent validating (not counted in the speeds)
        self._round_info = None

    @staticmethod
    def clock() -> float:
        return time.perf_counter()

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def total_batches(self, elapsed: float | None = None) -> int:
        """The number of batches the schedule spreads over (the best estimate so far)."""
        if self.planned_rounds is not None:
            return self.planned_rounds * self.steps
        elapsed = self.clock() - self.t0 if elapsed is None else elapsed
        if self.goal is not None and self.batches > 0 and elapsed > 0:
            return max(self.batches + 1, math.ceil((self.batches + 1) * self.goal / elapsed))
        return MIN_AUTOMATIC_ROUNDS * self.steps

    def info(self, batch: int, batch_loss: float) -> ProgressInfo:
        """The progress dict after batch `batch` of the current round, whose loss was `batch_loss`."""
        values = {
            "Round": self.round, "Batch": batch, "AbsoluteBatch": self.batches,
            "TotalBatches": self.total_batches(self.elapsed), "BatchLoss": batch_loss,
            "RoundLoss": self.losses[-1] if len(self.losses) == self.round else self.total / max(self.seen, 1),
            "ValidationLoss": self.val_losses[-1] if self.val_losses else None,
            "LearningRate": self.stepper.lr_last,
            "RoundMeasurements": latest(self.round_measurements),
            "ValidationMeasurements": latest(self.val_measurements),
            "ExamplesProcessed": self.examples, "TimeElapsed": self.elapsed,
        }
        return ProgressInfo(values, lambda: self.net.with_arrays(module_arrays(self.net, self.module)))

    def round_info(self) -> ProgressInfo:
        """The progress dict at the end of the current round (one dict for every part that asks)."""
        if self._round_info is None or self._round_info[0] != self.round:
            self._round_info = (self.round, self.info(self.steps, self.batch_losses[-1]))
        return self._round_info[1]

    def parts(self) -> dict:
        """The stateful parts besides the hooks: {name: part with state_dict/load_state_dict}."""
        return {self.name: self, self.stepper.name: self.stepper, self.source.name: self.source,
                "dropout": Dropout(self.ctx.generator, self.group)}

    RECORDS = ("losses", "val_losses", "batch_losses", "round_measurements", "val_measurements", "examples",
               "batches", "reason")

    def state_dict(self) -> dict:
        state = {k: getattr(self, k) for k in self.RECORDS}
        state.update(round=self.round, planned_rounds=self.planned_rounds, elapsed=self.clock() - self.t0,
                     val_time=self.val_time)
        return state

    def load_state_dict(self, state: dict) -> None:
        for k in self.RECORDS:
            setattr(self, k, state[k])
        if self.reason == "MaxTrainingRounds":
            self.reason = None  # MaxTrainingRounds may have been raised to train on
        if self.max_rounds is None:  # a given MaxTrainingRounds may be raised; the automatic count is kept
            self.planned_rounds = state["planned_rounds"]
        self.round = int(state["round"])
        self.elapsed_before, self.val_time = float(state["elapsed"]), float(state["val_time"])


class ProgressInfo(dict):
    """The dict TrainingProgressFunction and a TrainingStoppingCriterion function receive; its "Net"
    (the net with the current arrays) is made only when asked for."""

    def __init__(self, values: dict, make_net):
        super().__init__(values)
        self._make_net = make_net

    def __missing__(self, key):
        if key == "Net":
            net = self._make_net()
            self["Net"] = net
            return net
        raise KeyError(key)


class Dropout:
    """The dropout generators' states, one per rank (saved by rank 0, each rank restoring its own)."""

    def __init__(self, generator, group):
        self.generator, self.group = generator, group

    def state_dict(self) -> dict:
        """Every rank's state (a collective: every rank calls this)."""
        if self.generator is None:
            return {"states": []}
        state = self.generator.get_state()
        if self.group.world == 1:
            return {"states": [state]}
        t = state.to(self.group.device)
        parts = [torch.empty_like(t) for _ in range(self.group.world)]
        self.group.dist.all_gather(parts, t)
        return {"states": [p.cpu() for p in parts]}

    def load_state_dict(self, state: dict) -> None:
        states = state["states"]
        if self.generator is not None and self.group.rank < len(states):
            self.generator.set_state(states[self.group.rank])


def _defining(hooks: list, callback: str) -> list:
    return [getattr(h, callback) for h in hooks if hasattr(type(h), callback)]


def train(run: Run, hooks: list) -> None:
    """Train until a hook (or a divergence, or the data) stops the run."""
    calls = {c: _defining(hooks, c) for c in CALLBACKS}
    for f in calls["on_restore"]:
        f(run)
    run.t0 = run.clock() - run.elapsed_before
    run.stepper.begin()
    try:
        for f in calls["on_start"]:
            f(run)
        while run.reason is None:
            run.round += 1
            _round(run, calls["on_batch_end"], calls["on_divergence"])
            if run.seen == 0:  # stopped before the round's first step: no round to record
                break
            round_loss = run.total / run.seen
            run.losses.append(round_loss)
            run.round_measurements["Loss"].append(round_loss)
            for f in calls["on_round_measured"]:
                f(run)
            run.now = run.clock()
            run.elapsed = run.now - run.t0
            for f in calls["on_round_end"]:
                f(run)
    finally:
        run.elapsed = run.clock() - run.t0
        for f in calls["on_close"]:
            f(run)
    for f in calls["on_end"]:
        f(run)


def _round(run: Run, batch_end: list, divergence: list) -> None:
    """The round's batches, each forward, its loss, its step and the batch callbacks, until the
    round's plan ends or a part stops the run."""
    module, source, stepper, problem, ctx = run.module, run.source, run.stepper, run.problem, run.ctx
    world, clock, total_batches = run.group.world, run.clock, run.total_batches
    module.train()
    run.total, run.seen, run.done = 0.0, 0, 0
    for j, part in enumerate(source.plan(), 1):
        run.batch = j
        if world == 1:
            xs, ts = source.rows(part)
            size, weight = _size(xs), 1.0
        else:
            xs, ts, size, weight = _shard(run, part)
        out = run_module(module, xs, ctx)
        loss = batch_loss(problem, out, ts)
        value = float(loss.detach()) if world == 1 else _global_loss(run, loss, _size(xs) if weight else 0, size)
        if not math.isfinite(value):  # on any rank: a non-finite shard makes the sum so
            run.stop("Divergence")
            for f in divergence:
                f(run, f"round {run.round}, batch {j}: the loss became {value}")
            return
        stepper.step(loss, weight, run.batches + 1, total_batches)
        run.batch_losses.append(value)
        run.total += value * size
        run.seen += size
        run.batches += 1
        run.examples += size
        run.done = j
        run.now = clock()
        run.elapsed = run.now - run.t0
        for f in batch_end:
            f(run, out, ts, weight)
            if run.reason is not None:
                return


def _size(xs: dict) -> int:
    v = next(iter(xs.values()))
    v = v[0] if isinstance(v, list) else v  # a list port's arrays
    return int((v.data if isinstance(v, Seq) else v).shape[0])


def _shard(run: Run, part):
    """Under torchrun: this rank's shard of the global batch, (inputs, targets, the global batch's
    size, the weight of this rank's mean loss), weighted so that the gradients the ranks average
    are those of the global batch's mean loss. A rank without examples in the batch runs one, of
    weight 0, only to join the collectives."""
    world, rank = run.group.world, run.group.rank
    idx, rows = run.source.global_rows(part)
    size = len(idx)
    shard = idx[rank::world]
    xs, ts = rows(shard if len(shard) else idx[:1])
    return xs, ts, size, len(shard) * world / size


def _global_loss(run: Run, loss, count: int, size: int) -> float:
    """The global batch's mean loss: this rank's `count` examples' share, summed over the ranks.
    The same all-reduce sums the batch's size s as each rank sees it, and s²: the sizes are all
    equal exactly when world·Σs² = (Σs)², which every rank reads alike, so a generator that gives
    the ranks batches of different sizes stops every rank with the same error."""
    t = torch.tensor([0.0, size, size * size], dtype=torch.float64, device=loss.device)
    if count:
        t[0] = loss.detach().double() * count
    run.group.sum(t)
    if run.group.world * float(t[2]) != float(t[1]) ** 2:
        raise TrainingError(
            f"{WHO}: the processes of this data-parallel run were given batches of different sizes in round "
            f"{run.round}, batch {run.batch}. A generator must give every process the same batch for the same info: "
            "each trains on its share of every batch.")
    return float(t[0]) / size
