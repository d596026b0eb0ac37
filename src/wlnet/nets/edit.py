"""Taking nets apart and putting them together: NetTake, NetDrop, NetAppend, NetPrepend,
NetInsert, NetDelete, NetJoin, Normal (NetReplacePart, NetReplace, NetFlatten and NetRename,
which rewrite a net's parts, are in `rewrite`).

Every edit returns a new net; the layers it keeps are the same objects (their trained arrays and
inferred types with them), so a layer that no longer fits its new neighbours is a ShapeError
naming the edit and the position. Positions are 1-based, negative ones count from the end; a
layer of a net built from a dict is also reached by its name. A span is a pair (m, n) or
slice(m, n), both ends included, None for All (Wolfram's m;;n).
"""

from __future__ import annotations

from ..core.errors import ConstructionError, NetError, NotSupportedError, OptionError, ShapeError
from ..core.net import Net, NetPort
from ..core.symbols import All
from ..layers.base import Layer
from .containers import GRAPH, NetChain, NetGraph

# ---- positions -----------------------------------------------------------------------------------


def _check_container(net, who: str, chain_only: bool = False) -> None:
    if chain_only and not isinstance(net, NetChain):
        got = net.name if isinstance(net, Net) else type(net).__name__
        raise NotSupportedError(f"{who}: expected a NetChain, but was given a {got}.")
    if not isinstance(net, NetGraph):
        got = net.name if isinstance(net, Net) else type(net).__name__
        raise OptionError(f"{who}: expected a NetChain or NetGraph, but was given a {got}.")


def resolve(net: NetGraph, spec, who: str):
    """The key of the layer that `spec` names: a 1-based position (negative from the end) or a name."""
    keys = list(net._nodes)
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec in net._nodes:
            return spec
        n = len(keys)
        if 1 <= spec <= n or -n <= spec <= -1:
            return keys[spec - 1 if spec > 0 else spec]
        raise OptionError(f"{who}: there is no layer at position {spec}; the {net.name} has {n} "
                          f"layer{'s' if n != 1 else ''}.")
    if isinstance(spec, str) and spec in net._nodes:
        return spec
    raise OptionError(f"{who}: {spec!r} is not a layer of the {net.name}; its layers are "
                      f"{', '.join(repr(k) for k in keys)}.")


def _index(net: NetGraph, spec, who: str) -> int:
    """The 0-based index of the layer `spec` names."""
    return list(net._nodes).index(resolve(net, spec, who))


def _span(net: NetGraph, spec, who: str) -> tuple[int, int]:
    """(first, last) 0-based indices, both included, of a span (m, n) or slice(m, n)."""
    if isinstance(spec, slice):
        if spec.step not in (None, 1):
            raise OptionError(f"{who}: a span of layers takes no step, but {spec!r} was given.")
        spec = (1 if spec.start in (None, All) else spec.start, -1 if spec.stop in (None, All) else spec.stop)
    if not (isinstance(spec, tuple | list) and len(spec) == 2):
        raise OptionError(f"{who}: expected a position, a name, or a span (m, n), but was given {spec!r}.")
    first = 0 if spec[0] is All else _index(net, spec[0], who)
    last = len(net._nodes) - 1 if spec[1] is All else _index(net, spec[1], who)
    if last < first:
        raise OptionError(f"{who}: the span {spec!r} is empty: it ends at layer {last + 1}, before it starts at "
                          f"layer {first + 1}.")
    return first, last


def _named(items: list) -> list | dict:
    """NetChain's layers from [(key, layer)]: a list when every key is a position, else a dict
    (positions becoming their names, "3")."""
    if all(isinstance(k, int) for k, _ in items):
        return [layer for _, layer in items]
    out = {}
    for k, layer in items:
        name = str(k)
        if name in out:
            raise ConstructionError(f"NetChain: two layers are named {name!r}.")
        out[name] = layer
    return out


def _fresh(layer: Net) -> Net:
    """A layer with no trained arrays as the user gave it, its shapes to be inferred again (a
    trained layer, or anything else, as it is: its arrays fix its shapes)."""
    if not isinstance(layer, Layer) or any(t is not None for t in layer._arrays.values()):
        return layer
    try:
        return type(layer)(*layer._args, **layer._given)
    except NetError:
        return layer


def _reinferring(build, nodes):
    """build(nodes); if the layers' inferred shapes no longer fit, once more with every layer
    that has no trained arrays inferred again; the first error if that fails too."""
    try:
        return build(nodes)
    except ShapeError as first:
        fresh = {k: _fresh(x) for k, x in nodes.items()} if isinstance(nodes, dict) else [_fresh(x) for x in nodes]
        try:
            return build(fresh)
        except (ShapeError, ConstructionError):
            raise first from None


def _chain(who: str, items: list, ports: dict, what: str) -> NetChain:
    """A NetChain of [(key, layer)] with port options `ports`; a layer that does not fit is an
    error that says which edit failed (`what`)."""
    if not items:
        raise ConstructionError(f"{who}: {what} leaves no layers.")
    try:
        opts = {p: v for p, v in ports.items() if v is not None}
        return _reinferring(lambda layers: NetChain(layers, **opts), _named(items))
    except (ShapeError, ConstructionError) as e:
        raise type(e)(f"{who}: {what}: {e}") from None


def _chain_ports(net: NetChain, keep_first: bool, keep_last: bool, given: dict) -> dict:
    """The port options that survive: Input (an encoder too) if the first layer stays first,
    Output if the last stays last; `given` replaces them."""
    ports = {}
    if keep_first and "Input" in net._port_options:
        ports["Input"] = net._port_options["Input"]
    if keep_last and "Output" in net._port_options:
        ports["Output"] = net._port_options["Output"]
    ports.update(given)
    return ports


def _new_layers(layers, who: str) -> list:
    """[(key, layer)] from a layer, a list of layers, or a dict of named layers."""
    if isinstance(layers, Net):
        return [(None, layers)]
    if isinstance(layers, dict):
        items = list(layers.items())
    elif isinstance(layers, list | tuple):
        items = [(None, x) for x in layers]
    else:
        raise OptionError(f"{who}: expected a layer, a list of layers or a dict of named layers, but was "
                          f"given {layers!r}.")
    for k, x in items:
        if not isinstance(x, Net):
            raise OptionError(f"{who}: {x!r} is not a net or layer.")
        if k is not None and not isinstance(k, str):
            raise OptionError(f"{who}: layer names must be strings, but {k!r} was given.")
    return items


def _renumber(items: list) -> list:
    """Positions renumbered 1, 2, ... in order; names kept (new unnamed layers get their position)."""
    return [(i if (k is None or isinstance(k, int)) else k, x) for i, (k, x) in enumerate(items, 1)]


# ---- graphs as data --------------------------------------------------------------------------------


def _endpoint(src):
    return NetPort(src[1]) if src[0] == GRAPH else NetPort(src[0], src[1])


def _graph(who: str, nodes: dict, feeds: dict, outputs: dict, ports: dict, what: str) -> NetGraph:
    """A NetGraph of `nodes` wired by `feeds` ({key: {port: src or [src]}}) and `outputs`
    ({graph output: src}); an endpoint is (key, port) or (GRAPH, port)."""
    edges = []
    for k, fed in feeds.items():
        for port, src in fed.items():
            if isinstance(src, list):
                edges.append(([_endpoint(s) for s in src], NetPort(k, port)))
            elif not (src[0] == GRAPH and src[1] == port and port in nodes[k].input_ports()):
                edges.append((_endpoint(src), NetPort(k, port)))  # (a main port fed by its namesake is implicit)
    edges += [(_endpoint(src), NetPort(name)) for name, src in outputs.items()]
    layers = nodes
    try:
        if all(isinstance(k, int) for k in layers):  # positions: renumbered 1..n in order
            renum = {k: i for i, k in enumerate(layers, 1)}
            edges = [_rekey(e, renum) for e in edges]
            return _reinferring(lambda ls: NetGraph(ls, edges, **ports), list(layers.values()))
        named = [_rekey(e, {k: str(k) for k in layers}) for e in edges]
        return _reinferring(lambda ls: NetGraph(ls, named, **ports), {str(k): v for k, v in layers.items()})
    except (ShapeError, ConstructionError) as e:
        raise type(e)(f"{who}: {what}: {e}") from None


def _rekey(edge, keys: dict):
    def one(x):
        if isinstance(x, list):
            return [one(y) for y in x]
        if len(x.spec) == 2:
            return NetPort(keys[x.spec[0]], x.spec[1])
        return x

    return tuple(one(x) for x in edge)


def _explicit(g: NetGraph, outputs: dict) -> dict:
    """The outputs an edge names; the others are left to be named again ("Output", "Output1", ...)."""
    named = {dst[1] for _, dst in g._edges if dst[0] == GRAPH}
    return {name: src for name, src in outputs.items() if name in named}


def _feeds(g: NetGraph) -> dict:
    return {k: dict(v) for k, v in g._feeds.items()}


# ---- NetTake, NetDrop ------------------------------------------------------------------------------


def NetTake(net, spec, **ports):
    """NetTake(chain, n): the layers from the first up to n; NetTake(chain, (m, n)) (or
    slice(m, n)): layers m through n; positions or names, negative positions from the end.
    NetTake(graph, end) / (start, end): the layers between start and end (layers, NetPort(input
    or output), All). Port options replace the result's types, encoders and decoders.

    >>> chain = NetChain([LinearLayer(4), ElementwiseLayer("Tanh"), LinearLayer(2)], Input=3)
    >>> [layer.name for layer in Normal(NetTake(chain, 2))]
    ['LinearLayer', 'ElementwiseLayer']
    """
    who = "NetTake"
    _check_container(net, who)
    if isinstance(net, NetChain):
        first, last = _span(net, spec, who) if isinstance(spec, tuple | list | slice) else (0, _index(net, spec, who))
        items = list(net._nodes.items())[first:last + 1]
        return _chain(who, items, _chain_ports(net, first == 0, last == len(net._nodes) - 1, ports),
                      f"taking layers {first + 1} to {last + 1}")
    start, end = (spec if isinstance(spec, tuple | list) and len(spec) == 2 else (All, spec))
    keep = _descendants(net, start, who) & _ancestors(net, end, who)
    if not keep:
        raise OptionError(f"{who}: no layer lies between {start!r} and {end!r}.")
    feeds = {}
    for k in net._nodes:
        if k not in keep:
            continue
        fed = {}
        for port, src in net._feeds[k].items():
            srcs = src if isinstance(src, list) else [src]
            cut = [s for s in srcs if s[0] != GRAPH and s[0] not in keep]
            if cut and isinstance(src, list):
                raise NotSupportedError(f"{who}: layer {k!r} takes a list on port {port!r} of which only some "
                                        "sources are taken; take all of them or none.")
            if not cut:
                fed[port] = src
            elif port in net._nodes[k].state_ports():
                continue  # an initial state fed by a layer left out: the layer starts from zeros
            else:
                fed[port] = (GRAPH, port)
        feeds[k] = fed
    outputs = {name: src for name, src in net._graph_out.items() if src[0] in keep}
    ends = _ends(net, end, who)
    outputs = _explicit(net, {name: src for name, src in outputs.items() if src[0] in ends})
    given = dict(net._port_options) | ports
    nodes = {k: net._nodes[k] for k in net._nodes if k in keep}
    result = _graph(who, nodes, feeds, outputs, {}, f"taking {spec!r}")
    ports_kept = {p: v for p, v in given.items() if p in result.input_ports() or p in result.output_ports()}
    return _graph(who, nodes, feeds, outputs, ports_kept, f"taking {spec!r}") if ports_kept else result


def _graph_edges(net: NetGraph) -> tuple[dict, dict]:
    """({key: layers it reads}, {key: layers that read it})."""
    reads = {k: set() for k in net._nodes}
    for k, fed in net._feeds.items():
        for src in fed.values():
            for s in src if isinstance(src, list) else [src]:
                if s[0] != GRAPH:
                    reads[k].add(s[0])
    readers = {k: set() for k in net._nodes}
    for k, rs in reads.items():
        for r in rs:
            readers[r].add(k)
    return reads, readers


def _closure(starts: set, step: dict) -> set:
    seen, todo = set(starts), list(starts)
    while todo:
        for n in step[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def _ends(net: NetGraph, spec, who: str) -> set:
    """The layers an end spec names: a layer, NetPort(output) (the layer behind it), All, or a list."""
    if spec is All:
        return {src[0] for src in net._graph_out.values() if src[0] != GRAPH}
    if isinstance(spec, list):
        return set().union(*(_ends(net, s, who) for s in spec))
    if isinstance(spec, NetPort) and len(spec.spec) == 1:
        if spec.spec[0] not in net._graph_out:
            raise OptionError(f"{who}: {spec!r} is not an output port; the output ports are "
                              f"{', '.join(repr(p) for p in net._graph_out)}.")
        src = net._graph_out[spec.spec[0]]
        return set() if src[0] == GRAPH else {src[0]}
    return {resolve(net, spec, who)}


def _starts(net: NetGraph, spec, who: str) -> set:
    """The layers a start spec names: a layer, NetPort(input) (the layers it feeds), All, or a list."""
    if spec is All:
        return set(net._nodes)
    if isinstance(spec, list):
        return set().union(*(_starts(net, s, who) for s in spec))
    if isinstance(spec, NetPort) and len(spec.spec) == 1:
        name = spec.spec[0]
        if name not in net._in:
            raise OptionError(f"{who}: {spec!r} is not an input port; the input ports are "
                              f"{', '.join(repr(p) for p in net._in)}.")
        return {k for k, fed in net._feeds.items() for src in fed.values()
                for s in (src if isinstance(src, list) else [src]) if s == (GRAPH, name)}
    return {resolve(net, spec, who)}


def _descendants(net, spec, who):
    _, readers = _graph_edges(net)
    return _closure(_starts(net, spec, who), readers)


def _ancestors(net, spec, who):
    reads, _ = _graph_edges(net)
    return _closure(_ends(net, spec, who), reads)


def NetDrop(chain, spec, **ports):
    """NetDrop(chain, n): without its first n layers; NetDrop(chain, -n): without its last n;
    NetDrop(chain, (m, n)): without layers m through n (positions or names).

    >>> chain = NetChain([LinearLayer(4), ElementwiseLayer("Tanh"), LinearLayer(2)], Input=3)
    >>> [layer.name for layer in Normal(NetDrop(chain, -1))]
    ['LinearLayer', 'ElementwiseLayer']
    """
    who = "NetDrop"
    _check_container(chain, who, chain_only=True)
    n = len(chain._nodes)
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not -n <= spec <= n:
            raise OptionError(f"{who}: cannot drop {abs(spec)} layers of a NetChain of {n}.")
        first, last = (0, spec - 1) if spec >= 0 else (n + spec, n - 1)
    else:
        first, last = _span(chain, spec, who)
    items = [item for i, item in enumerate(chain._nodes.items()) if not first <= i <= last]
    return _chain(who, _renumber(items), _chain_ports(chain, first > 0, last < n - 1, ports),
                  f"dropping layers {first + 1} to {last + 1}")


# ---- NetAppend, NetPrepend, NetInsert, NetDelete -------------------------------------------------


def _insert(who: str, chain: NetChain, layers, at: int, what: str, ports: dict) -> NetChain:
    new = _new_layers(layers, who)
    items = list(chain._nodes.items())
    items = _renumber(items[:at] + new + items[at:])
    return _chain(who, items, _chain_ports(chain, at > 0, at < len(chain._nodes), ports), what)


def NetAppend(net, layers, **ports):
    """NetAppend(chain, layer): the chain with layer (a list of layers, or a dict of named ones)
    added at the end; on a NetGraph of one output, the layer reads that output.

    >>> chain = NetAppend(NetChain([LinearLayer(4)], Input=3), SoftmaxLayer())
    >>> len(chain), chain[-1].name
    (2, 'SoftmaxLayer')
    """
    who = "NetAppend"
    _check_container(net, who)
    if isinstance(net, NetChain):
        return _insert(who, net, layers, len(net._nodes), "appending", ports)
    if len(net._graph_out) != 1:
        raise ConstructionError(f"{who}: the NetGraph has {len(net._graph_out)} output ports; a layer can be "
                                "appended to a graph of one output only.")
    (name, src), = net._graph_out.items()
    nodes, feeds = dict(net._nodes), _feeds(net)
    for key, layer in _new_layers(layers, who):
        key = key if key is not None else (max([k for k in nodes if isinstance(k, int)], default=0) + 1
                                           if all(isinstance(k, int) for k in nodes) else f"{len(nodes) + 1}")
        if key in nodes:
            raise ConstructionError(f"{who}: the NetGraph already has a layer {key!r}.")
        inputs = layer.input_ports()
        if len(inputs) != 1:
            raise ConstructionError(f"{who}: the appended {layer.name} has {len(inputs)} input ports; it needs one.")
        nodes[key] = layer
        feeds[key] = {next(iter(inputs)): src}
        src = (key, next(iter(layer.output_ports())))
    ports = {p: v for p, v in net._port_options.items() if p != name} | ports
    return _graph(who, nodes, feeds, {}, ports, "appending")


def NetPrepend(chain, layers, **ports):
    """NetPrepend(chain, layer): the chain with layer (a list of layers, or a dict of named
    ones) put first.

    >>> chain = NetPrepend(NetChain([SoftmaxLayer()]), LinearLayer(3, Input=2))
    >>> [layer.name for layer in chain]
    ['LinearLayer', 'SoftmaxLayer']
    """
    who = "NetPrepend"
    _check_container(chain, who, chain_only=True)
    return _insert(who, chain, layers, 0, "prepending", ports)


def NetInsert(chain, layer, n, **ports):
    """NetInsert(chain, layer, n): the chain with layer inserted so that it is at position n
    (a name: inserted before that layer); layer may be a dict of one named layer.

    >>> chain = NetInsert(NetChain([LinearLayer(4), LinearLayer(2)], Input=3), ElementwiseLayer("Tanh"), 2)
    >>> [layer.name for layer in chain]
    ['LinearLayer', 'ElementwiseLayer', 'LinearLayer']
    """
    who = "NetInsert"
    _check_container(chain, who, chain_only=True)
    count = len(chain._nodes)
    if isinstance(n, int) and not isinstance(n, bool):
        if not (1 <= n <= count + 1 or -count - 1 <= n <= -1):
            raise OptionError(f"{who}: cannot insert at position {n} in a NetChain of {count} layers.")
        at = n - 1 if n > 0 else count + 1 + n
    else:
        at = _index(chain, n, who)
    return _insert(who, chain, layer, at, f"inserting at position {at + 1}", ports)


def NetDelete(net, spec):
    """NetDelete(net, n) or NetDelete(net, "name"): the net without that layer (a list of specs
    deletes several); NetDelete(graph, NetPort("out")) removes an output port, or a state input
    port (the layer it fed starts from zeros). A layer inside a
    graph is bridged: what fed its one input feeds what read its output.

    >>> chain = NetDelete(NetChain([LinearLayer(4), ElementwiseLayer("Tanh"), LinearLayer(2)], Input=3), 2)
    >>> [layer.name for layer in chain]
    ['LinearLayer', 'LinearLayer']
    """
    who = "NetDelete"
    _check_container(net, who)
    specs = spec if isinstance(spec, list) else [spec]
    ports = [s for s in specs if isinstance(s, NetPort)]
    keys = {resolve(net, s, who) for s in specs if not isinstance(s, NetPort)}
    what = f"deleting {spec!r}"
    if isinstance(net, NetChain) and not ports:
        items = [(k, x) for k, x in net._nodes.items() if k not in keys]
        ks = list(net._nodes)
        return _chain(who, _renumber(items), _chain_ports(net, ks[0] not in keys, ks[-1] not in keys, {}), what)
    nodes, feeds, outputs = dict(net._nodes), _feeds(net), dict(net._graph_out)
    for p in ports:
        name = p.spec[0] if len(p.spec) == 1 else None
        states = [(k, q) for k, f in feeds.items() for q, src in f.items()
                  if src == (GRAPH, name) and q in nodes[k].state_ports()]
        if name in net._in and states and len(states) == sum(
                1 for f in feeds.values() for src in f.values()
                for s in (src if isinstance(src, list) else [src]) if s == (GRAPH, name)):
            for k, q in states:  # a state input: the layer starts from zeros again
                del feeds[k][q]
            continue
        if name not in outputs:
            raise OptionError(f"{who}: {p!r} is not an output port or a state input of the NetGraph; its output "
                              f"ports are {', '.join(repr(o) for o in outputs)}.")
        del outputs[name]
    if ports and not outputs:
        raise ConstructionError(f"{who}: deleting {spec!r} leaves the NetGraph no output.")
    if ports and outputs != net._graph_out:  # the layers that computed only the deleted outputs go with them
        reads, _ = _graph_edges(net)
        needed = _closure({s[0] for s in outputs.values() if s[0] != GRAPH}, reads)
        keys |= {k for k in nodes if k not in needed}
    for k in keys:
        node = nodes.pop(k)
        fed = feeds.pop(k)
        main = [src for p, src in fed.items() if p not in node.state_ports()]
        readers = any(s[0] == k for f in feeds.values() for src in f.values()
                      for s in (src if isinstance(src, list) else [src])) or any(s[0] == k for s in outputs.values())
        if readers and (len(main) != 1 or isinstance(main[0], list)):
            raise ConstructionError(f"{who}: layer {k!r} ({node.name}) is inside the graph and has {len(main)} "
                                    "inputs; only a layer of one input and one output can be deleted from inside.")
        through = main[0] if main else None
        layer_readers = any(s[0] == k for f in feeds.values() for src in f.values()
                            for s in (src if isinstance(src, list) else [src]))
        if not layer_readers:  # at the periphery: its outputs go with it
            outputs = {name: s for name, s in outputs.items() if s[0] != k}

        def bridge(s, k=k, through=through):
            return through if s[0] == k else s

        feeds = {j: {p: [bridge(s) for s in src] if isinstance(src, list) else bridge(src) for p, src in f.items()}
                 for j, f in feeds.items()}
        outputs = {name: bridge(s) for name, s in outputs.items()}
    kept_ports = {p: v for p, v in net._port_options.items() if p not in [q.spec[0] for q in ports]}
    if not ports:
        outputs = _explicit(net, outputs)
    return _graph(who, nodes, feeds, outputs, kept_ports, what)


# ---- NetJoin ----------------------------------------------------------------------------------------


def NetJoin(*nets, **ports):
    """NetJoin(net1, net2, ...): one net in which the output of each feeds the input of the
    next. Chains join into one chain of all their layers (a repeated name gets a suffix, "lin$2");
    encoders of the first and decoders of the last are kept, port options replace them.

    >>> joined = NetJoin(NetChain([LinearLayer(4)], Input=3), NetChain([ElementwiseLayer("Tanh"), LinearLayer(2)]))
    >>> len(joined), joined.output_ports()["Output"].dims
    (3, (2,))
    """
    who = "NetJoin"
    if not nets:
        raise OptionError(f"{who}: give at least one net.")
    for i, n in enumerate(nets, 1):
        if not isinstance(n, Net):
            raise OptionError(f"{who}: argument {i} is {n!r}, which is not a net.")
    if len(nets) > 1 and all(isinstance(n, NetChain) for n in nets):
        items, seen = [], set()
        for n in nets:
            for k, layer in n._nodes.items():
                if isinstance(k, str):
                    base, j = k, 1
                    while k in seen:
                        j += 1
                        k = f"{base}${j}"
                    seen.add(k)
                items.append((k, layer))
        given = {}
        if "Input" in nets[0]._port_options:
            given["Input"] = nets[0]._port_options["Input"]
        if "Output" in nets[-1]._port_options:
            given["Output"] = nets[-1]._port_options["Output"]
        return _chain(who, _renumber(items), given | ports, f"joining {len(nets)} nets")
    try:
        joined = NetChain(list(nets), **ports)
    except (ShapeError, ConstructionError) as e:
        raise type(e)(f"{who}: joining {len(nets)} nets: {e}") from None
    from .rewrite import NetFlatten

    return NetFlatten(joined, 1)


# ---- Normal ----------------------------------------------------------------------------------------


def Normal(net):
    """Normal(chain) → the list of its layers (a dict for named layers); Normal(graph) the same
    for its layers; an operator gives the nets it holds as a dict; a layer itself.

    >>> [layer.name for layer in Normal(NetChain([LinearLayer(2), SoftmaxLayer()], Input=3))]
    ['LinearLayer', 'SoftmaxLayer']
    """
    if not isinstance(net, Net):
        raise OptionError(f"Normal: expected a net, but was given {type(net).__name__}.")
    parts = net.parts()
    if not parts:
        return net
    if isinstance(net, NetGraph) and all(isinstance(k, int) for k, _ in parts):
        return [p for _, p in parts]
    return dict(parts)


__all__ = ["NetAppend", "NetDelete", "NetDrop", "NetInsert", "NetJoin", "NetPrepend", "NetTake", "Normal", "resolve"]
