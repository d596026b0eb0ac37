"""The recurrent cells: for each, its Wolfram arrays and shapes, its gates, its state ports, the
tables from Wolfram's gate order to torch's fused kernel and to ONNX's recurrent operator, the
dropout methods that apply, and a reference step that reads like the formulas.

Symbols: B batch, k input size, n output size, G the number of gates. Weights are out×in, so
that W·x is the product; a batch of row vectors x (B, k) is multiplied as x @ Wᵀ.

Masks (dropout, see `kernels.dropout`) reach a step as zx (B, G, k), zs (B, G, n), one per gate
in the cell's `gates` order, and zm (B, n) for the step's memory; None where off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

PARTS = ("InputWeights", "StateWeights", "Biases")


@dataclass(frozen=True, eq=False)
class Cell:
    name: str
    gates: tuple  # Wolfram's gate order (the order of the masks' gate axis); ("",) for one ungated affine map
    states: tuple  # state ports; the first is the output
    dropout: tuple  # the dropout methods that apply
    torch_table: tuple  # torch's fused layout: (gate, sign) per block, in torch's order
    onnx_table: tuple  # ONNX's operator (LSTM i, o, f, c; GRU z, r, h; RNN): (gate, sign) per block
    onnx_op: str  # the ONNX operator
    step: Callable  # step(arrays, x_t, states, zx, zs, zm) → new states
    torch_kernel: str  # the torch._VF function
    initial: dict  # array name → initial value of every entry (NetInitialize), where not the method's rule
    onednn: bool = False  # torch runs its fused kernel for this cell in oneDNN on the CPU (else an ATen step loop)
    reset_gate_of: str | None = None  # the gate whose state part (and a fused kernel's b_hh block) is times r

    def array(self, gate: str, part: str) -> str:
        return f"{gate}Gate{part}" if gate else part

    @property
    def array_names(self) -> tuple:
        return tuple(self.array(g, p) for g in self.gates for p in PARTS)

    @property
    def weight_names(self) -> tuple:
        return tuple(name for name in self.array_names if not name.endswith("Biases"))

    def array_shapes(self, n: int, k: int | None) -> dict:
        """Shape of each array (None where k is not yet known)."""
        return {name: (n,) if name.endswith("Biases") else (n, n) if name.endswith("StateWeights")
                else ((n, k) if k is not None else None) for name in self.array_names}

    def width(self, a: dict) -> int:
        """The cell's size n, read from its arrays."""
        return a[self.array(self.gates[0], "Biases")].shape[0]

    def element_count(self, n: int, k: int) -> int:
        return len(self.gates) * n * (k + n + 1)

    # ---- fused layouts (torch's, ONNX's): one table each, with shape checks ----
    def pack(self, a: dict, table: tuple | None = None) -> list:
        """The arrays → a fused layout [W_ih (Gn, k), W_hh (Gn, n), b_ih (Gn,), b_hh = 0], the
        blocks in the order of `table` (default torch's)."""
        table = self.torch_table if table is None else table
        n = self.width(a)
        out = []
        for part in PARTS:
            blocks = []
            for gate, sign in table:
                t = a[self.array(gate, part)]
                assert t.shape[0] == n, (self.array(gate, part), tuple(t.shape))
                blocks.append(t if sign > 0 else -t)
            out.append(torch.cat(blocks))
        return [*out, torch.zeros_like(out[2])]

    def unpack(self, w_ih, w_hh, b_ih, b_hh=None, table: tuple | None = None) -> dict:
        """A fused layout (default torch's) → the arrays; b_hh, if any, is folded into the biases
        (exact only where the kernel adds it outside the reset product: the caller checks the
        GRU's memory block, `unfoldable_bias_rows`)."""
        table = self.torch_table if table is None else table
        n = w_hh.shape[1]
        G = len(table)
        assert w_ih.shape[0] == G * n and w_hh.shape == (G * n, n) and b_ih.shape == (G * n,), \
            (tuple(w_ih.shape), tuple(w_hh.shape), tuple(b_ih.shape))
        b = b_ih if b_hh is None else b_ih + b_hh
        out = {}
        for j, (gate, sign) in enumerate(table):
            rows = slice(j * n, (j + 1) * n)
            for part, t in zip(PARTS, (w_ih, w_hh, b)):
                out[self.array(gate, part)] = t[rows] if sign > 0 else -t[rows]
        return out

    def unfoldable_bias_rows(self, table: tuple, n: int) -> list:
        """Rows of a fused recurrent bias b_hh that cannot be folded into the input biases: the
        GRU's memory block, which the kernels multiply by the reset gate (Wolfram's b_m sits
        outside that product). Empty for the other cells."""
        if self.reset_gate_of is None:
            return []
        j = [g for g, _ in table].index(self.reset_gate_of)
        return list(range(j * n, (j + 1) * n))

    def gate_index(self, gate: str) -> int:
        return self.gates.index(gate)


def _affine(cell: Cell, a: dict, gate: str, x, s, zx, zs, state_part: bool = True):
    """W_gx·(x ∘ zx_g) + b_g (+ W_gs·(s ∘ zs_g)) for a batch of rows."""
    j = cell.gates.index(gate)
    if zx is not None:
        x = x * zx[:, j]
    out = torch.addmm(a[cell.array(gate, "Biases")], x, a[cell.array(gate, "InputWeights")].T)
    return out + _state(cell, a, gate, s, zs) if state_part else out


def _state(cell: Cell, a: dict, gate: str, s, zs):
    """W_gs·(s ∘ zs_g)."""
    if zs is not None:
        s = s * zs[:, cell.gates.index(gate)]
    return s @ a[cell.array(gate, "StateWeights")].T


def lstm_step(a, x, states, zx=None, zs=None, zm=None):
    """i, o, f = σ(W·x + W·s + b); m = tanh(W_mx·x + W_ms·s + b_m); c' = f c + i m; s' = o tanh c'."""
    s, c = states
    i, o, f = (torch.sigmoid(_affine(LSTM, a, g, x, s, zx, zs)) for g in ("Input", "Output", "Forget"))
    m = torch.tanh(_affine(LSTM, a, "Memory", x, s, zx, zs))
    if zm is not None:
        m = m * zm
    c = f * c + i * m
    return o * torch.tanh(c), c


def gru_step(a, x, states, zx=None, zs=None, zm=None):
    """z, r = σ(W·x + W·s + b); m = tanh(W_mx·x + b_m + r (W_ms·s)); s' = (1 − z) m + z s."""
    (s,) = states
    z = torch.sigmoid(_affine(GRU, a, "Input", x, s, zx, zs))
    r = torch.sigmoid(_affine(GRU, a, "Reset", x, s, zx, zs))
    m = torch.tanh(_affine(GRU, a, "Memory", x, s, zx, zs, state_part=False) + r * _state(GRU, a, "Memory", s, zs))
    if zm is not None:
        m = m * zm
    return ((1 - z) * m + z * s,)


def rnn_step(a, x, states, zx=None, zs=None, zm=None):
    """s' = tanh(W_x·x + W_s·s + b)."""
    (s,) = states
    return (torch.tanh(_affine(RNN, a, "", x, s, zx, zs)),)


LSTM = Cell(
    name="LongShortTermMemoryLayer",
    gates=("Input", "Output", "Forget", "Memory"),
    states=("State", "CellState"),
    dropout=("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate"),
    torch_table=(("Input", 1), ("Forget", 1), ("Memory", 1), ("Output", 1)),
    onnx_table=(("Input", 1), ("Output", 1), ("Forget", 1), ("Memory", 1)),
    onnx_op="LSTM",
    step=lstm_step,
    torch_kernel="lstm",
    initial={"ForgetGateBiases": 1.0},
    onednn=True,
)

# torch's GRU: r, z, n; h' = (1 − z_t) n + z_t h, Wolfram's update with z_t its Input gate and n
# its m. Its n = tanh(W_in x + b_in + r (W_hn h + b_hn)) is Wolfram's m with b_hn = 0 (b_m sits
# outside the reset product, as in b_in). ONNX's GRU with linear_before_reset = 1 is the same
# with the blocks z, r, h (its Rbh is b_hn).
GRU = Cell(
    name="GatedRecurrentLayer",
    gates=("Input", "Reset", "Memory"),
    states=("State",),
    dropout=("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate"),
    torch_table=(("Reset", 1), ("Input", 1), ("Memory", 1)),
    onnx_table=(("Input", 1), ("Reset", 1), ("Memory", 1)),
    onnx_op="GRU",
    step=gru_step,
    torch_kernel="gru",
    initial={},
    reset_gate_of="Memory",
)

RNN = Cell(
    name="BasicRecurrentLayer",
    gates=("",),
    states=("State",),
    dropout=("VariationalWeights", "VariationalInput", "VariationalState"),
    torch_table=(("", 1),),
    onnx_table=(("", 1),),
    onnx_op="RNN",
    step=rnn_step,
    torch_kernel="rnn_tanh",
    initial={},
)

CELLS = (LSTM, GRU, RNN)
