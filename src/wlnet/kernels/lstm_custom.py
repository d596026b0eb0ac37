"""The LSTM's "custom" kernel (`cells.LSTM.custom`): its masked recurrence in eager torch with a
hand-written backward, for the dropout masks that torch's fused kernel cannot take where the
native kernel (`native_cells.lstm`) cannot run (CUDA, no compiler, WLNET_NO_NATIVE=1).

Symbols: B batch, T length, k input size, n output size. The recurrence is the LSTM's with three
optional masks (see `kernels.dropout` for how they are drawn):

    zx (B, 4, k)  VariationalInput   gate g sees x_t ∘ zx[b, g]        same at every step
    zs (B, 4, n)  VariationalState   gate g sees s_{t-1} ∘ zs[b, g]    same at every step;
                                     the carried state s itself is never masked
    zm (B, T, n)  StateUpdate        c_t = f_t ∘ c_{t-1} + i_t ∘ (m_t ∘ zm[b, t])

The 4-axis of zx and zs is in Wolfram order (Input, Output, Forget, Memory) = `cells.LSTM.gates`.

Why a second path beside the cell's reference step (`recurrence.unroll`, which runs the same
recurrence with autograd): a training step with VariationalState and StateUpdate at p = 0.3,
WLNET_NO_NATIVE=1, 2 shared CPU cores (load ~5), best of 5 — n = 128, B = 64, T = 50, k = 32:
110-150 ms here against 560-730 ms for the unroll; n = 32, B = 64, T = 32, k = 16: 9-18 ms against
40-180 ms. That is, 4-5× (and the unroll's autograd graph keeps every step's intermediates). How:
- `_LSTMCustom`: eager torch, written in few ops on
  preallocated buffers (`out=`, in-place), since a small op costs a few µs on CPU:
  - one batched product per step, (4, B, k+n) × (4, k+n, n), on the step input [x_t | s_{t-1}]
    as each gate sees it (the same for all gates without zx and zs), and in the backward one
    product gives dWx and dWs together;
  - one `sigmoid_` for all four gates: tanh(u) = 2σ(2u) − 1, and tanh is ~3× slower than
    sigmoid in ATen. The factors 2 are folded into a scaled copy of the weights and into the
    buffers: the loop carries C = 2c, TC = σ(2c) − 1/2 = tanh(c)/2 and s/2 (for which the state
    weights are doubled), so a step is: product, sigmoid_, three ops for c, three for s;
  - a hand-written backward: the step-independent factors of the chain rule are computed for
    all steps at once, into the gradient buffer itself; the reverse loop is one product and
    four in-place element-wise ops per step (three more with zs);
  - the big buffers of a call are views of one allocation (`_arena`), which keeps them from
    being page-faulted in afresh at every call.
Internally the gates are stacked in the order (Output, Input, Forget, Memory) = `ORDER`, the
native kernel's.

Speed (bench/dropout.py, 2 CPU cores, p = 0.3), against torch's fused no-dropout kernel: eager
torch, forward ~2× and training step ~1.5-1.7× at n = 128 (its ~8 small ops per step cost about
as much as the matrix product).

Ragged batches are run like packed sequences: sorted by decreasing length, step t works on
the first `batch_sizes[t]` rows only, so a finished sequence's state stays frozen and its
outputs stay zero.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from . import native, native_cells
from .dropout import mask_arrays
from .ragged import checked_lengths, run_sorted

# Internal gate order (the native kernel's too) and where each gate sits in Wolfram's order `cells.LSTM.gates`.
ORDER = native_cells.LSTM_ORDER
_FROM_WOLFRAM = [1, 0, 2, 3]  # ORDER[j] == GATES[_FROM_WOLFRAM[j]]


def stack_arrays(a: dict):
    """The 12 arrays → W (4, n, k+n) = [W_gx | W_gs] and b (4, n), gates in `ORDER`."""
    w = torch.cat([torch.stack([a[f"{g}GateInputWeights"] for g in ORDER]),
                   torch.stack([a[f"{g}GateStateWeights"] for g in ORDER])], 2)
    b = torch.stack([a[f"{g}GateBiases"] for g in ORDER])
    return w, b


def _per_step(views, batch_sizes, axis=0):
    """Per-step views (made in bulk by `unbind`), each cut to the rows alive at its step."""
    if batch_sizes is None:
        return views
    return [v.narrow(axis, 0, bt) for v, bt in zip(views, batch_sizes)]


def _arena(shapes: dict, new, opts) -> dict:
    """Buffers of the given shapes, as views of one allocation. One big block rather than one
    per buffer keeps glibc from handing the memory back to the OS after each call and faulting
    it in again at the next (~1 µs per 4 KiB page: 2-5 ms a call at n = 128, B = 64, T = 50)."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = new(sum(sizes), **opts)
    return {name: v.view(shape) for (name, shape), v in zip(shapes.items(), flat.split(sizes))}


class _LSTMCustom(torch.autograd.Function):
    """The recurrence on time-major data sorted by decreasing length, gates in `ORDER`.

    x (T, B, k); s0, c0 (B, n); w (4, n, k+n); b (4, n); zx (4, B, k) | None;
    zs (4, B, n) | None; zm4 (T, B, n) = 4 zm | None; batch_sizes: T ints (rows alive at each step)
    or None (all B); lengths (B,) int64 on x's device or None → out (T, B, n), s_T, c_T (B, n).

    Buffers: G (T, 4, B, n) holds σ of each gate's pre-activation (σ(2 pre) for the memory
    gate); the step input XI is (4, T, B, k+n) with zx or zs (one per gate), else
    (T+1, B, k+n) with s_t/2 in XI[t+1, :, k:]; C (T+1, B, n) = 2c; TC (T, B, n) = tanh(c)/2;
    ME (T, B, n) = 2 m ∘ zm (with zm only); S (T+1, B, n) = s/2."""

    @staticmethod
    def forward(ctx, x, s0, c0, w, b, zx, zs, zm4, batch_sizes, lengths):
        T, B, k = x.shape
        n = w.shape[1]
        per_gate = zx is not None or zs is not None
        ragged = batch_sizes is not None
        new = torch.zeros if ragged else torch.empty  # ragged: rows past the end stay zero
        opts = {"dtype": x.dtype, "device": x.device}

        scale = torch.ones(4, 1, k + n, **opts)
        scale[3] = 2  # memory gate: σ(2 pre)
        scale[:, :, k:] *= 2  # the loop carries s/2
        wfT = (w * scale).transpose(1, 2)  # (4, k+n, n)
        bf = (b * scale[:, :, 0]).unsqueeze(1)  # (4, 1, n)
        shapes = {"G": (T, 4, B, n), "C": (T + 1, B, n), "TC": (T, B, n),
                  "XI": (4, T, B, k + n) if per_gate else (T + 1, B, k + n)}
        if per_gate:
            shapes["S"] = (T + 1, B, n)
        if zm4 is not None:
            shapes["ME"] = (T, B, n)
        buf = _arena(shapes, new, opts)
        G, C, TC, XI, ME = buf["G"], buf["C"], buf["TC"], buf["XI"], buf.get("ME")
        if per_gate:
            S = buf["S"]
            if zx is not None:
                torch.mul(x, zx.unsqueeze(1), out=XI[..., :k])
            else:
                XI[..., :k] = x
        else:
            XI[:T, :, :k] = x
            S = XI[:, :, k:]
        torch.mul(s0, 0.5, out=S[0])
        torch.mul(c0, 2, out=C[0])
        half = torch.tensor(0.5, **opts)  # a 0-dim operand: cheaper per op than a Python float

        def steps(views, axis=0):
            return _per_step(views, batch_sizes, axis)

        g_ = steps(G.unbind(0), 1)  # (4, bt, n)
        o_, i_, f_, sm_ = (steps(G[:, j].unbind(0)) for j in range(4))  # (bt, n)
        if per_gate:
            xi_ = steps(XI.unbind(1), 1)  # (4, bt, k+n)
            xis_ = steps(XI[..., k:].unbind(1), 1)  # (4, bt, n): the state part
            zs_ = steps([zs] * T, 1) if zs is not None else None
        else:
            xi_ = [v.expand(4, -1, -1) for v in steps(XI[:T].unbind(0))]
        s_prev, s_next = steps(S[:-1].unbind(0)), steps(S[1:].unbind(0))
        c_prev, c_next = steps(C[:-1].unbind(0)), steps(C[1:].unbind(0))
        TC_ = steps(TC.unbind(0))
        if zm4 is not None:  # ME = 2 m ∘ zm = −2 zm + 4 zm σ(2 pre_m)
            ME_, me_a, me_z = steps(ME.unbind(0)), steps((zm4 * -0.5).unbind(0)), steps(zm4.unbind(0))

        for t in range(T):
            if zs is not None:
                torch.mul(s_prev[t], zs_[t], out=xis_[t])
            elif per_gate:
                xis_[t].copy_(s_prev[t])
            torch.baddbmm(bf, xi_[t], wfT, out=g_[t]).sigmoid_()
            ct = torch.mul(f_[t], c_prev[t], out=c_next[t])  # 2c_t = f 2c_{t-1} + i 2m (∘ zm)
            if zm4 is None:
                ct.addcmul_(i_[t], sm_[t], value=4).sub_(i_[t], alpha=2)  # 2m = 4σ(2 pre_m) − 2
            else:
                ct.addcmul_(i_[t], torch.addcmul(me_a[t], sm_[t], me_z[t], out=ME_[t]))
            tc = torch.sigmoid(ct, out=TC_[t]).sub_(half)
            torch.mul(o_[t], tc, out=s_next[t])

        if ragged:
            rows = torch.arange(B, device=x.device)
            s_T, c_T = S[lengths, rows] * 2, C[lengths, rows] * 0.5
        else:
            s_T, c_T = S[T] * 2, C[T] * 0.5
        ctx.save_for_backward(w, G, C, TC, ME, XI, zx, zs, zm4, lengths)
        ctx.batch_sizes = batch_sizes
        return S[1:] * 2, s_T, c_T

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_sT, g_cT):
        w, G, C, TC, ME, XI, zx, zs, zm4, lengths = ctx.saved_tensors
        batch_sizes = ctx.batch_sizes
        ragged = batch_sizes is not None
        T, B, n = TC.shape
        k = w.shape[2] - n
        per_gate = zx is not None or zs is not None
        opts = {"dtype": TC.dtype, "device": TC.device}

        # The step-independent factors of the chain rule, for all steps at once, are written
        # where the loop multiplies them (in place) into dG = ∂L/∂pre (T, B, 4, n): ∂s/∂pre_o and
        # ∂c/∂pre of the Input, Forget and Memory gates; beside them P = ∂s/∂c (T, B, n).
        o, i, f, sm = G.unbind(1)  # (T, B, n)
        buf = _arena({"dG": (T, B, 4, n), "P": (T, B, n), "m": (T, B, n)}, torch.empty, opts)
        dG, P, m = buf["dG"], buf["P"], buf["m"]
        d_o, d_i, d_f, d_m = dG.unbind(2)
        sig3 = G[:, :3]
        torch.addcmul(sig3, sig3, sig3, value=-1, out=dG[:, :, :3].transpose(1, 2))  # σ(1 − σ)
        d_o.mul_(TC).mul_(2)  # tanh(c) σ'_o
        torch.mul(sm, 2, out=m).sub_(1)
        if zm4 is None:
            d_i.mul_(m)  # m σ'_i
        else:
            d_i.mul_(ME).mul_(0.5)  # (m ∘ zm) σ'_i
        d_f.mul_(C[:-1]).mul_(0.5)  # c_{t-1} σ'_f
        torch.addcmul(i, i, m.mul_(m), value=-1, out=d_m)  # i (1 − m²)
        if zm4 is not None:
            d_m.mul_(zm4).mul_(0.25)  # ∘ zm
        torch.mul(TC, TC, out=P)
        torch.addcmul(o, o, P, value=-4, out=P)  # o (1 − tanh² c)
        if ragged:  # rows past a sequence's end get no gradient (and their factors may be garbage)
            dead = torch.arange(B).unsqueeze(0) >= torch.tensor(batch_sizes).unsqueeze(1)  # (T, B)
            dG.masked_fill_(dead.to(dG.device)[:, :, None, None], 0)

        # dS[t]: ∂L/∂s_t from outside the recurrence (the output; s_T at each row's last step).
        if ragged:
            dS = g_out.clone()
            dS.index_put_((lengths - 1, torch.arange(B, device=TC.device)), g_sT, accumulate=True)
        else:
            dS = g_out
        dc = g_cT.clone(memory_format=torch.contiguous_format)
        ws = w[:, :, k:]  # (4, n, n)
        ws_cat = ws.reshape(4 * n, n)

        def steps(views, axis=0):
            return _per_step(views, batch_sizes, axis)

        dgo_, dgifm_ = steps(dG[:, :, 0].unbind(0)), steps(dG[:, :, 1:].unbind(0))
        dgn_ = dG.unbind(0)
        dgn_ = steps(dgn_[1:] + dgn_[:1])  # dG[t + 1] cut to the rows alive at t (dummy at T − 1)
        P_, f_, dS_ = (steps(v.unbind(0)) for v in (P, f, dS))
        ds = torch.empty(B, n, **opts)
        ds_, dc_ = steps([ds] * T), steps([dc] * T)
        if zs is not None:
            tmp_, zs_ = steps([torch.empty(4, B, n, **opts)] * T, 1), steps([zs] * T, 1)

        for t in range(T - 1, -1, -1):
            dsv, dcv = ds_[t], dc_[t]
            if t == T - 1:
                if ragged:
                    dsv.copy_(dS_[t])
                else:
                    torch.add(dS_[t], g_sT, out=dsv)
            elif zs is not None:
                tv = torch.bmm(dgn_[t].transpose(0, 1), ws, out=tmp_[t]).mul_(zs_[t])
                torch.sum(tv, 0, out=dsv).add_(dS_[t])
            else:
                torch.addmm(dS_[t], dgn_[t].view(-1, 4 * n), ws_cat, out=dsv)
            dcv.addcmul_(dsv, P_[t])
            dgo_[t].mul_(dsv)
            dgifm_[t].mul_(dcv.unsqueeze(1))
            dcv.mul_(f_[t])

        need = ctx.needs_input_grad
        dGf = dG.view(T * B, 4 * n)
        dG4 = dG.view(T * B, 4, n).transpose(0, 1)  # (4, TB, n), strided
        dx = ds0 = dw = db = None
        if need[0]:
            if zx is not None:
                dx = (torch.bmm(dG4, w[:, :, :k]).view(4, T, B, k) * zx.unsqueeze(1)).sum(0)
            else:
                dx = torch.mm(dGf, w[:, :, :k].reshape(4 * n, k)).view(T, B, k)
        if need[1]:
            if zs is not None:
                ds0 = (torch.bmm(dG[0].transpose(0, 1), ws) * zs).sum(0)
            else:
                ds0 = torch.mm(dG[0].view(B, 4 * n), ws_cat)
        if need[3]:
            if per_gate:
                dw = torch.bmm(dG4.transpose(1, 2), XI.view(4, T * B, k + n))
            else:
                dw = torch.mm(dGf.t(), XI[:T].view(T * B, k + n)).view(4, n, k + n)
            dw[:, :, k:] *= 2  # XI holds s/2
        if need[4]:
            db = dGf.sum(0).view(4, n)
        return dx, ds0, dc if need[2] else None, dw, db, None, None, None, None, None


def run(x, lengths, arrays: dict, s0=None, c0=None, zx=None, zs=None, zm=None, zw=None, use_native=None):
    """The masked recurrence. x (B, T, k); lengths (B,) int64 CPU or None (all T);
    s0, c0 (B, n) or None (zeros); masks zx (B, 4, k), zs (B, 4, n), zm (B, T, n) or None
    (4-axis in `cells.LSTM.gates` order); zw: array name → mask for the weight matrices, or None
    → out (B, T, n), s_T (B, n), c_T (B, n).

    Same contract as `recurrence.fused`: outputs past a sequence's end are zero and each final state
    is taken at the sequence's own last step. Differentiable in x, s0, c0 and the 12 arrays.
    Runs the native kernel (`native_cells.lstm`) with use_native (None: where `kernels.native`
    is usable), else the pure-torch `_LSTMCustom`."""
    B, T, k = x.shape
    if use_native is None:
        use_native = native.usable(x) is not None
    if use_native:
        return native_cells.lstm(x, lengths, arrays, s0, c0, zx, zs, zm, zw)
    lengths = checked_lengths(lengths, B, T)

    n = arrays["InputGateBiases"].shape[0]
    s0 = x.new_zeros(B, n) if s0 is None else s0
    c0 = x.new_zeros(B, n) if c0 is None else c0
    w, b = stack_arrays(mask_arrays(arrays, zw) if zw else arrays)
    perm = torch.tensor(_FROM_WOLFRAM, device=x.device)

    def call(x_tm, states, masks, batch_sizes, sorted_lengths):  # masks → time/gate-major, gates in ORDER
        zx, zs, zm = masks
        zx, zs = (None if z is None else z.index_select(1, perm).transpose(0, 1).contiguous() for z in (zx, zs))
        zm4 = None
        if zm is not None:
            zm4 = torch.mul(zm.transpose(0, 1), 4, out=zm.new_empty(zm.shape[1], *zm.shape[::2]))
        out, s_T, c_T = _LSTMCustom.apply(x_tm, *states, w, b, zx, zs, zm4, batch_sizes or None,
                                          None if sorted_lengths is None else sorted_lengths.to(x.device))
        return out, (s_T, c_T)

    out, (s_T, c_T) = run_sorted(x, lengths, (s0, c0), ((zx, False), (zs, False), (zm, True)), call)
    return out, s_T, c_T


def kernel(cell, x, lengths, arrays, states, masks):
    """The LSTM's "custom" kernel (`kernels.cells`): `run` in eager torch."""
    out, s, c = run(x, lengths, arrays, *states, masks.x, masks.s, masks.m, masks.weights, use_native=False)
    return out, (s, c)
