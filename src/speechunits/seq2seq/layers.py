"""Building blocks of the TTS and S2UT models: positions, padding masks, encoder stacks, convolutions."""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Sinusoidal position encodings ``[length, dim]`` (Vaswani et al.; sin on even, cos on odd channels)."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float32, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: dim // 2])
    return table


def padding_mask(lengths: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """Bool ``[B, T]``: True at padded positions (``t >= lengths[b]``), the convention of torch attention."""
    total = int(lengths.max()) if length is None else length
    return torch.arange(total, device=lengths.device)[None, :] >= lengths[:, None]


def encoder_stack(dim: int, heads: int, ffn: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-LN transformer encoder layers (batch first) with a final layer norm."""
    layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


class ConvSubsampler(nn.Module):
    """fairseq S2T's Conv1dSubsampler: ``n`` 1-D convolutions (kernel 5, stride 2, GLU), each halving time.

    ``[B, T, D_in]`` -> ``[B, T', dim]`` with ``T' = out_length(T)``: per layer ``(T - 1) // 2 + 1``
    (kernel 5, padding 2, stride 2). ``n = 0`` is a linear projection.
    """

    KERNEL = 5

    def __init__(self, in_dim: int, dim: int, layers: int, hidden: int | None = None):
        super().__init__()
        self.layers = layers
        if layers == 0:
            self.proj: nn.Module = nn.Linear(in_dim, dim)
            self.convs = nn.ModuleList()
            return
        hidden = hidden or dim
        channels = [in_dim] + [hidden] * (layers - 1) + [dim]
        self.convs = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1] * 2, self.KERNEL, stride=2, padding=self.KERNEL // 2)
            for i in range(layers))
        self.proj = nn.Identity()

    def out_length(self, lengths: torch.Tensor) -> torch.Tensor:
        out = lengths.clone()
        for _ in range(self.layers):
            out = torch.div(out - 1, 2, rounding_mode="floor") + 1
        return out.clamp(min=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.layers == 0:
            return self.proj(x), lengths
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = nn.functional.glu(conv(h), dim=1)
        return h.transpose(1, 2), self.out_length(lengths)


class ConvStack(nn.Module):
    """Conv1d -> ReLU -> LayerNorm -> dropout blocks on ``[B, T, D]`` (FastSpeech's variance predictor body)."""

    def __init__(self, dim: int, hidden: int, kernel: int, layers: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim if i == 0 else hidden, hidden, kernel, padding=kernel // 2)
                                   for i in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = x.masked_fill(pad[..., None], 0.0)
        for conv, norm in zip(self.convs, self.norms):
            h = self.dropout(norm(torch.relu(conv(h.transpose(1, 2)).transpose(1, 2))))
            h = h.masked_fill(pad[..., None], 0.0)
        return h
