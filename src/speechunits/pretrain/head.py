"""Prediction head: final projection + unit embeddings, cosine logits over a temperature.

As in HuBERT: ``logits[t, k] = cos(W h_t, e_k) / temperature`` with ``h_t`` the last
transformer layer, ``W`` the final projection and ``e_k`` a learned embedding per target unit.
The loss is cross-entropy over masked frames plus, optionally, ``unmasked_weight`` times the
cross-entropy over unmasked frames. Targets of ``IGNORE`` (-100) count nowhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

IGNORE = -100


@dataclass
class LossStats:
    """Sums over a batch (so they add across micro-batches and ranks)."""

    loss_sum: float
    masked_frames: int
    masked_correct: int
    unmasked_frames: int
    unmasked_correct: int


class PredictionHead(nn.Module):
    """``hidden [B, F, H]`` to ``logits [B, F, K]``."""

    def __init__(self, hidden_size: int, embed_dim: int, num_units: int, temperature: float):
        super().__init__()
        self.final_proj = nn.Linear(hidden_size, embed_dim)
        self.unit_embeddings = nn.Parameter(torch.empty(num_units, embed_dim))
        nn.init.uniform_(self.unit_embeddings)
        self.temperature = temperature

    @property
    def num_units(self) -> int:
        return int(self.unit_embeddings.shape[0])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Cosine logits ``[B, F, K]`` (float32) of hidden states ``[B, F, H]``."""
        proj = F.normalize(self.final_proj(hidden).float(), dim=-1)
        emb = F.normalize(self.unit_embeddings.float(), dim=-1)
        return proj @ emb.t() / self.temperature


def masked_prediction_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, unmasked_weight: float = 0.0
) -> tuple[torch.Tensor, LossStats]:
    """Summed cross-entropy over masked frames (+ weighted unmasked frames).

    Args:
        logits: ``[B, F, K]``.
        targets: int64 ``[B, F]``, ``IGNORE`` where a frame has no target.
        mask: bool ``[B, F]``, True on masked frames.

    Returns:
        The summed loss (divide by the number of counted masked frames to average) and stats.
    """
    valid = targets != IGNORE
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_targets = targets.reshape(-1)
    per_frame = F.cross_entropy(flat_logits, flat_targets.clamp_min(0), reduction="none").reshape(targets.shape)
    masked = mask & valid
    unmasked = ~mask & valid
    loss = per_frame[masked].sum()
    if unmasked_weight > 0:
        loss = loss + unmasked_weight * per_frame[unmasked].sum()
    with torch.no_grad():
        correct = logits.argmax(-1) == targets
        stats = LossStats(
            loss_sum=float(loss.detach()),
            masked_frames=int(masked.sum()),
            masked_correct=int((correct & masked).sum()),
            unmasked_frames=int(unmasked.sum()),
            unmasked_correct=int((correct & unmasked).sum()),
        )
    return loss, stats
