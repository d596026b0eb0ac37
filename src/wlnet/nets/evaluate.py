"""Evaluation from the user's side: `net(x, port, **options)` and NetStateObject's calls.

Options are checked, user data is read into tensors (`data`), inputs and states are moved to
the device and precision together, the compiled module runs (in chunks of BatchSize), and the
results go back into the user's form.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..core import options as O
from ..core.data import Batch, PortReader, Seq, cat_rows, move_all, reader, take_rows, write_port
from ..core.errors import InputError, NetError, NotSupportedError, where
from ..core.net import Net, NetPort
from ..core.runtime import Ctx, compiled
from ..core.symbols import Automatic
from .gradient import NetPortGradient, port_gradient

EVALUATION_OPTIONS = {
    "BatchSize": Automatic,
    "NetEvaluationMode": "Test",
    "TargetDevice": "CPU",
    "WorkingPrecision": "Real32",
    "RandomSeeding": Automatic,
}


class Evaluation(NamedTuple):
    result: object  # in the user's form
    states: dict  # {position: final state tensor (B, n)}
    batched: bool
    kind: str


def readers(net: Net, real: torch.dtype = torch.float32) -> dict:
    """{input port: reader} for real data in precision `real`, built once per net and precision."""
    cache = net.__dict__.setdefault("_reader_cache", {})
    cached = cache.get(real)
    if cached is None:
        cached = cache[real] = {}
        for port, t in net.input_ports().items():
            enc = net.encoders.get(port)
            cached[port] = enc.reader(net.name, port) if enc is not None else reader(t, net.name, port, real)
    return cached


def read_inputs(net: Net, data, real: torch.dtype = torch.float32) -> tuple[dict, bool, str, int]:
    """User data → ({port: value}, batched, kind, batch size); real entries in precision `real`."""
    ports = readers(net, real)
    if isinstance(data, dict) and data and all(isinstance(k, str) for k in data):
        unknown = [k for k in data if k not in ports]
        if unknown:
            raise InputError(
                f"{net.name}: there is no input port named {unknown[0]!r}; the input ports are "
                f"{', '.join(repr(p) for p in ports)}."
            )
        given = data
    elif len(ports) == 1:
        given = {next(iter(ports)): data}
    else:
        raise InputError(
            f"{net.name}: the net has several input ports ({', '.join(repr(p) for p in ports)}); "
            "give a dict of port → data."
        )
    missing = [p for p in ports if p not in given]
    if missing:
        raise InputError(f'{where(net.name, missing[0])}no data was supplied to the input port.')
    values = {}
    first: Batch | None = None
    for port, d in given.items():
        b = ports[port].read(d)
        if first is None:
            first = b
        elif b.batched != first.batched or b.size != first.size:
            raise InputError(
                f"{net.name}: the input ports were given batches of different sizes "
                f"({first.size if first.batched else 'a single example'} and "
                f"{b.size if b.batched else 'a single example'} for port \"{port}\")."
            )
        values[port] = b.value
    return values, first.batched, first.kind, first.size


_DEFAULTS = (False, torch.device("cpu"), torch.float32, None, Automatic)


def evaluation_options(net: Net, options: dict) -> tuple:
    """(train, device, dtype, batch size or None, seed) from the evaluation options."""
    if not options:
        return _DEFAULTS
    O.known(options, EVALUATION_OPTIONS, net.name, "an evaluation option", "options")
    mode = options.get("NetEvaluationMode", "Test")
    O.one_of(mode, ("Test", "Train"), net.name, "NetEvaluationMode")
    device = O.device(options.get("TargetDevice", "CPU"), net.name)
    dtype = O.precision(options.get("WorkingPrecision", "Real32"), net.name)
    batch_size = O.positive_int(options.get("BatchSize", Automatic), net.name, "BatchSize")
    seed = options.get("RandomSeeding", Automatic)
    O.seed(seed, net.name)
    return mode == "Train", device, dtype, batch_size, seed


def evaluate(net: Net, data, port, options: dict, states: dict | None = None,
             exact_states: bool = False) -> Evaluation:
    """Evaluate `net` on user data. `states` ({position: tensor (1 or B, n)}) sets initial
    recurrent states (a NetStateObject's); exact_states asks for every final state exact."""
    if isinstance(port, NetPortGradient):
        if states:
            raise NotSupportedError(f"{net.name}: NetPortGradient is not taken through a NetStateObject; evaluate "
                                    "its net.")
        return port_gradient(net, data, port, options)
    train, device, dtype, batch_size, seed = evaluation_options(net, options)
    selection = select_outputs(net, port)
    module = compiled(net, device, dtype)
    given_states = {}
    if isinstance(data, dict) and any(isinstance(k, NetPort) for k in data):
        data = dict(data)
        for key in [k for k in data if isinstance(k, NetPort)]:
            given_states.update(state_spec(net, key, data.pop(key)))
    values, batched, kind, size = read_inputs(net, data, dtype)
    if states:
        stored = next(iter(states.values())).shape[0]
        if stored != 1 and (not batched or size != stored):
            raise InputError(
                f"{net.name}: the given recurrent states belong to a batch of {stored} sequences, but the "
                f"input is {f'a batch of {size}' if batched else 'a single sequence'}. Give a batch of "
                f"{stored}, or reset the states (NetStateObject.reset())."
            )
    initial = dict(states or {})
    if given_states:
        initial.update(read_states(net, given_states, batched, size, dtype))
    initial = {p: v.expand(size, -1) if v.shape[0] == 1 and size > 1 else v for p, v in initial.items()}
    values, initial = move_all(values, device, dtype), move_all(initial, device, dtype)
    exact = exact_states or any(isinstance(p, NetPort) for p in selection[0])
    ctx = Ctx(train, O.generator(seed, net.name, device), exact)
    needs_grad = kind.endswith("torch") and any(_requires_grad(v) for v in _flat((*values.values(), *initial.values())))
    with torch.set_grad_enabled(needs_grad):
        if batched and batch_size is not None and size > batch_size:
            parts = [module(take_rows(values, slice(a, a + batch_size)), take_rows(initial, slice(a, a + batch_size)),
                            ctx) for a in range(0, size, batch_size)]
            outputs = cat_rows([o for o, _ in parts])
            final = cat_rows([s for _, s in parts])
        else:
            outputs, final = module(values, initial, ctx)
    if kind != "list":  # results never share memory with the user's arrays
        given = [_span(v) for v in _flat((*values.values(), *initial.values()))]
        outputs, final = _own(outputs, given), _own(final, given)
    return Evaluation(write_outputs(net, outputs, final, selection, batched, kind), final, batched, kind)


def state_spec(net: Net, key: NetPort, value) -> dict:
    """A NetPort key of the input dict → {state position: user value}."""
    positions = net.state_positions()
    if key.all_states:
        if not isinstance(value, dict):
            raise InputError(
                f"{net.name}: NetPort(All, \"States\") must be given a dict of state position → array; the "
                f"positions are {list(positions)}."
            )
        out = {pos if isinstance(pos, tuple) else (pos,): v for pos, v in value.items()}
    else:
        out = {tuple(key.spec): value}
    out = {state_position(net, p) or p: v for p, v in out.items()}
    bad = [p for p in out if p not in positions]
    if bad:
        raise InputError(
            f"{net.name}: {bad[0]!r} is not a recurrent state of the net; its states are {list(positions)}."
        )
    return out


def state_position(net: Net, spec) -> tuple | None:
    """The state position a NetPort spec names: a position itself, (1, "ForwardNet", "State"), or
    a state port of the net or of one of its layers, ("ForwardState",) or (1, "ForwardState")."""
    positions = net.state_positions()
    spec = tuple(spec)
    if spec in positions:
        return spec
    if not spec or not isinstance(spec[-1], str):
        return None
    try:
        sub = net if len(spec) == 1 else net.extract(spec[:-1] if len(spec) > 2 else spec[0])
    except (NetError, TypeError):
        return None
    if not isinstance(sub, Net) or spec[-1] not in sub.state_ports():
        return None
    pos = spec[:-1] + sub.state_port_position(spec[-1])
    return pos if pos in positions else None


def read_states(net: Net, given: dict, batched: bool, size: int, real: torch.dtype = torch.float32) -> dict:
    """{position: user value} → {position: tensor (1 or B, n)}, each checked against its port."""
    positions = net.state_positions()
    out = {}
    for pos, v in given.items():
        port = "/".join(str(p) for p in pos)
        b = PortReader(positions[pos], net.name, f"NetPort({port})", real).read(v)
        if b.batched and (not batched or b.size != size):
            raise InputError(
                f"{net.name}: the state for {pos!r} was given for a batch of {b.size}, but the input is "
                f"{f'a batch of {size}' if batched else 'a single example'}."
            )
        out[pos] = b.value
    return out


def select_outputs(net: Net, port):
    """[(output port, decoder property or None)] for the `port` argument, and whether a dict."""
    outs = net.output_ports()
    if port is None:
        return list(outs), len(outs) > 1
    if isinstance(port, str) and port in outs:
        return [port], False
    if isinstance(port, NetPort) and (port.all_states or state_position(net, port.spec) is not None):
        return [port], False
    if isinstance(port, str) and len(outs) == 1 and next(iter(outs)) in net.decoders:
        return [(next(iter(outs)), port)], False
    if isinstance(port, tuple) and len(port) == 2 and isinstance(port[0], str) and port[0] in net.decoders:
        return [port], False  # (port, decoder property)
    if isinstance(port, tuple) and len(port) == 2 and len(outs) == 1 and next(iter(outs)) in net.decoders:
        return [(next(iter(outs)), port)], False  # a decoder property with a parameter
    raise InputError(
        f"{net.name}: {port!r} is not an output port; the output ports are "
        f"{', '.join(repr(p) for p in outs)}."
    )


def write_outputs(net: Net, result: dict, final: dict, selection, batched: bool, kind: str):
    ports, as_dict = selection
    out = {}
    for p in ports:
        if isinstance(p, NetPort):
            if p.all_states:
                out[p] = {pos: write_port(v, batched, kind) for pos, v in final.items()}
            else:
                out[p] = write_port(final[state_position(net, p.spec)], batched, kind)
            continue
        prop = None
        if isinstance(p, tuple):
            p, prop = p
        dec = net.decoders.get(p)
        out[p] = dec.decode(result[p], batched, prop, net.name, p) if dec is not None else \
            write_port(result[p], batched, kind)
    first = ports[0]
    return out if as_dict else out[first[0] if isinstance(first, tuple) else first]


def _span(v) -> tuple[int, int]:
    """The memory a value's tensor spans: [first byte, last byte + 1). (Read from data_ptr and
    strides, not from the storage: a storage's Python object, once made, holds the storage and
    keeps the native kernel's buffer pool from reusing it.)"""
    t = v.data if isinstance(v, Seq) else v
    start = t.data_ptr()
    extent = sum((d - 1) * abs(st) for d, st in zip(t.shape, t.stride()) if d > 0) + 1 if t.numel() else 0
    return start, start + extent * t.element_size()


def _own(values: dict, given: list) -> dict:
    """`values` with those whose memory overlaps the spans `given` copied."""
    def own(v):
        if v is None:
            return v
        a, b = _span(v)
        if not any(a < hi and lo < b for lo, hi in given):
            return v
        return Seq(v.data.clone(), v.lengths) if isinstance(v, Seq) else v.clone()

    return {p: own(v) for p, v in values.items()}


def _flat(values) -> list:
    """The tensors and Seqs of `values`, those of a list port's lists included."""
    return [x for v in values for x in (v if isinstance(v, list) else (v,))]


def _requires_grad(v) -> bool:
    return v.requires_grad if isinstance(v, torch.Tensor) else v.data.requires_grad


__all__ = ["EVALUATION_OPTIONS", "evaluate", "readers", "read_inputs"]
