"""The three sequence applications (scenarios 12-14), briefly: each trains, measures itself and
beats its baseline; their data and helpers against direct computations."""

import math
from collections import Counter

from wlnet.examples import SCENARIOS
from wlnet.examples import sequences as S

QUIET = {"TrainingProgressReporting": None}


def test_tags_against_their_definition():
    for s, want in [("3185297", ["Left", "Neither", "Left", "Neither", "Neither", "Both", "Right"]),
                    ("11", ["Left", "Right"]), ("5", ["Both"])]:
        assert S.tags(s) == want
    data = S.tagging_data(50, seed=0)
    assert len(data) == 50 and all(len(t) == len(s) for s, t in data.items())


def test_unigram_bits_is_the_cross_entropy_of_smoothed_frequencies():
    train, held, alphabet = "aab", "ba", "abc"
    counts = Counter(train)
    p = {c: (counts[c] + 1) / (len(train) + len(alphabet)) for c in alphabet}
    want = -(math.log2(p["b"]) + math.log2(p["a"])) / 2
    assert abs(S.unigram_bits(train, held, alphabet) - want) < 1e-12


def test_language_text_is_the_standard_library_source_in_the_alphabet():
    import bisect
    import inspect

    text = S.language_text(("bisect",))
    assert set(text) <= set(S.LM_ALPHABET)
    assert text == "".join(c if c in S.LM_ALPHABET else "?" for c in inspect.getsource(bisect))
    train, held, train_text, held_text = S.language_data(text, length=41)
    assert all(len(c) == 41 for c in train + held) and train_text + held_text == text


def test_scenarios_12_to_14_are_registered():
    assert [SCENARIOS[n][1] for n in (12, 13, 14)] == [S.scenario_12, S.scenario_13, S.scenario_14]


def test_language_model_beats_the_unigram_baseline_and_writes_text(tmp_path):
    out = S.scenario_12(MaxTrainingRounds=8, modules=("bisect", "heapq"), width=64, out_dir=str(tmp_path), **QUIET)
    assert out["bits"] < out["baseline_bits"] - 0.5
    assert len(out["sample"]) == 240 and set(out["sample"]) <= set(S.LM_ALPHABET)
    assert (tmp_path / "language_model_loss.png").exists()


def test_encoder_decoder_learns_to_reverse(tmp_path):
    out = S.scenario_13(MaxTrainingRounds=3, n_train=6000, out_dir=str(tmp_path), **QUIET)
    assert out["accuracy"] > 0.2  # from 0 (a random net never writes a whole string back reversed)
    held = S.reversal_data(500, seed=2)
    assert out["written"] == S.greedy_decode(out["net"], [s for s, _ in held[:20]])
    assert (tmp_path / "reversal_loss.png").exists()


def test_bidirectional_tagger_beats_the_forward_one(tmp_path):
    out = S.scenario_14(MaxTrainingRounds=6, n_train=1500, out_dir=str(tmp_path), **QUIET)
    assert out["accuracy"] > 0.93 and out["accuracy"] > out["forward_accuracy"] + 0.1
    assert out["answer"] == out["net"]("3185297") and len(out["answer"]) == 7
    assert (tmp_path / "tagger_loss.png").exists()
