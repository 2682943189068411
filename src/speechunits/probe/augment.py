"""Augmenting a probe's input while it trains: SpecAugment-style time masks, and unit substitution.

Time masks (``--time-mask N:R``, any input).
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

Unit substitution (``--unit-noise P[:N]``, units read with centroid tables): every unit id is
replaced with probability P by one of the N units whose standardised centroids lie nearest to its
own, drawn uniformly. An unseen voice moves a phone's frames across the k-means boundaries into
neighbouring clusters; the probe is shown such confusions while it learns. Training mode only.
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
        """The JSON form stored in ``probe.json`` (:func:`time_mask_from_spec` reads it back)."""
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


def time_mask_from_spec(spec: dict[str, Any] | None) -> TimeMask | None:
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


# -- unit substitution -----------------------------------------------------------------------------

#: Default ``N`` of ``--unit-noise P[:N]``.
DEFAULT_NEIGHBOURS = 5


@dataclass(frozen=True)
class UnitNoise:
    """While training, each unit is replaced with probability ``prob`` by one of its ``neighbours``
    nearest units (by centroid distance), drawn uniformly: the confusions k-means makes for a voice it
    was not fitted on fall between neighbouring clusters."""

    prob: float
    neighbours: int = DEFAULT_NEIGHBOURS

    def __post_init__(self) -> None:
        if not 0.0 < float(self.prob) < 1.0:
            raise SpeechUnitsError(f"--unit-noise: the substitution probability must be in (0, 1), got {self.prob}")
        if int(self.neighbours) < 1:
            raise SpeechUnitsError(f"--unit-noise: the number of neighbours must be >= 1, got {self.neighbours}")

    def spec(self) -> dict[str, Any]:
        """The JSON form stored in ``probe.json`` (:func:`unit_noise_from_spec` reads it back)."""
        return {"prob": float(self.prob), "neighbours": int(self.neighbours)}


def parse_unit_noise(text: str | None) -> UnitNoise | None:
    """``"P"`` or ``"P:N"`` (probability P, among the N nearest units; default N 5); None or ``"0"``: none."""
    if text is None or text.strip() in ("", "0"):
        return None
    prob, colon, count = text.partition(":")
    try:
        if colon and not count.strip().isdigit():
            raise ValueError(text)
        noise = (float(prob), int(count) if colon else DEFAULT_NEIGHBOURS)
    except ValueError:
        raise SpeechUnitsError(f"--unit-noise: expected P or P:N (substitution probability P among the N nearest "
                               f"units, e.g. 0.1:5), got {text!r}") from None
    return UnitNoise(*noise)


def unit_noise_from_spec(spec: dict[str, Any] | None) -> UnitNoise | None:
    """The :class:`UnitNoise` of a probe spec's ``unit_noise`` entry (None: no substitution)."""
    return None if not spec else UnitNoise(float(spec["prob"]), int(spec["neighbours"]))


def nearest_units(table: torch.Tensor, count: int) -> torch.Tensor:
    """``[K, min(count, K - 1)]`` int64: for each row of ``table [K, D]``, the other rows nearest to it
    (Euclidean; nearest first, ties by lower index)."""
    table = torch.as_tensor(table, dtype=torch.float64)
    k = table.shape[0]
    if k < 2:
        raise SpeechUnitsError("--unit-noise needs at least two units to substitute one for another")
    distance = torch.cdist(table, table)
    distance.fill_diagonal_(float("inf"))
    order = torch.sort(distance, dim=1, stable=True).indices
    return order[:, :min(int(count), k - 1)].contiguous()


def substitute_units(ids: torch.Tensor, neighbours: torch.Tensor, prob: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``ids`` (any shape, int64 in ``[0, K)``) with each entry replaced, with probability ``prob``, by a
    uniformly drawn one of its ``neighbours [K, N]`` rows (a new tensor)."""
    flat = ids.reshape(-1).to("cpu")
    hit = torch.rand(flat.shape, generator=generator) < prob
    pick = torch.randint(neighbours.shape[1], flat.shape, generator=generator)
    swapped = torch.where(hit, neighbours[flat, pick], flat)
    return swapped.reshape(ids.shape).to(ids.device)
