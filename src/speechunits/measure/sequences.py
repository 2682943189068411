"""Scores of predicted unit sequences against reference units, before any audio is made.

* :func:`unit_error_rate`: total Levenshtein edits / total reference units (the PER formula over
  unit ids, :func:`speechunits.measure.metrics.edit_distance`). Compare deduplicated sequences:
  a model that predicts its own durations is not frame-aligned with the reference.
* :func:`unit_bleu`: corpus BLEU (sacrebleu, 4-grams, brevity penalty) over unit-id strings
  (``"12 7 3"``) with ``tokenize="none"``, so each unit id is one word; 0-100.
  :func:`sentence_unit_bleu`: sacrebleu's sentence BLEU of one pair (its default exponential
  smoothing), for per-utterance tables.
* :func:`diversity`: distinct outputs / inputs; 1.0 when every input gets its own output. A
  collapsed model (fairseq issue 5003: nearly the same audio for every input) shows here
  before any vocoder runs.
* :func:`asr_bleu`: corpus BLEU of ASR transcripts of the output speech against reference text,
  both passed through :func:`speechunits.probe.vocab.normalize_text` (lower case, punctuation
  removed, as fairseq's ASR-BLEU scripts do), sacrebleu's default ``13a`` tokenisation.

sacrebleu is the ``[seq2seq]`` extra; it is imported only when a BLEU is computed.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.measure.metrics import edit_distance

UnitSequence = Sequence[int] | np.ndarray


def _check(refs: Sequence[object], hyps: Sequence[object], what: str) -> None:
    if len(refs) != len(hyps):
        raise SpeechUnitsError(f"{what}: {len(refs)} references but {len(hyps)} hypotheses")
    if len(refs) == 0:
        raise SpeechUnitsError(f"{what}: nothing to score (no sequences)")


def _ids(seq: UnitSequence) -> list[int]:
    return [int(x) for x in np.asarray(seq).reshape(-1).tolist()]


def units_text(seq: UnitSequence) -> str:
    """Unit ids as one space-separated string (``[12, 7, 3]`` -> ``"12 7 3"``): BLEU's words."""
    return " ".join(str(x) for x in _ids(seq))


def unit_error_rate(refs: Sequence[UnitSequence], hyps: Sequence[UnitSequence]) -> float:
    """Sum of edit distances over sum of reference lengths (may exceed 1 with many insertions).

    Raises:
        SpeechUnitsError: different counts, no pairs, or all references empty.
    """
    _check(refs, hyps, "unit error rate")
    total = sum(len(_ids(r)) for r in refs)
    if total == 0:
        raise SpeechUnitsError("unit error rate: all references are empty")
    return sum(edit_distance(_ids(r), _ids(h)) for r, h in zip(refs, hyps)) / total


def _sacrebleu():
    from speechunits.extras import require_extra

    return require_extra("sacrebleu", "seq2seq", "BLEU")


def unit_bleu(refs: Sequence[UnitSequence], hyps: Sequence[UnitSequence]) -> float:
    """Corpus BLEU (0-100) of unit sequences, each unit id one token (``tokenize="none"``)."""
    _check(refs, hyps, "unit BLEU")
    sacrebleu = _sacrebleu()
    result = sacrebleu.corpus_bleu([units_text(h) for h in hyps], [[units_text(r) for r in refs]], tokenize="none")
    return float(result.score)


def sentence_unit_bleu(ref: UnitSequence, hyp: UnitSequence) -> float:
    """sacrebleu's sentence BLEU (0-100, exponential smoothing) of one unit sequence."""
    sacrebleu = _sacrebleu()
    return float(sacrebleu.sentence_bleu(units_text(hyp), [units_text(ref)], tokenize="none").score)


def diversity(outputs: Sequence[Sequence[Hashable] | np.ndarray | str]) -> float:
    """Distinct outputs / number of outputs (one output per input); 0 < value <= 1.

    Outputs are compared exactly (unit id sequences, strings).
    """
    if len(outputs) == 0:
        raise SpeechUnitsError("diversity: no outputs")
    keys = {o if isinstance(o, str) else tuple(np.asarray(o).reshape(-1).tolist()) for o in outputs}
    return len(keys) / len(outputs)


def asr_bleu(ref_texts: Sequence[str], hyp_texts: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of transcripts against reference text, both normalised (see module docstring)."""
    from speechunits.probe.vocab import normalize_text

    _check(ref_texts, hyp_texts, "ASR-BLEU")
    sacrebleu = _sacrebleu()
    refs = [normalize_text(t) for t in ref_texts]
    hyps = [normalize_text(t) for t in hyp_texts]
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def sequence_scores(refs: Sequence[UnitSequence], hyps: Sequence[UnitSequence]) -> dict[str, float]:
    """``{"uer", "unit_bleu", "diversity", "length_ratio"}`` of paired unit sequences.

    ``length_ratio`` = total hypothesis units / total reference units (short outputs show here).
    """
    ref_total = sum(len(_ids(r)) for r in refs)
    return {"uer": unit_error_rate(refs, hyps), "unit_bleu": unit_bleu(refs, hyps), "diversity": diversity(hyps),
            "length_ratio": sum(len(_ids(h)) for h in hyps) / max(ref_total, 1)}
