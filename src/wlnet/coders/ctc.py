"""The "CTCBeamSearch" decoder: a sequence of probability vectors over n classes and the blank
(size n+1, the blank last, as CTCLossLayer takes them) → the most probable labelling, the sum
over every path that reads it once repeats are merged and blanks removed.

The search is the prefix beam search: at each step the BeamSize most probable prefixes are
kept, each with its probability of ending in a blank and in its last class. "BeamSize" -> 1 is
the greedy (best path) decoding: the most probable class at each step, repeats merged, blanks
removed. Properties: "Decoding" (the default), "Decodings" (the beam's labellings), ("TopDecodings",
k), "NegativeLogLikelihoods" ([(labelling, −log p)], p the sum over all of the labelling's paths),
("TopNegativeLogLikelihoods", k).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..core.data import Seq
from ..core.errors import OptionError, ShapeError, where
from ..core.shapes import VARYING, Real, describe
from .decoders import NetDecoder
from .labels import _labels, _short

DEFAULT_BEAM = 100
_PROPERTIES = ("Decoding", "Decodings", "NegativeLogLikelihoods")
_TOP = ("TopDecodings", "TopNegativeLogLikelihoods")


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def greedy(logp: np.ndarray) -> tuple[tuple, float]:
    """The best path of logp (T, n+1): its labelling (class indices 0..n−1) and −log of the
    labelling's probability, the sum over its paths."""
    best = logp.argmax(1)
    out, last = [], -1
    for k in best.tolist():
        if k != last and k != logp.shape[1] - 1:
            out.append(k)
        last = k
    return tuple(out), -labelling_logp(logp, tuple(out))


def labelling_logp(logp: np.ndarray, label: tuple) -> float:
    """log p(label | logp) by the CTC forward recursion (logp (T, n+1), the blank last)."""
    blank = logp.shape[1] - 1
    ext = [blank]
    for k in label:
        ext += [k, blank]
    S, T = len(ext), logp.shape[0]
    alpha = np.full(S, -np.inf)
    alpha[0] = logp[0, blank]
    if S > 1:
        alpha[1] = logp[0, ext[1]]
    for t in range(1, T):
        prev = alpha.copy()
        for s in range(S):
            a = prev[s]
            if s >= 1:
                a = np.logaddexp(a, prev[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a = np.logaddexp(a, prev[s - 2])
            alpha[s] = a + logp[t, ext[s]]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if S > 1 else alpha[-1])


def beam_search(logp: np.ndarray, beam: int) -> list[tuple[tuple, float]]:
    """The prefix beam search over logp (T, n+1): [(labelling, −log p)] of the final beam, most
    probable first."""
    T, C = logp.shape
    blank = C - 1
    beams = {(): (0.0, -math.inf)}  # prefix → (log p ending in a blank, log p ending in its last class)
    for t in range(T):
        row = logp[t]
        # only classes that can matter: the beam's width of the most probable at this step
        classes = [k for k in np.argsort(-row)[:max(beam, 2)].tolist() if k != blank]
        new: dict = {}

        def add(prefix, pb, pnb, new=new):
            ob, onb = new.get(prefix, (-math.inf, -math.inf))
            new[prefix] = (_logsumexp(ob, pb), _logsumexp(onb, pnb))

        for prefix, (pb, pnb) in beams.items():
            total = _logsumexp(pb, pnb)
            add(prefix, total + row[blank], -math.inf)
            last = prefix[-1] if prefix else None
            for k in classes:
                p = row[k]
                if k == last:
                    add(prefix, -math.inf, pnb + p)  # the repeat merged into the prefix
                    add(prefix + (k,), -math.inf, pb + p)  # a new k after a blank
                else:
                    add(prefix + (k,), -math.inf, total + p)
        beams = dict(sorted(new.items(), key=lambda kv: -_logsumexp(*kv[1]))[:beam])
    ranked = sorted(beams.items(), key=lambda kv: -_logsumexp(*kv[1]))
    return [(prefix, -_logsumexp(pb, pnb)) for prefix, (pb, pnb) in ranked]


class CTCBeamSearchDecoder(NetDecoder):
    """NetDecoder(("CTCBeamSearch", alphabet), BeamSize=n), as NetDecoder makes it: a sequence of
    probability vectors of size n+1 (the last the blank) → the most probable labelling (a string
    where the alphabet is characters, else a list of labels).

    >>> dec = NetDecoder(("CTCBeamSearch", "ab"))
    >>> dec([[0.1, 0.6, 0.3], [0.1, 0.6, 0.3], [0.7, 0.1, 0.2]])
    'ba'
    """

    def __init__(self, spec, **options):
        given = dict(spec[2]) if len(spec) == 3 and isinstance(spec[2], dict) else {}
        if not isinstance(spec, tuple | list) or len(spec) not in (2, 3) or len(spec) == 3 and not given:
            raise OptionError(f'NetDecoder: expected ("CTCBeamSearch", alphabet) or ("CTCBeamSearch", alphabet, '
                              f'{{"BeamSize": n}}), but was given {_short(spec)}.')
        for k, v in options.items():
            if k in given and given[k] != v:
                raise OptionError(f"NetDecoder: {k} is given twice, as {given[k]!r} and as {v!r}.")
            given[k] = v
        unknown = sorted(set(given) - {"BeamSize"}, key=str)
        if unknown:
            raise OptionError(f'NetDecoder: {unknown[0]!r} is not a parameter of the "CTCBeamSearch" decoder; its '
                              "parameter is BeamSize.")
        beam = given.get("BeamSize", DEFAULT_BEAM)
        if isinstance(beam, bool) or not isinstance(beam, numbers.Integral) or beam < 1:
            raise OptionError(f"NetDecoder: BeamSize must be a positive integer, but was given {beam!r}.")
        self.kind = "CTCBeamSearch"
        self.beam = int(beam)
        self.alphabet = list(spec[1]) if isinstance(spec[1], str) else _labels(spec[1], "NetDecoder")
        self.text = all(isinstance(c, str) and len(c) == 1 for c in self.alphabet)
        self.labels = [*self.alphabet, "Blank"]
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        self.input_type = Real(VARYING, len(self.labels))
        items = "".join(self.alphabet) if isinstance(spec[1], str) else tuple(self.alphabet)
        self._spec = ("CTCBeamSearch", items) + (({"BeamSize": self.beam},) if self.beam != DEFAULT_BEAM else ())

    def input_form(self) -> str:
        return f"NetDecoder({self._spec!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, CTCBeamSearchDecoder) and self._spec == other._spec

    def __hash__(self) -> int:
        return hash(repr(self._spec))

    def accept(self, t, what: str):
        n = len(self.labels)
        if t.dims is not None and len(t.dims) != 2:
            raise ShapeError(f"{what} produces {describe(t)}, but the CTCBeamSearch decoder reads a sequence of "
                             f"size-{n} probability vectors (the last entry the blank).")
        return super().accept(t, what)

    def _ctc_property(self, prop, layer: str, port: str) -> tuple:
        if prop is None:
            return "Decoding", None
        if isinstance(prop, str) and prop in _PROPERTIES:
            return prop, None
        if isinstance(prop, tuple | list) and len(prop) == 2 and prop[0] in _TOP:
            k = prop[1]
            if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
                raise OptionError(f'{where(layer, port)}("{prop[0]}", k) needs a positive integer k, but was given '
                                  f"{k!r}.")
            return prop[0], int(k)
        raise OptionError(f"{where(layer, port)}{prop!r} is neither an output port nor a property of the "
                          f"CTCBeamSearch decoder; the properties are {', '.join(_PROPERTIES)}, "
                          f"(\"TopDecodings\", k), (\"TopNegativeLogLikelihoods\", k).")

    def _write(self, label: tuple):
        items = [self.alphabet[k] for k in label]
        return "".join(items) if self.text else items

    def decode(self, value, batched: bool, prop, layer: str, port: str):
        name, k = self._ctc_property(prop, layer, port)
        data, lengths = (value.data, value.lengths) if isinstance(value, Seq) else (value, None)
        p = data.detach().to("cpu", torch.float64)  # (B, T, n+1)
        from ..layers.loss import check_probabilities  # (the layers import this module)

        mask = Seq(p, lengths).mask()
        check_probabilities(p, mask, True, where(layer, port), " End the net with a SoftmaxLayer.",
                            "the CTCBeamSearch decoder")
        logp = np.log(np.maximum(p.numpy(), 1e-300))
        T = [p.shape[1]] * p.shape[0] if lengths is None else lengths.tolist()
        out = []
        for b, n in enumerate(T):
            if self.beam == 1:
                found = [greedy(logp[b, :n])]
            else:
                found = beam_search(logp[b, :n], self.beam)
            if name == "Decoding":
                out.append(self._write(found[0][0]))
            elif name == "Decodings":
                out.append([self._write(lab) for lab, _ in found])
            elif name == "TopDecodings":
                out.append([self._write(lab) for lab, _ in found[:k]])
            else:
                chosen = found if name == "NegativeLogLikelihoods" else found[:k]
                # the beam's figure misses the paths of pruned prefixes: each labelling's own is exact
                out.append([(self._write(lab), -labelling_logp(logp[b, :n], lab)) for lab, _ in chosen])
        return out if batched else out[0]

    def target_reader(self, layer: str, port: str, t=None):
        raise OptionError(f"{where(layer, port)}the CTCBeamSearch decoder's port cannot take training targets; put a "
                          'CTCLossLayer after it and give the target sequences to its "Target" port.')
