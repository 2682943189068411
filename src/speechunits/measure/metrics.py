"""Unit-quality metrics as pure array functions.

Definitions (all entropies in bits, over frames):

* PNMI = I(phone; unit) / H(phone) (HuBERT paper; fairseq ``measure_teacher_quality``).
* phone purity = sum over units of the majority phone's joint probability
  (= mean over units of the majority phone share, weighted by unit frequency).
* cluster purity = sum over phones of the majority unit's joint probability.
* H(phone | unit) = H(phone) - I(phone; unit).
* unit usage: perplexity = 2 ** H(unit); dead units = codebook entries never used.
* mean segment length = mean run length of equal consecutive units (frames and seconds).
* edit distance: Levenshtein distance between two sequences (PER/WER numerators, unit edit distance).
* bitrate (Speech Resynthesis paper): tokens/s × log2(K) ("uniform") and tokens/s × H(token)
  ("entropy"), where tokens are the deduplicated units (runs) — what a unit LM sees.
  ``frame_bitrate`` is the same with one token per frame (frame_rate × log2 K).

Everything is vectorised: the joint counts come from one ``np.bincount`` over joint ids.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Hashable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError


def edit_distance(ref: Sequence[Hashable] | np.ndarray, hyp: Sequence[Hashable] | np.ndarray) -> int:
    """Levenshtein distance (substitutions, deletions, insertions, each 1) between two sequences
    (strings, lists of hashables, or 1-D id arrays), by ``rapidfuzz``."""
    from rapidfuzz.distance import Levenshtein

    if isinstance(ref, str) and isinstance(hyp, str):
        return int(Levenshtein.distance(ref, hyp))
    return int(Levenshtein.distance(_as_list(ref), _as_list(hyp)))


def _as_list(seq: Sequence[Hashable] | np.ndarray) -> list:
    """A list of plain Python items (numpy ids as ints)."""
    return np.asarray(seq).reshape(-1).tolist() if isinstance(seq, np.ndarray) else list(seq)


def contingency(labels: np.ndarray, units: np.ndarray, num_labels: int, num_units: int) -> np.ndarray:
    """Joint counts of (label, unit) over frames.

    Args:
        labels: int ``[N]`` phone ids in ``[0, num_labels)``.
        units: int ``[N]`` unit ids in ``[0, num_units)``.

    Returns:
        int64 ``[num_labels, num_units]`` counts.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    units = np.asarray(units, dtype=np.int64).reshape(-1)
    if labels.shape != units.shape:
        raise SpeechUnitsError(f"labels {labels.shape} and units {units.shape} differ in length")
    if labels.size:
        if labels.min() < 0 or labels.max() >= num_labels:
            raise SpeechUnitsError(f"label ids must lie in [0, {num_labels})")
        if units.min() < 0 or units.max() >= num_units:
            raise SpeechUnitsError(f"unit ids must lie in [0, {num_units})")
    joint = labels * num_units + units
    return np.bincount(joint, minlength=num_labels * num_units).reshape(num_labels, num_units)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution proportional to ``counts`` (any shape)."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1)
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


@dataclass(frozen=True)
class PhoneUnitScores:
    """Agreement of units with phone labels over labelled frames.

    ``pnmi`` is NaN when H(phone) = 0 (a single phone): callers must treat that as an error.
    """

    pnmi: float
    phone_purity: float
    cluster_purity: float
    h_phone: float
    h_phone_given_unit: float
    mutual_information: float
    labelled_frames: int

    def to_dict(self) -> dict:
        return asdict(self)


def phone_unit_scores(counts: np.ndarray) -> PhoneUnitScores:
    """PNMI, purities and entropies from a ``[P, K]`` contingency table of frame counts."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise SpeechUnitsError(f"contingency table must be 2-D [phones, units], got shape {counts.shape}")
    total = counts.sum()
    if total <= 0:
        raise SpeechUnitsError("no labelled frames: cannot compute phone/unit agreement")
    p_xy = counts / total
    p_x = p_xy.sum(axis=1)
    p_y = p_xy.sum(axis=0)
    h_x = entropy_bits(p_x)
    nz = p_xy > 0
    outer = np.outer(p_x, p_y)
    mi = float((p_xy[nz] * np.log2(p_xy[nz] / outer[nz])).sum())
    mi = max(mi, 0.0)  # rounding can give -1e-17
    pnmi = mi / h_x if h_x > 0 else float("nan")
    return PhoneUnitScores(
        pnmi=pnmi,
        phone_purity=float(p_xy.max(axis=0).sum()),
        cluster_purity=float(p_xy.max(axis=1).sum()),
        h_phone=h_x,
        h_phone_given_unit=max(h_x - mi, 0.0),
        mutual_information=mi,
        labelled_frames=int(total),
    )


@dataclass(frozen=True)
class UnitUsage:
    """How much of the codebook a corpus uses (over frames)."""

    vocab_size: int
    used_units: int
    dead_units: int
    entropy: float
    perplexity: float

    def to_dict(self) -> dict:
        return asdict(self)


def unit_usage(unit_counts: np.ndarray) -> UnitUsage:
    """Usage statistics from ``[K]`` frame counts per unit."""
    unit_counts = np.asarray(unit_counts).reshape(-1)
    used = int((unit_counts > 0).sum())
    h = entropy_bits(unit_counts)
    return UnitUsage(
        vocab_size=int(unit_counts.size),
        used_units=used,
        dead_units=int(unit_counts.size) - used,
        entropy=h,
        perplexity=float(2.0**h),
    )


def run_starts(ids: np.ndarray) -> np.ndarray:
    """Indices ``[R]`` where a new run of equal ids starts in ``ids [N]``."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))


@dataclass(frozen=True)
class Bitrate:
    """Bits per second of a unit stream.

    Attributes:
        tokens_per_s: deduplicated tokens (runs) per second of audio.
        uniform: tokens_per_s × log2(K).
        entropy: tokens_per_s × H(deduplicated tokens).
        frame_bitrate: frame_rate × log2(K) (no deduplication).
    """

    tokens_per_s: float
    uniform: float
    entropy: float
    frame_bitrate: float

    def to_dict(self) -> dict:
        return asdict(self)


def bitrate(num_tokens: int, duration_s: float, vocab_size: int, token_counts: np.ndarray, frame_rate: float) -> Bitrate:
    """Bitrates of ``num_tokens`` deduplicated tokens over ``duration_s`` seconds.

    Args:
        token_counts: ``[K]`` occurrences of each unit among the deduplicated tokens.
    """
    if duration_s <= 0:
        raise SpeechUnitsError("bitrate: total duration must be > 0")
    if vocab_size < 1:
        raise SpeechUnitsError(f"bitrate: vocab_size must be >= 1, got {vocab_size}")
    rate = num_tokens / duration_s
    log_k = float(np.log2(vocab_size))
    return Bitrate(
        tokens_per_s=rate,
        uniform=rate * log_k,
        entropy=rate * entropy_bits(token_counts),
        frame_bitrate=frame_rate * log_k,
    )


@dataclass(frozen=True)
class SegmentStats:
    """Mean run length of equal consecutive units."""

    num_segments: int
    mean_frames: float
    mean_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def segment_stats(num_segments: int, num_frames: int, frame_rate: float) -> SegmentStats:
    """Mean segment length from total runs and frames."""
    mean = num_frames / num_segments if num_segments else 0.0
    return SegmentStats(num_segments=num_segments, mean_frames=mean, mean_seconds=mean / frame_rate)
