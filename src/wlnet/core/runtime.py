"""Compiled modules and what they run with.

A net compiles (`Net.build`) into a `torch.nn.Module` called as

    outputs, states = module(inputs, states, ctx)

inputs and outputs {port: value}, states {state position: tensor (B, n)}: the initial recurrent
states in (any subset; absent ones start at zero), the final ones out, as Flax's carry and
Haiku's state are passed. A position is a tuple: (port,) for a layer's own state, (layer key,
..., port) inside containers. A value is a tensor with a leading batch axis B, or a `Seq`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Ctx(NamedTuple):
    """What a forward pass needs besides its inputs and states: training mode, the random
    generator for dropout, and whether every final state must be exact. With exact_states
    False a layer may leave out (None) a final state it cannot read cheaply: an LSTM's
    CellState of a ragged batch, which lets it run the faster padded kernel. Containers set it
    for the layers whose final states an edge reads."""

    train: bool
    generator: torch.Generator | None
    exact_states: bool = True


TEST = Ctx(False, None, False)  # evaluation whose final states nobody reads (measurements, validation)


# ---- the one table of parameter names ---------------------------------------------------------
def param_name(position: tuple, array: str) -> str:
    """The name of a leaf's array inside a compiled module: the position's keys and the array
    name joined by dots (layer names never contain a dot)."""
    return ".".join([*(str(p) for p in position), array])


def module_arrays(net, module: torch.nn.Module) -> dict:
    """{(position, array name): the module's current value} over every leaf of `net`."""
    params = dict(module.named_parameters())
    return {(pos, a): params[param_name(pos, a)] for pos, leaf in net.leaves() for a in leaf._arrays}


def compiled(net, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The net's evaluation module on `device` in `dtype`, built once and cached on the net
    (a net never changes, so neither does its module; its parameters share the net's arrays
    on the CPU in float32)."""
    cache = net.__dict__.setdefault("_module_cache", {})
    key = (device, dtype)
    m = cache.get(key)
    if m is None:
        net._require_initialized()
        m = net.build(trainable=False)
        if device.type != "cpu" or dtype != torch.float32:
            m = m.to(device=device, dtype=dtype)
        cache[key] = m
    return m
