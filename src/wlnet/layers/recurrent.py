"""The recurrent layers: one base over a cell (`kernels.cells`), and LongShortTermMemoryLayer,
GatedRecurrentLayer and BasicRecurrentLayer as three small definitions."""

from __future__ import annotations

import torch

from ..coders.encoders import NetEncoder
from ..core import options as O
from ..core.data import Seq, note
from ..core.errors import OptionError, ShapeError, where
from ..core.shapes import VARYING, ArrayType, Real, describe, parse_sequence_shape, unify
from ..core.symbols import Automatic
from ..kernels import cells, recurrence
from ..kernels.dropout import METHODS as DROPOUT_METHODS
from .base import Layer

LAYERS: dict = {}  # cell name → its layer class (each `RecurrentLayer` subclass enters itself)


def parse_dropout(spec, layer: str, methods: tuple = DROPOUT_METHODS) -> dict:
    """A Dropout option → {method: p}; {} for None. `methods`: those the layer's cell takes."""
    forms = ("None; a probability p with 0 ≤ p < 1 (meaning {\"VariationalWeights\": p}); or a dict of "
             f"method → p with methods among {', '.join(methods)}")
    if spec is None:
        return {}
    if isinstance(spec, dict) and spec:
        for method, p in spec.items():
            if method not in DROPOUT_METHODS:
                raise OptionError(f"{where(layer)}option Dropout names the method {method!r}, which is not known. "
                                  f"Allowed forms: {forms}.")
            if method not in methods:
                raise OptionError(f"{where(layer)}option Dropout names the method {method!r}, which this layer "
                                  f"does not support. Allowed forms: {forms}.")
            O.probability(p, layer, f"the Dropout probability of {method!r}")
        return {m: float(p) for m, p in spec.items()}
    try:
        return {"VariationalWeights": O.probability(spec, layer, "Dropout")}
    except OptionError:
        raise OptionError(f"{where(layer)}option Dropout was given {spec!r}. Allowed forms: {forms}.") from None


class RecurrentLayer(Layer):
    """A trainable recurrent layer over a cell: a sequence of size-k vectors in ("Input",
    T×k), the sequence of its states out ("Output", T×n); state ports as the cell declares
    them, each a size-n vector (fed in a NetGraph they set the initial states, default zero;
    read, they give the final ones, each at its sequence's own end).
    Legend: k input size, n output size, T sequence length, B batch size."""

    CELL: cells.Cell  # the cell; a layer runs its variant `cell` (the optional arrays and options it was given)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cell = cls.CELL
        cls.OPTIONS = {"Input": Automatic, "Output": Automatic, "Dropout": None,
                       "LearningRateMultipliers": Automatic, **dict.fromkeys(cell.array_names, Automatic)}
        # beyond Wolfram's layer (so not among its Options): the cell's optional arrays and forms
        cls.EXTENSION_OPTIONS = {**dict.fromkeys(cell.extra_names, None),
                                 **{name: values[0] for name, values in cell.forms.items()}}
        LAYERS[cell.name] = cls

    def __init__(self, n, **options):
        self.OPTIONS = {**type(self).OPTIONS, **self.EXTENSION_OPTIONS}  # the options this layer takes
        form = {}
        for name, values in self.CELL.forms.items():
            value = options.get(name, values[0])
            if not isinstance(value, str) or value not in values:
                raise OptionError(f"{where(self.name)}option {name} must be one of {', '.join(map(repr, values))}, "
                                  f"but was given {value!r}.")
            form[name] = value
        present = [name for name in self.CELL.extra_names if options.get(name) is not None]
        cell = self.cell = self.CELL.variant(present, form)
        # an optional array asked for (Automatic) but not yet held stays an option, so that the
        # layer's code and its saved form keep asking for it
        wanted = [name for name in present if options[name] is Automatic]
        super().__init__((n,), options, tuple(name for name in cell.array_names if name not in wanted))
        self._arrays.update(dict.fromkeys(wanted))
        self._arrays = {name: self._arrays[name] for name in cell.array_names}
        self.n = O.positive_int(n, self.name, "n (the output size)", allow_automatic=False)
        self._dropout = parse_dropout(options.get("Dropout"), self.name, cell.dropout)
        in_type = self._parse_input(options.get("Input", Automatic))
        k = in_type.dims[1]
        for name in cell.array_names:  # arrays given as options; their shapes may tell k
            value = options.get(name, Automatic)
            if value is Automatic or value is None:
                continue
            t = self._array_option(name, value, cell.array_shapes(self.n, k)[name] or (self.n, None))
            if name.endswith("InputWeights"):
                if k is not None and t.shape[1] != k:
                    raise ShapeError(
                        f"{where(self.name)}array {name} has {t.shape[1]} columns, but the input size k is "
                        f"{k}; an input weight matrix must be n×k."
                    )
                k = t.shape[1]
            self._arrays[name] = t
        self._in = {"Input": in_type.with_dims((in_type.dims[0], k))}
        self._derive()
        if options.get("Output", Automatic) is not Automatic:
            given = parse_sequence_shape(options["Output"], self.name, "Output")
            out = unify(self._out["Output"], given, f'{self.name} port "Output"', "the Output option")
            if out.dims[0] != VARYING:
                self._in["Input"] = self._in["Input"].with_dims((out.dims[0], k))
            self._out = {"Output": out}

    def _with_arrays(self, arrays: dict):
        # an optional array not held is asked for by its option (Automatic), one held by itself
        new = super()._with_arrays(arrays)
        extras = new.cell.present
        new._given = {**{k: v for k, v in new._given.items() if k not in extras},
                      **{name: Automatic for name in new.cell.array_names
                         if name in extras and new._arrays[name] is None}}
        return new

    def _parse_input(self, spec) -> ArrayType:
        if spec is Automatic or spec is None:
            return Real(VARYING, None)
        if isinstance(spec, NetEncoder):
            t = spec.output_type
            if t.integer or t.rank != 2:
                raise ShapeError(
                    f'{where(self.name, "Input")}the encoder produces {describe(t)}, but the layer needs a '
                    'sequence of vectors. Use the encoder\'s "UnitVector" form, or put an EmbeddingLayer '
                    "in front of the layer."
                )
            self.encoders = {"Input": spec}
            return t
        return parse_sequence_shape(spec, self.name, "Input")

    # ---- shapes ----
    @property
    def k(self) -> int | None:
        return self._in["Input"].dims[1]

    def array_shapes(self) -> dict:
        return self.cell.array_shapes(self.n, self.k)

    def initial_array(self, name: str, shape: tuple):
        value = self.cell.initial.get(name)
        return None if value is None else torch.full(shape, value)

    def state_ports(self) -> dict:
        return {s: Real(self.n) for s in self.CELL.states}

    def _accept(self, port, t) -> None:
        if len(t.dims) != 2:
            raise ShapeError(
                f'{where(self.name, "Input")}the layer expects a sequence of vectors, but the input is '
                f"{describe(t)}."
            )

    def _derive(self) -> None:
        self._out = {"Output": Real(self._in["Input"].dims[0], self.n)}

    # ---- evaluation ----
    def run(self, arrays, inputs, states, ctx, cache):
        x = inputs["Input"]
        seq = isinstance(x, Seq)
        data, lengths = (x.data, x.lengths) if seq else (x, None)
        initial = tuple(states.get((s,)) for s in self.CELL.states)
        out, final = recurrence.run(self.cell, arrays, data, lengths, initial,
                                    dropout_spec=self._dropout if ctx.train else None,
                                    generator=ctx.generator, exact=ctx.exact_states, cache=cache)
        note(out, "_wlnet_last", final[0])  # each sequence's last output (`sequence.last_of`)
        return ({"Output": Seq(out, lengths) if seq else out},
                {(s,): v for s, v in zip(self.CELL.states, final) if v is not None})


class LongShortTermMemoryLayer(RecurrentLayer):
    """A trainable recurrent layer: a sequence of size-k vectors in, a sequence of size-n
    vectors of the same length out (long short-term memory).

    For x_1..x_T, σ the logistic sigmoid and * elementwise::

        i_t = σ(W_ix·x_t + W_is·s_{t-1} + b_i)      o_t = σ(W_ox·x_t + W_os·s_{t-1} + b_o)
        f_t = σ(W_fx·x_t + W_fs·s_{t-1} + b_f)      m_t = tanh(W_mx·x_t + W_ms·s_{t-1} + b_m)
        c_t = f_t*c_{t-1} + i_t*m_t                 s_t = o_t*tanh(c_t)   (output element t)

    Ports: "Input" (T×k), "Output" (T×n); state ports "State" and "CellState" (n): fed in a
    NetGraph they set s_0, c_0 (default zero); read, they give s_T, c_T.

    Arrays: {Input,Output,Forget,Memory}Gate{InputWeights (n×k), StateWeights (n×n), Biases (n)}.
    Dropout: VariationalWeights, VariationalInput, VariationalState, StateUpdate.

    Beyond Wolfram's layer (not among its Options; off by default): peepholes, the optional
    arrays {Input,Forget,Output}GateCellStateWeights p (n), each one given (or Automatic, to
    initialize it) adds p*c_{t-1} to i_t's or f_t's argument, p*c_t to o_t's (ONNX's LSTM input
    P). A layer with them runs the reference step (no fused or native kernel).
    Legend: k input size, n output size, T sequence length, B batch size.

    >>> lstm = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    >>> len(lstm([[1, 2], [3, 4], [5, 6]]))
    3
    """

    CELL = cells.LSTM
    # the arrays' order in NetTrain's flat buffer: the native kernel's packed layout, which it
    # then reads in place instead of copying (`native/lstm.cpp`)
    ARRAY_ORDER = cells.LSTM.native_order


class GatedRecurrentLayer(RecurrentLayer):
    """A trainable gated recurrent layer: a sequence of size-k vectors in, the sequence of its
    size-n states out.

    For x_1..x_T, σ the logistic sigmoid and * elementwise::

        z_t = σ(W_ix·x_t + W_is·s_{t-1} + b_i)                input gate
        r_t = σ(W_rx·x_t + W_rs·s_{t-1} + b_r)                reset gate
        m_t = tanh(W_mx·x_t + b_m + r_t*(W_ms·s_{t-1}))       memory
        s_t = (1 - z_t)*m_t + z_t*s_{t-1}                     state = output element t

    Ports: "Input" (T×k), "Output" (T×n); state port "State" (n).
    Arrays: {Input,Reset,Memory}Gate{InputWeights (n×k), StateWeights (n×n), Biases (n)}.
    Dropout: VariationalWeights, VariationalInput, VariationalState, StateUpdate (m_t).

    Beyond Wolfram's layer (not among its Options; off by default, and then the layer is
    Wolfram's exactly):
    - the optional array MemoryGateStateBiases b_ms (n), given (or Automatic, to initialize
      it), inside the reset product: m_t = tanh(W_mx·x_t + b_m + r_t*(W_ms·s_{t-1} + b_ms)),
      torch's b_hn and ONNX's Rbh (a trained torch GRU maps exactly);
    - the option ResetGateTarget, what the reset gate multiplies: "StateProduct" (Wolfram's,
      the default) or "State": m_t = tanh(W_mx·x_t + b_m + W_ms·(r_t*s_{t-1}) + b_ms), ONNX's
      linear_before_reset = 0 (Keras's reset_after=False). That form runs the reference step.
    Legend: k input size, n output size, T sequence length, B batch size.

    >>> gru = NetInitialize(GatedRecurrentLayer(3, Input=("Varying", 2)))
    >>> len(gru([[1, 2], [3, 4], [5, 6]]))
    3
    """

    CELL = cells.GRU


class BasicRecurrentLayer(RecurrentLayer):
    """A trainable basic recurrent layer: s_t = tanh(W_x·x_t + W_s·s_{t-1} + b), the sequence
    of size-n states s_1..s_T out for size-k vectors x_1..x_T in.

    Ports: "Input" (T×k), "Output" (T×n); state port "State" (n).
    Arrays: InputWeights (n×k), StateWeights (n×n), Biases (n).
    Dropout: VariationalWeights, VariationalInput, VariationalState (StateUpdate does not apply:
    there is no memory to drop).
    Legend: k input size, n output size, T sequence length, B batch size.

    >>> rnn = NetInitialize(BasicRecurrentLayer(3, Input=("Varying", 2)))
    >>> len(rnn([[1, 2], [3, 4], [5, 6]]))
    3
    """

    CELL = cells.RNN
