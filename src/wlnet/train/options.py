"""NetTrain's options: checked once, with Wolfram's defaults, into a frozen `Options`.

Method (Wolfram's defaults per method; sub-options as `Method=("SGD", {"Momentum": 0.5})`):

  "ADAM"     LearningRate 0.001, Beta1 0.9, Beta2 0.999, Epsilon 1e-5, schedule "Constant"
  "RMSProp"  LearningRate 0.001, Beta 0.95, Epsilon 1e-6, Momentum 0.9, schedule "Constant"
  "SGD"      LearningRate 0.01, Momentum 0.93, schedule "Polynomial"

and, for every method, "LearningRateSchedule", "GradientClipping" (None, or m: each gradient
element clipped to ±m), "WeightClipping" (None, or m: each array element clipped to ±m after
every update), "L2Regularization" (λ: λ·w added to each gradient).

LearningRateSchedule: the factor of the learning rate at batch t (1-based) of T in all:
  "Constant"    1
  "Polynomial"  √(1 − t/(T+1))
  "Cosine"      (1 + cos(π·t/(T+1)))/2
  f             f(t, T), a function returning a non-negative number
When T is not known in advance (MaxTrainingRounds Automatic: known after the first round;
TimeGoal: estimated from the time so far) the best estimate so far is used.

What the options turn into lives with what uses them: the optimizer in `optim`, the data in
`sources`, the stopping rule, measurements and progress in `hooks`, the checkpoints in
`checkpoint`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from ..core import options as O
from ..core.errors import NotSupportedError, OptionError, TrainingError
from ..core.symbols import Automatic
from ..nets.measure import MEASUREMENTS
from ..nets.measure import key as measurement_key
from .calls import INFO_FORM, SCHEDULE_FORM, check_arity
from .checkpoint import Checkpointing
from .optim import optimizer  # noqa: F401  (was defined here; tests/test_dropout_kernels.py imports it from here)

WHO = "NetTrain"
OPTIONS = {
    "BatchSize": Automatic,
    "MaxTrainingRounds": Automatic,
    "TimeGoal": Automatic,
    "RoundLength": Automatic,
    "ValidationSet": None,
    "LossFunction": Automatic,
    "Method": "ADAM",
    "LearningRate": Automatic,
    "LearningRateMultipliers": Automatic,
    "TargetDevice": "CPU",
    "WorkingPrecision": "Real32",
    "RandomSeeding": 1234,
    "TrainingStoppingCriterion": None,
    "TrainingProgressMeasurements": None,
    "TrainingProgressFunction": None,
    "TrainingProgressReporting": Automatic,
    "TrainingProgressCheckpointing": None,
    "LengthBucketing": Automatic,
}
COMMON = {"LearningRateSchedule": Automatic, "GradientClipping": None, "WeightClipping": None,
          "L2Regularization": 0.0}
METHODS = {  # Wolfram's defaults for each method
    "ADAM": {"LearningRate": 0.001, "Beta1": 0.9, "Beta2": 0.999, "Epsilon": 1e-5, **COMMON},
    "RMSProp": {"LearningRate": 0.001, "Beta": 0.95, "Epsilon": 1e-6, "Momentum": 0.9, **COMMON},
    "SGD": {"LearningRate": 0.01, "Momentum": 0.93, **COMMON},
}
DEFAULT_SCHEDULE = {"ADAM": "Constant", "RMSProp": "Constant", "SGD": "Polynomial"}
SCHEDULES = ("Constant", "Polynomial", "Cosine")
LOWER_IS_BETTER = {"Loss": True, "ErrorRate": True, "MeanSquare": True, "MeanDeviation": True, "Accuracy": False,
                   "CohenKappa": False, "Perplexity": True, "RSquared": False, "StandardDeviation": True}
REPORTING = {None: None, "Print": "Print", "Panel": "panel", "ProgressIndicator": "bar"}


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


@dataclass(frozen=True)
class StoppingRule:
    """TrainingStoppingCriterion: a criterion (the loss or a measurement) that must keep improving,
    or a function of the progress dict that returns True (or "StopTraining") to stop.

    {"Criterion": c, "Patience": p, "InitialPatience": q, "Improvement": d}: after the first q
    rounds, training stops once p + 1 rounds in a row fail to improve the best value so far by
    more than d (a number; Scaled(f) for a fraction f of the best value). Wolfram's keys say the
    same: "AbsoluteChange": d, "RelativeChange": f (0 < f < 1), at most one of the three.
    "TargetValue": t stops once the value reaches t (at most t for a loss, at least t for an
    accuracy), after the first q rounds; given alone, it is the only reason to stop. The value is
    measured on the ValidationSet when there is one, else on the training round."""

    function: object = None
    criterion: str | None = None
    patience: int = 0
    initial: int = 0
    improvement: float | None = 0.0  # None: no improvement is asked for (a TargetValue alone)
    relative: bool = False
    target: float | None = None


@dataclass(frozen=True)
class Options:
    """NetTrain's options, every one checked (Automatic left where it is resolved later, from the
    data or the net)."""

    batch_size: int | None  # None: Automatic
    max_rounds: int | None  # None: Automatic (about AUTOMATIC_SECONDS of training)
    time_goal: float | None
    round_length: int | None
    validation: object  # None, data, a generator function, or Scaled(f)
    loss: object  # LossFunction as given (read with the data)
    method: str
    settings: MappingProxyType  # the method's settings, Wolfram's defaults filled in
    multipliers: object  # LearningRateMultipliers as given (matched against the net's arrays in `optim`)
    device: object  # TargetDevice as given (checked where the process group is made)
    precision: str  # "Real32" | "Real64"
    dtype: torch.dtype
    seeding: object
    stopping: StoppingRule | None
    measurements: tuple  # TrainingProgressMeasurements, with the stopping criterion's measurement
    progress_function: tuple | None  # (f, "Rounds" | "Batches", every)
    reporting: str | None  # None, "Print", "bar" or "panel"
    checkpointing: Checkpointing | None
    bucketing: bool


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# ---- Method ------------------------------------------------------------------------------------
def method(spec, lr) -> tuple[str, dict]:
    """Method (and LearningRate) → (name, settings) with every sub-option checked."""
    name, sub = O.method_spec(spec, METHODS, WHO, '("ADAM", {"LearningRateSchedule": "Cosine"})')
    settings = dict(METHODS[name])
    for k, v in sub.items():
        if k not in settings:
            raise OptionError(f"{WHO}: {k!r} is not a setting of Method {name!r}; its settings are "
                              f"{', '.join(settings)}.")
        settings[k] = _setting(name, k, v)
    if settings["LearningRateSchedule"] is Automatic:
        settings["LearningRateSchedule"] = DEFAULT_SCHEDULE[name]
    if lr is not Automatic:
        settings["LearningRate"] = O.positive_number(lr, WHO, "LearningRate")
    return name, settings


def _setting(name: str, key: str, v):
    where = f'{WHO}: the "{key}" setting of Method {name!r}'
    if key == "LearningRateSchedule":
        if v is Automatic or (isinstance(v, str) and v in SCHEDULES):
            return v
        if callable(v):
            check_arity(v, 2, f'the "{key}" setting of Method {name!r}', SCHEDULE_FORM)
            return v
        raise OptionError(f"{where} must be {', '.join(repr(s) for s in SCHEDULES)}, or a function f(batch, "
                          f"total batches) giving the factor of the learning rate, but was given {v!r}.")
    if key in ("GradientClipping", "WeightClipping"):
        if v is None:
            return None
        if _is_number(v) and v > 0:
            return float(v)
        raise OptionError(f"{where} must be None or a positive number, but was given {v!r}.")
    if key == "L2Regularization":
        if _is_number(v) and v >= 0:
            return float(v)
        raise OptionError(f"{where} must be a non-negative number, but was given {v!r}.")
    if key in ("Beta", "Beta1", "Beta2", "Momentum"):
        if _is_number(v) and 0 <= v < 1:
            return float(v)
        raise OptionError(f"{where} must be a number in [0, 1), but was given {v!r}.")
    if _is_number(v) and v > 0:  # LearningRate, Epsilon
        return float(v)
    raise OptionError(f"{where} must be a positive number, but was given {v!r}.")


# ---- WorkingPrecision ------------------------------------------------------------------------------
def precision(spec) -> torch.dtype:
    """WorkingPrecision → the dtype of the arrays and the arithmetic while training."""
    if spec in ("Real32", Automatic):
        return torch.float32
    if spec == "Real64":
        return torch.float64
    if spec == "Mixed":
        raise NotSupportedError(
            f'{WHO}: WorkingPrecision "Mixed" (half-precision arithmetic with float32 arrays) is not supported yet; '
            'use "Real32" (the default) or "Real64".')
    raise OptionError(f'{WHO}: WorkingPrecision must be "Real32", "Real64" or "Mixed", but was given {spec!r}.')


# ---- measurements, stopping, progress --------------------------------------------------------------
def measurements(spec) -> list:
    if spec is None:
        return []
    wanted = [spec] if isinstance(spec, str | dict) else list(spec) if isinstance(spec, list | tuple) else None
    if wanted is None or not all(isinstance(m, str | dict) for m in wanted):
        raise OptionError(f"{WHO}: TrainingProgressMeasurements must be a measurement name (or a dict with "
                          f'"Measurement" and "ClassAveraging") or a list of them ({", ".join(MEASUREMENTS)}), but '
                          f"was given {spec!r}.")
    keys = {}
    for m in wanted:
        if isinstance(m, str) and m not in MEASUREMENTS:
            raise OptionError(f"{WHO}: TrainingProgressMeasurements: {m!r} is not a measurement; the measurements are "
                              f"{', '.join(MEASUREMENTS)}.")
        k = measurement_key(m, f"{WHO}: TrainingProgressMeasurements")
        if k in keys and getattr(keys[k], "averaging", None) != getattr(k, "averaging", None):
            raise OptionError(f"{WHO}: TrainingProgressMeasurements: two measurements use the key {str(k)!r} (one "
                              "with another ClassAveraging); measure each one once.")
        keys.setdefault(k, k)
    return list(keys)


STOPPING_KEYS = ("Criterion", "Patience", "InitialPatience", "Improvement", "AbsoluteChange", "RelativeChange",
                 "TargetValue")


def stopping(spec) -> StoppingRule | None:
    """TrainingStoppingCriterion → its rule (see `StoppingRule`), or None."""
    if spec is None:
        return None
    if callable(spec):
        check_arity(spec, 1, "TrainingStoppingCriterion", INFO_FORM)
        return StoppingRule(function=spec)
    if isinstance(spec, str):
        spec = {"Criterion": spec}
    if not isinstance(spec, dict):
        raise OptionError(f'{WHO}: TrainingStoppingCriterion must be None, "Loss", a measurement name, a dict '
                          f"with keys {', '.join(STOPPING_KEYS)}, or a function of the progress dict, but was given "
                          f"{spec!r}.")
    for k in spec:
        if k not in STOPPING_KEYS:
            raise OptionError(f"{WHO}: TrainingStoppingCriterion: {k!r} is not a key; the keys are "
                              f"{', '.join(STOPPING_KEYS)}.")
    c = spec.get("Criterion", "Loss")
    if c not in LOWER_IS_BETTER:
        raise OptionError(f'{WHO}: TrainingStoppingCriterion: "Criterion" must be one of '
                          f"{', '.join(repr(k) for k in LOWER_IS_BETTER)}, but was given {c!r}.")
    rounds = {}
    for key in ("Patience", "InitialPatience"):
        v = spec.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise OptionError(f'{WHO}: TrainingStoppingCriterion: "{key}" must be a non-negative integer '
                              f"(rounds), but was given {v!r}.")
        rounds[key] = v
    given = [k for k in ("Improvement", "AbsoluteChange", "RelativeChange") if k in spec]
    if len(given) > 1:
        raise OptionError(f"{WHO}: TrainingStoppingCriterion: give one of \"Improvement\", \"AbsoluteChange\" and "
                          f"\"RelativeChange\", but was given {', '.join(repr(k) for k in given)}.")
    key = given[0] if given else "Improvement"
    d = spec.get(key, 0)
    if key == "RelativeChange":
        if isinstance(d, bool) or not _is_number(d) or not 0 < d < 1:
            raise OptionError(f'{WHO}: TrainingStoppingCriterion: "RelativeChange" must be a fraction strictly between '
                              f"0 and 1, but was given {d!r}.")
        improvement, relative = float(d), True
    elif isinstance(d, Scaled) and key == "Improvement":
        improvement, relative = d.f, True
    elif not isinstance(d, bool) and _is_number(d) and d >= 0:
        improvement, relative = float(d), False
    else:
        raise OptionError(f'{WHO}: TrainingStoppingCriterion: "{key}" must be a non-negative number'
                          f"{' or Scaled(f)' if key == 'Improvement' else ''}, but was given {d!r}.")
    target = spec.get("TargetValue")
    if target is not None:
        if isinstance(target, bool) or not _is_number(target) or not math.isfinite(target):
            raise OptionError(f'{WHO}: TrainingStoppingCriterion: "TargetValue" must be a real number, but was given '
                              f"{target!r}.")
        target = float(target)
        if not given:
            improvement = None
    return StoppingRule(None, c, rounds["Patience"], rounds["InitialPatience"], improvement, relative, target)


STOP_ANSWERS = 'True (to stop), False (to go on) or "StopTraining"'


def stop_requested(answer, rounds: int) -> bool:
    """A TrainingStoppingCriterion function's answer after round `rounds`: any boolean scalar
    (Python's, numpy's, a 0-d boolean array or tensor) or "StopTraining"; anything else is refused."""
    if isinstance(answer, str):
        if answer == "StopTraining":
            return True
    elif isinstance(answer, bool | np.bool_):
        return bool(answer)
    elif isinstance(answer, torch.Tensor) and answer.ndim == 0 and answer.dtype == torch.bool:
        return bool(answer.item())
    elif isinstance(answer, np.ndarray) and answer.ndim == 0 and answer.dtype == np.bool_:
        return bool(answer.item())
    shown = repr(answer)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise TrainingError(f"{WHO}: the TrainingStoppingCriterion function must return {STOP_ANSWERS}, but after round "
                        f"{rounds} it returned {shown} (of type {type(answer).__name__}).")


def progress_function(spec):
    """TrainingProgressFunction → (function, unit, every): f, or (f, {"Interval": (unit, n)})
    with unit "Rounds" (the default, every round) or "Batches"."""
    if spec is None:
        return None
    if callable(spec):
        check_arity(spec, 1, "TrainingProgressFunction", INFO_FORM)
        return spec, "Rounds", 1
    if isinstance(spec, tuple | list) and len(spec) == 2 and callable(spec[0]) and isinstance(spec[1], dict):
        check_arity(spec[0], 1, "TrainingProgressFunction", INFO_FORM)
        extra = [k for k in spec[1] if k != "Interval"]
        if extra:
            raise OptionError(f'{WHO}: TrainingProgressFunction: {extra[0]!r} is not a setting; the setting is '
                              '"Interval".')
        iv = spec[1].get("Interval", ("Rounds", 1))
        if isinstance(iv, tuple | list) and len(iv) == 2 and iv[0] in ("Rounds", "Batches") \
                and isinstance(iv[1], int) and not isinstance(iv[1], bool) and iv[1] >= 1:
            return spec[0], iv[0], iv[1]
        raise OptionError(f'{WHO}: TrainingProgressFunction: "Interval" must be ("Rounds", n) or ("Batches", n) '
                          f"with n a positive integer, but was given {iv!r}.")
    raise OptionError(f'{WHO}: TrainingProgressFunction must be a function of the progress dict, or (f, {{"Interval": '
                      f'("Batches", n)}}), but was given {spec!r}.')


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where a live panel can be drawn)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def reporting(spec) -> str | None:
    """TrainingProgressReporting → None, "Print", "bar" (tqdm's bar) or "panel" (a notebook's)."""
    if spec not in (Automatic, *REPORTING):
        raise OptionError(
            f'{WHO}: TrainingProgressReporting must be Automatic, "Panel", "ProgressIndicator", "Print" or None, '
            f"but was given {spec!r}."
        )
    if spec in (Automatic, "Panel"):  # the live panel in a notebook, the bar in a terminal
        spec = "Panel" if in_notebook() else "ProgressIndicator"
    return REPORTING[spec]


# ---- all of them -----------------------------------------------------------------------------------------
def parse(options: dict) -> Options:
    O.known(options, OPTIONS, WHO, "an option of NetTrain")
    o = {**OPTIONS, **options}
    ints = {name: O.positive_int(o[name], WHO, name) for name in ("BatchSize", "MaxTrainingRounds", "RoundLength")}
    goal = O.positive_number(o["TimeGoal"], WHO, "TimeGoal (seconds)")
    name, settings = method(o["Method"], o["LearningRate"])
    report = reporting(o["TrainingProgressReporting"])
    O.seed(o["RandomSeeding"], WHO)
    measured = measurements(o["TrainingProgressMeasurements"])
    rule = stopping(o["TrainingStoppingCriterion"])
    if rule is not None and rule.criterion not in (None, "Loss") and rule.criterion not in measured:
        measured.append(rule.criterion)  # measured every round so that the rule can read it
    progress = progress_function(o["TrainingProgressFunction"])
    spec = o["TrainingProgressCheckpointing"]
    checkpointing = None if spec is None else Checkpointing(spec)
    b = o["LengthBucketing"]
    if b not in (Automatic, True, False):
        raise OptionError(f"{WHO}: LengthBucketing must be Automatic, True or False, but was given {b!r}.")
    dtype = precision(o["WorkingPrecision"])
    return Options(
        batch_size=ints["BatchSize"], max_rounds=ints["MaxTrainingRounds"], time_goal=goal,
        round_length=ints["RoundLength"], validation=o["ValidationSet"], loss=o["LossFunction"], method=name,
        settings=MappingProxyType(settings), multipliers=o["LearningRateMultipliers"], device=o["TargetDevice"],
        precision="Real64" if dtype == torch.float64 else "Real32", dtype=dtype, seeding=o["RandomSeeding"],
        stopping=rule, measurements=tuple(measured), progress_function=progress, reporting=report,
        checkpointing=checkpointing, bucketing=b is not False)


__all__ = ["METHODS", "OPTIONS", "Options", "Scaled", "StoppingRule", "parse"]
