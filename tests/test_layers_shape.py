"""SequenceIndicesLayer, ReshapeLayer, FlattenLayer, PartLayer, ReplicateLayer, AppendLayer,
PrependLayer, PaddingLayer, DotLayer: values against numpy example by example on ragged
batches, output types inferred, gradients by gradcheck in float64 through the compiled modules,
bad options and inputs as typed errors naming the layer and port (changing nothing), NetTrain
in a chain, Export/Import and to_torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wlnet import (
    All,
    AppendLayer,
    Automatic,
    DotLayer,
    EmbeddingLayer,
    Export,
    FlattenLayer,
    Import,
    InputError,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetChain,
    NetGraph,
    NetInitialize,
    NetPort,
    NetTrain,
    NotSupportedError,
    OptionError,
    PaddingLayer,
    PartLayer,
    PrependLayer,
    ReplicateLayer,
    ReshapeLayer,
    SequenceIndicesLayer,
    ShapeError,
    ThreadingLayer,
    from_wolfram,
    to_torch,
    to_wolfram,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx
from wlnet.core.shapes import VARYING, Index, Real

RNG = np.random.default_rng(5)
RAGGED = [RNG.standard_normal((t, 2)).round(3) for t in (4, 1, 3)]  # three sequences of size-2 vectors


def close(got, want):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=1e-6)


def each(layer, batch, ref):
    """The layer on a ragged batch equals `ref` applied to each example alone, and the layer on
    each example alone."""
    out = layer([b.tolist() for b in batch])
    assert len(out) == len(batch)
    for got, x in zip(out, batch):
        close(got, ref(x))
        close(layer(x.tolist()), ref(x))


def _np_reflect(x, a, b):
    return np.pad(x, [(a, b)] + [(0, 0)] * (x.ndim - 1), mode="reflect") if len(x) > 1 else \
        np.repeat(x, a + 1 + b, axis=0)


VALUE_CASES = {
    "SequenceIndices": (lambda: SequenceIndicesLayer(Input=("Varying", 2)), lambda x: np.arange(1, len(x) + 1)),
    "SequenceIndices-Maximum": (lambda: SequenceIndicesLayer(Maximum=2, Input=("Varying", 2)),
                                lambda x: np.minimum(np.arange(1, len(x) + 1), 2)),
    "Reshape-elements": (lambda: ReshapeLayer(("Varying", 2, 1), Input=("Varying", 2)),
                         lambda x: x.reshape(len(x), 2, 1)),
    "Flatten-steps": (lambda: FlattenLayer(Input=("Varying", 2)), lambda x: x.reshape(-1)),
    "Part-last": (lambda: PartLayer(-1, Input=("Varying", 2)), lambda x: x[-1]),
    "Part-first": (lambda: PartLayer(1, Input=("Varying", 2)), lambda x: x[0]),
    "Part-positions": (lambda: PartLayer([[1, -1]], Input=("Varying", 2)), lambda x: x[[0, -1]]),
    "Part-levels-as-a-list": (lambda: PartLayer([-1, 2], Input=("Varying", 2)), lambda x: x[-1, 1]),
    "Part-span-to-end": (lambda: PartLayer(slice(-2, None), Input=("Varying", 2)) , None),
    "Part-span-rest": (lambda: PartLayer(slice(1, -1, 2), Input=("Varying", 2)), lambda x: x[0::2]),
    "Part-two-levels": (lambda: PartLayer((All, 2), Input=("Varying", 2)), lambda x: x[:, 1]),
    "Replicate-elements": (lambda: ReplicateLayer(3, 2, Input=("Varying", 2)),
                           lambda x: np.repeat(x[:, None], 3, axis=1)),
    "Padding-constant": (lambda: PaddingLayer([[1, 2], [0, 1]], Padding=-1.5, Input=("Varying", 2)),
                         lambda x: np.pad(x, [(1, 2), (0, 1)], constant_values=-1.5)),
    "Padding-fixed": (lambda: PaddingLayer([[2, 1]], Padding="Fixed", Input=("Varying", 2)),
                      lambda x: np.pad(x, [(2, 1), (0, 0)], mode="edge")),
    "Padding-periodic": (lambda: PaddingLayer([[2, 3]], Padding="Periodic", Input=("Varying", 2)),
                         lambda x: np.pad(x, [(2, 3), (0, 0)], mode="wrap")),
    "Padding-reflected": (lambda: PaddingLayer([[2, 1]], Padding="Reflected", Input=("Varying", 2)),
                          lambda x: _np_reflect(x, 2, 1)),
}


@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_values_on_a_ragged_batch_match_numpy_example_by_example(case):
    make, ref = VALUE_CASES[case]
    layer = make()
    batch = RAGGED if case != "Part-span-to-end" else [RAGGED[0], RAGGED[2]]
    if ref is None:
        ref = lambda x: x[-2:]  # noqa: E731
    each(layer, batch, ref)


def test_a_span_at_level_one_gives_each_sequence_its_own_length_or_a_fixed_one():
    assert PartLayer(slice(2, None), Input=("Varying", 2)).output_ports()["Output"] == Real(VARYING, 2)
    assert PartLayer(slice(1, 2), Input=("Varying", 2)).output_ports()["Output"] == Real(2, 2)
    assert PartLayer(-1, Input=("Varying", 2)).output_ports()["Output"] == Real(2)
    out = PartLayer(slice(2, None), Input=("Varying", 2))([RAGGED[0].tolist(), RAGGED[2].tolist()])
    assert [len(o) for o in out] == [3, 2]
    close(out[1], RAGGED[2][1:])


def test_output_types_are_inferred():
    assert SequenceIndicesLayer(Maximum=5).output_ports()["Output"] == Index(VARYING, levels=5)
    assert SequenceIndicesLayer(Input=(3, 2)).output_ports()["Output"] == Index(3, levels=3)
    assert SequenceIndicesLayer(Input=(3, 2))([[1.0, 2.0]] * 3) == [1, 2, 3]
    assert ReshapeLayer((2, Automatic), Input=(3, 4)).output_ports()["Output"] == Real(2, 6)
    assert FlattenLayer(1, Input=(2, 3, 4)).output_ports()["Output"] == Real(6, 4)
    assert FlattenLayer(-1, Input=(2, 3, 4)).output_ports()["Output"] == Real(2, 12)
    assert FlattenLayer(Input=("Varying", 3)).output_ports()["Output"] == Real(VARYING)
    assert PartLayer((slice(1, 2), [3, 1, 2]), Input=(3, 4)).output_ports()["Output"] == Real(2, 3)
    assert ReplicateLayer([2, 3], 2, Input=(4, 5)).output_ports()["Output"] == Real(4, 2, 3, 5)
    assert AppendLayer(Input=(3, 2)).output_ports()["Output"] == Real(4, 2)
    assert AppendLayer(Element=2).input_ports()["Input"] == Real(VARYING, 2)
    assert PaddingLayer([[1, 1], [2, 0]], Input=(3, 4)).output_ports()["Output"] == Real(5, 6)
    assert DotLayer(Input=[(2, 3), (3, 4)]).output_ports()["Output"] == Real(2, 4)
    assert DotLayer(Input=[3, 3]).output_ports()["Output"] == Real()
    chain = NetChain([EmbeddingLayer(3, 6), PartLayer(-1), LinearLayer(2)])
    assert chain.output_ports()["Output"] == Real(2)


def test_a_list_names_levels_as_wolframs_part_layer_does():
    assert from_wolfram("PartLayer[{All, 2}]").input_form() == PartLayer([All, 2]).input_form()
    layer = PartLayer([All, 2], Input=("Varying", 2))
    assert to_wolfram(layer).startswith("PartLayer[{All, 2}")
    close(layer(RAGGED[0].tolist()), RAGGED[0][:, 1])
    assert layer.output_ports()["Output"] == Real(VARYING)


def test_fixed_shape_values_match_numpy():
    x = RNG.standard_normal((2, 3, 4)).round(3)
    close(ReshapeLayer((4, Automatic), Input=(2, 3, 4))(x.tolist()), x.reshape(4, 6))
    close(FlattenLayer(1, Input=(2, 3, 4))(x.tolist()), x.reshape(6, 4))
    close(FlattenLayer(-1, Input=(2, 3, 4))(x.tolist()), x.reshape(2, 12))
    close(FlattenLayer(Input=(2, 3, 4))(x.tolist()), x.reshape(-1))
    close(PartLayer((2, slice(1, 3, 2), [4, 1]), Input=(2, 3, 4))(x.tolist()), x[1][0:3:2][:, [3, 0]])
    close(PartLayer((All, -1), Input=(2, 3, 4))(x.tolist()), x[:, -1])
    close(ReplicateLayer([2, 2], 3, Input=(2, 3, 4))(x.tolist()),
          np.broadcast_to(x[:, :, None, None], (2, 3, 2, 2, 4)))
    close(PaddingLayer([[0, 0], [1, 0], [2, 2]], Padding="Reflected", Input=(2, 3, 4))(x.tolist()),
          np.pad(x, [(0, 0), (1, 0), (2, 2)], mode="reflect"))
    a, b, c = RNG.standard_normal((2, 3)), RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    close(DotLayer(Input=[(2, 3), (3, 4), 4])([a.tolist(), b.tolist(), c.tolist()]), a @ b @ c)


def test_append_and_prepend_put_the_element_at_each_sequences_own_ends():
    elems = RNG.standard_normal((3, 2)).round(3)
    for cls, ref in ((AppendLayer, lambda x, e: np.vstack([x, e])), (PrependLayer, lambda x, e: np.vstack([e, x]))):
        layer = cls(Input=("Varying", 2))
        out = layer({"Input": [r.tolist() for r in RAGGED], "Element": elems.tolist()})
        for got, x, e in zip(out, RAGGED, elems):
            close(got, ref(x, e))


def test_dot_of_weights_per_step_with_a_sequence_sums_over_real_steps_only():
    w = [RNG.standard_normal(len(x)).round(3) for x in RAGGED]
    dot = DotLayer(Input=[("Varying",), ("Varying", 2)])
    assert dot.output_ports()["Output"] == Real(2)
    out = dot([[v.tolist(), x.tolist()] for v, x in zip(w, RAGGED)])
    for got, v, x in zip(out, w, RAGGED):
        close(got, v @ x)


# ---- gradients ---------------------------------------------------------------------------------
def _grad(layer, make_inputs, leaves):
    module = layer.build(trainable=True).double()

    def f(*xs):
        out, _ = module(make_inputs(*xs), {}, Ctx(False, None))
        y = out["Output"]
        return y.data if isinstance(y, Seq) else y

    assert torch.autograd.gradcheck(f, tuple(leaves))


LENGTHS = torch.tensor([3, 2, 3])
GRAD_CASES = {
    "Part-span": PartLayer(slice(2, None), Input=("Varying", 2)),
    "Part-last": PartLayer(-1, Input=("Varying", 2)),
    "Flatten": FlattenLayer(Input=("Varying", 2)),
    "Reshape": ReshapeLayer(("Varying", 1, 2), Input=("Varying", 2)),
    "Replicate": ReplicateLayer(2, 2, Input=("Varying", 2)),
    "Padding-reflected": PaddingLayer([[2, 1]], Padding="Reflected", Input=("Varying", 2)),
    "Padding-constant": PaddingLayer([[1, 1], [1, 0]], Padding=2.0, Input=("Varying", 2)),
}


@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_gradcheck_float64_on_a_ragged_batch(case):
    x = torch.randn(3, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) \
        * Seq(torch.zeros(3, 3), LENGTHS).mask().unsqueeze(-1)
    x.requires_grad_()
    _grad(GRAD_CASES[case], lambda x: {"Input": Seq(x, LENGTHS)}, [x])


def test_gradcheck_append_prepend_and_dot():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    e = torch.randn(3, 2, dtype=torch.float64, generator=gen).requires_grad_()
    for cls in (AppendLayer, PrependLayer):
        _grad(cls(Input=("Varying", 2)), lambda x, e: {"Input": Seq(x, LENGTHS), "Element": e}, [x, e])
    w = torch.randn(3, 3, dtype=torch.float64, generator=gen).requires_grad_()
    dot = DotLayer(Input=[("Varying",), ("Varying", 2)])
    _grad(dot, lambda w, x: {"Input": [Seq(w, LENGTHS), Seq(x, LENGTHS)]}, [w, x])


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: PartLayer(0), lambda: PartLayer(slice(1, 3, -1)), lambda: PartLayer([]), lambda: PartLayer("a"),
    lambda: ReshapeLayer((Automatic, Automatic)), lambda: ReshapeLayer(3), lambda: ReshapeLayer((0, 2)),
    lambda: FlattenLayer(0), lambda: FlattenLayer(1.5), lambda: ReplicateLayer(0), lambda: ReplicateLayer(2, 0),
    lambda: PaddingLayer([[1]]), lambda: PaddingLayer([[-1, 0]]), lambda: PaddingLayer([[1, 1]], Padding="Wrap"),
    lambda: SequenceIndicesLayer(Maximum=0), lambda: PartLayer(1, Colour=3),
])
def test_bad_options_are_option_errors_naming_the_layer(make):
    with pytest.raises(OptionError) as info:
        make()
    assert "Layer" in str(info.value)


@pytest.mark.parametrize("make", [
    lambda: ReshapeLayer((5,), Input=(2, 2)), lambda: ReshapeLayer((3, Automatic), Input=4),
    lambda: ReshapeLayer((2,), Input=("Varying", 2)), lambda: FlattenLayer(2, Input=(2, 2)),
    lambda: PartLayer(4, Input=(3, 2)), lambda: PartLayer((1, 1, 1), Input=(3, 2)),
    lambda: ReplicateLayer(2, Input=("Varying", 2)), lambda: ReplicateLayer(2, 4, Input=(2,)),
    lambda: PaddingLayer([[1, 1], [1, 1]], Input=3), lambda: AppendLayer(Input=(3, 2), Element=3),
    lambda: DotLayer(Input=[3, 4]), lambda: SequenceIndicesLayer(Input="Real"),
])
def test_shapes_that_cannot_fit_are_shape_errors_naming_the_layer_and_port(make):
    with pytest.raises(ShapeError) as info:
        make()
    assert "Layer" in str(info.value) and "port" in str(info.value)


def test_dot_transpose_specifications_are_not_supported_yet():
    with pytest.raises(NotSupportedError):
        DotLayer([None, [2, 1]])


def test_bad_inputs_are_input_errors_naming_the_port_and_change_nothing():
    layer = PartLayer(3, Input=("Varying", 2))
    good = [RAGGED[0].tolist()]
    before = layer(good)
    with pytest.raises(InputError) as info:
        layer([RAGGED[0].tolist(), RAGGED[1].tolist()])
    assert 'PartLayer, port "Input"' in str(info.value) and "batch element 2" in str(info.value)
    with pytest.raises(InputError):
        PartLayer(slice(3, None), Input=("Varying", 2))(RAGGED[1].tolist())
    with pytest.raises(InputError) as info:
        AppendLayer(Input=("Varying", 2))({"Input": RAGGED[0].tolist(), "Element": [1.0, 2.0, 3.0]})
    assert 'port "Element"' in str(info.value)
    with pytest.raises(InputError) as info:
        ReshapeLayer((2, 2), Input=4)([1.0, 2.0, 3.0])
    assert 'port "Input"' in str(info.value)
    assert layer(good) == before


# ---- in nets, training, files ------------------------------------------------------------------
def test_net_train_one_round_through_the_new_layers_in_a_chain():
    chain = NetChain([LongShortTermMemoryLayer(3), PaddingLayer([[1, 0]], Padding="Fixed"), PartLayer(slice(1, -1)),
                      ReplicateLayer(2, 2), FlattenLayer(-1), PartLayer(-1), ReshapeLayer((2, 3)),
                      FlattenLayer(), LinearLayer(1)], Input=("Varying", 2))
    data = [(x.tolist(), [float(x.sum())]) for x in RAGGED]
    net = NetInitialize(chain, RandomSeeding=3)
    res = NetTrain(net, data, All, MaxTrainingRounds=1, TrainingProgressReporting=None, RandomSeeding=1)
    assert res["TotalRounds"] == 1
    trained = res["TrainedNet"]
    before, after = net.arrays(), trained.arrays()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_net_train_one_round_through_indices_append_prepend_and_dot_in_a_graph():
    g = NetGraph({"idx": SequenceIndicesLayer(Maximum=6), "pos": EmbeddingLayer(2, 6), "add": ThreadingLayer("Plus"),
                  "first": PartLayer(1), "lin": LinearLayer(2), "app": AppendLayer(), "pre": PrependLayer(),
                  "lstm": LongShortTermMemoryLayer(3), "last": PartLayer(-1), "lin3": LinearLayer(3),
                  "dot": DotLayer()},
                 [(NetPort("Input"), "idx"), ("idx", "pos"), ([NetPort("Input"), "pos"], "add"),
                  (NetPort("Input"), "first"), ("first", "lin"),
                  ("add", NetPort("app", "Input")), ("lin", NetPort("app", "Element")),
                  ("app", NetPort("pre", "Input")), ("lin", NetPort("pre", "Element")),
                  ("pre", "lstm"), ("lstm", "last"), ("first", "lin3"), (["last", "lin3"], "dot")],
                 Input=("Varying", 2))
    assert g.output_ports()["Output"] == Real()
    net = NetInitialize(g, RandomSeeding=5)
    data = [(x.tolist(), float(x.sum())) for x in RAGGED]
    res = NetTrain(net, data, All, MaxTrainingRounds=1, TrainingProgressReporting=None, RandomSeeding=1)
    before, after = net.arrays(), res["TrainedNet"].arrays()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every array got a gradient


ROUND_TRIP = {
    "SequenceIndices": (lambda: SequenceIndicesLayer(Maximum=4, Input=("Varying", 2)), RAGGED[0]),
    "Reshape": (lambda: ReshapeLayer((2, Automatic), Input=4), np.arange(4.0)),
    "Flatten": (lambda: FlattenLayer(-1, Input=(2, 2)), np.ones((2, 2))),
    "Part": (lambda: PartLayer((slice(1, -1, 2), [2, 1]), Input=("Varying", 2)), RAGGED[0]),
    "Replicate": (lambda: ReplicateLayer([2, 3], 2, Input=("Varying", 2)), RAGGED[0]),
    "Append": (lambda: AppendLayer(Input=("Varying", 2)), {"Input": RAGGED[0], "Element": RAGGED[1][0]}),
    "Prepend": (lambda: PrependLayer(Element=2), {"Input": RAGGED[0], "Element": RAGGED[1][0]}),
    "Padding": (lambda: PaddingLayer([[1, 2]], Padding="Periodic", Input="Varying"), np.arange(3.0)),
    "Dot-in-a-graph": (lambda: NetGraph({"dot": DotLayer()}, [(NetPort("a"), "dot"), (NetPort("b"), "dot")],
                                        a=(2, 3), b=3), {"a": np.ones((2, 3)), "b": np.arange(3.0)}),
}


def _lists(x):
    if isinstance(x, dict):
        return {k: v.tolist() for k, v in x.items()}
    if isinstance(x, list):
        return [v.tolist() for v in x]
    return x.tolist()


@pytest.mark.parametrize("case", list(ROUND_TRIP))
def test_export_import_and_to_torch(case, tmp_path):
    make, x = ROUND_TRIP[case]
    net = make()
    path = tmp_path / "net.wlnet"
    Export(path, net)
    back = Import(path)
    assert type(back) is type(net) and back.input_form() == net.input_form()
    assert back.input_ports() == net.input_ports() and back.output_ports() == net.output_ports()
    want = net(_lists(x))
    assert back(_lists(x)) == want
    module = to_torch(net)
    if isinstance(x, dict):
        args = [torch.tensor(np.asarray(x[p]), dtype=torch.float32).unsqueeze(0) for p in net.input_ports()]
    elif isinstance(x, list):
        args = [[torch.tensor(v, dtype=torch.float32).unsqueeze(0) for v in x]]
    else:
        args = [torch.tensor(x, dtype=torch.float32).unsqueeze(0)]
    close(module(*args)[0].detach(), want)


# ---- ONNX forms (io/onnx/export_layers.py) -----------------------------------------------------
ONNX_CASES = {
    "SequenceIndices": (lambda: SequenceIndicesLayer(Maximum=3, Input=("Varying", 2)), None),
    "Part-last": (lambda: PartLayer(-1, Input=("Varying", 2)), None),
    "Part-second": (lambda: PartLayer(2, Input=("Varying", 2)), None),
    "Part-span-rest": (lambda: PartLayer(slice(2, None), Input=("Varying", 2)), None),
    "Part-span-most": (lambda: PartLayer(slice(1, -2), Input=("Varying", 2)), None),
    "Part-span-fixed": (lambda: PartLayer(slice(1, 2), Input=("Varying", 2)), None),
    "Part-levels": (lambda: PartLayer((All, [2, 1]), Input=("Varying", 2)), None),
    "Append": (lambda: AppendLayer(Input=("Varying", 2)), "Element"),
    "Prepend": (lambda: PrependLayer(Input=("Varying", 2)), "Element"),
    "Padding-constant": (lambda: PaddingLayer([[1, 2], [1, 0]], Padding=-1.5, Input=("Varying", 2)), None),
    "Padding-zero": (lambda: PaddingLayer([[2, 1]], Input=("Varying", 2)), None),
    "Padding-fixed-level-2": (lambda: PaddingLayer([[0, 0], [2, 1]], Padding="Fixed", Input=("Varying", 2)), None),
    "Reshape-then-flatten": (lambda: NetChain([ReshapeLayer(("Varying", 2, 1)), FlattenLayer(-1)],
                                              Input=("Varying", 2)), None),
    "Replicate": (lambda: ReplicateLayer([3, 2], 2, Input=("Varying", 2)), None),
    "Dot-per-step": (lambda: NetGraph({"dot": DotLayer()}, [(NetPort("Input"), "dot"), (NetPort("Element"), "dot")],
                                      Input=("Varying", 2), Element=2), "Element"),
    "Dot-over-steps": (lambda: NetGraph({"w": PartLayer((All, 1)), "dot": DotLayer()},
                                        [(NetPort("Input"), "w"), (["w", NetPort("Input")], "dot")],
                                        Input=("Varying", 2)), None),
    "Dot-matrix": (lambda: NetGraph({"dot": DotLayer()}, [(NetPort("Input"), "dot"), (NetPort("Element"), "dot")],
                                    Input=("Varying", 2), Element=(2, 3)), "Element"),
}


@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_forms_match_wlnet_in_onnxruntime_on_a_ragged_batch(case):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx.reference import ReferenceEvaluator

    from wlnet.io.onnx import to_model
    make, extra = ONNX_CASES[case]
    net = make()
    model = to_model(net)
    onnx.checker.check_model(model, full_check=True)
    seqs = [x.astype(np.float32) for x in (RAGGED[0], RAGGED[2], RAGGED[0][:2])]  # lengths 4, 3, 2
    elems = RNG.standard_normal((len(seqs), *((2, 3) if case == "Dot-matrix" else (2,)))).astype(np.float32)
    data = {"Input": [s.tolist() for s in seqs], **({extra: elems.tolist()} if extra else {})}
    want = net(data)
    x = np.zeros((len(seqs), max(len(s) for s in seqs), 2), np.float32)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = s
    feeds = {"Input": x, "Input_lengths": np.array([len(s) for s in seqs], np.int64),
             **({extra: elems} if extra else {})}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    got = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    for i, v in enumerate(want):
        v = np.asarray(v)
        close(got[0][i][:len(v)] if v.ndim == got[0][i].ndim and v.ndim and len(v) < len(got[0][i]) else got[0][i], v)
    one = {"Input": x[:1, :len(seqs[0])], **({extra: elems[:1]} if extra else {})}  # one example: no padding
    close(ReferenceEvaluator(model).run(None, one)[0][0], want[0])
