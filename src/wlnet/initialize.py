"""NetInitialize: fill a net's arrays.

Weights (arrays of rank ≥ 2, fan-in = last dimension, fan-out = first):
  "Kaiming"    normal, mean 0, standard deviation √(2/fan_in)   (the default)
  "Xavier"     uniform on ±√(6/(fan_in + fan_out))
  "Orthogonal" a random matrix with orthonormal rows or columns
  "Random"     uniform on ±1/√fan_in
  "Identity"   the identity matrix (ones on the diagonal of a non-square matrix)
Biases start at 0, except a layer's own rule (an LSTM's ForgetGateBiases start at 1).
"""

from __future__ import annotations

import math

import torch

from .errors import InitializationError, OptionError
from .net import Net
from .symbols import All, Automatic

METHODS = ("Kaiming", "Xavier", "Orthogonal", "Random", "Identity")


def _weight(shape: tuple, method: str, g: torch.Generator) -> torch.Tensor:
    fan_out, fan_in = shape[0], math.prod(shape[1:])
    if method == "Kaiming":
        return torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    if method == "Xavier":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        return (torch.rand(shape, generator=g) * 2 - 1) * a
    if method == "Random":
        a = 1.0 / math.sqrt(fan_in)
        return (torch.rand(shape, generator=g) * 2 - 1) * a
    if method == "Identity":
        return torch.eye(fan_out, fan_in).reshape(shape)
    # Orthogonal
    rows, cols = fan_out, fan_in
    a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    q = q if rows >= cols else q.T
    return q.to(torch.float32).reshape(shape)


def NetInitialize(net: Net, which=Automatic, *, Method="Kaiming", RandomSeeding=1234) -> Net:
    """A new net with arrays filled: NetInitialize(net) fills the missing ones,
    NetInitialize(net, All) refills all, NetInitialize(net, None) empties all.
    Same RandomSeeding, same arrays; RandomSeeding=Automatic draws fresh ones."""
    if not isinstance(net, Net):
        raise OptionError(f"NetInitialize: expected a net, but was given {type(net).__name__}.")
    if which is None:
        return net.map_leaves(lambda pos, leaf: leaf._with_arrays(dict.fromkeys(leaf._arrays)))
    if which is not Automatic and which is not All:
        raise OptionError(f"NetInitialize: the second argument must be All or None, but was given {which!r}.")
    if Method not in METHODS:
        raise OptionError(
            f"NetInitialize: Method must be one of {', '.join(repr(m) for m in METHODS)}, but was given {Method!r}."
        )
    g = torch.Generator()
    if RandomSeeding is Automatic or RandomSeeding is None:
        g.seed()
    elif isinstance(RandomSeeding, int) and not isinstance(RandomSeeding, bool):
        g.manual_seed(RandomSeeding)
    else:
        raise OptionError(f"NetInitialize: RandomSeeding must be an integer or Automatic, "
                          f"but was given {RandomSeeding!r}.")

    def fill(pos, leaf):
        shapes = leaf.array_shapes()
        new = {}
        for name, current in leaf._arrays.items():
            if current is not None and which is not All:
                continue
            shape = shapes.get(name)
            if shape is None:
                where = f" (layer {'/'.join(str(p) for p in pos)})" if pos else ""
                raise InitializationError(
                    f"{leaf.name}{where}: cannot initialize array {name}: its shape depends on the input "
                    "size, which is not known. Give the layer an Input option (e.g. Input=(\"Varying\", 2)) "
                    "or put it in a NetChain/NetGraph whose input size is known."
                )
            special = leaf.initial_array(name, shape)
            if special is not None:
                new[name] = special
            elif len(shape) >= 2:
                new[name] = _weight(tuple(shape), Method, g)
            else:
                new[name] = torch.zeros(shape)
        return leaf._with_arrays(new) if new else leaf

    return net.map_leaves(fill)
