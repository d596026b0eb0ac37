"""Information, Options and NetExtract."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..core.errors import OptionError
from ..core.net import Net
from ..core.shapes import describe
from ..nets.evaluate import EVALUATION_OPTIONS
from .display import byte_text

PROPERTIES = (
    "Arrays", "ArraysCount", "ArraysDimensions", "ArraysElementCounts", "ArraysTotalElementCount",
    "ArraysTotalByteCount", "ArraysTotalSize", "ArraysLearningRateMultipliers", "InputPorts",
    "OutputPorts", "InputPortNames", "OutputPortNames", "Layers", "LayersCount", "LayerTypeCounts",
    "RecurrentStatesCount", "RecurrentStatesPositionList", "InputForm", "SummaryGraphic", "Properties",
)


def _array_dims(net: Net) -> dict:
    """{position: dims} for every array, from the array itself or, if missing, its expected shape."""
    out = {}
    for pos, leaf in net.leaves():
        shapes = leaf.array_shapes()
        for name, t in leaf._arrays.items():
            out[pos + (name,)] = tuple(t.shape) if t is not None else shapes.get(name)
    return out


def _port_text(t, enc=None) -> str:
    return f"{describe(t)} (encoded by {enc!r})" if enc is not None else describe(t)


def Information(net: Net, prop=None):
    """Information(net) summarizes the net; Information(net, prop) gives one property.

    >>> Information(NetInitialize(LinearLayer(2, Input=3)), "ArraysTotalElementCount")
    8
    """
    if not isinstance(net, Net):
        raise OptionError(f"Information: expected a net, but was given {type(net).__name__}.")
    if prop is None:
        dims = _array_dims(net)
        total = _total(dims)
        return {
            "LayersCount": len(net.leaves()),
            "ArraysCount": len(dims),
            "InputPortNames": list(net.input_ports()),
            "OutputPortNames": list(net.output_ports()),
            "ArraysTotalElementCount": total,
            "ArraysTotalSize": byte_text(4 * total) if total is not None else None,
        }
    if prop not in PROPERTIES:
        raise OptionError(
            f"Information: {prop!r} is not a known property; the properties are {', '.join(PROPERTIES)}."
        )
    if prop == "Properties":
        return list(PROPERTIES)
    if prop == "Arrays":
        return {k: (v.numpy().copy() if v is not None else None) for k, v in net.arrays().items()}
    if prop == "ArraysCount":
        return len(net.arrays())
    if prop == "ArraysDimensions":
        return _array_dims(net)
    if prop == "ArraysElementCounts":
        return {k: (int(np.prod(d)) if d is not None else None) for k, d in _array_dims(net).items()}
    if prop == "ArraysTotalElementCount":
        return _total(_array_dims(net))
    if prop in ("ArraysTotalByteCount", "ArraysTotalSize"):
        total = _total(_array_dims(net))
        if total is None:
            return None
        return 4 * total if prop == "ArraysTotalByteCount" else byte_text(4 * total)
    if prop == "ArraysLearningRateMultipliers":
        return {pos + (a,): m for pos, leaf in net.leaves() for a, m in leaf.learning_rate_multipliers().items()}
    if prop == "InputPorts":
        return {p: _port_text(t, net.encoders.get(p)) for p, t in net.input_ports().items()}
    if prop == "OutputPorts":
        return {p: _port_text(t, net.decoders.get(p)) for p, t in net.output_ports().items()}
    if prop == "InputPortNames":
        return list(net.input_ports())
    if prop == "OutputPortNames":
        return list(net.output_ports())
    if prop == "Layers":
        return {pos: leaf for pos, leaf in net.leaves()}
    if prop == "LayersCount":
        return len(net.leaves())
    if prop == "LayerTypeCounts":
        return dict(Counter(leaf.name for _, leaf in net.leaves()))
    if prop == "RecurrentStatesCount":
        return sum(len(leaf.state_ports()) for _, leaf in net.leaves())
    if prop == "RecurrentStatesPositionList":
        return [pos + (s,) for pos, leaf in net.leaves() for s in leaf.state_ports()]
    if prop == "InputForm":
        return net.input_form()
    if prop == "SummaryGraphic":
        from .graphics import summary_graphic

        return summary_graphic(net)
    raise AssertionError(prop)


def _total(dims: dict):
    if any(d is None for d in dims.values()):
        return None
    return int(sum(int(np.prod(d)) for d in dims.values()))


def Options(f):
    """Options(LayerClass) → the construction options and defaults; Options(net) → the
    evaluation options and their defaults.

    >>> Options(LongShortTermMemoryLayer)["Dropout"] is None
    True
    >>> Options(NetInitialize(LinearLayer(2, Input=3)))["NetEvaluationMode"]
    'Test'
    """
    if isinstance(f, type) and issubclass(f, Net):
        return dict(f.OPTIONS)
    if isinstance(f, Net):
        return dict(EVALUATION_OPTIONS)
    raise OptionError(f"Options: expected a layer class or a net, but was given {f!r}.")


def NetExtract(net, spec):
    """NetExtract(net, "ArrayName") → the array as numpy; NetExtract(net, (pos, ..., "ArrayName"))
    for nested positions; a position alone gives the layer or sub-net.

    >>> NetExtract(NetChain([LinearLayer(2), SoftmaxLayer()], Input=3), 2).name
    'SoftmaxLayer'
    """
    from ..nets.state import NetStateObject

    if isinstance(net, Net | NetStateObject):
        return net.extract(spec)
    raise OptionError(f"NetExtract: expected a net, but was given {type(net).__name__}.")
