"""Dropout masks for a recurrent cell in training.

Symbols: B batch, T length, k input size, n output size, G the cell's number of gates. A spec
is a dict method → p (the layers' Dropout option); every mask is Bernoulli(1 − p) scaled by
1/(1 − p), so its mean is 1.

| method             | mask                                               | shared by      | redrawn    |
|--------------------|----------------------------------------------------|----------------|------------|
| VariationalWeights | each weight matrix (n×k, n×n), not the biases      | batch and time | each call  |
| VariationalInput   | x_t as gate g sees it, (B, G, k)                   | time           | each call  |
| VariationalState   | s_{t-1} as gate g sees it, (B, G, n)               | time           | each call  |
| StateUpdate        | the memory m_t before it is mixed in, (B, T, n)    | nothing        | every step |

The gate axis of the x and s masks is in the cell's Wolfram order (`Cell.gates`). The weight
masks are drawn in torch's fused layout (`PackedWeightMasks`), so that the fused kernel masks
its packed weights in two products; they read as array name → mask.

Masks are drawn from the evaluation's generator: natively from one 64-bit seed where the draws
happen on the CPU and the native kernel is built, else with the generator itself (`_bernoulli`).
Which kernel runs them is `recurrence.choose`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import torch

from ..core.errors import OptionError
from . import native

if TYPE_CHECKING:
    from .cells import Cell

METHODS = ("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate")


class Masks(NamedTuple):
    """Fixed dropout masks for one evaluation (None where the method is off).

    weights: array name → mask of that matrix's shape (`draw_masks` gives a `PackedWeightMasks`),
    or None; x (B, G, k), s (B, G, n): per-gate masks, gates in `Cell.gates` order; m (B, T, n)."""

    weights: Mapping | None = None
    x: torch.Tensor | None = None
    s: torch.Tensor | None = None
    m: torch.Tensor | None = None


class PackedWeightMasks(Mapping):
    """The VariationalWeights masks as drawn: one (Gn, k) and one (Gn, n) block in torch's fused
    layout (`Cell.pack`), read as array name → mask of that matrix (a view)."""

    def __init__(self, cell: Cell, ih: torch.Tensor, hh: torch.Tensor):
        self.cell, self.ih, self.hh = cell, ih, hh
        self._rows = {cell.array(g, part): (j, part) for j, (g, _) in enumerate(cell.torch.blocks)
                      for part in ("InputWeights", "StateWeights")}

    def __getitem__(self, name: str) -> torch.Tensor:
        j, part = self._rows[name]
        n = self.hh.shape[1]
        return (self.ih if part == "InputWeights" else self.hh)[j * n:(j + 1) * n]

    def __iter__(self):
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def mask_arrays(a: dict, zw: Mapping) -> dict:
    """The arrays with the weight masks `zw` (array name → mask) applied."""
    return {name: v * zw[name] if name in zw else v for name, v in a.items()}


def active(spec: dict | None, who: str = "Dropout") -> dict:
    """The methods of `spec` that drop something (p > 0), checked."""
    out = {}
    for method, p in (spec or {}).items():
        if method not in METHODS:
            raise OptionError(f"{who}: unknown dropout method {method!r}; the methods are {', '.join(METHODS)}.")
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
            raise OptionError(f"{who}: the dropout probability of {method} must be a number with 0 ≤ p < 1, "
                              f"but was given {p!r}.")
        if p > 0:
            out[method] = float(p)
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
def _plan(cell: Cell, spec: tuple, B: int, T: int, n: int, k: int) -> tuple:
    """The masks `draw_masks` draws for the (method, p) pairs `spec`: ((field, shape, p), ...),
    their shapes and their probabilities."""
    spec = active(dict(spec), cell.name)
    G = len(cell.gates)
    assert all(rule in ("nk", "nn") for name, rule in cell.arrays if name in cell.weight_names) and \
        len(cell.weight_names) == 2 * G, "the weight masks are drawn as each gate's W_x (n×k) and W_s (n×n)"
    parts = []
    if "VariationalWeights" in spec:  # in torch's fused layout: W_ih (Gn, k), W_hh (Gn, n)
        parts += [("ih", (G * n, k), spec["VariationalWeights"]), ("hh", (G * n, n), spec["VariationalWeights"])]
    if "VariationalInput" in spec:
        parts.append(("x", (B, G, k), spec["VariationalInput"]))
    if "VariationalState" in spec:
        parts.append(("s", (B, G, n), spec["VariationalState"]))
    if "StateUpdate" in spec:
        parts.append(("m", (B, T, n), spec["StateUpdate"]))
    return tuple(parts), [shape for _, shape, _ in parts], [p for *_, p in parts]


def draw_masks(cell: Cell, spec: dict[str, float], B: int, T: int, n: int, k: int,
               generator: torch.Generator | None, device, dtype) -> Masks:
    """Draw the masks of every active method of `spec` for a batch of B sequences of length T.

    Masks come in a fixed order (the weight masks as two blocks in torch's fused layout, then
    x, s, m), all from `generator` (None: torch's global RNG), so a seeded generator reproduces
    them. Where the draws happen on the CPU and `kernels.native` is built, one 64-bit seed is
    taken from the generator and the native kernel fills all masks from it with a counter-based
    hash (the 409,600 StateUpdate draws of n = 128, B = 64, T = 50 in ~0.06 ms on 2 cores,
    ~5× faster than the generator); otherwise each mask is drawn from the generator directly.
    The two give different (equally distributed) masks for the same seed."""
    parts, shapes, ps = _plan(cell, tuple(spec.items()) if spec else (), B, T, n, k)
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
        drawn = [_bernoulli(shape, p, generator, device, dtype) for _, shape, p in parts]
    got = {field: mask for (field, *_), mask in zip(parts, drawn)}
    weights = PackedWeightMasks(cell, got["ih"], got["hh"]) if "ih" in got else None
    return Masks(weights, got.get("x"), got.get("s"), got.get("m"))
