"""Layers: immutable specs of Wolfram options and named arrays, with a pure forward."""
