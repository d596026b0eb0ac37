"""The recurrent cells, one registry: each cell declares its arrays (name → shape rule), the
optional arrays and options beyond Wolfram's layer, its state ports, its dropout methods, its
kernels (native, custom, torch's fused one: each optional; `recurrence.unroll` of its reference
step always), and its mappings to torch's modules and to ONNX's recurrent operators. The layers
(`layers.recurrent`), the kernels' choice (`recurrence.choose`), the dropout masks, io/torch and
io/onnx read it; a new cell is one more `Cell` here (and its layer class).

Symbols: B batch, k input size, n output size, G the number of gates. Weights are out×in, so
that W·x is the product; a batch of row vectors x (B, k) is multiplied as x @ Wᵀ.

Masks (dropout, see `kernels.dropout`) reach a step as zx (B, G, k), zs (B, G, n), one per gate
in the cell's `gates` order, and zm (B, n) for the step's memory; None where off.

Beyond Wolfram's layers (each off by default; off, a layer runs exactly the kernels it ran
without them):
- GatedRecurrentLayer's optional array "MemoryGateStateBiases" b_ms (n), inside the reset
  product: m = tanh(W_mx x + b_m + r∗(W_ms s + b_ms)) (torch's b_hn, ONNX's Rbh, Keras's
  recurrent bias with reset_after);
- GatedRecurrentLayer's option "ResetGateTarget": "StateProduct" (Wolfram's, the default:
  r∗(W_ms s)) or "State" (m = tanh(W_mx x + b_m + W_ms (r∗s) + b_ms): ONNX's
  linear_before_reset = 0, Keras's reset_after = False);
- LongShortTermMemoryLayer's optional peephole arrays "{Input,Forget,Output}GateCellStateWeights"
  (n each): i, f see + p∘c_{t-1}, o sees + p∘c_t (ONNX's P).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import lstm_custom, native_cells

PARTS = ("InputWeights", "StateWeights", "Biases")
RULES = {"InputWeights": "nk", "StateWeights": "nn", "Biases": "n"}  # part → shape rule


def shape_of(rule: str, n: int, k: int | None):
    """A shape rule ("nk", "nn", "n") at sizes n, k (None where k is not known)."""
    return (n,) if rule == "n" else (n, n) if rule == "nn" else ((n, k) if k is not None else None)


@dataclass(frozen=True)
class Fused:
    """A fused kernel's layout: torch's (`torch_kernel`) or ONNX's operator (`op`).

    blocks: per block of the stacked arrays, in the layout's order, (gate, the array that its
    recurrent bias b_hh holds or None): None where b_hh is added outside every product by the
    gate, so that it folds into the gate's Biases (and packs as zero)."""
    blocks: tuple
    kernel: str = ""  # torch._VF function, or the ONNX operator
    attrs: tuple = ()  # ONNX attributes the cell needs, (name, value) pairs
    peepholes: tuple = ()  # ONNX's P input: the arrays in its order (LSTM: i, o, f)
    activations: tuple = ()  # ONNX's activations: the defaults, which the cell computes


@dataclass(frozen=True, eq=False)
class Cell:
    name: str
    gates: tuple  # Wolfram's gate order (the order of the masks' gate axis); ("",) for one ungated affine map
    states: tuple  # state ports; the first is the output
    dropout: tuple  # the dropout methods that apply
    step: Callable  # step(cell, arrays, x_t, states, zx, zs, zm) → new states
    torch: Fused  # torch's fused kernel and module (also the layout of the weight masks: `pack`)
    onnx: Fused  # ONNX's operator
    torch_module: str  # the torch.nn module ("LSTM", "GRU", "RNN")
    native: Callable | None = None  # native(cell, x, lengths, arrays, states, masks) → out, states
    custom: Callable | None = None  # the same contract, in eager torch where the native kernel cannot run
    native_order: tuple = ()  # the arrays in the order the native kernel takes them
    initial: dict = dataclasses.field(default_factory=dict)  # array → initial value of every entry (NetInitialize)
    extras: tuple = ()  # optional arrays beyond Wolfram's: (name, rule), (they must be given to exist)
    forms: dict = dataclasses.field(default_factory=dict)  # options beyond Wolfram's: name → values, default first
    configure: Callable | None = None  # (cell, extras present, form) → field replacements of that variant
    present: frozenset = frozenset()  # of a variant: its extras
    form: tuple = ()  # of a variant: its options, (name, value) pairs
    base: Cell | None = None  # of a variant: the cell it varies

    # ---- arrays ----
    def array(self, gate: str, part: str) -> str:
        return f"{gate}Gate{part}" if gate else part

    @property
    def arrays(self) -> tuple:
        """(name, shape rule) of every array: Wolfram's, then the variant's extras."""
        own = tuple((self.array(g, p), RULES[p]) for g in self.gates for p in PARTS)
        return own + tuple(e for e in self.extras if e[0] in self.present)

    @property
    def array_names(self) -> tuple:
        return tuple(name for name, _ in self.arrays)

    @property
    def extra_names(self) -> tuple:
        return tuple(name for name, _ in self.extras)

    @property
    def weight_names(self) -> tuple:
        """The weight matrices (those VariationalWeights masks)."""
        return tuple(name for name, rule in self.arrays if rule != "n")

    def array_shapes(self, n: int, k: int | None) -> dict:
        """Shape of each array (None where k is not yet known)."""
        return {name: shape_of(rule, n, k) for name, rule in self.arrays}

    def width(self, a: dict) -> int:
        """The cell's size n, read from its arrays."""
        return a[self.array(self.gates[0], "Biases")].shape[0]

    def element_count(self, n: int, k: int) -> int:
        return sum(int(torch.Size(shape_of(rule, n, k)).numel()) for _, rule in self.arrays)

    def gate_index(self, gate: str) -> int:
        return self.gates.index(gate)

    # ---- variants and kernels ----
    def variant(self, present=(), form: dict | None = None) -> Cell:
        """The cell with the extras `present` and the options `form` (the cell itself for none)."""
        root = self.base or self
        defaults = {name: values[0] for name, values in root.forms.items()}
        form = tuple(sorted({**defaults, **(form or {})}.items()))
        return _variant(root, frozenset(present), form)

    def option(self, name: str):
        """An option of the variant (its default where not set)."""
        return dict(self.form).get(name, (self.base or self).forms[name][0])

    @functools.cached_property
    def kernels(self) -> tuple:
        """The kernels that run this cell, `recurrence.choose`'s candidates (asked at every call:
        computed once)."""
        return tuple(k for k, there in (("native", self.native), ("custom", self.custom),
                                        ("fused", self.torch.kernel)) if there) + ("unroll",)

    # ---- fused layouts (torch's, ONNX's): one table each, with shape checks ----
    def pack(self, a: dict, layout: Fused | None = None) -> list:
        """The arrays → a fused layout [W_ih (Gn, k), W_hh (Gn, n), b_ih (Gn,), b_hh (Gn,)], the
        blocks in the order of `layout` (default torch's); b_hh zero but for the blocks whose
        recurrent bias is an array of this variant."""
        layout = self.torch if layout is None else layout
        n = self.width(a)
        out = []
        for part in PARTS:
            blocks = []
            for gate, _ in layout.blocks:
                t = a[self.array(gate, part)]
                assert t.shape[0] == n, (self.array(gate, part), tuple(t.shape))
                blocks.append(t)
            out.append(torch.cat(blocks))
        held = [a[name] for _, name in layout.blocks if name in self.present]
        if not held:
            return [*out, torch.zeros_like(out[2])]
        return [*out, torch.cat([a[name] if name in self.present else torch.zeros_like(a[self.array(gate, "Biases")])
                                 for gate, name in layout.blocks])]

    def unpack(self, w_ih, w_hh, b_ih, b_hh=None, layout: Fused | None = None) -> dict:
        """A fused layout (default torch's) → the arrays. b_hh, if any, is folded into the gates'
        biases where the layout adds it outside the products; a block whose b_hh sits inside the
        reset product gives its extra array (MemoryGateStateBiases), and only where nonzero, so
        that a layout without it gives Wolfram's layer."""
        layout = self.torch if layout is None else layout
        n = w_hh.shape[1]
        G = len(layout.blocks)
        assert w_ih.shape[0] == G * n and w_hh.shape == (G * n, n) and b_ih.shape == (G * n,), \
            (tuple(w_ih.shape), tuple(w_hh.shape), tuple(b_ih.shape))
        out = {}
        for j, (gate, inner) in enumerate(layout.blocks):
            rows = slice(j * n, (j + 1) * n)
            bias = b_ih[rows]
            if b_hh is not None:
                if inner is None:
                    bias = bias + b_hh[rows]
                elif bool((b_hh[rows] != 0).any()):
                    out[inner] = b_hh[rows]
            for part, t in zip(PARTS, (w_ih[rows], w_hh[rows], bias)):
                out[self.array(gate, part)] = t
        return out


@functools.cache
def _variant(cell: Cell, present: frozenset, form: tuple) -> Cell:
    defaults = tuple(sorted((name, values[0]) for name, values in cell.forms.items()))
    if not present and form == defaults:
        return cell
    changes = cell.configure(cell, present, dict(form)) if cell.configure else {}
    return dataclasses.replace(cell, present=present, form=form, base=cell, **changes)


# ---- the reference steps ---------------------------------------------------------------------
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


def lstm_step(cell, a, x, states, zx=None, zs=None, zm=None):
    """i, o, f = σ(W·x + W·s + b); m = tanh(W_mx·x + W_ms·s + b_m); c' = f c + i m; s' = o tanh c'.
    With peepholes p_g: i, f see + p_g c, o sees + p_o c'."""
    s, c = states
    pre = {g: _affine(cell, a, g, x, s, zx, zs) for g in ("Input", "Output", "Forget")}
    for g in ("Input", "Forget"):
        p = a.get(f"{g}GateCellStateWeights")
        if p is not None:
            pre[g] = pre[g] + p * c
    i, f = torch.sigmoid(pre["Input"]), torch.sigmoid(pre["Forget"])
    m = torch.tanh(_affine(cell, a, "Memory", x, s, zx, zs))
    if zm is not None:
        m = m * zm
    c = f * c + i * m
    p = a.get("OutputGateCellStateWeights")
    o = torch.sigmoid(pre["Output"] if p is None else pre["Output"] + p * c)
    return o * torch.tanh(c), c


def gru_step(cell, a, x, states, zx=None, zs=None, zm=None):
    """z, r = σ(W·x + W·s + b); m = tanh(W_mx·x + b_m + r (W_ms·s + b_ms)); s' = (1 − z) m + z s.
    ResetGateTarget "State": m = tanh(W_mx·x + b_m + W_ms·(r s) + b_ms). (b_ms: 0 where absent.)"""
    (s,) = states
    z = torch.sigmoid(_affine(cell, a, "Input", x, s, zx, zs))
    r = torch.sigmoid(_affine(cell, a, "Reset", x, s, zx, zs))
    inner = _state(cell, a, "Memory", r * s, zs) if cell.form and cell.option("ResetGateTarget") == "State" \
        else None
    b_ms = a.get("MemoryGateStateBiases")
    if inner is None:
        h = _state(cell, a, "Memory", s, zs)
        inner = r * (h if b_ms is None else h + b_ms)
    elif b_ms is not None:
        inner = inner + b_ms
    m = torch.tanh(_affine(cell, a, "Memory", x, s, zx, zs, state_part=False) + inner)
    if zm is not None:
        m = m * zm
    return ((1 - z) * m + z * s,)


def rnn_step(cell, a, x, states, zx=None, zs=None, zm=None):
    """s' = tanh(W_x·x + W_s·s + b)."""
    (s,) = states
    return (torch.tanh(_affine(cell, a, "", x, s, zx, zs)),)


# ---- the cells ---------------------------------------------------------------------------------
def _lstm_configure(cell: Cell, present: frozenset, form: dict) -> dict:
    # peepholes: torch's modules and kernels have none; the reference step runs them
    return {"native": None, "custom": None, "torch": dataclasses.replace(cell.torch, kernel="")}


def _gru_configure(cell: Cell, present: frozenset, form: dict) -> dict:
    if form["ResetGateTarget"] == "State":
        # ONNX's linear_before_reset = 0: h = tanh(W_h x + R_h (r ∘ H) + Wbh + Rbh), Rbh being b_ms;
        # no torch kernel computes this form
        onnx = dataclasses.replace(cell.onnx, attrs=(("linear_before_reset", 0),))
        return {"native": None, "torch": dataclasses.replace(cell.torch, kernel=""), "onnx": onnx}
    # b_ms inside the reset product: torch's fused GRU computes it (its b_hn), and the native kernel
    return {}


LSTM = Cell(
    name="LongShortTermMemoryLayer",
    gates=("Input", "Output", "Forget", "Memory"),
    states=("State", "CellState"),
    dropout=("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate"),
    step=lstm_step,
    torch=Fused((("Input", None), ("Forget", None), ("Memory", None), ("Output", None)), "lstm"),
    onnx=Fused((("Input", None), ("Output", None), ("Forget", None), ("Memory", None)), "LSTM",
               peepholes=("InputGateCellStateWeights", "OutputGateCellStateWeights", "ForgetGateCellStateWeights"),
               activations=("Sigmoid", "Tanh", "Tanh")),
    torch_module="LSTM",
    native=native_cells.lstm_kernel,
    custom=lstm_custom.kernel,
    native_order=native_cells.LSTM_NAMES,
    initial={"ForgetGateBiases": 1.0},
    extras=(("InputGateCellStateWeights", "n"), ("ForgetGateCellStateWeights", "n"),
            ("OutputGateCellStateWeights", "n")),
    configure=_lstm_configure,
)

# torch's GRU: r, z, n; h' = (1 − z_t) n + z_t h, Wolfram's update with z_t its Input gate and n
# its m = tanh(W_in x + b_in + r (W_hn h + b_hn)), b_hn being MemoryGateStateBiases (zero in
# Wolfram's layer). ONNX's GRU with linear_before_reset = 1 is the same with the blocks z, r, h
# (its Rbh is b_hn).
GRU = Cell(
    name="GatedRecurrentLayer",
    gates=("Input", "Reset", "Memory"),
    states=("State",),
    dropout=("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate"),
    step=gru_step,
    torch=Fused((("Reset", None), ("Input", None), ("Memory", "MemoryGateStateBiases")), "gru"),
    onnx=Fused((("Input", None), ("Reset", None), ("Memory", "MemoryGateStateBiases")), "GRU",
               (("linear_before_reset", 1),), activations=("Sigmoid", "Tanh")),
    torch_module="GRU",
    native=native_cells.gru_kernel,
    native_order=native_cells.GRU_NAMES,
    extras=(("MemoryGateStateBiases", "n"),),
    forms={"ResetGateTarget": ("StateProduct", "State")},
    configure=_gru_configure,
)

RNN = Cell(
    name="BasicRecurrentLayer",
    gates=("",),
    states=("State",),
    dropout=("VariationalWeights", "VariationalInput", "VariationalState"),
    step=rnn_step,
    torch=Fused((("", None),), "rnn_tanh"),
    onnx=Fused((("", None),), "RNN", activations=("Tanh",)),
    torch_module="RNN",
    native=native_cells.rnn_kernel,
    native_order=native_cells.RNN_NAMES,
)

CELLS = (LSTM, GRU, RNN)
