"""The layers around the LSTM, each against a numpy computation of its definition."""

from math import erf as _erf

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet.layers.basic import _FUNCTIONS

RNG = np.random.default_rng(11)


def test_linear_layer_matches_numpy_and_infers_k():
    W, b = RNG.normal(size=(2, 3)), RNG.normal(size=2)
    layer = w.LinearLayer(2, Weights=W, Biases=b)
    assert w.Information(layer, "ArraysDimensions") == {("Weights",): (2, 3), ("Biases",): (2,)}
    x = RNG.normal(size=(4, 3))
    np.testing.assert_allclose(layer(x.astype(np.float32)), x @ W.T + b, rtol=1e-5, atol=1e-5)
    with pytest.raises(w.InputError, match="size 3"):
        layer([1.0, 2.0])


def test_linear_layer_bad_weights_shape():
    with pytest.raises(w.ShapeError, match="dimensions 2×k"):
        w.LinearLayer(2, Weights=np.zeros((3, 3)))


def test_elementwise_functions():
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    for name, f in [("Tanh", np.tanh), ("LogisticSigmoid", lambda v: 1 / (1 + np.exp(-v))),
                    ("Ramp", lambda v: np.maximum(v, 0))]:
        np.testing.assert_allclose(w.ElementwiseLayer(name, Input=(3, 4))(x), f(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(w.OptionError, match="'Cosh' is not a known function"):
        w.ElementwiseLayer("Cosh")


_np_erf = np.vectorize(_erf)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _softplus(v):
    return np.log1p(np.exp(v))


# Wolfram's definitions of ElementwiseLayer["name"] (its reference page), written in numpy
WOLFRAM_FUNCTIONS = [
    ("ELU", lambda v: np.where(v >= 0, v, np.exp(v) - 1)),
    ("ExponentialLinearUnit", lambda v: np.where(v >= 0, v, np.exp(v) - 1)),
    ("SELU", lambda v: np.where(v >= 0, 1.0507009873554805 * v, 1.758099340847161 * (np.exp(v) - 1))),
    ("GELU", lambda v: 0.5 * v * (1 + _np_erf(v / np.sqrt(2)))),
    ("Swish", lambda v: v * _sig(v)),
    ("HardSwish", lambda v: v * np.minimum(np.maximum(v + 3, 0), 6) / 6),
    ("Mish", lambda v: v * np.tanh(np.log(1 + np.exp(v)))),
    ("SoftSign", lambda v: v / (1 + np.abs(v))),
    ("SoftPlus", lambda v: np.log(np.exp(v) + 1)),
    ("HardTanh", lambda v: np.clip(v, -1, 1)),
    ("HardSigmoid", lambda v: np.clip((v + 1) / 2, 0, 1)),
    ("Sigmoid", _sig),
    ("ReLU", lambda v: np.maximum(v, 0)),
    ("Abs", np.abs), ("Cos", np.cos), ("Sin", np.sin), ("Exp", np.exp), ("Square", np.square),
]


@pytest.mark.parametrize("name, f", WOLFRAM_FUNCTIONS, ids=[n for n, _ in WOLFRAM_FUNCTIONS])
def test_elementwise_functions_by_wolfram_name(name, f):
    x = (RNG.normal(size=(3, 4)) * 3).astype(np.float32)
    np.testing.assert_allclose(w.ElementwiseLayer(name, Input=(3, 4))(x), f(x.astype(np.float64)), rtol=1e-5,
                               atol=1e-6)


def test_elementwise_functions_of_positive_reals_and_powers():
    x = RNG.uniform(0.1, 4, size=(2, 5)).astype(np.float32)
    np.testing.assert_allclose(w.ElementwiseLayer("Log", Input=(2, 5))(x), np.log(x), rtol=1e-5)
    np.testing.assert_allclose(w.ElementwiseLayer("Sqrt", Input=(2, 5))(x), np.sqrt(x), rtol=1e-5)
    np.testing.assert_allclose(w.ElementwiseLayer(("Power", 3), Input=(2, 5))(x), x.astype(np.float64) ** 3,
                               rtol=1e-5)
    np.testing.assert_allclose(w.ElementwiseLayer(("Power", 0.5), Input=(2, 5))(x), np.sqrt(x), rtol=1e-5)
    with pytest.raises(w.OptionError, match=r'\("Power", p\) needs a real exponent p'):
        w.ElementwiseLayer(("Power", "two"))


def test_soft_plus_and_elu_have_finite_gradients_at_large_inputs():
    for name in ("SoftPlus", "ELU", "SELU", "Mish"):
        x = torch.tensor([-80.0, 0.0, 80.0, 200.0], dtype=torch.float64, requires_grad=True)
        y = _FUNCTIONS[name](x)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(x.grad).all(), name
        assert torch.autograd.gradcheck(_FUNCTIONS[name], (torch.tensor([-1.5, -0.2, 0.3, 2.0], dtype=torch.float64,
                                                                         requires_grad=True),))


def test_softmax_on_last_axis():
    x = RNG.normal(size=(2, 5)).astype(np.float32)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(w.SoftmaxLayer(Input=(2, 5))(x), e / e.sum(1, keepdims=True), rtol=1e-5)


def test_dropout_layer_only_in_training():
    layer = w.DropoutLayer(0.25, Input=(1000,))
    x = np.ones(1000, dtype=np.float32)
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, NetEvaluationMode="Train", RandomSeeding=3)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert 0.2 < 1 - kept.mean() < 0.3
    np.testing.assert_array_equal(y, layer(x, NetEvaluationMode="Train", RandomSeeding=3))
    assert not np.array_equal(layer(x, NetEvaluationMode="Train"), layer(x, NetEvaluationMode="Train"))
    with pytest.raises(w.OptionError, match="0 ≤ p < 1"):
        w.DropoutLayer(1.0)


def test_sequence_last_of_ragged_batch():
    layer = w.SequenceLastLayer()
    chain = w.NetChain([layer], Input=("Varying", 2))
    seqs = [RNG.normal(size=(t, 2)).astype(np.float32) for t in (3, 1, 2)]
    got = chain([s.tolist() for s in seqs])
    for s, g in zip(seqs, got):
        np.testing.assert_allclose(g, s[-1])


def test_unit_vector_and_embedding():
    enc = w.NetEncoder(("Characters", "abc"))
    onehot = w.NetChain([w.UnitVectorLayer()], Input=enc)
    assert onehot("cab") == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    E = RNG.normal(size=(3, 2))
    emb = w.NetChain([w.EmbeddingLayer(2, Weights=E)], Input=enc)
    np.testing.assert_allclose(emb("cab"), E[[2, 0, 1]], rtol=1e-6)
    with pytest.raises(w.ShapeError, match="integer indices"):
        w.NetChain([w.EmbeddingLayer(2)], Input=("Varying", 3))


def test_sequence_last_layer_input_option():
    layer = w.SequenceLastLayer(Input=("Varying", 3))
    assert layer([[1, 2, 3], [4, 5, 6]]) == [4, 5, 6]
    with pytest.raises(w.InputError, match="size-3"):
        layer([[1, 2]])


def test_named_functions_print_as_wolfram_code_and_read_back():
    net = w.NetChain([w.ElementwiseLayer(("Power", 3)), w.ElementwiseLayer("ELU"), w.ElementwiseLayer("Tanh"),
                      w.ElementwiseLayer("Square")], Input=2)
    code = w.to_wolfram(net)
    assert 'ElementwiseLayer[#^3 &]' in code and 'ElementwiseLayer["ELU"]' in code
    assert "ElementwiseLayer[Tanh]" in code and "ElementwiseLayer[#^2 &]" in code
    x = [0.5, -2.0]
    np.testing.assert_allclose(w.from_wolfram(code)(x), net(x), rtol=1e-6)
