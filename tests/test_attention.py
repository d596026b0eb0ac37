"""AttentionLayer and SequenceAttentionLayer against a numpy reference of the formula (each
example over its own keys), gradients by gradcheck, torch's scaled_dot_product_attention, masks,
NetTrain, the code that rebuilds them, and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wlnet import (
    AttentionLayer,
    InputError,
    NetExtract,
    NetGraph,
    NetInitialize,
    NetPort,
    NotSupportedError,
    OptionError,
    SequenceAttentionLayer,
    SequenceLastLayer,
    ShapeError,
)
from wlnet.core.data import Seq
from wlnet.core.runtime import Ctx
from wlnet.train.api import NetTrain


def reference(K, V, Q, W=None, sqrt=False, causal=False, window=None):
    """One example: K n×k, V n×v, Q q or m×q → (output, weights n or n×m), in float64."""
    K, V, Q = (np.asarray(a, np.float64) for a in (K, V, Q))
    many = Q.ndim == 2
    Qs = Q if many else Q[None]
    out, weights = [], []
    for i, q in enumerate(Qs):
        s = np.array([k @ (W @ q if W is not None else q) for k in K])
        if sqrt:
            s = s / math.sqrt(K.shape[1])
        if causal:
            j = np.arange(len(K))
            s = np.where((j > i) | ((j <= i - window) if window else False), -np.inf, s)
        w = np.exp(s - s.max())
        w = w / w.sum()
        out.append(w @ V)
        weights.append(w)
    out, weights = np.array(out), np.array(weights).T  # (m, v), (n, m)
    return (out, weights) if many else (out[0], weights[:, 0])


def ragged(rng, lengths, size):
    return [rng.standard_normal((n, size)).astype(np.float32) for n in lengths]


@pytest.mark.parametrize("scoring", ["Dot", "Bilinear"])
@pytest.mark.parametrize("sqrt", [False, True])
def test_one_query_over_ragged_keys_matches_the_formula(scoring, sqrt):
    rng = np.random.default_rng(1)
    q = 3 if scoring == "Dot" else 4
    layer = NetInitialize(AttentionLayer(scoring, Key=("Varying", 3), Value=("Varying", 2), Query=q,
                                         ScoreRescaling="DimensionSqrt" if sqrt else None), RandomSeeding=5)
    lengths = [5, 2, 1]
    K, V = ragged(rng, lengths, 3), ragged(rng, lengths, 2)
    Q = rng.standard_normal((3, q)).astype(np.float32)
    out = layer({"Key": [k.tolist() for k in K], "Value": [v.tolist() for v in V], "Query": Q.tolist()})
    W = np.asarray(layer.extract("Weights"), np.float64) if scoring == "Bilinear" else None
    for b, n in enumerate(lengths):
        o, w = reference(K[b], V[b], Q[b], W, sqrt)
        np.testing.assert_allclose(out["Output"][b], o, rtol=1e-5, atol=1e-6)
        assert len(out["AttentionWeights"][b]) == n
        np.testing.assert_allclose(out["AttentionWeights"][b], w, rtol=1e-5, atol=1e-6)


def test_a_query_sequence_gives_a_sequence_as_long_as_the_queries():
    rng = np.random.default_rng(2)
    layer = NetInitialize(AttentionLayer(Key=("Varying", 3), Value=("Varying", 2), Query=("Varying", 4)))
    K, V, Q = ragged(rng, [4, 2], 3), ragged(rng, [4, 2], 2), ragged(rng, [3, 5], 4)
    out = layer({"Key": K, "Value": V, "Query": Q})
    W = np.asarray(layer.extract("Weights"), np.float64)
    for b in range(2):
        o, w = reference(K[b], V[b], Q[b], W)
        assert np.asarray(out["Output"][b]).shape == (len(Q[b]), 2)
        np.testing.assert_allclose(out["Output"][b], o, rtol=1e-5, atol=1e-6)
        # weights per key: the columns past this example's queries are zero
        np.testing.assert_allclose(np.asarray(out["AttentionWeights"][b])[:, :len(Q[b])], w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("window", [None, 2])
def test_causal_mask(window):
    rng = np.random.default_rng(3)
    mask = "Causal" if window is None else ("Causal", window)
    layer = AttentionLayer("Dot", Mask=mask)
    X = ragged(rng, [4, 3], 3)
    V = ragged(rng, [4, 3], 2)
    out = layer({"Key": X, "Value": V, "Query": X})
    for b in range(2):
        o, w = reference(X[b], V[b], X[b], causal=True, window=window)
        np.testing.assert_allclose(out["Output"][b], o, rtol=1e-5, atol=1e-6)
        assert np.all(np.triu(np.asarray(out["AttentionWeights"][b]).T, 1) == 0)  # query i sees keys ≤ i


def test_equals_torch_scaled_dot_product_attention():
    gen = torch.Generator().manual_seed(4)
    Q, K, V = (torch.randn(2, 5, 8, generator=gen) for _ in range(3))
    layer = AttentionLayer("Dot", ScoreRescaling="DimensionSqrt", Mask="Causal")
    out = layer({"Key": K, "Value": V, "Query": Q}, "Output")
    expected = torch.nn.functional.scaled_dot_product_attention(Q, K, V, is_causal=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("many", [False, True])
def test_gradcheck_through_keys_values_queries_and_weights(many):
    layer = NetInitialize(AttentionLayer(Key=("Varying", 3), Value=("Varying", 2),
                                         Query=("Varying", 4) if many else 4))
    module = layer.build(trainable=True).double()
    gen = torch.Generator().manual_seed(5)
    K, V = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64), torch.randn(2, 4, 2, generator=gen,
                                                                                   dtype=torch.float64)
    Q = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64) if many else \
        torch.randn(2, 4, generator=gen, dtype=torch.float64)
    W = module.Weights.detach().clone()
    args = [t.requires_grad_() for t in (K, V, Q, W)]
    lengths = torch.tensor([4, 2])

    def f(K, V, Q, W):
        inputs = {"Key": Seq(K, lengths), "Value": Seq(V, lengths),
                  "Query": Seq(Q, torch.tensor([3, 1])) if many else Q}
        out, _ = torch.func.functional_call(module, {"Weights": W}, (inputs, {}, Ctx(False, None)))
        o, w = out["Output"], out["AttentionWeights"]
        return (o.data if isinstance(o, Seq) else o), w.data

    assert torch.autograd.gradcheck(f, tuple(args))


def test_padding_of_the_keys_changes_nothing():
    rng = np.random.default_rng(6)
    layer = NetInitialize(AttentionLayer(Key=("Varying", 3), Value=("Varying", 2), Query=4))
    K, V, Q = ragged(rng, [2], 3), ragged(rng, [2], 2), rng.standard_normal((1, 4)).astype(np.float32)
    alone = layer({"Key": K, "Value": V, "Query": Q})["Output"][0]
    K2, V2 = K + ragged(rng, [6], 3), V + ragged(rng, [6], 2)
    batched = layer({"Key": K2, "Value": V2, "Query": np.concatenate([Q, Q])})["Output"][0]
    np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=1e-7)


def test_sequence_attention_layer_is_attention_with_one_input_for_keys_and_values():
    rng = np.random.default_rng(7)
    seq = NetInitialize(SequenceAttentionLayer(Input=("Varying", 3), Query=("Varying", 4)), RandomSeeding=9)
    assert set(seq.input_ports()) == {"Input", "Query"} and set(seq.output_ports()) == {"Output"}
    X, Q = ragged(rng, [3, 5], 3), ragged(rng, [2, 2], 4)
    out = seq({"Input": X, "Query": Q})
    W = np.asarray(seq.extract("Weights"), np.float64)
    for b in range(2):
        np.testing.assert_allclose(out[b], reference(X[b], X[b], Q[b], W)[0], rtol=1e-5, atol=1e-6)


def test_trains_in_a_graph_to_pick_the_value_its_query_names():
    # the key of step i is the one-hot vector of i; the query names a step; the target is its value
    rng = np.random.default_rng(8)
    n = 6
    data = []
    for _ in range(512):
        values = rng.standard_normal((n, 1)).astype(np.float32)
        j = int(rng.integers(n))
        data.append((values, j))
    keys = np.eye(n, dtype=np.float32)
    net = NetGraph({"attend": AttentionLayer(Key=(n, n), Value=(n, 1), Query=n)},
                   [(NetPort("Key"), NetPort("attend", "Key")), (NetPort("Value"), NetPort("attend", "Value")),
                    (NetPort("Query"), NetPort("attend", "Query")), (NetPort("attend", "Output"), NetPort("Output"))])
    inputs = {"Key": [keys] * len(data), "Value": [v for v, _ in data],
              "Query": [np.eye(n, dtype=np.float32)[j] for _, j in data], "Output": [v[j] for v, j in data]}
    trained = NetTrain(net, inputs, MaxTrainingRounds=40, BatchSize=64, LearningRate=0.05, RandomSeeding=1)
    held = {k: inputs[k][:64] for k in ("Key", "Value", "Query")}
    out = np.asarray(trained(held, "Output"))
    np.testing.assert_allclose(out, np.asarray(inputs["Output"][:64]), atol=0.2)
    weights = np.asarray(NetExtract(trained, "attend")(held, "AttentionWeights"))  # (64, n)
    assert np.all(weights[np.arange(64), [j for _, j in data[:64]]] > 0.9)


def test_in_a_chain_after_its_key_graph_and_input_form_rebuilds_it():
    layer = NetInitialize(AttentionLayer(Key=("Varying", 3), Value=("Varying", 2), Query=4,
                                         ScoreRescaling="DimensionSqrt", Mask=None))
    rebuilt = eval(layer.input_form(), {"AttentionLayer": AttentionLayer})
    x = {"Key": [[[1, 2, 3], [0, 1, 0]]], "Value": [[[1, 0], [0, 1]]], "Query": [[1, 0, 0, 1]]}
    np.testing.assert_array_equal(np.asarray(rebuilt(x)["Output"]), np.asarray(layer(x)["Output"]))
    seq = SequenceAttentionLayer("Dot", Input=("Varying", 3), Query=("Varying", 3))
    assert eval(seq.input_form(), {"SequenceAttentionLayer": SequenceAttentionLayer}).input_ports() == \
        seq.input_ports()
    # in a graph, the query a vector from an upstream layer: both outputs are the graph's
    graph = NetGraph({"last": SequenceLastLayer(), "attend": AttentionLayer("Dot")},
                     [(NetPort("Q"), "last", NetPort("attend", "Query")), (NetPort("K"), NetPort("attend", "Key")),
                      (NetPort("K"), NetPort("attend", "Value"))], Q=("Varying", 3), K=("Varying", 3))
    assert [t.dims for t in graph.output_ports().values()] == [(3,), ("Varying",)]
    q, k = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    out, weights = graph({"Q": q, "K": k}).values()
    o, w = reference(k, k, q[-1])
    np.testing.assert_allclose(out, o, rtol=1e-6)
    np.testing.assert_allclose(weights, w, rtol=1e-6)


def test_bad_options_and_inputs_are_typed_errors_naming_the_layer_and_port():
    with pytest.raises(OptionError, match='"Dot" or "Bilinear"'):
        AttentionLayer("Cosine")
    with pytest.raises(OptionError, match="ScoreRescaling"):
        AttentionLayer(ScoreRescaling="Sqrt")
    with pytest.raises(OptionError, match="Mask"):
        AttentionLayer(Mask="Future")
    with pytest.raises(NotSupportedError, match="MultiHead"):
        AttentionLayer(MultiHead=True)
    with pytest.raises(ShapeError, match='port "Query".*size 3'):
        AttentionLayer("Dot", Key=("Varying", 3), Query=4)
    with pytest.raises(ShapeError, match='port "Key".*sequence of vectors'):
        AttentionLayer(Key=3)
    with pytest.raises(ShapeError, match="Weights must have dimensions 3×4"):
        AttentionLayer(Key=("Varying", 3), Query=4, Weights=np.zeros((4, 3)))
    layer = AttentionLayer("Dot")
    with pytest.raises(InputError, match='AttentionLayer, port "Value".*as many values as keys'):
        layer({"Key": [[[1.0, 0.0], [0.0, 1.0]]], "Value": [[[2.0]]], "Query": [[0.0, 0.0]]})
    causal = AttentionLayer("Dot", Mask="Causal")
    with pytest.raises((InputError, ShapeError), match='port "Query".*as many queries as keys'):
        causal({"Key": [[[1.0, 0.0], [0.0, 1.0]]], "Value": [[[2.0], [1.0]]], "Query": [[[0.0, 0.0]]]})


def test_dropout_on_the_weights_only_in_training():
    layer = AttentionLayer("Dot", Dropout=0.5)
    x = {"Key": torch.randn(1, 4, 2), "Value": torch.randn(1, 4, 3), "Query": torch.randn(1, 2)}
    module = layer.build(trainable=False)
    out_test, _ = module({k: Seq(v, None) if v.ndim == 3 else v for k, v in x.items()}, {}, Ctx(False, None))
    out_train, _ = module({k: Seq(v, None) if v.ndim == 3 else v for k, v in x.items()}, {},
                          Ctx(True, torch.Generator().manual_seed(0)))
    w_test, w_train = out_test["AttentionWeights"].data, out_train["AttentionWeights"].data
    kept = w_train != 0
    assert 0 < int(kept.sum()) < 4
    torch.testing.assert_close(w_train[kept], 2 * w_test[kept])
    assert float(w_test.sum()) == pytest.approx(1.0)
