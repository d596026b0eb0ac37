"""NetEncoder: a pure transform from user values (strings, labels) to tensors.

Encoders: ("Characters", alphabet, "Index" | "UnitVector") turns a string into a sequence of
1-based indices or one-hot vectors; ("Class", labels, "Index" | "UnitVector") turns a label
into an index or a one-hot vector. Decoders (`decoders.py`) go the other way; the character
classes and the reading of alphabets and labels, which both share, are in `labels.py`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.data import Batch, Seq, write_port
from ..core.errors import EncodingError, OptionError, where
from ..core.shapes import VARYING, Index, Real
from .labels import (
    CHARACTER_CLASSES,
    CharacterClass,
    DigitCharacter,
    LetterCharacter,
    LowercaseCharacter,
    PunctuationCharacter,
    UppercaseCharacter,
    WhitespaceCharacter,
    WordCharacter,
    _alphabet,
    _hashable,
    _labels,
    _short,
)

FORMS = ("Index", "UnitVector")
_FORM_NAMES = {"Index": "Index", "UnitVector": "UnitVector", "IndicatorVector": "UnitVector"}  # (the older name)
# NetEncoder("Characters") alone: tab, newline and the printable ASCII characters 32..126 (97 in all)
DEFAULT_ALPHABET = "\t\n" + "".join(map(chr, range(32, 127)))


class NetEncoder:
    """NetEncoder(("Characters", alphabet, form), IgnoreCase=False) or NetEncoder(("Class", labels, form)).

    >>> NetEncoder(("Characters", "xy")).encode("xyx").data.tolist()
    [[1, 2, 1]]
    """

    def __new__(cls, spec=None, **options):
        if cls is NetEncoder and isinstance(spec, tuple | list) and spec and spec[0] == "Tokens":
            from .tokens import TokensEncoder  # ("Tokens", words): its own module

            cls = TokensEncoder
        return super().__new__(cls)

    def __init__(self, spec, **options):
        unknown = sorted(set(options) - {"IgnoreCase", "TargetLength"})
        if unknown:
            raise OptionError(f"NetEncoder: {', '.join(repr(k) for k in unknown)} is not an option of NetEncoder; the "
                              "options are IgnoreCase (Characters) and TargetLength (Characters).")
        IgnoreCase = options.get("IgnoreCase", False)
        target = options.get("TargetLength")
        if spec == "Characters" or (isinstance(spec, tuple | list) and tuple(spec) == ("Characters",)):
            spec = ("Characters", DEFAULT_ALPHABET)
        if isinstance(spec, tuple | list) and spec and spec[0] == "Integers":
            self._integers(spec, options)
            return
        if not isinstance(spec, tuple | list) or not spec or spec[0] not in ("Characters", "Class"):
            raise OptionError(
                'NetEncoder: expected "Characters", ("Characters", alphabet[, "Index" | "UnitVector"]) or '
                f'("Class", labels[, "Index" | "UnitVector"]), but was given {spec!r}.'
            )
        self.kind = spec[0]
        if len(spec) < 2 or len(spec) > 3:
            raise OptionError(f"NetEncoder: {self.kind} encoders take an alphabet/labels and an optional form; "
                              f"was given {spec!r}.")
        form = spec[2] if len(spec) == 3 else "Index"  # Wolfram's default for both kinds: the index
        if not _hashable(form) or form not in _FORM_NAMES:
            raise OptionError(f'NetEncoder: the form must be "Index" or "UnitVector" (or "IndicatorVector"), but '
                              f"was given {form!r}.")
        self.form = _FORM_NAMES[form]
        if not isinstance(IgnoreCase, bool):
            raise OptionError(f"NetEncoder: IgnoreCase must be True or False, but was given {IgnoreCase!r}.")
        if target is not None and (self.kind != "Characters" or isinstance(target, bool)
                                   or not isinstance(target, int) or target < 1):
            raise OptionError(f"NetEncoder: TargetLength must be a positive integer (for a Characters encoder), but "
                              f"was given {target!r}" + (f" for a {self.kind} encoder." if target is not None and
                                                         self.kind != "Characters" else "."))
        self.ignore_case = IgnoreCase
        self.target_length = target
        self._spec = (spec[0], spec[1], self.form)  # the form always explicit: a saved net reads back alike
        if self.kind == "Characters":
            self.alphabet = _alphabet(spec[1])
            self.index = {}
            for i, c in enumerate(self.alphabet, 1):
                self.index.setdefault(c, i)
                if IgnoreCase:
                    self.index.setdefault(c.lower(), i)
                    self.index.setdefault(c.upper(), i)
            L = len(self.alphabet)
            T = VARYING if target is None else target
            self.output_type = Index(T, levels=L) if self.form == "Index" else Real(T, L)
        else:
            self.labels = _labels(spec[1], "NetEncoder")
            self.index = {lab: i for i, lab in enumerate(self.labels, 1)}
            L = len(self.labels)
            self.output_type = Index(levels=L) if self.form == "Index" else Real(L)
        self.size = L

    def _integers(self, spec, options) -> None:
        """("Integers", n, origin): a sequence of integer ids origin, ..., origin + n − 1 → the
        indices 1..n that EmbeddingLayer takes. Nets imported from torch or ONNX carry it at a port
        whose ids are 0-based (origin 0), so that they take their source's ids unchanged."""
        if options or len(spec) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in spec[1:]) \
                or spec[1] < 1:
            raise OptionError(f"NetEncoder: expected (\"Integers\", n, origin) with n ≥ 1 and an integer origin, "
                              f"and no options, but was given {spec!r}{' and ' + repr(options) if options else ''}.")
        self.kind, self.form, self.size, self.origin = "Integers", "Index", spec[1], spec[2]
        self.ignore_case, self.target_length = False, None
        self._spec = tuple(spec)
        self.output_type = Index(VARYING, levels=self.size)

    def _options_text(self) -> str:
        return ((", IgnoreCase=True" if self.ignore_case else "")
                + (f", TargetLength={self.target_length}" if self.target_length is not None else ""))

    def __repr__(self) -> str:
        return f"NetEncoder({self._spec!r}{self._options_text()})"

    def input_form(self) -> str:
        if self.kind == "Integers":
            return f"NetEncoder({self._spec!r})"
        kind, items = self._spec[0], self._spec[1]
        if not isinstance(items, str):
            items = "[" + ", ".join(repr(i) for i in items) + "]"
        else:
            items = repr(items)
        return f"NetEncoder(({kind!r}, {items}, {self.form!r}){self._options_text()})"

    def _repr_html_(self) -> str:
        from ..show.display import coder_html

        return coder_html(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, NetEncoder) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))

    def reader(self, layer: str, port: str) -> _EncoderReader:
        return _EncoderReader(self, layer, port)

    def encode(self, data, layer: str = "NetEncoder", port: str = "Input"):
        """data (one value or a list of them) → the tensor the port receives (a batch)."""
        return self.reader(layer, port).read(data).value

    def __call__(self, data):
        """The encoding of one value (a list: indices or one-hot vectors), or of a list of them.

        >>> NetEncoder(("Characters", "ab"))("abba")
        [1, 2, 2, 1]
        """
        b = self.reader("NetEncoder", "Input").read(data)
        return write_port(b.value, b.batched, "list")


class _EncoderReader:
    __slots__ = ("enc", "layer", "port")

    def __init__(self, enc: NetEncoder, layer: str, port: str):
        self.enc = enc
        self.layer = layer
        self.port = port

    def read(self, data) -> Batch:
        enc = self.enc
        if enc.kind == "Integers":
            return self._integers(data)
        if enc.kind == "Characters":
            if isinstance(data, str):
                return Batch(self._strings([data]), False, "list", 1)
            if isinstance(data, list | tuple) and data and all(isinstance(s, str) for s in data):
                return Batch(self._strings(list(data)), True, "list", len(data))
            if isinstance(data, list | tuple) and not data:
                raise EncodingError(f"{where(self.layer, self.port)}empty inputs are not permitted: the batch has "
                                    "no strings.")
            raise EncodingError(
                f"{where(self.layer, self.port)}the port's Characters encoder expects a string or a list of "
                f"strings, but was given {_short(data)}."
            )
        if _hashable(data) and data in enc.index:
            return Batch(self._labels([data]), False, "list", 1)
        if isinstance(data, list | tuple) and data:
            return Batch(self._labels(list(data)), True, "list", len(data))
        raise self._bad_label(data)

    def _integers(self, data) -> Batch:
        """Ids: one sequence (a list of ints, a 1-d array) or a batch (a list of such lists, ragged
        or not; a 2-d array) → a Seq of the indices 1..n, (B, T), zero-padded."""
        enc, here = self.enc, where(self.layer, self.port)
        lo, hi = enc.origin, enc.origin + enc.size - 1
        kind = "torch" if isinstance(data, torch.Tensor) else "numpy" if isinstance(data, np.ndarray) else "list"
        expected = f"integer ids between {lo} and {hi} (a sequence of them, or a batch of sequences)"
        try:
            if kind == "list":
                batched = bool(data) and all(isinstance(e, list | tuple | np.ndarray | torch.Tensor) for e in data)
                rows = [torch.as_tensor(np.asarray(e)) for e in (data if batched else [data])]
            else:
                t = torch.as_tensor(data)
                batched = t.dim() == 2
                rows = list(t) if batched else [t]
        except (TypeError, ValueError, RuntimeError):
            raise EncodingError(f"{here}the port's encoder takes {expected}, but was given {_short(data)}.") from None
        for j, r in enumerate(rows):
            if r.dim() != 1 or not len(r) or r.dtype.is_floating_point or r.dtype.is_complex or r.dtype == torch.bool:
                given = f"example {j + 1} is {_short(r.tolist())}" if batched else f"was given {_short(data)}"
                raise EncodingError(f"{here}the port's encoder takes {expected}, but {given}.")
            bad = (r < lo) | (r > hi)
            if bad.any():
                s = int(bad.nonzero()[0, 0])
                raise EncodingError(f"{here}the port's encoder takes {expected}, but "
                                    f"{f'example {j + 1}, ' if batched else ''}step {s + 1} is {int(r[s])}.")
        lengths = [len(r) for r in rows]
        padded = torch.nn.utils.rnn.pad_sequence([r.to(torch.int64) - (lo - 1) for r in rows], batch_first=True)
        seq = Seq(padded, torch.tensor(lengths) if len(set(lengths)) > 1 else None)
        return Batch(seq, batched, kind, len(rows))

    def _bad_label(self, label) -> EncodingError:
        return EncodingError(
            f"{where(self.layer, self.port)}{label!r} is not one of the Class encoder's labels "
            f"{self.enc.labels!r}."
        )

    def _strings(self, strings: list[str]) -> Seq:
        n = self.enc.target_length
        if n is not None:  # a fixed length: longer strings are cut to it, shorter ones cannot be filled
            short = next((j for j, s in enumerate(strings) if len(s) < n), None)
            if short is not None:
                raise EncodingError(f"{where(self.layer, self.port)}string {short + 1} of the input has "
                                    f"{len(strings[short])} characters, fewer than the encoder's TargetLength {n}.")
            strings = [s[:n] for s in strings]
        codes = _codes(self.enc, "".join(strings))
        lengths = [len(s) for s in strings]
        if codes is None or 0 in lengths:  # a character outside the alphabet, or an empty string: the error
            return self._strings_checked(strings)
        return self._form(torch.from_numpy(codes), lengths)

    def _strings_checked(self, strings: list[str]) -> Seq:
        """As `_strings`, a character at a time, with the errors that name the string and character."""
        index = self.enc.index
        flat = []
        lengths = []
        for j, s in enumerate(strings):
            if not s:
                raise EncodingError(
                    f"{where(self.layer, self.port)}empty inputs are not permitted: string {j + 1} of the input "
                    "is empty."
                )
            try:
                flat.extend(index[c] for c in s)
            except KeyError:
                bad = next(c for c in s if c not in index)
                raise EncodingError(
                    f"{where(self.layer, self.port)}the character {bad!r} in {s!r} is not in the encoder's "
                    f"alphabet {''.join(self.enc.alphabet)!r}. Remove it, or add it to the alphabet"
                    f"{' (or use IgnoreCase=True)' if bad.lower() in index or bad.upper() in index else ''}."
                ) from None
            lengths.append(len(s))
        return self._form(torch.tensor(flat, dtype=torch.int64), lengths)

    def _form(self, idx: torch.Tensor, lengths: list) -> Seq:
        """The strings' indices one after another, and their lengths → (B, T) zero-padded, in the
        encoder's form."""
        B, T = len(lengths), max(lengths)
        if all(n == T for n in lengths):
            out = idx.view(B, T)
            lens = None
        else:
            lens = torch.tensor(lengths)
            mask = torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
            out = torch.zeros(B, T, dtype=torch.int64)
            out[mask] = idx
        if self.enc.form == "UnitVector":
            one = torch.nn.functional.one_hot(out.clamp(min=1) - 1, self.enc.size).to(torch.float32)
            if lens is not None:
                one = one * (out > 0).unsqueeze(-1)
            out = one
        return Seq(out, lens)

    def _labels(self, labels: list) -> torch.Tensor:
        index = self.enc.index
        idx = []
        for lab in labels:
            if not _hashable(lab) or lab not in index:
                raise self._bad_label(lab)
            idx.append(index[lab])
        t = torch.tensor(idx, dtype=torch.int64)
        if self.enc.form == "UnitVector":
            return torch.nn.functional.one_hot(t - 1, self.enc.size).to(torch.float32)
        return t


def _codes(enc, text: str):
    """The alphabet indices of text's characters (int64 numpy), or None if one is not in the
    alphabet. Text in Latin-1 is looked up in a 256-entry table at once; other text one
    character at a time."""
    table = getattr(enc, "_latin1_table", None)
    if table is None:
        table = np.full(256, -1, np.int64)
        for c, i in enc.index.items():
            if ord(c) < 256:
                table[ord(c)] = i
        enc._latin1_table = table
    try:
        raw = np.frombuffer(text.encode("latin-1"), np.uint8)
    except UnicodeEncodeError:
        try:
            return np.fromiter(map(enc.index.__getitem__, text), np.int64, len(text))
        except KeyError:
            return None
    codes = table[raw]
    return None if codes.size and codes.min() < 0 else codes


__all__ = [
    "CHARACTER_CLASSES", "FORMS", "CharacterClass", "DigitCharacter", "LetterCharacter", "LowercaseCharacter",
    "NetEncoder", "PunctuationCharacter", "UppercaseCharacter", "WhitespaceCharacter", "WordCharacter",
]
