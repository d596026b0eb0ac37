"""The "Tokens" encoder and decoder: words of a string ⇄ 1-based indices into a vocabulary.

NetEncoder(("Tokens", tokens)) splits a string at word boundaries (a run of letters, digits and
"_" is a word; the characters between two words, whitespace dropped, are the tokens there), and
gives each token its place 1..d in `tokens`; a token not in the vocabulary gets d+1. Parameters
(as options, or a dict third in the spec): "IgnoreCase" (True: tokens are matched lowercased),
"SplitPattern" (a regular expression to split at instead of word boundaries, or None: the input
is already a list of tokens), "TargetLength" (All, or n: the first n tokens, padded with d+1).

NetDecoder(("Tokens", tokens)) reads a sequence of probability vectors over the d tokens and the
unknown one (size d+1) and writes the tokens with a space between them, the unknown one as
UNKNOWN_TOKEN.
"""

from __future__ import annotations

import re

import torch

from ..core.data import Batch, Seq
from ..core.errors import EncodingError, OptionError, where
from ..core.shapes import VARYING, Index, Real
from ..core.symbols import All
from .decoders import NetDecoder
from .encoders import NetEncoder
from .labels import _short

UNKNOWN_TOKEN = "\ufffd"  # how the decoder writes the class d+1, a token outside the vocabulary
_WORD = re.compile(r"\w+")
_PARAMS = ("IgnoreCase", "SplitPattern", "TargetLength")
_DEFAULTS = {"IgnoreCase": True, "SplitPattern": "WordBoundary", "TargetLength": All}


def split_words(text: str, pattern="WordBoundary") -> list[str]:
    """The tokens of text: at word boundaries, words and the non-space runs between them; with a
    pattern (a regular expression), the non-empty pieces between its matches, stripped.

    >>> split_words("Nov 3, 98 (a date).")
    ['Nov', '3', ',', '98', '(', 'a', 'date', ').']
    """
    if pattern == "WordBoundary":
        out = []
        end = 0
        for m in _WORD.finditer(text):
            out.extend(text[end:m.start()].split())
            out.append(m.group())
            end = m.end()
        out.extend(text[end:].split())
        return out
    return [p.strip() for p in re.split(pattern, text) if p.strip()]


def _vocabulary(tokens, who: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, list | tuple) or not tokens \
            or not all(isinstance(t, str) and t for t in tokens):
        raise OptionError(f'{who}: ("Tokens", tokens) needs a non-empty list of non-empty strings, but was given '
                          f"{_short(tokens)}.")
    if len(set(tokens)) != len(tokens):
        twice = next(t for i, t in enumerate(tokens) if t in tokens[:i])
        raise OptionError(f"{who}: the token {twice!r} is listed twice in the vocabulary.")
    return list(tokens)


def _params(spec, options: dict, who: str) -> dict:
    given = dict(spec[2]) if len(spec) == 3 and isinstance(spec[2], dict) else {}
    if len(spec) == 3 and not isinstance(spec[2], dict) or len(spec) > 3:
        raise OptionError(f'{who}: expected ("Tokens", tokens) or ("Tokens", tokens, {{parameter: value}}), but was '
                          f"given {_short(spec)}.")
    for k, v in options.items():
        if k in given and given[k] != v:
            raise OptionError(f"{who}: {k} is given twice, as {given[k]!r} and as {v!r}.")
        given[k] = v
    unknown = sorted(set(given) - set(_PARAMS), key=str)
    if unknown:
        raise OptionError(f"{who}: {unknown[0]!r} is not a parameter of the Tokens encoder; the parameters are "
                          f"{', '.join(_PARAMS)}.")
    p = {**_DEFAULTS, **given}
    if not isinstance(p["IgnoreCase"], bool):
        raise OptionError(f"{who}: IgnoreCase must be True or False, but was given {p['IgnoreCase']!r}.")
    n = p["TargetLength"]
    if n is not All and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise OptionError(f"{who}: TargetLength must be All or a positive integer, but was given {n!r}.")
    pattern = p["SplitPattern"]
    if pattern not in ("WordBoundary", None):
        try:
            re.compile(pattern)
        except (TypeError, re.error):
            raise OptionError(f'{who}: SplitPattern must be "WordBoundary", None or a regular expression, but was '
                              f"given {pattern!r}.") from None
    return p


class TokensEncoder(NetEncoder):
    """NetEncoder(("Tokens", tokens), IgnoreCase=..., SplitPattern=..., TargetLength=...), as
    NetEncoder makes it.

    >>> NetEncoder(("Tokens", ["the", "cat", "sat"]))("The cat sat on the mat.")
    [1, 2, 3, 4, 1, 4, 4]
    """

    def __init__(self, spec, **options):
        who = "NetEncoder"
        self.kind, self.form = "Tokens", "Index"
        self.tokens = _vocabulary(spec[1] if len(spec) > 1 else None, who)
        self.labels = self.tokens
        p = _params(spec, options, who)
        self.ignore_case = p["IgnoreCase"]
        self.split_pattern = p["SplitPattern"]
        self.target_length = None if p["TargetLength"] is All else p["TargetLength"]
        self.size = len(self.tokens) + 1  # the last index: a token outside the vocabulary
        self.index = {}
        for i, t in enumerate(self.tokens, 1):
            self.index.setdefault(t.lower() if self.ignore_case else t, i)
        changed = {k: p[k] for k in _PARAMS if p[k] != _DEFAULTS[k]}
        self._spec = ("Tokens", tuple(self.tokens), changed) if changed else ("Tokens", tuple(self.tokens))
        self.output_type = Index(VARYING if self.target_length is None else self.target_length, levels=self.size)

    def _options_text(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"NetEncoder({self.input_form()[len('NetEncoder('):-1]})"

    def input_form(self) -> str:
        extra = f", {self._spec[2]!r}" if len(self._spec) == 3 else ""
        return f"NetEncoder(('Tokens', {self.tokens!r}{extra}))"

    def reader(self, layer: str, port: str) -> _TokensReader:
        return _TokensReader(self, layer, port)

    def tokenize(self, text) -> list[str]:
        """text's tokens, as the encoder splits it (a list of tokens is taken as it is with
        SplitPattern None)."""
        if self.split_pattern is None:
            return list(text)
        return split_words(text, self.split_pattern)

    def codes(self, tokens: list[str]) -> list[int]:
        unknown = self.size
        if self.ignore_case:
            return [self.index.get(t.lower(), unknown) for t in tokens]
        return [self.index.get(t, unknown) for t in tokens]


class _TokensReader:
    __slots__ = ("enc", "layer", "port")

    def __init__(self, enc: TokensEncoder, layer: str, port: str):
        self.enc, self.layer, self.port = enc, layer, port

    def _one(self, x) -> bool:
        if self.enc.split_pattern is None:
            return isinstance(x, list | tuple) and all(isinstance(t, str) for t in x) and bool(x)
        return isinstance(x, str)

    def read(self, data) -> Batch:
        enc, here = self.enc, where(self.layer, self.port)
        what = "a list of tokens (strings)" if enc.split_pattern is None else "a string"
        if self._one(data):
            rows, batched = [data], False
        elif isinstance(data, list | tuple) and data and all(self._one(x) for x in data):
            rows, batched = list(data), True
        else:
            raise EncodingError(f"{here}the port's Tokens encoder expects {what} or a list of them, but was given "
                                f"{_short(data)}.")
        codes = []
        for j, row in enumerate(rows):
            c = enc.codes(enc.tokenize(row))
            if enc.target_length is not None:
                c = (c + [enc.size] * enc.target_length)[:enc.target_length]
            if not c:
                place = f"string {j + 1} of the input" if batched else "the input"
                raise EncodingError(f"{here}empty inputs are not permitted: {place} has no tokens.")
            codes.append(torch.tensor(c, dtype=torch.int64))
        lengths = [len(c) for c in codes]
        padded = torch.nn.utils.rnn.pad_sequence(codes, batch_first=True)  # (B, T), zero-padded
        seq = Seq(padded, torch.tensor(lengths) if len(set(lengths)) > 1 else None)
        return Batch(seq, batched, "list", len(rows))


class TokensDecoder(NetDecoder):
    """NetDecoder(("Tokens", tokens)), as NetDecoder makes it: a sequence of probability vectors
    of size d+1 (the d tokens, then the unknown one) → the tokens, joined by spaces.

    >>> NetDecoder(("Tokens", ["hello", "world"]))([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    'world hello'
    """

    def __init__(self, spec, **options):
        if options:
            raise OptionError(f"NetDecoder: {', '.join(repr(k) for k in sorted(options))} is not an option of "
                              "the Tokens decoder; it takes none.")
        if not isinstance(spec, tuple | list) or len(spec) != 2:
            raise OptionError(f'NetDecoder: expected ("Tokens", tokens), but was given {_short(spec)}.')
        self.kind = "Tokens"
        self.tokens = _vocabulary(spec[1], "NetDecoder")
        self.labels = [*self.tokens, UNKNOWN_TOKEN]
        self.index = {lab: i for i, lab in enumerate(self.labels)}
        self.input_type = Real(VARYING, len(self.labels))
        self._spec = ("Tokens", tuple(self.tokens))

    def input_form(self) -> str:
        return f"NetDecoder(('Tokens', {self.tokens!r}))"

    def accept(self, t, what: str):
        if t.dims is not None and len(t.dims) != 2:
            from ..core.errors import ShapeError
            from ..core.shapes import describe

            raise ShapeError(f"{what} produces {describe(t)}, but the Tokens decoder reads a sequence of "
                             f"size-{len(self.labels)} probability vectors.")
        return super().accept(t, what)

    def decode(self, value, batched: bool, prop, layer: str, port: str):
        out = super().decode(value, batched, prop, layer, port)
        name, _ = self._property(prop, layer, port)
        if name not in ("Decision", "RandomSample"):
            return out
        return [" ".join(x) for x in out] if batched else " ".join(out)
