"""NetTrain's options: checking them, Wolfram's defaults, and what they turn into (the optimizer,
the learning-rate schedule, the stopping rule, the measurements, the progress function).

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
"""

from __future__ import annotations

import math
import sys

import torch

from ..core import options as O
from ..core.errors import NotSupportedError, OptionError, TrainingError
from ..core.symbols import All, Automatic
from ..nets.measure import MEASUREMENTS
from .checkpoint import parse as checkpointing

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
LOWER_IS_BETTER = {"Loss": True, "ErrorRate": True, "MeanSquare": True, "MeanDeviation": True, "Accuracy": False}


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
        if v is Automatic or v in SCHEDULES or callable(v):
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


def schedule_factor(schedule, t: int, total: int) -> float:
    """The learning-rate factor at batch t (1-based) of `total`."""
    if schedule == "Constant":
        return 1.0
    total = max(total, t)
    if schedule == "Polynomial":
        return math.sqrt(max(0.0, 1.0 - t / (total + 1)))
    if schedule == "Cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / (total + 1)))
    value = schedule(t, total)
    if not _is_number(value) or value < 0:
        raise OptionError(f"{WHO}: the LearningRateSchedule function returned {value!r} for batch {t} of {total}; "
                          "it must return a non-negative number (the factor of the learning rate).")
    return float(value)


class FlatArrays:
    """The trainable arrays of one learning-rate group as views of one buffer, and their
    gradients as views of one gradient buffer that backward accumulates into: the optimizer
    then steps one tensor per group, and the gradient reset, clipping and the divergence
    snapshot are one operation each instead of one per array (an LSTM alone has 12)."""

    def __init__(self, params: list):
        first = params[0]
        self.leaf = torch.nn.Parameter(torch.empty(sum(p.numel() for p in params), dtype=first.dtype,
                                                   device=first.device))
        self.leaf.grad = torch.zeros_like(self.leaf)
        offset = 0
        with torch.no_grad():
            for p in params:
                size = p.numel()
                view = self.leaf.data[offset:offset + size]
                view.copy_(p.reshape(-1))
                p.data = view.view_as(p)
                p.grad = self.leaf.grad[offset:offset + size].view_as(p)
                offset += size


def _storage_order(module: torch.nn.Module) -> list:
    """(name, array) pairs of the module, each layer's in its `ARRAY_ORDER` where it declares one
    (the layout its kernel reads in place from a flat buffer), else as registered."""
    order = {}
    for m in module.modules():
        layer = getattr(m, "layer", None)
        names = [n for n in getattr(layer, "ARRAY_ORDER", ()) if n in m._parameters]
        names += [n for n in m._parameters if n not in names]
        for n in names:
            order[id(m._parameters[n])] = len(order)
    pairs = list(module.named_parameters())
    return sorted(pairs, key=lambda np_: order.get(id(np_[1]), len(order)))


def optimizer(module: torch.nn.Module, factors: dict, spec: tuple, flat: bool = False):
    """The torch optimizer and, with `flat`, the `FlatArrays` of each param group (else None);
    each param group remembers its learning-rate factor ("factor")."""
    name, s = spec
    groups: dict[float, list] = {}
    for pname, p in _storage_order(module):
        f = factors.get(pname, 1.0)
        if f == 0:
            p.requires_grad_(False)  # frozen: no gradient, no update, bit-identical
        else:
            groups.setdefault(f, []).append(p)
    if not groups:
        raise TrainingError(f"{WHO}: every array is frozen (LearningRateMultipliers 0); there is nothing to train.")
    flats = {f: FlatArrays(ps) for f, ps in groups.items()} if flat else None
    lr = s["LearningRate"]
    params = [{"params": [flats[f].leaf] if flat else ps, "lr": lr * f, "factor": f} for f, ps in groups.items()]
    wd = s["L2Regularization"]
    if name == "RMSProp":
        make = lambda **kw: torch.optim.RMSprop(params, lr=lr, alpha=s["Beta"], eps=s["Epsilon"],  # noqa: E731
                                                momentum=s["Momentum"], weight_decay=wd, **kw)
    elif name == "ADAM":
        make = lambda **kw: torch.optim.Adam(params, lr=lr, betas=(s["Beta1"], s["Beta2"]),  # noqa: E731
                                             eps=s["Epsilon"], weight_decay=wd, **kw)
    else:
        make = lambda **kw: torch.optim.SGD(params, lr=lr, momentum=s["Momentum"], weight_decay=wd, **kw)  # noqa: E731
    try:  # one fused kernel for all arrays
        opt = make(fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = make()
    return opt, None if flats is None else list(flats.values())


SNAPSHOT_CHUNK = 1 << 20  # elements: the step of a large buffer keeps its snapshot chunk by chunk


def plain_fused_adam(opt: torch.optim.Optimizer) -> bool:
    """Whether `opt` is torch's fused Adam without the variants its kernel call here leaves out."""
    return type(opt) is torch.optim.Adam and all(
        g["fused"] and not (g["amsgrad"] or g["maximize"] or g["capturable"] or g["differentiable"]
                            or g.get("decoupled_weight_decay", False)) for g in opt.param_groups)


def _adam_state(opt: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    """p's Adam state, made as Adam's lazy initialization for a fused group makes it."""
    state = opt.state[p]
    if not state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state


def snapshot_in_gradients(opt: torch.optim.Optimizer, leaves: list) -> bool:
    """Whether NetTrain keeps the divergence snapshot in the gradient buffers (`snapshot_step`):
    for torch's fused Adam over flat buffers of at least two chunks (below that, a copy of the
    arrays is as small as the chunk set aside)."""
    return plain_fused_adam(opt) and sum(leaf.numel() for leaf in leaves) >= 2 * SNAPSHOT_CHUNK


def snapshot_step(opt: torch.optim.Optimizer, leaves: list):
    """The fused Adam step over flat buffers (`FlatArrays` leaves, each with its gradient buffer)
    that leaves each buffer's arrays from before the step in its gradient buffer: chunk by chunk,
    a chunk of the arrays is copied aside, stepped (its gradients are read then), and copied over
    its gradients. The divergence snapshot then costs one chunk of memory instead of a copy of
    every array. The arithmetic is the kernel's, element by element; it agrees with
    `step_function`'s step to rounding (the kernel computes the elements past a range's last whole
    vector in double, and its ranges follow the buffer it is given). The groups and state are read
    at each call (a restored checkpoint replaces them)."""
    aside = torch.empty(min(SNAPSHOT_CHUNK, max(leaf.numel() for leaf in leaves)), dtype=leaves[0].dtype,
                        device=leaves[0].device)

    def step() -> None:
        for group in opt.param_groups:
            leaf = group["params"][0]
            state = _adam_state(opt, leaf)
            p, g, m, v, t = leaf.data, leaf.grad, state["exp_avg"], state["exp_avg_sq"], state["step"]
            t.add_(1)
            beta1, beta2 = group["betas"]
            for a in range(0, p.numel(), SNAPSHOT_CHUNK):
                b = min(a + SNAPSHOT_CHUNK, p.numel())
                kept = aside[:b - a]
                kept.copy_(p[a:b])
                torch._fused_adam_([p[a:b]], [g[a:b]], [m[a:b]], [v[a:b]], [], [t], amsgrad=False, lr=group["lr"],
                                   beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=False, grad_scale=None, found_inf=None)
                g[a:b].copy_(kept)

    return step


def step_function(opt: torch.optim.Optimizer):
    """The optimizer's step. For torch's fused Adam (NetTrain's "ADAM"): its kernel called on
    the optimizer's own state, as `Adam.step` calls it, without the per-call wrapping (hooks,
    profiler records, regrouping by device and dtype) that costs ~0.1 ms a batch on the CPU, as
    much as the update itself of a small net. Any other optimizer: its own `step`."""
    if not plain_fused_adam(opt):
        return opt.step

    def step() -> None:
        for group in opt.param_groups:
            params, grads, avgs, squares, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = _adam_state(opt, p)
                params.append(p)
                grads.append(p.grad)
                avgs.append(state["exp_avg"])
                squares.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if params:
                beta1, beta2 = group["betas"]
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(params, grads, avgs, squares, [], steps, amsgrad=False, lr=group["lr"],
                                   beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=False, grad_scale=None, found_inf=None)

    return step


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where a live panel can be drawn)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


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


# ---- measurements, stopping, progress function -------------------------------------------------------
def measurements(spec) -> list:
    if spec is None:
        return []
    wanted = [spec] if isinstance(spec, str) else list(spec) if isinstance(spec, list | tuple) else None
    if wanted is None or not all(isinstance(m, str) for m in wanted):
        raise OptionError(f"{WHO}: TrainingProgressMeasurements must be a measurement name or a list of them "
                          f"({', '.join(MEASUREMENTS)}), but was given {spec!r}.")
    for m in wanted:
        if m not in MEASUREMENTS:
            raise OptionError(f"{WHO}: TrainingProgressMeasurements: {m!r} is not a measurement; the measurements are "
                              f"{', '.join(MEASUREMENTS)}.")
    return list(dict.fromkeys(wanted))


class Stopping:
    """TrainingStoppingCriterion: a criterion (the loss or a measurement) that must keep improving,
    or a function of the progress dict that returns True to stop.

    {"Criterion": c, "Patience": p, "InitialPatience": q, "Improvement": d}: after the first q
    rounds, training stops once p + 1 rounds in a row fail to improve the best value so far by
    more than d (a number; Scaled(f) for a fraction f of the best value). The value is measured
    on the ValidationSet when there is one, else on the training round."""

    KEYS = ("Criterion", "Patience", "InitialPatience", "Improvement")

    def __init__(self, spec, measured: list):
        self.function = None
        self.criterion = None
        self.patience, self.initial, self.improvement, self.relative = 0, 0, 0.0, False
        if spec is None:
            return
        if callable(spec):
            self.function = spec
            return
        if isinstance(spec, str):
            spec = {"Criterion": spec}
        if not isinstance(spec, dict):
            raise OptionError(f'{WHO}: TrainingStoppingCriterion must be None, "Loss", a measurement name, a dict '
                              f"with keys {', '.join(self.KEYS)}, or a function of the progress dict, but was given "
                              f"{spec!r}.")
        for k in spec:
            if k not in self.KEYS:
                raise OptionError(f"{WHO}: TrainingStoppingCriterion: {k!r} is not a key; the keys are "
                                  f"{', '.join(self.KEYS)}.")
        c = spec.get("Criterion", "Loss")
        if c not in LOWER_IS_BETTER:
            raise OptionError(f'{WHO}: TrainingStoppingCriterion: "Criterion" must be one of '
                              f"{', '.join(repr(k) for k in LOWER_IS_BETTER)}, but was given {c!r}.")
        self.criterion = c
        if c != "Loss" and c not in measured:
            measured.append(c)
        for key, attr in (("Patience", "patience"), ("InitialPatience", "initial")):
            v = spec.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise OptionError(f'{WHO}: TrainingStoppingCriterion: "{key}" must be a non-negative integer '
                                  f"(rounds), but was given {v!r}.")
            setattr(self, attr, v)
        d = spec.get("Improvement", 0)
        from .api import Scaled

        if isinstance(d, Scaled):
            self.improvement, self.relative = d.f, True
        elif _is_number(d) and d >= 0:
            self.improvement = float(d)
        else:
            raise OptionError(f'{WHO}: TrainingStoppingCriterion: "Improvement" must be a non-negative number or '
                              f"Scaled(f), but was given {d!r}.")
        self.best = None
        self.waited = 0

    def __bool__(self) -> bool:
        return self.function is not None or self.criterion is not None

    def check(self, rounds: int, values: dict, info: dict) -> bool:
        """After a round: True to stop. values: {criterion: value} of this round."""
        if self.function is not None:
            answer = self.function(info)
            return answer is True or answer == "StopTraining"
        if self.criterion is None:
            return False
        v = values.get(self.criterion)
        if v is None or not math.isfinite(v):
            return False
        sign = 1.0 if LOWER_IS_BETTER[self.criterion] else -1.0
        if self.best is None:
            self.best = v
            return False
        margin = self.improvement * abs(self.best) if self.relative else self.improvement
        if sign * (self.best - v) > margin:
            self.best, self.waited = v, 0
            return False
        if sign * (self.best - v) > 0:
            self.best = v
        self.waited += 1
        return rounds > self.initial and self.waited > self.patience


def progress_function(spec):
    """TrainingProgressFunction → (function, unit, every): f, or (f, {"Interval": (unit, n)})
    with unit "Rounds" (the default, every round) or "Batches"."""
    if spec is None:
        return None
    if callable(spec):
        return spec, "Rounds", 1
    if isinstance(spec, tuple | list) and len(spec) == 2 and callable(spec[0]) and isinstance(spec[1], dict):
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


# ---- all of them -----------------------------------------------------------------------------------------
def parse(options: dict) -> dict:
    O.known(options, OPTIONS, WHO, "an option of NetTrain")
    o = {**OPTIONS, **options}
    for name in ("BatchSize", "MaxTrainingRounds", "RoundLength"):
        o[name] = O.positive_int(o[name], WHO, name)
    o["TimeGoal"] = O.positive_number(o["TimeGoal"], WHO, "TimeGoal (seconds)")
    o["Method"] = method(o["Method"], o["LearningRate"])
    report = o["TrainingProgressReporting"]
    if report not in (Automatic, None, "Panel", "ProgressIndicator", "Print"):
        raise OptionError(
            f'{WHO}: TrainingProgressReporting must be Automatic, "Panel", "ProgressIndicator", "Print" or None, '
            f"but was given {report!r}."
        )
    if report in (Automatic, "Panel"):  # the live panel in a notebook, the bar in a terminal
        report = "Panel" if in_notebook() else "ProgressIndicator"
    o["TrainingProgressReporting"] = {None: None, "Print": "Print", "Panel": "panel"}.get(report, "bar")
    O.seed(o["RandomSeeding"], WHO)
    o["TrainingProgressMeasurements"] = measurements(o["TrainingProgressMeasurements"])
    o["TrainingStoppingCriterion"] = Stopping(o["TrainingStoppingCriterion"], o["TrainingProgressMeasurements"])
    o["TrainingProgressFunction"] = progress_function(o["TrainingProgressFunction"])
    o["TrainingProgressCheckpointing"] = checkpointing(o["TrainingProgressCheckpointing"])
    b = o["LengthBucketing"]
    if b not in (Automatic, True, False):
        raise OptionError(f"{WHO}: LengthBucketing must be Automatic, True or False, but was given {b!r}.")
    o["LengthBucketing"] = b is not False
    return o


def multipliers(net, spec) -> dict:
    """{parameter name: learning-rate factor}: the layers' own multipliers, overridden for every
    array that a NetTrain rule matches (the first matching rule wins).

    Rules: a number (every array); or a dict whose keys are a layer position or name, a tuple
    position ending, optionally, in an array name, or All (everything not matched before)."""
    from ..core.runtime import param_name

    keys = {pos + (a,): f for pos, leaf in net.leaves() for a, f in leaf.learning_rate_multipliers().items()}
    if spec is Automatic or spec is None:
        rules = []
    elif _is_number(spec):
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
        if not _is_number(value) or value < 0:
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
