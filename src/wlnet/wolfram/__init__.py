"""Wolfram Language code in and out: `from_wolfram` reads a notebook's net code, `to_wolfram`
writes any net back as Wolfram code."""

from .evaluate import from_wolfram
from .printer import to_wolfram
from .syntax import WolframSyntaxError

__all__ = ["WolframSyntaxError", "from_wolfram", "to_wolfram"]
