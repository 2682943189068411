"""Metrics of the probe tasks: CTC decoding, PER, WER/CER, accuracy, speaker leakage.

* :func:`ctc_greedy`: best path (argmax per frame), repeats collapsed, blanks dropped.
* :func:`edit_distance` (Levenshtein by ``rapidfuzz``; :func:`speechunits.measure.metrics.edit_distance`) and
  :func:`error_rate` = total edits / total reference length over a set: the PER of ``phones``.
* :func:`wer`, :func:`cer`: ``jiwer`` over strings, corpus-level (total edits / total
  reference words or characters). No normalisation happens here: pass references through
  :func:`speechunits.probe.vocab.normalize_text`, as the tokenizers' output already is.
* :func:`accuracy` (utterance labels), :func:`frame_accuracy` (frames, ignoring
  :data:`~speechunits.probe.labels.IGNORE_INDEX`).
* :func:`speaker_leakage`: ContentVec's measure of how much speaker identity a representation
  (e.g. a unit stream) keeps: the test accuracy of a speaker-identification probe trained on
  it, reported beside chance level ``1 / num_speakers`` (lower = less leakage).
"""
from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.measure.metrics import edit_distance  # re-exported: the one Levenshtein distance
from speechunits.probe.labels import IGNORE_INDEX


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, on any device and dtype
        values = values.detach().float().cpu().numpy() if values.is_floating_point() else values.detach().cpu().numpy()
    return np.asarray(values)


def ctc_greedy(log_probs: Any, blank: int = 0, length: int | None = None) -> list[int]:
    """Greedy CTC decoding of one utterance.

    Args:
        log_probs: scores ``[T, V]`` (log-probabilities or logits; numpy or torch), or best-path
            ids ``[T]`` already.
        blank: the blank id.
        length: valid frames (the rest is padding); default all ``T``.

    Returns:
        Label ids: argmax per frame, consecutive repeats merged, blanks removed
        (``[a, a, blank, a, b, b]`` → ``[a, a, b]``).
    """
    values = _to_numpy(log_probs)
    if values.ndim == 2:
        path = values.argmax(axis=-1)
    elif values.ndim == 1:
        path = values.astype(np.int64)
    else:
        raise SpeechUnitsError(f"ctc_greedy: expected scores [T, V] or ids [T], got shape {values.shape}")
    if length is not None:
        path = path[:length]
    if path.size == 0:
        return []
    keep = np.ones(path.size, dtype=bool)
    keep[1:] = path[1:] != path[:-1]
    keep &= path != blank
    return [int(i) for i in path[keep]]


def _check_pairs(refs: Sequence[Any], hyps: Sequence[Any], what: str) -> None:
    if len(refs) != len(hyps):
        raise SpeechUnitsError(f"{what}: {len(refs)} references but {len(hyps)} hypotheses")
    if len(refs) == 0:
        raise SpeechUnitsError(f"{what}: nothing to score (no utterances)")


def error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Sum of edit distances over sum of reference lengths (PER over phone sequences).

    Raises:
        SpeechUnitsError: different numbers of references and hypotheses, none, or all
            references empty.
    """
    _check_pairs(refs, hyps, "error rate")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise SpeechUnitsError("error rate: all references are empty")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / total


def _jiwer_refs(refs: Sequence[str], hyps: Sequence[str], what: str) -> tuple[list[str], list[str]]:
    _check_pairs(refs, hyps, what)
    empty = [i for i, r in enumerate(refs) if not str(r).strip()]
    if empty:
        raise SpeechUnitsError(f"{what}: reference {empty[0]} is empty ({len(empty)} empty references); "
                               "leave utterances without words out of the scoring set")
    return [str(r) for r in refs], [str(h) for h in hyps]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate (jiwer): (S + D + I) / reference words; words split on whitespace."""
    import jiwer

    references, hypotheses = _jiwer_refs(refs, hyps, "WER")
    return float(jiwer.wer(references, hypotheses))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate (jiwer): (S + D + I) / reference characters (spaces count)."""
    import jiwer

    references, hypotheses = _jiwer_refs(refs, hyps, "CER")
    return float(jiwer.cer(references, hypotheses))


def accuracy(refs: Sequence[Hashable], hyps: Sequence[Hashable]) -> float:
    """Share of positions where the prediction equals the reference."""
    _check_pairs(refs, hyps, "accuracy")
    return sum(1 for r, h in zip(refs, hyps) if r == h) / len(refs)


def frame_accuracy(targets: Any, predictions: Any, ignore_index: int = IGNORE_INDEX) -> float:
    """Share of labelled frames (target != ``ignore_index``) predicted right.

    ``targets`` and ``predictions`` are int arrays of one shape, or lists of per-utterance arrays.
    """
    if isinstance(targets, (list, tuple)):
        _check_pairs(targets, predictions, "frame accuracy")
        t = np.concatenate([_to_numpy(x).reshape(-1) for x in targets])
        p = np.concatenate([_to_numpy(x).reshape(-1) for x in predictions])
    else:
        t, p = _to_numpy(targets).reshape(-1), _to_numpy(predictions).reshape(-1)
    if t.shape != p.shape:
        raise SpeechUnitsError(f"frame accuracy: {t.size} targets but {p.size} predictions")
    scored = t != ignore_index
    if not scored.any():
        raise SpeechUnitsError("frame accuracy: no labelled frame")
    return float((t[scored] == p[scored]).mean())


def speaker_leakage(true_speakers: Sequence[str], predicted_speakers: Sequence[str]) -> dict[str, float | int]:
    """Speaker identification from a representation alone, as ContentVec measures leakage.

    Args:
        true_speakers: the speaker of each test utterance.
        predicted_speakers: the speaker a probe trained on the representation predicts.

    Returns:
        ``{"accuracy", "chance", "num_speakers", "majority"}``: accuracy, chance level
        ``1 / num_speakers`` (speakers among ``true_speakers``), and the share of the most
        frequent speaker (what always guessing it scores).
    """
    acc = accuracy(true_speakers, predicted_speakers)
    counts: dict[str, int] = {}
    for s in true_speakers:
        counts[s] = counts.get(s, 0) + 1
    return {"accuracy": acc, "chance": 1.0 / len(counts), "num_speakers": len(counts),
            "majority": max(counts.values()) / len(true_speakers)}
