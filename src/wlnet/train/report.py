"""What NetTrain shows and returns: the live progress bar (or per-round lines), the results
object of NetTrain(net, data, All), and the loss plot."""

from __future__ import annotations

import sys

from ..core.errors import OptionError

WHO = "NetTrain"
PROPERTIES = (
    "TrainedNet", "FinalNet", "BatchLossList", "RoundLossList", "ValidationLossList", "RoundMeasurements",
    "ValidationMeasurements", "RoundMeasurementsLists", "ValidationMeasurementsLists", "ReasonTrainingStopped",
    "BestValidationRound", "InitialLearningRate", "FinalLearningRate", "ExamplesProcessed", "MeanBatchesPerSecond",
    "MeanExamplesPerSecond", "TotalBatches", "TotalRounds", "TotalTrainingTime", "TrainingExamples",
    "ValidationExamples", "BatchSize", "OptimizationMethod", "TargetDevice", "WorkingPrecision", "CheckpointingFiles",
    "LossPlot", "FinalPlots", "Properties",
)
REASONS = ("MaxTrainingRounds", "TimeGoal", "StoppingCriterion", "ManualStop", "Divergence")


# ---- progress ------------------------------------------------------------------------------------
class Progress:
    """A live tqdm bar (rounds, loss, validation loss, examples/s), per-round lines, nothing, or
    in a notebook the panel: tqdm's notebook bar and the loss curves (training and validation)
    with the round's figures, redrawn at most every `PANEL_SECONDS`."""

    PANEL_SECONDS = 0.5

    def __init__(self, mode, rounds: int | None, seconds: float | None):
        self.mode = mode
        self.bar = None
        self.last = 0.0
        self.by_time = rounds is None
        self.panel = None  # the notebook display the curves are drawn in
        self.losses, self.vals, self.drawn, self.line = [], [], 0.0, ""
        if mode == "panel":
            from IPython.display import HTML, display

            self.panel = display(HTML("<p>NetTrain: starting</p>"), display_id=True)
            mode = "bar"
        if mode == "bar":
            from tqdm.auto import tqdm

            common = {"desc": WHO, "file": sys.stderr, "dynamic_ncols": True, "mininterval": 0.25}
            if self.by_time:
                self.bar = tqdm(total=seconds, unit="s", **common,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s "
                                           "[{elapsed}{postfix}]")
            else:
                self.bar = tqdm(total=rounds, unit="round", **common,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} rounds "
                                           "[{elapsed}<{remaining}{postfix}]")

    def due(self, now: float) -> bool:
        return self.bar is not None and now - self.last >= 0.25

    def show(self, now, elapsed, r, loss, val, rate, advance=0, extra: str = "") -> None:
        """Update the bar's text (and, for rounds, its count); tqdm redraws at most 4 times a second."""
        self.last = now
        text = f"round {r}, loss {loss:.4g}" + (f", validation {val:.4g}" if val is not None else "") + extra + \
            f", {rate:,.0f} examples/s"
        self.bar.set_postfix_str(text, refresh=False)
        if self.by_time:
            self.bar.update(min(elapsed, self.bar.total) - self.bar.n)
        else:
            self.bar.update(advance)

    def round_end(self, now, elapsed, r, loss, val, rate, measured: dict | None = None,
                  validated: dict | None = None) -> None:
        extra = measurement_text(measured, validated)
        if self.panel is not None:
            self.losses.append(loss)
            if val is not None:
                self.vals.append(val)
            self.line = f"round {r}: loss {loss:.4g}" + (f", validation loss {val:.4g}" if val is not None else "") \
                + extra + f", {rate:,.0f} examples/s, {elapsed:.1f} s"
            if now - self.drawn >= self.PANEL_SECONDS:
                self.draw(now)
        if self.mode == "Print":
            print(f"{WHO}: round {r}: loss {loss:.6g}" + (f", validation loss {val:.6g}" if val is not None else "")
                  + extra + f", {rate:,.0f} examples/s", flush=True)
        elif self.bar is not None:
            self.show(now, elapsed, r, loss, val, rate, advance=1, extra=extra)

    def draw(self, now: float) -> None:
        """The panel's loss curves and the latest round's figures."""
        from IPython.display import HTML

        from ..show.display import figure_png

        self.drawn = now
        png = figure_png(loss_plot(self.losses, self.vals))
        self.panel.update(HTML(f"<img src='data:image/png;base64,{png}' alt='loss per round'/>"
                               f"<p>{self.line}</p>"))

    def close(self, elapsed) -> None:
        if self.panel is not None and self.losses:
            self.draw(float("inf"))  # the final curves, however recent the last drawing
        if self.bar is not None:
            if self.by_time:
                self.bar.total = elapsed
                self.bar.n = elapsed
            self.bar.close()


def measurement_text(measured: dict | None, validated: dict | None) -> str:
    """", accuracy 0.95 (validation 0.9)" for each scalar measurement but the loss."""
    parts = []
    for name, v in (measured or {}).items():
        if name == "Loss" or not isinstance(v, float):
            continue
        val = (validated or {}).get(name)
        label = name[0].lower() + name[1:]
        parts.append(f", {label} {v:.4g}" + (f" (validation {val:.4g})" if val is not None else ""))
    return "".join(parts)


# ---- the results object ----------------------------------------------------------------------------
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
    "LossPlot"  a matplotlib figure of the losses (fig.savefig("loss.png"))
    "FinalPlots"  {"Loss": figure, measurement: figure, ...}

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


def loss_plot(losses: list, validation: list, ylabel: str = "loss"):
    """A matplotlib figure of the round losses (and validation losses); `fig.savefig("x.png")`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
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


__all__ = ["PROPERTIES", "REASONS", "NetTrainResultsObject", "Progress", "loss_plot", "measurement_text"]
