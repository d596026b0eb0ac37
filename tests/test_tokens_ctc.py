"""The "Tokens" encoder and decoder: splitting, the unknown index, IgnoreCase, TargetLength,
SplitPattern, round trips through a net, a saved file and InputForm, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from wlnet import (
    EmbeddingLayer,
    EncodingError,
    Export,
    Import,
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
