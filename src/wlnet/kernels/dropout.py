"""Dropout for the LSTM in training: drawing the masks and running the recurrence with them.

Symbols: B batch, T length, k input size, n output size. A spec is a dict method → p (SPEC §2,
Dropout table); every mask is Bernoulli(1 − p) scaled by 1/(1 − p), so its mean is 1.

| method             | mask                                  | shared by          | redrawn          |
|--------------------|---------------------------------------|--------------------|------------------|
| VariationalWeights | each of the 8 weight matrices (n×k, n×n), not the biases | batch and time | each call |
| VariationalInput   | x_t as gate g sees it, (B, 4, k)      | time               | each call        |
| VariationalState   | s_{t-1} as gate g sees it, (B, 4, n)  | time               | each call        |
| StateUpdate        | m_t before it enters c_t, (B, T, n)   | nothing            | every step       |

The 4-axis of the x and s masks is in Wolfram order (Input, Output, Forget, Memory), the order
of `lstm.GATES`.

Which kernel runs (`lstm_masked`):
- VariationalWeights only: torch's fused kernel on the masked arrays;
- VariationalInput (± VariationalWeights): torch's fused kernel too, on a widened input
  x' = [x ∘ z_i | x ∘ z_f | x ∘ z_m | x ∘ z_o] (B, T, 4k) with block-diagonal input weights
  (4n, 4k), which gives exactly W_gx (x ∘ z_g). It costs a 4× larger input product, yet on CPU
  it is faster than a Python time loop (~1.5× the plain fused time against ~2.2×);
- VariationalState or StateUpdate (with anything else): the custom recurrence `lstm_custom`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from . import lstm, lstm_custom, native

METHODS = ("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate")
WEIGHT_NAMES = tuple(name for name in lstm.ARRAY_NAMES if not name.endswith("Biases"))


class Masks(NamedTuple):
    """Fixed dropout masks for one evaluation (None where the method is off).

    weights: array name → mask of that matrix's shape (the 8 weight matrices), or None;
    x (B, 4, k), s (B, 4, n): per-gate masks, gates in `lstm.GATES` order; m (B, T, n)."""

    weights: dict | None = None
    x: torch.Tensor | None = None
    s: torch.Tensor | None = None
    m: torch.Tensor | None = None


def active(spec: dict | None) -> dict:
    """The methods of `spec` that drop something (p > 0), checked."""
    out = {}
    for method, p in (spec or {}).items():
        if method not in METHODS:
            raise ValueError(f"unknown dropout method {method!r}; expected one of {', '.join(METHODS)}")
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability for {method} must be in [0, 1); got {p}")
        if p > 0:
            out[method] = p
    return out


def _bernoulli(shape, p: float, generator, device, dtype) -> torch.Tensor:
    """Bernoulli(1 − p) / (1 − p), drawn with `generator` (on the generator's device).

    Each draw compares a uniform 16-bit integer with round(p · 2^16), so the drop probability
    is p to within 2^-17; four draws come from one 64-bit random word. On CPU this is ~14×
    faster than `bernoulli_` and ~3× faster than `rand` (torch's CPU generator is the cost)."""
    where = generator.device if generator is not None else torch.device(device)
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=where)
    words.random_(-(2**63), None, generator=generator)
    u = words.view(torch.int16)[:numel]  # uniform on −2^15 … 2^15 − 1
    threshold = min(round(p * 65536), 65535) - 32768  # within int16, so that it compares as is
    z = torch.ge(u, threshold, out=torch.empty(numel, dtype=dtype, device=where))
    return z.mul_(1.0 / (1.0 - p)).view(shape).to(device)


@functools.lru_cache(maxsize=256)
def _plan(spec: tuple, B: int, T: int, n: int, k: int) -> tuple:
    """The masks `draw_masks` draws for the (method, p) pairs `spec`: ((field, name, shape, p), ...)."""
    spec = active(dict(spec))
    shapes = lstm.array_shapes(n, k)
    parts = []
    if "VariationalWeights" in spec:
        parts += [("weights", name, shapes[name], spec["VariationalWeights"]) for name in WEIGHT_NAMES]
    if "VariationalInput" in spec:
        parts.append(("x", None, (B, 4, k), spec["VariationalInput"]))
    if "VariationalState" in spec:
        parts.append(("s", None, (B, 4, n), spec["VariationalState"]))
    if "StateUpdate" in spec:
        parts.append(("m", None, (B, T, n), spec["StateUpdate"]))
    return tuple(parts)


def draw_masks(spec: dict[str, float], B: int, T: int, n: int, k: int,
               generator: torch.Generator | None, device, dtype) -> Masks:
    """Draw the masks of every active method of `spec` for a batch of B sequences of length T.

    Masks come in a fixed order (weights in `lstm.ARRAY_NAMES` order, then x, s, m), all from
    `generator` (None: torch's global RNG), so a seeded generator reproduces them. Where the
    draws happen on the CPU and `kernels.native` is built, one 64-bit seed is taken from the
    generator and the native kernel fills all masks from it (a counter-based hash, ~10× faster
    than the generator itself); otherwise each mask is drawn from the generator directly. The
    two give different (equally distributed) masks for the same seed."""
    parts = _plan(tuple(spec.items()) if spec else (), B, T, n, k)
    if not parts:
        return Masks()
    device = torch.device(device)
    where = generator.device if generator is not None else device
    lib = native.usable_for(where, dtype)
    if lib is not None:
        seed = int(torch.empty((), dtype=torch.int64).random_(-(2**63), None, generator=generator))
        drawn = lib.bernoulli([shape for _, _, shape, _ in parts], [p for *_, p in parts], seed, dtype)
        if device.type != "cpu":
            drawn = [mask.to(device) for mask in drawn]
    else:
        drawn = [_bernoulli(shape, p, generator, device, dtype) for _, _, shape, p in parts]
    weights = {name: mask for (field, name, _, _), mask in zip(parts, drawn) if field == "weights"} or None
    rest = {field: mask for (field, _, _, _), mask in zip(parts, drawn) if field != "weights"}
    return Masks(weights, **rest)


def lstm_masked(x, lengths, arrays: dict, s0, c0, masks: Masks):
    """The recurrence with fixed masks. x (B, T, k); lengths (B,) int64 CPU or None;
    s0, c0 (B, n) or None → out (B, T, n), s_T (B, n), c_T (B, n); contract of `lstm.fused`."""
    if native.usable(x) is not None and any(m is not None for m in (masks.x, masks.s, masks.m)):
        return lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m, masks.weights)
    if masks.weights:
        arrays = {name: a * masks.weights[name] if name in masks.weights else a
                  for name, a in arrays.items()}
    if masks.s is not None or masks.m is not None:
        return lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m)
    weights = lstm.pack(arrays)
    if masks.x is not None:
        B, T, k = x.shape
        order = [lstm.GATES.index(g) for g in lstm.FUSED_GATE_ORDER]
        x = (x.unsqueeze(2) * masks.x[:, order].unsqueeze(1)).reshape(B, T, 4 * k)  # (B, T, 4k)
        weights[0] = torch.block_diag(*(arrays[f"{g}GateInputWeights"] for g in lstm.FUSED_GATE_ORDER))
    return lstm.fused(x, lengths, weights, s0, c0)


def lstm_dropout(x, lengths, arrays: dict, s0, c0, spec: dict[str, float], generator):
    """The recurrence in training with dropout `spec` (method → p), masks drawn afresh from
    `generator`. Shapes and contract as `lstm_masked`; gradients flow to x, s0, c0 and the
    12 arrays."""
    B, T, k = x.shape
    n = arrays["InputGateBiases"].shape[0]
    masks = draw_masks(spec, B, T, n, k, generator, x.device, x.dtype)
    return lstm_masked(x, lengths, arrays, s0, c0, masks)
