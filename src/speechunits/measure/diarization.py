"""Diarization error rate (NIST md-eval's definition, as pyannote.metrics and dscore compute it).

Within the scored region of a recording, time is cut at every boundary into pieces; a piece of
duration ``d`` where ``n_ref`` reference and ``n_hyp`` hypothesis speakers talk adds

* ``d * n_ref`` to the reference speech (the denominator),
* ``d * max(0, n_ref - n_hyp)`` to missed speech, ``d * max(0, n_hyp - n_ref)`` to false alarm,
* ``d * (min(n_ref, n_hyp) - n_correct)`` to speaker confusion, where ``n_correct`` counts the
  reference speakers whose mapped hypothesis speaker also talks there.

The mapping of hypothesis to reference speakers is one-to-one and maximises the time they talk
together (the Hungarian algorithm on the co-occurrence matrix), per recording. ``DER = (missed +
false alarm + confusion) / reference speech``; over several recordings the times are summed first.

The scored region is ``uem`` (start, end) when given, else from the earliest to the latest turn of
either side (pyannote.metrics' approximation when it has no UEM). ``collar`` removes ``collar``
seconds on each side of every reference turn boundary (NIST's and dscore's convention; pyannote's
``collar`` is the total width, twice this). ``skip_overlap`` removes the time where two or more
reference speakers talk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

#: ``(speaker, start_s, end_s)``
Turn = tuple[str, float, float]


@dataclass(frozen=True)
class DiarizationErrors:
    """Seconds of reference speech and of each error kind (sums over recordings add up)."""

    reference: float
    missed: float
    false_alarm: float
    confusion: float

    @property
    def der(self) -> float:
        """Diarization error rate (``nan`` without reference speech)."""
        if self.reference <= 0:
            return float("nan")
        return (self.missed + self.false_alarm + self.confusion) / self.reference

    def __add__(self, other: "DiarizationErrors") -> "DiarizationErrors":
        return DiarizationErrors(self.reference + other.reference, self.missed + other.missed,
                                 self.false_alarm + other.false_alarm, self.confusion + other.confusion)

    def to_dict(self) -> dict[str, float]:
        return {"der": self.der, "reference_s": self.reference, "missed_s": self.missed,
                "false_alarm_s": self.false_alarm, "confusion_s": self.confusion}


def _check(turns: Sequence[Turn], side: str) -> None:
    for speaker, start, end in turns:
        if not (np.isfinite(start) and np.isfinite(end)) or end < start or start < 0:
            raise SpeechUnitsError(f"{side} turn of {speaker!r}: need 0 <= start <= end, got {start} {end}")


def _activity(turns: Sequence[Turn], mids: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Speakers and a bool ``[speakers, pieces]`` matrix of who talks at each piece midpoint."""
    speakers = sorted({t[0] for t in turns})
    index = {s: k for k, s in enumerate(speakers)}
    active = np.zeros((len(speakers), len(mids)), dtype=bool)
    for speaker, start, end in turns:
        active[index[speaker]] |= (mids > start) & (mids < end)
    return speakers, active


def diarization_errors(reference: Sequence[Turn], hypothesis: Sequence[Turn], *, collar: float = 0.0,
                       skip_overlap: bool = False, uem: tuple[float, float] | None = None) -> DiarizationErrors:
    """Errors of one recording's hypothesis turns against its reference turns (module rules)."""
    from scipy.optimize import linear_sum_assignment

    _check(reference, "reference")
    _check(hypothesis, "hypothesis")
    if collar < 0:
        raise SpeechUnitsError(f"collar must be >= 0, got {collar}")
    turns = [*reference, *hypothesis]
    if uem is None:
        if not turns:
            return DiarizationErrors(0.0, 0.0, 0.0, 0.0)
        uem = (min(t[1] for t in turns), max(t[2] for t in turns))
    lo, hi = uem
    edges = {lo, hi}
    for _, start, end in turns:
        edges.update((start, end))
    for _, start, end in reference:
        edges.update((start - collar, start + collar, end - collar, end + collar))
    cuts = np.array(sorted(e for e in edges if lo <= e <= hi))
    if len(cuts) < 2:
        return DiarizationErrors(0.0, 0.0, 0.0, 0.0)
    mids, widths = (cuts[1:] + cuts[:-1]) / 2, np.diff(cuts)
    ref_speakers, ref = _activity(reference, mids)
    hyp_speakers, hyp = _activity(hypothesis, mids)
    scored = widths > 0
    if collar > 0:
        for _, start, end in reference:
            for boundary in (start, end):
                scored &= ~((mids > boundary - collar) & (mids < boundary + collar))
    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    if skip_overlap:
        scored &= n_ref < 2
    w = np.where(scored, widths, 0.0)
    correct = np.zeros_like(w)
    if ref_speakers and hyp_speakers:
        together = (ref[:, None, :] & hyp[None, :, :]) @ w  # [ref, hyp] seconds talking at once
        rows, cols = linear_sum_assignment(together, maximize=True)
        correct = sum((ref[r] & hyp[c]).astype(float) for r, c in zip(rows, cols))
    return DiarizationErrors(float(w @ n_ref), float(w @ np.maximum(n_ref - n_hyp, 0)),
                             float(w @ np.maximum(n_hyp - n_ref, 0)),
                             float(w @ (np.minimum(n_ref, n_hyp) - correct)))


def score_recordings(reference: Mapping[str, Sequence[Turn]], hypothesis: Mapping[str, Sequence[Turn]], *,
                     collar: float = 0.0, skip_overlap: bool = False,
                     uems: Mapping[str, tuple[float, float]] | None = None) -> dict[str, DiarizationErrors]:
    """Errors of every reference recording (one without hypothesis turns: all its speech missed)."""
    return {rec: diarization_errors(turns, hypothesis.get(rec, ()), collar=collar, skip_overlap=skip_overlap,
                                    uem=None if uems is None else uems.get(rec))
            for rec, turns in reference.items()}


def turns_by_recording(records: Iterable) -> dict[str, list[Turn]]:
    """``{recording: [(speaker, start, end)]}`` of RTTM ``SPEAKER`` records (:mod:`speechunits.rttm`)."""
    out: dict[str, list[Turn]] = {}
    for r in records:
        if r.type == "SPEAKER":
            out.setdefault(r.file, []).append((r.name, r.start, r.end))
    return out
