"""CTC prefix beam search with a word n-gram: exact on tiny cases, and the LM changes the words it should."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.lm.arpa import read_arpa
from speechunits.lm.ngram_dir import train_word_ngram
from speechunits.probe.lm_decode import BeamOptions, WordLMDecoder
from speechunits.probe.vocab import chars_to_text

TOKENS = ["<blank>", "a", "b", "|"]


def lm_of(sentences: list[str], path) -> object:
    train_word_ngram(sentences, path, order=2)
    return read_arpa(path)


@pytest.fixture()
def word_lm(tmp_path):
    return lm_of(["ab ab", "ab"], tmp_path / "w.arpa")


#: a BPE vocabulary in the Metaspace convention: "▁" begins a word
BPE_TOKENS = ["<blank>", "\u2581a", "b", "\u2581", "ab"]


def spell(tokens: list[str], labels: list[int]) -> str:
    """The text of collapsed CTC labels: characters with "|", or BPE tokens with "▁" (independent of the decoder)."""
    if "|" in tokens:
        return chars_to_text(tokens[c] for c in labels)
    return " ".join("".join(tokens[c] for c in labels).replace("\u2581", " ").split())


def brute_force_best_text(log_probs: np.ndarray, tokens: list[str] = TOKENS) -> str:
    """argmax over texts of the summed probability of every CTC path that spells the text."""
    totals: dict[str, float] = {}
    for path in itertools.product(range(len(tokens)), repeat=len(log_probs)):
        labels = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        text = spell(tokens, labels)
        p = math.exp(sum(log_probs[t, c] for t, c in enumerate(path)))
        totals[text] = totals.get(text, 0.0) + p
    return max(totals, key=totals.get)


@pytest.mark.parametrize("tokens, boundary", [(TOKENS, "|"), (BPE_TOKENS, "\u2581")], ids=["chars", "bpe"])
def test_without_lm_weight_the_search_finds_the_most_probable_text(word_lm, tokens, boundary):
    rng = np.random.default_rng(0)
    exhaustive = BeamOptions(alpha=0.0, beta=0.0, beam=10_000, token_min_logp=-math.inf, prune_logp=-math.inf,
                             unk_offset=0.0)
    decoder = WordLMDecoder(tokens, boundary, word_lm, exhaustive)
    differs_from_best_path = 0
    for _ in range(25):
        logits = rng.normal(scale=2.0, size=(5 if len(tokens) > 4 else 6, len(tokens)))
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        expected = brute_force_best_text(log_probs, tokens)
        assert decoder.decode(log_probs) == expected
        best_path = log_probs.argmax(1)
        greedy = spell(tokens, [c for i, c in enumerate(best_path) if c != 0 and (i == 0 or c != best_path[i - 1])])
        differs_from_best_path += greedy != expected
    assert differs_from_best_path > 0  # the cases are not all ones that greedy decoding gets right


def test_bpe_word_pieces_join_into_the_word_the_lm_knows(tmp_path):
    """"▁a" + "b" spells "ab" (one word); "▁a" + "▁b" spells "a b". The LM knows only "ab"."""
    lm = lm_of(["ab"] * 5 + ["ab ab"] * 5, tmp_path / "w.arpa")
    tokens = ["<blank>", "\u2581a", "b", "\u2581b"]
    # the acoustics lean to "▁b" (0.6) over "b" (0.4) after "▁a"
    frames = np.log(np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.4, 0.6]]) + 1e-12)
    plain = BeamOptions(alpha=0.0, beta=0.0, unk_offset=0.0)
    assert WordLMDecoder(tokens, "\u2581", lm, plain).decode(frames) == "a b"
    assert WordLMDecoder(tokens, "\u2581", lm, BeamOptions(alpha=1.0, beta=0.0, unk_offset=0.0)).decode(frames) == "ab"


def test_the_word_lm_picks_the_word_it_knows(tmp_path):
    # "ab" or "bb": the acoustics lean to "bb" (0.6 / 0.4 on the first letter), the LM knows only "ab"
    lm = lm_of(["ab"] * 5 + ["ab ab"] * 5, tmp_path / "w.arpa")
    frames = np.log(np.array([[0.0, 0.4, 0.6, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]) + 1e-12)
    assert WordLMDecoder(TOKENS, "|", lm, BeamOptions(alpha=0.0, beta=0.0, unk_offset=0.0)).decode(frames) == "bb"
    assert WordLMDecoder(TOKENS, "|", lm, BeamOptions(alpha=1.0, beta=0.0, unk_offset=0.0)).decode(frames) == "ab"
    # without the LM's probabilities, the vocabulary alone: "b" begins no LM word, "bb" is none
    assert WordLMDecoder(TOKENS, "|", lm, BeamOptions(alpha=0.0, beta=0.0, unk_offset=-10.0)).decode(frames) == "ab"


def test_word_bonus_and_end_of_sentence(tmp_path):
    lm = lm_of(["a b", "a b"], tmp_path / "w.arpa")
    # "a|b": the boundary is faint; a large word bonus keeps two words, none merges them into "ab"
    frames = np.log(np.array([[0.0, 1.0, 0.0, 0.0], [0.7, 0.0, 0.0, 0.3], [0.0, 0.0, 1.0, 0.0]]) + 1e-12)
    assert WordLMDecoder(TOKENS, "|", lm, BeamOptions(alpha=0.0, beta=0.0, unk_offset=0.0)).decode(frames) == "ab"
    assert WordLMDecoder(TOKENS, "|", lm, BeamOptions(alpha=0.0, beta=5.0, unk_offset=0.0)).decode(frames) == "a b"
    empty = np.log(np.array([[1.0, 0.0, 0.0, 0.0]] * 3) + 1e-12)
    assert WordLMDecoder(TOKENS, "|", lm, BeamOptions(alpha=1.0)).decode(empty) == ""


def test_bad_settings_and_inputs_are_refused(word_lm, tmp_path):
    with pytest.raises(SpeechUnitsError, match="beam"):
        BeamOptions(beam=0)
    with pytest.raises(SpeechUnitsError, match="alpha"):
        BeamOptions(alpha=-1)
    with pytest.raises(SpeechUnitsError, match="word boundary"):
        WordLMDecoder(["<blank>", "a"], "|", word_lm)
    with pytest.raises(SpeechUnitsError, match="word boundary"):
        WordLMDecoder(["<blank>", "a", "b"], "\u2581", word_lm)
    with pytest.raises(SpeechUnitsError, match=r"\[T, 4\]"):
        WordLMDecoder(TOKENS, "|", word_lm).decode(np.zeros((3, 5)))
    with pytest.raises(SpeechUnitsError, match="no words"):
        train_word_ngram(["", "  ..."], tmp_path / "x.arpa")
