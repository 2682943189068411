"""F0 as the vocoders consume it: per-speaker normalised log-F0, voicing, and the Hz the source follows.

The network sees ``z = (log F0 - mean) / std`` with the speaker's statistics
(:class:`speechunits.pitch.F0Stats`), so a voice's pitch range lives in the statistics, not
in the network: conversion normalises by the source's statistics and de-normalises by the
target's (:func:`convert_track`). The ``cpu`` tier's pulses follow
``exp(z' * std + mean)`` with ``z'`` the value the network was conditioned on (the bin centre
when F0 is quantised), so source and conditioning always agree.
"""
from __future__ import annotations

import numpy as np

from speechunits.pitch import F0Stats, F0Track
from speechunits.vocoder.config import F0_BINS, F0_RANGE


def quantize_z(z: np.ndarray) -> np.ndarray:
    """Bin centre of every value of ``z`` (same bins as :func:`speechunits.vocoder.conditioning.quantize_f0`)."""
    width = 2 * F0_RANGE / F0_BINS
    bins = np.clip(np.floor((z + F0_RANGE) / width), 0, F0_BINS - 1)
    return (-F0_RANGE + (bins + 0.5) * width).astype(np.float32)


def conditioning_f0(f0_hz: np.ndarray, stats: F0Stats, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, voiced, source_hz)`` float32 ``[T]`` of a track in Hz (0 = unvoiced) for F0 mode ``mode``."""
    f0_hz = np.asarray(f0_hz, dtype=np.float32)
    voiced = f0_hz > 0
    z = stats.normalise(F0Track(f0_hz, 1.0))
    if mode == "quantized":
        z = np.where(voiced, quantize_z(z), 0.0).astype(np.float32)
        source = stats.denormalise(z, voiced)
    else:
        source = np.where(voiced, f0_hz, 0.0).astype(np.float32)
    return z.astype(np.float32), voiced.astype(np.float32), source.astype(np.float32)


def convert_track(track: F0Track, source: F0Stats, target: F0Stats) -> F0Track:
    """``track`` moved from the source speaker's log-F0 range to the target's (voicing kept)."""
    z = source.normalise(track)
    return F0Track(target.denormalise(z, track.voiced), track.frame_rate, track.offset_s)
