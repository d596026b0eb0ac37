"""The layers around the LSTM, each against a numpy computation of its definition."""

import numpy as np
import pytest

import wlnet as w

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
