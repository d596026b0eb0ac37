"""Information, Options and NetExtract."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..core.errors import OptionError
from ..core.net import Net
from ..core.shapes import describe
from ..nets.evaluate import EVALUATION_OPTIONS
from .display import byte_text


def _array_dims(net: Net) -> dict:
    """{position: dims} for every array, from the array itself or, if missing, its expected shape."""
    expected = {pos + (name,): d for pos, leaf in net.leaves() for name, d in leaf.array_shapes().items()}
    return {k: tuple(t.shape) if t is not None else expected.get(k) for k, t in net.arrays().items()}


def _port_text(t, enc=None) -> str:
    return f"{describe(t)} (encoded by {enc!r})" if enc is not None else describe(t)


def _total(dims: dict):
    if any(d is None for d in dims.values()):
        return None
    return int(sum(int(np.prod(d)) for d in dims.values()))


def _byte_count(net: Net):
    """4 bytes a number (float32), or None while an array's shape is unknown."""
    total = _total(_array_dims(net))
    return None if total is None else 4 * total


def _summary_graphic(net: Net):
    from .graphics import summary_graphic  # (matplotlib is loaded only when a graphic is asked for)

    return summary_graphic(net)


# Information(net, name) for each property: the table is the list of properties
_PROPERTY = {
    "Arrays": lambda net: {k: (v.numpy().copy() if v is not None else None) for k, v in net.arrays().items()},
    "ArraysCount": lambda net: len(net.arrays()),
    "ArraysDimensions": _array_dims,
    "ArraysElementCounts": lambda net: {k: (int(np.prod(d)) if d is not None else None)
                                        for k, d in _array_dims(net).items()},
    "ArraysTotalElementCount": lambda net: _total(_array_dims(net)),
    "ArraysTotalByteCount": _byte_count,
    "ArraysTotalSize": lambda net: None if (n := _byte_count(net)) is None else byte_text(n),
    "ArraysLearningRateMultipliers": lambda net: {pos + (a,): m for pos, leaf in net.leaves()
                                                  for a, m in leaf.learning_rate_multipliers().items()},
    "InputPorts": lambda net: {p: _port_text(t, net.encoders.get(p)) for p, t in net.input_ports().items()},
    "OutputPorts": lambda net: {p: _port_text(t, net.decoders.get(p)) for p, t in net.output_ports().items()},
    "InputPortNames": lambda net: list(net.input_ports()),
    "OutputPortNames": lambda net: list(net.output_ports()),
    "Layers": lambda net: dict(net.leaves()),
    "LayersCount": lambda net: len(net.leaves()),
    "LayerTypeCounts": lambda net: dict(Counter(leaf.name for _, leaf in net.leaves())),
    "RecurrentStatesCount": lambda net: sum(len(leaf.state_ports()) for _, leaf in net.leaves()),
    "RecurrentStatesPositionList": lambda net: [pos + (s,) for pos, leaf in net.leaves() for s in leaf.state_ports()],
    "InputForm": lambda net: net.input_form(),
    "SummaryGraphic": _summary_graphic,
    "Properties": lambda net: list(PROPERTIES),
}
PROPERTIES = tuple(_PROPERTY)

# Information(net) with no property: these, in this order
_SUMMARY = ("LayersCount", "ArraysCount", "InputPortNames", "OutputPortNames", "ArraysTotalElementCount",
            "ArraysTotalSize")


def Information(net: Net, prop=None):
    """Information(net) summarizes the net; Information(net, prop) gives one property.

    >>> Information(NetInitialize(LinearLayer(2, Input=3)), "ArraysTotalElementCount")
    8
    """
    if not isinstance(net, Net):
        raise OptionError(f"Information: expected a net, but was given {type(net).__name__}.")
    if prop is None:
        return {name: _PROPERTY[name](net) for name in _SUMMARY}
    if not isinstance(prop, str) or prop not in _PROPERTY:
        raise OptionError(
            f"Information: {prop!r} is not a known property; the properties are {', '.join(PROPERTIES)}."
        )
    return _PROPERTY[prop](net)


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
