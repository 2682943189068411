"""F0 tracks: the one place pitch is extracted (vocoder conditioning, F0 metrics, conversion).

Extraction is delegated to well-kept trackers (optional ``[f0]`` extra):

- ``"dio"``: WORLD's DIO + StoneMask through pyworld (fast, the default);
- ``"harvest"``: WORLD's Harvest through pyworld (slower, fewer octave errors);
- ``"praat"``: Praat's autocorrelation tracker through praat-parselmouth.

A track is sampled at the frame centres of a unit stream, ``offset_s + i / frame_rate``, so it
lines up with units frame by frame; unvoiced frames hold 0 Hz.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError

F0_METHODS = ("dio", "harvest", "praat")
#: Default search range in Hz (covers low male to high child voices).
F0_FLOOR = 50.0
F0_CEILING = 600.0
#: Trackers run at this internal hop (seconds); tracks are then sampled at the requested frames.
_TRACKER_HOP_S = 0.005


@dataclass(frozen=True, eq=False)
class F0Track:
    """``f0``: float32 ``[T]`` in Hz, 0 where unvoiced; frame i is centred at ``offset_s + i / frame_rate``."""

    f0: np.ndarray
    frame_rate: float
    offset_s: float = 0.0

    @property
    def voiced(self) -> np.ndarray:
        """bool ``[T]``."""
        return self.f0 > 0

    def __len__(self) -> int:
        return int(self.f0.shape[0])

    def log_f0(self) -> np.ndarray:
        """float32 ``[T]``: natural log of F0 where voiced, 0 elsewhere."""
        out = np.zeros_like(self.f0, dtype=np.float32)
        v = self.voiced
        out[v] = np.log(self.f0[v])
        return out


def _require(module: str):
    from speechunits.extras import require_extra

    return require_extra(module, "f0", "F0 extraction")


def _track(samples: np.ndarray, sample_rate: int, method: str, floor: float, ceiling: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """(times_s [N], f0_hz [N]) from the tracker at its own hop."""
    if method in ("dio", "harvest"):
        pw = _require("pyworld")
        x = samples.astype(np.float64)
        period_ms = _TRACKER_HOP_S * 1000.0
        if method == "dio":
            f0, t = pw.dio(x, sample_rate, f0_floor=floor, f0_ceil=ceiling, frame_period=period_ms)
            f0 = pw.stonemask(x, f0, t, sample_rate)
        else:
            f0, t = pw.harvest(x, sample_rate, f0_floor=floor, f0_ceil=ceiling, frame_period=period_ms)
        return np.asarray(t, dtype=np.float64), np.asarray(f0, dtype=np.float64)
    if method == "praat":
        parselmouth = _require("parselmouth")
        sound = parselmouth.Sound(samples.astype(np.float64), sampling_frequency=sample_rate)
        # Praat needs 3 periods of the floor inside the analysis window; shorter sounds yield no frames.
        pitch = sound.to_pitch_ac(time_step=_TRACKER_HOP_S, pitch_floor=floor, pitch_ceiling=ceiling)
        return np.asarray(pitch.xs(), dtype=np.float64), np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    raise SpeechUnitsError(f"unknown F0 method {method!r} (one of {', '.join(F0_METHODS)})")


def extract_f0(audio: Audio, *, frame_rate: float = 100.0, offset_s: float = 0.0, num_frames: int | None = None,
               method: str = "dio", floor: float = F0_FLOOR, ceiling: float = F0_CEILING) -> F0Track:
    """F0 of ``audio`` at frames centred on ``offset_s + i / frame_rate``, ``i < num_frames``.

    ``num_frames`` defaults to the frames whose centre lies inside the audio. Each frame takes the
    tracker's value nearest in time (unvoiced stays 0: F0 is never interpolated across a voicing
    boundary). Silent or too-short audio gives an all-unvoiced track, not an error.

    Raises:
        SpeechUnitsError: unknown method, bad range, tracker not installed.
    """
    if method not in F0_METHODS:
        raise SpeechUnitsError(f"unknown F0 method {method!r} (one of {', '.join(F0_METHODS)})")
    if not 0 < floor < ceiling:
        raise SpeechUnitsError(f"F0 range must satisfy 0 < floor < ceiling, got {floor}..{ceiling}")
    if frame_rate <= 0:
        raise SpeechUnitsError(f"frame rate must be positive, got {frame_rate}")
    duration = audio.duration_s
    if num_frames is None:
        num_frames = max(0, int(np.ceil((duration - offset_s) * frame_rate - 1e-9)))
    out = np.zeros(num_frames, dtype=np.float32)
    samples = np.asarray(audio.samples, dtype=np.float32)
    # Trackers need a few periods of the floor; below that (or for digital silence) all frames are unvoiced.
    if num_frames == 0 or samples.size < int(3 * audio.sample_rate / floor) or not np.any(samples):
        return F0Track(out, float(frame_rate), float(offset_s))
    times, f0 = _track(samples, audio.sample_rate, method, floor, ceiling)
    if times.size == 0:
        return F0Track(out, float(frame_rate), float(offset_s))
    centres = offset_s + np.arange(num_frames) / frame_rate
    idx = np.clip(np.searchsorted(times, centres), 1, times.size - 1) if times.size > 1 else np.zeros(num_frames, int)
    if times.size > 1:
        left = idx - 1
        idx = np.where(np.abs(times[left] - centres) <= np.abs(times[idx] - centres), left, idx)
    values = f0[idx]
    # Frames centred beyond the analysed span (more than one tracker hop away) stay unvoiced.
    far = np.abs(times[idx] - centres) > max(_TRACKER_HOP_S, 0.5 / frame_rate) + 1e-9
    values[far] = 0.0
    values[~np.isfinite(values)] = 0.0
    out[:] = np.where(values > 0, values, 0.0)
    return F0Track(out, float(frame_rate), float(offset_s))


@dataclass(frozen=True)
class F0Stats:
    """Per-speaker log-F0 statistics over voiced frames (what F0 normalisation divides by)."""

    mean_log: float
    std_log: float
    voiced_frames: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean_log": self.mean_log, "std_log": self.std_log, "voiced_frames": self.voiced_frames}

    @classmethod
    def from_dict(cls, d: dict) -> "F0Stats":
        return cls(float(d["mean_log"]), float(d["std_log"]), int(d["voiced_frames"]))

    def normalise(self, track: F0Track) -> np.ndarray:
        """float32 ``[T]``: (log F0 - mean) / std where voiced, 0 elsewhere."""
        out = np.zeros(len(track), dtype=np.float32)
        v = track.voiced
        out[v] = (np.log(track.f0[v]) - self.mean_log) / self.std_log
        return out

    def denormalise(self, z: np.ndarray, voiced: np.ndarray) -> np.ndarray:
        """float32 ``[T]`` Hz from normalised log F0 ``z`` and a voicing mask (0 Hz where unvoiced)."""
        hz = np.exp(np.asarray(z, dtype=np.float64) * self.std_log + self.mean_log)
        return np.where(np.asarray(voiced, dtype=bool), hz, 0.0).astype(np.float32)


#: Used when a speaker has fewer voiced frames than this: its std is pooled toward a typical value.
_MIN_VOICED_FRAMES = 20
_TYPICAL_STD_LOG = 0.2


def f0_stats(tracks: Iterable[F0Track]) -> F0Stats:
    """Log-F0 mean and std over the voiced frames of ``tracks`` (one speaker's utterances).

    Raises:
        SpeechUnitsError: no voiced frame at all (statistics of such a speaker are undefined).
    """
    logs = [np.log(t.f0[t.voiced].astype(np.float64)) for t in tracks]
    values = np.concatenate(logs) if logs else np.zeros(0)
    if values.size == 0:
        raise SpeechUnitsError("no voiced frame: F0 statistics are undefined for this speaker")
    std = float(values.std())
    if values.size < _MIN_VOICED_FRAMES or std < 1e-3:
        weight = values.size / _MIN_VOICED_FRAMES
        std = max(weight * std + (1 - weight) * _TYPICAL_STD_LOG, 1e-3) if weight < 1 else max(std, 1e-3)
    return F0Stats(float(values.mean()), std, int(values.size))
