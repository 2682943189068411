"""Audio augmentations: time-stretch, pitch shift, noise at an SNR, reverb, gain.

The one module of augmentation functions: ``speechunits invariance`` measures how units change
under them (:func:`standard_augmentations`, a fixed grid) and ``speechunits pretrain --augment``
trains on randomly perturbed copies of the crops (:class:`RandomAugment`, drawn from ranges).

numpy/scipy/soxr only (scipy and soxr imported when used). Every function takes float32
samples ``[T]`` and returns float32 samples; the random ones take a ``seed`` and are deterministic for it.

* :func:`time_stretch`: phase vocoder; output length ``round(T * factor)``, pitch kept.
* :func:`pitch_shift`: stretch by ``2 ** (semitones / 12)`` then resample back to ``T``
  samples, so every frequency (pitch and formants) is multiplied by that ratio and the duration is kept.
* :func:`add_noise`: white Gaussian noise scaled so that the realised SNR is exactly ``snr_db``.
* :func:`reverb`: convolution with a synthetic room impulse response (direct path plus an
  exponentially decaying noise tail reaching -60 dB at ``rt60``), trimmed to ``T`` samples
  and rescaled to the input's RMS.
* :func:`gain`: multiply by ``10 ** (db / 20)``.

Every one but :func:`time_stretch` keeps the length ``T``, so frame-aligned labels of the clean
audio still hold for the perturbed copy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from speechunits.errors import SpeechUnitsError

#: Phase-vocoder STFT size and hop, in seconds (32 ms / 8 ms windows at any sample rate).
STFT_WINDOW_S = 0.032
STFT_HOP_S = 0.008
#: Reverb tail starts this long after the direct path (first reflections).
REVERB_PREDELAY_S = 0.005
#: Energy decay (dB) that defines RT60.
RT60_DECAY_DB = 60.0

STRETCH_FACTORS = (0.8, 0.9, 1.1, 1.2)
PITCH_SEMITONES = (-2.0, 2.0)
NOISE_SNRS_DB = (20.0, 10.0, 5.0)
REVERB_RT60_S = (0.3, 0.6)


def _check(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise SpeechUnitsError(f"augmentations take mono samples [T], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise SpeechUnitsError("augmentations: samples contain NaN/Inf")
    return x


def _stft_sizes(sample_rate: int) -> tuple[int, int]:
    n_fft = 1 << int(round(math.log2(STFT_WINDOW_S * sample_rate)))
    return n_fft, max(1, n_fft // 4)


def time_stretch(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Change duration by ``factor`` (1.2 = 20 % longer) keeping pitch (phase vocoder).

    Returns:
        float32 ``[round(T * factor)]``.
    """
    x = _check(samples)
    if not (factor > 0 and math.isfinite(factor)):
        raise SpeechUnitsError(f"time_stretch: factor must be > 0, got {factor}")
    out_len = int(round(x.size * factor))
    if x.size == 0 or out_len == 0:
        return np.zeros(out_len, dtype=np.float32)
    if factor == 1.0:
        return x.copy()
    n_fft, hop = _stft_sizes(sample_rate)
    window = np.hanning(n_fft + 1)[:-1]
    pad = np.pad(x.astype(np.float64), (n_fft, n_fft + hop))
    num_frames = 1 + (pad.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(num_frames)[:, None]
    spec = np.fft.rfft(pad[idx] * window, axis=1)  # [frames, bins]
    # Output frame k reads input position k / factor (in frames), interpolating magnitudes.
    num_out = int(math.ceil((out_len + 2 * n_fft) / hop)) + 1
    pos = np.arange(num_out) / factor
    pos = np.minimum(pos, num_frames - 1.001)
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo)[:, None]
    mag = (1 - frac) * np.abs(spec[lo]) + frac * np.abs(spec[lo + 1])
    expected = 2 * np.pi * hop * np.arange(spec.shape[1]) / n_fft
    phase_in = np.angle(spec)
    advance = phase_in[lo + 1] - phase_in[lo] - expected
    advance = expected + advance - 2 * np.pi * np.round(advance / (2 * np.pi))  # instantaneous, per hop
    phase = _locked_phases(mag, phase_in[lo], advance)
    frames = np.fft.irfft(mag * np.exp(1j * phase), n=n_fft, axis=1) * window
    out = np.zeros(hop * (num_out - 1) + n_fft)
    norm = np.zeros_like(out)
    for k in range(num_out):  # overlap-add; loop over frames (vectorised within a frame)
        out[k * hop:k * hop + n_fft] += frames[k]
        norm[k * hop:k * hop + n_fft] += window**2
    out /= np.maximum(norm, 1e-8)
    start = int(round(n_fft * factor))
    return out[start:start + out_len].astype(np.float32)


def _locked_phases(mag: np.ndarray, phase_in: np.ndarray, advance: np.ndarray) -> np.ndarray:
    """Output phases ``[frames, bins]`` with identity phase locking (Laroche & Dolson).

    Spectral peaks advance by their instantaneous frequency; every other bin keeps its input
    phase offset to the nearest peak, so the partials of one sinusoid stay coherent.
    """
    num_frames, num_bins = mag.shape
    bins = np.arange(num_bins)
    out = np.empty_like(phase_in)
    out[0] = phase_in[0]
    for k in range(1, num_frames):
        m = mag[k]
        is_peak = np.ones(num_bins, dtype=bool)
        is_peak[1:] &= m[1:] > m[:-1]
        is_peak[:-1] &= m[:-1] >= m[1:]
        peaks = np.flatnonzero(is_peak)
        if peaks.size == 0:
            out[k] = out[k - 1] + advance[k]
            continue
        right = np.clip(np.searchsorted(peaks, bins), 0, peaks.size - 1)
        left = np.clip(right - 1, 0, peaks.size - 1)
        nearest = np.where(np.abs(peaks[left] - bins) <= np.abs(peaks[right] - bins), peaks[left], peaks[right])
        peak_phase = out[k - 1, nearest] + advance[k, nearest]
        out[k] = peak_phase + phase_in[k, bins] - phase_in[k, nearest]
    return out


def pitch_shift(samples: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Multiply every frequency by ``2 ** (semitones / 12)``, keeping the length ``T``."""
    x = _check(samples)
    ratio = 2.0 ** (semitones / 12.0)
    if x.size == 0 or semitones == 0:
        return x.copy()
    import soxr

    stretched = time_stretch(x, sample_rate, ratio)
    # Playing `stretched` ratio times faster: resample from rate*ratio to rate.
    out = soxr.resample(stretched.astype(np.float64), sample_rate * ratio, sample_rate, quality="HQ")
    if out.size < x.size:
        out = np.pad(out, (0, x.size - out.size))
    return out[: x.size].astype(np.float32)


def add_noise(samples: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """Add white Gaussian noise at exactly ``snr_db`` (signal power / noise power, over the whole clip)."""
    x = _check(samples)
    if not math.isfinite(snr_db):
        raise SpeechUnitsError(f"add_noise: SNR must be finite, got {snr_db}")
    power = float(np.mean(x.astype(np.float64) ** 2)) if x.size else 0.0
    if power == 0.0:
        raise SpeechUnitsError("add_noise: the signal is silent (SNR undefined)")
    noise = np.random.default_rng(seed).standard_normal(x.size)
    noise *= math.sqrt(power / (10.0 ** (snr_db / 10.0)) / np.mean(noise**2))
    return (x + noise).astype(np.float32)


def room_impulse_response(sample_rate: int, rt60: float, seed: int = 0) -> np.ndarray:
    """Synthetic RIR ``[round(rt60 * sr)]``: 1 at t=0, then decaying noise (-60 dB energy at ``rt60``)."""
    if not rt60 > 0:
        raise SpeechUnitsError(f"reverb: rt60 must be > 0 seconds, got {rt60}")
    n = max(2, int(round(rt60 * sample_rate)))
    t = np.arange(n) / sample_rate
    decay = np.log(10.0 ** (RT60_DECAY_DB / 20.0)) / rt60  # amplitude e-folding rate
    rir = np.random.default_rng(seed).standard_normal(n) * np.exp(-decay * t)
    rir[: int(REVERB_PREDELAY_S * sample_rate)] = 0.0
    rir[0] = 1.0
    return rir / np.sqrt(np.sum(rir**2))


def reverb(samples: np.ndarray, sample_rate: int, rt60: float = 0.4, seed: int = 0) -> np.ndarray:
    """Convolve with :func:`room_impulse_response`, keep ``T`` samples, restore the input RMS."""
    from scipy.signal import fftconvolve

    x = _check(samples)
    if x.size == 0:
        return x.copy()
    wet = fftconvolve(x.astype(np.float64), room_impulse_response(sample_rate, rt60, seed))[: x.size]
    rms_in, rms_out = np.sqrt(np.mean(x.astype(np.float64) ** 2)), np.sqrt(np.mean(wet**2))
    if rms_out > 0:
        wet *= rms_in / rms_out
    return wet.astype(np.float32)


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    """Multiply the samples by ``10 ** (db / 20)`` (no clipping: model inputs are floats)."""
    x = _check(samples)
    if not math.isfinite(db):
        raise SpeechUnitsError(f"gain: dB must be finite, got {db}")
    return (x * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


@dataclass(frozen=True)
class Augmentation:
    """One augmentation at one strength: ``apply(samples, sample_rate, seed) -> samples``."""

    kind: str
    strength: float
    label: str
    apply: Callable[[np.ndarray, int, int], np.ndarray]


def standard_augmentations(kinds: list[str]) -> list[Augmentation]:
    """The invariance grid for ``kinds`` (``stretch``, ``pitch``, ``noise``, ``reverb``).

    stretch ±10/20 %, pitch ±2 semitones, noise at 20/10/5 dB SNR, reverb RT60 0.3/0.6 s.
    """
    makers: dict[str, Callable[[], list[Augmentation]]] = {
        "stretch": lambda: [Augmentation("stretch", f, f"stretch x{f:g}",
                                         lambda x, sr, seed, f=f: time_stretch(x, sr, f)) for f in STRETCH_FACTORS],
        "pitch": lambda: [Augmentation("pitch", s, f"pitch {s:+g} st",
                                       lambda x, sr, seed, s=s: pitch_shift(x, sr, s)) for s in PITCH_SEMITONES],
        "noise": lambda: [Augmentation("noise", d, f"noise {d:g} dB",
                                       lambda x, sr, seed, d=d: add_noise(x, d, seed)) for d in NOISE_SNRS_DB],
        "reverb": lambda: [Augmentation("reverb", r, f"reverb rt60 {r:g} s",
                                        lambda x, sr, seed, r=r: reverb(x, sr, r, seed)) for r in REVERB_RT60_S],
    }
    unknown = [k for k in kinds if k not in makers]
    if unknown or not kinds:
        raise SpeechUnitsError(f"--augment: unknown augmentation(s) {unknown or kinds}; choose from {sorted(makers)}")
    out: list[Augmentation] = []
    for kind in dict.fromkeys(kinds):
        out.extend(makers[kind]())
    return out


# -- random perturbations for training (``pretrain --augment``) ---------------------------------------

#: Length-preserving perturbations a :class:`RandomAugment` draws from, in the order they are
#: applied (speaker, then room, then channel): kind -> (unit, lowest allowed, highest allowed).
RANDOM_KINDS: dict[str, tuple[str, float, float]] = {
    "pitch": ("semitones", -12.0, 12.0),
    "reverb": ("RT60 seconds", 0.05, 2.0),
    "noise": ("SNR dB", -10.0, 100.0),
    "gain": ("dB", -40.0, 40.0),
}
#: Probability of each perturbation when the spec gives no ``p=``.
DEFAULT_P = 0.5


@dataclass(frozen=True)
class Perturbation:
    """One kind of :data:`RANDOM_KINDS` with its strength drawn uniformly from ``[low, high]``."""

    kind: str
    low: float
    high: float


@dataclass(frozen=True)
class RandomAugment:
    """Random length-preserving perturbations: each applied with probability ``p``, its strength
    drawn uniformly from its range, in the order of :data:`RANDOM_KINDS`.

    Built by :meth:`parse` from a spec such as ``pitch:-3..3,noise:5..30,reverb:0.2..0.8,p=0.5``
    (``KIND:LOW..HIGH`` or ``KIND:VALUE``; ``none`` for no perturbation). :attr:`spec` is the
    canonical form (kinds in application order, ``p`` last), what a trained model records.
    """

    perturbations: tuple[Perturbation, ...] = ()
    p: float = DEFAULT_P

    @classmethod
    def parse(cls, spec: str) -> "RandomAugment":
        """The augmentation of ``spec``; a :class:`SpeechUnitsError` naming the bad part otherwise."""
        text = spec.strip()
        if text.lower() in ("", "none"):
            return cls()
        found: dict[str, Perturbation] = {}
        p = DEFAULT_P
        for part in (item.strip() for item in text.split(",")):
            if part.startswith("p="):
                p = _number(part[2:], spec, part)
                if not 0.0 <= p <= 1.0:
                    raise SpeechUnitsError(f"--augment {spec!r}: p must be in [0, 1], got {part!r}")
                continue
            kind, sep, value = part.partition(":")
            if kind not in RANDOM_KINDS:
                raise SpeechUnitsError(f"--augment {spec!r}: unknown kind {kind!r} in {part!r} "
                                       f"(kinds: {', '.join(RANDOM_KINDS)}; or p=P)")
            if not sep:
                raise SpeechUnitsError(f"--augment {spec!r}: {part!r} is not {kind}:LOW..HIGH or {kind}:VALUE")
            if kind in found:
                raise SpeechUnitsError(f"--augment {spec!r}: {kind!r} given twice")
            low_text, dots, high_text = value.partition("..")
            low = _number(low_text, spec, part)
            high = _number(high_text, spec, part) if dots else low
            unit, floor, ceiling = RANDOM_KINDS[kind]
            if low > high:
                raise SpeechUnitsError(f"--augment {spec!r}: reversed range in {part!r} ({low:g} > {high:g})")
            if low < floor or high > ceiling:
                raise SpeechUnitsError(f"--augment {spec!r}: {kind} ({unit}) must lie in "
                                       f"[{floor:g}, {ceiling:g}], got {part!r}")
            found[kind] = Perturbation(kind, low, high)
        ordered = tuple(found[kind] for kind in RANDOM_KINDS if kind in found)
        return cls(ordered, p)

    @property
    def spec(self) -> str:
        """Canonical spec: ``none``, or ``kind:low..high,...,p=P`` in application order."""
        if not self.perturbations:
            return "none"
        parts = [f"{x.kind}:{x.low:g}..{x.high:g}" for x in self.perturbations]
        return ",".join([*parts, f"p={self.p:g}"])

    def __bool__(self) -> bool:
        return bool(self.perturbations) and self.p > 0

    def draw(self, rng: np.random.Generator) -> list[tuple[str, float, int]]:
        """``(kind, strength, seed)`` of the perturbations applied this time.

        Every kind always consumes the same three draws (apply?, strength, seed) whether it
        applies or not, so the draws of one kind do not depend on another's outcome.
        """
        chosen = []
        for x in self.perturbations:
            applies = rng.random() < self.p
            strength = float(rng.uniform(x.low, x.high))
            seed = int(rng.integers(2**31))
            if applies:
                chosen.append((x.kind, strength, seed))
        return chosen

    def __call__(self, samples: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """A perturbed copy of ``samples [T]`` (float32 ``[T]``, same length)."""
        out = _check(samples)
        for kind, strength, seed in self.draw(rng):
            out = _apply_random(kind, out, sample_rate, strength, seed)
        return out


def _number(text: str, spec: str, part: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpeechUnitsError(f"--augment {spec!r}: {text!r} in {part!r} is not a number") from None
    if not math.isfinite(value):
        raise SpeechUnitsError(f"--augment {spec!r}: {part!r} is not finite")
    return value


def _apply_random(kind: str, x: np.ndarray, sample_rate: int, strength: float, seed: int) -> np.ndarray:
    if kind == "pitch":
        return pitch_shift(x, sample_rate, strength)
    if kind == "reverb":
        return reverb(x, sample_rate, strength, seed)
    if kind == "noise":
        if not np.any(x):  # an SNR of digital silence is undefined: leave it silent
            return x
        return add_noise(x, strength, seed)
    return gain(x, strength)
