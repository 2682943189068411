"""The model being trained: a Hugging Face ``HubertModel`` plus the prediction head."""
from __future__ import annotations

import torch
from torch import nn

from speechunits.pretrain.config import PretrainConfig, conv_frames, hubert_config
from speechunits.pretrain.head import PredictionHead


class HubertPretrainer(nn.Module):
    """``waves [B, T]`` + ``mask [B, F]`` to cosine logits ``[B, F, K]``.

    ``encoder`` is exactly what gets exported (``HubertModel``); ``head`` is training-only.
    """

    def __init__(self, encoder: nn.Module, head: PredictionHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    @classmethod
    def build(cls, train: PretrainConfig, num_units: int) -> "HubertPretrainer":
        """Fresh random-initialised model (seeded by the caller)."""
        import transformers

        config = hubert_config(train)
        encoder = transformers.HubertModel(config)
        head = PredictionHead(config.hidden_size, train.embed_dim, num_units, train.temperature)
        return cls(encoder, head)

    def num_frames(self, num_samples: int) -> int:
        """Frames of the CNN for ``num_samples`` inputs (unpadded strided convs)."""
        cfg = self.encoder.config
        return conv_frames(num_samples, tuple(cfg.conv_kernel), tuple(cfg.conv_stride))

    def forward(self, waves: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(waves, mask_time_indices=mask)
        return self.head(out.last_hidden_state)
