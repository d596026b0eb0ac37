"""NetChain and NetGraph: topology as plain data, shape inference at construction, and one
compiled torch module per net.

Nodes are keyed by 1-based position (layers given as a list) or by name (a dict). An edge
endpoint is ("graph", port) for a port of the graph itself, or (key, port) for a node's port.
"""

from __future__ import annotations

import torch

from ..coders.decoders import NetDecoder
from ..coders.encoders import NetEncoder
from ..core import options as O
from ..core.errors import ConstructionError, ShapeError
from ..core.net import Net, NetPort
from ..core.shapes import ANY, SCALAR, ListType, Real, describe, parse_sequence_shape, unify
from ..core.symbols import Automatic
from ..layers.base import value_code
from ..show import display

GRAPH = "graph"


def _as_layer(x, who: str, key) -> Net:
    if isinstance(x, Net):
        return x
    if isinstance(x, int) and not isinstance(x, bool):
        from ..layers.basic import LinearLayer

        return LinearLayer(x)
    raise ConstructionError(f"{who}: the layer at {key!r} is {x!r}, which is not a net or layer.")


def _port_option(spec, who: str, port: str):
    """A port option (shape, encoder, decoder, "Scalar") → (type or None, encoder, decoder, scalar)."""
    if spec is Automatic or spec is None:
        return None, None, None, False
    if isinstance(spec, ListType):  # a list port's type, passed on by `infer`
        return spec, None, None, False
    if isinstance(spec, NetEncoder):
        return spec.output_type, spec, None, False
    if isinstance(spec, NetDecoder):
        return spec.input_type, None, spec, False
    if spec == "Scalar":
        return SCALAR, None, None, True
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Real(spec), None, None, False
    if isinstance(spec, tuple | list) and len(spec) == 2:
        return parse_sequence_shape(spec, who, port), None, None, False
    if isinstance(spec, tuple | list):
        return Real(*[None if d is Automatic else d for d in spec]), None, None, False
    raise ShapeError(f"{who}: the port option {port}={spec!r} is not a shape, encoder, decoder or \"Scalar\".")


class NetGraph(Net):
    """A net of layers connected by edges.

    NetGraph(layers, edges, Input=..., Output=..., **ports): layers a list (1-based positions)
    or a dict of names; edges pairs (src, dst) — a layer, or NetPort("x") for a graph port, or
    NetPort(layer, "port") for a layer's port such as an LSTM's "State" — or longer tuples for
    chains a → b → c. A list of sources, (["a", "b"], "cat"), feeds a port that takes a list of
    arrays (CatenateLayer's, TotalLayer's, ThreadingLayer's "Input") in order; several edges into
    such a port add to its list in the order given. Unconnected layer inputs become graph inputs;
    an unconsumed output becomes the graph output of its port's name ("Output"; "Loss" for a loss
    layer), several become "Output1", "Output2", .... Keyword options give a port's shape,
    encoder or decoder.

    >>> g = NetInitialize(NetGraph({"lin": LinearLayer(2), "soft": SoftmaxLayer()}, [("lin", "soft")], Input=3))
    >>> round(sum(g([1.0, 2.0, 3.0])), 6)
    1.0
    """

    OPTIONS = {"Input": Automatic, "Output": Automatic}  # and any other port name → shape or coder

    def __init__(self, layers, edges=(), **ports):
        who = type(self).__name__
        if isinstance(layers, dict):
            nodes = {}
            for key, layer in layers.items():
                if not isinstance(key, str) or not key or "." in key:
                    raise ConstructionError(
                        f"{who}: layer names must be non-empty strings without '.', but {key!r} was given."
                    )
                nodes[key] = _as_layer(layer, who, key)
        elif isinstance(layers, list | tuple):
            nodes = {i: _as_layer(layer, who, i) for i, layer in enumerate(layers, 1)}
        else:
            raise ConstructionError(f"{who}: layers must be a list or a dict, but was given {type(layers).__name__}.")
        if not nodes:
            raise ConstructionError(f"{who}: a net needs at least one layer.")
        self._nodes = nodes
        self._port_options = dict(ports)
        self._outer_types = {}  # port → the type the enclosing net feeds it (set by `infer`)
        self._edges = self._normalize(edges)
        self._user_edges = list(edges)
        self._build()

    # ---- topology ----------------------------------------------------------------------------
    def _endpoint(self, x, role: str):
        who = self.name
        if isinstance(x, NetPort):
            spec = x.spec
            if len(spec) == 1:
                if role == "src" and spec[0] in self._nodes:
                    raise ConstructionError(
                        f"{who}: {x!r} as the source of an edge names an input port of the graph, but "
                        f"{spec[0]!r} is a layer; write {spec[0]!r} for its output, or NetPort({spec[0]!r}, port) "
                        "for one of its ports."
                    )
                return (GRAPH, spec[0])
            if len(spec) != 2:
                raise ConstructionError(f"{who}: {x!r} in an edge must name one layer and one of its ports.")
            key, port = spec
            self._check_key(key)
            node = self._nodes[key]
            ports = (node.output_ports() if role == "src" else node.input_ports()) | node.state_ports()
            if port not in ports:
                raise ConstructionError(
                    f"{who}: layer {key!r} ({node.name}) has no {'output' if role == 'src' else 'input'} port "
                    f"{port!r}; its ports are {', '.join(repr(p) for p in ports)}."
                )
            return (key, port)
        self._check_key(x)
        node = self._nodes[x]
        ports = node.output_ports() if role == "src" else node.input_ports()
        if len(ports) != 1:
            raise ConstructionError(
                f"{who}: layer {x!r} has {len(ports)} {'output' if role == 'src' else 'input'} ports; name one "
                f"with NetPort({x!r}, port)."
            )
        return (x, next(iter(ports)))

    def _check_key(self, key):
        if isinstance(key, list):
            raise ConstructionError(f"{self.name}: a list of layers {key!r} can only be the source of an edge, "
                                    "the inputs of a layer that takes several.")
        if key not in self._nodes:
            raise ConstructionError(
                f"{self.name}: an edge refers to the layer {key!r}, but the layers are "
                f"{', '.join(repr(k) for k in self._nodes)}."
            )

    def _normalize(self, edges) -> list:
        out = []
        for e in edges:
            if not isinstance(e, tuple) or len(e) < 2:
                raise ConstructionError(f"{self.name}: an edge must be a pair (src, dst), but {e!r} was given.")
            for a, b in zip(e[:-1], e[1:]):
                srcs = a if isinstance(a, list) else [a]
                dst = self._endpoint(b, "dst")
                if not srcs:
                    raise ConstructionError(f"{self.name}: the edge {e!r} has an empty list of sources.")
                if len(srcs) > 1 and not self._list_port(dst):
                    raise ConstructionError(
                        f"{self.name}: {len(srcs)} sources feed {b!r}, but its port {dst[1]!r} takes one input."
                    )
                out.extend((self._endpoint(src, "src"), dst) for src in srcs)
        seen = {}
        for src, dst in out:
            if dst in seen and dst[0] != GRAPH and not self._list_port(dst):
                raise ConstructionError(f"{self.name}: port {dst[1]!r} of layer {dst[0]!r} is fed by two edges.")
            seen[dst] = src
        return out

    def _list_port(self, dst) -> bool:
        """Whether the endpoint is a layer's port that takes a list of arrays."""
        return dst[0] != GRAPH and isinstance(self._nodes[dst[0]].input_ports().get(dst[1]), ListType)

    def _topological_order(self) -> list:
        deps = {k: set() for k in self._nodes}
        for src, dst in self._edges:
            if src[0] != GRAPH and dst[0] != GRAPH:
                deps[dst[0]].add(src[0])
        order, done, visiting = [], set(), set()

        def visit(k, path):
            if k in done:
                return
            if k in visiting:
                cycle = " → ".join(repr(p) for p in [*path, k])
                raise ConstructionError(f"{self.name}: the edges form a cycle ({cycle}); a net must be acyclic.")
            visiting.add(k)
            for d in sorted(deps[k], key=list(self._nodes).index):
                visit(d, [*path, k])
            visiting.discard(k)
            done.add(k)
            order.append(k)

        for k in self._nodes:
            visit(k, [])
        return order

    # ---- inference -----------------------------------------------------------------------------
    def _build(self):
        declared = self._declare()
        order = self._topological_order()
        feeds, graph_out = self._wire(order)
        self._infer(order, feeds, graph_out, declared)

    def _declare(self) -> dict:
        """The port options → {port: declared type}; encoders, decoders and "Scalar" ports noted."""
        self.encoders, self.decoders, self._scalar = {}, {}, set()
        declared = {}
        for port, spec in self._port_options.items():
            t, enc, dec, scalar = _port_option(spec, self.name, port)
            declared[port] = t
            if enc is not None:
                self.encoders[port] = enc
            if dec is not None:
                self.decoders[port] = dec
            if scalar:
                self._scalar.add(port)
        declared.update(self._outer_types)
        return declared

    def _wire(self, order: list) -> tuple[dict, dict]:
        """({node: {port: src}} with state ports, {graph output: src}) from the edges."""
        feeds = {k: {} for k in self._nodes}
        consumed = set()
        graph_out = {}
        for src, dst in self._edges:
            if dst[0] == GRAPH:
                graph_out[dst[1]] = src
            elif self._list_port(dst):
                feeds[dst[0]].setdefault(dst[1], []).append(src)  # the sources of a list, in order
            else:
                feeds[dst[0]][dst[1]] = src
            consumed.add(src)
        # unconnected main inputs become graph inputs of the same name; main inputs come first
        for k, node in self._nodes.items():
            fed = feeds[k]
            feeds[k] = {p: fed.get(p, (GRAPH, p)) for p in node.input_ports()}
            feeds[k].update(fed)
        # every output nothing consumes is an output of the graph: named after its port ("Output",
        # a loss layer's "Loss") if it is the only one, else "Output1", "Output2", ... in the order
        # of the layers
        sinks = [(k, p) for k in order for p in self._nodes[k].output_ports() if (k, p) not in consumed]
        if len(sinks) == 1 and sinks[0][1] not in graph_out:
            graph_out = {sinks[0][1]: sinks[0], **graph_out}
        elif sinks:
            names = (f"Output{i}" for i in range(1, len(sinks) + len(graph_out) + 1))
            free = [name for name in names if name not in graph_out]
            graph_out = {**dict(zip(free, sinks)), **graph_out}
        return feeds, graph_out

    def _infer(self, order: list, feeds: dict, graph_out: dict, declared: dict) -> None:
        """Port types through every node in topological order; sets the graph's ports."""
        who = self.name
        graph_in_types: dict = {}
        for k in self._nodes:
            for src in _sources(feeds[k].values()):
                if src[0] == GRAPH:
                    graph_in_types.setdefault(src[1], declared.get(src[1]) or ANY)
        for port in declared:
            if port not in graph_in_types and port not in graph_out:
                raise ConstructionError(
                    f"{who}: the option {port}= names no port of the net; its input ports are "
                    f"{', '.join(repr(p) for p in graph_in_types)} and output ports {', '.join(map(repr, graph_out))}."
                )
        out_types = {}
        nodes = dict(self._nodes)

        def type_of(src):
            return graph_in_types[src[1]] if src[0] == GRAPH else out_types[src]

        for k in order:
            node = nodes[k]
            main, states = {}, {}
            for port, src in feeds[k].items():
                t = ListType(tuple(type_of(s) for s in src)) if isinstance(src, list) else type_of(src)
                (states if port in node.state_ports() else main)[port] = (t, src)
            try:
                node = node.infer({p: t for p, (t, _) in main.items()})
            except ShapeError as e:
                srcs = ", ".join(self._src_text(s) for s in _sources(s for _, s in main.values()))
                raise ShapeError(f"{who}: cannot connect {srcs} to layer {k!r}: {e}") from None
            nodes[k] = node
            for port, (_, src) in main.items():
                want = node.input_ports()[port]
                pairs = zip(src, want.items or [ANY] * len(src)) if isinstance(src, list) else [(src, want)]
                for s, w in pairs:
                    if s[0] == GRAPH:
                        graph_in_types[s[1]] = unify(graph_in_types[s[1]], w, f'{who} port "{s[1]}"',
                                                     f"layer {k!r} port {port!r}")
            for port, (t, src) in states.items():
                u = unify(t, node.state_ports()[port], self._src_text(src), f"layer {k!r} state port {port!r}")
                if src[0] == GRAPH:
                    graph_in_types[src[1]] = u
            for port, t in {**node.output_ports(), **node.state_ports()}.items():
                out_types[(k, port)] = t
        # an encoder on a layer's input that a graph input feeds is that graph port's encoder, as
        # Wolfram lifts it: NetChain([LongShortTermMemoryLayer(3, Input=NetEncoder(...)), ...]) takes strings
        for k in order:
            for port, src in feeds[k].items():
                enc = None if isinstance(src, list) else nodes[k].encoders.get(port)
                if enc is not None and src[0] == GRAPH and src[1] not in self.encoders:
                    self.encoders[src[1]] = enc
        self._nodes, self._feeds, self._order, self._graph_out = nodes, feeds, order, graph_out
        self._in = graph_in_types
        self._out = {}
        for port, src in graph_out.items():
            t = graph_in_types[src[1]] if src[0] == GRAPH else out_types[src]
            if port in self._scalar:
                if t.dims is not None and t.dims not in ((1,), (None,), ()):
                    raise ShapeError(f'{who}: Output="Scalar" needs a size-1 vector or a number, but the net '
                                     f"produces {describe(t)}. End the net with LinearLayer(1).")
                t = SCALAR
            elif port in self.decoders:  # a decoder reads vectors, or sequences of them, of its size
                t = self.decoders[port].accept(t, self._src_text(src))
            elif declared.get(port) is not None:
                t = unify(t, declared[port], f"{self._src_text(src)}", f'the {port}= option')
            self._out[port] = t

    def _src_text(self, src) -> str:
        if isinstance(src, list):
            return ", ".join(self._src_text(s) for s in src)
        if src[0] == GRAPH:
            return f'the net\'s input port "{src[1]}"'
        return f"layer {src[0]!r} ({self._nodes[src[0]].name}) port {src[1]!r}"

    # ---- Net interface ---------------------------------------------------------------------------
    def input_ports(self) -> dict:
        return dict(self._in)

    def output_ports(self) -> dict:
        return dict(self._out)

    def leaves(self) -> list:
        return [((k,) + pos, leaf) for k, node in self._nodes.items() for pos, leaf in node.leaves()]

    def backward_positions(self) -> list:
        return [(k,) + pos for k, node in self._nodes.items() for pos in node.backward_positions()]

    def parts(self) -> list:
        return list(self._nodes.items())

    def wiring(self) -> tuple[list, list]:
        nodes = [(k, self._nodes[k]) for k in self._order]
        edges = [(s, (k, port)) for k in self._order for port, src in self._feeds[k].items()
                 for s in (src if isinstance(src, list) else [src])]  # a list port's sources one by one
        edges += [(src, (GRAPH, port)) for port, src in self._graph_out.items()]
        return nodes, edges

    def output_leaf(self, port: str):
        src = self._graph_out[port]
        return None if src[0] == GRAPH else self._nodes[src[0]].output_leaf(src[1])

    def map_leaves(self, fn) -> Net:
        new = self._uncached_copy()
        new._nodes = {k: node.map_leaves(lambda pos, leaf, k=k: fn((k,) + pos, leaf))
                      for k, node in self._nodes.items()}
        return new

    def infer(self, inputs: dict) -> Net:
        changed = {p: t for p, t in inputs.items() if p in self._in and t != self._in[p]}
        if not changed:
            return self
        outer = dict(self._outer_types)
        for p, t in changed.items():
            if p not in self.encoders:
                outer[p] = unify(t, self._in[p], "the preceding layer", f'{self.name} port "{p}"')
        new = self._uncached_copy()
        new._outer_types = outer  # kept apart from the port options, so InputForm shows what was given
        new._build()
        return new

    def build(self, trainable: bool) -> torch.nn.Module:
        return GraphModule(self, trainable)

    # ---- parts: net[2], net["name"], net[-1], net[2:3] (a NetTake), len(net), iteration --------
    def __getitem__(self, spec):
        from .edit import NetTake, resolve

        if isinstance(spec, slice):
            return NetTake(self, spec)
        return self._nodes[resolve(self, spec, self.name)]

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self):
        return iter(self._nodes.values())

    def extract(self, spec):
        if not isinstance(spec, tuple):
            spec = (spec,)
        head, rest = spec[0], spec[1:]
        if head not in self._nodes:
            raise ShapeError(
                f"NetExtract: {head!r} is not a layer of the {self.name}; its layers are "
                f"{', '.join(repr(k) for k in self._nodes)}."
            )
        node = self._nodes[head]
        return node if not rest else node.extract(rest if len(rest) > 1 else rest[0])

    def input_form(self) -> str:
        layers = self._layers_code()
        edges = ", ".join(_edge_code(e) for e in self._user_edges)
        opts = "".join(f", {p}={value_code(v)}" for p, v in self._port_options.items())
        return f"NetGraph({layers}, [{edges}]{opts})"

    def _layers_code(self) -> str:
        if all(isinstance(k, int) for k in self._nodes):
            return "[" + ", ".join(n.input_form() for n in self._nodes.values()) + "]"
        return "{" + ", ".join(f"{k!r}: {n.input_form()}" for k, n in self._nodes.items()) + "}"

    def __repr__(self) -> str:
        state = "initialized" if self.initialized() else "uninitialized"
        names = ", ".join(f"{k}: {display.short_code(n)}" for k, n in self._nodes.items())
        return f"{self.name}[{names}]  <{state}; {display.ports_text(self)}; {display.arrays_text(self)}>"


def _sources(feeds) -> list:
    """The endpoints of feeds, a list port's sources one by one."""
    return [s for src in feeds for s in (src if isinstance(src, list) else [src])]


def _edge_code(e) -> str:
    def one(x):
        if isinstance(x, list):
            return "[" + ", ".join(one(y) for y in x) + "]"
        return repr(x)

    return "(" + ", ".join(one(x) for x in e) + ")"


class NetChain(NetGraph):
    """Layers applied one after another: the output of each feeds the input of the next.

    NetChain(layers, Input=..., Output=...): layers a list (1-based positions) or a dict of
    names; an int n stands for LinearLayer(n). Input may be a shape or a NetEncoder; Output a
    shape, a NetDecoder, or "Scalar".

    >>> chain = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    >>> len(chain([[1, 2], [3, 4]]))
    3
    """

    OPTIONS = {"Input": Automatic, "Output": Automatic}

    def __init__(self, layers, **options):
        O.known(options, self.OPTIONS, "NetChain")
        if not isinstance(layers, list | tuple | dict):
            raise ConstructionError(f"NetChain: layers must be a list or a dict of layers, but was given "
                                    f"{type(layers).__name__}; write NetChain([layer, ...]).")
        keys = list(layers) if isinstance(layers, dict) else list(range(1, len(layers) + 1))
        edges = [tuple(keys)] if len(keys) > 1 else []
        ports = {p: v for p, v in options.items() if v is not Automatic and v is not None}
        super().__init__(layers, edges, **ports)

    def input_form(self) -> str:
        opts = "".join(f", {p}={value_code(v)}" for p, v in self._port_options.items())
        return f"NetChain({self._layers_code()}{opts})"


class GraphModule(torch.nn.Module):
    """Runs a NetGraph: each node's module in topological order, values and states passed by
    edges (see `runtime` for the call)."""

    def __init__(self, graph: NetGraph, trainable: bool):
        super().__init__()
        read = set(_sources(src for feeds in graph._feeds.values() for src in feeds.values()))
        read |= set(graph._graph_out.values())
        plan = []
        for k in graph._order:
            node = graph._nodes[k]
            self.add_module(str(k), node.build(trainable))
            state_ports = node.state_ports()
            main = tuple((p, tuple(src) if isinstance(src, list) else src)
                         for p, src in graph._feeds[k].items() if p not in state_ports)
            fed_states = tuple((node.state_port_position(p), src) for p, src in graph._feeds[k].items()
                               if p in state_ports)
            read_states = tuple((node.state_port_position(p), p) for p in state_ports if (k, p) in read)
            exact = bool(read_states)  # an edge reads a final state
            plan.append((str(k), k, main, fed_states, read_states, exact))
        self.plan = plan
        self.outputs = tuple(graph._graph_out.items())
        self.scalar = frozenset(graph._scalar)

    def forward(self, inputs: dict, states: dict, ctx) -> tuple[dict, dict]:
        env = {}
        final = {}
        modules = self._modules

        def value(src):
            return inputs[src[1]] if src[0] == GRAPH else env[src]

        for name, key, main, fed_states, read_states, exact in self.plan:
            # a list port's sources are a tuple of endpoints (an endpoint is a pair of strings or ints)
            node_in = {port: [value(s) for s in src] if isinstance(src[0], tuple) else value(src)
                       for port, src in main}
            # states of this node (and, for a nested net, of its layers); an edge-fed state wins
            node_states = {pos[1:]: v for pos, v in states.items() if pos[0] == key}
            for pos, src in fed_states:
                node_states[pos] = value(src)
            out, node_final = modules[name](node_in, node_states, ctx._replace(exact_states=True) if exact else ctx)
            for port, v in out.items():
                env[(key, port)] = v
            for pos, v in node_final.items():
                final[(key, *pos)] = v
            for pos, port in read_states:
                env[(key, port)] = node_final[pos]
        result = {}
        for port, src in self.outputs:
            v = value(src)
            if port in self.scalar:
                v = v.reshape(v.shape[0])
            result[port] = v
        return result, final
