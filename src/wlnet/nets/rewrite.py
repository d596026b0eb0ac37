"""Rewriting a net's parts: NetReplacePart (layers, ports, arrays), NetReplace (layers by
pattern, at any depth), NetFlatten (nested chains and graphs spliced into one level) and
NetRename (layers and ports). Positions and the rules for keeping layers are `edit`'s."""

from __future__ import annotations

import math
import warnings

from ..core.errors import ConstructionError, NetWarning, NotSupportedError, OptionError, ShapeError
from ..core.net import Net, NetPort
from ..layers.base import Layer, value_code
from .containers import GRAPH, NetChain, NetGraph
from .edit import NetDelete, _chain, _chain_ports, _check_container, _graph, _named, _reinferring, _renumber, resolve

# ---- NetReplacePart ----------------------------------------------------------------------------------


def _rebuild(net: NetGraph, nodes: dict, ports: dict, who: str, what: str) -> NetGraph:
    """The same topology with other layers or port options."""
    try:
        if isinstance(net, NetChain):
            return _reinferring(lambda ls: NetChain(ls, **ports), _named(list(nodes.items())))
        return _reinferring(lambda ls: NetGraph(ls, net._user_edges, **ports),
                            list(nodes.values()) if all(isinstance(k, int) for k in nodes) else nodes)
    except (ShapeError, ConstructionError) as e:
        raise type(e)(f"{who}: {what}: {e}") from None


def _replace_array(net: Net, path: tuple, value, who: str) -> Net:
    leaves = dict(net.leaves())
    pos, name = path[:-1], path[-1]
    leaf = leaves.get(pos)
    if leaf is None or name not in leaf._arrays:
        raise OptionError(f"{who}: {path!r} is not an array of the net.")
    current = leaf._arrays[name]
    expected = tuple(current.shape) if current is not None else leaf.array_shapes().get(name)
    if expected is None:
        raise ShapeError(f"{who}: the dimensions of array {name!r} at {pos!r} are not known yet; give the layer "
                         "its input shape first.")
    t = leaf._array_option(name, value, expected)
    return net.with_arrays({(pos, name): t})


def _port_names(net: Net) -> set:
    return set(net.input_ports()) | set(net.output_ports())


def NetReplacePart(net, rules):
    """NetReplacePart(net, {spec: value, ...}) (or a list of pairs): spec a layer (position or
    name) → a new layer; a port ("Input", "Output", ...) → a shape, an encoder, a decoder, or
    None to remove one; (position, ..., "ArrayName") → an array of the same dimensions;
    (position, ..., spec) → that replacement inside the layer or sub-net at position.

    >>> chain = NetInitialize(NetChain([LinearLayer(4), LinearLayer(2)], Input=3))
    >>> new = NetReplacePart(chain, {2: LinearLayer(5)})
    >>> new.output_ports()["Output"].dims, np.array_equal(NetExtract(new, (1, "Weights")), chain[1].extract("Weights"))
    ((5,), True)
    """
    who = "NetReplacePart"
    if not isinstance(net, Net):
        raise OptionError(f"{who}: expected a net, but was given {type(net).__name__}.")
    pairs = list(rules.items()) if isinstance(rules, dict) else list(rules)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise OptionError(f"{who}: expected a dict of part → value or a list of pairs, but was given {pair!r}.")
    return _replace_all(net, pairs, who)


def _replace_all(net: Net, pairs: list, who: str) -> Net:
    """The replacements made together, so that a new head and a new decoder that fit each other
    (but not the old ones) can be given at once; a container is built again once."""
    if not isinstance(net, NetGraph):
        for spec, value in pairs:
            net = _replace_one(net, spec, value, who)
        return net
    nodes, ports, inner, what = dict(net._nodes), dict(net._port_options), {}, []
    for spec, value in pairs:
        path = spec if isinstance(spec, tuple) else (spec,)
        if not path:
            raise OptionError(f"{who}: an empty part specification.")
        head, rest = path[0], path[1:]
        if not rest and isinstance(head, str) and head not in net._nodes and head in _port_names(net):
            if value is None:
                ports.pop(head, None)
            else:
                ports[head] = value
            what.append(f"port {head!r}")
            continue
        key = resolve(net, head, who)
        what.append(f"layer {head!r}")
        if rest:
            inner.setdefault(key, []).append((rest if len(rest) > 1 else rest[0], value))
        elif not isinstance(value, Net):
            raise OptionError(f"{who}: the replacement for layer {head!r} must be a net or layer, but was given "
                              f"{value!r}.")
        else:
            nodes[key] = value
    for key, sub in inner.items():
        nodes[key] = _replace_all(nodes[key], sub, who)
    return _rebuild(net, nodes, ports, who, "replacing " + ", ".join(what))


def _replace_one(net: Net, spec, value, who: str) -> Net:
    path = spec if isinstance(spec, tuple) else (spec,)
    if not path:
        raise OptionError(f"{who}: an empty part specification.")
    head, rest = path[0], path[1:]
    if isinstance(net, Layer):
        if rest or not isinstance(head, str) or head not in net._arrays:
            raise OptionError(f"{who}: {spec!r} is not an array of {net.name}; its arrays are "
                              f"{', '.join(net._arrays) or 'none'}.")
        return _replace_array(net, (head,), value, who)
    # an operator: arrays of the nets it holds by position
    if len(path) >= 2 and isinstance(path[-1], str):
        return _replace_array(net, path, value, who)
    raise NotSupportedError(f"{who}: replacing {spec!r} inside a {net.name} is not supported; replace its arrays "
                            "with (part, ..., \"ArrayName\").")


# ---- NetReplace ---------------------------------------------------------------------------------------


def _matcher(pattern, who: str):
    if isinstance(pattern, type) and issubclass(pattern, Net):
        return lambda layer: isinstance(layer, pattern)
    if isinstance(pattern, Layer):
        code = _literal_code(pattern)
        return lambda layer: type(layer) is type(pattern) and _literal_code(layer) == code
    if callable(pattern):
        return pattern
    raise OptionError(f"{who}: a pattern is a layer class, a layer, or a function of a layer, but {pattern!r} "
                      "was given.")


def _literal_code(layer: Layer) -> str:
    """A layer's parameters as the user gave them, ports left out (they need not match)."""
    given = {k: v for k, v in layer._given.items() if k not in ("Input", "Output")}
    return value_code((layer._args, given))


def NetReplace(net, rules):
    """NetReplace(net, {pattern: replacement}) (or a list of pairs): every layer, at any depth,
    that matches pattern (a layer class, a layer with the same parameters, or a predicate) is
    replaced by replacement (a layer, a function of the layer, or None to remove it). A NetChain
    put in a chain is spliced into it. No match: a NetWarning and the net unchanged.

    >>> chain = NetChain([LinearLayer(4), ElementwiseLayer("Tanh"), LinearLayer(2)], Input=3)
    >>> [layer.name for layer in NetReplace(chain, {ElementwiseLayer: SoftmaxLayer()})]
    ['LinearLayer', 'SoftmaxLayer', 'LinearLayer']
    """
    who = "NetReplace"
    if not isinstance(net, Net):
        raise OptionError(f"{who}: expected a net, but was given {type(net).__name__}.")
    pairs = list(rules.items()) if isinstance(rules, dict) else list(rules)
    count = [0]
    for pattern, replacement in pairs:
        net = _replace_matching(net, _matcher(pattern, who), replacement, count, who)
    if not count[0]:
        warnings.warn(f"{who}: no layer of the {net.name} matches the patterns; the net is unchanged.",
                      NetWarning, stacklevel=2)
    return net


def _replacement(layer, replacement, who):
    new = replacement(layer) if callable(replacement) and not isinstance(replacement, Net) else replacement
    if new is not None and not isinstance(new, Net):
        raise OptionError(f"{who}: the replacement for {layer.name} must be a net, a layer or None, but was "
                          f"{new!r}.")
    return new


def _replace_matching(net, match, replacement, count, who):
    if not isinstance(net, NetGraph):
        if isinstance(net, Layer) and match(net):
            count[0] += 1
            new = _replacement(net, replacement, who)
            count.append(id(new))  # (the ids after the count: nets made by the replacement)
            return new
        return net
    changed, dropped, items = False, [], []
    for k, part in net._nodes.items():
        new = _replace_matching(part, match, replacement, count, who)
        changed |= new is not part
        if new is None:
            dropped.append(k)
        items.append((k, new))
    if not changed:
        return net
    if isinstance(net, NetChain):
        spliced = []
        for k, x in items:
            if x is None:
                continue
            if isinstance(x, NetChain) and id(x) in count[1:]:
                spliced += [(None if isinstance(k, int) else f"{k}/{j}", y) for j, y in x._nodes.items()]
            else:
                spliced.append((k, x))
        ks = list(net._nodes)
        return _chain(who, _renumber(spliced), _chain_ports(net, ks[0] not in dropped, ks[-1] not in dropped, {}),
                      "replacing layers")
    kept = net
    if dropped:
        kept = NetDelete(net, dropped)
    nodes = {k: x for k, x in items if x is not None}
    if dropped:
        keys = list(kept._nodes)
        nodes = dict(zip(keys, nodes.values()))
    return _rebuild(kept, nodes, dict(kept._port_options), who, "replacing layers")


# ---- NetFlatten ------------------------------------------------------------------------------------


def NetFlatten(net, n=math.inf):
    """NetFlatten(net): nested NetChains and NetGraphs spliced into one level (NetFlatten(net,
    n): n levels). Inner layers are named "outer/inner" unless every key is a position; a chain
    holding a graph becomes a graph.

    >>> inner = NetChain([LinearLayer(4), ElementwiseLayer("Tanh")])
    >>> [layer.name for layer in NetFlatten(NetChain([inner, LinearLayer(2)], Input=3))]
    ['LinearLayer', 'ElementwiseLayer', 'LinearLayer']
    """
    who = "NetFlatten"
    if not isinstance(net, Net):
        raise OptionError(f"{who}: expected a net, but was given {type(net).__name__}.")
    if not (n == math.inf or (isinstance(n, int) and not isinstance(n, bool) and n >= 0)):
        raise OptionError(f"{who}: the level must be a non-negative integer or math.inf, but was given {n!r}.")
    if not isinstance(net, NetGraph) or n == 0:
        return net
    flat = _flatten(net, n, who)
    return _as_chain(flat) if isinstance(flat, NetGraph) and not isinstance(flat, NetChain) else flat


def _as_chain(g: NetGraph) -> NetGraph:
    """A flat graph that is a line of layers of one input and one output each, as a NetChain."""
    order = g._order
    if len(g._in) != 1 or len(g._graph_out) != 1 or any(isinstance(x, NetGraph) for x in g._nodes.values()):
        return g
    prev = (GRAPH, next(iter(g._in)))
    for k in order:
        node, fed = g._nodes[k], g._feeds[k]
        if len(fed) != 1 or len(node.output_ports()) != 1 or len(node.input_ports()) != 1 or node.state_ports():
            return g
        if next(iter(fed.values())) != prev:
            return g
        prev = (k, next(iter(node.output_ports())))
    (out, src), = g._graph_out.items()
    if src != prev or out != "Output" or next(iter(g._in)) != "Input":
        return g
    try:
        return NetChain(_named([(k, g._nodes[k]) for k in order]), **g._port_options)
    except (ShapeError, ConstructionError):
        return g


def _flatten(net, n, who):
    parts = {k: NetFlatten(p, n - 1) if isinstance(p, NetGraph) else p for k, p in net._nodes.items()}
    nested = {k for k, p in parts.items() if isinstance(p, NetGraph)}
    if not nested:
        return net if all(parts[k] is net._nodes[k] for k in parts) else _rebuild(net, parts, dict(net._port_options),
                                                                                 who, "flattening")
    positional = all(isinstance(k, int) for k in parts) and all(
        isinstance(j, int) for k in nested for j in parts[k]._nodes)
    if isinstance(net, NetChain) and all(isinstance(parts[k], NetChain) for k in nested):
        items = []
        for k, p in parts.items():
            if k in nested:
                items += [(None if positional else f"{k}/{j}", y) for j, y in p._nodes.items()]
            else:
                items.append((None if positional else k, p))
        return _chain(who, _renumber(items), dict(net._port_options), "flattening")
    return _flatten_graph(net, parts, nested, positional, who)


def _flatten_graph(net, parts, nested, positional, who):
    """Inner graphs' layers as layers of this graph: an inner graph input is read from what fed
    the inner graph's port; a reader of the inner graph's output reads the inner layer behind it."""
    keymap, nodes, feeds = {}, {}, {}
    counter = iter(range(1, 10**9))
    for k, p in parts.items():
        if k in nested:
            for j in p._nodes:
                keymap[(k, j)] = next(counter) if positional else f"{k}/{j}"
        else:
            keymap[(k,)] = next(counter) if positional else k
    outer = {k: dict(v) for k, v in net._feeds.items()}

    def resolve_src(s):
        if s[0] == GRAPH:
            return s
        if s[0] in nested:
            inner = parts[s[0]]
            src = inner._graph_out[s[1]]
            if src[0] == GRAPH:  # an inner output passing an inner input straight through
                return resolve_src(outer[s[0]][src[1]])
            return (keymap[(s[0], src[0])], src[1])
        return (keymap[(s[0],)], s[1])

    def convert(src, fn):
        return [fn(s) for s in src] if isinstance(src, list) else fn(src)

    for k, p in parts.items():
        if k in nested:
            for j, node in p._nodes.items():
                def inner_src(s, k=k):
                    if s[0] == GRAPH:
                        return resolve_src(outer[k][s[1]])
                    return (keymap[(k, s[0])], s[1])

                nodes[keymap[(k, j)]] = node
                feeds[keymap[(k, j)]] = {port: convert(src, inner_src) for port, src in p._feeds[j].items()}
        else:
            nodes[keymap[(k,)]] = p
            feeds[keymap[(k,)]] = {port: convert(src, resolve_src) for port, src in outer[k].items()}
    outputs = {name: resolve_src(src) for name, src in net._graph_out.items()}
    return _graph(who, nodes, feeds, outputs, dict(net._port_options), "flattening")


# ---- NetRename ---------------------------------------------------------------------------------------


def NetRename(net, rules):
    """NetRename(net, {"old": "new"}) renames layers (a position may be renamed too: the other
    positions become names such as "2"); NetRename(net, {NetPort("old"): NetPort("new")})
    renames a port (the result is a NetGraph); NetRename(net, f) names every layer f(name).

    >>> chain = NetRename(NetChain({"a": LinearLayer(2), "b": SoftmaxLayer()}, Input=3), {"a": "lin"})
    >>> list(Normal(chain))
    ['lin', 'b']
    """
    who = "NetRename"
    _check_container(net, who)
    if callable(rules) and not isinstance(rules, dict):
        layer_map = {k: rules(str(k)) for k in net._nodes}
        port_map = {}
    else:
        pairs = list(rules.items()) if isinstance(rules, dict) else list(rules)
        layer_map, port_map = {}, {}
        for old, new in pairs:
            if isinstance(old, NetPort):
                if not (isinstance(new, NetPort) and len(old.spec) == 1 and len(new.spec) == 1):
                    raise OptionError(f"{who}: a port is renamed NetPort(\"old\") → NetPort(\"new\"), but "
                                      f"{old!r} → {new!r} was given.")
                if old.spec[0] not in _port_names(net):
                    raise OptionError(f"{who}: {old!r} is not a port of the {net.name}.")
                port_map[old.spec[0]] = new.spec[0]
            else:
                layer_map[resolve(net, old, who)] = new
    for new in layer_map.values():
        if not isinstance(new, str) or not new or "." in new:
            raise OptionError(f"{who}: a new layer name must be a non-empty string without '.', but {new!r} was given.")
    keys = {k: layer_map.get(k, k) for k in net._nodes}
    names = [str(v) for v in keys.values()]
    if len(set(names)) != len(names):
        raise ConstructionError(f"{who}: renaming gives two layers the same name ({names}).")
    if not port_map and isinstance(net, NetChain):
        return _chain(who, [(keys[k], x) for k, x in net._nodes.items()], dict(net._port_options), "renaming")

    def src(s):
        return (GRAPH, port_map.get(s[1], s[1])) if s[0] == GRAPH else (keys[s[0]], s[1])

    nodes = {keys[k]: x for k, x in net._nodes.items()}
    feeds = {keys[k]: {p: [src(s) for s in v] if isinstance(v, list) else src(v) for p, v in f.items()}
             for k, f in net._feeds.items()}
    outputs = {port_map.get(name, name): src(s) for name, s in net._graph_out.items()}
    ports = {port_map.get(p, p): v for p, v in net._port_options.items()}
    if not all(isinstance(k, int) for k in nodes):
        nodes = {str(k): v for k, v in nodes.items()}
        feeds = {str(k): {p: _str_src(v) for p, v in f.items()} for k, f in feeds.items()}
        outputs = {name: _str_src(s) for name, s in outputs.items()}
    return _graph(who, nodes, feeds, outputs, ports, "renaming")


def _str_src(src):
    if isinstance(src, list):
        return [_str_src(s) for s in src]
    return src if src[0] == GRAPH else (str(src[0]), src[1])


__all__ = ["NetFlatten", "NetRename", "NetReplace", "NetReplacePart"]
