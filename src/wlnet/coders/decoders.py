"""NetDecoder: tensors → user values.

("Class", labels): a probability vector → the most probable label; on a sequence (or any
array) of probability vectors, a label per vector (a list per example). ("Characters",
alphabet): a sequence of probability vectors → a string, the most probable character at each
step. Properties, given as the port argument (`net(x, "Probabilities")`,
`net(x, ("TopProbabilities", 3))`), per vector:

  "Decision"                 the most probable label (Characters: the string)
  "Probabilities"            a dict label → probability
  ("Probabilities", label)   that label's probability
  "TopProbabilities"         (label, probability) pairs with probability above 0.1, most probable first
  ("TopProbabilities", k)    the k most probable (label, probability) pairs, most probable first
  ("TopDecisions", n)        the n most probable labels, most probable first
  ("Probability", label)     that label's probability (as ("Probabilities", label))
  "Entropy"                  −Σ p log p, in nats
  "RandomSample"             a label drawn with its probability (Characters: a string, a character per step)
  ("RandomSample", t)        drawn at temperature t > 0: with probabilities ∝ p^(1/t)
  ("RandomSample", {"Temperature": t, "TopProbabilities": k, "TotalProbabilityCutoff": q})
                             drawn among the k most probable labels, or the fewest most probable ones whose
                             probabilities sum to at least q, at temperature t (each optional)

Samples come from torch's global generator (`torch.manual_seed` repeats them).

Every property but "Decision" needs probabilities (entries in [0, 1], each vector summing to
1): values that are not, such as a LinearLayer's without a SoftmaxLayer, are an error.
"""

from __future__ import annotations

import torch

from ..core.data import Batch, PortReader, Seq
from ..core.errors import EncodingError, OptionError, ShapeError, where
from ..core.shapes import VARYING, ArrayType, Real, describe, unify
from .labels import _alphabet, _hashable, _labels, _short

DECODER_PROPERTIES = ("Decision", "Probabilities", "TopProbabilities", "Entropy", "RandomSample")
PARAMETRIC = ('("TopProbabilities", k)', '("TopDecisions", n)', '("Probabilities", label)', '("Probability", label)',
              '("RandomSample", t)', '("RandomSample", {"Temperature": t, "TopProbabilities": k, '
              '"TotalProbabilityCutoff": q})')
_SAMPLING = ("Temperature", "TopProbabilities", "TotalProbabilityCutoff")
_TOP = 0.1  # "TopProbabilities" lists the labels more probable than this


class NetDecoder:
    """NetDecoder(("Class", labels)) or NetDecoder(("Characters", alphabet)).

    A Class decoder reads a probability vector (size len(labels)), or a sequence or array of
    them (a label per vector); a Characters decoder reads a sequence of probability vectors
    (size len(alphabet); the alphabet a string or a list of characters and character classes,
    as for NetEncoder) and gives a string.

    >>> NetDecoder(("Class", ["a", "b"]))([0.2, 0.8])
    'b'
    >>> NetDecoder(("Characters", "ab"))([[0.9, 0.1], [0.3, 0.7]])
    'ab'
    """

    def __new__(cls, spec=None, **options):
        if cls is NetDecoder and isinstance(spec, tuple | list) and spec and spec[0] == "Tokens":
            from .tokens import TokensDecoder  # ("Tokens", words): its own module

            cls = TokensDecoder
        if cls is NetDecoder and isinstance(spec, tuple | list) and spec and spec[0] == "CTCBeamSearch":
            from .ctc import CTCBeamSearchDecoder

            cls = CTCBeamSearchDecoder
        return super().__new__(cls)

    def __init__(self, spec, **options):
        if options:
            raise OptionError(f"NetDecoder: {', '.join(repr(k) for k in sorted(options))} is not an option of "
                              "NetDecoder; it takes none.")
        if spec == "Characters" or (isinstance(spec, tuple | list) and tuple(spec) == ("Characters",)):
            from .encoders import DEFAULT_ALPHABET

            spec = ("Characters", DEFAULT_ALPHABET)
        if not isinstance(spec, tuple | list) or len(spec) != 2 or spec[0] not in ("Class", "Characters"):
            raise OptionError(f'NetDecoder: expected ("Class", labels) or ("Characters", alphabet), but was given '
                              f"{spec!r}.")
        self.kind = spec[0]
        if self.kind == "Class":
            self.labels = _labels(spec[1], "NetDecoder")
            self.input_type = Real(len(self.labels))
        else:
            self.labels = _alphabet(spec[1])
            self.input_type = Real(VARYING, len(self.labels))
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        self._spec = spec

    def __repr__(self) -> str:
        return f"NetDecoder({self._spec!r})"

    def input_form(self) -> str:
        if self.kind == "Characters":
            items = self._spec[1]
            return f"NetDecoder(('Characters', {(items if isinstance(items, str) else list(items))!r}))"
        return f"NetDecoder(('Class', [{', '.join(repr(lab) for lab in self.labels)}]))"

    def _repr_html_(self) -> str:
        from ..show.display import coder_html

        return coder_html(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, NetDecoder) and self.kind == other.kind and self.labels == other.labels

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.labels)))

    def accept(self, t: ArrayType, what: str) -> ArrayType:
        """The type of the port this decoder reads, given the type t that `what` produces there; a
        ShapeError if it cannot read it."""
        n = len(self.labels)
        if t.dims is None:
            return self.input_type
        if self.kind == "Characters" and len(t.dims) != 2:
            raise ShapeError(f"{what} produces {describe(t)}, but the Characters decoder reads a sequence of "
                             f"size-{n} probability vectors.")
        if not t.dims:
            raise ShapeError(f"{what} produces {describe(t)}, but the Class decoder reads a size-{n} probability "
                             "vector (or a sequence of them).")
        return unify(t, Real(*t.dims[:-1], n), what, f"the {self.kind} decoder")

    # ---- decoding ----
    def _property(self, prop, layer: str, port: str) -> tuple:
        if prop is None:
            return "Decision", None
        if isinstance(prop, str) and prop in DECODER_PROPERTIES:
            return prop, ({"Temperature": 1.0} if prop == "RandomSample" else None)
        if isinstance(prop, list):
            prop = tuple(prop)
        if isinstance(prop, tuple) and len(prop) == 2 and prop[0] in ("TopProbabilities", "TopDecisions"):
            k = prop[1]
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise OptionError(f'{where(layer, port)}("{prop[0]}", k) needs a positive integer k, but '
                                  f"was given {k!r}.")
            return prop[0], min(k, len(self.labels))
        if isinstance(prop, tuple) and len(prop) == 2 and prop[0] == "RandomSample":
            return "RandomSample", self._sampling(prop[1], layer, port)
        if isinstance(prop, tuple) and len(prop) == 2 and prop[0] in ("Probabilities", "Probability"):
            if not _hashable(prop[1]) or prop[1] not in self.index:
                raise OptionError(f"{where(layer, port)}{prop[1]!r} is not one of the {self.kind} decoder's labels "
                                  f"{self._label_text()}.")
            return "Probabilities", self.index[prop[1]]
        raise OptionError(
            f"{where(layer, port)}{prop!r} is neither an output port nor a property of the {self.kind} decoder; the "
            f"properties are {', '.join(DECODER_PROPERTIES)}, {', '.join(PARAMETRIC)}."
        )

    def _sampling(self, spec, layer: str, port: str) -> dict:
        """("RandomSample", t) or ("RandomSample", {...}) → {"Temperature": t, ...}, checked."""
        here = where(layer, port)
        params = {"Temperature": spec} if not isinstance(spec, dict) else dict(spec)
        unknown = sorted(set(params) - set(_SAMPLING), key=str)
        if unknown:
            raise OptionError(f'{here}{unknown[0]!r} is not a parameter of "RandomSample"; the parameters are '
                              f"{', '.join(_SAMPLING)}.")
        t = params.setdefault("Temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or not t > 0 or t == float("inf"):
            raise OptionError(f'{here}"RandomSample" needs a positive temperature, but was given {t!r}.')
        k = params.get("TopProbabilities")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise OptionError(f'{here}"RandomSample"\'s "TopProbabilities" needs a positive integer, but was given '
                              f"{k!r}.")
        q = params.get("TotalProbabilityCutoff")
        if q is not None and (isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q <= 1):
            raise OptionError(f'{here}"RandomSample"\'s "TotalProbabilityCutoff" needs a probability in (0, 1], '
                              f"but was given {q!r}.")
        return params

    def _label_text(self) -> str:
        return repr("".join(self.labels)) if self.kind == "Characters" else repr(self.labels)

    def decode(self, value, batched: bool, prop, layer: str, port: str):
        """A port's value (tensor (B, ..., n) or Seq) → the user's values of the property `prop`."""
        name, arg = self._property(prop, layer, port)
        data, lengths = (value.data, value.lengths) if isinstance(value, Seq) else (value, None)
        p = data.detach().to("cpu", torch.float64)  # (B, ..., n)
        if name != "Decision":
            from ..layers.loss import check_probabilities  # (the layers import this module)

            mask = Seq(p, lengths).mask()
            what = f'the {self.kind} decoder\'s "{name}"'
            check_probabilities(p, mask, True, where(layer, port), " End the net with a SoftmaxLayer.", what)
        flat = p.reshape(-1, p.shape[-1])  # (vectors, n)
        labels = self.labels
        if name == "Decision":
            out = [labels[i] for i in flat.argmax(1).tolist()]
        elif name == "Probabilities" and arg is None:
            out = [dict(zip(labels, row)) for row in flat.tolist()]
        elif name == "Probabilities":
            out = flat[:, arg].tolist()
        elif name == "TopProbabilities" and arg is None:
            out = [sorted(((lab, q) for lab, q in zip(labels, row) if q > _TOP), key=lambda lq: -lq[1])
                   for row in flat.tolist()]
        elif name == "TopProbabilities":
            top = flat.topk(arg, dim=1)
            out = [[(labels[i], q) for i, q in zip(idx, vals)]
                   for idx, vals in zip(top.indices.tolist(), top.values.tolist())]
        elif name == "TopDecisions":
            out = [[labels[i] for i in idx] for idx in flat.topk(arg, dim=1).indices.tolist()]
        elif name == "RandomSample":
            out = [labels[i] for i in _sample(flat, arg).tolist()]
        else:
            out = (-(flat * flat.clamp_min(1e-300).log()).sum(1)).tolist()
        out = _nest(out, tuple(p.shape[:-1]))
        if lengths is not None:
            out = [example[:n] for example, n in zip(out, lengths.tolist())]
        if self.kind == "Characters" and name in ("Decision", "RandomSample"):
            out = ["".join(example) for example in out]
        return out if batched else out[0]

    def __call__(self, probabilities, prop=None):
        """The decoding of a probability vector (Characters: a sequence of them), or of a list of
        them; `prop` as for a net's output port.

        >>> NetDecoder(("Class", ["a", "b"]))([[0.2, 0.8], [0.6, 0.4]], "Probabilities")
        [{'a': 0.2, 'b': 0.8}, {'a': 0.6, 'b': 0.4}]
        """
        b = PortReader(self.input_type, "NetDecoder", "Input").read(probabilities)
        return self.decode(b.value, b.batched, prop, "NetDecoder", "Input")

    # ---- targets ----
    def target_reader(self, layer: str, port: str, t: ArrayType | None = None):
        """The reader of training targets for a port of type t that this decoder reads: labels
        (a label per vector; Characters: strings) → 0-based class indices, a LongTensor (B, ...)
        or, for sequences, a Seq."""
        if self.kind == "Characters":
            return _StringTargets(self, layer, port, t)
        if t is not None and t.dims is not None and len(t.dims) >= 2:
            return _SequenceTargets(self, layer, port, t)
        return _TargetReader(self, layer, port)


def _sample(p: torch.Tensor, params: dict) -> torch.Tensor:
    """A class index drawn from each row of p (vectors, n), with probabilities ∝ p^(1/t), among the
    TopProbabilities k most probable classes or the most probable ones whose total reaches
    TotalProbabilityCutoff q (each a restriction only when given)."""
    order = p.argsort(1, descending=True)  # (vectors, n)
    ranked = p.gather(1, order)
    keep = torch.ones_like(ranked, dtype=torch.bool)
    k = params.get("TopProbabilities")
    if k is not None:
        keep[:, k:] = False
    q = params.get("TotalProbabilityCutoff")
    if q is not None:  # a class stays while the more probable ones before it sum to less than q
        keep &= (ranked.cumsum(1) - ranked) < q
    t = float(params["Temperature"])
    weights = torch.where(keep, ranked.clamp_min(0) ** (1 / t), torch.zeros_like(ranked))
    weights[:, 0] += (weights.sum(1) == 0).to(weights.dtype)  # all mass underflowed at a low t: the most probable
    return order.gather(1, torch.multinomial(weights, 1)).squeeze(1)


def _nest(flat: list, shape: tuple) -> list:
    """A flat list of len prod(shape) → nested lists of the given shape (its first axis the batch)."""
    for d in reversed(shape[1:]):
        flat = [flat[i:i + d] for i in range(0, len(flat), d)]
    return flat


class _TargetReader:
    """Labels (one or a list) → a LongTensor (B,) of 0-based class indices."""

    def __init__(self, dec: NetDecoder, layer: str, port: str):
        self.dec = dec
        self.layer = layer
        self.port = port

    def read(self, data) -> Batch:
        index = self.dec.index
        if _hashable(data) and data in index:
            return Batch(torch.tensor([index[data]]), False, "list", 1)
        if isinstance(data, list | tuple) and data:
            idx = []
            for j, lab in enumerate(data):
                if not _hashable(lab) or lab not in index:
                    raise EncodingError(
                        f"{where(self.layer, self.port)}target {j + 1}, {lab!r}, is not one of the Class decoder's "
                        f"labels {self.dec.labels!r}."
                    )
                idx.append(index[lab])
            return Batch(torch.tensor(idx), True, "list", len(idx))
        raise EncodingError(
            f"{where(self.layer, self.port)}the target {_short(data)} is not one of the Class decoder's labels "
            f"{self.dec.labels!r}."
        )


class _SequenceTargets:
    """A list of labels per example, one per step (a list of such lists: a batch) → a Seq of
    0-based class indices (B, T), zero-padded."""

    def __init__(self, dec: NetDecoder, layer: str, port: str, t: ArrayType):
        self.dec, self.layer, self.port = dec, layer, port
        self.length = t.dims[0] if isinstance(t.dims[0], int) else None  # a fixed sequence length

    def _is_label(self, x) -> bool:
        return _hashable(x) and x in self.dec.index

    def read(self, data) -> Batch:
        here = where(self.layer, self.port)
        rows = [e for e in data] if isinstance(data, list | tuple) else None
        if not rows:
            raise EncodingError(f"{here}the port takes a list of labels per example, one per step, but was given "
                                f"{_short(data)}.")
        nested = [isinstance(e, list | tuple) and not self._is_label(e) for e in rows]
        batched = all(nested)
        if not batched and any(nested):
            raise EncodingError(f"{here}the targets mix labels and lists of labels; give a list of labels per "
                                "example, one per step.")
        rows = rows if batched else [rows]
        return Batch(_index_rows(rows, self.dec.index, self._bad, self.length, here, batched), batched, "list",
                     len(rows))

    def _bad(self, lab, j: int, s: int, batched: bool) -> EncodingError:
        place = f"target {j + 1}, step {s + 1}" if batched else f"step {s + 1}"
        return EncodingError(f"{where(self.layer, self.port)}{place}: {_short(lab)} is not one of the Class "
                             f"decoder's labels {self.dec.labels!r}.")


class _StringTargets:
    """A string per example (a list of strings: a batch) → a Seq of 0-based character indices."""

    def __init__(self, dec: NetDecoder, layer: str, port: str, t: ArrayType | None):
        self.dec, self.layer, self.port = dec, layer, port
        self.length = t.dims[0] if t is not None and t.dims and isinstance(t.dims[0], int) else None

    def read(self, data) -> Batch:
        here = where(self.layer, self.port)
        if isinstance(data, str):
            rows, batched = [data], False
        elif isinstance(data, list | tuple) and data and all(isinstance(s, str) for s in data):
            rows, batched = list(data), True
        else:
            raise EncodingError(f"{here}the Characters decoder's targets are strings (or a list of them), but was "
                                f"given {_short(data)}.")
        return Batch(_index_rows(rows, self.dec.index, self._bad, self.length, here, batched), batched, "list",
                     len(rows))

    def _bad(self, c, j: int, s: int, batched: bool) -> EncodingError:
        place = f"target {j + 1}, " if batched else ""
        return EncodingError(f"{where(self.layer, self.port)}{place}character {s + 1}, {c!r}, is not in the Characters "
                             f"decoder's alphabet {''.join(self.dec.labels)!r}.")


def _index_rows(rows: list, index: dict, bad, length, here: str, batched: bool) -> Seq:
    """Rows of labels → a Seq of their 0-based indices, zero-padded past each row's length."""
    out = []
    for j, row in enumerate(rows):
        if not len(row):
            raise EncodingError(f"{here}target {j + 1} is empty; a sequence target has at least one step.")
        if length is not None and len(row) != length:
            raise EncodingError(f"{here}target {j + 1} has {len(row)} steps, but the port's sequences have {length}.")
        try:
            out.append(torch.tensor([index[lab] for lab in row]))
        except (KeyError, TypeError):
            s = next(s for s, lab in enumerate(row) if not _hashable(lab) or lab not in index)
            raise bad(row[s], j, s, batched) from None
    lengths = [len(r) for r in out]
    data = torch.nn.utils.rnn.pad_sequence(out, batch_first=True)  # (B, T)
    return Seq(data, torch.tensor(lengths) if len(set(lengths)) > 1 else None)


__all__ = ["NetDecoder", "DECODER_PROPERTIES"]
