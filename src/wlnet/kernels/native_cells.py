"""The cells' recurrences on the native kernels (`native/lstm.cpp` with `native/rows.cpp`,
`native/gru.cpp`, `native/rnn.cpp`), with or without dropout masks: the whole forward in one C++
call and the whole backward in another. `lstm_kernel`, `gru_kernel`, `rnn_kernel` are the cells'
"native" kernels (`kernels.cells`).

Symbols: B batch, T length, k input size, n output size; σ the logistic sigmoid, ∗ and ∘
elementwise. Wolfram's arrays (weights out × in):

    GRU  z_t = σ(W_ix (x_t ∘ zx_i) + W_is (s_{t-1} ∘ zs_i) + b_i)          Input gate
         r_t = σ(W_rx (x_t ∘ zx_r) + W_rs (s_{t-1} ∘ zs_r) + b_r)          Reset gate
         m_t = tanh(W_mx (x_t ∘ zx_m) + b_m + r_t ∗ (W_ms (s_{t-1} ∘ zs_m)))   Memory gate
         s_t = (1 − z_t) ∗ (m_t ∘ zm_t) + z_t ∗ s_{t-1}     (the carried s_{t-1} is never masked)
    RNN  s_t = tanh(W_x (x_t ∘ zx) + W_s (s_{t-1} ∘ zs) + b)
    LSTM as `lstm_custom` (masks zx (B, 4, k), zs (B, 4, n) in Wolfram's gate order)

Masks, already scaled (entries 0 or 1/(1 − p)), each optional: zx (B, G, k), zs (B, G, n) with
G = 3 for the GRU in the order (Input, Reset, Memory) and G = 1 for the RNN, the same at every
step; zm (B, T, n), GRU only, per step; zw: array name → mask of that weight matrix's shape,
applied as W ∘ zw[name] (gradients are with respect to the unmasked array).

How the kernels are fast (as `native/lstm.cpp`): the input products of all steps are one
product before the loop (one per gate with zx); a step is one state product (per gate with zs,
in one batched BLAS call) and one vectorized element-wise pass; the rows run in blocks, one per
thread, each a whole time loop; the backward is one product and one pass per step, and the
weight gradients are products after the loop; buffers come from a pool. Ragged batches are run
like packed sequences (`ragged.run_sorted`).

Speed of the LSTM's (bench/dropout.py, 2 CPU cores, p = 0.3), against torch's fused no-dropout
kernel: at n = 128 (B = 64, T = 50, k = 32) training step 1.0-1.2× and forward 1.0-1.3× for every
method and all four together, at n = 32 (B = 64, T = 32, k = 16) 0.8-1.1× and 0.9-1.15×.

These run where `kernels.native` is usable (CPU, float32/float64); elsewhere `recurrence.choose`
runs the cells' reference steps (`recurrence.unroll`) instead.
"""

from __future__ import annotations

import contextlib

import torch
from torch.autograd.function import once_differentiable

from . import native
from .ragged import checked_lengths, run_sorted

GRU_GATES = ("Input", "Reset", "Memory")  # the order of the masks' gate axis
# The LSTM kernel's own gate order (the output gate first), and the order of the weight masks'
# blocks it takes: torch's fused layout.
LSTM_ORDER = ("Output", "Input", "Forget", "Memory")
LSTM_MASK_ORDER = ("Input", "Forget", "Memory", "Output")
LSTM_NAMES = tuple(f"{g}Gate{part}" for part in ("InputWeights", "StateWeights", "Biases") for g in LSTM_ORDER)
# The arrays in the order the native kernel takes them: input weights, state weights, biases.
GRU_NAMES = tuple(f"{g}Gate{part}" for part in ("InputWeights", "StateWeights", "Biases") for g in GRU_GATES)
RNN_NAMES = ("InputWeights", "StateWeights", "Biases")


@contextlib.contextmanager
def same_product(gemm: int):
    """The backward on the matrix product its forward ran on (`native.GEMMS` index; the choice
    of `kernels.choice` is set around the forward call only)."""
    before = native.current_gemm()
    if before == gemm:
        yield
        return
    native.set_current_gemm(gemm)
    try:
        yield
    finally:
        native.set_current_gemm(before)


def _weight_masks(zw, names, like):
    """The weight masks in kernel order (an empty tensor where an array has none), or [] for none."""
    if not zw:
        return []
    none = like.new_empty(0)
    return [zw[name] if name in zw else none for name in names]


class _GRUNative(torch.autograd.Function):
    """x (T, B, k) time-major, rows sorted by decreasing length; s0 (B, n) | None; zx (B, 3, k),
    zs (B, 3, n), zm (B, T, n) | None; zw: 6 weight masks (`_weight_masks`) or []; batch_sizes:
    rows alive at each step or [] (all B); arrays in `GRU_NAMES` order, then MemoryGateStateBiases
    where the layer has it → out (T, B, n), s_T (B, n)."""

    @staticmethod
    def forward(ctx, x, s0, zx, zs, zm, zw, batch_sizes, *arrays):
        S, s_T, G, AM, wx, ws, XI, SZ = native.get().gru_forward(x, s0, list(arrays), zw, zx, zs, zm, batch_sizes)
        ctx.save_for_backward(x, wx, ws, zx, zs, zm, G, AM, S, XI, SZ)
        ctx.zw, ctx.batch_sizes, ctx.gemm = zw, batch_sizes, native.current_gemm()
        return S[1:], s_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT):
        x, wx, ws, zx, zs, zm, G, AM, S, XI, SZ = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_arrays = [need[0], need[1], any(need[7:16])] + ([need[16]] if len(need) > 16 else [])
        with same_product(ctx.gemm):
            grads = native.get().gru_backward(g_out, g_sT, x, wx, ws, ctx.zw, zx, zs, zm, G, AM, S, XI, SZ,
                                              ctx.batch_sizes, need_arrays)
        return (*grads[:2], None, None, None, None, None, *grads[2:])


class _RNNNative(torch.autograd.Function):
    """As `_GRUNative`, for the basic RNN: zx (B, 1, k), zs (B, 1, n) | None; zw: 2 masks or [];
    arrays in `RNN_NAMES` order."""

    @staticmethod
    def forward(ctx, x, s0, zx, zs, zw, batch_sizes, *arrays):
        S, s_T, wx, ws, XI, SZ = native.get().rnn_forward(x, s0, list(arrays), zw, zx, zs, batch_sizes)
        ctx.save_for_backward(x, wx, ws, zx, zs, S, XI, SZ)
        ctx.zw, ctx.batch_sizes, ctx.gemm = zw, batch_sizes, native.current_gemm()
        return S[1:], s_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT):
        x, wx, ws, zx, zs, S, XI, SZ = ctx.saved_tensors
        need = ctx.needs_input_grad
        with same_product(ctx.gemm):
            grads = native.get().rnn_backward(g_out, g_sT, x, wx, ws, ctx.zw, zx, zs, S, XI, SZ, ctx.batch_sizes,
                                              [need[0], need[1], any(need[6:])])
        return (*grads[:2], None, None, None, None, *grads[2:])


def gru(x, lengths, arrays: dict, s0=None, zx=None, zs=None, zm=None, zw=None):
    """The masked GRU. x (B, T, k) float32/float64 CPU; lengths (B,) int64 CPU or None (all T);
    s0 (B, n) or None (zeros); zx (B, 3, k), zs (B, 3, n) (gates Input, Reset, Memory),
    zm (B, T, n) or None; zw: array name → weight mask, or None → out (B, T, n), s_T (B, n).

    Outputs past a sequence's end are zero; s_T is each sequence's state at its own last step.
    Differentiable in x, s0 and the 9 arrays (10 with MemoryGateStateBiases, where given)."""
    lib = native.usable(x)
    assert lib is not None, "the native kernel runs on the CPU in float32/float64 where it is built"
    arrs = [arrays[name] for name in GRU_NAMES]
    if "MemoryGateStateBiases" in arrays:  # b_ms, inside the reset product
        arrs.append(arrays["MemoryGateStateBiases"])
    zw_list = _weight_masks(zw, GRU_NAMES[:6], x)

    def call(x_tm, states, masks, batch_sizes, _):
        if not torch.is_grad_enabled():  # no graph to record: the kernel itself
            S, s_T = lib.gru_forward(x_tm, states[0], arrs, zw_list, *masks, batch_sizes)[:2]
            return S[1:], (s_T,)
        out, s_T = _GRUNative.apply(x_tm, states[0], *masks, zw_list, batch_sizes, *arrs)
        return out, (s_T,)

    out, (s_T,) = run_sorted(x, checked_lengths(lengths, *x.shape[:2]), (s0,), ((zx, False), (zs, False), (zm, True)),
                             call)
    return out, s_T


def rnn(x, lengths, arrays: dict, s0=None, zx=None, zs=None, zw=None):
    """The masked basic RNN. x (B, T, k) float32/float64 CPU; lengths (B,) int64 CPU or None
    (all T); s0 (B, n) or None (zeros); zx (B, 1, k), zs (B, 1, n) or None; zw: array name →
    weight mask, or None → out (B, T, n), s_T (B, n). Contract as `gru`; differentiable in x,
    s0 and the 3 arrays."""
    lib = native.usable(x)
    assert lib is not None, "the native kernel runs on the CPU in float32/float64 where it is built"
    arrs = [arrays[name] for name in RNN_NAMES]
    zw_list = _weight_masks(zw, RNN_NAMES[:2], x)

    def call(x_tm, states, masks, batch_sizes, _):
        if not torch.is_grad_enabled():
            S, s_T = lib.rnn_forward(x_tm, states[0], arrs, zw_list, *masks, batch_sizes)[:2]
            return S[1:], (s_T,)
        out, s_T = _RNNNative.apply(x_tm, states[0], *masks, zw_list, batch_sizes, *arrs)
        return out, (s_T,)

    out, (s_T,) = run_sorted(x, checked_lengths(lengths, *x.shape[:2]), (s0,), ((zx, False), (zs, False)), call)
    return out, s_T


class _LSTMNative(torch.autograd.Function):
    """The LSTM recurrence in C++ (`native/lstm.cpp`, `native/rows.cpp`): forward and backward
    one call each, on batch-major rows in any order (the sort by length and the copies to and
    from time-major are done there).

    x (B, T, k); s0, c0 (B, n) | None (zeros); zx (B, 4, k), zs (B, 4, n), zm (B, T, n) | None
    (Wolfram gate order); zw: the weight masks in torch's fused layout [(4n, k), (4n, n)] or [];
    lengths: B ints, or [] (all T); arrays: the 12 arrays in `LSTM_NAMES` order → out (B, T, n)
    (zero past each end), s_T, c_T (B, n) at each row's last step."""

    @staticmethod
    def forward(ctx, x, s0, c0, zx, zs, zm, zw, lengths, *arrays):
        out, s_T, c_T, *saved = native.get().forward_rows(x, lengths, s0, c0, list(arrays), zw, zx, zs, zm, True)
        ctx.save_for_backward(*saved)
        ctx.zw, ctx.lengths, ctx.T, ctx.gemm = zw, lengths, x.shape[1], native.current_gemm()
        return out, s_T, c_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT, g_cT):
        x_tm, wx, ws, zx, zs, zm, G, C, S, XI, SZ = ctx.saved_tensors
        need = ctx.needs_input_grad
        with same_product(ctx.gemm):
            grads = native.get().backward_rows(g_out, g_sT, g_cT, x_tm, wx, ws, ctx.zw, zx, zs, zm, G, C, S, XI, SZ,
                                               ctx.lengths, ctx.T, [need[0], need[1], need[2], any(need[8:])])
        return (*grads[:3], None, None, None, None, None, *grads[3:])


def lstm(x, lengths, arrays: dict, s0=None, c0=None, zx=None, zs=None, zm=None, zw=None):
    """The masked LSTM. x (B, T, k) float32/float64 CPU; lengths (B,) int64 CPU or None (all T);
    s0, c0 (B, n) or None (zeros); zx (B, 4, k), zs (B, 4, n) (Wolfram's gate order), zm (B, T, n)
    or None; zw: array name → weight mask (a `dropout.PackedWeightMasks` as drawn), or None →
    out (B, T, n), s_T, c_T (B, n). Contract as `gru`; differentiable in x, s0, c0 and the 12 arrays."""
    B, T, _ = x.shape
    lengths = checked_lengths(lengths, B, T)
    lib = native.usable(x)
    assert lib is not None, "the native kernel runs on the CPU in float32/float64 where it is built"
    zw_packed = []  # the weight masks in torch's fused layout
    if zw is not None and hasattr(zw, "ih"):  # drawn in that layout
        zw_packed = [zw.ih, zw.hh]
    elif zw:
        zw_packed = [torch.cat([zw[f"{g}Gate{part}"] for g in LSTM_MASK_ORDER]) for part in ("InputWeights",
                                                                                         "StateWeights")]
    arrs = [arrays[name] for name in LSTM_NAMES]
    lens = [] if lengths is None else lengths.tolist()
    if not torch.is_grad_enabled():  # no graph to record: the kernel itself
        return tuple(lib.forward_rows(x, lens, s0, c0, arrs, zw_packed, zx, zs, zm, False)[:3])
    return _LSTMNative.apply(x, s0, c0, zx, zs, zm, zw_packed, lens, *arrs)


# ---- the cells' "native" kernels: (cell, x, lengths, arrays, states, masks) → out, final states ----
def lstm_kernel(cell, x, lengths, arrays, states, masks):
    out, s, c = lstm(x, lengths, arrays, *states, masks.x, masks.s, masks.m, masks.weights)
    return out, (s, c)


def gru_kernel(cell, x, lengths, arrays, states, masks):
    out, s = gru(x, lengths, arrays, states[0], masks.x, masks.s, masks.m, masks.weights)
    return out, (s,)


def rnn_kernel(cell, x, lengths, arrays, states, masks):
    out, s = rnn(x, lengths, arrays, states[0], masks.x, masks.s, masks.weights)
    return out, (s,)
