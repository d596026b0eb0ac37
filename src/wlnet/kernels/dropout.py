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
- VariationalWeights only: torch's fused kernel on the masked weights (the masks are drawn in
  its packed layout, `PackedWeightMasks`, so masking is two products);
- anything else, on CPU where `kernels.native` is built: the custom recurrence `lstm_custom`
  in C++ (the weight masks applied there);
- otherwise (CUDA, no compiler): VariationalInput (± VariationalWeights) runs the fused kernel
  on a widened input x' = [x ∘ z_i | x ∘ z_f | x ∘ z_m | x ∘ z_o] (B, T, 4k) with block-diagonal
  input weights (4n, 4k), which gives exactly W_gx (x ∘ z_g); VariationalState or StateUpdate
  the custom recurrence in pure torch.

Masks are drawn from the evaluation's generator: natively from one 64-bit seed where the draws
happen on the CPU and the native kernel is built, else with the generator itself (`_bernoulli`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import NamedTuple

import torch

from . import lstm, lstm_custom, native

METHODS = ("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate")
WEIGHT_NAMES = tuple(name for name in lstm.ARRAY_NAMES if not name.endswith("Biases"))


class Masks(NamedTuple):
    """Fixed dropout masks for one evaluation (None where the method is off).

    weights: array name → mask of that matrix's shape (the 8 weight matrices; `draw_masks` gives
    a `PackedWeightMasks`), or None;
    x (B, 4, k), s (B, 4, n): per-gate masks, gates in `lstm.GATES` order; m (B, T, n)."""

    weights: dict | None = None
    x: torch.Tensor | None = None
    s: torch.Tensor | None = None
    m: torch.Tensor | None = None


class PackedWeightMasks(Mapping):
    """The VariationalWeights masks as drawn: one (4n, k) and one (4n, n) block in torch's fused
    layout (`lstm.pack`: gates in `lstm.FUSED_GATE_ORDER`), read as array name → mask of that
    matrix (a view), so that the fused path masks the packed weights in two products."""

    def __init__(self, ih: torch.Tensor, hh: torch.Tensor):
        self.ih, self.hh = ih, hh

    def __getitem__(self, name: str) -> torch.Tensor:
        gate, _, part = name.partition("Gate")
        if part not in ("InputWeights", "StateWeights") or gate not in lstm.FUSED_GATE_ORDER:
            raise KeyError(name)
        n = self.hh.shape[1]
        j = lstm.FUSED_GATE_ORDER.index(gate)
        return (self.ih if part == "InputWeights" else self.hh)[j * n:(j + 1) * n]

    def __iter__(self):
        return iter(WEIGHT_NAMES)

    def __len__(self) -> int:
        return len(WEIGHT_NAMES)


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
    """The masks `draw_masks` draws for the (method, p) pairs `spec`: ((field, name, shape, p), ...),
    their shapes and their probabilities."""
    spec = active(dict(spec))
    parts = []
    if "VariationalWeights" in spec:  # in torch's fused layout: W_ih (4n, k), W_hh (4n, n)
        parts += [("weights", "ih", (4 * n, k), spec["VariationalWeights"]),
                  ("weights", "hh", (4 * n, n), spec["VariationalWeights"])]
    if "VariationalInput" in spec:
        parts.append(("x", None, (B, 4, k), spec["VariationalInput"]))
    if "VariationalState" in spec:
        parts.append(("s", None, (B, 4, n), spec["VariationalState"]))
    if "StateUpdate" in spec:
        parts.append(("m", None, (B, T, n), spec["StateUpdate"]))
    return tuple(parts), [shape for _, _, shape, _ in parts], [p for *_, p in parts]


def draw_masks(spec: dict[str, float], B: int, T: int, n: int, k: int,
               generator: torch.Generator | None, device, dtype) -> Masks:
    """Draw the masks of every active method of `spec` for a batch of B sequences of length T.

    Masks come in a fixed order (the weight masks as two blocks in torch's fused layout, then
    x, s, m), all from `generator` (None: torch's global RNG), so a seeded generator reproduces
    them. Where the draws happen on the CPU and `kernels.native` is built, one 64-bit seed is
    taken from the generator and the native kernel fills all masks from it with a counter-based
    hash (the 409,600 StateUpdate draws of n = 128, B = 64, T = 50 in ~0.06 ms on 2 cores,
    ~5× faster than the generator); otherwise each mask is drawn from the generator directly.
    The two give different (equally distributed) masks for the same seed."""
    parts, shapes, ps = _plan(tuple(spec.items()) if spec else (), B, T, n, k)
    if not parts:
        return Masks()
    device = torch.device(device)
    where = generator.device if generator is not None else device
    lib = native.usable_for(where, dtype)
    if lib is not None:
        drawn = lib.bernoulli(shapes, ps, generator, dtype)
        if device.type != "cpu":
            drawn = [mask.to(device) for mask in drawn]
    else:
        drawn = [_bernoulli(shape, p, generator, device, dtype) for _, _, shape, p in parts]
    nw = 2 if parts[0][0] == "weights" else 0
    weights = PackedWeightMasks(drawn[0], drawn[1]) if nw else None
    return Masks(weights, **{field: mask for (field, *_), mask in zip(parts[nw:], drawn[nw:])})


def lstm_masked(x, lengths, arrays: dict, s0, c0, masks: Masks):
    """The recurrence with fixed masks. x (B, T, k); lengths (B,) int64 CPU or None;
    s0, c0 (B, n) or None → out (B, T, n), s_T (B, n), c_T (B, n); contract of `lstm.fused`."""
    if masks.s is not None or masks.m is not None or (masks.x is not None and native.usable(x) is not None):
        return lstm_custom.run(x, lengths, arrays, s0, c0, masks.x, masks.s, masks.m, masks.weights)
    if isinstance(masks.weights, PackedWeightMasks) and masks.x is None:
        weights = lstm.pack(arrays)  # the masks are in this layout: two products
        weights[0], weights[1] = weights[0] * masks.weights.ih, weights[1] * masks.weights.hh
    else:
        if masks.weights:
            arrays = lstm_custom.mask_arrays(arrays, masks.weights)
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
