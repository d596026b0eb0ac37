"""NetInitialize: fill a net's arrays, by the rules of Wolfram's neural-net paclet.

Weights (arrays of rank ≥ 2; fan-in = the product of all but the first dimension, fan-out = the
first dimension):

  "Xavier"     (the default) variance 1/fan_in ("FactorType" "In"), 1/fan_out ("Out") or
               2/(fan_in + fan_out) ("Mean", the default); drawn from a uniform distribution
               on ±√(3·variance) ("Distribution" "Uniform", the default) or a normal one of that
               variance ("Normal"). The variance is doubled when the layer's output goes into a
               Ramp ElementwiseLayer (in a NetChain or NetGraph). The default is thus
               U(±√(6/(fan_in + fan_out))).
  "Orthogonal" a random matrix with orthonormal rows or columns
  "Identity"   the identity matrix (ones on the diagonal of a non-square matrix)
  "Random"     weights from a standard normal distribution, biases 0; the sub-options "Weights"
               and "Biases" give other distributions (see below)
  "Kaiming"    (an extra) normal, mean 0, standard deviation √(2/fan_in)

Sub-options are given as `Method=("Xavier", {"FactorType": "In", "Distribution": "Normal"})`.

A distribution (Wolfram's NormalDistribution[μ, σ], UniformDistribution[{a, b}]) is written
`("Normal", mu, sigma)` or `("Uniform", a, b)`; a plain number c means every element is c.
`Method=("Random", {"Weights": ("Uniform", -0.1, 0.1), "Biases": 0.5})`.

Biases (arrays of rank 1) start at 0 (or the "Random" method's "Biases" distribution), except
where a layer has its own rule: an LSTM's ForgetGateBiases start at 1.

Arrays whose total size would exceed a tenth of the machine's memory are refused before
anything is allocated, with an InitializationError naming the layer and the array.
"""

from __future__ import annotations

import math
import os

import torch

from ..core import options as O
from ..core.errors import InitializationError, OptionError
from ..core.net import Net
from ..core.symbols import All, Automatic

METHODS = ("Xavier", "Orthogonal", "Identity", "Random", "Kaiming")
SUB_OPTIONS = {
    "Xavier": {"FactorType": "Mean", "Distribution": "Uniform"},
    "Orthogonal": {},
    "Identity": {},
    "Random": {"Weights": ("Normal", 0.0, 1.0), "Biases": 0.0},
    "Kaiming": {},
}
WHO = "NetInitialize"
BYTES_PER_ELEMENT = 4  # arrays are float32
MEMORY_FRACTION = 0.1


def _method(spec) -> tuple[str, dict]:
    """Method → (name, settings), with every sub-option checked."""
    name, sub = O.method_spec(spec, METHODS, WHO, '("Xavier", {"FactorType": "In"})')
    settings = dict(SUB_OPTIONS[name])
    for key, value in sub.items():
        if key not in settings:
            known = ", ".join(repr(k) for k in settings) or "none"
            raise OptionError(f"{WHO}: {key!r} is not a sub-option of Method {name!r}; its sub-options are {known}.")
        settings[key] = value
    if name == "Xavier":
        if settings["FactorType"] not in ("In", "Out", "Mean"):
            raise OptionError(f'{WHO}: the "FactorType" of Method "Xavier" must be "In", "Out" or "Mean", '
                              f"but was given {settings['FactorType']!r}.")
        if settings["Distribution"] not in ("Uniform", "Normal"):
            raise OptionError(f'{WHO}: the "Distribution" of Method "Xavier" must be "Uniform" or "Normal", '
                              f"but was given {settings['Distribution']!r}.")
    if name == "Random":
        for key in ("Weights", "Biases"):
            settings[key] = _distribution(settings[key], key)
    return name, settings


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _distribution(spec, key: str) -> tuple:
    """("Normal", mu, sigma) | ("Uniform", a, b) | c → a checked tuple."""
    if _number(spec):
        return ("Constant", float(spec))
    if isinstance(spec, tuple | list) and len(spec) == 3 and spec[0] in ("Normal", "Uniform") \
            and _number(spec[1]) and _number(spec[2]):
        kind, a, b = spec[0], float(spec[1]), float(spec[2])
        if kind == "Normal" and b < 0:
            raise OptionError(f'{WHO}: the "{key}" distribution ("Normal", mu, sigma) needs sigma ≥ 0, but was '
                              f"given {spec!r}.")
        if kind == "Uniform" and b < a:
            raise OptionError(f'{WHO}: the "{key}" distribution ("Uniform", a, b) needs a ≤ b, but was given {spec!r}.')
        return (kind, a, b)
    raise OptionError(f'{WHO}: the "{key}" sub-option of Method "Random" must be a distribution ("Normal", mu, sigma) '
                      f'or ("Uniform", a, b), or a number, but was given {spec!r}.')


def _draw(dist: tuple, shape: tuple, g: torch.Generator) -> torch.Tensor:
    if dist[0] == "Constant":
        return torch.full(shape, dist[1])
    if dist[0] == "Normal":
        return torch.randn(shape, generator=g) * dist[2] + dist[1]
    return torch.rand(shape, generator=g) * (dist[2] - dist[1]) + dist[1]


def _weight(shape: tuple, method: tuple, g: torch.Generator, before_ramp: bool) -> torch.Tensor:
    name, s = method
    fan_out, fan_in = shape[0], math.prod(shape[1:])
    if name == "Xavier":
        variance = {"In": 1.0 / fan_in, "Out": 1.0 / fan_out, "Mean": 2.0 / (fan_in + fan_out)}[s["FactorType"]]
        if before_ramp:
            variance *= 2.0
        if s["Distribution"] == "Normal":
            return torch.randn(shape, generator=g) * math.sqrt(variance)
        return (torch.rand(shape, generator=g) * 2 - 1) * math.sqrt(3.0 * variance)
    if name == "Kaiming":
        return torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    if name == "Random":
        return _draw(s["Weights"], shape, g)
    if name == "Identity":
        return torch.eye(fan_out, fan_in).reshape(shape)
    # Orthogonal
    rows, cols = fan_out, fan_in
    a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    q = q if rows >= cols else q.T
    return q.to(torch.float32).reshape(shape)


# ---- which layers feed a Ramp -------------------------------------------------------------------
def _is_ramp(node) -> bool:
    from ..layers.basic import ElementwiseLayer

    return isinstance(node, ElementwiseLayer) and node.f == "Ramp"


def _producers(node, port: str) -> list:
    """Positions (inside `node`) of the leaves that produce `node`'s output `port`."""
    from .containers import NetGraph
    from .operators import NetMapOperator, Operator

    if isinstance(node, NetMapOperator):
        return [("Net",) + p for p in _producers(node.net, port)]
    if isinstance(node, Operator):  # a bidirectional operator's output joins both nets'
        return [(key,) + p for key, net in node._nets.items() for p in _producers(net, next(iter(net.output_ports())))]
    if not isinstance(node, NetGraph):
        return [()]
    nodes = node._nodes
    src = node._graph_out.get(port)
    if src is None or src[0] not in nodes:  # a graph input passed straight through
        return []
    return [(src[0],) + p for p in _producers(nodes[src[0]], src[1])]


def ramp_fed(net, prefix: tuple = ()) -> set:
    """Positions of the leaves whose output goes into a Ramp ElementwiseLayer."""
    from .containers import NetGraph
    from .operators import Operator

    if isinstance(net, Operator):
        return {p for key, inner in net._nets.items() for p in ramp_fed(inner, prefix + (key,))}
    if not isinstance(net, NetGraph):
        return set()
    nodes = net._nodes
    found = set()
    for k, node in nodes.items():
        found |= ramp_fed(node, prefix + (k,))
        if not _is_ramp(node):
            continue
        for src in net._feeds[k].values():
            if not isinstance(src, list) and src[0] in nodes:
                found |= {prefix + (src[0],) + p for p in _producers(nodes[src[0]], src[1])}
    return found


# ---- the memory guard -----------------------------------------------------------------------------
def machine_memory() -> int:
    """Bytes of physical memory of this machine."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def _size_text(nbytes: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes:.0f} bytes"


def _check_memory(todo: list) -> None:
    """todo: [(position, leaf, array name, shape)] of the arrays about to be allocated."""
    total = sum(math.prod(shape) for _, _, _, shape in todo) * BYTES_PER_ELEMENT
    limit = machine_memory() * MEMORY_FRACTION
    if total <= limit:
        return
    pos, leaf, name, shape = max(todo, key=lambda t: math.prod(t[3]))
    where = f" (layer {'/'.join(str(p) for p in pos)})" if pos else ""
    dims = " × ".join(str(d) for d in shape)
    raise InitializationError(
        f"{WHO}: {leaf.name}{where}: array {name} has dimensions {dims} = {math.prod(shape):.4g} elements "
        f"({_size_text(math.prod(shape) * BYTES_PER_ELEMENT)}); the arrays to initialize would take "
        f"{_size_text(total)} in all, more than a tenth of this machine's memory ({_size_text(machine_memory())}). "
        "Make the layer smaller."
    )


# ---- NetInitialize ----------------------------------------------------------------------------------
def NetInitialize(net: Net, which=Automatic, *, Method="Xavier", RandomSeeding=1234) -> Net:
    """A new net with arrays filled: NetInitialize(net) fills the missing ones,
    NetInitialize(net, All) refills all, NetInitialize(net, None) empties all.
    Method: "Xavier" (default), "Orthogonal", "Identity", "Random", "Kaiming", or
    (method, {sub-option: value}) (see the module's docstring).
    Same RandomSeeding, same arrays; RandomSeeding=Automatic draws fresh ones.

    >>> NetInitialize(LinearLayer(2, Input=3)).initialized()
    True
    """
    if not isinstance(net, Net):
        raise OptionError(f"{WHO}: expected a net, but was given {type(net).__name__}.")
    if which is None:
        return net.map_leaves(lambda pos, leaf: leaf._with_arrays(dict.fromkeys(leaf._arrays)))
    if which is not Automatic and which is not All:
        raise OptionError(f"{WHO}: the second argument must be All or None, but was given {which!r}.")
    method = _method(Method)
    g = O.generator(RandomSeeding, WHO)
    if g is None:
        g = torch.Generator()
        g.seed()

    todo = []
    for pos, leaf in net.leaves():
        shapes = leaf.array_shapes()
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
            todo.append((pos, leaf, name, tuple(shape)))
    _check_memory(todo)
    before_ramp = ramp_fed(net)
    wanted = {}
    for pos, _leaf, name, shape in todo:
        wanted.setdefault(pos, []).append((name, shape))

    def fill(pos, leaf):
        new = {}
        for name, shape in wanted.get(pos, ()):
            special = leaf.initial_array(name, shape)
            if special is not None:
                new[name] = special
            elif len(shape) >= 2:
                new[name] = _weight(shape, method, g, pos in before_ramp)
            elif method[0] == "Random":
                new[name] = _draw(method[1]["Biases"], shape, g)
            else:
                new[name] = torch.zeros(shape)
        return leaf._with_arrays(new) if new else leaf

    return net.map_leaves(fill)
