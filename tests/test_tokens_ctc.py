"""The "Tokens" encoder and decoder (splitting, the unknown index, IgnoreCase, TargetLength,
SplitPattern) and the "CTCBeamSearch" decoder (against every path, torch's ctc_loss); round
trips through a net, a saved file and InputForm, and their errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from wlnet import (
    EmbeddingLayer,
    EncodingError,
    Export,
    Import,
    InputError,
    LinearLayer,
    NetChain,
    NetDecoder,
    NetEncoder,
    NetInitialize,
    NetMapOperator,
    OptionError,
    SoftmaxLayer,
)
from wlnet.coders.tokens import UNKNOWN_TOKEN, split_words

WORDS = ["the", "cat", "sat", "on", "mat", "."]


def test_split_at_word_boundaries_keeps_punctuation_runs_and_drops_spaces():
    assert split_words("The cat  sat, on the mat.") == ["The", "cat", "sat", ",", "on", "the", "mat", "."]
    assert split_words("  f(x_1) = 2.5  ") == ["f", "(", "x_1", ")", "=", "2", ".", "5"]
    assert split_words("a - b", r"\s+") == ["a", "-", "b"]
    assert split_words("") == []


def test_indices_the_unknown_token_and_ignore_case():
    enc = NetEncoder(("Tokens", WORDS))
    assert enc.output_type.levels == 7  # six tokens and the unknown one
    assert enc("The cat sat on the mat.") == [1, 2, 3, 4, 1, 5, 6]
    assert enc("The dog sat") == [1, 7, 3]  # "dog" is not in the vocabulary: d+1
    strict = NetEncoder(("Tokens", WORDS), IgnoreCase=False)
    assert strict("The cat") == [7, 2]
    assert enc(["the cat", "sat on the mat"]) == [[1, 2], [3, 4, 1, 5]]


def test_target_length_cuts_and_pads_with_the_unknown_index():
    enc = NetEncoder(("Tokens", WORDS), TargetLength=3)
    assert enc.output_type.dims == (3,)
    assert enc("the cat") == [1, 2, 7]
    assert enc("the cat sat on") == [1, 2, 3]


def test_split_pattern_none_takes_tokens_as_given():
    enc = NetEncoder(("Tokens", WORDS, {"SplitPattern": None}))
    assert enc(["the", "cat."]) == [1, 7]
    assert enc([["the"], ["mat", "."]]) == [[1], [5, 6]]


def test_decoder_writes_tokens_back_and_reads_the_encoder():
    dec = NetDecoder(("Tokens", ["hello", "world"]))
    p = [[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    assert dec(p) == f"world hello {UNKNOWN_TOKEN}"
    assert dec([p, p[:1]]) == [f"world hello {UNKNOWN_TOKEN}", "world"]
    probs = dec(p, "Probabilities")
    assert probs[0] == pytest.approx({"hello": 0.1, "world": 0.8, UNKNOWN_TOKEN: 0.1})


def test_a_word_model_with_tokens_on_both_ends_round_trips_through_a_file_and_input_form(tmp_path):
    net = NetInitialize(NetChain(
        [EmbeddingLayer(4), NetMapOperator(LinearLayer(7)), SoftmaxLayer()],
        Input=NetEncoder(("Tokens", WORDS), IgnoreCase=False), Output=NetDecoder(("Tokens", WORDS))))
    text = "the cat sat on the mat ."
    out = net(text)
    assert isinstance(out, str) and len(out.split(" ")) == len(text.split())
    path = str(tmp_path / "words.wlnet")
    Export(path, net)
    back = Import(path)
    assert back.encoders["Input"] == net.encoders["Input"] and back.decoders["Output"] == net.decoders["Output"]
    assert back.encoders["Input"].ignore_case is False
    assert back(text) == out
    np.testing.assert_array_equal(np.asarray(back(text, "Probabilities")[0][WORDS[0]]),
                                  np.asarray(net(text, "Probabilities")[0][WORDS[0]]))
    enc = eval(net.encoders["Input"].input_form(), {"NetEncoder": NetEncoder})
    assert enc == net.encoders["Input"] and enc("The cat") == [7, 2]


def test_bad_vocabularies_inputs_and_parameters_are_typed_errors():
    with pytest.raises(OptionError, match="non-empty list"):
        NetEncoder(("Tokens", "the cat"))
    with pytest.raises(OptionError, match="listed twice"):
        NetEncoder(("Tokens", ["a", "a"]))
    with pytest.raises(OptionError, match="not a parameter"):
        NetEncoder(("Tokens", WORDS), Padding=0)
    with pytest.raises(OptionError, match="TargetLength"):
        NetEncoder(("Tokens", WORDS), TargetLength=0)
    with pytest.raises(OptionError, match="SplitPattern"):
        NetEncoder(("Tokens", WORDS), SplitPattern="(")
    enc = NetEncoder(("Tokens", WORDS))
    with pytest.raises(EncodingError, match="Tokens encoder expects a string"):
        enc(3)
    with pytest.raises(EncodingError, match="no tokens"):
        enc("   ")


# ---- the "CTCBeamSearch" decoder ------------------------------------------------------------------

def _collapse(path, blank):
    out, last = [], None
    for k in path:
        if k != last and k != blank:
            out.append(k)
        last = k
    return tuple(out)


def _exact(p):
    """Every labelling's probability, summed over all (n+1)^T paths (p (T, n+1), blank last)."""
    T, C = p.shape
    totals = {}
    for path in itertools.product(range(C), repeat=T):
        lab = _collapse(path, C - 1)
        totals[lab] = totals.get(lab, 0.0) + float(np.prod(p[np.arange(T), list(path)]))
    return totals


def _probabilities(rng, T, C, sharp=1.0):
    x = rng.standard_normal((T, C)) * sharp
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(6))
def test_beam_search_finds_the_most_probable_labelling_of_every_path(seed):
    rng = np.random.default_rng(seed)
    p = _probabilities(rng, 5, 3)  # two classes and the blank: 243 paths, 63 prefixes at most
    exact = _exact(p)
    best = max(exact, key=exact.get)
    dec = NetDecoder(("CTCBeamSearch", "ab"))
    assert dec(p.tolist()) == "".join("ab"[k] for k in best)
    nll = dict(dec(p.tolist(), "NegativeLogLikelihoods"))
    for lab, q in exact.items():  # the beam holds every prefix here, each with its exact probability
        assert nll["".join("ab"[k] for k in lab)] == pytest.approx(-np.log(q), rel=1e-6)


def test_negative_log_likelihoods_equal_torch_ctc_loss_on_ragged_batches():
    rng = np.random.default_rng(7)
    ps = [_probabilities(rng, T, 4, 2.0) for T in (6, 3, 9)]
    dec = NetDecoder(("CTCBeamSearch", ["x", "y", "z"]), BeamSize=8)
    top = dec(ps, ("TopNegativeLogLikelihoods", 2))
    for p, found in zip(ps, top):
        assert len(found) == 2 and found[0][1] <= found[1][1]
        for lab, nll in found:
            target = torch.tensor([["x", "y", "z"].index(c) for c in lab], dtype=torch.int64)
            logp = torch.log(torch.tensor(p)).unsqueeze(1)  # (T, 1, C)
            ref = torch.nn.functional.ctc_loss(logp, target.unsqueeze(0), torch.tensor([len(p)]),
                                               torch.tensor([len(target)]), blank=3, reduction="sum")
            assert nll == pytest.approx(float(ref), rel=1e-6)
    assert [d for d in dec(ps)] == [f[0][0] for f in top]


def test_beam_size_one_is_the_best_path():
    rng = np.random.default_rng(8)
    greedy = NetDecoder(("CTCBeamSearch", "abc", {"BeamSize": 1}))
    for _ in range(5):
        p = _probabilities(rng, 12, 4, 3.0)
        best = _collapse(p.argmax(1).tolist(), 3)
        assert greedy(p.tolist()) == "".join("abc"[k] for k in best)
    # where the best path and the best labelling differ, the beam finds the labelling
    p = np.array([[0.4, 0.0, 0.6], [0.4, 0.0, 0.6]])  # 'a' 0.4 or the blank 0.6 at each step
    assert NetDecoder(("CTCBeamSearch", "ab"), BeamSize=1)(p.tolist()) == ""  # best path: blank, blank (0.36)
    assert NetDecoder(("CTCBeamSearch", "ab"))(p.tolist()) == "a"  # 'a': 0.16 + 0.24 + 0.24 = 0.64


def test_ctc_decoder_on_a_net_output_input_form_and_errors(tmp_path):
    net = NetInitialize(NetChain([NetMapOperator(LinearLayer(3)), SoftmaxLayer()], Input=("Varying", 2),
                                 Output=NetDecoder(("CTCBeamSearch", "ab"), BeamSize=4)))
    x = [[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [[0.5, 0.5]]]
    out = net(x)
    assert all(isinstance(s, str) and len(s) <= len(e) for s, e in zip(out, x))
    path = str(tmp_path / "ctc.wlnet")
    Export(path, net)
    assert Import(path)(x) == out and Import(path).decoders["Output"].beam == 4
    dec = net.decoders["Output"]
    assert eval(dec.input_form(), {"NetDecoder": NetDecoder}) == dec
    with pytest.raises(OptionError, match="BeamSize"):
        NetDecoder(("CTCBeamSearch", "ab"), BeamSize=0)
    with pytest.raises(OptionError, match="not a parameter"):
        NetDecoder(("CTCBeamSearch", "ab"), Width=3)
    with pytest.raises(OptionError, match="property of the CTCBeamSearch decoder"):
        dec([[0.2, 0.3, 0.5]], "Entropy")
    with pytest.raises(InputError, match="probabilit"):
        dec([[2.0, 0.3, 0.5]])
