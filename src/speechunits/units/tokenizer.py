"""UnitTokenizer: audio to units through an encoder and one or more codebooks.

Several codebooks (each tied to one layer, DASB style) share one encoder pass that runs only
up to the deepest layer any of them needs. Every codebook is checked against the encoder
(identity, layer, dimension) before anything is encoded, so mismatched units are never made.
A multi-stream codebook (``streams`` > 1, dMel) gives one :class:`MultiStreamUnits` per
utterance through its ``assign_streams``.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from speechunits.audio import Audio
from speechunits.encoders.base import Encoder, EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.units.multistream import MultiStreamUnits
from speechunits.units.units import Units


class CodebookLike(Protocol):
    """What the tokenizer needs from :class:`speechunits.quantize.Codebook`."""

    layer: int | None
    k: int
    frame_rate: float | None
    meta: dict[str, Any]

    def assign(self, features: np.ndarray) -> np.ndarray: ...

    def check_compatible(self, encoder_info: EncoderInfo, layer: int) -> None: ...


class UnitTokenizer:
    """Audio to :class:`Units`, one stream per codebook.

    Args:
        encoder: a loaded encoder.
        codebooks: one or more codebooks for this encoder (possibly different layers).
        dedup: merge repeated units and keep durations (``torch.unique_consecutive`` semantics).
        layers: the layer wanted from each codebook (default: each codebook's own layer); a
            codebook trained on another layer is refused, one without a recorded layer uses it.

    Raises:
        SpeechUnitsError: no codebook, or a codebook made for another encoder, layer or dim.
    """

    def __init__(self, encoder: Encoder, codebooks: Sequence[CodebookLike], *, dedup: bool = False,
                 layers: Sequence[int | None] | None = None):
        if not codebooks:
            raise SpeechUnitsError("UnitTokenizer needs at least one codebook")
        if layers is not None and len(layers) != len(codebooks):
            raise SpeechUnitsError(f"{len(layers)} layers given for {len(codebooks)} codebooks")
        if dedup and any(getattr(codebook, "streams", 1) > 1 for codebook in codebooks):
            raise SpeechUnitsError("multi-stream codebooks (dMel) give frame-level units: dedup is not available")
        info = encoder.info
        #: The layer each codebook quantises (a codebook without a layer only fits layer-less encoders).
        self.stream_layers: list[int] = []
        for j, codebook in enumerate(codebooks):
            layer = codebook.layer if layers is None or layers[j] is None else layers[j]
            if layer is None:
                if info.num_layers != 0:
                    raise SpeechUnitsError(f"codebook {j} ({codebook.meta.get('sha256', '?')[:12]}) does not say "
                                           f"which layer of {info.name} it quantises; re-import it with --layer")
                layer = 0
            codebook.check_compatible(info, layer)
            self.stream_layers.append(int(layer))
        self.encoder = encoder
        self.codebooks = list(codebooks)
        self.dedup = dedup
        #: Layers the encoder is asked for (sorted, unique).
        self.layers = encoder.check_layers(self.stream_layers)

    def units_from_features(self, features: dict[int, np.ndarray]) -> list[Any]:
        """Units of every stream from one utterance's features ``{layer: [frames, dim]}``
        (:class:`MultiStreamUnits` for a multi-stream codebook)."""
        streams: list[Any] = []
        for codebook, layer in zip(self.codebooks, self.stream_layers):
            if layer not in features:
                raise SpeechUnitsError(f"features lack layer {layer} needed by a codebook")
            if getattr(codebook, "streams", 1) > 1:
                tokens = codebook.assign_streams(features[layer])  # type: ignore[attr-defined]
                streams.append(MultiStreamUnits(tokens, self.frame_rate, int(codebook.k)))
                continue
            labels = np.asarray(codebook.assign(features[layer]), dtype=np.int64)
            units = Units(labels, self.frame_rate, int(codebook.k))
            streams.append(units.dedup() if self.dedup else units)
        return streams

    @property
    def frame_rate(self) -> float:
        """Frames per second of every stream (the encoder's)."""
        return float(self.encoder.info.frame_rate)

    def store_codebook_meta(self, index: int) -> dict[str, Any]:
        """Codebook ``index``'s JSON, with the layer and frame timing filled from the encoder when the
        codebook lacks them (foreign codebooks): what a unit store records."""
        info = self.encoder.info
        meta = dict(self.codebooks[index].meta)
        defaults = {"layer": self.stream_layers[index], "encoder": info.name, "encoder_identity": info.identity,
                    "sample_rate": info.sample_rate, "frame_rate": info.frame_rate, "hop_length": info.hop_length,
                    "receptive_field": info.receptive_field,
                    "frame_offset_s": info.frame_offset_s}
        for key, value in defaults.items():
            if meta.get(key) is None:
                meta[key] = value
        return meta

    def encode_streams(self, audio: Audio | np.ndarray) -> list[Units]:
        """Units of every stream for one utterance (an :class:`Audio` is resampled; an array must
        already be at the encoder's rate)."""
        return self.units_from_features(self.encoder.extract(audio, self.layers))

    def encode(self, audio: Audio | np.ndarray) -> Units:
        """Units of the first stream (refused for a multi-stream codebook: use :meth:`encode_streams`)."""
        if getattr(self.codebooks[0], "streams", 1) > 1:
            raise SpeechUnitsError("the first codebook is multi-stream (dMel): use encode_streams()")
        return self.encode_streams(audio)[0]

    def encode_batch(self, waves: Sequence[Audio | np.ndarray]) -> list[list[Units]]:
        """Streams of several utterances in one encoder call; equals :meth:`encode_streams` one by one."""
        rate = self.encoder.info.sample_rate
        arrays = [w.resample(rate).samples if isinstance(w, Audio) else np.asarray(w, dtype=np.float32) for w in waves]
        return [self.units_from_features(f) for f in self.encoder.extract_batch(arrays, self.layers)]
