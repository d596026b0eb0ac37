"""The glue of the custom and native recurrences: a batch, ragged or not, as the time-major
rows sorted by decreasing length that they run on (like a packed sequence: step t works on
the first batch_sizes[t] rows only)."""

from __future__ import annotations

import numpy as np
import torch


def checked_lengths(lengths, B: int, T: int):
    """lengths as int64 on the CPU, or None when every sequence has length T."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
    ln = lengths.numpy()  # (numpy: a few µs less per call than torch on 64 numbers)
    if lengths.shape != (B,) or B == 0 or ln.min() < 1 or ln.max() > T:
        raise ValueError(f"lengths must be {B} integers in 1..{T}; got {lengths.tolist()}")
    return None if ln.min() == T else lengths


def run_sorted(x, lengths, states: tuple, masks: tuple, call):
    """x (B, T, k); lengths (B,) int64 CPU or None (`checked_lengths`); states: initial states
    (B, n) or None; masks: (mask (B, ...) or None, per_step) pairs, per-step ones (B, T, ...)
    cut to the longest length.

    call(x_tm (T', B, k), states, masks, batch_sizes, sorted_lengths) → (out (T', B, n), final
    states (B, n)) on the sorted rows, batch_sizes the rows alive at each step ([] and None when
    none is shorter) → out (B, T, n), zero past each sequence's end, and the final states."""
    B, T, _ = x.shape
    if lengths is None:
        out, finals = call(x.transpose(0, 1).contiguous(), states, tuple(z for z, _ in masks), [], None)
        return out.transpose(0, 1), finals
    ln = lengths.numpy()
    order = np.argsort(-ln, kind="stable")  # decreasing length, ties in row order
    sorted_np = ln[order]
    Tm = int(sorted_np[0])
    batch_sizes = (B - np.cumsum(np.bincount(ln, minlength=Tm + 1))[:Tm]).tolist()  # rows longer than t
    back = np.empty_like(order)
    back[order] = np.arange(B)
    order_d, back_d = torch.from_numpy(order).to(x.device), torch.from_numpy(back).to(x.device)

    def sort(z):  # (B, ...) → rows sorted
        return None if z is None else z.index_select(0, order_d)

    sorted_masks = tuple(sort(z[:, :Tm] if per_step and z is not None else z) for z, per_step in masks)
    x_tm = x.transpose(0, 1)[:Tm].index_select(1, order_d)  # (Tm, B, k), contiguous
    out, finals = call(x_tm, tuple(sort(s) for s in states), sorted_masks, batch_sizes, torch.from_numpy(sorted_np))
    out = out.index_select(1, back_d).transpose(0, 1)  # (B, Tm, n)
    if Tm < T:
        out = torch.nn.functional.pad(out, (0, 0, 0, T - Tm))
    return out, tuple(s.index_select(0, back_d) for s in finals)
