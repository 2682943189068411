"""F0 errors of synthesised speech against its source: GPE, VDE, FFE (Chu & Alwan, 2009).

Both tracks come from :func:`speechunits.pitch.extract_f0` (0 Hz = unvoiced) on the same frame
grid (frame rate and offset); frame i of one is compared with frame i of the other. With ``N``
frames, ``VV`` the frames voiced in both, ``V/U`` the voicing-decision mismatches and ``G`` the
frames of ``VV`` where ``|f0_hyp - f0_ref| > 0.2 * f0_ref``:

- GPE (gross pitch error) = ``G / VV`` (undefined, NaN, when no frame is voiced in both);
- VDE (voicing decision error) = ``V/U / N``;
- FFE (F0 frame error) = ``(V/U + G) / N``.

Tracks whose lengths differ by at most ``max_length_diff`` frames are cut to the shorter one
(vocoders pad or trim a few samples); the cut is reported by :func:`align_tracks`. A larger
difference (e.g. a vocoder that predicts its own durations) is an error: frame-wise errors
would compare unrelated frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.pitch import F0Track

#: A hypothesis frame is a gross error when it is off the reference by more than this fraction.
GROSS_ERROR_RATIO = 0.2
#: Default tolerance of :func:`align_tracks`, in frames (10 ms each at 100 Hz).
MAX_LENGTH_DIFF = 10


@dataclass(frozen=True)
class AlignedTracks:
    """Two F0 arrays float ``[N]`` on the same grid, and how many frames were cut from the longer."""

    ref: np.ndarray
    hyp: np.ndarray
    truncated: int


def align_tracks(ref: F0Track, hyp: F0Track, *, max_length_diff: int = MAX_LENGTH_DIFF) -> AlignedTracks:
    """``ref`` and ``hyp`` cut to the shorter length.

    Raises:
        SpeechUnitsError: different frame rates or offsets, lengths differing by more than
            ``max_length_diff`` frames, or an empty track.
    """
    if abs(ref.frame_rate - hyp.frame_rate) > 1e-9 or abs(ref.offset_s - hyp.offset_s) > 1e-9:
        raise SpeechUnitsError(f"F0 tracks on different frame grids: reference {ref.frame_rate} Hz offset "
                               f"{ref.offset_s} s, hypothesis {hyp.frame_rate} Hz offset {hyp.offset_s} s")
    n_ref, n_hyp = len(ref), len(hyp)
    if abs(n_ref - n_hyp) > max_length_diff:
        raise SpeechUnitsError(f"F0 tracks of {n_ref} (reference) and {n_hyp} (hypothesis) frames differ by more "
                               f"than {max_length_diff} frames: frame-wise F0 errors need time-aligned audio")
    n = min(n_ref, n_hyp)
    if n == 0:
        raise SpeechUnitsError("F0 errors of an empty track are undefined")
    return AlignedTracks(np.asarray(ref.f0[:n], dtype=np.float64), np.asarray(hyp.f0[:n], dtype=np.float64),
                         abs(n_ref - n_hyp))


def _counts(ref: F0Track, hyp: F0Track, max_length_diff: int) -> tuple[int, int, int, int]:
    """(frames, voiced in both, voicing mismatches, gross pitch errors)."""
    aligned = align_tracks(ref, hyp, max_length_diff=max_length_diff)
    ref_voiced, hyp_voiced = aligned.ref > 0, aligned.hyp > 0
    both = ref_voiced & hyp_voiced
    gross = both & (np.abs(aligned.hyp - aligned.ref) > GROSS_ERROR_RATIO * aligned.ref)
    return aligned.ref.size, int(both.sum()), int((ref_voiced != hyp_voiced).sum()), int(gross.sum())


def gpe(ref: F0Track, hyp: F0Track, *, max_length_diff: int = MAX_LENGTH_DIFF) -> float:
    """Gross pitch error: share of the frames voiced in both where F0 is off by more than 20 %
    (NaN when no frame is voiced in both)."""
    _, both, _, gross = _counts(ref, hyp, max_length_diff)
    return gross / both if both else float("nan")


def vde(ref: F0Track, hyp: F0Track, *, max_length_diff: int = MAX_LENGTH_DIFF) -> float:
    """Voicing decision error: share of all frames voiced in one track and unvoiced in the other."""
    frames, _, mismatch, _ = _counts(ref, hyp, max_length_diff)
    return mismatch / frames


def ffe(ref: F0Track, hyp: F0Track, *, max_length_diff: int = MAX_LENGTH_DIFF) -> float:
    """F0 frame error: share of all frames with a voicing decision error or a gross pitch error."""
    frames, _, mismatch, gross = _counts(ref, hyp, max_length_diff)
    return (mismatch + gross) / frames


def pitch_errors(ref: F0Track, hyp: F0Track, *, max_length_diff: int = MAX_LENGTH_DIFF) -> dict[str, float | int]:
    """``{"gpe", "vde", "ffe", "frames", "voiced_both", "truncated_frames"}`` in one pass."""
    frames, both, mismatch, gross = _counts(ref, hyp, max_length_diff)
    return {"gpe": gross / both if both else float("nan"), "vde": mismatch / frames,
            "ffe": (mismatch + gross) / frames, "frames": frames, "voiced_both": both,
            "truncated_frames": abs(len(ref) - len(hyp))}
