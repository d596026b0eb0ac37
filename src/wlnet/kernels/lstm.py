"""The LSTM recurrence.

Symbols: B batch, T length, k input size, n output size. Arrays are the 12 Wolfram arrays
(weights out×in). `reference` is the ground truth, written as SPEC §2's formulas; `fused`
calls torch's fused LSTM kernel (oneDNN on CPU, cuDNN on GPU) with the arrays packed in its
gate order (input, forget, memory, output) and a zero second bias.
"""

from __future__ import annotations

import torch

# Wolfram gate name → letter; the order torch's fused kernel stacks its gates in.
FUSED_GATE_ORDER = ("Input", "Forget", "Memory", "Output")
GATES = ("Input", "Output", "Forget", "Memory")
ARRAY_NAMES = tuple(
    f"{g}Gate{part}" for g in GATES for part in ("InputWeights", "StateWeights", "Biases")
)


def array_shapes(n: int, k: int | None) -> dict[str, tuple | None]:
    """Shape of each of the 12 arrays (None where k is not yet known)."""
    return {
        name: (n,) if name.endswith("Biases") else (n, n) if name.endswith("StateWeights")
        else ((n, k) if k is not None else None)
        for name in ARRAY_NAMES
    }


def step(a: dict, x_t, s, c):
    """One step of SPEC §2. x_t (B, k), s and c (B, n) → (s_t, c_t)."""
    def pre(g):
        return x_t @ a[f"{g}GateInputWeights"].T + s @ a[f"{g}GateStateWeights"].T + a[f"{g}GateBiases"]

    i = torch.sigmoid(pre("Input"))
    o = torch.sigmoid(pre("Output"))
    f = torch.sigmoid(pre("Forget"))
    m = torch.tanh(pre("Memory"))
    c = f * c + i * m
    s = o * torch.tanh(c)
    return s, c


def reference(x, lengths, a: dict, s0=None, c0=None):
    """Unrolled reference. x (B, T, k), lengths (B,) or None → out (B, T, n), s_T, c_T (B, n).

    A sequence shorter than T keeps its state past its end and outputs zeros there."""
    B, T, _ = x.shape
    n = a["InputGateBiases"].shape[0]
    s = x.new_zeros(B, n) if s0 is None else s0
    c = x.new_zeros(B, n) if c0 is None else c0
    outs = []
    for t in range(T):
        s_new, c_new = step(a, x[:, t], s, c)
        if lengths is not None:
            live = (t < lengths.to(x.device)).unsqueeze(1)  # (B, 1)
            s_new = torch.where(live, s_new, s)
            c_new = torch.where(live, c_new, c)
            outs.append(torch.where(live, s_new, torch.zeros_like(s_new)))
        else:
            outs.append(s_new)
        s, c = s_new, c_new
    return torch.stack(outs, 1), s, c


def pack(a: dict):
    """The 12 arrays → torch's fused layout [W_ih (4n, k), W_hh (4n, n), b_ih (4n,), b_hh = 0]."""
    w_ih = torch.cat([a[f"{g}GateInputWeights"] for g in FUSED_GATE_ORDER])
    w_hh = torch.cat([a[f"{g}GateStateWeights"] for g in FUSED_GATE_ORDER])
    b_ih = torch.cat([a[f"{g}GateBiases"] for g in FUSED_GATE_ORDER])
    return [w_ih, w_hh, b_ih, torch.zeros_like(b_ih)]


def unpack(w_ih, w_hh, b_ih, b_hh=None) -> dict:
    """torch's fused layout → the 12 arrays (b_hh, if any, is folded into the biases)."""
    n = w_hh.shape[1]
    b = b_ih if b_hh is None else b_ih + b_hh
    out = {}
    for j, g in enumerate(FUSED_GATE_ORDER):
        sl = slice(j * n, (j + 1) * n)
        out[f"{g}GateInputWeights"] = w_ih[sl]
        out[f"{g}GateStateWeights"] = w_hh[sl]
        out[f"{g}GateBiases"] = b[sl]
    return out


def fused(x, lengths, weights: list, s0=None, c0=None, exact_cell: bool = True):
    """torch's fused LSTM on packed weights. x (B, T, k) → out (B, T, n), s_T, c_T (B, n).

    Ragged batches go through a packed sequence, so each final state is at its own last step
    and outputs past a sequence's end are zero. exact_cell=False allows a padded run for a
    ragged batch, which returns c_T as None."""
    B, T, _ = x.shape
    n = weights[1].shape[1]
    zeros = x.new_zeros(1, B, n) if s0 is None or c0 is None else None  # read only: shared by s0 and c0
    s0 = zeros if s0 is None else s0.unsqueeze(0)
    c0 = zeros if c0 is None else c0.unsqueeze(0)
    if lengths is None:
        out, s, c = torch._VF.lstm(x, (s0, c0), weights, True, 1, 0.0, False, False, True)
        return out, s[0], c[0]
    if not exact_cell:
        # Padded run (2-3x faster than a packed sequence on CPU): steps before each end are
        # exact, later ones are zeroed; s_T is read at each end; c_T is not available (None).
        out, _, _ = torch._VF.lstm(x, (s0, c0), weights, True, 1, 0.0, False, False, True)
        live = torch.arange(T, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)  # (B, T)
        out = out * live.unsqueeze(-1)
        s = out[torch.arange(B, device=x.device), lengths.to(x.device) - 1]
        return out, s, None
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    order = packed.sorted_indices
    hx = (s0.index_select(1, order), c0.index_select(1, order))
    data, s, c = torch._VF.lstm(packed.data, packed.batch_sizes, hx, weights, True, 1, 0.0, False, False)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(
        torch.nn.utils.rnn.PackedSequence(data, packed.batch_sizes, order, packed.unsorted_indices),
        batch_first=True, total_length=T,
    )
    back = packed.unsorted_indices
    return out, s[0].index_select(0, back), c[0].index_select(0, back)
