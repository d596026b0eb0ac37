"""Running a recurrent cell over a batch of sequences: the one ragged-aware unroll, torch's fused
kernels, and the one function that chooses the kernel.

Symbols: B batch, T length, k input size, n output size. Every kernel has the same contract:
x (B, T, k); lengths (B,) int64 on the CPU, or None when every sequence has length T; states a
tuple of initial states (B, n) or None (zeros), in the cell's `states` order → out (B, T, n)
(zero past each sequence's end) and the tuple of final states (B, n), each taken at its
sequence's own last step.

Kernels (`choose`):
- "fused": torch's fused kernel (oneDNN on CPU, cuDNN on GPU) on the arrays packed by the cell's
  table; weight masks multiply the packed weights; input masks alone widen the input to one
  masked copy per gate with block-diagonal input weights, which gives exactly W_gx (x ∘ z_g).
- "native": the cell's masked recurrence in C++ (`kernels.native`), CPU, float32/float64; for
  the LSTM also without masks where it measured faster than oneDNN's (bench/kernels.py).
- "custom": the LSTM's masked recurrence in eager torch with a hand-written backward
  (`lstm_custom`), where the native kernel cannot run (CUDA, no compiler).
- "unroll": `unroll`, the cell's reference step in a time loop with autograd: the ground truth
  of every other kernel, and the fallback of the other cells' masks off the CPU.
"""

from __future__ import annotations

import torch

from . import dropout, lstm_custom, native, native_cells
from .cells import GRU, LSTM, RNN, Cell

NO_MASKS = dropout.Masks()


def full_states(cell: Cell, states: tuple) -> tuple:
    """One initial state (or None, zeros) for each of the cell's state ports."""
    n = len(cell.states)
    return tuple(states) if len(states) == n else (*states, *[None] * n)[:n]


def unroll(cell: Cell, a: dict, x, lengths, states=(), zx=None, zs=None, zm=None):
    """The cell's reference step over T steps. A sequence shorter than T keeps its states past
    its end and outputs zeros there. zx (B, G, k), zs (B, G, n), zm (B, T, n): dropout masks."""
    B, T, _ = x.shape
    n = cell.width(a)
    states = tuple(x.new_zeros(B, n) if s is None else s for s in full_states(cell, states))
    live = None if lengths is None else (torch.arange(T) < lengths.unsqueeze(1)).to(x.device)  # (B, T)
    outs = []
    for t in range(T):
        new = cell.step(a, x[:, t], states, zx, zs, None if zm is None else zm[:, t])
        if live is not None:
            keep = live[:, t:t + 1]  # (B, 1)
            new = tuple(torch.where(keep, v, old) for v, old in zip(new, states))
            outs.append(torch.where(keep, new[0], torch.zeros_like(new[0])))
        else:
            outs.append(new[0])
        states = new
    return torch.stack(outs, 1), states


_KERNELS: dict = {}  # torch._VF function by name (its module-level __getattr__ costs µs a call)


def fused(cell: Cell, x, lengths, weights: list, states=(), exact: bool = True):
    """torch's fused kernel on packed weights (`Cell.pack`). A ragged batch runs padded (2-3×
    faster than a packed sequence on CPU): steps before each end are exact, later outputs are
    zeroed and the output state is read at each end. The LSTM's CellState cannot be read so:
    with exact it runs a packed sequence instead, else its final CellState comes back None."""
    kernel = _KERNELS.get(cell.torch_kernel) or _KERNELS.setdefault(cell.torch_kernel,
                                                                     getattr(torch._VF, cell.torch_kernel))
    B, T, _ = x.shape
    n = weights[1].shape[1]
    states = full_states(cell, states)
    zeros = x.new_zeros(1, B, n) if any(s is None for s in states) else None  # read only: shared
    hx = tuple(zeros if s is None else s.unsqueeze(0) for s in states)
    hx = hx if len(hx) > 1 else hx[0]
    if lengths is None or not (exact and len(cell.states) > 1):
        out, *finals = kernel(x, hx, weights, True, 1, 0.0, False, False, True)
        if lengths is None:
            return out, tuple(h[0] for h in finals)
        dev_lengths = lengths.to(x.device)
        live = torch.arange(T, device=x.device).unsqueeze(0) < dev_lengths.unsqueeze(1)  # (B, T)
        out = out * live.unsqueeze(-1)
        s = out[torch.arange(B, device=x.device), dev_lengths - 1]
        return out, (s, *[None] * (len(cell.states) - 1))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    order = packed.sorted_indices
    hx = tuple(h.index_select(1, order) for h in hx)
    data, *finals = kernel(packed.data, packed.batch_sizes, hx, weights, True, 1, 0.0, False, False)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(
        torch.nn.utils.rnn.PackedSequence(data, packed.batch_sizes, order, packed.unsorted_indices),
        batch_first=True, total_length=T,
    )
    back = packed.unsorted_indices
    return out, tuple(h[0].index_select(0, back) for h in finals)


# Where the native LSTM beats oneDNN's fused kernel without masks (bench/kernels.py, 2 cores,
# B = 1-510): the training step at every width measured (n = 20-1024: 0.4-0.9× the fused step's
# time); the forward alone up to n = 128 (0.25-0.9×; from n = 256, 1.1-1.4×).
NATIVE_FORWARD_MAX_N = 128


def choose(cell: Cell, device, dtype, masks: dropout.Masks = NO_MASKS, n: int | None = None,
           grad: bool | None = None) -> str:
    """The kernel that runs `cell` with `masks` on tensors of `device` and `dtype`, at width n,
    recording a graph (`grad`, default: torch's grad mode) or not.

    On the CPU torch's fused kernel is oneDNN's for the LSTM only; for the GRU and the basic RNN
    it is a loop of ATen ops per step, which the native kernel (the same products, each step's
    element-wise work in one pass) beats 2-3× (bench/dropout.py), so there the native kernel runs
    with or without masks. For the LSTM the native kernel runs wherever it measured faster than
    oneDNN's (`NATIVE_FORWARD_MAX_N`). Under torch.compile and torch.export (which trace with
    tensors that hold no data) the C++ kernels cannot run: torch's kernels run instead."""
    if cell.name in NATIVE and not torch.compiler.is_compiling() and \
            native.usable_for(torch.device(device), dtype) is not None:
        step_masks = masks.x is not None or masks.s is not None or masks.m is not None
        if step_masks or not cell.onednn:
            return "native"
        grad = torch.is_grad_enabled() if grad is None else grad
        if grad or n is None or n <= NATIVE_FORWARD_MAX_N:
            return "native"
        return "fused"
    if masks.s is None and masks.m is None:
        return "fused"
    return "custom" if cell is LSTM else "unroll"


def _native_lstm(x, lengths, a, states, masks):
    out, s, c = lstm_custom.run(x, lengths, a, *states, masks.x, masks.s, masks.m, masks.weights, use_native=True)
    return out, (s, c)


def _native_gru(x, lengths, a, states, masks):
    out, s = native_cells.gru(x, lengths, a, states[0], masks.x, masks.s, masks.m, masks.weights)
    return out, (s,)


def _native_rnn(x, lengths, a, states, masks):
    out, s = native_cells.rnn(x, lengths, a, states[0], masks.x, masks.s, masks.weights)
    return out, (s,)


NATIVE = {LSTM.name: _native_lstm, GRU.name: _native_gru, RNN.name: _native_rnn}  # cell → its native recurrence


def masked(cell: Cell, x, lengths, arrays: dict, states, masks: dropout.Masks, exact: bool = True):
    """The recurrence with fixed dropout masks (`dropout.draw_masks`), on the chosen kernel."""
    states = full_states(cell, states)
    kernel = choose(cell, x.device, x.dtype, masks, cell.width(arrays))
    if kernel == "native":
        return NATIVE[cell.name](x, lengths, arrays, states, masks)
    if kernel == "custom":
        out, s, c = lstm_custom.run(x, lengths, arrays, *states, masks.x, masks.s, masks.m, masks.weights,
                                    use_native=False)
        return out, (s, c)
    if kernel == "unroll":
        a = dropout.mask_arrays(arrays, masks.weights) if masks.weights else arrays
        return unroll(cell, a, x, lengths, states, masks.x, masks.s, masks.m)
    if masks.x is None:
        weights = cell.pack(arrays)
        if isinstance(masks.weights, dropout.PackedWeightMasks):  # drawn in this layout: two products
            weights[0], weights[1] = weights[0] * masks.weights.ih, weights[1] * masks.weights.hh
        elif masks.weights:
            weights = cell.pack(dropout.mask_arrays(arrays, masks.weights))
        return fused(cell, x, lengths, weights, states, exact)
    a = dropout.mask_arrays(arrays, masks.weights) if masks.weights else arrays
    weights = cell.pack(a)
    B, T, k = x.shape
    order = [cell.gate_index(g) for g, _ in cell.torch_table]
    x = (x.unsqueeze(2) * masks.x[:, order].unsqueeze(1)).reshape(B, T, len(order) * k)  # (B, T, Gk)
    weights[0] = torch.block_diag(*(sign * a[cell.array(g, "InputWeights")] for g, sign in cell.torch_table))
    return fused(cell, x, lengths, weights, states, exact)


def run(cell: Cell, arrays: dict, x, lengths, states, *, dropout_spec=None, generator=None, exact=True,
        cache: dict | None = None):
    """The cell over a batch: with `dropout_spec` (method → p, training only) masks are drawn
    from `generator`; the kernel `choose` picks runs, the fused one on packed weights (kept in
    `cache` when it is given: the arrays of an evaluation module never change)."""
    n = cell.width(arrays)
    if dropout_spec:
        B, T, k = x.shape
        masks = dropout.draw_masks(cell, dropout_spec, B, T, n, k, generator, x.device, x.dtype)
        return masked(cell, x, lengths, arrays, states, masks, exact)
    if choose(cell, x.device, x.dtype, NO_MASKS, n) == "native":
        return NATIVE[cell.name](x, lengths, arrays, full_states(cell, states), NO_MASKS)
    if cache is None:
        weights = cell.pack(arrays)
    else:
        weights = cache.get("fused")
        if weights is None:
            weights = cache["fused"] = [t.contiguous() for t in cell.pack(arrays)]
    return fused(cell, x, lengths, weights, states, exact)
