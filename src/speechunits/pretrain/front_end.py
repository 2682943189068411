"""What the encoder reads of a batch of crops: the waveforms, or the ``fbank`` front end's filterbanks.

The filterbanks come from the very feature extractor that the exported model ships
(:func:`feature_extractor`, written to ``preprocessor_config.json``), so a model reads in training
what :class:`speechunits.encoders.hf_fbank.HFFbankEncoder` gives it at inference. Each crop is
normalised over itself (per mel bin), as an utterance is at inference.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from speechunits.pretrain.config import FRONTEND_FBANK, PretrainConfig
from speechunits.pretrain.export import SAMPLE_RATE


@lru_cache(maxsize=4)
def _extractor(stride: int) -> Any:
    import transformers

    return transformers.SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=SAMPLE_RATE,
                                                   stride=stride)


def feature_extractor(train: PretrainConfig) -> Any:
    """The transformers feature extractor of ``train``'s model (what the export saves beside it)."""
    import transformers

    if train.frontend == FRONTEND_FBANK:
        return _extractor(train.fbank_stride)
    return transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                                 do_normalize=False, return_attention_mask=False)


def model_inputs(waves: torch.Tensor, train: PretrainConfig) -> torch.Tensor:
    """``waves [B, L]`` float32 (CPU) to the encoder's input: the same tensor for the CNN front end;
    ``[B, num_frames(L), 80 * stride]`` float32 filterbanks for ``fbank``."""
    if train.frontend != FRONTEND_FBANK:
        return waves
    from speechunits.encoders.hf_fbank import filterbank_frames

    extractor = _extractor(train.fbank_stride)
    frames = train.num_frames(waves.shape[1])
    return torch.from_numpy(np.stack([filterbank_frames(extractor, wave, frames) for wave in waves.numpy()]))
