"""Kaldi-style spectral features: ``mfcc`` (39-d) and ``logmel`` (80-d), both at 100 Hz.

Both follow Kaldi's ``compute-{mfcc,fbank}-feats`` (as reproduced by
``torchaudio.compliance.kaldi``, which fairseq's HuBERT recipe uses for its first
iteration), written with plain torch (torchaudio is not a dependency):

1. frames of 25 ms every 10 ms with ``snip_edges`` (frame i = samples ``[i*hop, i*hop+win)``,
   so ``num_frames = (T - win) // hop + 1``); no dither;
2. per frame: remove the DC offset, pre-emphasis ``x[n] - 0.97 x[n-1]`` (``x[-1] = x[0]``),
   Povey window (``hann(periodic=False) ** 0.85``), zero-pad to the next power of two (512);
3. power spectrum ``|rfft|^2``; triangular mel filters on the mel scale
   ``1127 ln(1 + f/700)`` between 20 Hz and Nyquist; ``log(max(E, float32 eps))``.

``logmel`` stops there (80 bins). ``mfcc`` uses 23 bins, an orthonormal DCT-II keeping 13
coefficients (C0 included, ``use_energy=False`` as in fairseq's ``dump_mfcc_feature.py``),
cepstral liftering with ``L = 22``, then appends delta and delta-delta (regression over
+-2 frames, edges replicated), giving 39 dimensions.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from speechunits.encoders.base import Encoder, EncoderInfo
from speechunits.errors import SpeechUnitsError


@dataclass(frozen=True)
class SpectralConfig:
    """Settings of a Kaldi-style front end (defaults: Kaldi's, without dither)."""

    kind: str  # "mfcc" or "logmel"
    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    num_mel_bins: int = 23
    num_ceps: int = 13
    low_freq_hz: float = 20.0
    preemphasis: float = 0.97
    window_power: float = 0.85  # Povey window = Hann ** 0.85
    cepstral_lifter: float = 22.0
    delta_window: int = 2  # +-N frames in the delta regression
    num_deltas: int = 2  # 2 = delta + delta-delta

    @property
    def win_length(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def hop_length(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()

    @property
    def dim(self) -> int:
        if self.kind == "mfcc":
            return self.num_ceps * (1 + self.num_deltas)
        return self.num_mel_bins


MFCC = SpectralConfig("mfcc")
LOGMEL = SpectralConfig("logmel", num_mel_bins=80)
BUILTIN_SPECTRAL = {"mfcc": MFCC, "logmel": LOGMEL}


def mel_scale(freq: np.ndarray | float) -> np.ndarray | float:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)


def mel_filterbank(num_bins: int, n_fft: int, sample_rate: int, low_freq: float, high_freq: float) -> np.ndarray:
    """Triangular filters ``[num_bins, n_fft // 2 + 1]`` (Kaldi: equal spacing in mel, last FFT bin unused)."""
    num_fft_bins = n_fft // 2
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    mel = mel_scale(np.arange(num_fft_bins) * sample_rate / n_fft)[None, :]
    left = mel_low + np.arange(num_bins)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.pad(banks, ((0, 0), (0, 1)))


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Orthonormal DCT-II basis ``[num_bins, num_ceps]`` (column 0 = ``sqrt(1/num_bins)``)."""
    n = np.arange(num_bins)[:, None]
    k = np.arange(num_ceps)[None, :]
    basis = np.cos(math.pi / num_bins * (n + 0.5) * k) * math.sqrt(2.0 / num_bins)
    basis[:, 0] = math.sqrt(1.0 / num_bins)
    return basis


def deltas(feats: torch.Tensor, window: int) -> torch.Tensor:
    """Regression deltas along time of ``[T, D]`` with edge replication (Kaldi/torchaudio ``compute_deltas``)."""
    denom = window * (window + 1) * (2 * window + 1) / 3
    padded = torch.cat([feats[:1].expand(window, -1), feats, feats[-1:].expand(window, -1)])
    total = feats.shape[0]
    out = torch.zeros_like(feats)
    for k in range(1, window + 1):
        out += k * (padded[window + k : window + k + total] - padded[window - k : window - k + total])
    return out / denom


class SpectralEncoder(Encoder):
    """MFCC or log-mel features; a single "layer" 0."""

    def __init__(self, config: SpectralConfig):
        if config.kind not in ("mfcc", "logmel"):
            raise SpeechUnitsError(f"unknown spectral feature kind {config.kind!r}")
        self.config = config
        identity = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:16]
        self.info = EncoderInfo(
            name=config.kind,
            sample_rate=config.sample_rate,
            hop_length=config.hop_length,
            receptive_field=config.win_length,
            num_layers=0,
            dim=config.dim,
            identity=identity,
        )
        high = config.sample_rate / 2
        banks = mel_filterbank(config.num_mel_bins, config.n_fft, config.sample_rate, config.low_freq_hz, high)
        self._banks = torch.from_numpy(banks.T.astype(np.float32))  # [n_fft/2+1, bins]
        self._window = torch.hann_window(config.win_length, periodic=False, dtype=torch.float64).pow(
            config.window_power
        ).float()
        if config.kind == "mfcc":
            lifter = 1.0 + 0.5 * config.cepstral_lifter * np.sin(
                math.pi * np.arange(config.num_ceps) / config.cepstral_lifter
            )
            dct = dct_matrix(config.num_ceps, config.num_mel_bins) * lifter[None, :]
            self._dct = torch.from_numpy(dct.astype(np.float32))  # [bins, ceps]

    # Spectral features have no context beyond one frame: long files need no chunking.
    supports_long_input = True

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Log mel energies ``[num_frames, num_mel_bins]`` of a float32 wave ``[T]``."""
        cfg = self.config
        frames = wave.unfold(0, cfg.win_length, cfg.hop_length)  # [F, win]
        frames = frames - frames.mean(dim=1, keepdim=True)
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = (frames - cfg.preemphasis * previous) * self._window
        power = torch.fft.rfft(frames, n=cfg.n_fft).abs().pow(2)  # [F, n_fft/2+1]
        energies = power @ self._banks
        return energies.clamp_min(torch.finfo(torch.float32).eps).log()

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Features ``[num_frames, dim]`` of one float32 wave ``[T]`` (``T >= receptive_field``)."""
        mel = self.log_mel(wave)
        if self.config.kind == "logmel":
            return mel
        ceps = mel @ self._dct
        parts = [ceps]
        for _ in range(self.config.num_deltas):
            parts.append(deltas(parts[-1], self.config.delta_window))
        return torch.cat(parts, dim=1)

    def extract_batch(self, waves: Sequence[np.ndarray], layers: Sequence[int] = (0,), *,
                      prepared: bool = False) -> list[dict[int, np.ndarray]]:
        """Features of each wave (computed one by one: cheap and trivially exact)."""
        layers = self.check_layers(layers)
        waves = self.as_waves(waves)
        out = []
        with torch.inference_mode():
            for wave in waves:
                wave = np.asarray(wave, dtype=np.float32)
                if wave.ndim != 1 or wave.shape[0] < self.info.receptive_field:
                    raise SpeechUnitsError(
                        f"{self.info.name}: need a 1-D wave of at least {self.info.receptive_field} samples, "
                        f"got shape {wave.shape}"
                    )
                feats = self.features(torch.from_numpy(wave)).numpy().astype(np.float32, copy=False)
                out.append({layer: feats for layer in layers})
        return out
