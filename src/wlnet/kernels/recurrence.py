"""Running a recurrent cell over a batch of sequences: the one ragged-aware unroll, torch's fused
kernels, and the one function that chooses the kernel.

Symbols: B batch, T length, k input size, n output size. Every kernel has the same contract:
x (B, T, k); lengths (B,) int64 on the CPU, or None when every sequence has length T; states a
tuple of initial states (B, n) or None (zeros), in the cell's `states` order → out (B, T, n)
(zero past each sequence's end) and the tuple of final states (B, n), each taken at its
sequence's own last step.

Kernels (`choose`), each declared by the cell (`Cell.kernels`, `kernels.cells`):
- "fused": torch's fused kernel (oneDNN on CPU, cuDNN on GPU) on the arrays packed by the cell's
  torch layout; weight masks multiply the packed weights; input masks alone widen the input to
  one masked copy per gate with block-diagonal input weights, which gives exactly W_gx (x ∘ z_g).
- "native": the cell's recurrence in C++ (`native_cells`), CPU, float32/float64, with or without
  masks (without them where it measured faster than torch's fused kernel on this machine, on the
  matrix product measured fastest: `choice`).
- "custom": a recurrence in eager torch with a hand-written backward (the LSTM's
  `lstm_custom`), where the native kernel cannot run (CUDA, no compiler).
- "unroll": `unroll`, the cell's reference step in a time loop with autograd: the ground truth
  of every other kernel, and the fallback of every cell.
"""

from __future__ import annotations

import torch

from . import choice, dropout, native
from .cells import Cell

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
        new = cell.step(cell, a, x[:, t], states, zx, zs, None if zm is None else zm[:, t])
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
    name = cell.torch.kernel
    kernel = _KERNELS.get(name) or _KERNELS.setdefault(name, getattr(torch._VF, name))
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


def choose(cell: Cell, device, dtype, masks: dropout.Masks = NO_MASKS, n: int | None = None,
           grad: bool | None = None, shape: tuple | None = None, ragged: bool = False) -> str:
    """The kernel that runs `cell` with `masks` on tensors of `device` and `dtype`, at width n,
    recording a graph (`grad`, default: torch's grad mode) or not, on inputs of `shape` (B, T, k)
    (None: a nominal batch), `ragged` or not, among the cell's kernels (`pick`)."""
    return pick(cell, device, dtype, masks, n, grad, shape, ragged)[0]


def _takes(kernel: str, cell: Cell, masks: dropout.Masks, native_ok: bool) -> bool:
    if kernel not in cell.kernels:
        return False
    if kernel == "native":
        return native_ok
    return kernel != "fused" or (masks.s is None and masks.m is None)


def pick(cell: Cell, device, dtype, masks: dropout.Masks = NO_MASKS, n: int | None = None,
         grad: bool | None = None, shape: tuple | None = None, ragged: bool = False) -> tuple:
    """(kernel, the native kernel's matrix product or None: the module's own) as `choose`.

    WLNET_KERNEL names a kernel to run wherever the cell has it and it takes the masks. Without
    masks, where the native kernel can run, the choice among it (on each matrix product) and
    torch's fused kernel is the one measured on this machine for the call's shape class
    (`choice`); weight masks alone choose so too (the fused kernel takes them on its packed
    weights). With step masks the native kernel runs where it can: it takes every mask, and each
    step's element-wise work is one pass (torch's fused kernel takes weight and input masks only;
    then the custom kernel, else the unroll). Under torch.compile and torch.export (which trace
    with tensors that hold no data) the C++ kernels cannot run: torch's kernels run instead."""
    kernels = cell.kernels
    native_ok = "native" in kernels and not torch.compiler.is_compiling() and \
        native.usable_for(device if isinstance(device, torch.device) else torch.device(device), dtype) is not None
    wanted = choice.forced()
    if wanted is not None and _takes(wanted, cell, masks, native_ok):
        return wanted, None
    if native_ok:
        step_masks = masks.x is not None or masks.s is not None or masks.m is not None
        if step_masks or "fused" not in kernels:
            return "native", None
        grad = torch.is_grad_enabled() if grad is None else grad
        B, T, k = shape if shape is not None else (None, None, None)
        return choice.choose(cell, dtype, n, B, T, k, ragged, grad)
    if "fused" in kernels and masks.s is None and masks.m is None:
        return "fused", None
    return "custom" if "custom" in kernels else "unroll", None


def masked(cell: Cell, x, lengths, arrays: dict, states, masks: dropout.Masks, exact: bool = True):
    """The recurrence with fixed dropout masks (`dropout.draw_masks`), on the chosen kernel."""
    kernel = choose(cell, x.device, x.dtype, masks, cell.width(arrays), shape=tuple(x.shape),
                    ragged=lengths is not None)
    return run_on(kernel, cell, x, lengths, arrays, states, masks, exact)


def run_on(kernel: str, cell: Cell, x, lengths, arrays: dict, states, masks: dropout.Masks, exact: bool = True):
    """`masked` on the named kernel, one of `cell.kernels` that takes the masks (`choose`)."""
    states = full_states(cell, states)
    if kernel == "native":
        return cell.native(cell, x, lengths, arrays, states, masks)
    if kernel == "custom":
        return cell.custom(cell, x, lengths, arrays, states, masks)
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
    blocks = [g for g, _ in cell.torch.blocks]
    order = [cell.gate_index(g) for g in blocks]
    x = (x.unsqueeze(2) * masks.x[:, order].unsqueeze(1)).reshape(B, T, len(order) * k)  # (B, T, Gk)
    weights[0] = torch.block_diag(*(a[cell.array(g, "InputWeights")] for g in blocks))
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
    kernel, product = pick(cell, x.device, x.dtype, NO_MASKS, n, shape=tuple(x.shape), ragged=lengths is not None)
    if kernel == "native" and product is not None:
        before = native.current_gemm()
        wanted = native.GEMMS.index(product)
        if wanted != before:
            native.set_current_gemm(wanted)
            try:
                return run_on(kernel, cell, x, lengths, arrays, states, NO_MASKS, exact)
            finally:
                native.set_current_gemm(before)
    if kernel != "fused":
        return run_on(kernel, cell, x, lengths, arrays, states, NO_MASKS, exact)
    if cache is None:
        weights = cell.pack(arrays)
    else:
        weights = cache.get("fused")
        if weights is None:
            weights = cache["fused"] = [t.contiguous() for t in cell.pack(arrays)]
    return fused(cell, x, lengths, weights, states, exact)
