"""Unit error rate, unit BLEU, diversity and ASR-BLEU against hand computations and sacrebleu."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.measure.sequences import (asr_bleu, diversity, sentence_unit_bleu, sequence_scores, unit_bleu,
                                           unit_error_rate, units_text)


def _bleu_by_hand(refs: list[list[int]], hyps: list[list[int]]) -> float:
    """Papineni et al.: clipped n-gram precisions (n = 1..4) pooled over the corpus, geometric mean, brevity penalty."""
    log_precision = 0.0
    for n in range(1, 5):
        matched = total = 0
        for ref, hyp in zip(refs, hyps):
            r = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            h = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            matched += sum(min(c, r[g]) for g, c in h.items())
            total += sum(h.values())
        log_precision += math.log(matched / total) / 4
    ref_len, hyp_len = sum(map(len, refs)), sum(map(len, hyps))
    penalty = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * penalty * math.exp(log_precision)


def test_unit_bleu_of_one_pair_is_the_hand_value():
    # 1-grams 4/5, 2-grams 3/4, 3-grams 2/3, 4-grams 1/2, same length: (0.8 * 0.75 * 2/3 * 0.5) ** 0.25
    expected = 100 * (0.8 * 0.75 * (2 / 3) * 0.5) ** 0.25
    assert unit_bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 6]]) == pytest.approx(expected, abs=1e-9)
    assert unit_bleu([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == pytest.approx(100.0)
    assert unit_bleu([[1, 2, 3]], [[1, 2, 3]]) == 0.0  # no 4-gram at all: corpus BLEU is 0 (unsmoothed)


def test_corpus_unit_bleu_equals_the_formula_with_multi_digit_ids():
    rng = np.random.default_rng(0)
    refs = [rng.integers(0, 12, size=n).tolist() for n in (14, 20, 9, 30)]
    hyps = [r[:] for r in refs]
    for h in hyps:  # a few substitutions and one deletion each; ids above 9 are single tokens
        h[2] = 11 - h[2]
        del h[5]
    hyps[1] = hyps[1] + [100, 101]
    assert unit_bleu(refs, hyps) == pytest.approx(_bleu_by_hand(refs, hyps), abs=1e-6)


def test_sentence_unit_bleu_is_sacrebleus_sentence_value():
    import sacrebleu

    ref, hyp = [10, 2, 33, 4, 5, 6], [10, 2, 33, 5, 6]
    expected = sacrebleu.sentence_bleu("10 2 33 5 6", ["10 2 33 4 5 6"], tokenize="none").score
    assert sentence_unit_bleu(ref, hyp) == pytest.approx(expected)
    assert units_text(np.array([10, 2, 33])) == "10 2 33"


def test_unit_error_rate_by_hand():
    refs = [[1, 2, 3, 4], [5, 6]]
    hyps = [[1, 3, 4], [5, 7, 6, 8]]  # one deletion; one insertion + one insertion
    assert unit_error_rate(refs, hyps) == pytest.approx(3 / 6)
    assert unit_error_rate([np.array([1, 2])], [np.array([1, 2])]) == 0.0


def test_diversity_counts_distinct_outputs():
    assert diversity([[1, 2], [1, 2], [3], [1, 2]]) == pytest.approx(2 / 4)
    assert diversity([np.array([1]), np.array([2])]) == 1.0
    assert diversity(["a b", "a b"]) == 0.5


def test_collapse_shows_in_the_scores():
    refs = [[1, 2, 3, 0], [4, 5, 6, 0], [7, 8, 9, 0]]
    collapsed = sequence_scores(refs, [[1, 2, 3, 0]] * 3)
    assert collapsed["diversity"] == pytest.approx(1 / 3)
    assert collapsed["uer"] == pytest.approx(6 / 12)
    assert sequence_scores(refs, refs)["unit_bleu"] == pytest.approx(100.0)


def test_asr_bleu_normalises_case_and_punctuation():
    assert asr_bleu(["The cat sat on the mat."], ["the cat sat on the mat"]) == pytest.approx(100.0)
    import sacrebleu

    expected = sacrebleu.corpus_bleu(["the cat sat on a mat"], [["the cat sat on the mat"]]).score
    assert asr_bleu(["The cat sat on the mat!"], ["The cat, sat on a mat"]) == pytest.approx(expected)


@pytest.mark.parametrize("call", [
    lambda: unit_error_rate([[1]], []),
    lambda: unit_error_rate([], []),
    lambda: unit_error_rate([[]], [[1]]),
    lambda: unit_bleu([[1]], [[1], [2]]),
    lambda: diversity([]),
])
def test_bad_inputs_are_user_errors(call):
    with pytest.raises(SpeechUnitsError):
        call()
