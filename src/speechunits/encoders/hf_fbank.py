"""transformers speech SSL models that read log-mel filterbank frames: w2v-BERT 2.0 (``Wav2Vec2BertModel``).

w2v-BERT 2.0 is the speech encoder of SeamlessM4T v2 (its own units came from another model, XLS-R
1B). Its input is not the waveform but ``input_features`` from
``SeamlessM4TFeatureExtractor`` (the model's ``preprocessor_config.json``): Kaldi-style 80-bin
log-mel filterbanks (25 ms windows every 10 ms at 16 kHz), each bin normalised to zero mean and
unit variance over the utterance, and ``stride`` (2) consecutive frames stacked into one
(``[F, 80 * stride]``, 50 Hz).

Layers are numbered as everywhere (:mod:`speechunits.encoders.base`): layer 0 is the projected
filterbanks that enter block 1, layer n the output of conformer block n, what transformers
returns as ``hidden_states[n]``. Batching is exact: each utterance's filterbanks are computed and
normalised alone, padded frames are masked in attention and zeroed before each block's
depthwise convolution (transformers does both when given the mask of valid frames).

Frame ``i`` covers input samples ``[i * 160 * stride, i * 160 * stride + 400 + 160 * (stride - 1))``.
Per-bin normalisation spans the whole input, so a file cut into pieces (``--chunk-seconds``)
is normalised piece by piece, not over the file. The CPU kernels of :mod:`speechunits.encoders.cpu`
are for waveform CNNs and are not applied here.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from speechunits.encoders.base import FBANK_HOP, FBANK_WINDOW, EncoderInfo
from speechunits.encoders.hf import HFEncoder
from speechunits.errors import SpeechUnitsError

#: The only input rate whose window and hop are 25 ms and 10 ms.
FBANK_SAMPLE_RATE = 16000


def filterbank_frames(extractor: Any, wave: np.ndarray, frames: int) -> np.ndarray:
    """``extractor``'s (a ``SeamlessM4TFeatureExtractor``) ``input_features`` of one 16 kHz input, its first
    ``frames`` stacked frames: float32 ``[frames, num_mel_bins * stride]``. The count comes from the caller's
    geometry, not from the extractor's attention mask, which transformers leaves empty at stride 1."""
    out = extractor(np.asarray(wave, dtype=np.float32), sampling_rate=FBANK_SAMPLE_RATE, return_tensors="np")
    return np.ascontiguousarray(out["input_features"][0, :frames], dtype=np.float32)


class HFFbankEncoder(HFEncoder):
    """A transformers model with a filterbank front end (``input_features``) as an :class:`Encoder`.

    ``extractor`` is the model's ``SeamlessM4TFeatureExtractor``; its ``stride`` times its
    ``num_mel_bins`` must be the model's ``feature_projection_input_dim``.
    """

    def __init__(self, model: nn.Module, name: str, extractor: Any, *, device: str = "auto",
                 dtype: str = "fp32", identity: str | None = None):
        for attribute in ("stride", "num_mel_bins", "sampling_rate"):
            if not hasattr(extractor, attribute):
                raise SpeechUnitsError(f"{name}: its feature extractor {type(extractor).__name__} is not a "
                                       "filterbank one (SeamlessM4TFeatureExtractor): no " + attribute)
        config = model.config
        stride, bins = int(extractor.stride), int(extractor.num_mel_bins)
        if stride * bins != int(config.feature_projection_input_dim):
            raise SpeechUnitsError(f"{name}: the feature extractor makes {stride} x {bins} = {stride * bins} "
                                   f"values per frame; the model reads {config.feature_projection_input_dim}")
        if int(extractor.sampling_rate) != FBANK_SAMPLE_RATE:
            raise SpeechUnitsError(f"{name}: filterbank models read {FBANK_SAMPLE_RATE} Hz audio; its feature "
                                   f"extractor says {extractor.sampling_rate}")
        identity = self._adopt(model, name, ("feature_projection", "encoder"), device, dtype, identity)
        self.do_normalize = False
        self.extractor = extractor
        self.batch_cnn = False
        self.info = EncoderInfo(
            name=name,
            sample_rate=FBANK_SAMPLE_RATE,
            hop_length=FBANK_HOP * stride,
            receptive_field=FBANK_WINDOW + FBANK_HOP * (stride - 1),
            num_layers=int(config.num_hidden_layers),
            dim=int(config.hidden_size),
            identity=identity,
        )
        self._install_pos_conv_masking()

    @classmethod
    def from_model(cls, model: nn.Module, name: str, device: str = "auto", dtype: str = "fp32") -> "HFFbankEncoder":
        """Wrap a loaded model; its feature extractor comes from ``name`` (``preprocessor_config.json``)."""
        from transformers import AutoFeatureExtractor

        try:
            extractor = AutoFeatureExtractor.from_pretrained(name)
        except (OSError, ValueError, KeyError) as exc:
            raise SpeechUnitsError(f"{name}: a filterbank model needs its preprocessor_config.json ({exc})") from exc
        return cls(model, name, extractor, device=device, dtype=dtype)

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """float32 samples, unchanged (normalisation happens on the filterbanks, per input)."""
        return np.asarray(wave, dtype=np.float32)

    def filterbanks(self, wave: np.ndarray) -> np.ndarray:
        """The model's ``input_features`` of one input: float32 ``[num_frames(T), num_mel_bins * stride]``."""
        return filterbank_frames(self.extractor, wave, self.info.num_frames(len(wave)))

    def _batch_states(self, waves: Sequence[np.ndarray], lengths: list[int], layers: Sequence[int]) -> dict[int, torch.Tensor]:
        features = [torch.from_numpy(self.filterbanks(wave)) for wave in waves]
        batch = nn.utils.rnn.pad_sequence(features, batch_first=True).to(self.torch_device, self.torch_dtype)
        frames = torch.tensor([f.shape[0] for f in features], device=batch.device)
        mask = None
        if len(set(frames.tolist())) > 1:
            mask = torch.arange(batch.shape[1], device=batch.device)[None, :] < frames[:, None]
        projected = self.model.feature_projection(batch)
        hidden = projected[0] if isinstance(projected, tuple) else projected
        return self._run_encoder(hidden, mask, layers)
