"""Probe metrics against hand counts: CTC greedy decoding, edit distance, PER, WER/CER, accuracy, leakage."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.probe.metrics import (
    accuracy,
    cer,
    ctc_greedy,
    edit_distance,
    error_rate,
    frame_accuracy,
    speaker_leakage,
    wer,
)


def _one_hot_log_probs(path: list[int], vocab: int) -> np.ndarray:
    """``[T, V]`` log-probabilities whose argmax per frame is ``path``."""
    scores = np.full((len(path), vocab), -5.0, dtype=np.float32)
    scores[np.arange(len(path)), path] = -0.1
    return scores


@pytest.mark.parametrize("ref, hyp, expected", [
    ("kitten", "sitting", 3),  # k->s, e->i, +g
    (["a", "b", "c"], ["a", "c", "c", "d"], 2),  # b->c, +d
    ([], ["x", "y"], 2),
    (["aa", "b"], ["aa", "b"], 0),
    (["ae", "k", "t"], ["ae", "t"], 1),  # multi-character labels are single symbols
    ([3, 1, 4, 1, 5], [1, 4, 1, 5, 9], 2),  # -3, +9
])
def test_edit_distance_hand_counts(ref, hyp, expected) -> None:
    assert edit_distance(ref, hyp) == expected


def test_ctc_greedy_collapses_repeats_then_drops_blanks() -> None:
    # a a _ a b b _ _ c  ->  a a b c   (a blank separates the two a's)
    a, b, c = 1, 2, 3
    path = [a, a, 0, a, b, b, 0, 0, c]
    assert ctc_greedy(_one_hot_log_probs(path, 4)) == [a, a, b, c]
    assert ctc_greedy(np.array(path)) == [a, a, b, c]
    assert ctc_greedy(torch.from_numpy(_one_hot_log_probs(path, 4)).to(torch.bfloat16)) == [a, a, b, c]
    assert ctc_greedy(_one_hot_log_probs(path, 4), length=3) == [a]  # padding frames ignored
    assert ctc_greedy(_one_hot_log_probs([2, 2, 1], 4), blank=2) == [1]
    assert ctc_greedy(np.zeros((0, 4))) == []


def test_ctc_per_on_a_toy_example() -> None:
    # ref "a b c"; the network's best path decodes to "a c c d": 1 substitution + 1 insertion = 2 / 3.
    tokens = ["<blank>", "a", "b", "c", "d"]
    path = [1, 1, 0, 3, 0, 3, 4, 4]
    hyp = [tokens[i] for i in ctc_greedy(_one_hot_log_probs(path, len(tokens)))]
    assert hyp == ["a", "c", "c", "d"]
    assert error_rate([["a", "b", "c"]], [hyp]) == pytest.approx(2 / 3)
    # corpus level: total edits over total reference length, not a mean of rates
    assert error_rate([["a", "b", "c"], ["d", "e"]], [hyp, ["d", "e"]]) == pytest.approx(2 / 5)


def test_error_rate_rejects_bad_sets() -> None:
    with pytest.raises(SpeechUnitsError, match="2 references but 1 hypotheses"):
        error_rate([["a"], ["b"]], [["a"]])
    with pytest.raises(SpeechUnitsError, match="nothing to score"):
        error_rate([], [])
    with pytest.raises(SpeechUnitsError, match="all references are empty"):
        error_rate([[]], [["a"]])


def test_wer_matches_hand_count() -> None:
    refs = ["the cat sat on the mat", "good morning", "a b c d"]
    hyps = ["the cat sit on mat mat now", "good morning", "a x c"]
    # utt 1: sat->sit, the->mat, +now = 3; utt 2: 0; utt 3: b->x, -d = 2; reference words 6 + 2 + 4
    assert wer(refs, hyps) == pytest.approx(5 / 12)
    # the same count from word-level edit distance (a second implementation)
    edits = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    assert edits == 5
    assert wer(["hello world"], [""]) == pytest.approx(1.0)  # empty hypothesis: all deleted


def test_cer_matches_hand_count() -> None:
    assert cer(["abc"], ["abd"]) == pytest.approx(1 / 3)
    assert cer(["ab cd", "xy"], ["ab d", "xy"]) == pytest.approx(1 / 7)  # one deletion; spaces count


def test_wer_refuses_empty_references_and_mismatched_lists() -> None:
    with pytest.raises(SpeechUnitsError, match="reference 1 is empty"):
        wer(["a b", "  "], ["a b", "c"])
    with pytest.raises(SpeechUnitsError, match="1 references but 2 hypotheses"):
        cer(["a"], ["a", "b"])


def test_accuracy_and_frame_accuracy() -> None:
    assert accuracy(["x", "y", "z", "x"], ["x", "y", "x", "y"]) == 0.5
    targets = np.array([0, 1, -100, 2, 2])
    preds = np.array([0, 2, 1, 2, 0])
    assert frame_accuracy(targets, preds) == pytest.approx(2 / 4)  # the -100 frame is not scored
    assert frame_accuracy([targets, np.array([1])], [preds, np.array([1])]) == pytest.approx(3 / 5)
    with pytest.raises(SpeechUnitsError, match="no labelled frame"):
        frame_accuracy(np.array([-100]), np.array([0]))


def test_speaker_leakage_reports_chance_beside_accuracy() -> None:
    truth = ["A", "A", "B", "C"]
    predicted = ["A", "B", "B", "A"]
    assert speaker_leakage(truth, predicted) == {"accuracy": 0.5, "chance": pytest.approx(1 / 3),
                                                 "num_speakers": 3, "majority": 0.5}
