"""Operators: nets that hold other nets and apply them in a pattern. NetMapOperator applies a
net to every element of a sequence; NetBidirectionalOperator applies one net to a sequence and
another to the sequence reversed.

An operator's nets are reached by Wolfram's keys: NetMapOperator's "Net",
NetBidirectionalOperator's "ForwardNet" and "BackwardNet"; they are the first key of the
positions of their layers and arrays ((1, "Net", "Weights") in a chain) and the names of the
compiled submodules.
"""

from __future__ import annotations

import torch

from ..core import options as O
from ..core.data import Seq
from ..core.errors import InputError, NotSupportedError, OptionError, ShapeError, where
from ..core.net import Net
from ..core.shapes import ANY, VARYING, ArrayType, describe, unify
from ..core.symbols import Automatic
from ..layers.base import Layer, value_code
from ..layers.sequence import _sequence_type
from ..show import display


def _short(net: Net) -> str:
    """A net's constructor without its arrays, for repr."""
    return f"{net.name}({net._option_code()})" if isinstance(net, Layer) else f"{net.name}[...]"


def _one_port(net: Net, who: str, role: str, which: str) -> str:
    ports = net.input_ports() if which == "input" else net.output_ports()
    if len(ports) != 1:
        raise ShapeError(f"{who}: the {role} must have one {which} port, but {net.name} has "
                         f"{len(ports)} ({', '.join(repr(p) for p in ports)}).")
    return next(iter(ports))


class Operator(Net):
    """What the operators share: the nets they hold (`_nets`, key → net), the constructor's
    arguments as given (`_args`, rebuilt from the nets they hold) and options (`_given`)."""

    OPTIONS = {"Input": Automatic}

    def __init__(self, options: dict):
        O.known(options, self.OPTIONS, self.name)
        self._given = dict(options)
        self.encoders, self.decoders = {}, {}
        self._in: dict = {}
        self._out: dict = {}

    @staticmethod
    def _check_net(net, who: str, role: str) -> Net:
        if not isinstance(net, Net):
            raise OptionError(f"{who}: the {role} must be a net or layer, but was given {net!r}.")
        if net.encoders or net.decoders:
            ports = ", ".join(repr(p) for p in (*net.encoders, *net.decoders))
            raise NotSupportedError(f"{who}: the {role} has an encoder or decoder (port {ports}); put encoders on "
                                    "the ports of the operator or of the net around it instead.")
        return net

    # ---- Net protocol ----
    def input_ports(self) -> dict:
        return dict(self._in)

    def output_ports(self) -> dict:
        return dict(self._out)

    def leaves(self) -> list:
        return [((key,) + pos, leaf) for key, net in self._nets.items() for pos, leaf in net.leaves()]

    def map_leaves(self, fn) -> Net:
        new = self._copy()
        new._nets = {key: net.map_leaves(lambda pos, leaf, key=key: fn((key,) + pos, leaf))
                     for key, net in self._nets.items()}
        new._sync()
        return new

    def backward_positions(self) -> list:
        return [(key,) + pos for key, net in self._nets.items() for pos in net.backward_positions()]

    def parts(self) -> list:
        return list(self._nets.items())

    def short_code(self) -> str:
        return f"{self.name}({self._short_args()})"

    def extract(self, spec):
        if not isinstance(spec, tuple):
            spec = (spec,)
        head, rest = spec[0], spec[1:]
        if head not in self._nets:
            raise OptionError(f"NetExtract: {head!r} is not part of the {self.name}; its nets are "
                              f"{', '.join(repr(k) for k in self._nets)}.")
        net = self._nets[head]
        return net if not rest else net.extract(rest if len(rest) > 1 else rest[0])

    def input_form(self) -> str:
        parts = [value_code(a) for a in self._args] + [f"{k}={value_code(v)}" for k, v in self._given.items()]
        return f"{self.name}({', '.join(parts)})"

    def __repr__(self) -> str:
        state = "initialized" if self.initialized() else "uninitialized"
        return f"{self.name}({self._short_args()})  <{state}; {display.ports_text(self)}; {display.arrays_text(self)}>"

    # ---- helpers ----
    def _copy(self) -> Operator:
        new = self._uncached_copy()
        new._nets = dict(self._nets)
        return new

    def _sync(self) -> None:
        """Set `_args` and the ports from the nets held."""
        raise NotImplementedError

    def _short_args(self) -> str:
        raise NotImplementedError


# ---- NetMapOperator -------------------------------------------------------------------------------
def _mapped(t: ArrayType, length) -> ArrayType:
    """The type of a sequence of elements of type t."""
    return ANY if t.dims is None else ArrayType((length, *t.dims), t.integer, t.levels)


class NetMapOperator(Operator):
    """NetMapOperator(net) applies net to every element of a sequence: a sequence x_1..x_T in,
    net(x_1)..net(x_T) out, each port of net with a sequence dimension added (the length of a
    sequence in a ragged batch is kept). net's arrays are the operator's, at position "Net".

    Ports: those of net, each a sequence (T×...) of what net takes or gives.
    Options: Input (the input sequence's shape, e.g. ("Varying", 8)).

    >>> NetChain([LongShortTermMemoryLayer(8), NetMapOperator(LinearLayer(5)), SoftmaxLayer()])  # doctest: +SKIP
    """

    def __init__(self, net, **options):
        super().__init__(options)
        who = self.name
        net = self._check_net(net, who, "net it maps")
        if net.state_positions():
            raise NotSupportedError(f"{who}: the net it maps has recurrent states ({net.name}); mapping a recurrent "
                                    "net over the elements of a sequence is not supported.")
        self._nets = {"Net": net}
        self._length = VARYING
        spec = options.get("Input", Automatic)
        if spec is not Automatic and spec is not None:
            if "Input" not in net.input_ports():
                raise OptionError(f'{who}: the option Input names no port of the mapped net; its input ports are '
                                  f"{', '.join(repr(p) for p in net.input_ports())}.")
            t = _sequence_type(self, spec)
            if self.encoders:
                raise NotSupportedError(f"{who}: an encoder on the operator's input is not supported; put it on the "
                                        "net around the operator.")
            self._length = t.dims[0]
            self._nets["Net"] = self._inner_infer({"Input": ArrayType(t.dims[1:], t.integer, t.levels)})
        self._sync()

    @property
    def net(self) -> Net:
        return self._nets["Net"]

    def _sync(self) -> None:
        net = self._nets["Net"]
        self._args = (net,)
        self._in = {p: _mapped(t, self._length) for p, t in net.input_ports().items()}
        self._out = {p: _mapped(t, self._length) for p, t in net.output_ports().items()}

    def _short_args(self) -> str:
        return _short(self._nets["Net"])

    def _inner_infer(self, types: dict) -> Net:
        try:
            return self._nets["Net"].infer(types)
        except ShapeError as e:
            raise ShapeError(f"{self.name}: the mapped net cannot take the elements of the input sequence: "
                             f"{e}") from None

    def output_leaf(self, port: str):
        return self._nets["Net"].output_leaf(port)

    def infer(self, inputs: dict) -> Net:
        length = self._length
        elements = {}
        for p, t in inputs.items():
            if p not in self._in or t.dims is None:
                continue
            if len(t.dims) < 1:
                raise ShapeError(f"{where(self.name, p)}the operator maps a net over the elements of a sequence, "
                                 f"but its input is {describe(t)}.")
            d = t.dims[0]
            if length == VARYING or length is None:
                length = d if d is not None else length
            elif d not in (VARYING, None, length):
                raise ShapeError(f"{where(self.name, p)}the input is {describe(t)}, but the operator's sequences have "
                                 f"length {length}.")
            elements[p] = ArrayType(t.dims[1:], t.integer, t.levels)
        inner = self._inner_infer(elements)
        if inner is self._nets["Net"] and length == self._length:
            return self
        new = self._copy()
        new._nets["Net"], new._length = inner, length
        new._sync()
        return new

    def build(self, trainable: bool) -> torch.nn.Module:
        return MapModule(self, trainable)


class MapModule(torch.nn.Module):
    """Runs a NetMapOperator: the sequences' elements (B, T, ...) as one batch (B·T, ...)
    through the mapped net's module, and back."""

    def __init__(self, op: NetMapOperator, trainable: bool):
        super().__init__()
        self.who = op.name
        self.add_module("Net", op.net.build(trainable))

    def forward(self, inputs: dict, states: dict, ctx) -> tuple[dict, dict]:
        datas, lengths, seq = _same_lengths(inputs, self.who)
        first = next(iter(datas.values()))
        B, T = first.shape[:2]
        out, _ = self._modules["Net"]({p: d.reshape(B * T, *d.shape[2:]) for p, d in datas.items()}, {}, ctx)
        mask = None if lengths is None else Seq(first, lengths).mask()  # (B, T)
        result = {}
        for p, y in out.items():
            y = y.reshape(B, T, *y.shape[1:])
            if mask is not None:  # the padding stays zero
                y = torch.where(mask.view(B, T, *(1,) * (y.ndim - 2)), y, torch.zeros((), dtype=y.dtype,
                                                                                        device=y.device))
            result[p] = Seq(y, lengths) if seq else y
        return result, {}


def _same_lengths(values: dict, who: str) -> tuple[dict, torch.Tensor | None, bool]:
    """{port: tensor (B, T, ...)} of one T for values (Seqs or tensors) of the same lengths, their
    lengths ((B,) or None) and whether they are Seqs; an InputError if the lengths differ."""
    seq = any(isinstance(v, Seq) for v in values.values())
    datas = {p: v.data if isinstance(v, Seq) else v for p, v in values.items()}
    if len(values) == 1:
        v = next(iter(values.values()))
        return datas, v.lengths if isinstance(v, Seq) else None, seq
    lengths = {p: v.lengths if isinstance(v, Seq) and v.lengths is not None
               else torch.full((datas[p].shape[0],), datas[p].shape[1]) for p, v in values.items()}
    (p0, l0), *rest = lengths.items()
    for p, ln in rest:
        if not torch.equal(ln, l0):
            raise InputError(f'{where(who)}the sequences given to ports "{p0}" and "{p}" have different lengths; the '
                             "operator maps its net over sequences of the same length.")
    T = int(l0.max())
    datas = {p: d[:, :T] for p, d in datas.items()}
    ragged = bool((l0 != T).any())
    return datas, l0 if ragged else None, seq


# ---- NetBidirectionalOperator ----------------------------------------------------------------------
AGGREGATORS = ("Catenate", "Total", "Mean")
DIRECTIONS = (("ForwardNet", "Forward"), ("BackwardNet", "Backward"))


class NetBidirectionalOperator(Operator):
    """NetBidirectionalOperator(net) applies net to a sequence and a copy of net (its own arrays,
    trained independently) to the sequence reversed, each sequence of a ragged batch within its
    own length; the backward output, reversed back when it is a sequence, is joined with the
    forward one step by step. NetBidirectionalOperator((forward, backward)) uses two nets;
    NetBidirectionalOperator(nets, aggregator): "Catenate" (the default: the forward vector
    then the backward one, size n_f + n_b), "Total" (their sum) or "Mean".

    Ports: "Input" (a sequence, T×k), "Output" (T×(n_f+n_b) for "Catenate", T×n for "Total" and
    "Mean"); state ports: each net's, prefixed by "Forward" and "Backward" ("ForwardState",
    "BackwardCellState", ...). The backward net's initial state is the one before it reads the
    last element, its final state the one after the first.
    NetExtract(op, "ForwardNet"), NetExtract(op, "BackwardNet") give the two nets.
    Options: Input (a sequence shape such as ("Varying", 2), or a NetEncoder).

    >>> bi = NetInitialize(NetBidirectionalOperator(LongShortTermMemoryLayer(3), Input=("Varying", 2)))
    >>> len(bi([[1, 2], [3, 4]])[0])
    6
    """

    def __init__(self, net, aggregator="Catenate", **options):
        super().__init__(options)
        who = self.name
        if isinstance(net, tuple | list):
            if len(net) != 2:
                raise OptionError(f"{who}: give one net, or a pair (forward net, backward net), but was given "
                                  f"{len(net)} nets.")
            forward, backward = net
        else:
            forward = backward = net
        forward = self._check_net(forward, who, "forward net")
        backward = self._check_net(backward, who, "backward net")
        if not isinstance(aggregator, str) or aggregator not in AGGREGATORS:
            raise OptionError(f"{who}: the aggregator must be one of {', '.join(repr(a) for a in AGGREGATORS)}, but "
                              f"was given {aggregator!r}.")
        self.aggregator = aggregator
        self._pair = isinstance(net, tuple | list)
        for role, n in (("forward net", forward), ("backward net", backward)):
            _one_port(n, who, role, "input")
            _one_port(n, who, role, "output")
        self._nets = {"ForwardNet": forward, "BackwardNet": backward}
        spec = options.get("Input", Automatic)
        self._in = {"Input": ANY}
        if spec is not Automatic and spec is not None:
            self._in = {"Input": _sequence_type(self, spec)}
        self._nets = self._nets_for(self._in["Input"])
        self._sync()

    @property
    def forward_net(self) -> Net:
        return self._nets["ForwardNet"]

    @property
    def backward_net(self) -> Net:
        return self._nets["BackwardNet"]

    def _nets_for(self, t: ArrayType) -> dict:
        """The two nets with their input ports unified with t."""
        if t.dims is None:
            return self._nets
        if len(t.dims) < 1:
            raise ShapeError(f'{where(self.name, "Input")}the operator takes a sequence, but its input is '
                             f"{describe(t)}.")
        new = {}
        for key, _ in DIRECTIONS:
            net = self._nets[key]
            if key == "BackwardNet" and net is self._nets["ForwardNet"]:
                new[key] = new["ForwardNet"]  # one net given: one inferred net, copied by position
                continue
            port = next(iter(net.input_ports()))
            try:
                new[key] = net.infer({port: t})
            except ShapeError as e:
                raise ShapeError(f"{self.name}: the {key[:-3].lower()} net cannot take the input: {e}") from None
        return new

    def _sync(self) -> None:
        who = self.name
        forward, backward = self._nets["ForwardNet"], self._nets["BackwardNet"]
        tf, tb = next(iter(forward.input_ports().values())), next(iter(backward.input_ports().values()))
        try:
            t = unify(tf, tb, "the forward net's input", "the backward net's input")
        except ShapeError:
            raise ShapeError(f"{who}: the forward net takes {describe(tf)}, but the backward net takes {describe(tb)}; "
                             "both must read the same sequences.") from None
        t = unify(t, self._in.get("Input", ANY), "the nets' input", f'{who} port "Input"')
        if t.dims is not None and len(t.dims) < 1:
            raise ShapeError(f'{where(who, "Input")}the operator takes a sequence, but its nets take {describe(t)}.')
        if t != tf or t != tb:
            self._nets = self._nets_for(t)
            forward, backward = self._nets["ForwardNet"], self._nets["BackwardNet"]
        self._in = {"Input": t}
        of, ob = next(iter(forward.output_ports().values())), next(iter(backward.output_ports().values()))
        self._sequence_out = self._is_sequence(of) or self._is_sequence(ob)
        self._out = {"Output": self._joined(of, ob)}
        self._states = {f"{prefix}{p}": (key, p, t) for key, prefix in DIRECTIONS
                        for p, t in self._nets[key].state_ports().items()}
        self._args = (forward,) if forward is backward and not self._pair else ((forward, backward),)
        if self.aggregator != "Catenate":
            self._args += (self.aggregator,)

    def _is_sequence(self, out: ArrayType) -> bool:
        """Whether a net's output is a sequence (reversed back for the backward net) or one array."""
        if out.dims is None:
            return True
        length = self._in["Input"].dims[0] if self._in["Input"].dims else VARYING
        return bool(out.dims) and (out.dims[0] == VARYING or (len(out.dims) >= 2 and out.dims[0] == length))

    def _joined(self, of: ArrayType, ob: ArrayType) -> ArrayType:
        who = self.name
        if of.dims is None or ob.dims is None:
            return ANY
        if self.aggregator != "Catenate":
            clash = any(a is not None and b is not None and a != b for a, b in zip(of.dims, ob.dims))
            if clash or len(of.dims) != len(ob.dims):
                raise ShapeError(f'{who}: with "{self.aggregator}" the forward and backward nets must give outputs of '
                                 f"the same dimensions, but the forward net gives {describe(of)} and the backward net "
                                 f"{describe(ob)}.")
            return unify(of, ob, "the forward net", "the backward net")
        axis = 1 if self._sequence_out else 0  # the element's first level, or the array's
        if len(of.dims) <= axis or len(ob.dims) != len(of.dims):
            raise ShapeError(f"{who}: the forward net gives {describe(of)} and the backward net {describe(ob)}; "
                             '"Catenate" joins vectors (or arrays of the same rank), element by element.')
        dims = []
        for a, (d, e) in enumerate(zip(of.dims, ob.dims)):
            if a == axis:
                dims.append(None if d is None or e is None else d + e)
            elif d is None or e is None or d == e:
                dims.append(d if d is not None else e)
            else:
                raise ShapeError(f"{who}: the forward net gives {describe(of)} and the backward net {describe(ob)}; "
                                 "their elements can be catenated only if their other dimensions agree.")
        return ArrayType(tuple(dims))

    def _short_args(self) -> str:
        forward, backward = self._nets["ForwardNet"], self._nets["BackwardNet"]
        nets = _short(forward) if self._args[0] is forward else f"({_short(forward)}, {_short(backward)})"
        return nets + (f", {self.aggregator!r}" if self.aggregator != "Catenate" else "")

    def state_ports(self) -> dict:
        return {name: t for name, (_, _, t) in self._states.items()}

    def state_port_position(self, port: str) -> tuple:
        key, inner, _ = self._states[port]
        return (key,) + self._nets[key].state_port_position(inner)

    def backward_positions(self) -> list:
        return [()] + super().backward_positions()

    def output_leaf(self, port: str):
        return None

    def infer(self, inputs: dict) -> Net:
        t = inputs.get("Input")
        if t is None or t.dims is None or t == self._in["Input"]:
            return self
        if len(t.dims) < 1:
            raise ShapeError(f'{where(self.name, "Input")}the operator takes a sequence, but its input is '
                             f"{describe(t)}.")
        t = unify(t, self._in["Input"], "the preceding layer", f'{self.name} port "Input"')
        new = self._copy()
        new._nets = self._nets_for(t)
        new._in = {"Input": t}
        new._sync()
        return new

    def build(self, trainable: bool) -> torch.nn.Module:
        return BidirectionalModule(self, trainable)


def _flip(x):
    return x.flip() if isinstance(x, Seq) else x.flip(1)


class BidirectionalModule(torch.nn.Module):
    """Runs a NetBidirectionalOperator: the forward net on the input, the backward net on the
    input reversed within each length, the backward output reversed back, the two joined."""

    def __init__(self, op: NetBidirectionalOperator, trainable: bool):
        super().__init__()
        self.who = op.name
        self.aggregator = op.aggregator
        self.sequence_out = op._sequence_out
        self.ports = {}
        for key, _ in DIRECTIONS:
            net = op._nets[key]
            self.add_module(key, net.build(trainable))
            self.ports[key] = (next(iter(net.input_ports())), next(iter(net.output_ports())))

    def forward(self, inputs: dict, states: dict, ctx) -> tuple[dict, dict]:
        x = inputs["Input"]
        outs, final = {}, {}
        for key, _ in DIRECTIONS:
            port_in, port_out = self.ports[key]
            own = {pos[1:]: v for pos, v in states.items() if pos[0] == key}
            y, s = self._modules[key]({port_in: x if key == "ForwardNet" else _flip(x)}, own, ctx)
            y = y[port_out]
            outs[key] = _flip(y) if key == "BackwardNet" and self._sequence(x, y) else y
            final.update({(key, *pos): v for pos, v in s.items()})
        yf, yb = outs["ForwardNet"], outs["BackwardNet"]
        df, db = (y.data if isinstance(y, Seq) else y for y in (yf, yb))
        if df.shape[:2] != db.shape[:2]:
            raise ShapeError(f"{self.who}: the forward net gave an output of dimensions {tuple(df.shape[1:])} and the "
                             f"backward net one of {tuple(db.shape[1:])}; they must have the same length.")
        if self.aggregator == "Catenate":
            out = torch.cat([df, db], dim=2 if self._sequence(x, yf) else 1)
        else:
            out = df + db if self.aggregator == "Total" else (df + db) / 2
        return {"Output": Seq(out, yf.lengths) if isinstance(yf, Seq) else out}, final

    def _sequence(self, x, y) -> bool:
        """Whether the output y is a sequence: a Seq for a Seq input, else as the types say."""
        return isinstance(y, Seq) if isinstance(x, Seq) else self.sequence_out


# ---- NetNestOperator -------------------------------------------------------------------------------
class NetNestOperator(Operator):
    """NetNestOperator(net, n) applies net n times, each time to what the last gave: x →
    net(net(...net(x))). net has one input and one output of the same shape; its arrays are shared
    by every application and are the operator's, at position "Net".

    Ports: "Input" and "Output", of net's type. Options: Input (a shape).

    >>> double = NetNestOperator(ElementwiseLayer(lambda x: 2 * x, Input=1), 3)
    >>> double([1.5])
    [12.0]
    """

    def __init__(self, net, n, **options):
        super().__init__(options)
        who = self.name
        net = self._check_net(net, who, "net it nests")
        if net.state_positions():
            raise NotSupportedError(f"{who}: the net it nests has recurrent states ({net.name}); nesting a recurrent "
                                    "net is not supported.")
        _one_port(net, who, "net it nests", "input")
        _one_port(net, who, "net it nests", "output")
        self.n = O.positive_int(n, who, "n (the number of applications)", allow_automatic=False)
        self._nets = {"Net": net}
        spec = options.get("Input", Automatic)
        if spec is not Automatic and spec is not None:
            from ..layers.shape import _input_type

            port = next(iter(net.input_ports()))
            self._nets["Net"] = self._agree(net.infer({port: _input_type(self, spec)}))
        else:
            self._nets["Net"] = self._agree(net)
        self._sync()

    def _agree(self, net: Net) -> Net:
        """net with its input and output types made one (its output feeds its input)."""
        (pin, tin), = net.input_ports().items()
        (_, tout), = net.output_ports().items()
        try:
            t = unify(tout, tin, "the nested net's output", "its input")
        except ShapeError as e:
            raise ShapeError(f"{self.name}: the net's output must be able to feed its input: {e}") from None
        return net.infer({pin: t}) if t != tin else net

    @property
    def net(self) -> Net:
        return self._nets["Net"]

    def _sync(self) -> None:
        net = self._nets["Net"]
        self._args = (net, self.n)
        self._in = {"Input": next(iter(net.input_ports().values()))}
        self._out = {"Output": next(iter(net.output_ports().values()))}

    def _short_args(self) -> str:
        return f"{_short(self._nets['Net'])}, {self.n}"

    def output_leaf(self, port: str):
        net = self._nets["Net"]
        return net.output_leaf(next(iter(net.output_ports())))

    def infer(self, inputs: dict) -> Net:
        t = inputs.get("Input")
        if t is None or t.dims is None:
            return self
        net = self._nets["Net"]
        port = next(iter(net.input_ports()))
        inner = self._agree(net.infer({port: t}))
        if inner is net:
            return self
        new = self._copy()
        new._nets["Net"] = inner
        new._sync()
        return new

    def build(self, trainable: bool) -> torch.nn.Module:
        return NestModule(self, trainable)


class NestModule(torch.nn.Module):
    """Runs a NetNestOperator: the nested net's one module, n times over its own output."""

    def __init__(self, op: NetNestOperator, trainable: bool):
        super().__init__()
        self.n = op.n
        self.port_in = next(iter(op.net.input_ports()))
        self.port_out = next(iter(op.net.output_ports()))
        self.add_module("Net", op.net.build(trainable))

    def forward(self, inputs: dict, states: dict, ctx) -> tuple[dict, dict]:
        x = inputs["Input"]
        for _ in range(self.n):
            out, _ = self._modules["Net"]({self.port_in: x}, {}, ctx)
            x = out[self.port_out]
        return {"Output": x}, {}
