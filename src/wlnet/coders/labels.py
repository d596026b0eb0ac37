"""What encoders and decoders share: character classes, alphabets and class labels read from
their specifications, and the short rendering of a value in an error."""

from __future__ import annotations

import string

from ..core.errors import OptionError


class CharacterClass:
    """A named set of characters usable in a Characters alphabet (expanded in order).

    >>> len(NetEncoder(("Characters", [DigitCharacter, LetterCharacter])).alphabet)
    62
    """

    def __init__(self, name: str, chars: str):
        self.name = name
        self.chars = chars

    def __repr__(self) -> str:
        return self.name


DigitCharacter = CharacterClass("DigitCharacter", string.digits)
LetterCharacter = CharacterClass("LetterCharacter", string.ascii_lowercase + string.ascii_uppercase)
LowercaseCharacter = CharacterClass("LowercaseCharacter", string.ascii_lowercase)
UppercaseCharacter = CharacterClass("UppercaseCharacter", string.ascii_uppercase)
WhitespaceCharacter = CharacterClass("WhitespaceCharacter", " \t\n")
PunctuationCharacter = CharacterClass("PunctuationCharacter", string.punctuation)
WordCharacter = CharacterClass("WordCharacter", string.ascii_letters + string.digits)
CHARACTER_CLASSES = (DigitCharacter, LetterCharacter, LowercaseCharacter, UppercaseCharacter,
                     WhitespaceCharacter, PunctuationCharacter, WordCharacter)


def _alphabet(spec) -> list[str]:
    """A Characters alphabet (a string, or a list of characters and character classes) → its
    distinct characters in order."""
    items = list(spec) if isinstance(spec, str) else spec
    if not isinstance(items, list | tuple) or not items:
        raise OptionError(
            f"NetEncoder: a Characters alphabet must be a non-empty string or list of characters and character "
            f"classes, but was given {spec!r}."
        )
    chars: list[str] = []
    for item in items:
        if isinstance(item, CharacterClass):
            new = list(item.chars)
        elif isinstance(item, str) and len(item) == 1:
            new = [item]
        else:
            raise OptionError(
                f"NetEncoder: the alphabet entry {item!r} is neither a single character nor a character class "
                f"({', '.join(c.name for c in CHARACTER_CLASSES)})."
            )
        chars.extend(c for c in new if c not in chars)
    return chars


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _short(x) -> str:
    r = repr(x)
    return r if len(r) < 60 else r[:57] + "..."


def _labels(spec, who: str) -> list:
    """Class labels (a non-empty list of distinct hashable values) → a list; `who` names the
    encoder or decoder in the error."""
    if not isinstance(spec, list | tuple) or len(spec) < 1:
        raise OptionError(f"{who}: Class labels must be a non-empty list, but was given {spec!r}.")
    if not all(_hashable(x) for x in spec) or len(set(spec)) != len(spec):
        raise OptionError(f"{who}: Class labels must be distinct hashable values, but were given {spec!r}.")
    return list(spec)
