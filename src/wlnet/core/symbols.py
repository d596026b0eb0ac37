"""The Wolfram symbols that have no Python equivalent: Automatic and All."""

from __future__ import annotations


class _Symbol:
    """A Wolfram symbol: Automatic (let the framework choose) or All (every one).

    >>> Automatic, All
    (Automatic, All)
    """

    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self):
        return self._name


Automatic = _Symbol("Automatic")
All = _Symbol("All")


def is_automatic(value) -> bool:
    """Automatic, or Python None used for a size (both mean 'infer it')."""
    return value is Automatic or value is None
