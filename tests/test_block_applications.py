"""The three applications of the sequence blocks (scenarios 15-17), briefly: each trains,
measures itself beside its baseline; their data and helpers against direct computations."""

import datetime
import math
from collections import Counter

import numpy as np

from wlnet import NetEncoder
from wlnet.examples import SCENARIOS
from wlnet.examples import blocks as B

QUIET = {"TrainingProgressReporting": None}


def test_scenarios_15_to_17_are_registered():
    assert [SCENARIOS[n][1] for n in (15, 16, 17)] == [B.scenario_15, B.scenario_16, B.scenario_17]


def test_dates_are_written_ten_ways_and_read_back_as_iso():
    t = datetime.date(1998, 11, 3)
    written = [f(t) for f in B.DATE_FORMATS]
    assert written == ["3 November 1998", "Nov 3, 98", "1998/11/03", "03.11.1998", "November 3, 1998",
                       "11/3/1998", "Tuesday, November 3, 1998", "3-Nov-98", "19981103", "the 3rd of November 1998"]
    data = B.date_data(300, seed=0)
    assert all(set(s) <= set(B.DATE_ALPHABET) for s, _ in data)
    for s, iso in data:
        d = datetime.date.fromisoformat(iso)
        assert 1950 <= d.year <= 2049 and s in [f(d) for f in B.DATE_FORMATS]


def test_translation_with_attention_beats_the_plain_encoder_decoder(tmp_path):
    out = B.scenario_15(MaxTrainingRounds=2, n_train=3000, width=32, out_dir=str(tmp_path), **QUIET)
    # an untrained net writes one character in 12 right; the fixed "19"/"20" and the dashes are learnt first
    assert out["character_accuracy"] > 0.5
    held = B.date_data(1000, seed=6)
    assert out["written"] == B.translate(out["net"], [s for s, _ in held[:20]])
    assert (tmp_path / "dates_loss.png").exists()


def test_the_strips_draw_each_digit_s_glyph_between_blank_columns():
    rng = np.random.default_rng(0)
    strip = B.draw("10", rng, noise=0.0)
    glyphs = [c for c in strip.tolist() if any(c)]
    want = [[float(b) for b in col] for d in "10" for col in B.FONT[d]]
    assert glyphs == want and strip.shape[1] == 5
    assert len({tuple(tuple(c) for c in B.FONT[d]) for d in B.FONT}) == 10  # every glyph its own


def test_reading_without_alignment_learns_from_nothing(tmp_path):
    out = B.scenario_16(MaxTrainingRounds=5, n_train=2000, width=32, out_dir=str(tmp_path), **QUIET)
    assert out["character_accuracy"] > 0.5  # from at most 0 (an untrained net writes nothing, or noise)
    assert (tmp_path / "reading_loss.png").exists()


def test_character_accuracy_is_one_minus_the_edit_distance_rate():
    assert B.edit_distance("kitten", "sitting") == 3 and B.edit_distance("", "abc") == 3
    assert B.character_accuracy(["1234", "9"], ["1243", "98"]) == 1 - (2 + 1) / 6


def test_unigram_perplexity_is_that_of_smoothed_token_frequencies():
    words, train, held = ["a", "b"], ["a a b", "b a"], ["a b c"]
    enc = NetEncoder(("Tokens", words))
    counts = Counter(i for p in train for i in enc(p)[1:])  # {1: 1, 2: 1}: the tokens after the first
    total = sum(counts.values()) + 3
    want = math.exp(-(math.log((counts[2] + 1) / total) + math.log((counts[3] + 1) / total)) / 2)
    assert abs(B.unigram_perplexity(words, train, held) - want) < 1e-12


def test_words_model_beats_the_unigram_baseline_and_samples_words(tmp_path):
    out = B.scenario_17(MaxTrainingRounds=3, vocabulary=300, width=64, out_dir=str(tmp_path), **QUIET)
    assert out["perplexity"] < out["baseline_perplexity"]
    words, _, _ = B.word_data(B.docstrings(), 300)
    assert all(len(s.split(" ")) == 16 and set(s.split(" ")) <= set(words) for s in out["samples"])
    assert (tmp_path / "words_loss.png").exists()
