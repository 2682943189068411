"""Augmentation invariance of units: unit edit distance (UED) between clean and augmented audio.

UED (augmentation-invariant GSLM paper) of one utterance = Levenshtein distance between the
deduplicated units of the clean and the augmented audio, divided by the length of the
deduplicated clean units. Over a corpus we report the ratio of sums (total edits / total
clean length), so long utterances weigh by their length, and also the mean per utterance.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.augment import Augmentation
from speechunits.measure.metrics import edit_distance, run_starts

log = logging.getLogger(__name__)


def dedup_ids(ids: np.ndarray) -> np.ndarray:
    """Runs of equal ids merged: ``[N] -> [R]``."""
    ids = np.asarray(ids).reshape(-1)
    return ids[run_starts(ids)]


def unit_edit_distance(clean: np.ndarray, augmented: np.ndarray) -> tuple[int, int]:
    """``(edits, reference length)`` between deduplicated clean and augmented unit ids."""
    ref = dedup_ids(clean)
    return edit_distance(ref, dedup_ids(augmented)), int(ref.size)


@dataclass(frozen=True)
class InvarianceRow:
    """UED of one augmentation at one strength over the corpus."""

    kind: str
    strength: float
    label: str
    ued: float  # total edits / total deduplicated clean length
    ued_mean: float  # mean of per-utterance UED
    edits: int
    reference_length: int
    utterances: int


@dataclass(frozen=True)
class InvarianceReport:
    rows: list[InvarianceRow]
    utterances: int
    audio_seconds: float
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def utterance_seed(seed: int, utt_id: str) -> int:
    """A per-utterance seed that depends on the id, not on corpus order."""
    return (zlib.crc32(utt_id.encode("utf-8")) ^ (seed * 0x9E3779B1)) & 0x7FFFFFFF


def measure_invariance(
    audio: Iterable[tuple[str, np.ndarray]],
    sample_rate: int,
    encode: Callable[[np.ndarray], np.ndarray],
    augmentations: Sequence[Augmentation],
    *,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> InvarianceReport:
    """UED per augmentation over ``(utt_id, samples [T] at sample_rate)`` items.

    Args:
        encode: samples ``[T]`` at ``sample_rate`` -> frame-level unit ids ``[N]``.
        augmentations: e.g. :func:`speechunits.augment.standard_augmentations`.
        seed: base seed; each utterance's augmentations use :func:`utterance_seed`.
        on_progress: called with audio seconds done after each utterance.

    Returns:
        The report; utterances too short to give a unit, or that an augmentation cannot apply to
        (noise at an SNR of digital silence), are listed in ``skipped``. When none
        could be encoded, ``utterances`` is 0 and every row's UED is NaN.

    Raises:
        SpeechUnitsError: no augmentation. Exceptions of ``encode`` propagate unchanged.
    """
    if not augmentations:
        raise SpeechUnitsError("invariance: no augmentation given")
    edits = np.zeros(len(augmentations), dtype=np.int64)
    lengths = np.zeros(len(augmentations), dtype=np.int64)
    per_utt: list[list[float]] = [[] for _ in augmentations]
    skipped: list[str] = []
    count = 0
    seconds = 0.0
    for utt_id, samples in audio:
        samples = np.asarray(samples, dtype=np.float32)
        clean = np.asarray(encode(samples)).reshape(-1)
        if clean.size == 0:
            log.warning("%s: too short for the encoder, skipped", utt_id)
            skipped.append(utt_id)
            continue
        useed = utterance_seed(seed, utt_id)
        try:  # every augmentation or none, so that all rows average over the same utterances
            augmented = [aug.apply(samples, sample_rate, useed) for aug in augmentations]
        except SpeechUnitsError as exc:  # e.g. noise at an SNR of digital silence
            log.warning("%s: skipped (%s)", utt_id, exc)
            skipped.append(utt_id)
            continue
        for k, audio_k in enumerate(augmented):
            units = np.asarray(encode(audio_k)).reshape(-1)
            e, n = unit_edit_distance(clean, units)
            edits[k] += e
            lengths[k] += n
            per_utt[k].append(e / n)
        count += 1
        seconds += samples.size / sample_rate
        if on_progress is not None:
            on_progress(samples.size / sample_rate)
    if count == 0:
        log.warning("invariance: no utterance could be encoded")
        rows = [InvarianceRow(aug.kind, aug.strength, aug.label, math.nan, math.nan, 0, 0, 0) for aug in augmentations]
        return InvarianceReport(rows, 0, 0.0, skipped)
    rows = [InvarianceRow(aug.kind, aug.strength, aug.label, float(edits[k] / lengths[k]), float(np.mean(per_utt[k])),
                          int(edits[k]), int(lengths[k]), count) for k, aug in enumerate(augmentations)]
    return InvarianceReport(rows, count, seconds, skipped)
