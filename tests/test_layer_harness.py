"""One harness that runs every layer type the same way: each layer, initialized
with a given input shape and a fixed seed, is checked for

- list / numpy / torch input → the same kind out, equal values, equal to an independent numpy
  computation of the layer's formula;
- a float64 gradcheck through its compiled module, where it has arrays or real inputs;
- InputForm: `eval(Information(layer, "InputForm"), vars(wlnet))` rebuilds equal arrays and outputs;
- a literal snapshot of every array name and shape (Information "ArraysDimensions");
- bad inputs (wrong size, wrong rank, NaN, empty): each a NetError naming the layer and the port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import reference as R
import reference_cells as C
import wlnet
from wlnet import (
    BasicRecurrentLayer,
    BatchNormalizationLayer,
    ConvolutionLayer,
    DropoutLayer,
    ElementwiseLayer,
    EmbeddingLayer,
    FlattenLayer,
    GatedRecurrentLayer,
    Information,
    InputError,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetError,
    NetInitialize,
    NormalizationLayer,
    PaddingLayer,
    PartLayer,
    PoolingLayer,
    ReplicateLayer,
    ReshapeLayer,
    SequenceLastLayer,
    SoftmaxLayer,
    UnitVectorLayer,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx

SEED = 4321
NAN = float("nan")
SEQ = [[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]  # a sequence of three size-2 vectors
VEC = [0.5, -1.0, 2.0]  # a size-3 vector


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _lstm(a, x):
    return R.forward(x, a)[0]


@dataclass
class Case:
    id: str
    make: Callable  # () → the uninitialized layer, with its input shape
    x: object  # one example (or, for UnitVectorLayer, a batch of indices) as plain lists
    expected: Callable  # (arrays {name: float64}, x as numpy) → the output as numpy
    dims: dict  # the literal ArraysDimensions snapshot
    bad: dict  # label → bad input, each must be refused naming the port
    integer: bool = False  # integer (index) input
    sequence: bool = False  # the port takes a sequence (run as a Seq through the module)
    train_ctx: bool = False  # gradcheck in training mode (with a generator seeded per call)


VECTOR_BAD = {"wrong size": [1.0, 2.0], "wrong rank": [[[1.0, 2.0, 3.0]]], "NaN": [1.0, NAN, 3.0], "empty": []}
SEQ_BAD = {"wrong size": [[1.0, 2.0, 3.0]], "wrong rank": [1.0, 2.0], "NaN": [[1.0, 2.0], [NAN, 0.0]], "empty": []}
INDEX_BAD = {"wrong size": [1, 9], "wrong rank": [[[1]]], "NaN": [1.0, NAN], "empty": []}

CASES = [
    Case("LinearLayer", lambda: LinearLayer(2, Input=3), VEC,
         lambda a, x: a["Weights"] @ x + a["Biases"], {("Weights",): (2, 3), ("Biases",): (2,)}, VECTOR_BAD),
    Case("ElementwiseLayer", lambda: ElementwiseLayer("Tanh", Input=3), VEC, lambda a, x: np.tanh(x), {}, VECTOR_BAD),
    Case("SoftmaxLayer", lambda: SoftmaxLayer(Input=3), VEC, lambda a, x: _softmax(x), {}, VECTOR_BAD),
    Case("DropoutLayer", lambda: DropoutLayer(0.3, Input=3), VEC, lambda a, x: x, {}, VECTOR_BAD, train_ctx=True),
    Case("SequenceLastLayer", lambda: SequenceLastLayer(Input=("Varying", 2)), SEQ, lambda a, x: x[-1], {}, SEQ_BAD,
         sequence=True),
    Case("UnitVectorLayer", lambda: UnitVectorLayer(4), [3, 1], lambda a, x: np.eye(4)[x - 1], {}, INDEX_BAD,
         integer=True),
    Case("EmbeddingLayer", lambda: EmbeddingLayer(3, 5), [1, 5, 2], lambda a, x: a["Weights"][x - 1],
         {("Weights",): (5, 3)}, INDEX_BAD, integer=True, sequence=True),
    Case("LongShortTermMemoryLayer", lambda: LongShortTermMemoryLayer(3, Input=("Varying", 2)), SEQ, _lstm,
         {(f"{g}Gate{p}",): (3, 2) if p == "InputWeights" else (3, 3) if p == "StateWeights" else (3,)
          for g in ("Input", "Output", "Forget", "Memory") for p in ("InputWeights", "StateWeights", "Biases")},
         SEQ_BAD, sequence=True),
    Case("GatedRecurrentLayer", lambda: GatedRecurrentLayer(3, Input=("Varying", 2)), SEQ,
         lambda a, x: C.forward("GRU", x, a)[0],
         {("InputGateInputWeights",): (3, 2), ("InputGateStateWeights",): (3, 3), ("InputGateBiases",): (3,),
          ("ResetGateInputWeights",): (3, 2), ("ResetGateStateWeights",): (3, 3), ("ResetGateBiases",): (3,),
          ("MemoryGateInputWeights",): (3, 2), ("MemoryGateStateWeights",): (3, 3), ("MemoryGateBiases",): (3,)},
         SEQ_BAD, sequence=True),
    Case("BasicRecurrentLayer", lambda: BasicRecurrentLayer(3, Input=("Varying", 2)), SEQ,
         lambda a, x: C.forward("RNN", x, a)[0],
         {("InputWeights",): (3, 2), ("StateWeights",): (3, 3), ("Biases",): (3,)}, SEQ_BAD, sequence=True),
    Case("ReshapeLayer", lambda: ReshapeLayer((3, 1), Input=3), VEC, lambda a, x: x.reshape(3, 1), {}, VECTOR_BAD),
    Case("FlattenLayer", lambda: FlattenLayer(Input=("Varying", 2)), SEQ, lambda a, x: x.reshape(-1), {}, SEQ_BAD,
         sequence=True),
    Case("PartLayer", lambda: PartLayer(-1, Input=("Varying", 2)), SEQ, lambda a, x: x[-1], {}, SEQ_BAD,
         sequence=True),
    Case("ReplicateLayer", lambda: ReplicateLayer(2, Input=3), VEC, lambda a, x: np.stack([x, x]), {}, VECTOR_BAD),
    Case("PaddingLayer", lambda: PaddingLayer([[1, 2]], Padding="Reflected", Input=3), VEC,
         lambda a, x: np.pad(x, (1, 2), mode="reflect"), {}, VECTOR_BAD),
    Case("NormalizationLayer", lambda: NormalizationLayer(Input=3), VEC,
         lambda a, x: (x - x.mean()) / np.sqrt(x.var() + 0.001) * a["Scaling"] + a["Biases"],
         {("Scaling",): (3,), ("Biases",): (3,)}, VECTOR_BAD),
    Case("BatchNormalizationLayer", lambda: BatchNormalizationLayer(Input=3), VEC,
         lambda a, x: (x - a["MovingMean"]) / np.sqrt(a["MovingVariance"] + 0.001) * a["Scaling"] + a["Biases"],
         {("Scaling",): (3,), ("Biases",): (3,), ("MovingMean",): (3,), ("MovingVariance",): (3,)}, VECTOR_BAD),
    Case("ConvolutionLayer", lambda: ConvolutionLayer(2, 2, PaddingSize=1, Interleaving=True, Input=("Varying", 2)),
         SEQ, lambda a, x: R_conv(a, np.pad(x, ((1, 1), (0, 0)))), {("Weights",): (2, 2, 2), ("Biases",): (2,)},
         SEQ_BAD, sequence=True),
    Case("PoolingLayer", lambda: PoolingLayer(2, Function="Mean", PaddingSize=1, Interleaving=True,
                                              Input=("Varying", 2)), SEQ,
         lambda a, x: (lambda p: (p[:-1] + p[1:]) / 2)(np.pad(x, ((1, 1), (0, 0)))), {}, SEQ_BAD, sequence=True),
]
IDS = [c.id for c in CASES]


def R_conv(a, x):
    """A 1-D convolution (Weights n×k×s) of a padded sequence x (L×k), stride 1."""
    w, b = a["Weights"], a["Biases"]
    s = w.shape[2]
    return np.stack([np.einsum("nks,sk->n", w, x[t:t + s]) + b for t in range(len(x) - s + 1)])


def initialized(case: Case):
    return NetInitialize(case.make(), RandomSeeding=SEED)


def arrays64(layer) -> dict:
    return {key[-1]: v.astype(np.float64) for key, v in Information(layer, "Arrays").items()}


def as_kind(data, kind: str, integer: bool):
    if kind == "list":
        return data
    if kind == "numpy":
        return np.array(data, dtype=np.int64 if integer else np.float32)
    return torch.tensor(data, dtype=torch.int64 if integer else torch.float32)


def is_float_list(v) -> bool:
    return type(v) is float or (isinstance(v, list) and len(v) > 0 and all(is_float_list(e) for e in v))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_data_kinds_in_equal_kind_out_and_the_formula(case):
    layer = initialized(case)
    assert type(layer).__name__ == case.id and layer.initialized()
    expected = case.expected(arrays64(layer), np.array(case.x, dtype=np.int64 if case.integer else np.float64))
    outs = {kind: layer(as_kind(case.x, kind, case.integer)) for kind in ("list", "numpy", "torch")}
    assert is_float_list(outs["list"])
    assert isinstance(outs["numpy"], np.ndarray) and outs["numpy"].dtype == np.float32
    assert isinstance(outs["torch"], torch.Tensor) and outs["torch"].dtype == torch.float32
    values = {kind: np.asarray(v.numpy() if kind == "torch" else v) for kind, v in outs.items()}
    for kind, v in values.items():
        assert v.shape == expected.shape, kind
        np.testing.assert_array_equal(v, values["list"], err_msg=kind)
    np.testing.assert_allclose(values["list"], expected, rtol=1e-5, atol=1e-6)


def _module_inputs(case: Case, gen: torch.Generator):
    """A batch for the compiled module: (inputs dict maker from x, x (float64, or int64) or None)."""
    if case.integer:
        idx = torch.tensor([[1, 5, 2], [3, 3, 4]]) if case.sequence else torch.tensor([3, 1])
        return (lambda x: {"Input": Seq(idx, torch.tensor([3, 2])) if case.sequence else idx}), None
    if case.sequence:
        x = torch.randn(2, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
        return (lambda x: {"Input": Seq(x, torch.tensor([3, 1]))}), x
    x = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    return (lambda x: {"Input": x}), x


GRADCHECK = [c for c in CASES if c.dims or not c.integer]  # arrays or real inputs


@pytest.mark.parametrize("case", GRADCHECK, ids=[c.id for c in GRADCHECK])
def test_module_gradcheck_float64(case):
    layer = initialized(case)
    module = layer.build(trainable=True).double()
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    assert sorted(names) == sorted(key[-1] for key in case.dims)
    make_inputs, x = _module_inputs(case, torch.Generator().manual_seed(2))

    def f(*args):
        xs, ps = (args[0], args[1:]) if x is not None else (None, args)
        ctx = Ctx(True, torch.Generator().manual_seed(3)) if case.train_ctx else Ctx(False, None)
        out, _ = torch.func.functional_call(module, dict(zip(names, ps)), (make_inputs(xs), {}, ctx))
        y = out["Output"]
        return y.data if isinstance(y, Seq) else y

    args = ([x] if x is not None else []) + params
    assert args
    assert torch.autograd.gradcheck(f, tuple(args))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inputform_rebuilds_equal_layer(case):
    layer = initialized(case)
    code = Information(layer, "InputForm")
    assert code.startswith(f"{case.id}(")
    rebuilt = eval(code, vars(wlnet))
    assert type(rebuilt) is type(layer) and rebuilt is not layer
    assert Information(rebuilt, "InputForm") == code
    a, b = Information(layer, "Arrays"), Information(rebuilt, "Arrays")
    assert list(a) == list(b)
    assert all(np.array_equal(a[key], b[key]) for key in a)
    assert rebuilt(case.x) == layer(case.x)
    for prop in ("InputPorts", "OutputPorts"):
        assert Information(rebuilt, prop) == Information(layer, prop)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_arrays_dimensions_snapshot(case):
    layer = initialized(case)
    assert Information(layer, "ArraysDimensions") == case.dims
    assert list(Information(layer, "ArraysDimensions")) == list(case.dims)  # the order too
    assert {key: v.shape for key, v in Information(layer, "Arrays").items()} == case.dims


@pytest.mark.parametrize("what", ["wrong size", "wrong rank", "NaN", "empty"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_inputs_name_the_port(case, what):
    layer = initialized(case)
    before = layer(case.x)
    with pytest.raises(NetError) as info:
        layer(case.bad[what])
    assert isinstance(info.value, InputError)
    msg = str(info.value)
    assert case.id in msg and 'port "Input"' in msg, msg
    assert layer(case.x) == before  # nothing changed


def test_unit_vector_layer_takes_a_numpy_scalar_index():
    layer = initialized(CASES[IDS.index("UnitVectorLayer")])
    assert layer(3) == [0.0, 0.0, 1.0, 0.0]
    assert layer(torch.tensor(3)).tolist() == [0.0, 0.0, 1.0, 0.0]
    out = layer(np.array(3))
    assert isinstance(out, np.ndarray) and out.tolist() == [0.0, 0.0, 1.0, 0.0]


def test_inputform_keeps_learning_rate_multipliers():
    layer = LinearLayer(2, Input=3, LearningRateMultipliers=0)
    for net in (layer, NetInitialize(layer, RandomSeeding=SEED)):
        code = Information(net, "InputForm")
        assert code.startswith("LinearLayer(2, Input=3, LearningRateMultipliers=0")
        rebuilt = eval(code, vars(wlnet))
        assert Information(rebuilt, "ArraysLearningRateMultipliers") == {("Weights",): 0.0, ("Biases",): 0.0}
        assert Information(rebuilt, "InputForm") == code
