"""The reference page's examples of the layer itself (scenarios 1-8 and 11).

Each scenario prints what the page shows and returns its values (the tests pin them)."""

from __future__ import annotations

import numpy as np

from .. import (
    Information,
    LongShortTermMemoryLayer,
    NetChain,
    NetEncoder,
    NetExtract,
    NetGraph,
    NetInitialize,
    NetPort,
    NetStateObject,
    SequenceLastLayer,
)
from .registry import scenario
from .registry import show as _show


@scenario(1, "Basic: an uninitialized LongShortTermMemoryLayer(3)")
def scenario_1():
    layer = LongShortTermMemoryLayer(3)
    _show("layer", layer)
    _show("output port", Information(layer, "OutputPorts"))
    return {"layer": layer}


@scenario(2, "Basic: an initialized layer applied to a sequence of three size-2 vectors")
def scenario_2():
    layer = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    out = layer([[1, 2], [3, 4], [5, 6]])
    _show("layer", layer)
    _show("layer([[1, 2], [3, 4], [5, 6]])", out)
    return {"layer": layer, "output": out}


@scenario(3, "Scope: an LSTM whose input is a Characters encoder (UnitVector form)")
def scenario_3():
    enc = NetEncoder(("Characters", "abcdefghijklmnopqrstuvwxyz ", "UnitVector"))
    layer = NetInitialize(LongShortTermMemoryLayer(2, Input=enc))
    one = layer("hello world")
    batch = layer(["hello", "lstm", "a longer string"])
    _show("encoder", enc)
    _show('layer("hello world")', one)
    print(f"  batch of 3 strings → sequences of lengths {[len(b) for b in batch]}")
    return {"layer": layer, "one": one, "batch": batch}


@scenario(4, "Scope: NetChain([LSTM(3), SequenceLastLayer()]) gives one size-3 vector")
def scenario_4():
    chain = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    one = chain([[1, 2], [3, 4], [5, 6]])
    batch = chain([[[1, 2], [3, 4], [5, 6]], [[1, 0]], [[0, 1], [1, 0]]])
    _show("chain", chain)
    _show("one sequence", one)
    _show("batch of 3 sequences", batch)
    return {"chain": chain, "one": one, "batch": batch}


@scenario(5, "Scope: a NetGraph feeding the initial State and CellState from graph inputs")
def scenario_5():
    lstm = NetInitialize(LongShortTermMemoryLayer(2, Input=("Varying", 3)))
    graph = NetGraph([lstm], [(NetPort("s0"), NetPort(1, "State")), (NetPort("c0"), NetPort(1, "CellState"))])
    x = [[1, 0, 0], [0, 1, 0]]
    zero = graph({"Input": x, "s0": [0, 0], "c0": [0, 0]})
    other = graph({"Input": x, "s0": [1, -1], "c0": [0.5, 0.5]})
    _show("graph", graph)
    _show("with s0 = c0 = 0", zero)
    _show("with s0 = (1, -1), c0 = (0.5, 0.5)", other)
    return {"graph": graph, "lstm": lstm, "x": x, "zero": zero, "other": other}


@scenario(6, "Scope: a NetGraph exposing the final State and CellState")
def scenario_6():
    lstm = NetInitialize(LongShortTermMemoryLayer(2, Input=("Varying", 3)))
    graph = NetGraph([lstm], [(NetPort(1, "State"), NetPort("state")),
                              (NetPort(1, "CellState"), NetPort("cellstate"))])
    result = graph([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _show("graph", graph)
    for k, v in result.items():
        _show(k, v)
    print(f"  final state equals the last output element: {np.allclose(result['state'], result['Output'][-1])}")
    return {"graph": graph, "result": result}


@scenario(7, "Options: Dropout with VariationalInput 0.1 and VariationalState 0.5")
def scenario_7():
    layer = NetInitialize(LongShortTermMemoryLayer(
        10, Input=("Varying", 2), Dropout={"VariationalInput": 0.1, "VariationalState": 0.5}))
    x = [[1, 2], [3, 4], [5, 6]]
    test = layer(x)
    train = layer(x, NetEvaluationMode="Train")
    arrays = {k[-1]: v for k, v in Information(layer, "Arrays").items()}
    plain = LongShortTermMemoryLayer(10, Input=("Varying", 2), **arrays)
    _show("layer", layer)
    print(f"  test mode equals the same arrays without dropout: {np.array_equal(test, plain(x))}")
    print(f"  train mode differs from test mode: {not np.allclose(test, train)}")
    return {"layer": layer, "test": test, "train": train}


@scenario(8, "Options: Dropout=0.5 acts only in training")
def scenario_8():
    layer = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2), Dropout=0.5))
    x = [[1, 2], [3, 4], [5, 6]]
    evals = [layer(x) for _ in range(2)]
    trains = [layer(x, NetEvaluationMode="Train") for _ in range(2)]
    _show("evaluation", evals[0])
    print(f"  repeated evaluations equal: {np.array_equal(evals[0], evals[1])}")
    _show("Train mode, run 1", trains[0])
    _show("Train mode, run 2", trains[1])
    print(f"  repeated Train-mode runs differ: {not np.array_equal(trains[0], trains[1])}")
    return {"layer": layer, "evals": evals, "trains": trains}


@scenario(11, "Properties: a NetStateObject remembers the recurrent state")
def scenario_11():
    net = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    obj = NetStateObject(net)
    x = [[1, 2], [3, 4]]
    first = obj(x)
    states_1 = NetExtract(obj, "States")
    second = obj(x)
    states_2 = NetExtract(obj, "States")
    _show("first evaluation", first)
    _show("second evaluation of the same input", second)
    _show("stored State after 1", states_1[(1, "State")])
    _show("stored State after 2", states_2[(1, "State")])
    print(f"  same as evaluating the doubled sequence: {np.allclose(second, net(x + x))}")
    return {"net": net, "first": first, "second": second, "states": [states_1, states_2]}
