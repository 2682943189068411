"""Speech probabilities per window -> speech segments (pure numpy, no model).

The steps, in this order (durations are whole windows; seconds are rounded to the nearest
window, e.g. 0.3 s = 9 windows of 32 ms):

1. **Hysteresis.** Speech starts at the first window with ``p >= threshold`` and lasts until
   the first window with ``p < neg_threshold`` (exclusive), so a probability that hovers
   between the two thresholds neither starts nor ends speech.
2. **Bridge short pauses.** Two speech runs separated by fewer than ``min_silence_s`` of
   non-speech become one.
3. **Drop short blips.** Runs shorter than ``min_speech_s`` are dropped.
4. **Cap the length.** A run longer than ``max_seconds - 2 * pad_s`` is cut, left to right,
   at the window of lowest probability whose start lies between half and all of that length
   from the current start and leaves at least half of it to the right (ties: the earliest).
   Pieces therefore last between half and all of the cap; the cut window opens the next piece.
5. **Pad.** Each segment grows by ``pad_s`` on both sides, clamped to the audio; where two
   padded segments would overlap they meet in the middle of their gap (pieces of a cut touch
   and get no padding at the cut). So no segment exceeds ``max_seconds``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from speechunits.errors import SpeechUnitsError


@dataclass(frozen=True)
class SegmentOptions:
    """How probabilities become segments (defaults documented in docs/segment.md).

    Attributes:
        threshold: speech starts where the probability reaches this.
        neg_threshold: speech ends where the probability falls below this
            (``None``: ``max(threshold - 0.15, 0.01)``, silero-vad's rule).
        min_speech_s: shorter speech runs are dropped.
        min_silence_s: shorter pauses inside speech are bridged.
        pad_s: silence kept before and after each segment.
        max_seconds: no segment is longer (``None``: no limit).
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_s: float = 0.25
    min_silence_s: float = 0.3
    pad_s: float = 0.1
    max_seconds: float | None = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise SpeechUnitsError(f"--threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 < self.neg_threshold <= self.threshold:
            raise SpeechUnitsError(
                f"--neg-threshold must be in (0, threshold={self.threshold}], got {self.neg_threshold}")
        for name, flag in (("min_speech_s", "--min-speech"), ("min_silence_s", "--min-silence"), ("pad_s", "--pad")):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise SpeechUnitsError(f"{flag} must be a finite number >= 0, got {value}")
        if self.max_seconds is not None and not (self.max_seconds > 2 * self.pad_s and math.isfinite(self.max_seconds)):
            raise SpeechUnitsError(
                f"--max-seconds must exceed twice the padding ({2 * self.pad_s} s), got {self.max_seconds}")

    @property
    def offset_threshold(self) -> float:
        """The threshold below which speech ends."""
        return self.neg_threshold if self.neg_threshold is not None else max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechSegment:
    """A stretch of speech ``[start_s, end_s)`` in seconds of the source audio."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def find_segments(probs: np.ndarray, window_s: float, duration_s: float,
                  options: SegmentOptions = SegmentOptions()) -> list[SpeechSegment]:
    """Speech segments of audio whose window ``i`` covers ``[i * window_s, (i + 1) * window_s)``.

    Args:
        probs: speech probability per window, ``[N]``.
        window_s: window length in seconds (32 ms for silero-vad at 16 kHz).
        duration_s: the audio's length (the last window may run past it); segments end by then.
        options: thresholds and durations.

    Returns:
        Segments in time order, non-overlapping, each within ``[0, duration_s]``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 1:
        raise SpeechUnitsError(f"speech probabilities must be [N], got shape {probs.shape}")
    if not window_s > 0:
        raise SpeechUnitsError(f"window length must be positive, got {window_s}")
    runs = hysteresis_runs(probs, options.threshold, options.offset_threshold)
    runs = bridge_pauses(runs, _windows(options.min_silence_s, window_s))
    min_speech = _windows(options.min_speech_s, window_s)
    runs = [(a, b) for a, b in runs if b - a >= min_speech]
    if options.max_seconds is not None:
        cap = math.floor((options.max_seconds - 2 * options.pad_s) / window_s + 1e-9)
        if cap < 1:
            raise SpeechUnitsError(
                f"--max-seconds {options.max_seconds} leaves no speech inside {options.pad_s} s of padding "
                f"on each side ({window_s} s windows)")
        runs = [piece for run in runs for piece in split_long(probs, run, cap)]
    return pad_segments(runs, window_s, duration_s, options.pad_s)


def hysteresis_runs(probs: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    """Speech runs ``[(start, end), ...]`` in windows (end exclusive): start at ``p >= on``,
    end at the first ``p < off``."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, p in enumerate(probs.tolist()):
        if start is None:
            if p >= on:
                start = i
        elif p < off:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(probs)))
    return runs


def bridge_pauses(runs: list[tuple[int, int]], min_silence: int) -> list[tuple[int, int]]:
    """Merge runs whose gap is shorter than ``min_silence`` windows."""
    merged: list[tuple[int, int]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < min_silence:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def split_long(probs: np.ndarray, run: tuple[int, int], cap: int) -> list[tuple[int, int]]:
    """Cut ``run`` into pieces of at most ``cap`` windows at low-probability windows.

    Each cut lies ``half..cap`` windows after the piece's start (``half = cap // 2``) and at
    least ``half`` windows before the run's end, at the lowest probability there (the
    earliest on ties); the cut window starts the next piece.
    """
    start, end = run
    half = max(cap // 2, 1)
    pieces: list[tuple[int, int]] = []
    while end - start > cap:
        lo, hi = start + half, min(start + cap, end - half)  # lo <= hi because end - start > cap >= 2 * half
        cut = lo + int(np.argmin(probs[lo:hi + 1]))
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def pad_segments(runs: list[tuple[int, int]], window_s: float, duration_s: float,
                 pad_s: float) -> list[SpeechSegment]:
    """Runs (windows) to padded segments (seconds): neighbours share the gap between them
    when it is shorter than twice the padding."""
    segments: list[SpeechSegment] = []
    for index, (a, b) in enumerate(runs):
        start, end = a * window_s, min(b * window_s, duration_s)
        lead = pad_s if index == 0 else min(pad_s, (a - runs[index - 1][1]) * window_s / 2)
        trail = pad_s if index == len(runs) - 1 else min(pad_s, (runs[index + 1][0] - b) * window_s / 2)
        segments.append(SpeechSegment(max(start - lead, 0.0), min(end + trail, duration_s)))
    return [s for s in segments if s.end_s > s.start_s]


def _windows(seconds: float, window_s: float) -> int:
    """``seconds`` as the nearest whole number of windows."""
    return int(math.floor(seconds / window_s + 0.5))
