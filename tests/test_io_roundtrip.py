"""Export/Import of .wlnet files: every layer, container, encoder, decoder and option round-trips
(InputForm, ports, arrays bit for bit, missing arrays, outputs); a NetStateObject keeps its states;
a trained net trains on identically; what cannot be saved is refused before anything is written;
the dispatch by extension."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet import (
    All,
    Automatic,
    BasicRecurrentLayer,
    DigitCharacter,
    DropoutLayer,
    ElementwiseLayer,
    EmbeddingLayer,
    Export,
    ExportError,
    GatedRecurrentLayer,
    Import,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetDecoder,
    NetEncoder,
    NetGraph,
    NetInitialize,
    NetPort,
    NetStateObject,
    NetTrain,
    NotSupportedError,
    OptionError,
    SequenceLastLayer,
    SoftmaxLayer,
    UnitVectorLayer,
)

SEQ = [[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]
RAGGED = [SEQ, SEQ[:1], SEQ[1:]]


def roundtrip(net, tmp_path, name="net.wlnet"):
    path = tmp_path / name
    assert Export(path, net) == os.fspath(path)
    return Import(path)


def assert_same_net(a, b):
    """Same class, InputForm, ports, state positions; every array bit for bit with its dtype;
    missing arrays missing."""
    assert type(a) is type(b)
    assert b.input_form() == a.input_form()
    assert b.input_ports() == a.input_ports() and b.output_ports() == a.output_ports()
    assert b.state_positions() == a.state_positions()
    assert b.encoders == a.encoders and b.decoders == a.decoders
    arrays_a, arrays_b = a.arrays(), b.arrays()
    assert arrays_a.keys() == arrays_b.keys()
    for k, t in arrays_a.items():
        u = arrays_b[k]
        if t is None:
            assert u is None, k
        else:
            assert u.dtype == t.dtype and u.shape == t.shape
            assert np.array_equal(t.numpy().view(np.uint32), u.numpy().view(np.uint32)), k  # bit for bit
            assert u.data_ptr() != t.data_ptr()


def init(net):
    return NetInitialize(net, RandomSeeding=7)


LAYERS = {
    "Linear": (lambda: LinearLayer(2, Input=3, LearningRateMultipliers={"Biases": 0}), [0.5, -1.0, 2.0]),
    "Linear-inf-multiplier": (lambda: LinearLayer(2, Input=3, LearningRateMultipliers=math.inf), [1.0, 2.0, 3.0]),
    "Elementwise-name": (lambda: ElementwiseLayer("Ramp", Input=3), [0.5, -1.0, 2.0]),
    "Elementwise-function": (lambda: ElementwiseLayer(torch.tanh, Input=3), [0.5, -1.0, 2.0]),
    "Softmax": (lambda: SoftmaxLayer(Input=3), [0.5, -1.0, 2.0]),
    "Dropout": (lambda: DropoutLayer(0.25, Input=3), [0.5, -1.0, 2.0]),
    "SequenceLast": (lambda: SequenceLastLayer(Input=("Varying", 2)), SEQ),
    "UnitVector": (lambda: UnitVectorLayer(4), [1, 4, 2]),
    "Embedding": (lambda: EmbeddingLayer(3, 5), [1, 5, 2]),
    "LSTM": (lambda: LongShortTermMemoryLayer(3, Input=("Varying", 2), Dropout={"VariationalInput": 0.1,
                                                                                 "VariationalState": 0.5}), SEQ),
    "Embedding-sequence-input": (lambda: EmbeddingLayer(2, 4, Input="Varying"), [1, 2, 4]),
    "LSTM-fixed-length": (lambda: LongShortTermMemoryLayer(2, Input=(3, 2), Output=(3, 2), Dropout=0.2), SEQ),
    "LSTM-encoder": (lambda: LongShortTermMemoryLayer(
        2, Input=NetEncoder(("Characters", [DigitCharacter, "+"], "UnitVector"))), "12+3"),
    "GRU": (lambda: GatedRecurrentLayer(3, Input=("Varying", 2), Dropout={"StateUpdate": 0.3},
                                        LearningRateMultipliers={"ResetGateBiases": 2.5}), SEQ),
    "BasicRecurrent": (lambda: BasicRecurrentLayer(2, Input=("Varying", Automatic)), None),
}


@pytest.mark.parametrize("case", list(LAYERS))
def test_every_layer_round_trips_initialized_and_not(case, tmp_path):
    make, x = LAYERS[case]
    bare = make()
    assert_same_net(bare, roundtrip(bare, tmp_path, "bare.wlnet"))
    if x is None:
        return
    net = init(bare)
    got = roundtrip(net, tmp_path)
    assert_same_net(net, got)
    np.testing.assert_array_equal(np.asarray(got(x)), np.asarray(net(x)))


def test_containers_encoders_decoders_and_port_options_round_trip(tmp_path):
    chain = init(NetChain([LongShortTermMemoryLayer(4), SequenceLastLayer(), 3, SoftmaxLayer()],
                          Input=NetEncoder(("Characters", "abc", "UnitVector"), IgnoreCase=True),
                          Output=NetDecoder(("Class", ["x", 2, 3.5]))))
    got = roundtrip(chain, tmp_path)
    assert_same_net(chain, got)
    assert got(["abC", "b"]) == chain(["abC", "b"])
    assert got("ab", "Probabilities") == chain("ab", "Probabilities")

    scalar = init(NetChain({"embed": EmbeddingLayer(2), "rnn": GatedRecurrentLayer(3), "last": SequenceLastLayer(),
                            "out": LinearLayer(1)}, Input=NetEncoder(("Characters", "0123456789+")),
                           Output="Scalar"))
    got = roundtrip(scalar, tmp_path, "scalar.wlnet")
    assert_same_net(scalar, got)
    assert got(["1+2", "34+5"]) == scalar(["1+2", "34+5"])


def test_a_graph_with_state_ports_nested_nets_and_several_outputs_round_trips(tmp_path):
    inner = NetChain([LinearLayer(3), ElementwiseLayer("Tanh")])
    graph = init(NetGraph(
        {"lstm": LongShortTermMemoryLayer(3, Input=("Varying", 2)), "last": SequenceLastLayer(), "head": inner},
        [("lstm", "last", "head"), (NetPort("s0"), NetPort("lstm", "State")),
         (NetPort("lstm", "CellState"), NetPort("cT")), ("head", NetPort("y"))],
        s0=3))
    got = roundtrip(graph, tmp_path)
    assert_same_net(graph, got)
    x = {"Input": RAGGED, "s0": [[0.1, 0.2, 0.3]] * 3}
    a, b = graph(x), got(x)
    assert a.keys() == b.keys() == {"y", "cT"}
    for k in a:
        np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(a[k]))
    states = {"Input": SEQ, "s0": [0.5, 0.0, 0.25], NetPort(All, "States"): {("lstm", "CellState"): [1.0, 0.0, -1.0]}}
    np.testing.assert_array_equal(got(states, NetPort(All, "States"))[("lstm", "CellState")],
                                  graph(states, NetPort(All, "States"))[("lstm", "CellState")])


def test_a_list_graph_with_shared_layers_and_lists_of_edges_round_trips(tmp_path):
    lin = LinearLayer(2)
    graph = NetGraph([lin, lin, ElementwiseLayer("LogisticSigmoid")], [(1, 2, 3)], Input=2)
    assert_same_net(graph, roundtrip(graph, tmp_path, "bare.wlnet"))
    net = init(graph)
    got = roundtrip(net, tmp_path)
    assert_same_net(net, got)
    np.testing.assert_array_equal(got([1.0, 2.0]), net([1.0, 2.0]))


def test_missing_arrays_stay_missing_and_given_ones_are_kept(tmp_path):
    w_ = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    half = LinearLayer(2, Weights=w_)  # Biases missing; k known from the weights
    got = roundtrip(half, tmp_path)
    assert_same_net(half, got)
    assert got.missing_arrays() == [("Biases",)]
    assert got.input_ports()["Input"].dims == (3,)
    np.testing.assert_array_equal(w.NetExtract(got, "Weights"), w_)


def test_a_layer_taken_from_a_chain_keeps_its_inferred_ports(tmp_path):
    chain = NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=(4, 5))
    lstm = w.NetExtract(chain, 1)
    assert lstm.input_ports()["Input"].dims == (4, 5)
    got = roundtrip(lstm, tmp_path)
    assert_same_net(lstm, got)
    assert Import(tmp_path / "net.wlnet").input_ports()["Input"].dims == (4, 5)


def test_a_layer_with_a_list_port_round_trips_with_its_list_type(tmp_path):
    for layer in (w.CatenateLayer(Input=[2, 3]), w.CatenateLayer(), w.ThreadingLayer("Plus", Input=[4, 4])):
        got = roundtrip(layer, tmp_path)
        assert got.input_ports() == layer.input_ports() and got.output_ports() == layer.output_ports()
    got = roundtrip(w.CatenateLayer(Input=[2, 3]), tmp_path)
    assert got([[1, 2], [3, 4, 5]]) == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_non_finite_and_exact_float_options_round_trip(tmp_path):
    for m in (math.nan, -0.0, 0.1 + 0.2, 1e-310, 1 / 3):
        net = LinearLayer(2, Input=3, LearningRateMultipliers=m)
        got = roundtrip(net, tmp_path)
        a, b = net.learning_rate_multipliers()["Weights"], got.learning_rate_multipliers()["Weights"]
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
        assert got.input_form() == net.input_form()


def test_float64_and_nonfinite_states_of_a_net_state_object_are_kept(tmp_path):
    net = init(NetChain([GatedRecurrentLayer(2, Input=("Varying", 2)), LongShortTermMemoryLayer(3)]))
    seed = {(1, "State"): [0.25, -0.5]}
    obj = NetStateObject(net, seed)
    obj(RAGGED, WorkingPrecision="Real64")  # stored states of a batch of 3, in float64
    got = roundtrip(obj, tmp_path)
    assert isinstance(got, NetStateObject)
    assert_same_net(obj.net, got.net)
    assert got._states.keys() == obj._states.keys()
    for pos, t in obj._states.items():
        assert got._states[pos].dtype == t.dtype == torch.float64 and torch.equal(got._states[pos], t)
    for pos, t in obj._seed.items():
        assert torch.equal(got._seed[pos], t)
    # it continues where the original was, and resets to the same seed
    for a, b in zip(got(RAGGED, WorkingPrecision="Real64"), obj(RAGGED, WorkingPrecision="Real64")):
        np.testing.assert_array_equal(a, b)
    got.reset()
    obj.reset()
    np.testing.assert_array_equal(got(SEQ), obj(SEQ))
    fresh = NetStateObject(net)
    assert roundtrip(fresh, tmp_path, "fresh.wlnet").states().keys() == fresh.states().keys()


def test_a_trained_net_round_trips_and_trains_on_identically(tmp_path):
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(int(rng.integers(1, 5)), 2)).round(3).tolist() for _ in range(12)]
    ys = [[sum(map(sum, x))] for x in xs]
    net = NetChain([LongShortTermMemoryLayer(3, Input=("Varying", 2)), SequenceLastLayer(), LinearLayer(1)])
    opts = {"MaxTrainingRounds": 2, "BatchSize": 4, "RandomSeeding": 3, "TrainingProgressReporting": None}
    trained = NetTrain(init(net), list(zip(xs, ys)), **opts)
    got = roundtrip(trained, tmp_path)
    assert_same_net(trained, got)
    np.testing.assert_array_equal(got(xs), trained(xs))
    again_a = NetTrain(trained, list(zip(xs, ys)), **opts)
    again_b = NetTrain(got, list(zip(xs, ys)), **opts)
    for k, t in again_a.arrays().items():
        assert torch.equal(again_b.arrays()[k], t), k
    assert not torch.equal(again_a.arrays()[(1, "InputGateBiases")], trained.arrays()[(1, "InputGateBiases")])


# ---- what cannot be saved -------------------------------------------------------------------------
def test_an_elementwise_python_function_is_refused_naming_the_layer_and_nothing_is_written(tmp_path):
    path = tmp_path / "net.wlnet"
    Export(path, LinearLayer(2, Input=3))
    before = path.read_bytes()
    net = NetChain([LinearLayer(3, Input=2), ElementwiseLayer(lambda x: x * 2), LinearLayer(1)])
    with pytest.raises(ExportError, match=r"ElementwiseLayer at position 2 holds the Python function <lambda>.*'Tanh'"):
        Export(path, net)
    assert path.read_bytes() == before
    graph = NetGraph({"a": LinearLayer(3, Input=2), "b": NetChain([ElementwiseLayer(np.tanh)])}, [("a", "b")])
    with pytest.raises(ExportError, match=r"ElementwiseLayer at position \('b', 1\) holds the Python function tanh"):
        Export(tmp_path / "other.wlnet", graph)
    assert sorted(os.listdir(tmp_path)) == ["net.wlnet"]


def test_classes_that_are_not_wlnets_own_and_other_objects_are_refused(tmp_path):
    class MyLinear(LinearLayer):
        pass

    with pytest.raises(ExportError, match=r"MyLinear.* not one of wlnet's own classes"):
        Export(tmp_path / "a.wlnet", NetChain([MyLinear(2, Input=3)]))
    with pytest.raises(ExportError, match="expected a net or a NetStateObject, but was given dict"):
        Export(tmp_path / "b.wlnet", {"net": 1})
    with pytest.raises(ExportError, match=r"the directory .* does not exist"):
        Export(tmp_path / "missing" / "c.wlnet", LinearLayer(2))
    (tmp_path / "d.wlnet").mkdir()
    with pytest.raises(ExportError, match="it is a directory"):
        Export(tmp_path / "d.wlnet", LinearLayer(2))
    assert sorted(os.listdir(tmp_path)) == ["d.wlnet"]


def test_a_layer_whose_kept_arguments_do_not_rebuild_it_is_refused(tmp_path):
    net = init(LinearLayer(2, Input=3))
    net._given = {"Input": 4}  # arguments that no longer describe the layer
    with pytest.raises(ExportError, match=r"cannot be saved: rebuilt from what it keeps"):
        Export(tmp_path / "a.wlnet", net)
    assert not os.listdir(tmp_path)


# ---- the dispatch ---------------------------------------------------------------------------------
def test_the_format_comes_from_the_extension_or_is_named(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("wlnet.io.onnx")
    fake.export_onnx = lambda path, net: calls.append(("export", os.fspath(path), net))
    fake.import_onnx = lambda path: calls.append(("import", os.fspath(path))) or "imported"
    monkeypatch.setitem(sys.modules, "wlnet.io.onnx", fake)
    net = LinearLayer(2, Input=3)
    assert Export(str(tmp_path / "m.ONNX"), net) == str(tmp_path / "m.ONNX")
    assert Import(tmp_path / "m.onnx") == "imported"
    assert calls == [("export", str(tmp_path / "m.ONNX"), net), ("import", str(tmp_path / "m.onnx"))]
    Export(tmp_path / "plain.bin", net, "WLNet")
    assert_same_net(net, Import(tmp_path / "plain.bin", "wlnet"))
    with pytest.raises(OptionError, match=r"cannot tell the format of .*'\.h5'.*\"WLNet\" \(\.wlnet\), \"ONNX\""):
        Export(tmp_path / "net.h5", net)
    with pytest.raises(OptionError, match=r"extension '\(none\)'"):
        Import(tmp_path / "net")
    with pytest.raises(OptionError, match="'HDF5' is not a format wlnet knows"):
        Import(tmp_path / "net.wlnet", "HDF5")
    with pytest.raises(OptionError, match="must be a string or a path"):
        Import(3)
    assert sorted(os.listdir(tmp_path)) == ["plain.bin"]


def test_without_an_onnx_module_onnx_files_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wlnet.io.onnx", None)  # as if the module did not exist

    def missing(name, package=None):
        raise ModuleNotFoundError(f"No module named {name!r}", name="wlnet.io.onnx")

    monkeypatch.setattr(w.io.importlib, "import_module", missing)
    with pytest.raises(NotSupportedError, match="no ONNX support"):
        Export(tmp_path / "m.onnx", LinearLayer(2))

    def no_onnx(name, package=None):
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    monkeypatch.setattr(w.io.importlib, "import_module", no_onnx)
    with pytest.raises(NotSupportedError, match=r"need the onnx package: pip install 'wlnet\[onnx\]'"):
        Import(tmp_path / "m.onnx")


def test_importing_wlnet_imports_no_file_format_library():
    code = ("import sys, wlnet; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('safetensors', 'onnx', 'onnxruntime', 'onnxscript', 'hypothesis')]; print(bad); "
            "sys.exit(1 if bad or 'wlnet.io.wlnet' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_kind_of_option_value_encodes_and_decodes_to_itself():
    from wlnet.io.structure import Decoder, Encoder

    owner = LinearLayer(2)
    enc, dec = Encoder(owner), Decoder({})
    values = [None, True, 0, -7, 10**30, 0.1, -0.0, math.inf, -math.inf, "Varying", "$x", [1, [2, (3,)]], (),
              ("Varying", Automatic), {"a": 1, "$b": 2}, {1: "x", (1, "State"): [0.5]}, slice(2, None),
              slice(1, -1, 2), All, DigitCharacter, NetPort(1, "State"), torch.tanh, np.int64(3), np.float32(0.5)]
    for v in values:
        got = dec.value(enc.value(v, owner), 0, "a value")
        want = v.item() if isinstance(v, np.generic) else v  # numpy scalars come back as Python numbers
        assert type(got) is type(want) and repr(got) == repr(want), v
    nan = dec.value(enc.value(math.nan, owner), 0, "a value")
    assert math.isnan(nan)
    for bad in (object(), b"bytes", {1, 2}, torch.zeros(2)):
        with pytest.raises(ExportError, match="cannot be saved"):
            enc.value(bad, owner)
