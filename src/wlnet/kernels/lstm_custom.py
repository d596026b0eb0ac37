"""The custom LSTM recurrence for the dropout masks that torch's fused kernel cannot take.

Symbols: B batch, T length, k input size, n output size. The recurrence is SPEC §2 with three
optional masks (see `kernels.dropout` for how they are drawn):

    zx (B, 4, k)  VariationalInput   gate g sees x_t ∘ zx[b, g]        same at every step
    zs (B, 4, n)  VariationalState   gate g sees s_{t-1} ∘ zs[b, g]    same at every step;
                                     the carried state s itself is never masked
    zm (B, T, n)  StateUpdate        c_t = f_t ∘ c_{t-1} + i_t ∘ (m_t ∘ zm[b, t])

The 4-axis of zx and zs is in Wolfram order (Input, Output, Forget, Memory) = `lstm.GATES`.

How it is fast: the input contributions of all steps are one (batched) matrix product before
the loop; each step is one state product plus a few in-place element-wise ops on preallocated
buffers; the backward is written by hand (`_LSTMCustom`): a reverse loop of one product and
four element-wise ops per step, with every weight, bias and input gradient one big product
after the loop. Internally the gates are stacked in the order (Output, Input, Forget, Memory):
the three sigmoid gates are contiguous (one `sigmoid_` per step) and so are the three gates
driven by dc in the backward (one `mul` per step).

Ragged batches are run like packed sequences: sorted by decreasing length, step t works on
the first `batch_sizes[t]` rows only, so a finished sequence's state stays frozen and its
outputs stay zero.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Internal gate order and where each gate sits in Wolfram's order `lstm.GATES`.
ORDER = ("Output", "Input", "Forget", "Memory")
_FROM_WOLFRAM = [1, 0, 2, 3]  # ORDER[j] == GATES[_FROM_WOLFRAM[j]]


def stack_arrays(a: dict):
    """The 12 arrays → Wx (4, n, k), Ws (4, n, n), b (4, n) in the internal gate order."""
    wx = torch.stack([a[f"{g}GateInputWeights"] for g in ORDER])
    ws = torch.stack([a[f"{g}GateStateWeights"] for g in ORDER])
    b = torch.stack([a[f"{g}GateBiases"] for g in ORDER])
    return wx, ws, b


class _LSTMCustom(torch.autograd.Function):
    """Time-major, sorted (decreasing length) recurrence with masks in internal gate order.

    x (T, B, k); s0, c0 (B, n); wx (4, n, k); ws (4, n, n); b (4, n); zx (4, B, k) or None;
    zs (4, B, n) or None; zm (T, B, n) or None; batch_sizes: list of T ints or None (all B);
    lengths: (B,) int64 on x's device or None → out (T, B, n), s_T (B, n), c_T (B, n).

    Gate buffer layout: without zs (T, B, 4, n), so step t is one (B, 4n) addmm; with zs
    (4, T, B, n), so step t is one (4, B, n) baddbmm and the weight gradient one bmm."""

    @staticmethod
    def forward(ctx, x, s0, c0, wx, ws, b, zx, zs, zm, batch_sizes, lengths):
        T, B, k = x.shape
        n = ws.shape[1]
        gm = zs is not None  # gate-major layout
        xf = x.reshape(T * B, k)
        xm = None
        if zx is not None:
            xm = x.unsqueeze(0) * zx.unsqueeze(1)  # (4, T, B, k)
            g4 = torch.baddbmm(b.unsqueeze(1), xm.view(4, T * B, k), wx.transpose(1, 2))  # (4, TB, n)
            G = g4.view(4, T, B, n) if gm else g4.view(4, T, B, n).permute(1, 2, 0, 3).contiguous()
        elif gm:
            G = torch.baddbmm(b.unsqueeze(1), xf.expand(4, T * B, k), wx.transpose(1, 2)).view(4, T, B, n)
        else:
            G = torch.addmm(b.view(4 * n), xf, wx.view(4 * n, k).t()).view(T, B, 4, n)

        ragged = batch_sizes is not None
        new = torch.zeros if ragged else torch.empty
        S = new(T + 1, B, n, dtype=x.dtype, device=x.device)  # S[t + 1] = s_t, S[0] = s0
        C = torch.empty(T + 1, B, n, dtype=x.dtype, device=x.device)
        S[0] = s0
        C[0] = c0
        TC = torch.empty(T, B, n, dtype=x.dtype, device=x.device)  # tanh(c_t)
        ME = torch.empty(T, B, n, dtype=x.dtype, device=x.device) if zm is not None else None
        SM = torch.empty(4, T, B, n, dtype=x.dtype, device=x.device) if gm else None
        wsT = ws.transpose(1, 2) if gm else ws.view(4 * n, n).t()  # (4, n, n) / (n, 4n)

        for t in range(T):
            bt = batch_sizes[t] if ragged else B
            s_prev = S[t, :bt]
            if gm:
                gt = G[:, t, :bt]  # (4, bt, n)
                smt = torch.mul(s_prev, zs[:, :bt], out=SM[:, t, :bt])
                gt.baddbmm_(smt, wsT)
                gt[:3].sigmoid_()
                o, i, f, m = gt
            else:
                gt = G[t, :bt]  # (bt, 4, n)
                gt.view(bt, 4 * n).addmm_(s_prev, wsT)
                gt[:, :3].sigmoid_()
                o, i, f, m = gt.unbind(1)
            m.tanh_()
            if zm is not None:
                m = torch.mul(m, zm[t, :bt], out=ME[t, :bt])
            ct = torch.mul(f, C[t, :bt], out=C[t + 1, :bt])
            ct.addcmul_(i, m)
            torch.mul(o, torch.tanh(ct, out=TC[t, :bt]), out=S[t + 1, :bt])

        if ragged:
            rows = torch.arange(B, device=x.device)
            s_T, c_T = S[lengths, rows], C[lengths, rows]
        else:
            s_T, c_T = S[T].clone(), C[T].clone()
        ctx.save_for_backward(x, wx, ws, G, S, C, TC, ME, SM, xm, zx, zs, zm, lengths)
        ctx.batch_sizes = batch_sizes
        return S[1:], s_T, c_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT, g_cT):
        x, wx, ws, G, S, C, TC, ME, SM, xm, zx, zs, zm, lengths = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        ragged = batch_sizes is not None
        T, B, k = x.shape
        n = ws.shape[1]
        gm = zs is not None

        # Gate views (T, B, n) / (T, B, 3, n) and the step-independent factors of the chain rule.
        if gm:
            o, i, f, m = G
            sig3 = G[:3]
        else:
            o, i, f, m = G.unbind(2)
            sig3 = G[:, :, :3]
        dsig = torch.addcmul(sig3, sig3, sig3, value=-1)  # σ' = σ(1 − σ), gates O, I, F
        d_o, d_i, d_f = (dsig.unbind(0) if gm else dsig.unbind(2))
        R = TC * d_o  # ∂s/∂pre_o = tanh(c) σ'(pre_o)
        P = torch.addcmul(o, o, TC * TC, value=-1)  # ∂s/∂c = o (1 − tanh²c)
        Q = torch.empty(3, T, B, n, dtype=x.dtype, device=x.device) if gm else \
            torch.empty(T, B, 3, n, dtype=x.dtype, device=x.device)  # ∂c/∂pre for I, F, M
        qi, qf, qm = Q.unbind(0) if gm else Q.unbind(2)
        torch.mul(ME if zm is not None else m, d_i, out=qi)
        torch.mul(C[:-1], d_f, out=qf)
        torch.addcmul(i, i, m * m, value=-1, out=qm)
        if zm is not None:
            qm.mul_(zm)

        # dS[t] = ∂L/∂s_t from outside the recurrence: the output and, at each row's last step, s_T.
        if ragged:
            dS = g_out.clone()
            dS.index_put_((lengths - 1, torch.arange(B, device=x.device)), g_sT, accumulate=True)
        else:
            dS = g_out
        dG = (torch.zeros if ragged else torch.empty)(G.shape, dtype=x.dtype, device=x.device)
        dc = g_cT.clone()
        ds = torch.empty(B, n, dtype=x.dtype, device=x.device)
        tmp = torch.empty(4, B, n, dtype=x.dtype, device=x.device) if gm else None
        ws_cat = ws.view(4 * n, n)

        for t in range(T - 1, -1, -1):
            bt = batch_sizes[t] if ragged else B
            dsv, dcv = ds[:bt], dc[:bt]
            if t == T - 1:
                if ragged:
                    dsv.copy_(dS[t, :bt])
                else:
                    torch.add(dS[t], g_sT, out=dsv)
            elif gm:
                tv = torch.bmm(dG[:, t + 1, :bt], ws, out=tmp[:, :bt])
                tv.mul_(zs[:, :bt])
                torch.sum(tv, 0, out=dsv)
                dsv.add_(dS[t, :bt])
            else:
                torch.addmm(dS[t, :bt], dG[t + 1, :bt].view(bt, 4 * n), ws_cat, out=dsv)
            dcv.addcmul_(dsv, P[t, :bt])
            if gm:
                torch.mul(dsv, R[t, :bt], out=dG[0, t, :bt])
                torch.mul(dcv, Q[:, t, :bt], out=dG[1:, t, :bt])
            else:
                torch.mul(dsv, R[t, :bt], out=dG[t, :bt, 0])
                torch.mul(dcv.unsqueeze(1), Q[t, :bt], out=dG[t, :bt, 1:])
            dcv.mul_(f[t, :bt])

        need = ctx.needs_input_grad
        dx = ds0 = dwx = dws = db = None
        if gm:
            dG4 = dG.view(4, T * B, n)
            if need[1]:
                ds0 = (torch.bmm(dG[:, 0], ws) * zs).sum(0)
            if need[4]:
                dws = torch.bmm(dG4.transpose(1, 2), SM.view(4, T * B, n))
            if need[5]:
                db = dG4.sum(1)
        else:
            dGf = dG.view(T * B, 4 * n)
            dG4 = dG.view(T * B, 4, n).transpose(0, 1)  # (4, TB, n), strided
            if need[1]:
                ds0 = torch.mm(dG[0].view(B, 4 * n), ws_cat)
            if need[4]:
                dws = torch.mm(dGf.t(), S[:-1].reshape(T * B, n)).view(4, n, n)
            if need[5]:
                db = dGf.sum(0).view(4, n)
        if xm is not None:
            if need[3]:
                dwx = torch.bmm(dG4.transpose(1, 2), xm.view(4, T * B, k))
            if need[0]:
                dx = (torch.bmm(dG4, wx).view(4, T, B, k) * zx.unsqueeze(1)).sum(0)
        elif gm:
            if need[3]:
                dwx = torch.bmm(dG4.transpose(1, 2), x.reshape(T * B, k).expand(4, T * B, k))
            if need[0]:
                dx = torch.bmm(dG4, wx).sum(0).view(T, B, k)
        else:
            if need[3]:
                dwx = torch.mm(dGf.t(), x.reshape(T * B, k)).view(4, n, k)
            if need[0]:
                dx = torch.mm(dGf, wx.view(4 * n, k)).view(T, B, k)
        return dx, ds0, dc if need[2] else None, dwx, dws, db, None, None, None, None, None


def run(x, lengths, arrays: dict, s0=None, c0=None, zx=None, zs=None, zm=None):
    """The masked recurrence. x (B, T, k); lengths (B,) int64 CPU or None (all T);
    s0, c0 (B, n) or None (zeros); masks zx (B, 4, k), zs (B, 4, n), zm (B, T, n) or None
    (4-axis in `lstm.GATES` order) → out (B, T, n), s_T (B, n), c_T (B, n).

    Same contract as `lstm.fused`: outputs past a sequence's end are zero and each final state
    is taken at the sequence's own last step. Differentiable in x, s0, c0 and the 12 arrays."""
    B, T, k = x.shape
    wx, ws, b = stack_arrays(arrays)
    n = ws.shape[1]
    s0 = x.new_zeros(B, n) if s0 is None else s0
    c0 = x.new_zeros(B, n) if c0 is None else c0
    perm = torch.tensor(_FROM_WOLFRAM, device=x.device)
    if zx is not None:
        zx = zx.index_select(1, perm)
    if zs is not None:
        zs = zs.index_select(1, perm)

    if lengths is not None and bool((lengths == T).all()):
        lengths = None
    if lengths is None:
        out, s_T, c_T = _LSTMCustom.apply(
            x.transpose(0, 1).contiguous(), s0, c0, wx, ws, b,
            None if zx is None else zx.transpose(0, 1).contiguous(),
            None if zs is None else zs.transpose(0, 1).contiguous(),
            None if zm is None else zm.transpose(0, 1).contiguous(),
            None, None,
        )
        return out.transpose(0, 1), s_T, c_T

    lengths = torch.as_tensor(lengths, dtype=torch.int64, device="cpu")
    if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError(f"lengths must be {B} integers in 1..{T}; got {lengths.tolist()}")
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    Tm = int(sorted_lengths[0])
    batch_sizes = (sorted_lengths.unsqueeze(0) > torch.arange(Tm).unsqueeze(1)).sum(1).tolist()
    order_d = order.to(x.device)
    back = torch.argsort(order).to(x.device)

    def sort_tm(z):  # (B, ...) → sorted, gate-/time-major (·, B, ·)
        return None if z is None else z.index_select(0, order_d).transpose(0, 1)[:Tm].contiguous()

    out, s_T, c_T = _LSTMCustom.apply(
        sort_tm(x[:, :Tm]), s0.index_select(0, order_d), c0.index_select(0, order_d), wx, ws, b,
        sort_tm(zx), sort_tm(zs), sort_tm(zm), batch_sizes, sorted_lengths.to(x.device),
    )
    out = out.index_select(1, back).transpose(0, 1)  # (B, Tm, n)
    if Tm < T:
        out = torch.nn.functional.pad(out, (0, 0, 0, T - Tm))
    return out, s_T.index_select(0, back), c_T.index_select(0, back)
