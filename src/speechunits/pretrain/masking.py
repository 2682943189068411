"""HuBERT span masking of model frames.

Each of the ``F`` frames of an utterance starts a masked span with probability ``mask_prob``:
``int(mask_prob * F + u)`` starts (``u ~ U[0, 1)``, at least ``min_masks``) are drawn without
replacement from ``[0, F - mask_length]``, each masking ``mask_length`` frames; spans may
overlap (fairseq's ``compute_mask_indices`` with ``no_overlap=False``). Randomness comes only
from the ``torch.Generator`` passed in, so a training step's mask is reproducible.
"""
from __future__ import annotations

import torch

from speechunits.errors import SpeechUnitsError


def span_mask(
    batch: int,
    frames: int,
    *,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Bool mask ``[batch, frames]``, True where a frame is masked.

    Utterances shorter than ``mask_length`` frames get no mask; otherwise spans are clipped to
    fit (the last start is ``frames - mask_length``).
    """
    if not 0.0 < mask_prob < 1.0:
        raise SpeechUnitsError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if mask_length < 1:
        raise SpeechUnitsError(f"mask_length must be >= 1, got {mask_length}")
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    positions = frames - mask_length + 1
    if positions <= 0:
        return mask
    for row in range(batch):
        jitter = float(torch.rand((), generator=generator))
        num_starts = max(min_masks, int(mask_prob * frames + jitter))
        num_starts = min(num_starts, positions)
        starts = torch.randperm(positions, generator=generator)[:num_starts]
        idx = (starts[:, None] + torch.arange(mask_length)[None, :]).reshape(-1)
        mask[row, idx] = True
    return mask
