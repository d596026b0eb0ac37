"""The registry of runnable scenarios and how they print."""

from __future__ import annotations

import numpy as np

SCENARIOS: dict = {}  # number → (title, function)


def scenario(number: int, title: str):
    def register(fn):
        SCENARIOS[number] = (title, fn)
        return fn

    return register


def show(label: str, value) -> None:
    text = np.array2string(np.asarray(value), precision=4, suppress_small=True) \
        if isinstance(value, list | np.ndarray) else repr(value)
    print(f"  {label}: {text}")
