"""Information, Options and NetExtract."""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..core.errors import OptionError
from ..core.net import Net
from ..core.shapes import describe
from ..core.symbols import All
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


def _wired(net: Net, prefix: tuple = ()) -> tuple[list, list, dict, dict]:
    """The layers of net as a graph: ([position] in evaluation order, [(position, position)],
    {input port: [positions that read it]}, {output or state port: [positions that give it]});
    an operator is the layers it holds, in order, read and giving together."""
    from ..nets.containers import GRAPH, NetGraph

    if not isinstance(net, NetGraph):
        order = [prefix + pos for pos, _ in net.leaves()]
        ports = {**net.output_ports(), **net.state_ports()}
        return order, [], {p: order for p in net.input_ports() | net.state_ports()}, {p: order for p in ports}
    order, edges, inputs, subs = [], [], {}, {}
    for k in net._order:
        sub = subs[k] = _wired(net._nodes[k], prefix + (k,))
        order += sub[0]
        edges += sub[1]
        for port, src in net._feeds[k].items():
            for s in src if isinstance(src, list) else [src]:
                readers = sub[2].get(port, sub[0])
                if s[0] == GRAPH:
                    inputs.setdefault(s[1], []).extend(r for r in readers if r not in inputs.get(s[1], []))
                else:
                    edges += [(a, b) for a in subs[s[0]][3].get(s[1], subs[s[0]][0]) for b in readers
                              if (a, b) not in edges]
    outputs = {name: inputs.get(src[1], []) if src[0] == GRAPH else subs[src[0]][3].get(src[1], [])
               for name, src in net._graph_out.items()}
    return order, edges, inputs, outputs


def _layers_graph(net: Net) -> dict:
    order, edges, _, _ = _wired(net)
    return {"Vertices": order, "Edges": edges}


def _full_summary_graphic(net: Net):
    from ..nets.rewrite import NetFlatten

    return _summary_graphic(NetFlatten(net))


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
    "ArraysSizes": lambda net: {k: (byte_text(4 * int(np.prod(d))) if d is not None else None)
                                for k, d in _array_dims(net).items()},
    "InputPorts": lambda net: {p: _port_text(t, net.encoders.get(p)) for p, t in net.input_ports().items()},
    "OutputPorts": lambda net: {p: _port_text(t, net.decoders.get(p)) for p, t in net.output_ports().items()},
    "InputPortNames": lambda net: list(net.input_ports()),
    "OutputPortNames": lambda net: list(net.output_ports()),
    "Layers": lambda net: dict(net.leaves()),
    "LayersCount": lambda net: len(net.leaves()),
    "LayersList": lambda net: [leaf for _, leaf in net.leaves()],
    "TopologicalOrder": lambda net: _wired(net)[0],
    "LayersGraph": _layers_graph,
    "LayerTypeCounts": lambda net: dict(Counter(leaf.name for _, leaf in net.leaves())),
    "RecurrentStatesCount": lambda net: sum(len(leaf.state_ports()) for _, leaf in net.leaves()),
    "RecurrentStatesPositionList": lambda net: [pos + (s,) for pos, leaf in net.leaves() for s in leaf.state_ports()],
    "InputForm": lambda net: net.input_form(),
    "SummaryGraphic": _summary_graphic,
    "FullSummaryGraphic": _full_summary_graphic,
    "Properties": lambda net: list(PROPERTIES),
}
PROPERTIES = tuple(_PROPERTY)

# Information(net) with no property: these, in this order
_SUMMARY = ("LayersCount", "ArraysCount", "InputPortNames", "OutputPortNames", "ArraysTotalElementCount",
            "ArraysTotalSize")


# Information(obj, name) of a NetStateObject: these, and any property of the net it holds
_STATE_PROPERTY = {
    "Net": lambda obj: obj.net,
    "RecurrentStates": lambda obj: obj.states(),
    "RecurrentStatesPositionList": lambda obj: list(obj.states()),
}


def Information(net, prop=None):
    """Information(net) summarizes the net; Information(net, prop) gives one property. Of a
    NetStateObject: its net's properties, and "RecurrentStates" (the stored states) and "Net".

    >>> Information(NetInitialize(LinearLayer(2, Input=3)), "ArraysTotalElementCount")
    8
    >>> Information(NetChain([LinearLayer(2), SoftmaxLayer()], Input=3), "TopologicalOrder")
    [(1,), (2,)]
    """
    from ..nets.state import NetStateObject

    if isinstance(net, NetStateObject):
        if prop is None:
            return {**Information(net.net), "RecurrentStatesCount": len(net.states())}
        if isinstance(prop, str) and prop in _STATE_PROPERTY:
            return _STATE_PROPERTY[prop](net)
        if not isinstance(prop, str) or prop not in _PROPERTY:
            raise OptionError(f"Information: {prop!r} is not a known property of a NetStateObject; the properties "
                              f"are {', '.join((*_STATE_PROPERTY, *PROPERTIES))}.")
        return _PROPERTY[prop](net.net)
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
    """NetExtract(net, spec): spec a layer's position (1-based, negative from the end) or name →
    the layer or sub-net; "ArrayName" of a layer → the array (numpy); (pos, ..., spec) a part
    inside a part; All → every layer (a list, a dict for named ones), (All, spec) spec of each;
    "Input", "Output" or another port → its encoder or decoder if it has one, else its type; a
    list of specs → the list of their parts. Of a NetStateObject, "States" or a state position
    gives its stored states.

    >>> chain = NetChain([LinearLayer(2), SoftmaxLayer()], Input=3)
    >>> NetExtract(chain, 2).name, NetExtract(chain, -1).name
    ('SoftmaxLayer', 'SoftmaxLayer')
    >>> [layer.name for layer in NetExtract(chain, [1, 2])], NetExtract(chain, "Input").dims
    (['LinearLayer', 'SoftmaxLayer'], (3,))
    """
    from ..nets.state import NetStateObject

    if isinstance(spec, list):
        return [NetExtract(net, s) for s in spec]
    if isinstance(net, NetStateObject):
        if spec == "States" or (spec if isinstance(spec, tuple) else (spec,)) in net.states():
            return net.extract(spec)
        return NetExtract(net.net, spec)
    if not isinstance(net, Net):
        raise OptionError(f"NetExtract: expected a net, but was given {type(net).__name__}.")
    return _extract(net, spec if isinstance(spec, tuple) else (spec,), ())


def _extract(net: Net, path: tuple, at: tuple):
    from ..nets.containers import NetGraph
    from ..nets.edit import resolve

    if not path:
        return net
    head, rest = path[0], path[1:]
    where = f" at {at!r}" if at else ""
    if head is All:
        parts = net.parts()
        if not parts:
            raise OptionError(f"NetExtract: All names the parts of a container, but the part{where} is a {net.name}.")
        got = {k: _extract(p, rest, at + (k,)) for k, p in parts}
        return list(got.values()) if all(isinstance(k, int) for k in got) else got
    keys = dict(net.parts())
    if isinstance(head, str) and head not in keys and head in (set(net.input_ports()) | set(net.output_ports())):
        if rest:
            raise OptionError(f"NetExtract: {head!r}{where} is a port; nothing lies inside it ({rest!r}).")
        coder = net.encoders.get(head) or net.decoders.get(head)
        if coder is not None:
            return coder
        return net.input_ports()[head] if head in net.input_ports() else net.output_ports()[head]
    if isinstance(net, NetGraph):
        key = resolve(net, head, "NetExtract" + where)
        return _extract(net._nodes[key], rest, at + (key,))
    if keys:
        if head not in keys:
            raise OptionError(f"NetExtract: {head!r} is not part of the {net.name}{where}; its parts are "
                              f"{', '.join(repr(k) for k in keys)}.")
        return _extract(keys[head], rest, at + (head,))
    if rest:
        raise OptionError(f"NetExtract: {path!r}{where}: a {net.name} holds no parts, only arrays.")
    return net.extract(head)
