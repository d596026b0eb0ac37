"""Decoders on sequences: a Class decoder per step, the Characters decoder, every property per
step (against numpy on the net's own probabilities), and training with per-step labels."""

import numpy as np
import pytest

import wlnet as w
from wlnet import NetDecoder, NetMeasurements, NetTrain

QUIET = {"TrainingProgressReporting": None}
LABELS = ["a", "b", "c"]


def nets(decoder):
    """A per-step softmax chain, and the same layers with `decoder` on the output."""
    plain = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(3), w.SoftmaxLayer()], Input=("Varying", 2)),
                            RandomSeeding=3)
    return plain, w.NetChain([w.NetExtract(plain, 1), w.NetExtract(plain, 2)], Output=decoder)


def ragged(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(1, 6)), 2)).round(3).tolist() for _ in range(n)]


def test_class_decoder_gives_a_label_per_step_of_each_sequence():
    plain, net = nets(NetDecoder(("Class", LABELS)))
    xs = ragged()
    probs = [np.asarray(p) for p in plain(xs)]
    assert net(xs) == [[LABELS[i] for i in p.argmax(-1)] for p in probs]
    assert [len(d) for d in net(xs)] == [len(x) for x in xs]
    assert net(xs[0]) == [LABELS[i] for i in probs[0].argmax(-1)]  # one sequence: a list of labels
    assert "sequence of size-3 vectors" in w.Information(net, "OutputPorts")["Output"]


def test_every_property_per_step():
    plain, net = nets(NetDecoder(("Class", LABELS)))
    xs = ragged(n=3)
    probs = [np.asarray(p, dtype=np.float64) for p in plain(xs)]
    got = net(xs, "Probabilities")
    for p, steps in zip(probs, got):
        assert [list(d) for d in steps] == [LABELS] * len(p)
        np.testing.assert_allclose([list(d.values()) for d in steps], p, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(net(xs, ("Probabilities", "b"))), np.concatenate(probs)[:, 1], rtol=1e-6)
    top2 = net(xs, ("TopProbabilities", 2))
    for p, steps in zip(probs, top2):
        for row, pairs in zip(p, steps):
            order = np.argsort(-row)[:2]
            assert [lab for lab, _ in pairs] == [LABELS[i] for i in order]
            np.testing.assert_allclose([q for _, q in pairs], row[order], rtol=1e-6)
    for p, steps in zip(probs, net(xs, "TopProbabilities")):
        for row, pairs in zip(p, steps):
            assert [lab for lab, _ in pairs] == [LABELS[i] for i in np.argsort(-row) if row[i] > 0.1]
    entropy = [-np.sum(p * np.log(p), -1) for p in probs]
    np.testing.assert_allclose(np.concatenate(net(xs, "Entropy")), np.concatenate(entropy), rtol=1e-6)
    assert net(xs, ("Output", ("TopProbabilities", 1))) == [[[pair[0]] for pair in s] for s in top2]
    assert net(xs, ("Output", "Decision")) == net(xs)
    assert net(xs[0], ("TopProbabilities", 9)) == net(xs[0], ("TopProbabilities", 3))


def test_properties_of_a_vector_decoder_and_bad_properties():
    dec = NetDecoder(("Class", LABELS))
    p = [0.2, 0.5, 0.3]
    top = dec(p, ("TopProbabilities", 2))
    assert [lab for lab, _ in top] == ["b", "c"] and [q for _, q in top] == pytest.approx([0.5, 0.3])
    assert dec([p, [0.6, 0.3, 0.1]], ("Probabilities", "a")) == pytest.approx([0.2, 0.6])
    for bad, message in [(("TopProbabilities", 0), "positive integer"), (("Probabilities", "z"), "'z' is not one of"),
                         ("Nonsense", r'properties are .*\("TopProbabilities", k\)')]:
        with pytest.raises(w.OptionError, match=message):
            dec(p, bad)
    with pytest.raises(w.InputError, match=r"\"Entropy\" needs probability vectors that sum to 1.*sum to 1.5"):
        dec([0.5, 0.5, 0.5], "Entropy")


def test_characters_decoder_turns_a_sequence_of_probabilities_into_a_string():
    plain, net = nets(NetDecoder(("Characters", "xyz")))
    xs = ragged()
    probs = [np.asarray(p) for p in plain(xs)]
    assert net(xs) == ["".join("xyz"[i] for i in p.argmax(-1)) for p in probs]
    assert net(xs[1]) == "".join("xyz"[i] for i in probs[1].argmax(-1))
    assert net(xs[1], ("Probabilities", "y")) == pytest.approx(probs[1][:, 1].tolist(), rel=1e-6)
    dec = NetDecoder(("Characters", [w.DigitCharacter, "."]))
    assert dec([[0.0] * 10 + [1.0], [0.0, 0.9] + [0.01] * 9]) == ".1"
    assert dec.input_form() == "NetDecoder(('Characters', [DigitCharacter, '.']))"
    assert eval(net.input_form(), vars(w)).decoders["Output"] == net.decoders["Output"]
    with pytest.raises(w.ShapeError, match="size-4 vectors.*Characters decoder expects a sequence of size-3"):
        w.NetChain([w.LongShortTermMemoryLayer(4), w.SoftmaxLayer()], Input=("Varying", 2),
                   Output=NetDecoder(("Characters", "xyz")))
    with pytest.raises(w.ShapeError, match="Characters decoder reads a sequence"):
        w.NetChain([w.LinearLayer(3), w.SoftmaxLayer()], Input=2, Output=NetDecoder(("Characters", "xyz")))


def test_training_with_labels_per_step_uses_per_step_cross_entropy():
    plain, net = nets(NetDecoder(("Class", LABELS)))
    xs = ragged(n=8)
    rng = np.random.default_rng(1)
    ys = [[LABELS[i] for i in rng.integers(0, 3, size=len(x))] for x in xs]
    want = np.mean([-np.mean(np.log(np.asarray(p, dtype=np.float64)[np.arange(len(y)), [LABELS.index(c) for c in y]]))
                    for p, y in zip(plain(xs), ys)])
    res = NetTrain(net, list(zip(xs, ys)), "RoundLossList", MaxTrainingRounds=1, BatchSize=8, **QUIET)
    assert res[0] == pytest.approx(want, rel=1e-5)
    assert NetMeasurements(net, list(zip(xs, ys)), "Loss") == pytest.approx(want, rel=1e-5)
    right = sum(a == b for d, y in zip(net(xs), ys) for a, b in zip(d, y))
    assert NetMeasurements(net, list(zip(xs, ys)), "Accuracy") == pytest.approx(right / sum(map(len, ys)))
    bad = list(zip(xs, ys))
    bad[2] = (xs[2], ys[2][:-1] + ["q"])
    with pytest.raises(w.TrainingError, match=rf"example 3: .*step {len(ys[2])}: 'q' is not one of the Class"):
        NetTrain(net, bad, **QUIET)
    bad[2] = (xs[2], ys[2] + ["a"])
    with pytest.raises(w.TrainingError, match=r'example 3, port "Output".*length'):
        NetTrain(net, bad, **QUIET)


def test_training_a_characters_decoder_on_strings():
    plain, net = nets(NetDecoder(("Characters", "xyz")))
    xs = ragged(n=6)
    rng = np.random.default_rng(2)
    ys = ["".join("xyz"[i] for i in rng.integers(0, 3, size=len(x))) for x in xs]
    want = np.mean([-np.mean(np.log(np.asarray(p, dtype=np.float64)[np.arange(len(y)), ["xyz".index(c) for c in y]]))
                    for p, y in zip(plain(xs), ys)])
    assert NetTrain(net, list(zip(xs, ys)), "RoundLossList", MaxTrainingRounds=1, BatchSize=6, **QUIET)[0] == \
        pytest.approx(want, rel=1e-5)
    with pytest.raises(w.TrainingError, match=r"example 2: .*character 1, 'w', is not in the Characters decoder's"):
        NetTrain(net, list(zip(xs, [ys[0], "w" + ys[1][1:]] + ys[2:])), **QUIET)


# Wolfram's Class decoder properties → their values on p = (0.2, 0.5, 0.3)
P = [0.2, 0.5, 0.3]


@pytest.mark.parametrize("prop, expected", [
    (None, "b"),
    ("Decision", "b"),
    (("TopDecisions", 2), ["b", "c"]),
    (("TopDecisions", 5), ["b", "c", "a"]),
    (("Probability", "c"), 0.3),
    (("Probabilities", "a"), 0.2),
    (("TopProbabilities", 1), [("b", 0.5)]),
    ("Entropy", -sum(q * np.log(q) for q in P)),
])
def test_class_decoder_properties_by_wolfram_form(prop, expected):
    got = NetDecoder(("Class", LABELS))(P, prop)
    if isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-6)
    elif isinstance(expected, list) and expected and isinstance(expected[0], tuple):
        assert [lab for lab, _ in got] == [lab for lab, _ in expected]
        np.testing.assert_allclose([q for _, q in got], [q for _, q in expected], rtol=1e-6)
    else:
        assert got == expected


def _frequencies(prop, n=20000, seed=5):
    import torch

    torch.manual_seed(seed)
    draws = NetDecoder(("Class", LABELS))([P] * n, prop)
    return np.array([draws.count(lab) / n for lab in LABELS])


@pytest.mark.parametrize("prop, expected", [
    ("RandomSample", np.array(P)),
    (("RandomSample", 0.5), np.array(P) ** 2 / (np.array(P) ** 2).sum()),  # ∝ p^(1/t)
    (("RandomSample", 2), np.sqrt(P) / np.sqrt(P).sum()),
    (("RandomSample", {"TopProbabilities": 2}), np.array([0, 0.5, 0.3]) / 0.8),
    (("RandomSample", {"TotalProbabilityCutoff": 0.6}), np.array([0, 0.5, 0.3]) / 0.8),  # b alone is < 0.6
    (("RandomSample", {"TotalProbabilityCutoff": 0.5}), np.array([0.0, 1.0, 0.0])),
])
def test_random_sample_draws_with_the_tempered_probabilities(prop, expected):
    freq = _frequencies(prop)
    sigma = np.sqrt(expected * (1 - expected) / 20000)
    assert np.all(np.abs(freq - expected) <= 5 * sigma + 1e-12), (freq, expected)


def test_random_sample_of_a_sequence_and_bad_parameters():
    import torch

    torch.manual_seed(0)
    dec = NetDecoder(("Characters", "ab"))
    assert dec([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], "RandomSample") == "aba"
    cls = NetDecoder(("Class", LABELS))
    for bad, match in [(("RandomSample", 0), "positive temperature"), (("RandomSample", -1.0), "positive temperature"),
                       (("RandomSample", {"Temp": 1}), "'Temp' is not a parameter"),
                       (("RandomSample", {"TopProbabilities": 0}), "positive integer"),
                       (("RandomSample", {"TotalProbabilityCutoff": 1.5}), r"probability in \(0, 1\]"),
                       (("TopDecisions", 0), "positive integer")]:
        with pytest.raises(w.OptionError, match=match):
            cls(P, bad)
    with pytest.raises(w.InputError, match="RandomSample"):
        cls([0.7, 0.7, 0.2], "RandomSample")  # not probabilities
