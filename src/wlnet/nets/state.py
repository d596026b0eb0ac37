"""NetStateObject: a net that remembers its recurrent states between evaluations."""

from __future__ import annotations

import threading

import torch

from ..core.errors import OptionError
from ..core.net import Net, NetPort
from ..core.symbols import All
from .evaluate import evaluate, read_states, state_spec


class NetStateObject:
    """NetStateObject(net, seed=None): evaluating it starts every recurrent layer from the
    final states of the previous evaluation (zeros, or `seed`, the first time), so applying it
    to x1 then x2 equals applying the net to x1 followed by x2 as one sequence.

    seed: a dict {state position: vector}, positions as Information(net,
    "RecurrentStatesPositionList") lists them, e.g. {(1, "State"): [...], (1, "CellState"): [...]}.

    Batches: the stored states are one vector per position after a single example, and B
    vectors after a batch of B. A stored single state starts every sequence of a batch; stored
    batch states continue a batch of the same size B, sequence by sequence; any other batch
    size is an error (call reset() first).

    Threads: its calls are serialized (a lock), so evaluations from several threads each start
    from the states the one before left and none is lost; they run one at a time.

    >>> obj = NetStateObject(NetInitialize(LongShortTermMemoryLayer(2, Input=("Varying", 1))))
    >>> obj([[1.0]]) == obj([[1.0]])  # the second call starts from the first one's final state
    False
    """

    def __init__(self, net: Net, seed=None):
        if not isinstance(net, Net):
            raise OptionError(f"NetStateObject: expected a net, but was given {type(net).__name__}.")
        self._positions = net.state_positions()
        if not self._positions:
            raise OptionError(
                f"NetStateObject: the {net.name} has no recurrent state (no LongShortTermMemoryLayer or other "
                "recurrent layer), so there is nothing to remember."
            )
        backward = net.backward_positions()
        if backward:
            at = " at position " + "/".join(str(k) for k in backward[0]) if backward[0] else ""
            raise OptionError(
                f"NetStateObject: the {net.name} reads sequences backwards (a NetBidirectionalOperator{at}): its "
                "output at each step depends on the steps after it, so its states cannot carry a sequence over "
                "from one evaluation to the next. Evaluate the net on whole sequences instead."
            )
        net._require_initialized()
        self._lock = threading.RLock()
        self._net = net
        self._seed = self._read_seed(seed) if seed is not None else {}
        self._states = dict(self._seed)

    def _read_seed(self, seed) -> dict:
        """{position: (1, n) tensor}; positions and vectors checked as NetPort(All, "States") is."""
        given = state_spec(self._net, NetPort(All, "States"), seed)
        return {p: v.detach().clone() for p, v in read_states(self._net, given, False, 1, torch.float64).items()}

    @property
    def net(self) -> Net:
        return self._net

    def states(self) -> dict:
        """{position: numpy array} of the stored states (zeros where none is stored yet)."""
        out = {}
        with self._lock:
            stored = dict(self._states)
        for pos, t in self._positions.items():
            v = stored.get(pos)
            if v is None:
                v = torch.zeros(1, t.dims[0])
            v = v.detach().cpu()
            out[pos] = (v[0] if v.shape[0] == 1 else v).numpy().copy()
        return out

    def reset(self, seed=None) -> None:
        """Forget the stored states: back to the seed (or the new `seed`)."""
        with self._lock:
            if seed is not None:
                self._seed = self._read_seed(seed)
            self._states = dict(self._seed)

    def extract(self, spec):
        if spec == "States":
            return self.states()
        pos = spec if isinstance(spec, tuple) else (spec,)
        if pos in self._positions:
            return self.states()[pos]
        return self._net.extract(spec)

    def __call__(self, data, port=None, **options):
        with self._lock:  # read the states, evaluate, store the new ones: one step
            ev = evaluate(self._net, data, port, options, states=self._states, exact_states=True)
            self._states = {p: v.detach().clone() for p, v in ev.states.items()}
        return ev.result

    def __getstate__(self) -> dict:  # copies and pickles: without the lock, which cannot be copied
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"NetStateObject({self._net!r})"

    def _repr_html_(self) -> str:
        from ..show.display import state_html

        return state_html(self)
