"""The ``cpu`` tier: a harmonic-plus-noise source-filter vocoder (DDSP / NSF family).

Source: a band-limited pulse train at the conditioning F0 (all harmonics below Nyquist with
equal amplitude, in closed form: the Dirichlet kernel, two sines per sample) where voiced, and
white noise everywhere. Filter: a small ConvNeXt network at the unit frame rate predicts, per
frame, two log-magnitude responses over the STFT bins (one for the pulses, one for the noise);
both sources are filtered in the STFT domain (window ``fft_factor * hop``, hop = the unit hop)
and summed before one inverse STFT. The pulses' phase is kept, so voiced speech is coherent
without learning phase, which is what lets a model this small become intelligible in minutes
on a CPU. Output: ``T * hop`` samples for ``T`` frames, frame ``i`` covering samples
``[i * hop, (i + 1) * hop)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.dsp import hann


#: Initial log-magnitude of both filters (white noise through a 4-hop Hann STFT has |X| ~ 15).
INITIAL_LOG_GAIN = -5.0


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP (x3) -> scaled residual (ConvNeXt / Vocos)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.dw = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, 3 * channels)
        self.pw2 = nn.Linear(3 * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


def upsample_frames(values: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame values ``[B, T]`` (frame ``i`` centred on sample ``(i + 0.5) hop``) -> samples ``[B, T * hop]``,
    linearly interpolated between frame centres (edges held)."""
    b, t = values.shape
    padded = torch.cat([values[:, :1], values, values[:, -1:]], dim=1)[:, None, :]  # [B, 1, T + 2]
    up = F.interpolate(padded, size=(t + 2) * hop, mode="linear", align_corners=False)[:, 0]
    return up[:, hop:hop + t * hop]


def fill_unvoiced(log_f0: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """``log_f0`` ``[B, T]`` with unvoiced frames set to the mean voiced value of the row (a smooth
    phase through unvoiced stretches; those samples get no pulses anyway)."""
    v = voiced.float()
    mean = (log_f0 * v).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp_min(1.0)
    mean = torch.where(v.sum(1, keepdim=True) > 0, mean, torch.full_like(mean, math.log(120.0)))
    return torch.where(voiced.bool(), log_f0, mean.expand_as(log_f0))


def pulse_train(f0_hz: torch.Tensor, voiced: torch.Tensor, sample_rate: int, hop: int) -> torch.Tensor:
    """Band-limited pulses ``[B, T * hop]`` at frame F0 ``[B, T]`` (Hz), zero where unvoiced.

    ``sum_{k=1..H} cos(k phi) / sqrt(H)`` with ``H = floor(sr / (2 f0))`` harmonics below Nyquist,
    computed as ``(sin((H + 1/2) phi) / (2 sin(phi / 2)) - 1/2) / sqrt(H)``.
    """
    log_f0 = fill_unvoiced(torch.log(f0_hz.float().clamp_min(1.0)), voiced)
    f0 = torch.exp(upsample_frames(log_f0, hop)).clamp(20.0, sample_rate / 2 - 1)
    gate = upsample_frames(voiced.float(), hop)
    phase = torch.remainder(torch.cumsum(2 * math.pi * f0 / sample_rate, dim=1), 2 * math.pi)
    harmonics = torch.floor(sample_rate / (2 * f0)).clamp_min(1.0)
    half = torch.sin(phase / 2)
    near = half.abs() < 1e-3
    dirichlet = torch.sin((harmonics + 0.5) * phase) / (2 * torch.where(near, torch.ones_like(half), half)) - 0.5
    dirichlet = torch.where(near, harmonics, dirichlet)
    return dirichlet / torch.sqrt(harmonics) * gate


class SourceFilterGenerator(nn.Module):
    """Conditioning ``[B, C, T]`` + F0 ``[B, T]`` (Hz) + voicing -> waveform ``[B, T * hop]``."""

    def __init__(self, cfg: VocoderConfig, in_dim: int):
        super().__init__()
        self.hop = cfg.hop
        self.sample_rate = cfg.sample_rate
        self.n_fft = cfg.fft_factor * cfg.hop
        self.bins = self.n_fft // 2 + 1
        self.inp = nn.Conv1d(in_dim, cfg.channels, cfg.kernel, padding=cfg.kernel // 2)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.channels, cfg.kernel) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.channels)
        self.head = nn.Linear(cfg.channels, 2 * self.bins)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, INITIAL_LOG_GAIN)  # start quiet: about speech level, not 20 dB over

    def filters(self, cond: torch.Tensor) -> torch.Tensor:
        """Log-magnitude responses ``[B, 2, bins, T + 1]`` at the STFT frames (centred on ``i * hop``)."""
        h = self.inp(cond)
        for block in self.blocks:
            h = block(h)
        out = self.head(self.norm(h.transpose(1, 2))).float()  # [B, T, 2 * bins]
        out = out.view(out.shape[0], out.shape[1], 2, self.bins).permute(0, 2, 3, 1)  # [B, 2, bins, T]
        # STFT frame j is centred between unit frames j - 1 and j
        padded = torch.cat([out[..., :1], out, out[..., -1:]], dim=-1)
        return 0.5 * (padded[..., :-1] + padded[..., 1:])

    def forward(self, cond: torch.Tensor, f0_hz: torch.Tensor, voiced: torch.Tensor,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """``noise``: white noise ``[B, T * hop]`` (default: drawn from torch's global RNG)."""
        b, _, t = cond.shape
        length = t * self.hop
        with torch.autocast(cond.device.type, enabled=False):
            log_mag = self.filters(cond).clamp(max=8.0)
            pulses = pulse_train(f0_hz, voiced, self.sample_rate, self.hop)
            if noise is None:
                noise = torch.randn(b, length, device=cond.device)
            window = hann(self.n_fft, cond.device)
            stft = lambda x: torch.stft(x.float(), self.n_fft, hop_length=self.hop, window=window,  # noqa: E731
                                        center=True, pad_mode="constant", return_complex=True)
            spec = torch.exp(log_mag[:, 0]) * stft(pulses) + torch.exp(log_mag[:, 1]) * stft(noise)
            return torch.istft(spec, self.n_fft, hop_length=self.hop, window=window, center=True, length=length)
