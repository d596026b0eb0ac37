"""The Net protocol: what every layer and container declares, and nothing else. Containers
call these methods only; user data in and out of a net is `evaluate`'s concern.

A net is a value: nothing here changes a net after construction.
"""

from __future__ import annotations

import copy

import torch

from .errors import InitializationError, OptionError
from .symbols import All


class NetPort:
    """NetPort("x") names a graph port; NetPort(layer, "State") a port of a layer in a graph;
    NetPort(All, "States") every recurrent state of a net.

    >>> NetPort(1, "State")
    NetPort(1, 'State')
    """

    __slots__ = ("spec",)

    def __init__(self, *spec):
        if not spec:
            raise OptionError("NetPort: give a port name, or a layer position followed by a port name.")
        self.spec = spec

    def __eq__(self, other) -> bool:
        return isinstance(other, NetPort) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(("NetPort", self.spec))

    def __repr__(self) -> str:
        return f"NetPort({', '.join(repr(s) for s in self.spec)})"

    @property
    def all_states(self) -> bool:
        return self.spec == (All, "States")


class Net:
    """Base of every layer and container.

    Ports are {name: ArrayType}. A position is a tuple of container keys (() for a layer
    itself); a state position adds the state port: (1, "State"). `encoders` and `decoders`
    map port names to the NetEncoder / NetDecoder attached there."""

    encoders: dict = {}
    decoders: dict = {}

    def _repr_html_(self) -> str:
        """The summary in a notebook: ports with encoders and decoders, layers, arrays."""
        from ..show.display import html_of

        return html_of(self)

    # ---- the protocol ---------------------------------------------------------------------------
    def input_ports(self) -> dict:
        raise NotImplementedError

    def output_ports(self) -> dict:
        raise NotImplementedError

    def state_ports(self) -> dict:
        """Recurrent state ports (name → type) of this net itself; containers have none, an
        operator those of the nets it holds, renamed (a NetBidirectionalOperator's "ForwardState")."""
        return {}

    def state_port_position(self, port: str) -> tuple:
        """The position, inside this net, of the state behind its state port `port` (its own
        port for a layer: ("State",); ("ForwardNet", "State") for an operator's "ForwardState")."""
        return (port,)

    def backward_positions(self) -> list:
        """Positions of the sub-nets that read their sequences from the end (a
        NetBidirectionalOperator's), whose states cannot carry over from one evaluation to the next."""
        return []

    def leaves(self) -> list:
        """[(position, layer)] of every layer that is not a container."""
        raise NotImplementedError

    def map_leaves(self, fn) -> Net:
        """A new net with each leaf replaced by fn(position, leaf)."""
        raise NotImplementedError

    def output_leaf(self, port: str):
        """The layer that produces the output port (None if a graph input passes straight through)."""
        raise NotImplementedError

    def infer(self, inputs: dict) -> Net:
        """This net with its input port types unified with `inputs` ({port: ArrayType}), the
        rest following. Raises ShapeError on a conflict."""
        raise NotImplementedError

    def input_form(self) -> str:
        """Python code that rebuilds the net, arrays included."""
        raise NotImplementedError

    def extract(self, spec):
        """NetExtract(net, spec): an array (numpy), or a layer or sub-net."""
        raise NotImplementedError

    def build(self, trainable: bool) -> torch.nn.Module:
        """The compiled module (see `runtime`) whose parameters are this net's arrays: shared
        storage when not trainable, fresh copies when trainable."""
        raise NotImplementedError

    # ---- what a summary shows (defaults: a net that holds no other nets) -----------------------
    def parts(self) -> list:
        """[(key, net)] of the nets this net holds itself, in the order they were given (a
        graph's layers, an operator's "Net" or "ForwardNet" and "BackwardNet"); none for a layer."""
        return []

    def wiring(self) -> tuple[list, list]:
        """This net as boxes and arrows: ([(key, net)] in the order they are evaluated,
        [(source, destination)]), an endpoint (key, port) or ("graph", port) for this net's own
        ports. Anything but a graph is one box, keyed 1, between its inputs and outputs."""
        edges = [(("graph", p), (1, p)) for p in self.input_ports()]
        edges += [((1, p), ("graph", p)) for p in self.output_ports()]
        return [(1, self)], edges

    def summary_code(self) -> str:
        """The headline of this net in a summary: a layer's type with its size and options, a
        container's type."""
        return self.name

    def short_code(self) -> str:
        """This net as a part of a container in a one-line summary: as `summary_code`, an
        operator with what it holds."""
        return self.summary_code()

    # ---- derived from the protocol ------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def arrays(self) -> dict:
        """{position + (array name,): tensor or None} over every leaf."""
        return {pos + (a,): t for pos, leaf in self.leaves() for a, t in leaf._arrays.items()}

    def state_positions(self) -> dict:
        """{position + (state port,): type} of every recurrent state in the net."""
        return {pos + (s,): t for pos, leaf in self.leaves() for s, t in leaf.state_ports().items()}

    def with_arrays(self, arrays: dict) -> Net:
        """A new net whose arrays are `arrays` ({(position, array name): tensor}, copied to
        float32 on the CPU); arrays not named keep their values."""
        def fill(pos, leaf):
            own = {a: arrays[(pos, a)].detach().to("cpu", torch.float32).clone()
                   for a in leaf._arrays if (pos, a) in arrays}
            return leaf._with_arrays(own) if own else leaf

        return self.map_leaves(fill)

    def _uncached_copy(self) -> Net:
        """A shallow copy without this net's caches (its compiled modules, its input readers),
        for a new net to be made from it."""
        new = copy.copy(self)
        new.__dict__.pop("_module_cache", None)
        new.__dict__.pop("_reader_cache", None)
        return new

    def missing_arrays(self) -> list:
        return [k for k, v in self.arrays().items() if v is None]

    def initialized(self) -> bool:
        return not self.missing_arrays()

    def _require_initialized(self) -> None:
        missing = self.missing_arrays()
        if missing:
            names = ", ".join(position_text(m) for m in missing[:4]) + (" ..." if len(missing) > 4 else "")
            raise InitializationError(
                f"{self.name}: the net is not initialized: array {names} "
                f"{'is' if len(missing) == 1 else 'are'} missing. Use NetInitialize(net) to give "
                "every missing array initial values, or pass the arrays as options."
            )

    def __call__(self, data, port=None, **options):
        from ..nets.evaluate import evaluate

        return evaluate(self, data, port, options).result


def position_text(key: tuple) -> str:
    return '"' + key[-1] + '"' + (f" of layer {'/'.join(str(p) for p in key[:-1])}" if len(key) > 1 else "")
