"""Mel-cepstral distortion (MCD) between two utterances, time-aligned by DTW.

Definitions (the SPTK convention behind the usual MCD constant):

- **Spectral envelope**: WORLD's CheapTrick (pyworld) at 16 kHz, every ``hop_s`` (5 ms), with F0 from
  :func:`speechunits.pitch.extract_f0` (DIO) at the same instants; ``sp[t, k]`` is a power spectrum.
- **Mel-cepstrum** of order ``D``: the coefficients ``c_0 .. c_D`` of the log *amplitude* envelope as a
  cosine series on the all-pass-warped frequency axis,
  ``ln |H(w)| = sum_{m=0..D} c_m cos(m * w~)``, with ``w~ = w + 2 atan(alpha sin w / (1 - alpha cos w))``
  (``alpha`` = 0.42 at 16 kHz approximates the mel scale). They are computed by projection:
  ``c_m = (e_m / pi) * integral_0^pi ln|H(w(w~))| cos(m w~) dw~`` (``e_0 = 1``, ``e_m = 2``), with the
  log envelope linearly interpolated onto a uniform ``w~`` grid and the trapezoid rule. This is what
  SPTK's/pysptk's ``sp2mc`` (cepstrum then ``freqt``) computes, up to the integration.
- **MCD** of a frame pair (``c_0``, the energy, excluded):
  ``MCD = (10 / ln 10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2)`` dB; the constant
  ``10 / ln 10 * sqrt(2) = 6.1419`` makes it the RMS difference of the two log spectra in dB over the
  warped frequency axis (Parseval). The utterance MCD is the mean over the frame pairs of the DTW path
  (:func:`speechunits.measure.dtw.dtw_batch`, steps (1,0), (0,1), (1,1), minimising the summed MCD).
- **Silence**: frames whose envelope power is more than ``silence_db`` (40 dB) below the utterance's
  loudest frame, or below -120 dB (digital silence), are left out of each utterance before DTW (silence
  would otherwise dominate).

Both utterances are resampled to 16 kHz first, so outputs at different rates compare on one band.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError

#: (10 / ln 10) * sqrt(2): mel-cepstral distance to dB.
MCD_CONSTANT = 10.0 / math.log(10.0) * math.sqrt(2.0)
SAMPLE_RATE = 16000
#: All-pass constant approximating the mel scale at 16 kHz (SPTK's customary value).
ALPHA = 0.42
#: Coefficients c_1..c_D compared (c_0 excluded).
NUM_COEFFICIENTS = 13
HOP_S = 0.005
SILENCE_DB = 40.0
#: Envelope power (dB re a full-scale sine's order of magnitude) below which a frame is silent whatever the
#: utterance's loudest frame: WORLD gives about -159 dB for digital zeros, -78 dB for noise at 1e-4.
DIGITAL_SILENCE_DB = -120.0
#: Rows of the distance matrix computed at once (bounds the [rows, M, D] difference array).
_ROWS_PER_BLOCK = 128


def _pyworld():
    from speechunits.extras import require_extra

    return require_extra("pyworld", "eval", "MCD (WORLD's CheapTrick)")


@lru_cache(maxsize=8)
def _projection(num_bins: int, order: int, alpha: float) -> np.ndarray:
    """float64 ``[F, order + 1]``: log power spectrum (F linear bins over [0, pi]) to mel-cepstrum."""
    grid_size = 2 * (num_bins - 1) + 1
    warped = np.linspace(0.0, np.pi, grid_size)
    # Inverse all-pass warping: the linear frequency each point of the warped grid stands for.
    linear = warped - 2.0 * np.arctan(alpha * np.sin(warped) / (1.0 + alpha * np.cos(warped)))
    position = np.clip(linear / np.pi * (num_bins - 1), 0.0, num_bins - 1)
    left = np.minimum(np.floor(position).astype(np.int64), num_bins - 2)
    frac = position - left
    interp = np.zeros((grid_size, num_bins))
    rows = np.arange(grid_size)
    interp[rows, left] = 1.0 - frac
    interp[rows, left + 1] += frac
    weights = np.full(grid_size, np.pi / (grid_size - 1))
    weights[[0, -1]] *= 0.5
    m = np.arange(order + 1)
    scale = np.where(m == 0, 1.0, 2.0) / np.pi
    basis = weights[:, None] * np.cos(warped[:, None] * m[None, :]) * scale[None, :]
    # 0.5: ln |H| = 0.5 ln (power).
    return 0.5 * interp.T @ basis


def spectrum_to_mel_cepstrum(power: np.ndarray, order: int = NUM_COEFFICIENTS, alpha: float = ALPHA) -> np.ndarray:
    """Mel-cepstra float64 ``[T, order + 1]`` of power spectra ``[T, F]`` (F bins from 0 to Nyquist)."""
    power = np.atleast_2d(np.asarray(power, dtype=np.float64))
    if power.shape[1] < 2:
        raise SpeechUnitsError(f"mel-cepstrum: need at least 2 frequency bins, got {power.shape[1]}")
    if not -1.0 < alpha < 1.0:
        raise SpeechUnitsError(f"mel-cepstrum: alpha must lie in (-1, 1), got {alpha}")
    log_power = np.log(np.maximum(power, np.finfo(np.float64).tiny))
    return log_power @ _projection(power.shape[1], order, float(alpha))


def world_envelope(audio: Audio, *, hop_s: float = HOP_S) -> np.ndarray:
    """WORLD CheapTrick power envelope float64 ``[T, F]`` of ``audio`` at 16 kHz, a frame every ``hop_s``."""
    from speechunits.pitch import extract_f0

    pw = _pyworld()
    audio = audio.resample(SAMPLE_RATE) if audio.sample_rate != SAMPLE_RATE else audio
    x = np.ascontiguousarray(audio.samples, dtype=np.float64)
    track = extract_f0(audio, frame_rate=1.0 / hop_s, method="dio")
    if len(track) == 0:
        raise SpeechUnitsError(f"{audio.path or 'audio'}: too short for a spectral envelope "
                               f"({audio.duration_s:.3f} s)")
    times = np.arange(len(track), dtype=np.float64) * hop_s
    return pw.cheaptrick(x, np.ascontiguousarray(track.f0, dtype=np.float64), times, SAMPLE_RATE)


def mel_cepstrum(audio: Audio, *, order: int = NUM_COEFFICIENTS, alpha: float = ALPHA, hop_s: float = HOP_S,
                 silence_db: float | None = SILENCE_DB) -> np.ndarray:
    """Mel-cepstra float64 ``[T, order + 1]`` of the non-silent frames of ``audio`` (see module docstring).

    ``silence_db=None`` keeps every frame.
    """
    power = world_envelope(audio, hop_s=hop_s)
    if silence_db is not None:
        level = 10.0 * np.log10(np.maximum(power.mean(axis=1), 1e-30))
        power = power[(level > level.max() - silence_db) & (level > DIGITAL_SILENCE_DB)]
    return spectrum_to_mel_cepstrum(power, order, alpha)


def mcd_frames(ref: np.ndarray, hyp: np.ndarray) -> np.ndarray:
    """Pairwise MCD in dB ``[N, M]`` between mel-cepstra ``ref [N, D+1]`` and ``hyp [M, D+1]`` (c_0 excluded)."""
    a, b = np.asarray(ref, dtype=np.float64)[:, 1:], np.asarray(hyp, dtype=np.float64)[:, 1:]
    out = np.empty((a.shape[0], b.shape[0]))
    for start in range(0, a.shape[0], _ROWS_PER_BLOCK):  # differences, not the Gram trick: exact 0 on equal frames
        diff = a[start:start + _ROWS_PER_BLOCK, None, :] - b[None, :, :]
        out[start:start + _ROWS_PER_BLOCK] = np.sqrt(np.einsum("nmd,nmd->nm", diff, diff))
    return MCD_CONSTANT * out


def mcd_dtw_cepstra(ref: np.ndarray, hyp: np.ndarray) -> float:
    """Mean MCD (dB) along the DTW path between two mel-cepstrum sequences ``[N, D+1]``, ``[M, D+1]``."""
    import torch

    from speechunits.measure.dtw import dtw_batch

    if len(ref) == 0 or len(hyp) == 0:
        raise SpeechUnitsError("MCD: an utterance has no non-silent frame")
    dist = torch.from_numpy(mcd_frames(ref, hyp))[None]
    lengths = (torch.tensor([dist.shape[1]]), torch.tensor([dist.shape[2]]))
    return float(dtw_batch(dist, *lengths)[0])


def mcd_dtw(ref: Audio, hyp: Audio, *, num_coefficients: int = NUM_COEFFICIENTS, alpha: float = ALPHA,
            hop_s: float = HOP_S, silence_db: float | None = SILENCE_DB) -> float:
    """MCD in dB of ``hyp`` against ``ref``, DTW-aligned (0 for identical audio; see module docstring).

    Raises:
        SpeechUnitsError: pyworld missing, audio too short, or no non-silent frame.
    """
    kwargs = dict(order=num_coefficients, alpha=alpha, hop_s=hop_s, silence_db=silence_db)
    return mcd_dtw_cepstra(mel_cepstrum(ref, **kwargs), mel_cepstrum(hyp, **kwargs))
