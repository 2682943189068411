"""Spectral helpers and reconstruction losses of the vocoders (always computed in float32).

* :class:`LogMel`: log-mel spectrogram ``[B, n_mels, frames]`` (mel filters of
  :func:`speechunits.encoders.spectral.mel_filterbank`), used by the mel L1 loss and the reference
  encoder;
* :func:`multi_resolution_stft_loss`: spectral convergence + log-magnitude L1 at several FFT
  sizes (Parallel WaveGAN's multi-resolution STFT loss);
* :func:`mel_l1`: L1 between log-mel spectrograms (HiFi-GAN's mel loss).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: (n_fft, hop, window) of the multi-resolution STFT loss at 16 kHz; scaled with the sample rate.
STFT_RESOLUTIONS_16K: tuple[tuple[int, int, int], ...] = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024))

_WINDOWS: dict[tuple[int, str], torch.Tensor] = {}


def hann(size: int, device: torch.device) -> torch.Tensor:
    """A cached float32 periodic Hann window (a normal tensor even when first asked for under
    ``torch.inference_mode``, so that training after synthesis can use it)."""
    key = (size, str(device))
    if key not in _WINDOWS:
        with torch.inference_mode(False):
            _WINDOWS[key] = torch.hann_window(size, device=device, dtype=torch.float32)
    return _WINDOWS[key]


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """``|STFT|`` ``[B, n_fft // 2 + 1, frames]`` of waveforms ``x`` ``[B, T]`` (Hann window, centred, zero-padded)."""
    window = hann(win, x.device)
    spec = torch.stft(x.float(), n_fft, hop_length=hop, win_length=win, window=window, center=True,
                      pad_mode="constant", return_complex=True)  # constant: any length, even under n_fft / 2
    return spec.abs().clamp_min(1e-7)


class LogMel(nn.Module):
    """``log(max(mel, 1e-5))`` ``[B, n_mels, T // hop + 1]`` of waveforms ``[B, T]``."""

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
                 f_min: float = 0.0, f_max: float | None = None):
        super().__init__()
        from speechunits.encoders.spectral import mel_filterbank

        self.n_fft, self.hop = n_fft, hop
        bank = mel_filterbank(n_mels, n_fft, sample_rate, max(f_min, 1e-3), f_max or sample_rate / 2)
        self.register_buffer("bank", torch.tensor(bank, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            mag = stft_magnitude(x.float(), self.n_fft, self.hop, self.n_fft)
            return torch.log(torch.clamp(self.bank @ mag, min=1e-5))


def scaled_resolutions(sample_rate: int) -> list[tuple[int, int, int]]:
    """:data:`STFT_RESOLUTIONS_16K` scaled to ``sample_rate`` (powers of two kept)."""
    scale = max(1, round(sample_rate / 16000))
    return [(n * scale, h * scale, w * scale) for n, h, w in STFT_RESOLUTIONS_16K]


def multi_resolution_stft_loss(y_hat: torch.Tensor, y: torch.Tensor,
                               resolutions: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    """Mean over resolutions of spectral convergence + L1 of log magnitudes; ``y_hat, y`` ``[B, T]``."""
    total = y.new_zeros((), dtype=torch.float32)
    with torch.autocast(y.device.type, enabled=False):
        for n_fft, hop, win in resolutions:
            a = stft_magnitude(y_hat.float(), n_fft, hop, win)
            b = stft_magnitude(y.float(), n_fft, hop, win)
            convergence = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp_min(1e-7)
            total = total + convergence + torch.mean(torch.abs(torch.log(a) - torch.log(b)))
    return total / len(resolutions)


def mel_l1(mel: LogMel, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of log-mel spectrograms."""
    return torch.mean(torch.abs(mel(y_hat) - mel(y)))
