"""NetTrain: train a net on examples, in one process or data-parallel in several.

The options are checked once (`options.parse`); the data is checked and converted to tensors
once (`data.read_dataset`), or, for a generator function, batch by batch (`sources`); each
round is a shuffled pass over it in batches, bucketed by length for sequence inputs; the
optimizer (`optim.Stepper`) updates a trainable copy of the net's arrays, and the result is a
new net (the argument never changes). With a validation set the net returned is the one with
the lowest validation loss. The loop (`loop.train`) runs the batches and calls the run's hooks
(`hooks`), which do the rest: progress, stopping, validation, checkpoints, divergence, Ctrl-C.

Started by `torchrun` (WORLD_SIZE > 1), every process runs NetTrain on the same data: each
takes its shard of every global batch, and one all-reduce of each flat gradient buffer averages
the gradients (`distributed.Group.average`), so the arrays stay identical on every rank and
equal (to float tolerance) to one process training on the same global batches. Only rank 0
reports and returns the results; the others return the trained net. Losses and measurements
are summed over the ranks, so they are the global batches'; decisions (stopping, time goal) are
rank 0's, a divergence or Ctrl-C on any rank stops all. A generator is called with the same
info on every rank, each keeping its shard of the batch. Before anything else the ranks compare
their data's sizes and the options that set how many batches and collectives the run has
(`_plan`): ranks that differ all stop with the same TrainingError naming what differs where. A
rank whose peer dies or stops answering raises a ProcessGroupError (after WLNET_DIST_TIMEOUT
seconds at most) instead of waiting forever.

TimeGoal, the stopping rules and a first Ctrl-C act between batches: a generator function that
never returns is not interrupted by them (a second Ctrl-C interrupts it).
"""

from __future__ import annotations

import torch

from ..core import options as O
from ..core.errors import OptionError
from ..core.net import Net
from ..core.runtime import module_arrays
from ..core.symbols import All, Automatic
from ..nets.initialize import NetInitialize
from . import hooks as H
from .checkpoint import Checkpointer, fingerprint
from .distributed import Group
from .loop import Run, train
from .optim import Stepper, multipliers
from .options import METHODS, OPTIONS, Options, Scaled, parse
from .results import PROPERTIES, NetTrainResultsObject, loss_plot, values
from .sources import make_sources, read_data

AUTOMATIC_SECONDS = 20.0  # MaxTrainingRounds -> Automatic trains about this long (Wolfram's rule)
WHO = "NetTrain"


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
    "RMSProp", or (method, {setting: value}); see train.options), LearningRate,
    LearningRateMultipliers, TargetDevice, WorkingPrecision
    ("Real32", "Real64"; "Mixed" is refused with a clear error), RandomSeeding, TrainingStoppingCriterion,
    TrainingProgressMeasurements, TrainingProgressFunction, TrainingProgressReporting,
    LengthBucketing (Automatic/True: batches of similar lengths; False), TrainingProgressCheckpointing
    (("Directory", dir) or ("File", path), optionally with {"Interval": rounds, "Resume": True}; see
    train.checkpoint).

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
    group = Group(o.device)
    with group.failures():
        return _train(net, data, prop, o, group)


def _train(net: Net, data, prop, o: Options, group: Group):
    reading = read_data(net, data, o)
    group.same_plan({**reading.sizes(), **_plan(o)})  # before any other collective: all ranks stop alike
    seed = O.seed(o.seeding, WHO)  # None: Automatic (drawn, or the resumed run's)
    # the net the run starts from, initialized where the seed is known already (its arrays are
    # part of what identifies the run's checkpoints)
    start = net if net.initialized() or seed is None else NetInitialize(net, RandomSeeding=seed)
    checkpointer = resumed = None
    if o.checkpointing is not None:
        checkpointer = Checkpointer(o.checkpointing, group)
        # the run starts from rank 0's arrays: rank 0's fingerprint is the run's
        checkpointer.identify(group.share_object(fingerprint(start, reading, o, group.world) if group.rank == 0
                                                 else None))
        resumed = checkpointer.find()
    if seed is None:
        seed = resumed["seed"] if resumed is not None else group.seed(Automatic)
    g = torch.Generator().manual_seed(seed)  # shuffles and splits: the same on every rank
    problem, source, validation = make_sources(net, reading, o, group.device, g)
    factors = multipliers(net, o.multipliers)
    # an uninitialized net is initialized only to build the module: its arrays then live there
    # alone, and the nets returned are made from the module's arrays on `net`'s structure
    module = (start if start.initialized() else NetInitialize(net, RandomSeeding=seed)).build(trainable=True)
    module = module.to(group.device, o.dtype)
    group.same_arrays(module)  # every rank starts from rank 0's arrays (a net each rank initialized alike or not)
    stepper = Stepper(module, factors, o.method, o.settings, group)
    run = Run(net, problem, source, module, stepper, group, O.generator(seed + 1 + group.rank, WHO, group.device), o)
    hooks = H.make(run, o, validation, AUTOMATIC_SECONDS, checkpointer, seed)
    train(run, hooks)
    stepper.release()  # the optimizer's state, the gradients and the snapshot: not needed to make the nets

    group.same_arrays(module)
    final = net.with_arrays(module_arrays(net, module))
    trained = final
    best = H.best_arrays(hooks)
    if best is not None and run.reason != "Divergence":
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(best[name])
        trained = net.with_arrays(module_arrays(net, module))
    if group.rank != 0:
        return trained
    files = list(checkpointer.written) if checkpointer is not None else []
    examples = validation.data.size if validation is not None else 0
    results = NetTrainResultsObject(values(run, o, trained, final, examples, files))
    return results if prop is All else results[prop]


def _plan(o: Options) -> dict:
    """The options every process of a data-parallel run must share: those that set how many
    batches, rounds and collectives the run has (a TimeGoal's value may differ: rank 0's clock
    decides)."""
    ck = o.checkpointing
    return {"BatchSize": o.batch_size or "Automatic", "MaxTrainingRounds": o.max_rounds or "Automatic",
            "RoundLength": o.round_length or "Automatic", "TimeGoal": "given" if o.time_goal else "none",
            "RandomSeeding": o.seeding if O.seed(o.seeding, WHO) is not None else "Automatic",
            "Method": o.method, "WorkingPrecision": o.precision,
            "TrainingStoppingCriterion": "given" if o.stopping else "none",
            "TrainingProgressMeasurements": list(o.measurements),
            "TrainingProgressCheckpointing": [ck.kind, ck.interval, ck.resume] if ck else "none",
            "LengthBucketing": o.bucketing}


__all__ = ["NetTrain", "NetTrainResultsObject", "Scaled", "loss_plot", "METHODS", "OPTIONS", "PROPERTIES"]
