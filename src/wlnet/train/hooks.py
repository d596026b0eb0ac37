"""The parts of a NetTrain run besides its loop (`loop.train`), one class per concern, each with
the callbacks it needs (see `loop` for when each is called) and, where it keeps something from
round to round, a `name` and `state_dict()`/`load_state_dict()`: a checkpoint saves
{name: part.state_dict()} of every part (`Checkpoint`).

Divergence: the loss is checked every batch; a non-finite loss (or, at the end, a non-finite
array) stops training, the arrays are put back to the last ones whose loss was finite, and a
warning names the likely cause.

Ctrl-C (SIGINT) during training stops it at the end of the current batch; NetTrain returns what
was asked for with "ReasonTrainingStopped" "ManualStop". A second Ctrl-C interrupts at once.

`make` builds the hooks an `Options` asks for, in the order they are called.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import warnings

import torch

from ..core.data import Seq
from ..core.errors import NetWarning, TrainingError
from ..core.runtime import Ctx
from ..nets.measure import measure_outputs
from .calls import INFO_FORM, call
from .data import run_module
from .options import LOWER_IS_BETTER, Options, StoppingRule, stop_requested
from .report import Progress
from .results import latest

WHO = "NetTrain"
MIN_AUTOMATIC_ROUNDS, MAX_AUTOMATIC_ROUNDS = 10, 10000
GROWTH_WARNING = 1e3  # a round loss this many times the first one draws a warning
ARRAY_WARNING = 1e5  # an array element this large draws a warning (initial arrays are of order 1)
CHECKPOINTED = (None, "MaxTrainingRounds", "StoppingCriterion")  # rounds that end as an uninterrupted run's


def _warn(message: str) -> None:
    """A NetWarning attributed to the code that called NetTrain."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("wlnet.train"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, NetWarning, stacklevel=level)


def _largest(p: torch.Tensor) -> float:
    """max |p| in one pass without a temporary the size of p (NaN if p holds one)."""
    low, high = torch.aminmax(p.detach())
    return max(float(high), -float(low)) if not (low.isnan() or high.isnan()) else math.nan


def _detach(v):
    """v without its graph, to keep for the round's measurements: copied when it is a view into a
    much larger buffer (a recurrent layer's output, a view of the kernel's state buffers), which
    keeping would keep whole."""
    if isinstance(v, Seq):
        return Seq(_detach(v.data), v.lengths)
    v = v.detach()
    return v.clone() if v.untyped_storage().nbytes() > 2 * v.numel() * v.element_size() else v


def _none(v):
    """No rows of v (its shape otherwise): the part of a measurement a rank without examples adds."""
    if v is None:
        return None
    if isinstance(v, Seq):
        return Seq(v.data.detach()[:0], v.lengths[:0] if v.lengths is not None else None)
    return v.detach()[:0]


# ---- measurements ----------------------------------------------------------------------------------------
class Measurer:
    """TrainingProgressMeasurements other than the loss, from the outputs and targets of one port."""

    def __init__(self, run, measured: tuple):
        problem = run.problem
        self.net, self.group = run.net, run.group
        self.wanted = [m for m in measured if m != "Loss"]
        self.port = next(iter(problem.losses)) if measured else None
        if measured and len(problem.losses) != 1:
            raise TrainingError(f"{WHO}: TrainingProgressMeasurements need targets for one output port; the data "
                                f"gives targets for {', '.join(repr(p) for p in problem.losses)}.")
        if self.port is not None and problem.losses[self.port].kind == "Port" and self.wanted:
            raise TrainingError(f'{WHO}: TrainingProgressMeasurements compare outputs with targets, but port '
                                f'"{self.port}" is a loss itself and has no targets; measure only its "Loss".')

    def record(self, into: dict, problem, outputs: list, targets: list) -> None:
        """Append the measurements of these outputs (chunks, one per batch) to `into`'s lists."""
        if self.wanted and outputs:
            port = self.port
            values = measure_outputs(self.wanted, self.net, port, problem.losses[port], outputs, targets,
                                     problem.index_targets[port], self._reduce)
            for m, v in zip(self.wanted, values):
                into[m].append(v)

    def _reduce(self, t: torch.Tensor):
        """Measurements' sums over the ranks (None in one process: nothing to sum)."""
        return self.group.sum(t.to(self.group.device, torch.float64)).cpu()


class Measurements:
    """The round's measurements from its batches' outputs (kept batch by batch)."""

    def __init__(self, measurer: Measurer):
        self.measurer, self.port = measurer, measurer.port
        self.outputs, self.targets = [], []

    def on_batch_end(self, run, out, ts, weight) -> None:
        # a rank without examples (weight 0) ran one only to join the all-reduce
        port = self.port
        self.outputs.append(_detach(out[port]) if weight else _none(out[port]))
        self.targets.append(ts.get(port) if weight else _none(ts.get(port)))

    def on_round_measured(self, run) -> None:
        self.measurer.record(run.round_measurements, run.problem, self.outputs, self.targets)
        self.outputs, self.targets = [], []


class Validation:
    """The ValidationSet's loss and measurements after every round, and the arrays of the lowest
    validation loss so far (the net NetTrain returns)."""

    name = "validation"

    def __init__(self, run, validation, measurer: Measurer, dtype: torch.dtype):
        self.validation, self.measurer = validation, measurer
        self.device = run.group.device
        self.data = validation.data.to(self.device, dtype)
        self.chunk = max(run.source.batch, 256)
        self.best, self.best_loss = None, math.inf

    def on_round_measured(self, run) -> None:
        if run.reason == "Divergence":
            return
        t = run.clock()
        loss = self._validate(run)
        run.val_time += run.clock() - t
        run.val_losses.append(loss)
        if loss < self.best_loss:
            self.best_loss = loss
            self.best = {k: p.detach().clone() for k, p in run.module.named_parameters()}

    @torch.no_grad()
    def _validate(self, run) -> float:
        """The mean validation loss over the whole validation set (sharded over the ranks), and the
        validation measurements."""
        module, group, data = run.module, run.group, self.data
        module.eval()
        port, wanted = self.measurer.port, self.measurer.wanted
        idx_all = torch.arange(group.rank, data.size, group.world)
        total = torch.zeros((), device=group.device, dtype=torch.float64)
        ctx = Ctx(False, None, exact_states=False)
        outputs, targets = [], []
        # a rank with no validation example runs one, counting nothing, so that the measurements'
        # sums see outputs of the right shape
        for start in range(0, len(idx_all), self.chunk) if len(idx_all) else [None]:
            idx = idx_all[start:start + self.chunk] if start is not None else torch.arange(1)
            xs, ts = data.rows(idx)
            out = run_module(module, xs, ctx)
            if start is not None:
                for p, loss in self.validation.losses.items():
                    total += loss.examples(out[p], ts.get(p)).sum()
            if wanted:
                outputs.append(out[port] if start is not None else _none(out[port]))
                targets.append(ts.get(port) if start is not None else _none(ts.get(port)))
        module.train()
        loss = float(group.sum(total)) / data.size
        run.val_measurements["Loss"].append(loss)
        self.measurer.record(run.val_measurements, self.validation, outputs, targets)
        return loss

    def state_dict(self) -> dict:
        return {"best": self.best, "best_loss": self.best_loss}

    def load_state_dict(self, state: dict) -> None:
        best = state["best"]
        self.best = None if best is None else {k: t.to(self.device) for k, t in best.items()}
        self.best_loss = state["best_loss"]


# ---- divergence and Ctrl-C --------------------------------------------------------------------------------
class Divergence:
    """A non-finite loss or array: the arrays put back to the last finite ones, a warning; and a
    warning when the arrays or the loss grow out of bounds."""

    name = "divergence"

    def __init__(self, run, method: str, lr: float):
        self.method, self.lr = method, lr
        self.huge = self.grew = False  # warned already

    def on_divergence(self, run, what: str) -> None:
        run.stepper.restore_snapshot()
        self._warn(what)

    def _warn(self, what: str) -> None:
        _warn(f"{WHO}: training stopped at {what}, which is not a finite number: training diverged. The likely cause "
              f"is a learning rate too large for this net and data (LearningRate {self.lr:g}, Method "
              f"{self.method!r}); try a smaller LearningRate or GradientClipping. The net returned is the last one "
              "whose arrays and loss were finite.")

    def on_round_end(self, run) -> None:
        r = run.round
        if not self.huge:
            with torch.no_grad():
                top = max(_largest(p) for p in run.stepper.params)
            if float(top) > ARRAY_WARNING:
                self.huge = True
                name = next(n for n, p in run.module.named_parameters() if _largest(p) >= top)
                _warn(f"{WHO}: after round {r} the arrays have grown to {float(top):.3g} (array {name}); training is "
                      f"likely diverging because the learning rate (LearningRate {self.lr:g}) is too large. Try a "
                      "smaller LearningRate, GradientClipping or WeightClipping.")
        first = run.losses[0]
        if r >= 2 and first > 0 and run.losses[-1] > GROWTH_WARNING * first and not self.grew:
            self.grew = True
            _warn(f"{WHO}: the round loss grew from {first:.4g} (round 1) to {run.losses[-1]:.4g} (round {r}); "
                  f"the learning rate (LearningRate {self.lr:g}) is likely too large.")

    def on_end(self, run) -> None:
        if run.reason == "Divergence":
            return
        finite = all(math.isfinite(_largest(p)) for p in run.stepper.params)
        if not run.group.agree(finite):
            run.stepper.restore_snapshot()
            run.reason = "Divergence"
            self._warn("the last batch: an array became non-finite")

    def state_dict(self) -> dict:
        return {"warned": [self.huge, self.grew]}

    def load_state_dict(self, state: dict) -> None:
        self.huge, self.grew = (bool(w) for w in state["warned"])


class Interrupt:
    """Turns the first SIGINT into a request to stop (checked after each batch and after each
    round's validation, on every rank); the second one raises KeyboardInterrupt as usual."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def on_start(self, run) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True

    def _restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def on_batch_end(self, run, out, ts, weight) -> None:
        if run.group.any(self.requested):  # Ctrl-C on any rank stops every rank
            run.stop("ManualStop")

    def on_round_end(self, run) -> None:
        if run.reason is None and run.group.any(self.requested):  # Ctrl-C during validation
            run.stop("ManualStop")

    def on_close(self, run) -> None:
        self._restore()


# ---- how long: rounds and the time goal -------------------------------------------------------------------
class Rounds:
    """MaxTrainingRounds, and its Automatic: Wolfram's rule Clip[⌈20 s / seconds per round⌉, {10,
    10000}], the time per round measured over the first rounds (until a tenth of the time is
    spent), from the second round on without the first (which carries the warm-up: kernel
    choice, allocations)."""

    name = "rounds"

    def __init__(self, run, automatic_seconds: float):
        self.automatic = run.max_rounds is None and run.goal is None
        self.seconds = automatic_seconds
        self.first_round_seconds = 0.0

    def on_start(self, run) -> None:
        # a resumed run may have nothing left to do
        if run.round > 0 and run.planned_rounds is not None and run.round >= run.planned_rounds:
            run.stop("MaxTrainingRounds")

    def on_round_end(self, run) -> None:
        if run.reason is not None:
            return
        r, elapsed = run.round, run.elapsed
        if r == 1:
            self.first_round_seconds = elapsed
        if self.automatic and (run.planned_rounds is None or r == 2 or elapsed < 0.1 * self.seconds):
            per_round = elapsed if r == 1 else (elapsed - self.first_round_seconds) / (r - 1)
            want = math.ceil((self.seconds - (elapsed - per_round * r)) / max(per_round, 1e-9))
            run.planned_rounds = run.group.share(min(MAX_AUTOMATIC_ROUNDS, max(MIN_AUTOMATIC_ROUNDS, want)))
        if run.planned_rounds is not None and r >= run.planned_rounds:
            run.stop("MaxTrainingRounds")

    def state_dict(self) -> dict:
        return {"first_round_seconds": self.first_round_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.first_round_seconds = float(state["first_round_seconds"])


class TimeGoal:
    """TimeGoal: training stops at the first batch that ends past it (rank 0's clock decides)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_batch_end(self, run, out, ts, weight) -> None:
        if run.group.agree(run.elapsed >= self.seconds):
            run.stop("TimeGoal")


class Stopping:
    """TrainingStoppingCriterion (`options.StoppingRule`), checked after every round."""

    name = "stopping"

    def __init__(self, rule: StoppingRule):
        self.rule = rule
        self.best, self.waited = None, 0

    def on_round_end(self, run) -> None:
        if run.reason is not None:
            return
        # measured on the ValidationSet when there is one
        values = latest(run.val_measurements if run.val_measurements else run.round_measurements)
        if run.group.agree(self.check(run.round, values, run.round_info())):
            run.stop("StoppingCriterion")

    def check(self, rounds: int, values: dict, info: dict) -> bool:
        """After a round: True to stop. values: {criterion: value} of this round."""
        rule = self.rule
        if rule.function is not None:
            return stop_requested(call(rule.function, (info,), "the TrainingStoppingCriterion function", INFO_FORM),
                                  rounds)
        v = values.get(rule.criterion)
        if v is None or not math.isfinite(v):
            return False
        sign = 1.0 if LOWER_IS_BETTER[rule.criterion] else -1.0
        if rule.target is not None and sign * (v - rule.target) <= 0 and rounds > rule.initial:
            return True  # the TargetValue reached
        if rule.improvement is None:  # a TargetValue alone
            return False
        if self.best is None:
            self.best = v
            return False
        margin = rule.improvement * abs(self.best) if rule.relative else rule.improvement
        if sign * (self.best - v) > margin:
            self.best, self.waited = v, 0
            return False
        if sign * (self.best - v) > 0:
            self.best = v
        self.waited += 1
        return rounds > rule.initial and self.waited > rule.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.waited = state["best"], int(state["waited"])


# ---- what the user sees -------------------------------------------------------------------------------------
class BatchProgressFunction:
    """TrainingProgressFunction with {"Interval": ("Batches", n)}."""

    def __init__(self, f, every: int):
        self.f, self.every = f, every

    def on_batch_end(self, run, out, ts, weight) -> None:
        if run.batches % self.every == 0:
            call(self.f, (run.info(run.batch, run.batch_losses[-1]),), "the TrainingProgressFunction", INFO_FORM)


class RoundProgressFunction:
    """TrainingProgressFunction, every n rounds (every round by default)."""

    def __init__(self, f, every: int):
        self.f, self.every = f, every

    def on_round_end(self, run) -> None:
        if run.round % self.every == 0:
            call(self.f, (run.round_info(),), "the TrainingProgressFunction", INFO_FORM)


class Report:
    """TrainingProgressReporting: the bar, lines or panel (`report.Progress`), on rank 0."""

    def __init__(self, run, mode: str, automatic_seconds: float):
        automatic = run.max_rounds is None and run.goal is None
        self.progress = Progress(mode, run.max_rounds, automatic_seconds if automatic else run.goal)

    @staticmethod
    def _rate(run) -> float:
        return run.examples / max(run.elapsed - run.val_time, 1e-9)

    def on_batch_end(self, run, out, ts, weight) -> None:
        if self.progress.due(run.now):
            last_val = run.val_losses[-1] if run.val_losses else None
            self.progress.show(run.now, run.elapsed, run.round, run.total / max(run.seen, 1), last_val,
                               self._rate(run))

    def on_round_end(self, run) -> None:
        self.progress.round_end(run.now, run.elapsed, run.round, run.losses[-1],
                                run.val_losses[-1] if run.val_losses else None, self._rate(run),
                                latest(run.round_measurements), latest(run.val_measurements))

    def on_close(self, run) -> None:
        self.progress.close(run.elapsed)


# ---- checkpoints ----------------------------------------------------------------------------------------
class Checkpoint:
    """TrainingProgressCheckpointing: every Interval rounds, the net and {name: part.state_dict()}
    of every stateful part (`checkpoint.Checkpointer`); a run resumed puts them back first."""

    def __init__(self, checkpointer, parts: dict, seed: int):
        self.checkpointer, self.parts, self.seed = checkpointer, parts, seed

    def on_restore(self, run) -> None:
        if self.checkpointer.state is not None:
            self.checkpointer.restore(self.parts)

    def on_round_end(self, run) -> None:
        # a checkpoint of a round that ran to its end as an uninterrupted run's would
        if run.done == run.steps and self.checkpointer.due(run.round) and run.reason in CHECKPOINTED:
            self.checkpointer.write(run, self.parts, self.seed)


# ---- the hooks of a run ---------------------------------------------------------------------------------
def make(run, o: Options, validation, automatic_seconds: float, checkpointer=None, seed: int | None = None) -> list:
    """The hooks of a run with options `o`, in the order the loop calls them; `validation` the
    validation problem or None; `checkpointer` a `checkpoint.Checkpointer` or None."""
    measurer = Measurer(run, o.measurements)
    hooks: list = []
    if measurer.wanted:
        hooks.append(Measurements(measurer))
    if validation is not None:
        hooks.append(Validation(run, validation, measurer, o.dtype))
    if o.progress_function is not None and o.progress_function[1] == "Batches":
        hooks.append(BatchProgressFunction(o.progress_function[0], o.progress_function[2]))
    hooks += [Divergence(run, o.method, o.settings["LearningRate"]), Interrupt()]
    if o.time_goal is not None:
        hooks.append(TimeGoal(o.time_goal))
    hooks.append(Rounds(run, automatic_seconds))
    if o.progress_function is not None and o.progress_function[1] == "Rounds":
        hooks.append(RoundProgressFunction(o.progress_function[0], o.progress_function[2]))
    if o.stopping is not None:
        hooks.append(Stopping(o.stopping))
    if o.reporting is not None and run.group.rank == 0:
        hooks.append(Report(run, o.reporting, automatic_seconds))
    if checkpointer is not None:
        parts = {**run.parts(), **{h.name: h for h in hooks if hasattr(h, "state_dict")}}
        hooks.append(Checkpoint(checkpointer, parts, seed))
    return hooks


def best_arrays(hooks: list) -> dict | None:
    """The arrays of the lowest validation loss ({name: tensor}), or None without a ValidationSet."""
    return next((h.best for h in hooks if isinstance(h, Validation)), None)
