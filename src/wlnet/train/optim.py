"""NetTrain's optimizer: the arrays of each learning-rate group as views of one flat buffer, the
torch optimizer over those buffers, the step of every batch (learning-rate schedule, clipping,
averaging over the ranks, a direct call of the fused Adam kernel) and the divergence snapshot
(the arrays before the last step)."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.errors import OptionError, TrainingError
from ..core.symbols import All, Automatic
from .calls import SCHEDULE_FORM, call

WHO = "NetTrain"
SNAPSHOT_CHUNK = 1 << 20  # elements: the step of a large buffer keeps its snapshot chunk by chunk


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _real_scalar(v):
    """A real scalar of numpy or torch (0-d) as the Python number it holds; anything else as it is."""
    if isinstance(v, np.integer | np.floating) or isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf":
        return v.item()
    if isinstance(v, torch.Tensor) and v.ndim == 0 and v.dtype != torch.bool and not v.dtype.is_complex:
        return v.item()
    return v


def schedule_factor(schedule, t: int, total: int) -> float:
    """The learning-rate factor at batch t (1-based) of `total`."""
    if schedule == "Constant":
        return 1.0
    total = max(total, t)
    if schedule == "Polynomial":
        return math.sqrt(max(0.0, 1.0 - t / (total + 1)))
    if schedule == "Cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / (total + 1)))
    value = call(schedule, (t, total), "the LearningRateSchedule function", SCHEDULE_FORM)
    value = _real_scalar(value)
    if not _is_number(value) or value < 0:
        raise OptionError(f"{WHO}: the LearningRateSchedule function returned {value!r} for batch {t} of {total}; "
                          "it must return a non-negative number (the factor of the learning rate).")
    return float(value)


# ---- LearningRateMultipliers -----------------------------------------------------------------------
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


# ---- flat buffers and the torch optimizer ------------------------------------------------------------
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


# ---- the direct steps ---------------------------------------------------------------------------------
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


# ---- the step of a batch ---------------------------------------------------------------------------------
class Stepper:
    """The optimizer of one NetTrain run over the flat buffers of the module's arrays: `step`
    after each batch's loss, `restore_snapshot` after a divergence. Its state (the arrays, the
    optimizer's state, the learning rates met) is `state_dict()`."""

    name = "optimizer"

    def __init__(self, module: torch.nn.Module, factors: dict, method: str, settings, group):
        self.module, self.group = module, group
        self.optimizer, flats = optimizer(module, factors, (method, settings), flat=True)
        self.schedule = settings["LearningRateSchedule"]
        self.base = settings["LearningRate"]
        self.grad_clip, self.weight_clip = settings["GradientClipping"], settings["WeightClipping"]
        # the tensors the step, clipping, averaging and snapshot work on: the flat buffers
        self.params = [f.leaf for f in flats]
        self.grads = [f.leaf.grad for f in flats]
        self.live = [p.detach() for p in self.params]
        # the divergence snapshot (the arrays before the last step): in the gradient buffers of a
        # large net trained with ADAM (`snapshot_step`), else a copy of the arrays
        self.snapshot_in_grads = snapshot_in_gradients(self.optimizer, self.params)
        if self.snapshot_in_grads:
            self._step = snapshot_step(self.optimizer, self.params)
            self.snapshot = self.grads
        else:
            self._step = step_function(self.optimizer)
            self.snapshot = [p.detach().clone() for p in self.params]
        self.lr_first = self.lr_last = None

    def begin(self) -> None:
        """The snapshot of the arrays training starts (or resumes) from."""
        torch._foreach_copy_(self.snapshot, self.live)

    def step(self, loss: torch.Tensor, weight: float, t: int, total_batches) -> None:
        """Batch t's (1-based) step on its finite loss, weighted by this rank's share of the global
        batch; `total_batches()` is the schedule's estimate of the batches in all."""
        scaled = loss * weight if weight != 1.0 else loss
        if self.snapshot_in_grads:  # the snapshot there is not needed now: this loss is finite
            torch._foreach_zero_(self.grads)
        scaled.backward()
        self.group.average(self.grads)
        if not self.snapshot_in_grads:
            torch._foreach_copy_(self.snapshot, self.live)  # the arrays whose loss was finite
        factor = 1.0 if self.schedule == "Constant" else schedule_factor(self.schedule, t, total_batches())
        for group in self.optimizer.param_groups:
            group["lr"] = self.base * group["factor"] * factor
        self.lr_last = self.base * factor
        if self.lr_first is None:
            self.lr_first = self.lr_last
        if self.grad_clip is not None:
            for p in self.params:
                if p.grad is not None:
                    p.grad.clamp_(-self.grad_clip, self.grad_clip)
        self._step()
        if not self.snapshot_in_grads:  # (else they hold the snapshot until the next loss is known)
            torch._foreach_zero_(self.grads)  # the arrays' gradients are views of these: zero them, keep them
        if self.weight_clip is not None:
            with torch.no_grad():
                for p in self.params:
                    p.clamp_(-self.weight_clip, self.weight_clip)

    def restore_snapshot(self) -> None:
        torch._foreach_copy_(self.live, self.snapshot)

    def release(self) -> None:
        """Free what only training needs (the optimizer's state, the gradients, the divergence
        snapshot), so that the nets made from the arrays afterwards do not add to the peak."""
        self.optimizer.state.clear()
        for p in [*self.params, *self.module.parameters()]:
            p.grad = None
        self.grads = None
        self.snapshot = self.live = []

    def state_dict(self) -> dict:
        return {"arrays": dict(self.module.named_parameters()), "optimizer": self.optimizer.state_dict(),
                "learning_rates": [self.lr_first, self.lr_last]}

    def load_state_dict(self, state: dict) -> None:
        arrays = state["arrays"]
        with torch.no_grad():
            for name, p in self.module.named_parameters():
                p.copy_(arrays[name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_first, self.lr_last = state["learning_rates"]
