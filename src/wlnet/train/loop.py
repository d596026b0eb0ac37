"""NetTrain's loop: rounds of batches (bucketed by length), the optimizer step with the
learning-rate schedule and clipping, divergence, Ctrl-C, stopping, measurements, validation and
the progress reports.

Bucketing: with inputs of varying length, each round's examples are shuffled, sorted by length
(stably, so equal lengths stay shuffled), cut into batches, and the batches shuffled, as
Wolfram's NetTrain does. A batch is padded only to its own longest sequence (Wolfram also rounds
that length up to a few bucket sizes so that its compiled executors can be reused; eager torch
has no executors to reuse, and the extra padding would only cost time). `LengthBucketing=False`
cuts batches from the shuffled order instead. Either way every example is used once a round;
only the batches' composition differs.

Divergence: the loss is checked every batch; a non-finite loss (or, at the end, a non-finite
array) stops training, the arrays are put back to the last ones whose loss was finite, and a
warning names the likely cause.

Ctrl-C (SIGINT) during training stops it at the end of the current batch; NetTrain returns what
was asked for with "ReasonTrainingStopped" "ManualStop". A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings

import torch

from ..core.data import Seq
from ..core.errors import NetWarning, TrainingError
from ..core.runtime import Ctx, module_arrays
from ..nets.measure import measure_outputs
from .data import Dataset, batch_loss, read_dataset, run_module
from .options import schedule_factor, snapshot_in_gradients, snapshot_step, step_function
from .report import Progress

WHO = "NetTrain"
MIN_AUTOMATIC_ROUNDS, MAX_AUTOMATIC_ROUNDS = 10, 10000
GROWTH_WARNING = 1e3  # a round loss this many times the first one draws a warning
ARRAY_WARNING = 1e5  # an array element this large draws a warning (initial arrays are of order 1)


class _Interrupt:
    """Turns the first SIGINT into a request to stop (checked after each batch); the second one
    raises KeyboardInterrupt as usual."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True

    def _restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def __exit__(self, *exc):
        self._restore()
        return False


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


# ---- where the batches come from ---------------------------------------------------------------
class ListSource:
    """Examples held in memory: each round a plan of index batches over them."""

    def __init__(self, problem, device, dtype, batch: int, round_length, bucketing: bool, g: torch.Generator):
        self.data: Dataset = problem.data.to(device, dtype)
        self.device = device
        self.n = problem.data.size
        self.batch = batch
        self.round_length = round_length or self.n
        self.key = problem.data.length_key() if bucketing else None
        if self.key is not None and bool((self.key == self.key[0]).all()):
            self.key = None  # every example has the same length: nothing to bucket
        self.g = g
        self.stream = torch.empty(0, dtype=torch.int64)

    def steps(self) -> int:
        return math.ceil(self.round_length / self.batch)

    def plan(self) -> list:
        """This round's batches, as index tensors (CPU, int64)."""
        if self.round_length == self.n:
            idx = torch.randperm(self.n, generator=self.g)
        else:  # rounds of RoundLength examples from successive shuffles of the data
            while len(self.stream) < self.round_length:
                self.stream = torch.cat([self.stream, torch.randperm(self.n, generator=self.g)])
            idx, self.stream = self.stream[:self.round_length], self.stream[self.round_length:]
        if self.key is None:
            return list(idx.split(self.batch))
        idx = idx[torch.sort(self.key[idx], stable=True).indices]
        batches = list(idx.split(self.batch))
        return [batches[i] for i in torch.randperm(len(batches), generator=self.g).tolist()]

    def rows(self, idx: torch.Tensor) -> tuple[dict, dict]:
        return self.data.rows(idx)


class GeneratorSource:
    """A function f(info) giving a batch of examples in any data form, called for every batch."""

    def __init__(self, f, net, problem_of_first, loss_spec, device, dtype, batch: int, round_length):
        self.f, self.net, self.loss_spec = f, net, loss_spec
        self.device, self.dtype = device, dtype
        self.batch = batch
        self.round_length = round_length or batch
        self.problem = problem_of_first
        self.pending = problem_of_first.data  # the first call's batch, read already to learn the losses
        self.round = self.absolute = 0

    def steps(self) -> int:
        return math.ceil(self.round_length / self.batch)

    def plan(self) -> list:
        self.round += 1
        return list(range(1, self.steps() + 1))

    def rows(self, j: int) -> tuple[dict, dict]:
        data = self.dataset(j)
        return data.inputs, data.targets

    def dataset(self, j: int) -> Dataset:
        """Batch j of this round, read and on the device."""
        self.absolute += 1
        if self.pending is not None:
            data, self.pending = self.pending, None
        else:
            info = {"BatchSize": self.batch, "Round": self.round, "Batch": j, "AbsoluteBatch": self.absolute,
                    "Validation": False}
            problem = read_dataset(self.net, self.f(info), f"{WHO} (generator, round {self.round}, batch {j})",
                                   self.loss_spec)
            if set(problem.losses) != set(self.problem.losses):
                raise TrainingError(f"{WHO}: the generator gave targets for ports {sorted(problem.losses)} in round "
                                    f"{self.round}, batch {j}, but for ports {sorted(self.problem.losses)} at first.")
            data = problem.data
        return data.to(self.device, self.dtype)


def latest(lists: dict) -> dict:
    """{measurement: [value per round]} → {measurement: the last value}, those measured so far."""
    return {m: v[-1] for m, v in lists.items() if v}


def _size(xs: dict) -> int:
    v = next(iter(xs.values()))
    v = v[0] if isinstance(v, list) else v  # a list port's arrays
    return int((v.data if isinstance(v, Seq) else v).shape[0])


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


# ---- the run ------------------------------------------------------------------------------------------
class Run:
    """One training run: the loop, the stopping rules, validation and the best arrays."""

    def __init__(self, net, problem, source, validation, module, optimizer, group, o, dropout_g,
                 automatic_seconds: float, dtype, flats: list):
        self.net, self.problem, self.source = net, problem, source
        self.validation = validation
        self.val_data = validation.data.to(group.device, dtype) if validation is not None else None
        self.module, self.optimizer, self.group = module, optimizer, group
        self.batch = source.batch
        self.ctx = Ctx(True, dropout_g, exact_states=False)
        self.max_rounds = o["MaxTrainingRounds"]
        self.goal = o["TimeGoal"]
        self.automatic = self.max_rounds is None and self.goal is None
        self.automatic_seconds = automatic_seconds
        self.method_name, self.settings = o["Method"]
        self.schedule = self.settings["LearningRateSchedule"]
        self.grad_clip, self.weight_clip = self.settings["GradientClipping"], self.settings["WeightClipping"]
        self.measured = o["TrainingProgressMeasurements"]
        # the measurements computed from the outputs ("Loss" is the loss the loop sums already)
        self.from_outputs = [m for m in self.measured if m != "Loss"]
        self.stopping = o["TrainingStoppingCriterion"]
        self.progress_fn = o["TrainingProgressFunction"]
        reporting = o["TrainingProgressReporting"] if group.rank == 0 else None
        self.progress = Progress(reporting, self.max_rounds, automatic_seconds if self.automatic else self.goal)
        # the tensors the step, clipping, averaging and snapshot work on: the flat buffers (`FlatArrays`)
        self.params = [f.leaf for f in flats]
        self.grads = [f.leaf.grad for f in flats]
        self.live = [p.detach() for p in self.params]
        # the divergence snapshot (the arrays before the last step): in the gradient buffers of a
        # large net trained with ADAM (`snapshot_step`), else a copy of the arrays
        self.snapshot_in_grads = snapshot_in_gradients(optimizer, self.params)
        if self.snapshot_in_grads:
            self.step = snapshot_step(optimizer, self.params)
            self.snapshot = self.grads
        else:
            self.step = step_function(optimizer)
            self.snapshot = [p.detach().clone() for p in self.params]
        self.losses, self.val_losses, self.batch_losses = [], [], []
        self.round_measurements = {m: [] for m in ["Loss", *self.measured]}
        self.val_measurements = {m: [] for m in ["Loss", *self.measured]} if validation is not None else {}
        self.examples = self.batches = 0
        self.elapsed = self.train_time = 0.0
        self.reason = None
        self.lr_first = self.lr_last = None
        self.planned_rounds = self.max_rounds
        self.first_round_seconds = 0.0  # the first round's time, kept apart from the automatic estimate
        self.port = next(iter(problem.losses)) if self.measured else None
        self.best, self.best_loss = None, math.inf  # the arrays of the best validation loss so far
        # where a resumed run starts (train_checkpoint restores these), and the checkpoints it writes
        self.start_round, self.elapsed_before, self.val_time = 0, 0.0, 0.0
        self.checkpointer = self.fingerprint = self.seed = None
        self.t0 = 0.0
        if self.measured and len(problem.losses) != 1:
            raise TrainingError(f"{WHO}: TrainingProgressMeasurements need targets for one output port; the data "
                                f"gives targets for {', '.join(repr(p) for p in problem.losses)}.")
        if self.port is not None and problem.losses[self.port].kind == "Port" and self.from_outputs:
            raise TrainingError(f'{WHO}: TrainingProgressMeasurements compare outputs with targets, but port '
                                f'"{self.port}" is a loss itself and has no targets; measure only its "Loss".')

    # ---- the loop ----
    def loop(self):
        world = self.group.world
        steps = self.source.steps()
        t0 = self.t0 = time.perf_counter() - self.elapsed_before
        r = self.start_round
        stop = r > 0 and self._finished(r)
        if self.snapshot_in_grads:  # the arrays training starts (or resumes) from
            torch._foreach_copy_(self.snapshot, self.live)
        with _Interrupt() as interrupt:
            try:
                while not stop:
                    r += 1
                    self.module.train()
                    total = 0.0  # the sum of the round's example losses (all ranks)
                    seen = 0
                    outputs, targets = [], []
                    done = 0  # the round's batches stepped
                    for j, part in enumerate(self.source.plan(), 1):
                        xs, ts = self.source.rows(part) if world == 1 else self._shard(part)
                        size = _size(xs) if world == 1 else self._global_size
                        weight = 1.0 if world == 1 else self._weight
                        loss, out = self._forward(xs, ts)
                        value = self._global_loss(loss, _size(xs) if weight else 0, size)
                        if not math.isfinite(value):  # on any rank: a non-finite shard makes the sum so
                            self._diverged(r, j, value)
                            stop = True
                            break
                        self._backward_and_step(loss, weight, t0)
                        if self.from_outputs:  # a rank without examples (weight 0) ran one only to join the all-reduce
                            outputs.append(_detach(out[self.port]) if weight else _none(out[self.port]))
                            targets.append(ts.get(self.port) if weight else _none(ts.get(self.port)))
                        self.batch_losses.append(value)
                        total += value * size
                        seen += size
                        self.batches += 1
                        self.examples += size
                        done = j
                        now = time.perf_counter()
                        elapsed = now - t0
                        if self.progress_fn is not None and self.progress_fn[1] == "Batches" \
                                and self.batches % self.progress_fn[2] == 0:
                            self.progress_fn[0](self._info(r, j, value, elapsed, total, seen))
                        if self.group.any(interrupt.requested):  # Ctrl-C on any rank stops every rank
                            self.reason, stop = "ManualStop", True
                            break
                        if self.goal is not None and self.group.agree(elapsed >= self.goal):
                            self.reason, stop = "TimeGoal", True
                            break
                        if self.progress.due(now):
                            rate = self.examples / max(elapsed - self.val_time, 1e-9)
                            running = total / max(seen, 1)
                            last_val = self.val_losses[-1] if self.val_losses else None
                            self.progress.show(now, elapsed, r, running, last_val, rate)
                    if seen == 0:  # stopped before the round's first step: no round to record
                        break
                    round_loss = total / seen
                    self.losses.append(round_loss)
                    self._record(self.round_measurements, round_loss, self.problem, outputs, targets)
                    if self.val_data is not None and self.reason != "Divergence":
                        tv = time.perf_counter()
                        val = self._validate()
                        self.val_time += time.perf_counter() - tv
                        self.val_losses.append(val)
                        if val < self.best_loss:
                            self.best_loss = val
                            self.best = {k: p.detach().clone() for k, p in self.module.named_parameters()}
                    now = time.perf_counter()
                    elapsed = now - t0
                    self._warn_growth(r)
                    if not stop and self.group.any(interrupt.requested):  # Ctrl-C during validation
                        self.reason, stop = "ManualStop", True
                    if not stop:
                        stop = self._round_stop(r, elapsed, steps)
                    info = None
                    fn = self.progress_fn
                    if fn is not None and fn[1] == "Rounds" and r % fn[2] == 0:
                        info = self._info(r, steps, self.batch_losses[-1], elapsed, total, seen)
                        self.progress_fn[0](info)
                    if not stop and self.stopping:
                        values = self._criterion_values()
                        info = info or self._info(r, steps, self.batch_losses[-1], elapsed, total, seen)
                        if self.group.agree(self.stopping.check(r, values, info)):
                            self.reason, stop = "StoppingCriterion", True
                    rate = self.examples / max(elapsed - self.val_time, 1e-9)
                    self.progress.round_end(now, elapsed, r, round_loss,
                                            self.val_losses[-1] if self.val_losses else None, rate,
                                            latest(self.round_measurements), latest(self.val_measurements))
                    # a checkpoint of a round that ran to its end as an uninterrupted run's would
                    if self.checkpointer is not None and done == steps and self.checkpointer.due(r) \
                            and self.reason in (None, "MaxTrainingRounds", "StoppingCriterion"):
                        self.checkpointer.write(self, r, self.fingerprint)
            finally:
                self.elapsed = time.perf_counter() - t0
                self.train_time = self.elapsed - self.val_time
                self.progress.close(self.elapsed)
        self._check_final_arrays()
        return self.best

    def release(self) -> None:
        """Free what only training needs (the optimizer's state, the gradients, the divergence
        snapshot), so that the nets made from the arrays afterwards do not add to the peak."""
        self.optimizer.state.clear()
        for p in [*self.params, *self.module.parameters()]:
            p.grad = None
        self.grads = None
        self.snapshot = self.live = []

    def _finished(self, r: int) -> bool:
        """Whether a run resumed after round r has nothing left to do."""
        if self.reason is None and self.planned_rounds is not None and r >= self.planned_rounds:
            self.reason = "MaxTrainingRounds"
        return self.reason is not None

    def _round_stop(self, r: int, elapsed: float, steps: int) -> bool:
        if r == 1:
            self.first_round_seconds = elapsed
        if self.automatic and (self.planned_rounds is None or r == 2 or elapsed < 0.1 * self.automatic_seconds):
            # Wolfram's rule: Clip[⌈20 s / seconds per round⌉, {10, 10000}], the time per round measured
            # over the first rounds (until a tenth of the time is spent), from the second round on
            # without the first (which carries the warm-up: kernel choice, allocations)
            per_round = elapsed if r == 1 else (elapsed - self.first_round_seconds) / (r - 1)
            want = math.ceil((self.automatic_seconds - (elapsed - per_round * r)) / max(per_round, 1e-9))
            self.planned_rounds = self.group.share(min(MAX_AUTOMATIC_ROUNDS, max(MIN_AUTOMATIC_ROUNDS, want)))
        if self.planned_rounds is not None and r >= self.planned_rounds:
            self.reason = "MaxTrainingRounds"
            return True
        return False

    def _total_batches(self, elapsed: float) -> int:
        """The number of batches the schedule spreads over (the best estimate so far)."""
        steps = self.source.steps()
        if self.planned_rounds is not None:
            return self.planned_rounds * steps
        if self.goal is not None and self.batches > 0 and elapsed > 0:
            return max(self.batches + 1, math.ceil((self.batches + 1) * self.goal / elapsed))
        return MIN_AUTOMATIC_ROUNDS * steps

    # ---- one batch ----
    def _forward(self, xs, ts):
        out = run_module(self.module, xs, self.ctx)
        return batch_loss(self.problem, out, ts), out

    def _backward_and_step(self, loss, weight: float, t0: float) -> None:
        scaled = loss * weight if weight != 1.0 else loss
        if self.snapshot_in_grads:  # the snapshot there is not needed now: this loss is finite
            torch._foreach_zero_(self.grads)
        scaled.backward()
        self.group.average(self.grads)
        if not self.snapshot_in_grads:
            torch._foreach_copy_(self.snapshot, self.live)  # the arrays whose loss was finite
        t = self.batches + 1
        factor = schedule_factor(self.schedule, t, self._total_batches(time.perf_counter() - t0))
        base = self.settings["LearningRate"]
        for group in self.optimizer.param_groups:
            group["lr"] = base * group["factor"] * factor
        self.lr_last = base * factor
        if self.lr_first is None:
            self.lr_first = self.lr_last
        if self.grad_clip is not None:
            for p in self.params:
                if p.grad is not None:
                    p.grad.clamp_(-self.grad_clip, self.grad_clip)
        self.step()
        if not self.snapshot_in_grads:  # (else they hold the snapshot until the next loss is known)
            torch._foreach_zero_(self.grads)  # the arrays' gradients are views of these: zero them, keep them
        if self.weight_clip is not None:
            with torch.no_grad():
                for p in self.params:
                    p.clamp_(-self.weight_clip, self.weight_clip)

    def _global_loss(self, loss, count: int, size: int) -> float:
        """The global batch's mean loss: this rank's `count` examples' share, summed over the ranks."""
        if self.group.world == 1:
            return float(loss.detach())
        share = loss.detach().double().reshape(1) * count if count else torch.zeros(1, dtype=torch.float64,
                                                                                   device=loss.device)
        return float(self.group.sum(share)) / size

    def _shard(self, part):
        """Under torchrun: this rank's shard of the global batch, its mean loss weighted so that the
        gradients the ranks average are those of the global batch's mean loss. A generator is called with
        the same info on every rank, each rank keeping its shard of the batch it gives."""
        world, rank = self.group.world, self.group.rank
        if isinstance(self.source, GeneratorSource):
            data = self.source.dataset(part)
            idx, rows = torch.arange(data.size), data.rows
        else:
            idx, rows = part, self.source.rows
        size = len(idx)
        shard = idx[rank::world]
        self._weight = len(shard) * world / size
        self._global_size = size
        return rows(shard if len(shard) else idx[:1])

    # ---- divergence ----
    def _diverged(self, r: int, j: int, value: float) -> None:
        self._restore_snapshot()
        self.reason = "Divergence"
        self._warn(f"round {r}, batch {j}: the loss became {value}")

    def _restore_snapshot(self) -> None:
        torch._foreach_copy_(self.live, self.snapshot)

    def _warn(self, what: str) -> None:
        lr = self.settings["LearningRate"]
        warnings.warn(
            f"{WHO}: training stopped at {what}, which is not a finite number: training diverged. The likely cause "
            f"is a learning rate too large for this net and data (LearningRate {lr:g}, Method {self.method_name!r}); "
            "try a smaller LearningRate or GradientClipping. The net returned is the last one whose arrays and loss "
            "were finite.", NetWarning, stacklevel=4)

    def _check_final_arrays(self) -> None:
        if self.reason == "Divergence":
            return
        finite = all(math.isfinite(_largest(p)) for p in self.params)
        if not self.group.agree(finite):
            self._restore_snapshot()
            self.reason = "Divergence"
            self._warn("the last batch: an array became non-finite")

    def _warn_growth(self, r: int) -> None:
        if not getattr(self, "_huge", False):
            with torch.no_grad():
                top = max(_largest(p) for p in self.params)
            if float(top) > ARRAY_WARNING:
                self._huge = True
                name = next(n for n, p in self.module.named_parameters() if _largest(p) >= top)
                warnings.warn(
                    f"{WHO}: after round {r} the arrays have grown to {float(top):.3g} (array {name}); training is "
                    f"likely diverging because the learning rate (LearningRate {self.settings['LearningRate']:g}) is "
                    "too large. Try a smaller LearningRate, GradientClipping or WeightClipping.",
                    NetWarning, stacklevel=4)
        first = self.losses[0]
        if r >= 2 and first > 0 and self.losses[-1] > GROWTH_WARNING * first and not getattr(self, "_grew", False):
            self._grew = True
            warnings.warn(
                f"{WHO}: the round loss grew from {first:.4g} (round 1) to {self.losses[-1]:.4g} (round {r}); "
                f"the learning rate (LearningRate {self.settings['LearningRate']:g}) is likely too large.",
                NetWarning, stacklevel=4)

    # ---- measurements ----
    def _record(self, into: dict, loss: float, problem, outputs: list, targets: list) -> None:
        """A round's (or a validation pass's) measurements: its loss, and the others from its outputs."""
        into["Loss"].append(loss)
        if self.from_outputs and outputs:
            port = self.port
            values = measure_outputs(self.from_outputs, self.net, port, problem.losses[port], outputs, targets,
                                     problem.index_targets[port], self._reduce)
            for m, v in zip(self.from_outputs, values):
                into[m].append(v)

    def _reduce(self, t: torch.Tensor):
        """Measurements' sums over the ranks (None in one process: nothing to sum)."""
        return self.group.sum(t.to(self.group.device, torch.float64)).cpu()

    def _criterion_values(self) -> dict:
        source = self.val_measurements if self.val_data is not None else self.round_measurements
        return latest(source)

    def _info(self, r, j, batch_loss_value, elapsed, total, seen) -> ProgressInfo:
        values = {
            "Round": r, "Batch": j, "AbsoluteBatch": self.batches, "TotalBatches": self._total_batches(elapsed),
            "BatchLoss": batch_loss_value,
            "RoundLoss": self.losses[-1] if len(self.losses) == r else float(total) / max(seen, 1),
            "ValidationLoss": self.val_losses[-1] if self.val_losses else None,
            "LearningRate": self.lr_last,
            "RoundMeasurements": latest(self.round_measurements),
            "ValidationMeasurements": latest(self.val_measurements),
            "ExamplesProcessed": self.examples, "TimeElapsed": elapsed,
        }
        return ProgressInfo(values, lambda: self.net.with_arrays(module_arrays(self.net, self.module)))

    @torch.no_grad()
    def _validate(self) -> float:
        """The mean validation loss over the whole validation set (sharded over the ranks), and the
        validation measurements."""
        self.module.eval()
        data, dev = self.val_data, self.group.device
        world, rank = self.group.world, self.group.rank
        idx_all = torch.arange(rank, data.size, world)
        total = torch.zeros((), device=dev, dtype=torch.float64)
        chunk = max(self.batch, 256)
        ctx = Ctx(False, None, exact_states=False)
        outputs, targets = [], []
        # a rank with no validation example runs one, counting nothing, so that the measurements'
        # sums see outputs of the right shape
        for start in range(0, len(idx_all), chunk) if len(idx_all) else [None]:
            idx = idx_all[start:start + chunk] if start is not None else torch.arange(1)
            xs, ts = data.rows(idx)
            out = run_module(self.module, xs, ctx)
            if start is not None:
                for port, loss in self.validation.losses.items():
                    total += loss.examples(out[port], ts.get(port)).sum()
            if self.from_outputs:
                outputs.append(out[self.port] if start is not None else _none(out[self.port]))
                targets.append(ts.get(self.port) if start is not None else _none(ts.get(self.port)))
        self.module.train()
        loss = float(self.group.sum(total)) / data.size
        self._record(self.val_measurements, loss, self.validation, outputs, targets)
        return loss
