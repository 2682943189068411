"""UnitTokenizer: audio to units through an encoder and one or more codebooks.

Several codebooks (each tied to one layer, DASB style) share one encoder pass that runs only
up to the deepest layer any of them needs. Every codebook is checked against the encoder
(identity, layer, dimension) before anything is encoded, so mismatched units are never made.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from speechunits.audio import Audio
from speechunits.encoders.base import Encoder, EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.units.units import Units


class CodebookLike(Protocol):
    """What the tokenizer needs from :class:`speechunits.quantize.Codebook`."""

    layer: int
    k: int
    frame_rate: float
    meta: dict[str, Any]

    def assign(self, features: np.ndarray) -> np.ndarray: ...

    def check_compatible(self, encoder_info: EncoderInfo, layer: int) -> None: ...


class UnitTokenizer:
    """Audio to :class:`Units`, one stream per codebook.

    Args:
        encoder: a loaded encoder.
        codebooks: one or more codebooks for this encoder (possibly different layers).
        dedup: merge repeated units and keep durations (``torch.unique_consecutive`` semantics).

    Raises:
        SpeechUnitsError: no codebook, or a codebook made for another encoder, layer or dim.
    """

    def __init__(self, encoder: Encoder, codebooks: Sequence[CodebookLike], *, dedup: bool = False):
        if not codebooks:
            raise SpeechUnitsError("UnitTokenizer needs at least one codebook")
        for codebook in codebooks:
            codebook.check_compatible(encoder.info, codebook.layer)
        self.encoder = encoder
        self.codebooks = list(codebooks)
        self.dedup = dedup
        #: Layers the encoder is asked for (sorted, unique).
        self.layers = encoder.check_layers([cb.layer for cb in self.codebooks])

    def units_from_features(self, features: dict[int, np.ndarray]) -> list[Units]:
        """Units of every stream from one utterance's features ``{layer: [frames, dim]}``."""
        streams = []
        for codebook in self.codebooks:
            if codebook.layer not in features:
                raise SpeechUnitsError(f"features lack layer {codebook.layer} needed by a codebook")
            labels = np.asarray(codebook.assign(features[codebook.layer]), dtype=np.int64)
            units = Units(labels, float(codebook.frame_rate), int(codebook.k))
            streams.append(units.dedup() if self.dedup else units)
        return streams

    def encode_streams(self, audio: Audio | np.ndarray) -> list[Units]:
        """Units of every stream for one utterance (an :class:`Audio` is resampled; an array must
        already be at the encoder's rate)."""
        return self.units_from_features(self.encoder.extract(audio, self.layers))

    def encode(self, audio: Audio | np.ndarray) -> Units:
        """Units of the first stream."""
        return self.encode_streams(audio)[0]

    def encode_batch(self, waves: Sequence[Audio | np.ndarray]) -> list[list[Units]]:
        """Streams of several utterances in one encoder call; equals :meth:`encode_streams` one by one."""
        rate = self.encoder.info.sample_rate
        arrays = [w.resample(rate).samples if isinstance(w, Audio) else np.asarray(w, dtype=np.float32) for w in waves]
        return [self.units_from_features(f) for f in self.encoder.extract_batch(arrays, self.layers)]
