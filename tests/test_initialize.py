"""NetInitialize as Wolfram's: Xavier's sub-options and the Ramp rule, Random's distributions,
the memory guard, and bad sub-options. Statistics are compared with the formulas of the
distributions (independent of the code), with tolerances of several standard errors."""

import math

import numpy as np
import pytest

import wlnet as w
from wlnet.core.errors import InitializationError, OptionError


def chain(k=200, n=300, ramp=False):
    layers = [w.LinearLayer(n), w.ElementwiseLayer("Ramp" if ramp else "Tanh"), w.LinearLayer(5)]
    return w.NetChain(layers, Input=k)


def first_weights(net):
    return net.arrays()[(1, "Weights")].numpy().astype(np.float64)


@pytest.mark.parametrize("factor,dist", [("In", "Uniform"), ("Out", "Normal"), ("Mean", "Normal"), ("Mean", "Uniform")])
def test_xavier_factor_types_and_distributions(factor, dist):
    k, n = 200, 300
    net = w.NetInitialize(chain(k, n), Method=("Xavier", {"FactorType": factor, "Distribution": dist}))
    x = first_weights(net)
    variance = {"In": 1 / k, "Out": 1 / n, "Mean": 2 / (k + n)}[factor]
    assert abs(x.var() / variance - 1) < 0.03  # 60000 draws: standard error of the variance ≈ 0.6 %
    assert abs(x.mean()) < 4 * math.sqrt(variance / x.size)
    bound = math.sqrt(3 * variance)
    if dist == "Uniform":
        assert np.abs(x).max() <= bound * (1 + 1e-6) and np.abs(x).max() > 0.99 * bound
    else:
        assert np.abs(x).max() > 1.5 * bound  # a normal reaches past the uniform's bound
        kurtosis = ((x - x.mean()) ** 4).mean() / x.var() ** 2
        assert abs(kurtosis - 3) < 0.15  # a uniform's is 1.8
    assert np.all(net.arrays()[(1, "Biases")].numpy() == 0)


def test_xavier_doubles_the_variance_before_a_ramp():
    k, n = 200, 300
    plain = first_weights(w.NetInitialize(chain(k, n)))
    ramp = w.NetInitialize(chain(k, n, ramp=True))
    assert abs(plain.var() / (2 / (k + n)) - 1) < 0.03
    assert abs(first_weights(ramp).var() / (4 / (k + n)) - 1) < 0.03
    last = ramp.arrays()[(3, "Weights")].numpy()  # not before a Ramp: the plain variance
    assert abs(last.var() / (2 / (n + 5)) - 1) < 0.1


def test_ramp_rule_follows_graph_edges():
    graph = w.NetGraph({"a": w.LinearLayer(300), "r": w.ElementwiseLayer("Ramp"), "b": w.LinearLayer(200)},
                       [("a", "r"), ("r", "b")], Input=200)
    net = w.NetInitialize(graph)
    assert abs(net.arrays()[("a", "Weights")].numpy().var() / (4 / 500) - 1) < 0.03
    assert abs(net.arrays()[("b", "Weights")].numpy().var() / (2 / 500) - 1) < 0.03


def test_random_draws_standard_normal_weights_and_zero_biases():
    lstm = w.NetInitialize(w.LongShortTermMemoryLayer(100, Input=("Varying", 100)), Method="Random")
    weights = np.concatenate([v.numpy().ravel() for k, v in lstm.arrays().items() if v.dim() == 2])
    assert abs(weights.mean()) < 4 / math.sqrt(weights.size)
    assert abs(weights.std() - 1) < 0.01
    arrays = lstm.arrays()
    assert np.all(arrays[("InputGateBiases",)].numpy() == 0)
    assert np.all(arrays[("ForgetGateBiases",)].numpy() == 1)  # the LSTM's own rule


def test_random_distributions_as_sub_options():
    net = w.NetInitialize(chain(), Method=("Random", {"Weights": ("Uniform", 1.0, 3.0), "Biases": ("Normal", 5, 0.5)}))
    x = first_weights(net)
    assert x.min() >= 1 and x.max() <= 3 and abs(x.mean() - 2) < 0.01 and abs(x.var() - 4 / 12) < 0.01
    b = net.arrays()[(1, "Biases")].numpy()
    assert abs(b.mean() - 5) < 4 * 0.5 / math.sqrt(b.size) and abs(b.std() - 0.5) < 0.1
    constant = w.NetInitialize(chain(), Method=("Random", {"Weights": 0.25}))
    assert np.all(first_weights(constant) == 0.25)


def test_bad_sub_options_are_option_errors():
    net = chain()
    for method, words in [
        (("Xavier", {"FactorType": "Sideways"}), ["FactorType", "Sideways"]),
        (("Xavier", {"Distribution": "Cauchy"}), ["Distribution", "Cauchy"]),
        (("Xavier", {"Gain": 2}), ["Gain", "FactorType"]),
        (("Random", {"Weights": ("Normal", 0, -1)}), ["Weights", "sigma"]),
        (("Random", {"Biases": "big"}), ["Biases", "big"]),
        (("Orthogonal", {"Weights": 1}), ["Weights", "Orthogonal"]),
        ("Glorot", ["Method", "Glorot", "Xavier"]),
    ]:
        with pytest.raises(OptionError) as info:
            w.NetInitialize(net, Method=method)
        for word in words:
            assert word in str(info.value), (method, str(info.value))


def test_huge_arrays_are_refused_before_allocation():
    with pytest.raises(InitializationError) as info:
        w.NetInitialize(w.LongShortTermMemoryLayer(10**9, Input=("Varying", 2)))
    text = str(info.value)
    assert "LongShortTermMemoryLayer" in text and "StateWeights" in text and "1000000000 × 1000000000" in text
    assert "memory" in text
    with pytest.raises(InitializationError, match=r"layer 3\): array Weights"):
        w.NetInitialize(w.NetChain([w.LinearLayer(3), w.LinearLayer(10**6), w.LinearLayer(10**6)], Input=2))
