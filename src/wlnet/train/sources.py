"""Where NetTrain's batches come from: examples held in memory (`ListSource`, a plan of index
batches each round, bucketed by length) or a generator function called for every batch
(`GeneratorSource`); and the validation set (data, a generator's one batch, or a held-out
fraction).

Bucketing: with inputs of varying length, each round's examples are shuffled, sorted by length
(stably, so equal lengths stay shuffled), cut into batches, and the batches shuffled, as
Wolfram's NetTrain does. A batch is padded only to its own longest sequence (Wolfram also rounds
that length up to a few bucket sizes so that its compiled executors can be reused; eager torch
has no executors to reuse, and the extra padding would only cost time). `LengthBucketing=False`
cuts batches from the shuffled order instead. Either way every example is used once a round;
only the batches' composition differs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from ..core.errors import TrainingError
from .data import Dataset, Problem, read_dataset
from .options import Options, Scaled

WHO = "NetTrain"
AUTOMATIC_BATCH = 64


class ListSource:
    """Examples held in memory: each round a plan of index batches over them."""

    name = "source"

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

    def global_rows(self, idx: torch.Tensor):
        """(the global batch's row numbers, the function giving rows by number): what each rank
        takes its shard of."""
        return idx, self.data.rows

    def state_dict(self) -> dict:
        return {"shuffle": self.g.get_state(), "stream": self.stream}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["shuffle"])
        self.stream = state["stream"].clone()


class GeneratorSource:
    """A function f(info) giving a batch of examples in any data form, called for every batch."""

    name = "source"

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

    def global_rows(self, j: int):
        """As `ListSource.global_rows`: the generator is called with the same info on every rank."""
        data = self.dataset(j)
        return torch.arange(data.size), data.rows

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

    def state_dict(self) -> dict:
        return {"round": self.round, "absolute": self.absolute}

    def load_state_dict(self, state: dict) -> None:
        self.round, self.absolute = int(state["round"]), int(state["absolute"])
        self.pending = None  # the first batch was read to learn the losses; training goes on from the checkpoint


def is_generator(data) -> bool:
    """Whether data (training or validation) is a generator function f(info) rather than examples."""
    return callable(data) and not isinstance(data, dict | list | tuple)


class Reading(NamedTuple):
    """The data and ValidationSet as read, before the seed splits or shuffles them."""

    problem: Problem  # the training data (all of it: a Scaled validation set is not held out yet)
    validation: object  # None, Scaled(f), or the validation Problem
    generator: object  # the generator function, or None for data held in memory
    batch: int | None  # BatchSize (None: Automatic, for data in memory resolved once a Scaled part is held out)

    def sizes(self) -> dict:
        """The sizes every process of a data-parallel run must agree on, by name (the number of
        batches and of collectives in a round follows from them)."""
        v = self.validation
        return {"training examples" if self.generator is None else "examples in the generator's first batch":
                self.problem.data.size,
                "validation examples": v.data.size if isinstance(v, Problem) else repr(v)}


def is_iterable(data) -> bool:
    """Whether data is a generator object or another iterable of batches (a torch DataLoader)
    rather than examples or a generator function."""
    return not isinstance(data, dict | list | tuple | str | bytes | np.ndarray | torch.Tensor) and not callable(data) \
        and hasattr(data, "__iter__")


class IterableBatches:
    """A generator object or another iterable of batches (a torch DataLoader) as a generator
    function: each call gives its next batch, in any form a generator function may give; a
    DataLoader's [inputs, targets] is read as the tuple (inputs, targets). An iterable that ends
    starts again (a DataLoader: its next epoch); a generator object, which cannot, stops the
    training with a TrainingError naming the batch."""

    def __init__(self, data):
        self.data, self.it = data, iter(data)

    def __call__(self, info: dict):
        try:
            return _batch(next(self.it))
        except StopIteration:
            if iter(self.data) is self.data:  # an iterator: used up
                raise TrainingError(f"{WHO}: the generator object given as training data ended before round "
                                    f"{info['Round']}, batch {info['Batch']}; give a generator function f(info) "
                                    "(called for every batch), an iterable that can start again, or fewer rounds.") \
                    from None
            self.it = iter(self.data)
            try:
                return _batch(next(self.it))
            except StopIteration:
                raise TrainingError(f"{WHO}: the iterable given as training data gives no batches.") from None


def _batch(b):
    if isinstance(b, list) and len(b) == 2 and all(isinstance(x, torch.Tensor | np.ndarray) for x in b):
        return tuple(b)  # (a DataLoader's default collation of (input, target) pairs)
    return b


def read_data(net, data, o: Options) -> Reading:
    """The data and ValidationSet read for `net` (a generator's first batch called for); a
    generator object or an iterable of batches is read as a generator function (`IterableBatches`)."""
    batch = o.batch_size
    if is_iterable(data):
        data = IterableBatches(data)
    generator = is_generator(data)
    if generator:
        batch = batch or AUTOMATIC_BATCH
        first = data({"BatchSize": batch, "Round": 1, "Batch": 1, "AbsoluteBatch": 1, "Validation": False})
        problem = read_dataset(net, first, f"{WHO} (generator, round 1, batch 1)", o.loss)
    else:
        problem = read_dataset(net, data, WHO, o.loss)
    validation = o.validation
    if isinstance(validation, Scaled):
        if generator:
            raise TrainingError(f"{WHO}: ValidationSet=Scaled(f) needs training data held in a list, not a "
                                "generator function; give the ValidationSet as data or as a generator.")
    elif validation is not None:
        if is_generator(validation):
            validation = validation({"BatchSize": batch or AUTOMATIC_BATCH, "Round": 0, "Batch": 1, "AbsoluteBatch": 0,
                                     "Validation": True})
        validation = read_dataset(net, validation, f"{WHO} (ValidationSet)", o.loss)
        if set(validation.losses) != set(problem.losses):
            raise TrainingError(f"{WHO}: the ValidationSet gives targets for ports {sorted(validation.losses)}, but "
                                f"the training data for ports {sorted(problem.losses)}.")
    return Reading(problem, validation, data if generator else None, batch)


def make_sources(net, reading: Reading, o: Options, device, g: torch.Generator):
    """(the training problem, its source of batches, the validation problem or None); `g` shuffles
    and splits (the same on every rank)."""
    problem, validation = reading.problem, reading.validation
    if isinstance(validation, Scaled):
        problem, validation = _split(problem, validation.f, g)
    if reading.generator is not None:
        source = GeneratorSource(reading.generator, net, problem, o.loss, device, o.dtype, reading.batch,
                                 o.round_length)
    else:
        batch = reading.batch or min(AUTOMATIC_BATCH, problem.data.size)
        source = ListSource(problem, device, o.dtype, batch, o.round_length, o.bucketing, g)
    return problem, source, validation


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
