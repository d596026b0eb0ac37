"""Independent float64 numpy implementations of GatedRecurrentLayer and BasicRecurrentLayer,
forward and hand-derived backward through time, with optional dropout masks.

Source of the formulas: Wolfram's reference pages of GatedRecurrentLayer and BasicRecurrentLayer,
σ the logistic sigmoid, * elementwise, weights out×in so that W·x is the product::

    GRU   z_t = σ(W_ix·x_t + W_is·s_{t-1} + b_i)                input gate
          r_t = σ(W_rx·x_t + W_rs·s_{t-1} + b_r)                reset gate
          m_t = tanh(W_mx·x_t + b_m + r_t*(W_ms·s_{t-1}))       memory
          s_t = (1 - z_t)*m_t + z_t*s_{t-1}                     state = output element t
    Basic s_t = tanh(W_x·x_t + W_s·s_{t-1} + b)

s_0 = 0 unless given. Masks (the Dropout methods, per sequence): zx (G, k) multiplies x_t as
gate g sees it, zs (G, n) multiplies s_{t-1} as gate g sees it (never the carried state), zm
(T, n) multiplies m_t before it is mixed in (GRU only); gates in the order of `GATES`.
VariationalWeights masks are the caller's: pass masked arrays. Nothing here imports torch or
wlnet.

Symbols: T length, k input size, n output size, B batch size, G gates (3 for the GRU, 1 basic).
"""

from __future__ import annotations

import numpy as np

GATES = {"GRU": ("Input", "Reset", "Memory"), "RNN": ("",)}
PARTS = ("InputWeights", "StateWeights", "Biases")


def array_names(cell: str) -> tuple:
    return tuple(f"{g}Gate{p}" if g else p for g in GATES[cell] for p in PARTS)


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def random_arrays(cell: str, n: int, k: int, seed: int, scale: float = 0.5) -> dict:
    """Every array drawn from N(0, scale²), rounded to float32 values (held in float64) so that a
    float32 implementation holds exactly the same numbers."""
    rng = np.random.default_rng(seed)
    shapes = {"InputWeights": (n, k), "StateWeights": (n, n), "Biases": (n,)}
    return {name: (rng.standard_normal(shapes[next(p for p in PARTS if name.endswith(p))]) * scale)
            .astype(np.float32).astype(np.float64) for name in array_names(cell)}


def _masks(cell, T, k, n, zx, zs, zm):
    G = len(GATES[cell])
    return (np.ones((G, k)) if zx is None else np.asarray(zx, np.float64),
            np.ones((G, n)) if zs is None else np.asarray(zs, np.float64),
            np.ones((T, n)) if zm is None else np.asarray(zm, np.float64))


def forward(cell: str, x, a: dict, s0=None, zx=None, zs=None, zm=None, keep: bool = False):
    """One sequence. x (T, k) → out (T, n), s_T (n); with keep=True also the per-step tape."""
    x = np.asarray(x, dtype=np.float64)
    T, k = x.shape
    n = a["Biases" if cell == "RNN" else "InputGateBiases"].shape[0]
    zx, zs, zm = _masks(cell, T, k, n, zx, zs, zm)
    s = np.zeros(n) if s0 is None else np.asarray(s0, dtype=np.float64)
    outs, tape = [], []
    for t in range(T):
        xg, sg = x[t] * zx, s * zs  # (G, k), (G, n): x_t and s_{t-1} as each gate sees them
        if cell == "RNN":
            new = np.tanh(a["InputWeights"] @ xg[0] + a["StateWeights"] @ sg[0] + a["Biases"])
            tape.append((xg, sg, s, new))
        else:
            z = sigmoid(a["InputGateInputWeights"] @ xg[0] + a["InputGateStateWeights"] @ sg[0] + a["InputGateBiases"])
            r = sigmoid(a["ResetGateInputWeights"] @ xg[1] + a["ResetGateStateWeights"] @ sg[1] + a["ResetGateBiases"])
            h = a["MemoryGateStateWeights"] @ sg[2]
            m = np.tanh(a["MemoryGateInputWeights"] @ xg[2] + a["MemoryGateBiases"] + r * h)
            me = m * zm[t]
            new = (1 - z) * me + z * s
            tape.append((xg, sg, s, z, r, h, m, me))
        s = new
        outs.append(s)
    out = np.array(outs).reshape(T, n)
    return (out, s, tape) if keep else (out, s)


def backward(cell: str, x, a: dict, s0=None, w_out=None, w_s=None, zx=None, zs=None, zm=None) -> dict:
    """Gradients of L = sum(w_out*out) + sum(w_s*s_T) for one sequence: {"x": (T, k), "s0": (n),
    and each array name}. Derivation, step t going backwards, ds the gradient reaching s_t::

        Basic  da = ds*(1 - s_t²);  dW_x += da ⊗ x̃,  dW_s += da ⊗ s̃,  db += da
               dx_t = zx*(W_xᵀ da);  ds_{t-1} = zs*(W_sᵀ da)
        GRU    dz = ds*(s_{t-1} - m̃),  dm̃ = ds*(1 - z),  da_m = dm̃*zm*(1 - m²)
               dh = da_m*r,  da_r = da_m*h*r(1-r),  da_z = dz*z(1-z)     (h = W_ms·s̃_m)
               dW_gx += da_g ⊗ x̃_g,  db_g += da_g,  dW_zs += da_z ⊗ s̃_z,  dW_rs += da_r ⊗ s̃_r,
               dW_ms += dh ⊗ s̃_m
               dx_t = Σ_g zx_g*(W_gxᵀ da_g)
               ds_{t-1} = ds*z + zs_z*(W_isᵀ da_z) + zs_r*(W_rsᵀ da_r) + zs_m*(W_msᵀ dh)
    (x̃_g = x_t*zx_g, s̃_g = s_{t-1}*zs_g, m̃ = m*zm_t.)"""
    x = np.asarray(x, dtype=np.float64)
    out, _, tape = forward(cell, x, a, s0, zx, zs, zm, keep=True)
    T, n = out.shape
    k = x.shape[1]
    zx, zs, zm = _masks(cell, T, k, n, zx, zs, zm)
    w_out = np.zeros_like(out) if w_out is None else np.asarray(w_out, dtype=np.float64)
    carry = np.zeros(n) if w_s is None else np.asarray(w_s, dtype=np.float64).copy()
    g = {name: np.zeros_like(v) for name, v in a.items()}
    dx = np.zeros((T, k))
    for t in reversed(range(T)):
        ds = w_out[t] + carry
        if cell == "RNN":
            xg, sg, _, s_new = tape[t]
            da = ds * (1 - s_new ** 2)
            g["InputWeights"] += np.outer(da, xg[0])
            g["StateWeights"] += np.outer(da, sg[0])
            g["Biases"] += da
            dx[t] = zx[0] * (a["InputWeights"].T @ da)
            carry = zs[0] * (a["StateWeights"].T @ da)
            continue
        xg, sg, s_prev, z, r, h, m, me = tape[t]
        dz = ds * (s_prev - me)
        da_m = ds * (1 - z) * zm[t] * (1 - m ** 2)
        dh = da_m * r
        da = {"Input": dz * z * (1 - z), "Reset": da_m * h * r * (1 - r), "Memory": da_m}
        for j, gate in enumerate(GATES["GRU"]):
            g[f"{gate}GateInputWeights"] += np.outer(da[gate], xg[j])
            g[f"{gate}GateBiases"] += da[gate]
            dx[t] += zx[j] * (a[f"{gate}GateInputWeights"].T @ da[gate])
        g["InputGateStateWeights"] += np.outer(da["Input"], sg[0])
        g["ResetGateStateWeights"] += np.outer(da["Reset"], sg[1])
        g["MemoryGateStateWeights"] += np.outer(dh, sg[2])
        carry = (ds * z + zs[0] * (a["InputGateStateWeights"].T @ da["Input"])
                 + zs[1] * (a["ResetGateStateWeights"].T @ da["Reset"]) + zs[2] * (a["MemoryGateStateWeights"].T @ dh))
    g["x"] = dx
    g["s0"] = carry
    return g


def loss(cell: str, x, a: dict, s0=None, w_out=None, w_s=None, zx=None, zs=None, zm=None) -> float:
    """L of `backward`, by the forward pass alone (for finite differences)."""
    out, s = forward(cell, x, a, s0, zx, zs, zm)
    return float(np.sum(w_out * out) if w_out is not None else 0.0) + float(
        np.sum(w_s * s) if w_s is not None else 0.0)


def forward_batch(cell: str, xs: list, a: dict, s0=None, zx=None, zs=None, zm=None):
    """xs a list of (T_b, k) arrays; s0 (B, n), zx (B, G, k), zs (B, G, n), zm (B, T, n) or None →
    ([out_b (T_b, n)], s_T (B, n)), each final state at the sequence's own last step."""
    outs, ss = [], []
    for b, x in enumerate(xs):
        out, s = forward(cell, x, a, None if s0 is None else s0[b], None if zx is None else zx[b],
                         None if zs is None else zs[b], None if zm is None else zm[b, :len(x)])
        outs.append(out)
        ss.append(s)
    return outs, np.array(ss)


def backward_batch(cell: str, xs: list, a: dict, s0=None, w_out=None, w_s=None, zx=None, zs=None, zm=None) -> dict:
    """Gradients of the batch's summed L: "x" a list of (T_b, k), "s0" (B, n), arrays summed."""
    total, dxs, ds0 = None, [], []
    for b, x in enumerate(xs):
        g = backward(cell, x, a, None if s0 is None else s0[b], None if w_out is None else w_out[b],
                     None if w_s is None else w_s[b], None if zx is None else zx[b],
                     None if zs is None else zs[b], None if zm is None else zm[b, :len(x)])
        dxs.append(g.pop("x"))
        ds0.append(g.pop("s0"))
        total = g if total is None else {name: total[name] + g[name] for name in total}
    total["x"] = dxs
    total["s0"] = np.array(ds0)
    return total
