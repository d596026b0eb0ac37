"""Every public name has a docstring with a short runnable example; the examples run here."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import wlnet

GLOBS = {"np": np, "torch": torch, **{name: getattr(wlnet, name) for name in wlnet.__all__}}


def _examples(obj):
    """The doctests of obj's own docstring (not those of its members)."""
    finder = doctest.DocTestFinder(recurse=False, exclude_empty=False)
    return [t for t in finder.find(obj, getattr(obj, "__name__", repr(obj)), globs=dict(GLOBS)) if t.examples]


@pytest.mark.parametrize("name", wlnet.__all__)
def test_public_name_has_a_runnable_example(name):
    obj = getattr(wlnet, name)
    doc = getattr(obj, "__doc__", None) or ""
    assert doc.strip(), f"{name} has no docstring"
    tests = _examples(obj)
    assert tests, f"{name}'s docstring has no example (>>>)"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
