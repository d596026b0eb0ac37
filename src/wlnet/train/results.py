"""What NetTrain returns: the results object of NetTrain(net, data, All), its values gathered
from a finished run, and the loss plot."""

from __future__ import annotations

from ..core.errors import OptionError

WHO = "NetTrain"
PROPERTIES = (
    "TrainedNet", "FinalNet", "BatchLossList", "RoundLossList", "ValidationLossList", "RoundMeasurements",
    "ValidationMeasurements", "RoundMeasurementsLists", "ValidationMeasurementsLists", "ReasonTrainingStopped",
    "BestValidationRound", "InitialLearningRate", "FinalLearningRate", "ExamplesProcessed", "MeanBatchesPerSecond",
    "MeanExamplesPerSecond", "TotalBatches", "TotalRounds", "TotalTrainingTime", "TrainingExamples",
    "ValidationExamples", "BatchSize", "OptimizationMethod", "TargetDevice", "WorkingPrecision", "CheckpointingFiles",
    "LossPlot", "FinalPlots", "Properties", "FinalRoundLoss", "FinalValidationLoss", "RoundLoss", "ValidationLoss",
    "LossEvolutionPlot", "BatchesPerRound", "RoundPositions", "ValidationPositions", "BatchMeasurementsLists",
    "WeightsLearningRateMultipliers",
)
REASONS = ("MaxTrainingRounds", "TimeGoal", "StoppingCriterion", "ManualStop", "Divergence")


class NetTrainResultsObject:
    """What NetTrain(net, data, All) returns, indexed by property name (or a list of names, giving
    a list):

    "TrainedNet"  the net with the lowest validation loss (with a ValidationSet), else the final one
    "FinalNet"  the net after the last step (after a divergence: the last net with finite arrays)
    "BatchLossList"  the loss of each batch           "RoundLossList"  mean training loss of each round
    "ValidationLossList"  validation loss after each round ([] without a ValidationSet)
    "RoundMeasurements", "ValidationMeasurements"  {measurement: value} of the last round ("Loss" and
    each of TrainingProgressMeasurements; on the round's training batches, on the ValidationSet)
    "RoundMeasurementsLists", "ValidationMeasurementsLists"  {measurement: [value per round]}
    "ReasonTrainingStopped"  "MaxTrainingRounds", "TimeGoal", "StoppingCriterion", "ManualStop" or
    "Divergence"                                      "BestValidationRound"  1-based, or None
    "InitialLearningRate", "FinalLearningRate"  the learning rate at the first and last batch
    "ExamplesProcessed", "TotalBatches", "TotalRounds", "MeanBatchesPerSecond", "MeanExamplesPerSecond"
    (validation passes excluded), "TotalTrainingTime" (seconds in the training loop)
    "TrainingExamples", "ValidationExamples"  examples per round, validation examples (0 without)
    "BatchSize", "OptimizationMethod" ((name, settings)), "TargetDevice", "WorkingPrecision"
    "CheckpointingFiles"  the files TrainingProgressCheckpointing wrote (each checkpoint's .wlnet net
    and its .training state), in the order first written
    "LossPlot"  a figure of the round losses (a matplotlib Figure a notebook shows; fig.savefig("loss.png"))
    "LossEvolutionPlot"  a figure of every batch's loss, the round losses and the validation losses
    against the batch
    "FinalPlots"  {"Loss": figure, measurement: figure, ...}
    "FinalRoundLoss" = "RoundLoss"  the last round's mean training loss
    "FinalValidationLoss" = "ValidationLoss"  the last validation loss (None without a ValidationSet)
    "BatchesPerRound"  batches in a round           "RoundPositions"  the batch (1-based, counted from
    the start) at which each round ended          "ValidationPositions"  the batch after which each
    validation ran ([] without a ValidationSet)
    "BatchMeasurementsLists"  {"Loss": [the loss of each batch]}: the measurement made batch by batch
    "WeightsLearningRateMultipliers"  {(position, ..., array name): the factor its learning rate had}

    >>> res = NetTrain(NetInitialize(LinearLayer(1, Input=1)), [([1.0], [2.0]), ([2.0], [4.0])], All,
    ...                MaxTrainingRounds=3, TrainingProgressReporting=None)
    >>> res["TotalRounds"], res["ReasonTrainingStopped"]
    (3, 'MaxTrainingRounds')
    """

    def __init__(self, values: dict):
        self._values = values

    @property
    def properties(self) -> list:
        return list(PROPERTIES)

    def __getitem__(self, prop):
        if isinstance(prop, list | tuple):
            return [self[p] for p in prop]
        if prop == "Properties":
            return self.properties
        if prop == "LossPlot":
            return loss_plot(self._values["RoundLossList"], self._values["ValidationLossList"])
        if prop == "LossEvolutionPlot":
            v = self._values
            return loss_evolution_plot(v["BatchLossList"], v["RoundLossList"], v["RoundPositions"],
                                       v["ValidationLossList"], v["ValidationPositions"])
        if prop == "FinalPlots":
            rounds, val = self._values["RoundMeasurementsLists"], self._values["ValidationMeasurementsLists"]
            return {m: loss_plot(v, val.get(m, []), ylabel="loss" if m == "Loss" else m)
                    for m, v in rounds.items() if all(isinstance(x, float) for x in v)}
        if prop not in self._values:
            raise OptionError(f"NetTrainResultsObject: {prop!r} is not a property; the properties are "
                              f"{', '.join(PROPERTIES)}.")
        return self._values[prop]

    def __repr__(self) -> str:
        v = self._values
        loss = v["RoundLossList"][-1] if v["RoundLossList"] else float("nan")
        return (f"NetTrainResultsObject(rounds={v['TotalRounds']}, batch size={v['BatchSize']}, final round loss="
                f"{loss:.4g}, time={v['TotalTrainingTime']:.3g} s, {v['MeanExamplesPerSecond']:,.0f} examples/s, "
                f"stopped: {v['ReasonTrainingStopped']})")


    def _repr_html_(self) -> str:
        """In a notebook: the loss plot inline, the final losses, rounds, time, speed, why it stopped."""
        from ..show.display import results_html

        return results_html(self)


def latest(lists: dict) -> dict:
    """{measurement: [value per round]} → {measurement: the last value}, those measured so far."""
    return {m: v[-1] for m, v in lists.items() if v}


def values(run, o, trained, final, validation_examples: int, files: list) -> dict:
    """Every property but the plots of a finished run (`loop.Run`) with options `o`."""
    val = run.val_losses
    stepper = run.stepper
    base = o.settings["LearningRate"]
    train_time = run.elapsed - run.val_time
    rounds = len(run.losses)
    # a round has `steps` batches; the last may have stopped early (a time goal, a stop)
    ends = [min((r + 1) * run.steps, run.batches) for r in range(rounds)]
    return {
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
        "InitialLearningRate": stepper.lr_first if stepper.lr_first is not None else base,
        "FinalLearningRate": stepper.lr_last if stepper.lr_last is not None else base,
        "ExamplesProcessed": run.examples,
        "MeanBatchesPerSecond": run.batches / max(train_time, 1e-9),
        "MeanExamplesPerSecond": run.examples / max(train_time, 1e-9),
        "TotalBatches": run.batches,
        "TotalRounds": len(run.losses),
        "TotalTrainingTime": run.elapsed,
        "TrainingExamples": run.source.round_length,
        "ValidationExamples": validation_examples,
        "BatchSize": run.source.batch,
        "OptimizationMethod": (o.method, dict(o.settings)),
        "TargetDevice": "GPU" if run.group.device.type == "cuda" else "CPU",
        "WorkingPrecision": o.precision,
        "CheckpointingFiles": files,
        "FinalRoundLoss": run.losses[-1] if run.losses else None,
        "RoundLoss": run.losses[-1] if run.losses else None,
        "FinalValidationLoss": val[-1] if val else None,
        "ValidationLoss": val[-1] if val else None,
        "BatchesPerRound": run.steps,
        "RoundPositions": ends,
        "ValidationPositions": ends[:len(val)],  # the ValidationSet is measured after every round
        "BatchMeasurementsLists": {"Loss": run.batch_losses},
        "WeightsLearningRateMultipliers": weight_multipliers(run.net, o.multipliers),
    }


def weight_multipliers(net, spec) -> dict:
    """{(position, ..., array name): learning-rate factor} of every array, as NetTrain applied them."""
    from ..core.runtime import param_name
    from .optim import multipliers

    factors = multipliers(net, spec)
    return {pos + (a,): factors[param_name(pos, a)] for pos, leaf in net.leaves() for a in leaf._arrays}


def loss_plot(losses: list, validation: list, ylabel: str = "loss"):
    """A figure of the round losses (and validation losses): a matplotlib Figure that a notebook
    shows as an image; `fig.savefig("x.png")`."""
    from ..show.graphics import figure

    fig = figure(figsize=(6, 3.6), dpi=100)
    ax = fig.add_subplot()
    rounds = range(1, len(losses) + 1)
    ax.plot(rounds, losses, label="training", color="tab:orange")
    if validation:
        ax.plot(range(1, len(validation) + 1), validation, label="validation", color="tab:blue")
    if ylabel == "loss" and all(x > 0 for x in list(losses) + list(validation)):
        ax.set_yscale("log")
    ax.set_xlabel("training rounds")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def loss_evolution_plot(batch_losses: list, round_losses: list, round_ends: list, validation: list,
                        validation_ends: list):
    """A figure of every batch's loss, with the round losses and validation losses at the batch
    where each round ended, against the batch."""
    from ..show.graphics import figure

    fig = figure(figsize=(6, 3.6), dpi=100)
    ax = fig.add_subplot()
    ax.plot(range(1, len(batch_losses) + 1), batch_losses, label="batch", color="tab:orange", alpha=0.35,
            linewidth=0.8)
    ax.plot(round_ends, round_losses, label="round", color="tab:orange", marker=".")
    if validation:
        ax.plot(validation_ends, validation, label="validation", color="tab:blue", marker=".")
    if all(x > 0 for x in list(batch_losses) + list(round_losses) + list(validation)):
        ax.set_yscale("log")
    ax.set_xlabel("batches")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = ["PROPERTIES", "REASONS", "NetTrainResultsObject", "latest", "loss_evolution_plot", "loss_plot", "values",
           "weight_multipliers"]
