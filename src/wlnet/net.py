"""The base of every net (layer or container): evaluation, the compiled-module cache, and the
uniform view of layers and arrays that NetInitialize, Information and NetTrain work on.

A net is a value: nothing here changes a net after construction. Evaluation compiles the
net once into a `torch.nn.Module` (per device and precision), cached on the net.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .data import Batch, PortReader, write_port
from .errors import InitializationError, InputError, OptionError, where
from .symbols import All, Automatic

EVALUATION_OPTIONS = {
    "BatchSize": Automatic,
    "NetEvaluationMode": "Test",
    "TargetDevice": "CPU",
    "WorkingPrecision": "Real32",
    "RandomSeeding": Automatic,
}


STATES = "\0States"  # key of the {position: state} dict passed through compiled modules


class NetPort:
    """NetPort("x") names a graph port; NetPort(layer, "State") a port of a layer in a graph;
    NetPort(All, "States") every recurrent state of a net."""

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


class Ctx(NamedTuple):
    """What a forward pass needs besides inputs: training mode, the random generator, and
    whether every final recurrent state must be exact. With states False a layer may leave out
    a final state that no edge consumes (an LSTM's CellState of a ragged batch), which lets it
    run the faster padded kernel."""

    train: bool
    generator: torch.Generator | None
    states: bool = True


TEST = Ctx(False, None, False)  # evaluation whose final states nobody reads (measurements, validation)


def resolve_device(spec, who: str) -> torch.device:
    if spec in ("CPU", Automatic, None):
        return torch.device("cpu")
    if spec == "GPU" or (isinstance(spec, tuple) and spec and spec[0] == "GPU"):
        if not torch.cuda.is_available():
            raise OptionError(
                f'{where(who)}TargetDevice "GPU" was requested, but no CUDA device is available '
                '(torch.cuda.is_available() is False). Use TargetDevice="CPU".'
            )
        index = spec[1] - 1 if isinstance(spec, tuple) and len(spec) > 1 else 0
        return torch.device("cuda", index)
    raise OptionError(f'{where(who)}TargetDevice must be "CPU" or "GPU", but was given {spec!r}.')


def resolve_precision(spec, who: str) -> torch.dtype:
    if spec in ("Real32", Automatic):
        return torch.float32
    if spec == "Real64":
        return torch.float64
    raise OptionError(f'{where(who)}WorkingPrecision must be "Real32" or "Real64", but was given {spec!r}.')


def make_generator(seed, who: str, device=None) -> torch.Generator | None:
    if seed is Automatic or seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise OptionError(f"{where(who)}RandomSeeding must be an integer or Automatic, but was given {seed!r}.")
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(seed)
    return g


class Net:
    """Base of every layer and container. Subclasses provide the port types, the leaf layers
    with their positions, and the module that runs them."""

    _encoders: dict = {}
    _decoders: dict = {}

    # ---- what subclasses provide ----------------------------------------------------------
    def input_ports(self) -> dict:
        raise NotImplementedError

    def output_ports(self) -> dict:
        raise NotImplementedError

    def state_ports(self) -> dict:
        """Recurrent state ports (name → type) of this net itself; containers have none."""
        return {}

    def leaves(self) -> list:
        """[(position, layer)] of every layer that is not a container; position () for a layer."""
        raise NotImplementedError

    def output_leaf(self, port: str):
        """The layer that produces the output port (None if a graph input passes straight through)."""
        raise NotImplementedError

    def map_leaves(self, fn) -> Net:
        """A new net with each leaf replaced by fn(position, leaf)."""
        raise NotImplementedError

    def build_module(self, trainable: bool) -> torch.nn.Module:
        """A module `m(inputs: dict[port, value], ctx) -> dict[port, value]` whose parameters are
        this net's arrays (shared storage when not trainable; fresh copies when trainable)."""
        raise NotImplementedError

    def from_module(self, module: torch.nn.Module) -> Net:
        """A new net whose arrays are the module's current parameters (copied)."""
        arrays = {}
        for name, p in module.named_parameters():
            arrays[name] = p.detach().to("cpu", torch.float32).clone()
        return self.map_leaves(lambda pos, leaf: leaf._with_arrays(
            {a: arrays[_param_name(pos, a)] for a in leaf._arrays}))

    # ---- the uniform views ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def arrays(self) -> dict:
        """{position + (array name,): tensor or None} over every leaf."""
        return {pos + (a,): t for pos, leaf in self.leaves() for a, t in leaf._arrays.items()}

    def state_positions(self) -> dict:
        """{position + (state port,): type} of every recurrent state in the net."""
        return {pos + (s,): t for pos, leaf in self.leaves() for s, t in leaf.state_ports().items()}

    def missing_arrays(self) -> list:
        return [k for k, v in self.arrays().items() if v is None]

    def initialized(self) -> bool:
        return not self.missing_arrays()

    def _require_initialized(self) -> None:
        missing = self.missing_arrays()
        if missing:
            names = ", ".join(_position_text(m) for m in missing[:4]) + (" ..." if len(missing) > 4 else "")
            raise InitializationError(
                f"{self.name}: the net is not initialized: array {names} "
                f"{'is' if len(missing) == 1 else 'are'} missing. Use NetInitialize(net) to give "
                "every missing array initial values, or pass the arrays as options."
            )

    # ---- evaluation ---------------------------------------------------------------------------
    def _module(self, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        cache = self.__dict__.setdefault("_module_cache", {})
        key = (device, dtype)
        m = cache.get(key)
        if m is None:
            self._require_initialized()
            m = self.build_module(trainable=False)
            if device.type != "cpu" or dtype != torch.float32:
                m = m.to(device=device, dtype=dtype)
            m.frozen = True
            cache[key] = m
        return m

    def _readers(self) -> dict:
        readers = self.__dict__.get("_reader_cache")
        if readers is None:
            readers = {}
            for port, t in self.input_ports().items():
                enc = self._encoders.get(port)
                readers[port] = enc.reader(self.name, port) if enc is not None else PortReader(t, self.name, port)
            self.__dict__["_reader_cache"] = readers
        return readers

    def read_inputs(self, data) -> tuple[dict, bool, str, int]:
        """User data → ({port: value}, batched, kind, batch size)."""
        readers = self._readers()
        if isinstance(data, dict) and data and all(isinstance(k, str) for k in data):
            unknown = [k for k in data if k not in readers]
            if unknown:
                raise InputError(
                    f"{self.name}: there is no input port named {unknown[0]!r}; the input ports are "
                    f"{', '.join(repr(p) for p in readers)}."
                )
            given = data
        elif len(readers) == 1:
            given = {next(iter(readers)): data}
        else:
            raise InputError(
                f"{self.name}: the net has several input ports ({', '.join(repr(p) for p in readers)}); "
                "give a dict of port → data."
            )
        missing = [p for p in readers if p not in given]
        if missing:
            raise InputError(f'{where(self.name, missing[0])}no data was supplied to the input port.')
        values = {}
        first: Batch | None = None
        for port, d in given.items():
            b = readers[port].read(d)
            if first is None:
                first = b
            elif b.batched != first.batched or b.size != first.size:
                raise InputError(
                    f"{self.name}: the input ports were given batches of different sizes "
                    f"({first.size if first.batched else 'a single example'} and "
                    f"{b.size if b.batched else 'a single example'} for port \"{port}\")."
                )
            values[port] = b.value
        return values, first.batched, first.kind, first.size

    def __call__(self, data, port=None, **options):
        return self._evaluate(data, port, options)[0]

    def _evaluate(self, data, port, options: dict, states: dict | None = None, keep_states: bool = False):
        """Evaluate; returns (user result, {position: final state tensor}, batched, kind).

        `states` ({position: tensor (B, n)}) sets initial recurrent states; keep_states asks
        for every final state (otherwise only those the result shows are exact)."""
        unknown = [k for k in options if k not in EVALUATION_OPTIONS]
        if unknown:
            raise OptionError(
                f"{self.name}: {unknown[0]!r} is not an evaluation option; the options are "
                f"{', '.join(EVALUATION_OPTIONS)}."
            )
        mode = options.get("NetEvaluationMode", "Test")
        if mode not in ("Test", "Train"):
            raise OptionError(
                f'{self.name}: NetEvaluationMode must be "Test" or "Train", but was given {mode!r}.'
            )
        device = resolve_device(options.get("TargetDevice", "CPU"), self.name)
        dtype = resolve_precision(options.get("WorkingPrecision", "Real32"), self.name)
        batch_size = options.get("BatchSize", Automatic)
        if batch_size is not Automatic and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                            or batch_size < 1):
            raise OptionError(f"{self.name}: BatchSize must be a positive integer or Automatic, "
                              f"but was given {batch_size!r}.")
        selection = self._select_outputs(port)
        module = self._module(device, dtype)
        given_states = None
        if isinstance(data, dict) and any(isinstance(k, NetPort) for k in data):
            data = dict(data)
            given_states = {}
            for key in [k for k in data if isinstance(k, NetPort)]:
                given_states.update(self._state_spec(key, data.pop(key)))
        values, batched, kind, size = self.read_inputs(data)
        if states:
            stored = next(iter(states.values())).shape[0]
            if stored != 1 and (not batched or size != stored):
                raise InputError(
                    f"{self.name}: the given recurrent states belong to a batch of {stored} sequences, but the "
                    f"input is {f'a batch of {size}' if batched else 'a single sequence'}. Give a batch of "
                    f"{stored}, or reset the states (NetStateObject.reset())."
                )
        if states or given_states:
            merged = dict(states or {})
            if given_states:
                merged.update(self._read_states(given_states, batched, size))
            values[STATES] = {p: v.expand(size, -1) if v.shape[0] == 1 else v for p, v in merged.items()}
        values = _to(values, device, dtype)
        keep_states = keep_states or any(isinstance(p, NetPort) for p in selection[0])
        ctx = Ctx(mode == "Train", make_generator(options.get("RandomSeeding", Automatic), self.name, device),
                  keep_states)
        needs_grad = kind.endswith("torch") and any(_requires_grad(v) for p, v in values.items() if p != STATES)
        with torch.set_grad_enabled(needs_grad):
            if batched and batch_size is not Automatic and size > batch_size:
                result = _merge([module(_rows(values, a, a + batch_size), ctx) for a in range(0, size, batch_size)])
            else:
                result = module(values, ctx)
        final = result.get(STATES)
        if final is None:
            final = {(s,): result[s] for s in self.state_ports()}
        return self._write_outputs(result, final, selection, batched, kind), final, batched, kind

    def _state_spec(self, key: NetPort, value) -> dict:
        positions = self.state_positions()
        if key.all_states:
            if not isinstance(value, dict):
                raise InputError(
                    f"{self.name}: NetPort(All, \"States\") must be given a dict of state position → array; the "
                    f"positions are {list(positions)}."
                )
            out = {}
            for pos, v in value.items():
                pos = pos if isinstance(pos, tuple) else (pos,)
                out[pos] = v
            bad = [p for p in out if p not in positions]
        else:
            out = {tuple(key.spec): value}
            bad = [tuple(key.spec)] if tuple(key.spec) not in positions else []
        if bad:
            raise InputError(
                f"{self.name}: {bad[0]!r} is not a recurrent state of the net; its states are {list(positions)}."
            )
        return out

    def _read_states(self, given: dict, batched: bool, size: int) -> dict:
        positions = self.state_positions()
        out = {}
        for pos, v in given.items():
            port = "/".join(str(p) for p in pos)
            b = PortReader(positions[pos], self.name, f"NetPort({port})").read(v)
            if b.batched and (not batched or b.size != size):
                raise InputError(
                    f"{self.name}: the state for {pos!r} was given for a batch of {b.size}, but the input is "
                    f"{f'a batch of {size}' if batched else 'a single example'}."
                )
            out[pos] = b.value
        return out

    def _select_outputs(self, port):
        """[(output port, decoder property or None)] for the `port` argument, and whether a dict."""
        outs = self.output_ports()
        if port is None:
            return list(outs), len(outs) > 1
        if isinstance(port, str) and port in outs:
            return [port], False
        if isinstance(port, NetPort):
            if port.all_states:
                return [port], False
            if tuple(port.spec) in self.state_positions():
                return [port], False
        if isinstance(port, str) and len(outs) == 1 and next(iter(outs)) in self._decoders:
            return [(next(iter(outs)), port)], False
        raise InputError(
            f"{self.name}: {port!r} is not an output port; the output ports are "
            f"{', '.join(repr(p) for p in outs)}."
        )

    def _write_outputs(self, result: dict, final: dict, selection, batched: bool, kind: str):
        ports, as_dict = selection
        out = {}
        for p in ports:
            if isinstance(p, NetPort):
                if p.all_states:
                    out[p] = {pos: write_port(v, batched, kind) for pos, v in final.items()}
                else:
                    out[p] = write_port(final[tuple(p.spec)], batched, kind)
                continue
            prop = None
            if isinstance(p, tuple):
                p, prop = p
            dec = self._decoders.get(p)
            if dec is not None:
                out[p] = dec.decode(result[p], batched, prop, self.name, p)
            else:
                out[p] = write_port(result[p], batched, kind)
        return out if as_dict else out[ports[0] if not isinstance(ports[0], tuple) else ports[0][0]]


def _rows(values: dict, a: int, b: int) -> dict:
    """Rows a..b of every value (the batch axis), for evaluation in chunks of BatchSize."""
    from .data import Seq

    def cut(v):
        if isinstance(v, dict):
            return {p: cut(x) for p, x in v.items()}
        if isinstance(v, Seq):
            return Seq(v.data[a:b], None if v.lengths is None else v.lengths[a:b])
        return v[a:b]

    return {p: cut(v) for p, v in values.items()}


def _merge(chunks: list) -> dict:
    """Concatenate chunk results along the batch axis (sequences padded to a common length)."""
    from .data import Seq

    def join(vs):
        if vs[0] is None:  # a final state left out (see Ctx)
            return None
        if isinstance(vs[0], dict):
            return {p: join([v[p] for v in vs]) for p in vs[0]}
        if isinstance(vs[0], Seq):
            T = max(v.data.shape[1] for v in vs)
            data = torch.cat([torch.nn.functional.pad(v.data, (0, 0) * (v.data.ndim - 2) + (0, T - v.data.shape[1]))
                              for v in vs])
            if all(v.lengths is None and v.data.shape[1] == T for v in vs):
                return Seq(data, None)
            lengths = torch.cat([torch.tensor(v.length_list()) for v in vs])
            return Seq(data, lengths)
        return torch.cat(vs)

    return join(chunks)


def _requires_grad(v) -> bool:
    return v.requires_grad if isinstance(v, torch.Tensor) else v.data.requires_grad


def _to(values: dict, device, dtype) -> dict:
    if device.type == "cpu" and dtype == torch.float32:
        return values
    from .data import Seq

    def move(t):
        return t.to(device=device, dtype=dtype if t.dtype.is_floating_point else t.dtype)

    return {p: Seq(move(v.data), v.lengths) if isinstance(v, Seq) else move(v) for p, v in values.items()}


def _param_name(position: tuple, array: str) -> str:
    """Name of a leaf's array inside a compiled module (dots separate container levels)."""
    return ".".join([*(str(p) for p in position), array]) if position else array


def _position_text(key: tuple) -> str:
    return '"' + key[-1] + '"' + (f" of layer {'/'.join(str(p) for p in key[:-1])}" if len(key) > 1 else "")
