"""AttentionLayer and SequenceAttentionLayer: for each query vector, a weighted sum of the value
vectors, the weights the softmax over the keys of a score s = f(key, query).

Shapes (per example): Key n×k, Value n×v, Query q (one query) or m×q (a sequence of queries);
Output v or m×v; "AttentionWeights" n (one query) or n×m (keys first). n and m may vary from
example to example; the softmax runs over each example's own n keys.

Scores: "Dot" s = k·q (k = q); "Bilinear" s = k·W·q with a trainable "Weights" array W (k×q).
"ScoreRescaling" -> "DimensionSqrt" divides the scores by √k; "Mask" -> "Causal" lets query i
see keys 1..i only (and ("Causal", w) keys i−w+1..i).
"""

from __future__ import annotations

import math
import numbers

import torch

from ..core import options as O
from ..core.data import Seq
from ..core.errors import InputError, NotSupportedError, OptionError, ShapeError, where
from ..core.shapes import VARYING, ArrayType, Real, describe
from ..core.symbols import Automatic
from .base import Layer, _unset
from .shape import _input_type

SCORINGS = ("Dot", "Bilinear")


def _data(x) -> torch.Tensor:
    return x.data if isinstance(x, Seq) else x


def _lengths(x, T: int, B: int) -> torch.Tensor:
    """(B,) int64 on the CPU: each example's number of steps."""
    if isinstance(x, Seq) and x.lengths is not None:
        return x.lengths
    return torch.full((B,), T, dtype=torch.int64)


def _steps(t: ArrayType):
    return t.dims[0] if t.dims is not None and len(t.dims) == 2 else None


def _size(t: ArrayType):
    return t.dims[-1] if t.dims else None


class AttentionLayer(Layer):
    """For each query vector, the weighted sum of the value vectors, the weights the softmax of
    the scores of every key against that query over each example's own keys.

    AttentionLayer() scores "Bilinear" (s = k·W·q, array "Weights" k×q); AttentionLayer("Dot")
    scores s = k·q. Ports: "Key" (n×k), "Value" (n×v), "Query" (a vector of size q, or a sequence
    m×q); "Output" (v, or m×v) and "AttentionWeights" (n, or n×m: for each key, its weight in
    each query's sum). Options: "ScoreRescaling" (None or "DimensionSqrt": scores over √k),
    "Mask" (None, "Causal", or ("Causal", w)), "Dropout" (on the weights, in training),
    LearningRateMultipliers; Key, Value, Query: shapes.

    >>> att = AttentionLayer("Dot")
    >>> att({"Key": [[1.0, 0.0], [0.0, 1.0]], "Value": [[2.0], [4.0]], "Query": [0.0, 0.0]})
    {'Output': [3.0], 'AttentionWeights': [0.5, 0.5]}
    """

    OPTIONS = {"Key": Automatic, "Value": Automatic, "Query": Automatic, "ScoreRescaling": None, "Mask": None,
               "Dropout": 0, "MultiHead": False, "Weights": Automatic, "LearningRateMultipliers": Automatic}

    def __init__(self, net="Bilinear", **options):
        if not isinstance(net, str):
            raise NotSupportedError(f"{self.name}: a scoring net other than \"Dot\" or \"Bilinear\" is not supported "
                                    f"yet; it was given {type(net).__name__}.")
        if net not in SCORINGS:
            raise OptionError(f'{self.name}: the scoring function must be "Dot" or "Bilinear", but was given {net!r}.')
        arrays = ("Weights",) if net == "Bilinear" else ()
        if net == "Dot" and not _unset(options.get("Weights")):
            raise OptionError(f'{self.name}: "Dot" scoring has no arrays, but Weights was given.')
        super().__init__((net,) if net != "Bilinear" else (), options, arrays)
        self.scoring = net
        rescale = options.get("ScoreRescaling", None)
        if rescale not in (None, "DimensionSqrt"):
            raise OptionError(f'{self.name}: option "ScoreRescaling" must be None or "DimensionSqrt", but was given '
                              f"{rescale!r}.")
        self.rescale = rescale
        self.mask, self.window = self._parse_mask(options.get("Mask", None))
        self.dropout = O.probability(options.get("Dropout", 0), self.name, 'option "Dropout"')
        if options.get("MultiHead", False) is not False:
            raise NotSupportedError(f'{self.name}: "MultiHead" -> True is not supported yet.')
        self._in = {p: self._port_type(p, spec) for p, spec in self._port_specs(options).items()}
        for p, t in self._in.items():
            self._accept(p, t)
        w = options.get("Weights", Automatic)
        if net == "Bilinear" and not _unset(w):
            k, q = _size(self._in["Key"]), _size(self._in["Query"])
            self._arrays["Weights"] = self._array_option("Weights", w, (k, q))
            k, q = self._arrays["Weights"].shape
            self._in["Key"] = self._in["Key"].with_dims(self._in["Key"].dims[:-1] + (k,))
            self._in["Query"] = self._in["Query"].with_dims(self._in["Query"].dims[:-1] + (q,))
        self._derive()

    def _port_specs(self, options: dict) -> dict:
        return {p: options.get(p, Automatic) for p in ("Key", "Value", "Query")}

    def _parse_mask(self, mask):
        if mask is None:
            return None, None
        if mask == "Causal":
            return "Causal", None
        if isinstance(mask, tuple | list) and len(mask) == 2 and mask[0] == "Causal":
            return "Causal", O.positive_int(mask[1], self.name, 'the window of "Mask" -> ("Causal", w)',
                                            allow_automatic=False)
        raise OptionError(f'{self.name}: option "Mask" must be None, "Causal" or ("Causal", w), but was given '
                          f"{mask!r}.")

    def _port_type(self, port: str, spec) -> ArrayType:
        if _unset(spec):  # a query vector, unless the causal mask says the queries are a sequence
            return Real(None) if port == "Query" and not self.mask else Real(VARYING, None)
        if isinstance(spec, numbers.Integral) and not isinstance(spec, bool) and port == "Query":
            return Real(O.positive_int(spec, self.name, "Query", allow_automatic=False))
        return _input_type(self, spec, port)

    def _accept(self, port, t) -> None:
        if t.dims is None:
            return
        ok = len(t.dims) in ((1, 2) if port == "Query" else (2,)) and not t.integer
        if not ok:
            what = "a vector or a sequence of vectors" if port == "Query" else "a sequence of vectors"
            raise ShapeError(f"{where(self.name, port)}the layer expects {what}, but its input is {describe(t)}.")

    def infer(self, inputs: dict) -> Layer:
        q = inputs.get("Query")
        if q is not None and q.dims is not None and self._in["Query"].dims is not None \
                and len(q.dims) != len(self._in["Query"].dims) and self._in["Query"].dims == (None,):
            # an unset Query (a vector by default) takes the rank it is given
            new = self._copy()
            new._in["Query"] = ArrayType((None,) * len(q.dims))
            return Layer.infer(new, inputs)
        return super().infer(inputs)

    def _derive(self) -> None:
        key, value, query = self._in["Key"], self._in["Value"], self._in["Query"]
        n, nv = _steps(key), _steps(value)
        if isinstance(n, int) and isinstance(nv, int) and n != nv:
            raise ShapeError(f'{where(self.name, "Value")}the keys and values must be as many, but the key is '
                             f"{describe(key)} and the value {describe(value)}.")
        n = nv if n in (None, VARYING) and isinstance(nv, int) else n
        k, q, v = _size(key), _size(query), _size(value)
        if self.scoring == "Dot" and isinstance(k, int) and isinstance(q, int) and k != q:
            raise ShapeError(f'{where(self.name, "Query")}"Dot" scoring needs queries of the keys\' size {k}, but the '
                             f"query is {describe(query)}.")
        if self.scoring == "Dot":
            k = q = k if k is not None else q
        self._in["Key"] = key.with_dims((n, k))
        self._in["Value"] = value.with_dims((n, v))
        self._in["Query"] = query.with_dims(query.dims[:-1] + (q,))
        many = len(query.dims) == 2
        m = query.dims[0] if many else None
        if self.mask and many and isinstance(m, int) and isinstance(n, int) and m != n:
            raise ShapeError(f'{where(self.name, "Query")}"Mask" -> "Causal" needs as many queries as keys, but the '
                             f"query is {describe(query)} and the key {describe(key)}.")
        self._out = {"Output": Real(m, v) if many else Real(v),
                     "AttentionWeights": Real(n, None if m == VARYING else m) if many else Real(n)}

    def array_shapes(self) -> dict:
        if self.scoring != "Bilinear":
            return {}
        k, q = _size(self._in["Key"]), _size(self._in["Query"])
        return {"Weights": (k, q) if isinstance(k, int) and isinstance(q, int) else None}

    def summary_code(self) -> str:
        return f"{self.name}({self._option_code()})"

    def forward(self, arrays, inputs, ctx):
        key, value, query = inputs["Key"], inputs["Value"], inputs["Query"]
        K, V, Q = _data(key), _data(value), _data(query)  # (B, n, k), (B, n, v), (B, q) or (B, m, q)
        B, n = K.shape[:2]
        klen = _lengths(key, n, B)
        if V.shape[1] != n or not torch.equal(klen, _lengths(value, V.shape[1], B)):
            raise InputError(f'{where(self.name, "Value")}each example needs as many values as keys, but the keys '
                             f"have lengths {klen.tolist()} and the values {_lengths(value, V.shape[1], B).tolist()}.")
        many = len(self._in["Query"].dims) == 2
        Q3 = Q if many else Q.unsqueeze(1)  # (B, m, q)
        m = Q3.shape[1]
        qlen = _lengths(query, m, B) if many else torch.ones(B, dtype=torch.int64)
        if self.mask and not torch.equal(qlen, klen):
            raise InputError(f'{where(self.name, "Query")}"Mask" -> "Causal" needs as many queries as keys in each '
                             f"example, but the queries have lengths {qlen.tolist()} and the keys {klen.tolist()}.")
        if self.scoring == "Bilinear":
            Q3 = Q3 @ arrays["Weights"].t()  # (B, m, k): W·q
        S = Q3 @ K.transpose(1, 2)  # (B, m, n)
        if self.rescale == "DimensionSqrt":
            S = S / math.sqrt(K.shape[-1])
        hide = self._hidden(klen, m, n, K.device)  # (B or 1, m, n) or None
        if hide is not None:
            S = S.masked_fill(hide, float("-inf"))
        w = torch.softmax(S, -1)  # (B, m, n)
        if ctx.train and self.dropout > 0:
            keep = 1.0 - self.dropout
            w = w * torch.empty_like(w).bernoulli_(keep, generator=ctx.generator) / keep
        out = w @ V  # (B, m, v)
        weights = w.transpose(1, 2)  # (B, n, m)
        if many and isinstance(query, Seq) and query.lengths is not None:
            real = (torch.arange(m, device=Q.device) < qlen.to(Q.device).unsqueeze(1)).to(out.dtype)  # (B, m)
            out = out * real.unsqueeze(-1)
            weights = weights * real.unsqueeze(1)
        ragged_keys = isinstance(key, Seq) and key.lengths is not None
        weights = Seq(weights if many else weights.squeeze(-1), key.lengths if ragged_keys else None)
        if many:
            out = Seq(out, query.lengths if isinstance(query, Seq) else None)
        else:
            out = out.squeeze(1)
        return {"Output": out, "AttentionWeights": weights}

    def _hidden(self, klen: torch.Tensor, m: int, n: int, device) -> torch.Tensor | None:
        """True where a query may not see a key: past the example's keys, or (causal) ahead of it."""
        hide = None
        if int(klen.min()) < n:
            hide = (torch.arange(n, device=device) >= klen.to(device).unsqueeze(1)).unsqueeze(1)  # (B, 1, n)
        if self.mask == "Causal":
            i = torch.arange(m, device=device).unsqueeze(1)
            j = torch.arange(n, device=device).unsqueeze(0)
            causal = j > i
            if self.window is not None:
                causal = causal | (j <= i - self.window)
            causal = causal.unsqueeze(0)  # (1, m, n)
            hide = causal if hide is None else hide | causal
        return hide


class SequenceAttentionLayer(AttentionLayer):
    """AttentionLayer with one "Input" port serving as both its "Key" and its "Value" (the form
    Wolfram keeps for older code): ports "Input" (n×k), "Query" (q or m×q); "Output" (k or m×k).

    >>> att = SequenceAttentionLayer("Dot")
    >>> att({"Input": [[1.0, 0.0], [0.0, 1.0]], "Query": [0.0, 0.0]})
    [0.5, 0.5]
    """

    OPTIONS = {"Input": Automatic, "Query": Automatic, "ScoreRescaling": None, "Mask": None, "Dropout": 0,
               "Weights": Automatic, "LearningRateMultipliers": Automatic}

    def _port_specs(self, options: dict) -> dict:
        spec = options.get("Input", Automatic)
        return {"Key": spec, "Value": spec, "Query": options.get("Query", Automatic)}

    def input_ports(self) -> dict:
        return {"Input": self._in["Key"], "Query": self._in["Query"]}

    def infer(self, inputs: dict) -> Layer:
        inputs = dict(inputs)
        if "Input" in inputs:
            x = inputs.pop("Input")
            inputs["Key"] = inputs["Value"] = x
        return super().infer(inputs)

    def _derive(self) -> None:
        super()._derive()
        self._out = {"Output": self._out["Output"]}

    def forward(self, arrays, inputs, ctx):
        out = super().forward(arrays, {"Key": inputs["Input"], "Value": inputs["Input"], "Query": inputs["Query"]},
                              ctx)
        return {"Output": out["Output"]}
