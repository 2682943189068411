"""SpecAugment-style time masks on a probe's input sequence while it trains.

Each utterance of ``n`` valid frames gets ``masks`` masks; a mask's width is drawn uniformly from
``0 .. floor(max_ratio * n)`` frames and its start uniformly from the positions where it fits, and
its frames are set to zero (masks may overlap). Widths scale with each utterance's own length, as
in the variable-width time masks of ESPnet's SpecAugment (``time_mask_width_ratio_range``), so a
short utterance loses the same share as a long one. Padding is never touched and never counted.

The probe applies the masks to its featurizer's output (unit embeddings, or the weighted sum of
standardised layers, where zero is the mean), before frame stacking and the head, and only in
training mode: evaluation, ``probe eval`` and ``transcribe`` see every frame.
Randomness comes from torch's global generator (seeded per run by the probe trainer and saved in
its checkpoints, like dropout's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from speechunits.errors import SpeechUnitsError


@dataclass(frozen=True)
class TimeMask:
    """``masks`` masks per utterance, each up to ``max_ratio`` of its valid frames wide."""

    masks: int
    max_ratio: float

    def __post_init__(self) -> None:
        if int(self.masks) < 1:
            raise SpeechUnitsError(f"--time-mask: the number of masks must be >= 1, got {self.masks}")
        if not 0.0 < float(self.max_ratio) <= 0.5:
            raise SpeechUnitsError(f"--time-mask: the widest mask must be a share in (0, 0.5] of an utterance, "
                                   f"got {self.max_ratio}")

    def spec(self) -> dict[str, Any]:
        """The JSON form stored in ``probe.json`` (:func:`from_spec` reads it back)."""
        return {"masks": int(self.masks), "max_ratio": float(self.max_ratio)}


def parse_time_mask(text: str | None) -> TimeMask | None:
    """``"N:R"`` (N masks of up to R of an utterance each, e.g. ``"5:0.05"``); None or ``"0"``: no masks."""
    if text is None or text.strip() in ("", "0"):
        return None
    count, colon, ratio = text.partition(":")
    try:
        if not colon or not count.strip().isdigit():
            raise ValueError(text)
        masks, share = int(count), float(ratio)
    except ValueError:
        raise SpeechUnitsError(f"--time-mask: expected N:R (N masks, each up to a share R of an utterance, "
                               f"e.g. 5:0.05), got {text!r}") from None
    return TimeMask(masks, share)


def from_spec(spec: dict[str, Any] | None) -> TimeMask | None:
    """The :class:`TimeMask` of a probe spec's ``time_mask`` entry (None: the probe masks nothing)."""
    return None if not spec else TimeMask(int(spec["masks"]), float(spec["max_ratio"]))


def time_mask(lengths: torch.Tensor, frames: int, mask: TimeMask,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool ``[B, frames]``, True on the frames to zero (only ever within ``lengths[b]``)."""
    lengths = lengths.detach().to("cpu", torch.long).clamp(0, frames)
    batch = lengths.numel()
    widest = torch.floor(lengths.double() * float(mask.max_ratio)).long()  # [B]
    u_width = torch.rand(batch, mask.masks, generator=generator, dtype=torch.float64)
    u_start = torch.rand(batch, mask.masks, generator=generator, dtype=torch.float64)
    widths = torch.floor(u_width * (widest[:, None] + 1).double()).long()  # 0 .. widest
    starts = torch.floor(u_start * (lengths[:, None] - widths + 1).clamp_min(1).double()).long()
    position = torch.arange(frames)[None, None, :]
    covered = (position >= starts[..., None]) & (position < (starts + widths)[..., None])  # [B, M, T]
    return covered.any(dim=1)


def apply_time_mask(x: torch.Tensor, lengths: torch.Tensor, mask: TimeMask,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``x [B, T, D]`` with the frames of :func:`time_mask` set to zero (a new tensor)."""
    keep = ~time_mask(lengths, x.shape[1], mask, generator).to(x.device)
    return x * keep.unsqueeze(-1).to(x.dtype)
