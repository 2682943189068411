"""What every encoder declares and does.

Layer numbering (used everywhere in speechunits): layer 0 is the input to the first
transformer block (after feature projection and the positional convolution); layer n is
the output of transformer block n. This equals fairseq's ``output_layer=n`` and Hugging
Face's ``hidden_states[n]``. Encoders without layers (MFCC, log-mel) only have layer 0.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from speechunits.audio import Audio


#: Window and hop in samples of the Kaldi-style 16 kHz filterbanks that w2v-BERT 2.0-style models read
#: (transformers' ``SeamlessM4TFeatureExtractor`` fixes them: 25 ms every 10 ms).
FBANK_WINDOW = 400
FBANK_HOP = 160


@dataclass(frozen=True)
class EncoderInfo:
    """Static facts about an encoder.

    Attributes:
        name: hub id, local directory or built-in name (``"mfcc"``, ``"logmel"``).
        sample_rate: input sample rate in Hz.
        hop_length: input samples per output frame (320 for HuBERT, 160 for MFCC).
        receptive_field: input samples that produce the first frame (400 for HuBERT/MFCC).
        num_layers: deepest selectable layer (0 for encoders without layers).
        dim: feature dimension of every layer.
        identity: short hash of the config and weights, stored with codebooks/unit stores
            so that units from different encoders are never mixed.
    """

    name: str
    sample_rate: int
    hop_length: int
    receptive_field: int
    num_layers: int
    dim: int
    identity: str

    @property
    def frame_rate(self) -> float:
        """Output frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def frame_offset_s(self) -> float:
        """Centre time of frame 0 in seconds: frame i covers samples ``[i*hop, i*hop + receptive_field)``,
        so it is centred at ``frame_offset_s + i / frame_rate`` with ``frame_offset_s = receptive_field / (2 sr)``."""
        return self.receptive_field / (2.0 * self.sample_rate)

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` input samples: ``(T - receptive_field) // hop + 1``, or 0 if shorter.

        This is exact for a stack of unpadded strided convolutions (HuBERT/wav2vec 2.0's CNN)
        and for framed features with ``snip_edges`` (Kaldi-style MFCC/log-mel).
        """
        if num_samples < self.receptive_field:
            return 0
        return (num_samples - self.receptive_field) // self.hop_length + 1


def conv_geometry(kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """``(hop, receptive_field)`` of a stack of unpadded 1-D convolutions, in input samples.

    ``hop = prod(strides)``; ``receptive_field = 1 + sum_i (k_i - 1) * prod_{j<i} s_j``.
    """
    hop, field = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (int(kernel) - 1) * hop
        hop *= int(stride)
    return hop, field


class Encoder(ABC):
    """Audio to per-layer frame features.

    Subclasses implement :meth:`extract_batch`; batched results must equal one-at-a-time
    results (within fp32 rounding).
    """

    info: EncoderInfo
    #: True when memory grows only linearly with input length and frames have no long-range
    #: context (spectral features): :func:`speechunits.features.iter_features` never chunks them.
    supports_long_input: bool = False
    #: Compute device (``"cpu"``, ``"cuda"`` ...) and precision (``"fp32"``, ``"bf16"``, ``"fp16"``).
    device: str = "cpu"
    dtype: str = "fp32"

    def prepare(self, wave: np.ndarray) -> np.ndarray:
        """Per-utterance input normalisation (e.g. ``do_normalize``); identity by default.

        :meth:`extract_batch` applies it unless ``prepared=True``; callers that cut an
        utterance into pieces prepare the whole utterance first.
        """
        return wave

    def as_waves(self, waves: Sequence[Audio | np.ndarray]) -> list[np.ndarray]:
        """float32 ``[T_i]`` arrays at ``info.sample_rate``: an :class:`Audio` is resampled, an array
        is taken to be at that rate already.

        Raises:
            SpeechUnitsError: an item that is neither (naming its position and type).
        """
        from speechunits.errors import SpeechUnitsError

        out = []
        for i, wave in enumerate(waves):
            if isinstance(wave, Audio):
                wave = wave.resample(self.info.sample_rate).samples
            kind = type(wave).__name__
            wave = np.asarray(wave)
            if not (np.issubdtype(wave.dtype, np.floating) or np.issubdtype(wave.dtype, np.integer)):
                raise SpeechUnitsError(f"{self.info.name}: wave {i} is a {kind}; expected an Audio "
                                       f"or a numeric array at {self.info.sample_rate} Hz")
            out.append(wave.astype(np.float32, copy=False))
        return out

    @abstractmethod
    def extract_batch(self, waves: Sequence[np.ndarray], layers: Sequence[int], *,
                      prepared: bool = False) -> list[dict[int, np.ndarray]]:
        """Features of several utterances at ``info.sample_rate``.

        Args:
            waves: float32 arrays ``[T_i]`` (already at the encoder's rate) or :class:`Audio`
                (resampled; see :meth:`as_waves`).
            layers: layer numbers to return (see module docstring).
            prepared: the waves already went through :meth:`prepare`.

        Returns:
            One dict per wave, ``{layer: float32 [num_frames(T_i), dim]}``.
        """

    def extract(self, audio: Audio | np.ndarray, layers: Sequence[int] = (0,)) -> dict[int, np.ndarray]:
        """Features of one utterance (resampled to the encoder's rate if an :class:`Audio`)."""
        return self.extract_batch(self.as_waves([audio]), layers)[0]

    def num_frames(self, num_samples: int) -> int:
        return self.info.num_frames(num_samples)

    def check_layers(self, layers: Sequence[int]) -> list[int]:
        """Validate and sort requested layers."""
        from speechunits.errors import SpeechUnitsError

        if not layers:
            raise SpeechUnitsError("at least one layer must be requested")
        bad = [layer for layer in layers if not 0 <= int(layer) <= self.info.num_layers]
        if bad:
            raise SpeechUnitsError(
                f"{self.info.name}: layer(s) {bad} out of range 0..{self.info.num_layers}"
            )
        return sorted({int(layer) for layer in layers})
