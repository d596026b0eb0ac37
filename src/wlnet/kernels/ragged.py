"""The glue of the custom and native recurrences: a batch, ragged or not, as the time-major
rows sorted by decreasing length that they run on (like a packed sequence: step t works on
the first batch_sizes[t] rows only)."""

from __future__ import annotations

import torch


def checked_lengths(lengths, B: int, T: int):
    """lengths as int64 on the CPU, or None when every sequence has length T."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
    if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"lengths must be {B} integers in 1..{T}; got {lengths.tolist()}")
    return None if bool((lengths == T).all()) else lengths


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
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    Tm = int(sorted_lengths[0])
    batch_sizes = (sorted_lengths.unsqueeze(0) > torch.arange(Tm).unsqueeze(1)).sum(1).tolist()
    order_d = order.to(x.device)
    back = torch.argsort(order).to(x.device)

    def sort(z):  # (B, ...) → rows sorted
        return None if z is None else z.index_select(0, order_d)

    sorted_masks = tuple(sort(z[:, :Tm] if per_step and z is not None else z) for z, per_step in masks)
    out, finals = call(sort(x[:, :Tm]).transpose(0, 1).contiguous(), tuple(sort(s) for s in states), sorted_masks,
                       batch_sizes, sorted_lengths)
    out = out.index_select(1, back).transpose(0, 1)  # (B, Tm, n)
    if Tm < T:
        out = torch.nn.functional.pad(out, (0, 0, 0, T - Tm))
    return out, tuple(s.index_select(0, back) for s in finals)
