"""Continuous-feature probe inputs: features in memory, computed on the fly, or read from a
``speechunits features`` directory (all with the identity of the encoder and layers).

Memory: see :mod:`speechunits.probe.inputs` (every loaded utterance is cached, as ``cache_dtype``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from speechunits.corpus import Corpus, Utterance
from speechunits.errors import SpeechUnitsError
from speechunits.probe.inputs import FEATURES, ProbeInput, Sample, as_corpus


def _features_identity(encoder: str, encoder_identity: str, layers: list[int], dim: int,
                       frame_rate: float) -> dict[str, Any]:
    return {"kind": FEATURES, "encoder": encoder, "encoder_identity": encoder_identity, "layers": list(layers),
            "dim": int(dim), "frame_rate": float(frame_rate)}


def _stack(features: dict[int, np.ndarray], layers: list[int], dtype: torch.dtype) -> torch.Tensor:
    """``{layer: [T, D]}`` -> ``[L, T, D]`` in ``layers`` order, as ``dtype``."""
    return torch.from_numpy(np.stack([np.asarray(features[layer], dtype=np.float32) for layer in layers])).to(dtype)


class ArrayInput(ProbeInput):
    """Features already in memory: ``{utt: float [L, T, D]}`` (or ``[T, D]`` for one layer).

    For scripts and tests that compute features themselves; ``encoder``, ``encoder_identity``
    and ``layers`` make up the identity, as for an encoder's features.
    """

    kind = FEATURES

    def __init__(self, features: dict[str, np.ndarray], *, encoder: str, encoder_identity: str,
                 layers: Sequence[int], frame_rate: float, frame_offset_s: float = 0.0,
                 cache_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.layers = [int(layer) for layer in layers]
        self.encoder, self.encoder_identity = encoder, encoder_identity
        self.frame_rate, self.frame_offset_s = float(frame_rate), float(frame_offset_s)
        self.features = {}
        for utt_id, value in features.items():
            array = np.asarray(value, dtype=np.float32)
            array = array[None] if array.ndim == 2 else array
            if array.ndim != 3 or array.shape[0] != len(self.layers):
                raise SpeechUnitsError(f"{utt_id}: features of shape {array.shape} are not [{len(self.layers)}, T, D]")
            self.features[utt_id] = torch.from_numpy(array).to(cache_dtype)
        dims = {f.shape[2] for f in self.features.values()}
        if len(dims) > 1:
            raise SpeechUnitsError(f"features of different dimensions {sorted(dims)}")
        self.dim = dims.pop() if dims else 0

    def identity(self) -> dict[str, Any]:
        return _features_identity(self.encoder, self.encoder_identity, self.layers, self.dim, self.frame_rate)

    def model_spec(self) -> dict[str, Any]:
        return {"kind": FEATURES, "num_layers": len(self.layers), "dim": int(self.dim)}

    def available_ids(self) -> list[str]:
        return list(self.features)

    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        for utt_id in (self.features if ids is None else ids):
            if utt_id in self.features:
                yield utt_id, Sample(features=self.features[utt_id]), None
            else:
                yield utt_id, None, "not in the given features"


class EncoderInput(ProbeInput):
    """Frozen features of ``encoder_name`` computed on the fly from ``corpus``.

    Args:
        encoder_name: anything :func:`speechunits.encoders.load_encoder` takes (a model directory,
            hub id, ``"mfcc"``, ``"logmel"``).
        layers: layer numbers (None: all, 0..num_layers); MFCC/log-mel have layer 0 only.
        corpus: the audio (a path for :func:`open_corpus`, a :class:`Corpus` or utterances).
        device, dtype: of the encoder. cache_dtype: of the in-memory cache (see module docstring).
        encoder: an already loaded encoder (instead of loading ``encoder_name``).
    """

    kind = FEATURES

    def __init__(self, encoder_name: str, layers: Sequence[int] | None = None, *,
                 corpus: str | Path | Corpus | Iterable[Utterance] | None = None, device: str = "auto",
                 dtype: str = "fp32", cache_dtype: torch.dtype = torch.float16, encoder: Any = None,
                 max_batch_seconds: float | None = None, quiet: bool = False):
        super().__init__()
        from speechunits.encoders import load_encoder

        self.encoder = encoder if encoder is not None else load_encoder(encoder_name, device=device, dtype=dtype)
        info = self.encoder.info
        self.layers = self.encoder.check_layers(list(range(info.num_layers + 1)) if layers is None else layers)
        self.corpus = None if corpus is None else as_corpus(corpus)
        self.cache_dtype = cache_dtype
        self.max_batch_seconds = max_batch_seconds
        self.quiet = quiet
        self.frame_rate = float(info.frame_rate)
        self.frame_offset_s = float(info.frame_offset_s)

    def identity(self) -> dict[str, Any]:
        info = self.encoder.info
        return _features_identity(info.name, info.identity, self.layers, info.dim, info.frame_rate)

    def model_spec(self) -> dict[str, Any]:
        return {"kind": FEATURES, "num_layers": len(self.layers), "dim": int(self.encoder.info.dim)}

    def available_ids(self) -> list[str]:
        return [] if self.corpus is None else [utt.id for utt in self.corpus]

    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        from speechunits.features import iter_features

        if self.corpus is None:
            raise SpeechUnitsError(f"{self.encoder.info.name}: no corpus to compute features of")
        utts = [utt for utt in self.corpus if ids is None or utt.id in ids]
        options = {} if self.max_batch_seconds is None else {"max_batch_seconds": self.max_batch_seconds}
        for item in iter_features(self.encoder, utts, self.layers, quiet=self.quiet, **options):
            if item.features is None:
                yield item.utt.id, None, item.error
            else:
                yield item.utt.id, Sample(features=_stack(item.features, self.layers, self.cache_dtype)), None

    def features_of(self, waves: Sequence[np.ndarray]) -> list[Sample]:
        """Samples of waveforms already at the encoder's rate (not cached)."""
        out = self.encoder.extract_batch([np.asarray(w, dtype=np.float32) for w in waves], self.layers)
        return [Sample(features=_stack(f, self.layers, self.cache_dtype)) for f in out]


class FeaturesDirInput(ProbeInput):
    """Features from a ``speechunits features`` directory (``features.json`` gives the identity).

    Args:
        path: the directory. layers: which of its layers (None: all it holds).
    """

    kind = FEATURES

    def __init__(self, path: str | Path, layers: Sequence[int] | None = None, *,
                 cache_dtype: torch.dtype = torch.float16):
        super().__init__()
        from speechunits.features import read_features_meta

        self.path = Path(path)
        self.meta = read_features_meta(self.path)
        held = [int(layer) for layer in self.meta.get("layers", [])]
        self.layers = sorted({int(layer) for layer in layers}) if layers is not None else held
        missing = [layer for layer in self.layers if layer not in held]
        if missing or not self.layers:
            raise SpeechUnitsError(f"{self.path}: holds layers {held}, not {missing or self.layers}")
        self.cache_dtype = cache_dtype
        self.frame_rate = float(self.meta["frame_rate"])
        offset = self.meta.get("frame_offset_s")
        if offset is None and self.meta.get("receptive_field") and self.meta.get("sample_rate"):
            offset = self.meta["receptive_field"] / (2.0 * self.meta["sample_rate"])
        self.frame_offset_s = float(offset or 0.0)

    def identity(self) -> dict[str, Any]:
        return _features_identity(self.meta.get("encoder"), self.meta.get("encoder_identity"), self.layers,
                                  self.meta["dim"], self.meta["frame_rate"])

    def model_spec(self) -> dict[str, Any]:
        return {"kind": FEATURES, "num_layers": len(self.layers), "dim": int(self.meta["dim"])}

    def available_ids(self) -> list[str]:
        return list(self.meta.get("ids", []))

    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        from speechunits.features import read_features_dir

        per_layer: dict[str, list[np.ndarray]] = {}
        for layer in self.layers:
            for utt_id, feats in read_features_dir(self.path, layer):
                if ids is None or utt_id in ids:
                    per_layer.setdefault(utt_id, []).append(np.asarray(feats, dtype=np.float32))
        for utt_id, stacked in per_layer.items():
            yield utt_id, Sample(features=torch.from_numpy(np.stack(stacked)).to(self.cache_dtype)), None
        for utt_id in (ids or set()) - set(per_layer):
            yield utt_id, None, f"not in features directory {self.path}"
