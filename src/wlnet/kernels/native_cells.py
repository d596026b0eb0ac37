"""Masked GRU and basic RNN recurrences for dropout, on the native kernels (`native/gru.cpp`,
`native/rnn.cpp`): the whole forward in one C++ call and the whole backward in another.

Symbols: B batch, T length, k input size, n output size; σ the logistic sigmoid, ∗ and ∘
elementwise. Wolfram's arrays (weights out × in):

    GRU  z_t = σ(W_ix (x_t ∘ zx_i) + W_is (s_{t-1} ∘ zs_i) + b_i)          Input gate
         r_t = σ(W_rx (x_t ∘ zx_r) + W_rs (s_{t-1} ∘ zs_r) + b_r)          Reset gate
         m_t = tanh(W_mx (x_t ∘ zx_m) + b_m + r_t ∗ (W_ms (s_{t-1} ∘ zs_m)))   Memory gate
         s_t = (1 − z_t) ∗ s_{t-1} + z_t ∗ (m_t ∘ zm_t)     (the carried s_{t-1} is never masked)
    RNN  s_t = tanh(W_x (x_t ∘ zx) + W_s (s_{t-1} ∘ zs) + b)

Masks, already scaled (entries 0 or 1/(1 − p)), each optional: zx (B, G, k), zs (B, G, n) with
G = 3 for the GRU in the order (Input, Reset, Memory) and G = 1 for the RNN, the same at every
step; zm (B, T, n), GRU only, per step; zw: array name → mask of that weight matrix's shape,
applied as W ∘ zw[name] (gradients are with respect to the unmasked array).

How the kernels are fast (as `native/lstm.cpp`): the input products of all steps are one
product before the loop (one per gate with zx); a step is one state product (per gate with zs,
in one batched BLAS call) and one vectorized element-wise pass; the rows run in blocks, one per
thread, each a whole time loop; the backward is one product and one pass per step, and the
weight gradients are products after the loop; buffers come from a pool. Ragged batches are run
like packed sequences (sorted by decreasing length, step t on the rows still alive).

Where the native kernels cannot run (CUDA, no compiler, WLNET_NO_NATIVE=1), the same
recurrences run as plain torch loops (`_gru_torch`, `_rnn_torch`), differentiated by autograd.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import native

GRU_GATES = ("Input", "Reset", "Memory")  # the order of the masks' gate axis
# The arrays in the order the native kernel takes them: input weights, state weights, biases.
GRU_NAMES = tuple(f"{g}Gate{part}" for part in ("InputWeights", "StateWeights", "Biases") for g in GRU_GATES)
RNN_NAMES = ("InputWeights", "StateWeights", "Biases")


def _weight_masks(zw, names, like):
    """The weight masks in kernel order (an empty tensor where an array has none), or [] for none."""
    if not zw:
        return []
    none = like.new_empty(0)
    return [zw[name] if name in zw else none for name in names]


class _GRUNative(torch.autograd.Function):
    """x (T, B, k) time-major, rows sorted by decreasing length; s0 (B, n) | None; zx (B, 3, k),
    zs (B, 3, n), zm (B, T, n) | None; zw: 6 weight masks (`_weight_masks`) or []; batch_sizes:
    rows alive at each step or [] (all B); arrays in `GRU_NAMES` order → out (T, B, n), s_T (B, n)."""

    @staticmethod
    def forward(ctx, x, s0, zx, zs, zm, zw, batch_sizes, *arrays):
        S, s_T, G, AM, wx, ws, XI, SZ = native.get().gru_forward(x, s0, list(arrays), zw, zx, zs, zm, batch_sizes)
        ctx.save_for_backward(x, wx, ws, zx, zs, zm, G, AM, S, XI, SZ)
        ctx.zw, ctx.batch_sizes = zw, batch_sizes
        return S[1:], s_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT):
        x, wx, ws, zx, zs, zm, G, AM, S, XI, SZ = ctx.saved_tensors
        need = ctx.needs_input_grad
        grads = native.get().gru_backward(g_out, g_sT, x, wx, ws, ctx.zw, zx, zs, zm, G, AM, S, XI, SZ,
                                          ctx.batch_sizes, [need[0], need[1], any(need[7:])])
        return (*grads[:2], None, None, None, None, None, *grads[2:])


class _RNNNative(torch.autograd.Function):
    """As `_GRUNative`, for the basic RNN: zx (B, 1, k), zs (B, 1, n) | None; zw: 2 masks or [];
    arrays in `RNN_NAMES` order."""

    @staticmethod
    def forward(ctx, x, s0, zx, zs, zw, batch_sizes, *arrays):
        S, s_T, wx, ws, XI, SZ = native.get().rnn_forward(x, s0, list(arrays), zw, zx, zs, batch_sizes)
        ctx.save_for_backward(x, wx, ws, zx, zs, S, XI, SZ)
        ctx.zw, ctx.batch_sizes = zw, batch_sizes
        return S[1:], s_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT):
        x, wx, ws, zx, zs, S, XI, SZ = ctx.saved_tensors
        need = ctx.needs_input_grad
        grads = native.get().rnn_backward(g_out, g_sT, x, wx, ws, ctx.zw, zx, zs, S, XI, SZ, ctx.batch_sizes,
                                          [need[0], need[1], any(need[6:])])
        return (*grads[:2], None, None, None, None, *grads[2:])


def _gru_torch(x, s0, arrays, zx, zs, zm, alive):
    """The GRU as a torch loop (autograd differentiates it). x (T, B, k); s0 (B, n); arrays
    already masked; alive (T, B, 1) bool or None → out (T, B, n), s_T."""
    a = arrays
    s, out = s0, []
    for t in range(x.shape[0]):
        xg = [x[t] if zx is None else x[t] * zx[:, j] for j in range(3)]
        sg = [s if zs is None else s * zs[:, j] for j in range(3)]
        z = torch.sigmoid(xg[0] @ a["InputGateInputWeights"].T + sg[0] @ a["InputGateStateWeights"].T
                          + a["InputGateBiases"])
        r = torch.sigmoid(xg[1] @ a["ResetGateInputWeights"].T + sg[1] @ a["ResetGateStateWeights"].T
                          + a["ResetGateBiases"])
        m = torch.tanh(xg[2] @ a["MemoryGateInputWeights"].T + a["MemoryGateBiases"]
                       + r * (sg[2] @ a["MemoryGateStateWeights"].T))
        s_new = (1 - z) * s + z * (m if zm is None else m * zm[:, t])
        s = s_new if alive is None else torch.where(alive[t], s_new, s)
        out.append(s_new if alive is None else torch.where(alive[t], s_new, 0))
    return torch.stack(out), s


def _rnn_torch(x, s0, arrays, zx, zs, alive):
    """The basic RNN as a torch loop; as `_gru_torch`."""
    wx, ws, b = (arrays[name] for name in RNN_NAMES)
    xin = x if zx is None else x * zx[:, 0]
    pre_x = xin @ wx.T + b  # (T, B, n): the input products of all steps
    s, out = s0, []
    for t in range(x.shape[0]):
        s_new = torch.tanh(pre_x[t] + (s if zs is None else s * zs[:, 0]) @ ws.T)
        s = s_new if alive is None else torch.where(alive[t], s_new, s)
        out.append(s_new if alive is None else torch.where(alive[t], s_new, 0))
    return torch.stack(out), s


def _run(x, lengths, s0, masks, call):
    """The sort/unsort glue of a ragged batch. x (B, T, k); lengths (B,) or None; s0 (B, n) or
    None; masks: (mask (B, ...) or None, per_step) pairs, per-step ones (B, T, n) cut to the
    longest length; call(x_tm, s0, masks, batch_sizes) → out (T', B, n), s_T (B, n) on rows
    sorted by decreasing length (batch_sizes: rows alive at each step, [] for all)
    → out (B, T, n) with zeros past each sequence's end, s_T (B, n)."""
    B, T, _ = x.shape
    if lengths is not None:
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"lengths must be {B} integers in 1..{T}; got {lengths.tolist()}")
        if bool((lengths == T).all()):
            lengths = None
    if lengths is None:
        out, s_T = call(x.transpose(0, 1).contiguous(), s0, [z for z, _ in masks], [])
        return out.transpose(0, 1), s_T

    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    Tm = int(sorted_lengths[0])
    batch_sizes = (sorted_lengths.unsqueeze(0) > torch.arange(Tm).unsqueeze(1)).sum(1).tolist()
    order_d = order.to(x.device)
    back = torch.argsort(order).to(x.device)

    def sort(z):  # (B, ...) → rows sorted
        return None if z is None else z.index_select(0, order_d)

    zs = [sort(z[:, :Tm] if per_step and z is not None else z) for z, per_step in masks]
    out, s_T = call(sort(x[:, :Tm]).transpose(0, 1).contiguous(), sort(s0), zs, batch_sizes)
    out = out.index_select(1, back).transpose(0, 1)  # (B, Tm, n)
    if Tm < T:
        out = torch.nn.functional.pad(out, (0, 0, 0, T - Tm))
    return out, s_T.index_select(0, back)


def _alive(batch_sizes, T, B, device):
    """(T, B, 1) bool: rows alive at each step (sorted rows), or None for all."""
    if not batch_sizes:
        return None
    return (torch.arange(B).unsqueeze(0) < torch.tensor(batch_sizes).unsqueeze(1)).unsqueeze(2).to(device)


def gru(x, lengths, arrays: dict, s0=None, zx=None, zs=None, zm=None, zw=None):
    """The masked GRU. x (B, T, k) float32/float64; lengths (B,) int64 CPU or None (all T);
    s0 (B, n) or None (zeros); zx (B, 3, k), zs (B, 3, n) (gates Input, Reset, Memory),
    zm (B, T, n) or None; zw: array name → weight mask, or None → out (B, T, n), s_T (B, n).

    Outputs past a sequence's end are zero; s_T is each sequence's state at its own last step.
    Differentiable in x, s0 and the 9 arrays."""
    B, T, k = x.shape
    n = arrays["InputGateBiases"].shape[0]
    if native.usable(x) is not None:
        arrs = [arrays[name] for name in GRU_NAMES]
        zw_list = _weight_masks(zw, GRU_NAMES[:6], x)

        def call(x_tm, s0, masks, batch_sizes):
            zx, zs, zm = masks
            if not torch.is_grad_enabled():  # no graph to record: the kernel itself
                S, s_T = native.get().gru_forward(x_tm, s0, arrs, zw_list, zx, zs, zm, batch_sizes)[:2]
                return S[1:], s_T
            return _GRUNative.apply(x_tm, s0, zx, zs, zm, zw_list, batch_sizes, *arrs)
    else:
        masked = {name: v * zw[name] if zw and name in zw else v for name, v in arrays.items()}

        def call(x_tm, s0, masks, batch_sizes):
            zx, zs, zm = masks
            s0 = x_tm.new_zeros(x_tm.shape[1], n) if s0 is None else s0
            return _gru_torch(x_tm, s0, masked, zx, zs, zm, _alive(batch_sizes, *x_tm.shape[:2], x.device))

    return _run(x, lengths, s0, [(zx, False), (zs, False), (zm, True)], call)


def rnn(x, lengths, arrays: dict, s0=None, zx=None, zs=None, zw=None):
    """The masked basic RNN. x (B, T, k) float32/float64; lengths (B,) int64 CPU or None (all T);
    s0 (B, n) or None (zeros); zx (B, 1, k), zs (B, 1, n) or None; zw: array name → weight
    mask, or None → out (B, T, n), s_T (B, n). Contract as `gru`; differentiable in x, s0 and
    the 3 arrays."""
    B, T, k = x.shape
    n = arrays["Biases"].shape[0]
    if native.usable(x) is not None:
        arrs = [arrays[name] for name in RNN_NAMES]
        zw_list = _weight_masks(zw, RNN_NAMES[:2], x)

        def call(x_tm, s0, masks, batch_sizes):
            zx, zs = masks
            if not torch.is_grad_enabled():
                S, s_T = native.get().rnn_forward(x_tm, s0, arrs, zw_list, zx, zs, batch_sizes)[:2]
                return S[1:], s_T
            return _RNNNative.apply(x_tm, s0, zx, zs, zw_list, batch_sizes, *arrs)
    else:
        masked = {name: v * zw[name] if zw and name in zw else v for name, v in arrays.items()}

        def call(x_tm, s0, masks, batch_sizes):
            zx, zs = masks
            s0 = x_tm.new_zeros(x_tm.shape[1], n) if s0 is None else s0
            return _rnn_torch(x_tm, s0, masked, zx, zs, _alive(batch_sizes, *x_tm.shape[:2], x.device))

    return _run(x, lengths, s0, [(zx, False), (zs, False)], call)
