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
of `lstm.GATES`. VariationalWeights alone runs torch's fused kernel on the masked arrays; any
of the other three runs `lstm_custom`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import lstm, lstm_custom

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
    """Bernoulli(1 − p) / (1 − p), drawn with `generator` (on the generator's device)."""
    where = generator.device if generator is not None else device
    z = torch.empty(shape, dtype=dtype, device=where).bernoulli_(1.0 - p, generator=generator)
    return z.div_(1.0 - p).to(device)


def draw_masks(spec: dict[str, float], B: int, T: int, n: int, k: int,
               generator: torch.Generator | None, device, dtype) -> Masks:
    """Draw the masks of every active method of `spec` for a batch of B sequences of length T.

    Draws happen in a fixed order (weights in `lstm.ARRAY_NAMES` order, then x, s, m), all from
    `generator` (None: torch's global RNG), so a seeded generator reproduces them."""
    spec = active(spec)
    shapes = lstm.array_shapes(n, k)
    weights = x = s = m = None
    if "VariationalWeights" in spec:
        p = spec["VariationalWeights"]
        weights = {name: _bernoulli(shapes[name], p, generator, device, dtype) for name in WEIGHT_NAMES}
    if "VariationalInput" in spec:
        x = _bernoulli((B, 4, k), spec["VariationalInput"], generator, device, dtype)
    if "VariationalState" in spec:
        s = _bernoulli((B, 4, n), spec["VariationalState"], generator, device, dtype)
    if "StateUpdate" in spec:
        m = _bernoulli((B, T, n), spec["StateUpdate"], generator, device, dtype)
    return Masks(weights, x, s, m)


def lstm_masked(x, lengths, arrays: dict, s0, c0, masks: Masks):
    """The recurrence with fixed masks. x (B, T, k); lengths (B,) int64 CPU or None;
    s0, c0 (B, n) or None → out (B, T, n), s_T (B, n), c_T (B, n); contract of `lstm.fused`."""
    if masks.weights:
        arrays = {name: a * masks.weights[name] if name in masks.weights else a
                  for name, a in arrays.items()}
    if masks.x is None and masks.s is None and masks.m is None:
        return lstm.fused(x, lengths, lstm.pack(arrays), s0, c0)
    return lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m)


def lstm_dropout(x, lengths, arrays: dict, s0, c0, spec: dict[str, float], generator):
    """The recurrence in training with dropout `spec` (method → p), masks drawn afresh from
    `generator`. Shapes and contract as `lstm_masked`; gradients flow to x, s0, c0 and the
    12 arrays."""
    B, T, k = x.shape
    n = arrays["InputGateBiases"].shape[0]
    masks = draw_masks(spec, B, T, n, k, generator, x.device, x.dtype)
    return lstm_masked(x, lengths, arrays, s0, c0, masks)
