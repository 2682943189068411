"""The model being trained: a Hugging Face ``HubertModel`` (waveform CNN) or ``Wav2Vec2BertModel``
(filterbank front end) plus the prediction head."""
from __future__ import annotations

import torch
from torch import nn

from speechunits.pretrain.config import FRONTEND_FBANK, PretrainConfig, model_config
from speechunits.pretrain.head import PredictionHead


class HubertPretrainer(nn.Module):
    """``inputs`` + ``mask [B, F]`` to cosine logits ``[B, F, K]``.

    ``inputs`` are what the encoder reads: waveforms ``[B, T]`` (``HubertModel``) or filterbank
    frames ``[B, F, D]`` (``Wav2Vec2BertModel``; :func:`speechunits.pretrain.front_end.model_inputs`
    makes them). ``encoder`` is exactly what gets exported; ``head`` is training-only.
    """

    def __init__(self, encoder: nn.Module, head: PredictionHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    @classmethod
    def build(cls, train: PretrainConfig, num_units: int) -> "HubertPretrainer":
        """Fresh random-initialised model (seeded by the caller)."""
        import transformers

        config = model_config(train)
        model_class = transformers.Wav2Vec2BertModel if train.frontend == FRONTEND_FBANK else transformers.HubertModel
        encoder = model_class(config)
        head = PredictionHead(config.hidden_size, train.embed_dim, num_units, train.temperature)
        return cls(encoder, head)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(inputs, mask_time_indices=mask)
        return self.head(out.last_hidden_state)
