"""HuBERT's masked prediction as a :class:`speechunits.training.task.Task`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from speechunits.pretrain.config import PretrainConfig
from speechunits.pretrain.data import CropBatches
from speechunits.pretrain.front_end import model_inputs
from speechunits.pretrain.head import masked_prediction_loss
from speechunits.pretrain.masking import span_mask
from speechunits.training.batching import mix_seed
from speechunits.training.task import LossOutput


@dataclass
class MaskedBatch:
    """``inputs`` (the encoder's: :func:`~speechunits.pretrain.front_end.model_inputs`), ``labels [B, F]``
    int64 (IGNORE where none), ``mask [B, F]`` bool; ``seconds``: audio in the batch."""

    inputs: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    seconds: float


class MaskedPrediction:
    """Random crops of the corpus with their unit targets, span-masked; loss over masked frames.

    Micro-batch ``index`` is a pure function of ``(seed, index)``: crops from
    :class:`CropBatches`, the mask from a generator seeded by ``(seed, index)``.
    Logged: ``masked_acc``, ``unmasked_acc``; amount: audio seconds.
    """

    def __init__(self, batches: CropBatches, cfg: PretrainConfig, sample_rate: int):
        self.batches = batches
        self.cfg = cfg
        self.sample_rate = sample_rate

    def batch(self, index: int) -> MaskedBatch:
        crops = self.batches.batch(index)
        gen = torch.Generator().manual_seed(mix_seed(self.cfg.seed, index, 3))
        mask = span_mask(crops.labels.shape[0], crops.labels.shape[1], mask_prob=self.cfg.mask_prob,
                         mask_length=self.cfg.mask_length, min_masks=self.cfg.min_masks, generator=gen)
        return MaskedBatch(model_inputs(crops.waves, self.cfg), crops.labels, mask,
                           crops.waves.numel() / self.sample_rate)

    def loss(self, model: torch.nn.Module, batch: MaskedBatch) -> LossOutput:
        logits = model(batch.inputs, batch.mask)
        loss, stats = masked_prediction_loss(logits, batch.labels, batch.mask, self.cfg.unmasked_weight)
        return LossOutput(
            loss=loss,
            count=stats.masked_frames,
            metrics={"masked_acc": (stats.masked_correct, stats.masked_frames),
                     "unmasked_acc": (stats.unmasked_correct, stats.unmasked_frames)},
            amount=batch.seconds,
        )
