"""Frame-rate conditioning shared by both tiers, and the predictors for unit-only synthesis.

* :class:`Conditioner`: ``[B, S, T]`` unit ids of S streams (+ F0, + speaker vector) ->
  ``[B, C, T]``: the sum of one embedding per stream, concatenated with an F0 feature
  (normalised log-F0 and voicing, or an embedded F0 bin) and the speaker vector.
* :class:`ReferenceEncoder`: reference audio -> an utterance-level speaker vector (log-mel,
  convolutions, mean and standard-deviation pooling): one-shot conversion to unseen voices.
* :class:`F0Predictor`: frame-level units (+ speaker) -> normalised log-F0 and voicing logits.
* :class:`DurationPredictor`: deduplicated units (+ speaker) -> log(1 + duration in frames).
"""
from __future__ import annotations

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import standardised_rows
from speechunits.vocoder.config import F0_BINS, F0_RANGE, VocoderConfig
from speechunits.vocoder.dsp import LogMel


def quantize_f0(z: torch.Tensor, voiced: torch.Tensor) -> torch.Tensor:
    """F0 bin ids ``[...]``: 0 where unvoiced, else ``1 + bin`` of ``z`` in ``[-F0_RANGE, F0_RANGE]``."""
    bins = torch.clamp(((z + F0_RANGE) / (2 * F0_RANGE) * F0_BINS).floor(), 0, F0_BINS - 1).long()
    return torch.where(voiced.bool(), bins + 1, torch.zeros_like(bins))


def dequantize_f0(ids: torch.Tensor) -> torch.Tensor:
    """Normalised log-F0 at the centre of each bin (0 for unvoiced ids)."""
    z = -F0_RANGE + (ids.float() - 0.5) * (2 * F0_RANGE / F0_BINS)
    return torch.where(ids > 0, z, torch.zeros_like(z))


class ReferenceEncoder(nn.Module):
    """Reference audio ``[B, L]`` -> speaker vector ``[B, dim]`` (padding given by ``lengths``)."""

    def __init__(self, sample_rate: int, dim: int, channels: int = 128, n_mels: int = 80):
        super().__init__()
        scale = max(1, round(sample_rate / 16000))
        self.mel = LogMel(sample_rate, n_fft=1024 * scale, hop=256 * scale, n_mels=n_mels)
        layers: list[nn.Module] = []
        width = n_mels
        for _ in range(3):
            layers += [nn.Conv1d(width, channels, 5, padding=2), nn.GroupNorm(1, channels), nn.GELU()]
            width = channels
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * channels, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self.mel(audio)
        mel = mel - mel.mean(dim=(1, 2), keepdim=True)  # loudness-invariant
        h = self.convs(mel.to(self.proj.weight.dtype))
        pooled = torch.cat([h.mean(-1), h.std(-1, unbiased=False)], dim=-1)
        return self.norm(self.proj(pooled))


class Conditioner(nn.Module):
    """Units (+ F0, + speaker vector) -> frame features ``[B, out_dim, T]``.

    Unit tables are ``[K, unit_dim]``, or with ``embed_init="centroids"`` ``[K, D]`` (the codebook's
    dimension, filled by :meth:`load_centroids`) followed by a learned ``D -> unit_dim`` linear map.
    """

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        centroids = cfg.embed_init == "centroids"
        widths = cfg.unit_table_dims if centroids else [cfg.unit_dim] * len(cfg.vocab_sizes)
        self.units = nn.ModuleList(nn.Embedding(k, d) for k, d in zip(cfg.vocab_sizes, widths))
        self.unit_projections = nn.ModuleList(nn.Linear(d, cfg.unit_dim) for d in widths) if centroids else None
        self.f0_continuous = nn.Linear(2, cfg.f0_dim) if cfg.f0 == "continuous" else None
        self.f0_quantized = nn.Embedding(F0_BINS + 1, cfg.f0_dim) if cfg.f0 == "quantized" else None
        self.speaker_table = nn.Embedding(cfg.num_speakers, cfg.speaker_dim) if cfg.speaker == "table" else None
        self.reference = ReferenceEncoder(cfg.sample_rate, cfg.speaker_dim) if cfg.speaker == "embedding" else None
        # embedding vocoders: the mean reference vector of each known speaker (filled at export)
        known = cfg.num_speakers if cfg.speaker == "embedding" else 0
        self.register_buffer("speaker_means", torch.zeros(known, cfg.speaker_dim))
        self.out_dim = cfg.unit_dim + (cfg.f0_dim if cfg.f0 != "none" else 0) + \
            (cfg.speaker_dim if cfg.speaker != "none" else 0)

    @torch.no_grad()
    def load_centroids(self, tables: list[torch.Tensor]) -> None:
        """Start every stream's table from its codebook's centroids ``[K_s, D_s]``, standardised
        (:func:`~speechunits.quantize.codebook.standardised_rows`)."""
        if self.unit_projections is None:
            raise SpeechUnitsError("this vocoder's unit tables were not built for centroids (embed_init random)")
        if len(tables) != len(self.units):
            raise SpeechUnitsError(f"{len(tables)} centroid tables for {len(self.units)} unit streams")
        for s, (table, values) in enumerate(zip(self.units, tables)):
            values = standardised_rows(values)
            if tuple(values.shape) != tuple(table.weight.shape):
                raise SpeechUnitsError(f"stream {s}: centroids {tuple(values.shape)}, the table is "
                                       f"{tuple(table.weight.shape)}")
            table.weight.copy_(values)

    def embed_units(self, units: torch.Tensor) -> torch.Tensor:
        """``[B, S, T]`` ids -> ``[B, T, unit_dim]``: the sum over streams."""
        if self.unit_projections is None:
            return sum(emb(units[:, j]) for j, emb in enumerate(self.units))
        return sum(proj(emb(units[:, j])) for j, (emb, proj) in enumerate(zip(self.units, self.unit_projections)))

    def speaker_vector(self, speaker: torch.Tensor | None = None, reference: torch.Tensor | None = None
                       ) -> torch.Tensor | None:
        """``[B, speaker_dim]`` from table ids ``[B]`` or reference audio ``[B, L]`` (None without speakers)."""
        if self.cfg.speaker == "none":
            return None
        if self.cfg.speaker == "table":
            return self.speaker_table(speaker)
        if reference is not None:
            return self.reference(reference)
        return self.speaker_means[speaker]

    def forward(self, units: torch.Tensor, f0_z: torch.Tensor | None, voiced: torch.Tensor | None,
                speaker_vec: torch.Tensor | None) -> torch.Tensor:
        """``units`` ``[B, S, T]``; ``f0_z``, ``voiced`` ``[B, T]``; ``speaker_vec`` ``[B, D]``."""
        h = self.embed_units(units)  # [B, T, unit_dim]
        parts = [h]
        if self.f0_continuous is not None:
            parts.append(self.f0_continuous(torch.stack([f0_z * voiced, voiced.float()], dim=-1).to(h.dtype)))
        elif self.f0_quantized is not None:
            parts.append(self.f0_quantized(quantize_f0(f0_z, voiced)))
        if speaker_vec is not None:
            parts.append(speaker_vec[:, None, :].to(h.dtype).expand(-1, h.shape[1], -1))
        return torch.cat(parts, dim=-1).transpose(1, 2)


class _ConvStack(nn.Module):
    """Embedded ids (+ speaker vector) -> convolutions -> ``out`` values per position."""

    def __init__(self, vocab_sizes: list[int], speaker_dim: int, channels: int, out: int, layers: int = 3):
        super().__init__()
        self.units = nn.ModuleList(nn.Embedding(k, channels) for k in vocab_sizes)
        self.speaker = nn.Linear(speaker_dim, channels) if speaker_dim else None
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 5, padding=2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.head = nn.Linear(channels, out)

    def forward(self, units: torch.Tensor, speaker_vec: torch.Tensor | None) -> torch.Tensor:
        """``units`` ``[B, S, N]`` -> ``[B, N, out]``."""
        h = sum(emb(units[:, j]) for j, emb in enumerate(self.units))
        if self.speaker is not None and speaker_vec is not None:
            h = h + self.speaker(speaker_vec.detach().to(h.dtype))[:, None, :]
        for conv, norm in zip(self.convs, self.norms):
            h = h + torch.relu(norm(conv(h.transpose(1, 2)).transpose(1, 2)))
        return self.head(h)


class F0Predictor(nn.Module):
    """Frame-level units ``[B, S, T]`` -> ``(z [B, T], voiced logits [B, T])``."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        dim = cfg.speaker_dim if cfg.speaker != "none" else 0
        self.net = _ConvStack(cfg.vocab_sizes, dim, cfg.predictor_channels, 2)

    def forward(self, units: torch.Tensor, speaker_vec: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(units, speaker_vec)
        return out[..., 0], out[..., 1]


class DurationPredictor(nn.Module):
    """Deduplicated units ``[B, 1, N]`` -> predicted ``log(1 + frames)`` ``[B, N]``."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        dim = cfg.speaker_dim if cfg.speaker != "none" else 0
        self.net = _ConvStack(cfg.vocab_sizes, dim, cfg.predictor_channels, 1)

    def forward(self, units: torch.Tensor, speaker_vec: torch.Tensor | None) -> torch.Tensor:
        return self.net(units, speaker_vec)[..., 0]

    @staticmethod
    def frames(log_durations: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Whole frames (>= 1) from predicted ``log(1 + frames)``, times ``scale`` before rounding."""
        return torch.clamp(torch.round(scale * torch.expm1(log_durations.float())), min=1).long()
