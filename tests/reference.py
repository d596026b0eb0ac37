"""An independent float64 numpy implementation of LongShortTermMemoryLayer, forward and backward.

Source of the formulas: the Wolfram reference page's recurrence, σ the logistic
sigmoid, * elementwise, weights out×in so that W·x is the product::

    i_t = σ(W_ix·x_t + W_is·s_{t-1} + b_i)        input gate
    o_t = σ(W_ox·x_t + W_os·s_{t-1} + b_o)        output gate
    f_t = σ(W_fx·x_t + W_fs·s_{t-1} + b_f)        forget gate
    m_t = tanh(W_mx·x_t + W_ms·s_{t-1} + b_m)     memory gate
    c_t = f_t*c_{t-1} + i_t*m_t                   cell state
    s_t = o_t*tanh(c_t)                            state = output element t

s_0 = c_0 = 0 unless given. The backward pass is derived by hand from these lines
(back-propagation through time, see `backward`), and checked against central finite
differences by the tests (`numeric_gradient`). Nothing here imports torch or wlnet, so the
reference shares no code with what it checks.

Symbols: T length, k input size, n output size, B batch size. Arrays are a dict keyed by the 12
Wolfram names ("InputGateInputWeights" n×k, "InputGateStateWeights" n×n, "InputGateBiases" n, and
the same for the Output, Forget and Memory gates).
"""

from __future__ import annotations

import numpy as np

GATES = ("Input", "Output", "Forget", "Memory")
ARRAY_NAMES = tuple(f"{g}Gate{p}" for g in GATES for p in ("InputWeights", "StateWeights", "Biases"))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def random_arrays(n: int, k: int, seed: int, scale: float = 0.5) -> dict:
    """The 12 arrays drawn from N(0, scale²), rounded to float32 values (held in float64) so that
    a float32 implementation holds exactly the same numbers."""
    rng = np.random.default_rng(seed)
    shapes = {"InputWeights": (n, k), "StateWeights": (n, n), "Biases": (n,)}
    out = {}
    for name in ARRAY_NAMES:
        part = name.split("Gate")[1]
        out[name] = (rng.standard_normal(shapes[part]) * scale).astype(np.float32).astype(np.float64)
    return out


def forward(x, a: dict, s0=None, c0=None, keep: bool = False):
    """One sequence. x (T, k) → out (T, n), s_T (n), c_T (n); with keep=True also the per-step
    values the backward pass needs."""
    x = np.asarray(x, dtype=np.float64)
    n = a["InputGateBiases"].shape[0]
    s = np.zeros(n) if s0 is None else np.asarray(s0, dtype=np.float64)
    c = np.zeros(n) if c0 is None else np.asarray(c0, dtype=np.float64)
    outs, tape = [], []
    for x_t in x:
        def pre(g, x_t=x_t, s=s):
            return a[f"{g}GateInputWeights"] @ x_t + a[f"{g}GateStateWeights"] @ s + a[f"{g}GateBiases"]

        i = sigmoid(pre("Input"))
        o = sigmoid(pre("Output"))
        f = sigmoid(pre("Forget"))
        m = np.tanh(pre("Memory"))
        c_new = f * c + i * m
        s_new = o * np.tanh(c_new)
        tape.append((x_t, s, c, i, o, f, m, c_new))
        s, c = s_new, c_new
        outs.append(s)
    out = np.array(outs).reshape(len(x), n)
    return (out, s, c, tape) if keep else (out, s, c)


def backward(x, a: dict, s0=None, c0=None, w_out=None, w_s=None, w_c=None) -> dict:
    """Gradients of L = sum(w_out*out) + sum(w_s*s_T) + sum(w_c*c_T) for one sequence.

    Returns {"x": (T, k), "s0": (n), "c0": (n), and each of the 12 array names}. Weights left
    out are zero. Derivation (for step t, going backwards, ds/dc the gradients reaching s_t, c_t)::

        ds   = w_out[t] + (gradient carried from step t+1 through W_gs)
        dc   = (carried dc·f_{t+1}) + ds*o*(1 - tanh(c_t)²)
        dz_o = ds*tanh(c_t)*o(1-o)     dz_i = dc*m*i(1-i)
        dz_f = dc*c_{t-1}*f(1-f)       dz_m = dc*i*(1-m²)
        dW_gx += dz_g ⊗ x_t,  dW_gs += dz_g ⊗ s_{t-1},  db_g += dz_g
        dx_t = Σ_g W_gxᵀ dz_g,  carried ds = Σ_g W_gsᵀ dz_g,  carried dc = dc*f_t
    """
    out, s_T, c_T, tape = forward(x, a, s0, c0, keep=True)
    T, n = out.shape
    w_out = np.zeros_like(out) if w_out is None else np.asarray(w_out, dtype=np.float64)
    ds_carry = np.zeros(n) if w_s is None else np.asarray(w_s, dtype=np.float64).copy()
    dc_carry = np.zeros(n) if w_c is None else np.asarray(w_c, dtype=np.float64).copy()
    grads = {name: np.zeros_like(v) for name, v in a.items()}
    dx = np.zeros((T, np.asarray(x).shape[1]))
    for t in reversed(range(T)):
        x_t, s_prev, c_prev, i, o, f, m, c = tape[t]
        tc = np.tanh(c)
        ds = w_out[t] + ds_carry
        dc = dc_carry + ds * o * (1 - tc ** 2)
        dz = {
            "Output": ds * tc * o * (1 - o),
            "Input": dc * m * i * (1 - i),
            "Forget": dc * c_prev * f * (1 - f),
            "Memory": dc * i * (1 - m ** 2),
        }
        ds_carry = np.zeros(n)
        for g, d in dz.items():
            grads[f"{g}GateInputWeights"] += np.outer(d, x_t)
            grads[f"{g}GateStateWeights"] += np.outer(d, s_prev)
            grads[f"{g}GateBiases"] += d
            dx[t] += a[f"{g}GateInputWeights"].T @ d
            ds_carry += a[f"{g}GateStateWeights"].T @ d
        dc_carry = dc * f
    grads["x"] = dx
    grads["s0"] = ds_carry
    grads["c0"] = dc_carry
    return grads


def loss(x, a: dict, s0=None, c0=None, w_out=None, w_s=None, w_c=None) -> float:
    """L of `backward`, by the forward pass alone (for finite differences)."""
    out, s, c = forward(x, a, s0, c0)
    total = 0.0
    if w_out is not None:
        total += float(np.sum(w_out * out))
    if w_s is not None:
        total += float(np.sum(w_s * s))
    if w_c is not None:
        total += float(np.sum(w_c * c))
    return total


def numeric_gradient(f, v: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to the array v, changed in place."""
    g = np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        old = v[idx]
        v[idx] = old + eps
        up = f()
        v[idx] = old - eps
        down = f()
        v[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def forward_batch(xs: list, a: dict, s0=None, c0=None):
    """A batch of sequences (possibly of different lengths): xs a list of (T_b, k) arrays, s0/c0
    (B, n) or None → ([out_b (T_b, n)], s_T (B, n), c_T (B, n)), each final state at the
    sequence's own last step."""
    outs, ss, cs = [], [], []
    for b, x in enumerate(xs):
        out, s, c = forward(x, a, None if s0 is None else s0[b], None if c0 is None else c0[b])
        outs.append(out)
        ss.append(s)
        cs.append(c)
    return outs, np.array(ss), np.array(cs)


def backward_batch(xs: list, a: dict, s0=None, c0=None, w_out=None, w_s=None, w_c=None) -> dict:
    """Gradients of the sum over the batch of each sequence's L (see `backward`); w_out a list of
    (T_b, n), w_s/w_c (B, n). "x" is a list of (T_b, k); "s0", "c0" (B, n); arrays summed."""
    total = None
    xs_grads, s0_grads, c0_grads = [], [], []
    for b, x in enumerate(xs):
        g = backward(x, a, None if s0 is None else s0[b], None if c0 is None else c0[b],
                     None if w_out is None else w_out[b], None if w_s is None else w_s[b],
                     None if w_c is None else w_c[b])
        xs_grads.append(g.pop("x"))
        s0_grads.append(g.pop("s0"))
        c0_grads.append(g.pop("c0"))
        total = g if total is None else {name: total[name] + g[name] for name in total}
    total["x"] = xs_grads
    total["s0"] = np.array(s0_grads)
    total["c0"] = np.array(c0_grads)
    return total
