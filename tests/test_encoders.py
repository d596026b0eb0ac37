"""NetEncoder / NetDecoder: round trips, forms, character classes, and their errors."""

import numpy as np
import pytest

import wlnet as w
from wlnet.coders.decoders import NetDecoder
from wlnet.coders.encoders import NetEncoder


def test_characters_index_form_is_one_based_and_ragged():
    enc = NetEncoder(("Characters", "xy"))
    seq = enc.encode(["xyx", "y"])
    assert seq.data.tolist() == [[1, 2, 1], [2, 0, 0]]
    assert seq.lengths.tolist() == [3, 1]
    assert enc.output_type.integer and enc.output_type.levels == 2


def test_characters_unit_vector_form():
    enc = NetEncoder(("Characters", "abc", "UnitVector"))
    seq = enc.encode("cab")
    assert seq.data[0].tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert seq.lengths is None
    padded = enc.encode(["ab", "c"]).data
    assert padded[1].tolist() == [[0, 0, 1], [0, 0, 0]]


def test_character_classes_expand_in_order():
    enc = NetEncoder(("Characters", [w.DigitCharacter, "+"]))
    assert enc.alphabet == list("0123456789+")
    assert enc.encode("9+0").data.tolist() == [[10, 11, 1]]
    letters = NetEncoder(("Characters", [w.LetterCharacter]))
    assert len(letters.alphabet) == 52


def test_ignore_case():
    enc = NetEncoder(("Characters", "ab"), IgnoreCase=True)
    assert enc.encode("AbB").data.tolist() == [[1, 2, 2]]
    strict = NetEncoder(("Characters", "ab"))
    with pytest.raises(w.EncodingError, match="IgnoreCase"):
        strict.encode("A")


def test_character_outside_alphabet_names_character_and_port():
    net = w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=NetEncoder(("Characters", "xy", "UnitVector"))))
    before = net("xy")
    with pytest.raises(w.EncodingError) as err:
        net(["xy", "xzy"])
    msg = str(err.value)
    assert "'z'" in msg and "'xzy'" in msg and 'port "Input"' in msg and "LongShortTermMemoryLayer" in msg
    assert net("xy") == before


def test_empty_string_is_an_error():
    net = w.NetInitialize(w.LongShortTermMemoryLayer(2, Input=NetEncoder(("Characters", "xy", "UnitVector"))))
    with pytest.raises(w.InputError, match="empty inputs are not permitted"):
        net(["x", ""])


def test_class_encoder_forms():
    onehot = NetEncoder(("Class", ["a", "b", "c"], "UnitVector"))
    assert onehot.encode("b").tolist() == [[0, 1, 0]]
    index = NetEncoder(("Class", ["a", "b", "c"], "Index"))
    assert index.encode(["c", "a"]).tolist() == [3, 1]
    with pytest.raises(w.EncodingError, match="'d' is not one of"):
        index.encode("d")


def test_class_decoder_decision_and_probabilities():
    dec = NetDecoder(("Class", ["Less", "Greater", "Equal"]))
    net = w.NetChain([w.SoftmaxLayer()], Input=3, Output=dec)
    assert net([0.0, 5.0, 1.0]) == "Greater"
    assert net([[9.0, 0, 0], [0, 0, 9.0]]) == ["Less", "Equal"]
    probs = net([0.0, 5.0, 1.0], "Probabilities")
    expected = np.exp([0.0, 5.0, 1.0]) / np.exp([0.0, 5.0, 1.0]).sum()
    assert list(probs) == ["Less", "Greater", "Equal"]
    np.testing.assert_allclose(list(probs.values()), expected, rtol=1e-5)
    top = net([0.0, 5.0, 1.0], "TopProbabilities")
    assert top[0][0] == "Greater"


def test_decoder_size_must_match_output():
    with pytest.raises(w.ShapeError) as err:
        w.NetChain([w.LinearLayer(4), w.SoftmaxLayer()], Input=2, Output=NetDecoder(("Class", ["a", "b"])))
    assert "size 4" in str(err.value) and "size 2" in str(err.value)


def test_decoder_target_reader_round_trip():
    dec = NetDecoder(("Class", ["x", "y"]))
    b = dec.target_reader("net", "Output").read(["y", "x", "y"])
    assert b.value.tolist() == [1, 0, 1] and b.batched
    with pytest.raises(w.EncodingError, match="target 2, 'z'"):
        dec.target_reader("net", "Output").read(["y", "z"])


@pytest.mark.parametrize("spec", [("Characters", "ab", "Index", 1), ("Words", "ab"), ("Characters", "ab", "Bad"),
                                  ("Characters", "")])
def test_bad_encoder_specs(spec):
    with pytest.raises(w.OptionError):
        NetEncoder(spec)


def test_bad_decoder_specs():
    with pytest.raises(w.OptionError):
        NetDecoder(("Class", ["a", "a"]))
    with pytest.raises(w.OptionError):
        NetDecoder(("Words", "ab"))
    with pytest.raises(w.OptionError):
        NetDecoder(("Characters", ""))


@pytest.mark.parametrize("alphabet, ignore_case, strings", [
    ("xy", False, ["x", "xyyx", "yy", "xyxyxyxy"]),
    ("abcé", True, ["ÉA", "cab", "é"]),  # Latin-1 beyond ASCII, both cases
    ("αβγ", False, ["αβ", "γγγ", "β"]),  # beyond Latin-1: one character at a time
])
def test_characters_read_at_once_equal_reading_them_one_at_a_time(alphabet, ignore_case, strings):
    import torch

    from wlnet.coders.encoders import _EncoderReader as _Reader
    from wlnet.core.errors import EncodingError

    enc = NetEncoder(("Characters", alphabet), IgnoreCase=ignore_case)
    for form in ("Index", "UnitVector"):
        e = NetEncoder(("Characters", alphabet, form), IgnoreCase=ignore_case)
        reader = _Reader(e, "Layer", "Input")
        fast, slow = reader._strings(strings), reader._strings_checked(strings)
        assert torch.equal(fast.data, slow.data)
        assert (fast.lengths is None and slow.lengths is None) or torch.equal(fast.lengths, slow.lengths)
    with pytest.raises(EncodingError, match="is not in the encoder's alphabet"):
        _Reader(enc, "Layer", "Input")._strings([strings[0], "z"])
    with pytest.raises(EncodingError, match="string 2 of the input is empty"):
        _Reader(enc, "Layer", "Input")._strings([strings[0], ""])


# Wolfram's documented forms → what the encoder gives (NetEncoder[{"Class", {"a","b","c"}}]["b"] is 2;
# "UnitVector", and its older name "IndicatorVector", give the one-hot vector).
@pytest.mark.parametrize("spec, value, expected", [
    (("Class", ["a", "b", "c"]), "b", 2),
    (("Class", ["a", "b", "c"], "Index"), ["c", "a"], [3, 1]),
    (("Class", ["a", "b", "c"], "UnitVector"), "b", [0.0, 1.0, 0.0]),
    (("Class", ["a", "b", "c"], "IndicatorVector"), "c", [0.0, 0.0, 1.0]),
    (("Characters", "ab"), "ba", [2, 1]),
    ("Characters", "a\tA", [3 + 65, 1, 3 + 33]),  # tab, newline, then codes 32..126: "a" is 3 + (97 - 32)
])
def test_wolfram_encoder_forms(spec, value, expected):
    assert NetEncoder(spec)(value) == expected


def test_default_characters_alphabet_is_wolframs():
    enc = NetEncoder("Characters")
    assert len(enc.alphabet) == 97 and enc.alphabet[:3] == ["\t", "\n", " "] and enc.alphabet[-1] == "~"
    assert enc.alphabet == NetEncoder(("Characters",)).alphabet
    assert NetEncoder(("Class", ["x"], "IndicatorVector")) == NetEncoder(("Class", ["x"], "UnitVector"))


def test_target_length_cuts_strings_to_a_fixed_length():
    enc = NetEncoder(("Characters", "abc"), TargetLength=2)
    assert enc(["abc", "cb"]) == [[1, 2], [3, 2]]
    assert enc.output_type.dims == (2,)
    with pytest.raises(w.EncodingError, match="string 2 of the input has 1 characters, fewer than the encoder's "
                                              "TargetLength 2"):
        enc(["ab", "c"])
    for bad in (0, 1.5, True):
        with pytest.raises(w.OptionError, match="TargetLength must be a positive integer"):
            NetEncoder(("Characters", "ab"), TargetLength=bad)
    with pytest.raises(w.OptionError, match="for a Class encoder"):
        NetEncoder(("Class", ["a"]), TargetLength=2)


def test_unknown_keyword_is_an_option_error():
    with pytest.raises(w.OptionError, match="'Ignorecase' is not an option of NetEncoder"):
        NetEncoder(("Characters", "ab"), Ignorecase=True)
    with pytest.raises(w.OptionError, match="'Foo' is not an option of NetDecoder"):
        NetDecoder(("Class", ["a", "b"]), Foo=1)


def test_class_encoder_saved_with_its_form():
    enc = NetEncoder(("Class", ["a", "b"]))
    assert enc._spec == ("Class", ["a", "b"], "Index") and "'Index'" in enc.input_form()
