"""LongShortTermMemoryLayer."""

from __future__ import annotations

import torch

from ..data import Seq
from ..errors import OptionError, ShapeError, where
from ..kernels import lstm as K
from ..kernels.dropout import METHODS as DROPOUT_METHODS
from ..kernels.dropout import lstm_dropout
from ..shapes import VARYING, ArrayType, Real, describe, parse_sequence_shape, parse_size, shape_code, unify
from ..symbols import Automatic
from .base import Layer

_DROPOUT_FORMS = (
    "None; a probability p with 0 ≤ p < 1 (meaning {\"VariationalWeights\": p}); or a dict of "
    f"method → p with methods among {', '.join(DROPOUT_METHODS)}"
)


def _probability(p) -> bool:
    return isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p < 1


def parse_dropout(spec, layer: str) -> dict:
    """A Dropout option → {method: p}; {} for None."""
    if spec is None:
        return {}
    if _probability(spec):
        return {"VariationalWeights": float(spec)}
    if isinstance(spec, dict) and spec:
        for method, p in spec.items():
            if method not in DROPOUT_METHODS:
                raise OptionError(
                    f"{where(layer)}option Dropout names the method {method!r}, which is not known. "
                    f"Allowed forms: {_DROPOUT_FORMS}."
                )
            if not _probability(p):
                raise OptionError(
                    f"{where(layer)}option Dropout gives {method!r} the probability {p!r}, but a dropout "
                    "probability must be a number with 0 ≤ p < 1."
                )
        return {m: float(p) for m, p in spec.items()}
    raise OptionError(f"{where(layer)}option Dropout was given {spec!r}. Allowed forms: {_DROPOUT_FORMS}.")


class LongShortTermMemoryLayer(Layer):
    """A trainable recurrent layer: a sequence of size-k vectors in, a sequence of size-n
    vectors of the same length out (long short-term memory, no peepholes).

    For x_1..x_T, σ the logistic sigmoid and * elementwise::

        i_t = σ(W_ix·x_t + W_is·s_{t-1} + b_i)      o_t = σ(W_ox·x_t + W_os·s_{t-1} + b_o)
        f_t = σ(W_fx·x_t + W_fs·s_{t-1} + b_f)      m_t = tanh(W_mx·x_t + W_ms·s_{t-1} + b_m)
        c_t = f_t*c_{t-1} + i_t*m_t                 s_t = o_t*tanh(c_t)   (output element t)

    Ports: "Input" (T×k), "Output" (T×n); state ports "State" and "CellState" (n): fed in a
    NetGraph they set s_0, c_0 (default zero); read, they give s_T, c_T.

    Arrays: {Input,Output,Forget,Memory}Gate{InputWeights (n×k), StateWeights (n×n), Biases (n)}.
    Legend: k input size, n output size, T sequence length, B batch size.

    >>> lstm = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    >>> len(lstm([[1, 2], [3, 4], [5, 6]]))
    3
    """

    OPTIONS = {
        "Input": Automatic,
        "Output": Automatic,
        "Dropout": None,
        "LearningRateMultipliers": Automatic,
        **{name: Automatic for name in K.ARRAY_NAMES},
    }

    def __init__(self, n, **options):
        super().__init__()
        self._check_options(options)
        self.n = parse_size(n, self.name, "n (the output size)", allow_automatic=False)
        self._given = {k: v for k, v in options.items() if k not in K.ARRAY_NAMES}
        self._dropout = parse_dropout(options.get("Dropout"), self.name)
        in_type = self._parse_input(options.get("Input", Automatic))
        # arrays given as options; their shapes may tell k
        k = in_type.dims[1]
        self._arrays = dict.fromkeys(K.ARRAY_NAMES)
        for name in K.ARRAY_NAMES:
            value = options.get(name, Automatic)
            if value is Automatic or value is None:
                continue
            shape = K.array_shapes(self.n, k)[name] or (self.n, None)
            t = self._array_option(name, value, shape)
            if name.endswith("InputWeights"):
                if k is not None and t.shape[1] != k:
                    raise ShapeError(
                        f"{where(self.name)}array {name} has {t.shape[1]} columns, but the input size k is "
                        f"{k}; an input weight matrix must be n×k."
                    )
                k = t.shape[1]
            self._arrays[name] = t
        self._in = {"Input": in_type.with_dims((in_type.dims[0], k))}
        self._lr = self._parse_lr(options.get("LearningRateMultipliers", Automatic))
        out_type = Real(in_type.dims[0], self.n)
        if options.get("Output", Automatic) is not Automatic:
            given = parse_sequence_shape(options["Output"], self.name, "Output")
            out_type = unify(out_type, given, f'{self.name} port "Output"', "the Output option")
            if out_type.dims[0] != VARYING:
                self._in["Input"] = self._in["Input"].with_dims((out_type.dims[0], k))
        self._out = {"Output": out_type}

    def _parse_input(self, spec) -> ArrayType:
        if spec is Automatic or spec is None:
            return Real(VARYING, None)
        if hasattr(spec, "output_type"):  # a NetEncoder
            t = spec.output_type
            if t.integer or t.rank != 2:
                raise ShapeError(
                    f'{where(self.name, "Input")}the encoder produces {describe(t)}, but the layer needs a '
                    'sequence of vectors. Use the encoder\'s "UnitVector" form, or put an EmbeddingLayer '
                    "in front of the layer."
                )
            self._encoders = {"Input": spec}
            return t
        return parse_sequence_shape(spec, self.name, "Input")

    # ---- shapes ----
    @property
    def k(self) -> int | None:
        return self._in["Input"].dims[1]

    def array_shapes(self) -> dict:
        return K.array_shapes(self.n, self.k)

    def initial_array(self, name: str, shape: tuple):
        return torch.ones(shape) if name == "ForgetGateBiases" else None

    def state_ports(self) -> dict:
        return {"State": Real(self.n), "CellState": Real(self.n)}

    def infer(self, inputs: dict) -> LongShortTermMemoryLayer:
        t = inputs.get("Input")
        if t is None:
            return self
        if t.dims is not None and len(t.dims) != 2:
            raise ShapeError(
                f'{where(self.name, "Input")}the layer expects a sequence of vectors, but the input is '
                f"{describe(t)}."
            )
        new_in = unify(t, self._in["Input"], "the preceding layer", f'{self.name} port "Input"')
        if new_in == self._in["Input"]:
            return self
        new = self._copy()
        new._in["Input"] = new_in
        new._out["Output"] = self._out["Output"].with_dims((new_in.dims[0], self.n))
        return new

    # ---- evaluation ----
    def forward(self, arrays: dict, inputs: dict, ctx, module) -> dict:
        x = inputs["Input"]
        seq = isinstance(x, Seq)
        data, lengths = (x.data, x.lengths) if seq else (x, None)
        s0 = inputs.get("State")
        c0 = inputs.get("CellState")
        if ctx.train and self._dropout:
            out, s, c = lstm_dropout(data, lengths, arrays, s0, c0, self._dropout, ctx.generator)
        else:
            if module.frozen and not torch.is_grad_enabled():
                w = module.cache.get("fused")
                if w is None:
                    w = module.cache["fused"] = [t.contiguous() for t in K.pack(arrays)]
            else:
                w = K.pack(arrays)
            out, s, c = K.fused(data, lengths, w, s0, c0, exact_cell=ctx.states or module.need_cell)
        return {"Output": Seq(out, lengths) if seq else out, "State": s, "CellState": c}

    # ---- display ----
    def _option_code(self) -> str:
        parts = [str(self.n)]
        for key, value in self._given.items():
            if key == "Input" and value is not Automatic:
                enc = self._encoders.get("Input")
                parts.append(f"Input={enc.input_form() if enc is not None else shape_code(self._in['Input'])}")
            elif key == "Output" and value is not Automatic:
                parts.append(f"Output={shape_code(self._out['Output'])}")
            elif key in ("Dropout", "LearningRateMultipliers") and value not in (None, Automatic):
                parts.append(f"{key}={value!r}")
        return ", ".join(parts)
