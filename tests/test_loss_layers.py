"""Loss layers against numpy computations of their definitions (values and gradients, uniform
and ragged batches); loss layers as LossFunction and inside a trained NetGraph; per-step
cross-entropy on ragged sequences; the errors that used to be silent."""

import numpy as np
import pytest
import torch

import wlnet as w
from wlnet import NetMeasurements, NetTrain
from wlnet.core.symbols import All

QUIET = {"TrainingProgressReporting": None}
RNG = np.random.default_rng(5)
CASES = ("Index", "Probabilities", "Binary", "MeanSquared", "MeanAbsolute")
N = 4  # vector size


def layer(case, shape):
    if case in ("Index", "Probabilities", "Binary"):
        return w.CrossEntropyLossLayer(case, Input=shape)
    return {"MeanSquared": w.MeanSquaredLossLayer, "MeanAbsolute": w.MeanAbsoluteLossLayer}[case](Input=shape)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def example(case, length, rng):
    """One example: input x ((length,) + (N,), or (N,) for length None) and its target."""
    shape = (N,) if length is None else (length, N)
    z = rng.normal(size=shape)
    if case == "Index":
        return softmax(z), rng.integers(1, N + 1, size=shape[:-1])
    if case == "Probabilities":
        return softmax(z), softmax(rng.normal(size=shape))
    if case == "Binary":
        return 1 / (1 + np.exp(-z)), rng.uniform(size=shape)
    return z, rng.normal(size=shape)


def reference(case, x, t):
    """The loss of one example and its gradient with respect to x, from the definitions."""
    if case == "Index":
        onehot = np.eye(N)[t - 1]
        m = x.shape[0] if x.ndim == 2 else 1  # positions
        return -np.mean(np.log(np.sum(x * onehot, -1))), -onehot / (np.sum(x * onehot, -1, keepdims=True) * m)
    if case == "Probabilities":
        m = x.shape[0] if x.ndim == 2 else 1
        return -np.mean(np.sum(t * np.log(x), -1)), -t / (x * m)
    if case == "Binary":
        return -np.mean(t * np.log(x) + (1 - t) * np.log(1 - x)), -(t / x - (1 - t) / (1 - x)) / x.size
    if case == "MeanSquared":
        return np.mean((x - t) ** 2), 2 * (x - t) / x.size
    return np.mean(np.abs(x - t)), np.sign(x - t) / x.size


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("lengths", [None, (3, 3), (3, 1, 2)], ids=["vectors", "uniform", "ragged"])
def test_loss_layer_values_and_gradients_match_the_definitions(case, lengths):
    rng = np.random.default_rng(CASES.index(case))
    examples = [example(case, L, rng) for L in (lengths or (None, None, None))]
    net = layer(case, N if lengths is None else ("Varying", N))
    xs = [torch.tensor(x, requires_grad=True) for x, _ in examples]
    ts = [t.tolist() for _, t in examples]
    losses = net({"Input": xs, "Target": ts}, WorkingPrecision="Real64")
    torch.stack(losses).sum().backward()
    for (x, t), loss, xt in zip(examples, losses, xs):
        value, grad = reference(case, x, t)
        assert loss.item() == pytest.approx(value, rel=1e-10)
        np.testing.assert_allclose(xt.grad.numpy(), grad, rtol=1e-9, atol=1e-12)
    single = net({"Input": examples[0][0].tolist(), "Target": ts[0]})  # one example, float32: a number
    assert isinstance(single, float) and single == pytest.approx(reference(case, *examples[0])[0], rel=1e-5)


def test_padding_never_counts_in_values_or_gradients():
    net = w.CrossEntropyLossLayer("Index", Input=("Varying", 3))
    p = torch.tensor([[0.2, 0.3, 0.5]] * 3, dtype=torch.float64)
    short = p[:1].clone().requires_grad_()
    long = p.clone().requires_grad_()
    a, b = net({"Input": [short, long], "Target": [[3], [1, 2, 3]]}, WorkingPrecision="Real64")
    assert a.item() == pytest.approx(-np.log(0.5))
    assert b.item() == pytest.approx(-np.mean(np.log([0.2, 0.3, 0.5])))
    (a + b).backward()
    assert short.grad.shape == (1, 3) and short.grad[0].tolist() == pytest.approx([0, 0, -2.0])


def test_standalone_loss_layers_take_batches_of_vectors_and_single_examples():
    ce = w.CrossEntropyLossLayer("Index")
    assert ce({"Input": [0.25, 0.75], "Target": 2}) == pytest.approx(-np.log(0.75))
    assert ce({"Input": [[0.25, 0.75], [0.5, 0.5]], "Target": [2, 1]}) == pytest.approx([-np.log(0.75), -np.log(0.5)])
    assert w.MeanSquaredLossLayer()({"Input": [1.0, 2.0], "Target": [0.0, 0.0]}) == pytest.approx(2.5)
    assert w.CrossEntropyLossLayer("Binary")({"Input": 0.3, "Target": 1}) == pytest.approx(-np.log(0.3))
    assert w.Information(ce, "OutputPortNames") == ["Loss"]
    assert ce.input_form() == "CrossEntropyLossLayer('Index')"
    assert w.Options(w.MeanAbsoluteLossLayer) == {"Input": w.Automatic, "Target": w.Automatic}


# ---- bad input ---------------------------------------------------------------------------------------
def test_a_missing_target_and_other_bad_input_are_clear_errors():
    ce = w.CrossEntropyLossLayer("Index")
    with pytest.raises(w.InputError, match=r'CrossEntropyLossLayer, port "Target": no data was supplied'):
        ce({"Input": [0.25, 0.75]})
    with pytest.raises(w.InputError, match=r'port "Target": the class index 3 is out of range.*between 1 and 2'):
        ce({"Input": [0.25, 0.75], "Target": 3})
    with pytest.raises(w.InputError, match=r'port "Target": the index 1.5 is not an integer'):
        ce({"Input": [0.25, 0.75], "Target": 1.5})
    with pytest.raises(w.InputError, match=r'port "Input": the cross-entropy needs probabilities between 0 and 1.*'
                                           r"-0.25. Put a SoftmaxLayer before it."):
        w.CrossEntropyLossLayer("Index", Input=2)({"Input": [1.25, -0.25], "Target": 1})
    with pytest.raises(w.InputError, match=r"sum to 1.*sum to 0.6"):
        w.CrossEntropyLossLayer("Probabilities")({"Input": [0.3, 0.3], "Target": [0.5, 0.5]})
    with pytest.raises(w.InputError, match=r'MeanSquaredLossLayer, port "Target": the target has dimensions \(3,\) for '
                                           r"an input of dimensions \(2,\)"):
        w.MeanSquaredLossLayer()({"Input": [1.0, 2.0], "Target": [0.0, 0.0, 1.0]})
    seq = w.CrossEntropyLossLayer("Index", Input=("Varying", 2))
    with pytest.raises(w.InputError, match=r"example 2 is a sequence of length 2, but its input has length 1"):
        seq({"Input": [[[0.5, 0.5], [0.5, 0.5]], [[0.1, 0.9]]], "Target": [[2, 1], [2, 1]]})
    with pytest.raises(w.OptionError, match="the form must be one of 'Index', 'Probabilities', 'Binary'"):
        w.CrossEntropyLossLayer("Hinge")
    with pytest.raises(w.ShapeError, match=r'CrossEntropyLossLayer, port "Input": the layer expects a vector of '
                                           "probabilities"):
        w.NetGraph({"loss": w.CrossEntropyLossLayer("Index")}, [], Input="Scalar")


# ---- loss layers as LossFunction and in graphs -------------------------------------------------------
def ragged_classes(n=12, k=2, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(int(rng.integers(1, 6)), k)).round(3).tolist() for _ in range(n)]
    ys = [rng.integers(1, classes + 1, size=len(x)).tolist() for x in xs]
    return xs, ys


def tagger(n=3, k=2):
    return w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(n), w.SoftmaxLayer()], Input=("Varying", k)))


def per_example_cross_entropy(net, xs, ys) -> float:
    """The mean over examples of each example's mean −log p(target) over its steps, one example at
    a time (numpy, float64)."""
    losses = []
    for x, y in zip(xs, ys):
        p = np.asarray(net(x), dtype=np.float64)  # (T, classes)
        losses.append(-np.mean(np.log(p[np.arange(len(y)), np.asarray(y) - 1])))
    return float(np.mean(losses))


def test_per_step_cross_entropy_on_ragged_index_targets_averages_real_steps_per_example():
    xs, ys = ragged_classes()
    net = tagger()
    want = per_example_cross_entropy(net, xs, ys)
    data = list(zip(xs, ys))
    assert NetMeasurements(net, data, "Loss") == pytest.approx(want, rel=1e-5)
    res = NetTrain(net, data, All, MaxTrainingRounds=1, BatchSize=len(xs), ValidationSet=data[:5], **QUIET)
    assert res["RoundLossList"][0] == pytest.approx(want, rel=1e-5)  # the one batch sees the initial arrays
    assert res["ValidationLossList"][0] == pytest.approx(
        per_example_cross_entropy(res["FinalNet"], xs[:5], ys[:5]), rel=1e-5)
    layered = NetTrain(net, data, "RoundLossList", MaxTrainingRounds=1, BatchSize=len(xs),
                       LossFunction=w.CrossEntropyLossLayer("Index"), **QUIET)
    assert layered[0] == pytest.approx(want, rel=1e-5)
    trained = NetTrain(net, data, "RoundLossList", MaxTrainingRounds=2, BatchSize=4, **QUIET)  # several ragged batches
    assert len(trained) == 2 and all(np.isfinite(trained))


def test_per_step_accuracy_counts_real_steps_only():
    xs, ys = ragged_classes(n=6)
    net = tagger()
    guesses = [np.argmax(net(x), -1) + 1 for x in xs]
    right = sum(int(np.sum(g == np.asarray(y))) for g, y in zip(guesses, ys))
    steps = sum(len(y) for y in ys)
    assert NetMeasurements(net, list(zip(xs, ys)), "Accuracy") == pytest.approx(right / steps)
    assert NetMeasurements(net, list(zip(xs, [g.tolist() for g in guesses])), "Accuracy") == 1.0


def loss_graph(chain):
    return w.NetGraph({"lstm": w.NetExtract(chain, 1), "sm": w.NetExtract(chain, 2),
                       "loss": w.CrossEntropyLossLayer("Index")},
                      [("lstm", "sm", w.NetPort("loss", "Input")), (w.NetPort("loss", "Loss"), w.NetPort("Loss"))],
                      Input=("Varying", 2))


def test_a_graph_whose_output_is_a_loss_trains_on_it_as_the_chain_does_with_the_automatic_loss():
    xs, ys = ragged_classes()
    chain = tagger()
    graph = loss_graph(chain)
    assert list(graph.output_ports()) == ["Loss"] and list(graph.input_ports()) == ["Input", "Target"]
    assert graph({"Input": xs[:2], "Target": ys[:2]}) == pytest.approx(
        [per_example_cross_entropy(chain, [x], [y]) for x, y in zip(xs[:2], ys[:2])], rel=1e-5)
    opts = {"MaxTrainingRounds": 4, "BatchSize": 4, **QUIET}
    a = NetTrain(chain, list(zip(xs, ys)), All, **opts)
    b = NetTrain(graph, {"Input": xs, "Target": ys}, All, **opts)
    c = NetTrain(graph, list(zip(xs, ys)), "RoundLossList", **opts)  # pairs give Input and Target
    assert b["RoundLossList"] == pytest.approx(a["RoundLossList"], rel=1e-5) == c
    assert b["RoundLossList"][-1] < b["RoundLossList"][0]
    for (key, name), v in b["TrainedNet"].arrays().items():
        torch.testing.assert_close(v, a["TrainedNet"].arrays()[({"lstm": 1, "sm": 2}[key], name)])
    assert NetMeasurements(b["TrainedNet"], {"Input": xs, "Target": ys}, "Loss") == pytest.approx(
        per_example_cross_entropy(a["TrainedNet"], xs, ys), rel=1e-5)


def test_bad_data_for_a_loss_graph_changes_nothing():
    xs, ys = ragged_classes(n=4)
    graph = loss_graph(tagger())
    before = {k: v.clone() for k, v in graph.arrays().items()}
    with pytest.raises(w.TrainingError, match=r'no examples for the input port "Target"'):
        NetTrain(graph, {"Input": xs}, **QUIET)
    with pytest.raises(w.TrainingError, match=r'"Loss" is a loss .*takes no targets'):
        NetTrain(graph, {"Input": xs, "Target": ys, "Loss": [0.0] * 4}, **QUIET)
    with pytest.raises(w.TrainingError, match=r'example 3: .*port "Target".*at step 1 is out of range'):
        NetTrain(graph, {"Input": xs, "Target": ys[:2] + [[9] * len(xs[2])] + ys[3:]}, **QUIET)
    with pytest.raises(w.TrainingError, match=r'"Accuracy".*is a loss itself'):
        NetMeasurements(graph, {"Input": xs, "Target": ys}, "Accuracy")
    with pytest.raises(w.TrainingError, match=r'TrainingProgressMeasurements.*is a loss itself'):
        NetTrain(graph, {"Input": xs, "Target": ys}, TrainingProgressMeasurements=["Accuracy"], **QUIET)
    assert all(torch.equal(before[k], v) for k, v in graph.arrays().items())


def regression():
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(int(rng.integers(1, 5)), 2)).round(3).tolist() for _ in range(8)]
    ys = [[[sum(v), v[0] - v[1], 0.5] for v in x] for x in xs]
    return w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2))), list(zip(xs, ys))


def test_loss_layers_as_loss_function_equal_the_named_losses():
    net, data = regression()
    once = {"MaxTrainingRounds": 2, "BatchSize": 3, **QUIET}
    for name, layer_loss in [("MeanAbsoluteLoss", w.MeanAbsoluteLossLayer()),
                             ("MeanSquaredLoss", w.MeanSquaredLossLayer())]:
        by_name = NetTrain(net, data, "RoundLossList", LossFunction=name, **once)
        assert NetTrain(net, data, "RoundLossList", LossFunction=layer_loss, **once) == by_name
        assert NetTrain(net, data, "RoundLossList", LossFunction={"Output": name}, **once) == by_name
    soft = w.NetInitialize(w.NetChain([w.LinearLayer(3), w.SoftmaxLayer()], Input=2))
    xs, classes = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [1, 3, 2]
    by_index = NetTrain(soft, list(zip(xs, classes)), "RoundLossList", MaxTrainingRounds=2,
                        LossFunction=w.CrossEntropyLossLayer("Index"), **QUIET)
    by_vectors = NetTrain(soft, list(zip(xs, np.eye(3)[np.array(classes) - 1].tolist())), "RoundLossList",
                          MaxTrainingRounds=2, LossFunction=w.CrossEntropyLossLayer("Probabilities"), **QUIET)
    assert by_index == pytest.approx(by_vectors, rel=1e-5)


def test_loss_function_naming_a_port():
    chain = tagger()
    xs, ys = ragged_classes(n=6)
    graph = w.NetGraph({"lstm": w.NetExtract(chain, 1), "sm": w.NetExtract(chain, 2),
                        "loss": w.CrossEntropyLossLayer("Index")},
                       [("lstm", "sm", w.NetPort("loss", "Input")), ("sm", w.NetPort("Probabilities")),
                        (w.NetPort("loss", "Loss"), w.NetPort("Cost"))], Input=("Varying", 2))
    data = {"Input": xs, "Target": ys}
    automatic = NetTrain(graph, data, "RoundLossList", MaxTrainingRounds=2, **QUIET)
    assert NetTrain(graph, data, "RoundLossList", MaxTrainingRounds=2, LossFunction="Cost", **QUIET) == automatic
    with pytest.raises(w.TrainingError, match=r"LossFunction names 'Nope', which is not an output port"):
        NetTrain(graph, data, LossFunction=["Nope"], **QUIET)
    with pytest.raises(w.TrainingError, match=r'names the port "Probabilities" as the loss, but it gives a sequence'):
        NetTrain(graph, data, LossFunction="Probabilities", **QUIET)
    with pytest.raises(w.TrainingError, match="LossFunction must be"):
        NetTrain(graph, data, LossFunction=w.LinearLayer(2), **QUIET)
    with pytest.raises(w.TrainingError, match=r"LossFunction CrossEntropyLossLayer cannot take the output port"):
        scalar = w.NetChain([w.LinearLayer(1)], Input=2, Output="Scalar")
        NetTrain(scalar, [([1.0, 2.0], 1)], LossFunction=w.CrossEntropyLossLayer("Index"), **QUIET)


# ---- the silent errors ------------------------------------------------------------------------------------
def test_cross_entropy_on_a_scalar_output_is_binary_per_example():
    net = w.NetInitialize(w.NetChain([w.LinearLayer(1), w.ElementwiseLayer("LogisticSigmoid")], Input=2,
                                     Output="Scalar"))
    xs = [[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0], [2.0, 2.0]]
    ts = [1.0, 0.0, 0.3, 1.0]
    p = np.asarray(net(xs), dtype=np.float64)
    want = -np.mean(np.asarray(ts) * np.log(p) + (1 - np.asarray(ts)) * np.log(1 - p))
    got = NetTrain(net, list(zip(xs, ts)), "RoundLossList", MaxTrainingRounds=1, LossFunction="CrossEntropyLoss",
                   **QUIET)
    assert got[0] == pytest.approx(want, rel=1e-5)
    with pytest.raises(w.TrainingError, match=r'example 2, port "Output": the target 1.5 is not a probability'):
        NetTrain(net, list(zip(xs, [1.0, 1.5, 0.0, 0.0])), LossFunction="CrossEntropyLoss", **QUIET)
    linear = w.NetInitialize(w.NetChain([w.LinearLayer(1, Weights=[[1.0, 1.0]], Biases=[0.0])], Input=2,
                                        Output="Scalar"))
    before = {k: v.clone() for k, v in linear.arrays().items()}
    with pytest.raises(w.InputError, match=r'NetTrain, port "Output": the cross-entropy needs probabilities between 0 '
                                           r'and 1, but the input has an entry -1.7. .*LogisticSigmoid'):
        NetTrain(linear, list(zip(xs, ts)), LossFunction="CrossEntropyLoss", **QUIET)
    assert all(torch.equal(before[k], v) for k, v in linear.arrays().items())


def test_a_class_decoder_after_a_linear_layer_is_a_clear_error_for_probabilities():
    labels = ["a", "b", "c"]
    net = w.NetChain([w.LinearLayer(3, Weights=np.eye(3)[:, :2].tolist(), Biases=[0.0, 0.0, -1.0])], Input=2,
                     Output=w.NetDecoder(("Class", labels)))
    assert net([[2.0, 1.0], [-1.0, 3.0]]) == ["a", "b"]  # the decision is the largest value's label
    with pytest.raises(w.InputError, match=r'port "Output": the Class decoder\'s "Probabilities" needs probabilities'
                                           r".*SoftmaxLayer"):
        net([2.0, 1.0], "Probabilities")
    with pytest.raises(w.InputError, match=r"Class decoder reads probability vectors: end the net with a SoftmaxLayer"):
        NetTrain(net, [([2.0, 1.0], "a"), ([1.0, 3.0], "b")], **QUIET)
    with pytest.raises(w.InputError, match="Class decoder"):
        NetMeasurements(net, [([2.0, 1.0], "a")], "Loss")


def test_float_class_targets_and_indices_must_be_integral():
    soft = w.NetInitialize(w.NetChain([w.LinearLayer(3), w.SoftmaxLayer()], Input=2))
    xs = [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(w.TrainingError, match=r'example 2: .*port "Output": the index 1.5 is not an integer.*'
                                              "between 1 and 3"):
        NetTrain(soft, list(zip(xs, [1, 1.5])), **QUIET)
    assert NetTrain(soft, list(zip(xs, [1, 2.0])), "RoundLossList", MaxTrainingRounds=1, **QUIET) == \
        NetTrain(soft, list(zip(xs, [1, 2])), "RoundLossList", MaxTrainingRounds=1, **QUIET)
    emb = w.NetInitialize(w.EmbeddingLayer(2, 3))
    for bad in ([1.7, 2], np.array([1.7, 2.0]), torch.tensor([1.0, 2.5])):
        with pytest.raises(w.InputError, match=r'EmbeddingLayer, port "Input": the index (1.7|2.5) at step \d is not '
                                               "an integer; indices must be integers between 1 and 3"):
            emb(bad)
    assert emb([1.0, 3.0]) == emb([1, 3]) and np.array_equal(emb(np.array([1.0, 3.0])), emb(np.array([1, 3])))
    unit = w.UnitVectorLayer(3)
    with pytest.raises(w.InputError, match=r'UnitVectorLayer, port "Input": the index 1.7 at example 1 is not'):
        unit([1.7, 2])
    with pytest.raises(w.InputError, match=r"the index nan is not an integer"):
        unit(float("nan"))
    assert unit([2.0, 3]) == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_per_step_targets_out_of_range_name_example_step_value_and_range():
    xs, ys = ragged_classes(n=4)
    ys[1] = list(ys[1])
    ys[1][-1] = 7
    with pytest.raises(w.TrainingError, match=rf'NetTrain: example 2: NetChain, port "Output": the index 7 at step '
                                              rf"{len(ys[1])} is out of range: indices must be integers between 1 "
                                              "and 3"):
        NetTrain(tagger(), list(zip(xs, ys)), **QUIET)
    with pytest.raises(w.InputError, match=r'port "Input": the index 0 at example 2, step 1 is out of range'):
        w.NetInitialize(w.EmbeddingLayer(2, 3))([[1, 2], [0, 1]])


def _next_character_graph():
    predictor = w.NetChain([w.EmbeddingLayer(4), w.LongShortTermMemoryLayer(6),
                            w.NetMapOperator(w.LinearLayer(3)), w.SoftmaxLayer()])
    return w.NetGraph(
        {"most": w.SequenceMostLayer(), "rest": w.SequenceRestLayer(), "predict": predictor,
         "loss": w.CrossEntropyLossLayer("Index")},
        [(w.NetPort("Input"), "most", "predict", w.NetPort("loss", "Input")),
         (w.NetPort("Input"), "rest", w.NetPort("loss", "Target"))],
        Input=w.NetEncoder(("Characters", "abc")),
    )


def test_a_graph_whose_one_output_is_a_loss_names_it_loss_and_trains_on_a_list_of_inputs():
    graph = _next_character_graph()
    assert list(graph.output_ports()) == ["Loss"]
    texts = ["abcabc", "cab", "bbca", "acbac", "abcab"] * 4
    opts = dict(MaxTrainingRounds=3, BatchSize=4, RandomSeeding=3, TrainingProgressReporting=None)
    from_list = w.NetTrain(graph, texts, All, **opts)
    from_dict = w.NetTrain(graph, {"Input": texts}, All, **opts)
    assert from_list["RoundLossList"] == from_dict["RoundLossList"]
    assert from_list["RoundLossList"][-1] < from_list["RoundLossList"][0]
    # the loss of one string: the mean over its steps of -log p(next character)
    net = from_list["TrainedNet"]
    p = np.asarray(w.NetExtract(net, "predict")([1, 2, 3]), dtype=np.float64)  # "abc" → predicts "bc?"
    assert abs(float(net("abc")) - float(-(np.log(p[0, 1]) + np.log(p[1, 2])) / 2)) < 1e-5


@pytest.mark.parametrize("form", ["Index", "Probabilities"])
@pytest.mark.parametrize("ragged", [False, True])
def test_cross_entropy_of_a_softmax_output_equals_the_clamped_log_of_its_probabilities(form, ragged):
    """A SoftmaxLayer's output carries its input: the cross-entropy takes log_softmax of it. Values
    and gradients equal −log max(p, 1e-7) on the probabilities themselves, also where p underflows."""
    from wlnet.core.data import Seq
    from wlnet.layers.basic import softmax, with_logits
    from wlnet.layers.loss import Loss

    g = torch.Generator().manual_seed(3)
    B, T, C = 4, 5, 6
    logits = (torch.randn(B, T, C, generator=g, dtype=torch.float64) * 4)
    logits[0, 0, 0] = -60.0  # p ≈ 1e-27: clamped
    logits.requires_grad_()
    if form == "Index":
        t = torch.randint(0, C, (B, T), generator=g)
        t[0, 0] = 0
    else:
        t = torch.softmax(torch.randn(B, T, C, generator=g, dtype=torch.float64), -1)
    lengths = torch.tensor([5, 2, 4, 1]) if ragged else None
    loss = Loss("CrossEntropyLoss", form)

    def value(p):
        out = Seq(p, lengths) if ragged else p
        target = Seq(t, lengths) if ragged else t
        return loss.examples(out, target)

    fused_p = softmax(logits)
    assert with_logits(fused_p) is logits
    plain_p = torch.softmax(logits, -1)  # no logits attached: the check and the clamped log
    assert with_logits(plain_p) is None
    got, want = value(fused_p), value(plain_p)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    (g_want,) = torch.autograd.grad(want.sum(), logits)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-9, atol=1e-12)
    p_np = torch.softmax(logits, -1).detach().numpy()  # numpy: the first example, which holds the clamped term
    n0 = lengths[0].item() if ragged else T
    terms0 = [(-np.log(max(p_np[0, s, t[0, s]], 1e-7)) if form == "Index"
               else -(t[0, s].numpy() * np.log(np.maximum(p_np[0, s], 1e-7))).sum()) for s in range(n0)]
    assert got[0].item() == pytest.approx(np.mean(terms0), rel=1e-12)


def test_a_softmax_output_changed_in_place_is_checked_as_probabilities():
    from wlnet.layers.basic import softmax, with_logits
    from wlnet.layers.loss import Loss

    p = softmax(torch.randn(3, 4))
    p.mul_(2)  # no longer probabilities: the logits no longer describe it
    assert with_logits(p) is None
    with pytest.raises(w.InputError, match="needs probabilities"):
        Loss("CrossEntropyLoss", "Index", who="CrossEntropyLoss: ").examples(p, torch.tensor([0, 1, 2]))
