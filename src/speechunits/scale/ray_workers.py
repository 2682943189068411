"""What runs inside Ray: the decode task and the encoder actors.

Everything here is plain Python on numpy batches (Ray Data's ``batch_format="numpy"``:
``{column: ndarray}``), imported by Ray workers by module path; this module itself never
imports ray, so it is also exercised without a cluster.

Row columns between stages (one row per utterance, ``idx`` = position in the job's plan):

* plan: ``idx`` int64, ``id`` str, ``path`` str (+ ``raw_format`` str with ``--raw-format``)
* decoded: plan + ``samples`` (float32 bytes at the encoder rate, empty on error),
  ``error`` str (empty when fine)
* results: ``idx``, ``error``, ``duration_s``, ``num_samples`` + the worker's payload columns
  (see :class:`FeaturesWorker`, :class:`UnitsWorker`, :class:`SampleWorker`)
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from speechunits.audio import Audio
from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array (bytes/str values must not become a fixed-width numpy dtype)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def decode_batch(batch: Batch, *, sample_rate: int, min_samples: int, channel: int | None) -> Batch:
    """Ray task: load + resample every utterance of ``batch`` (same rules as the local loader)."""
    from speechunits.audio import RawFormat
    from speechunits.features.loading import load_one

    samples, errors = [], []
    raw_formats = batch.get("raw_format")  # present when the corpus was opened with --raw-format
    for i, (utt_id, path) in enumerate(zip(batch["id"], batch["path"])):
        raw_format = RawFormat.parse(str(raw_formats[i])) if raw_formats is not None else None
        item = load_one(Utterance(str(utt_id), str(path), raw_format=raw_format), sample_rate, min_samples, channel)
        samples.append(b"" if item.audio is None else item.audio.samples.tobytes())
        errors.append(item.error or "")
    out = dict(batch)  # extra plan columns (e.g. the frames a sampler wants) pass through
    out.update({"idx": np.asarray(batch["idx"], dtype=np.int64), "samples": _objects(samples),
                "error": _objects(errors)})
    return out


def count_batch(batch: Batch, *, sample_rate: int, min_samples: int, channel: int | None) -> Batch:
    """Ray task: samples at the encoder rate of every utterance (0 and ``error`` when unusable)."""
    decoded = decode_batch(batch, sample_rate=sample_rate, min_samples=min_samples, channel=channel)
    return {"idx": decoded["idx"], "error": decoded["error"],
            "num_samples": np.asarray([len(raw) // 4 for raw in decoded["samples"]], dtype=np.int64)}


class EncoderWorker:
    """Base of the actors: loads the encoder once, turns decoded rows into feature items.

    Args:
        encoder_name: what :func:`speechunits.encoders.load_encoder` takes.
        encoder_identity: the identity the driver expects (refuses a different model, e.g.
            a hub model that changed between the driver's and the worker's download); ``None``
            skips the check.
        device, dtype: encoder placement and precision.
        layers: layers to extract.
        threads: torch intra-op threads (the actor's CPU share).
        extract_kwargs: passed to :func:`speechunits.features.iter_features`
            (``max_batch_seconds``, ``chunk_seconds`` ...).
    """

    def __init__(self, encoder_name: str, encoder_identity: str | None, device: str, dtype: str,
                 layers: Sequence[int], threads: int = 1, extract_kwargs: dict[str, Any] | None = None):
        import torch

        from speechunits.encoders import load_encoder

        torch.set_num_threads(max(1, int(threads)))
        self.encoder = load_encoder(encoder_name, device=device, dtype=dtype)
        if encoder_identity is not None and self.encoder.info.identity != encoder_identity:
            raise SpeechUnitsError(f"{encoder_name}: the worker loaded a model with identity "
                                   f"{self.encoder.info.identity}, the driver expects {encoder_identity}")
        self.layers = self.encoder.check_layers(layers)
        self.extract_kwargs = dict(extract_kwargs or {})

    def feature_items(self, batch: Batch) -> list[Any]:
        """:class:`~speechunits.features.FeatureItem` of every row, in row order (errors kept)."""
        from speechunits.features import LoadedAudio, iter_features

        rate = self.encoder.info.sample_rate
        items = []
        for utt_id, path, raw, error in zip(batch["id"], batch["path"], batch["samples"], batch["error"]):
            utt = Utterance(str(utt_id), str(path))
            if error:
                items.append(LoadedAudio(utt, None, str(error)))
            else:
                audio = Audio(np.frombuffer(raw, dtype=np.float32).copy(), rate, str(path))
                items.append(LoadedAudio(utt, audio, None))
        return list(iter_features(self.encoder, [i.utt for i in items], self.layers, audio_items=items,
                                  on_error="skip", quiet=True, **self.extract_kwargs))

    @staticmethod
    def common_columns(batch: Batch, items: list[Any]) -> Batch:
        return {
            "idx": np.asarray(batch["idx"], dtype=np.int64),
            "error": _objects([item.error or "" for item in items]),
            "duration_s": np.asarray([item.duration_s for item in items], dtype=np.float64),
            "num_samples": np.asarray([item.num_samples for item in items], dtype=np.int64),
        }


class FeaturesWorker(EncoderWorker):
    """Actor for ``features``: columns ``f{L}`` (float32 ``[frames, dim]`` bytes) per layer."""

    def __call__(self, batch: Batch) -> Batch:
        items = self.feature_items(batch)
        out = self.common_columns(batch, items)
        for layer in self.layers:
            out[f"f{layer}"] = _objects([b"" if it.features is None else
                                         np.ascontiguousarray(it.features[layer], dtype=np.float32).tobytes()
                                         for it in items])
        return out


class UnitsWorker(EncoderWorker):
    """Actor for ``encode``: columns ``u{j}`` (int32 ids bytes) and ``d{j}`` (int32 durations
    bytes, empty without dedup) per codebook stream ``j``; units come from the same
    :meth:`UnitTokenizer.units_from_features` the local ``encode`` uses.

    ``codebooks`` are the loaded :class:`~speechunits.quantize.Codebook` objects (shipped by
    Ray from the driver, so workers need no access to the driver's codebook directories) and
    ``stream_layers`` the driver tokenizer's layer per stream."""

    def __init__(self, encoder_name: str, encoder_identity: str | None, device: str, dtype: str,
                 codebooks: Sequence[Any], stream_layers: Sequence[int], dedup: bool, threads: int = 1,
                 extract_kwargs: dict[str, Any] | None = None):
        from speechunits.units.tokenizer import UnitTokenizer

        super().__init__(encoder_name, encoder_identity, device, dtype, sorted(set(stream_layers)),
                         threads, extract_kwargs)
        self.tokenizer = UnitTokenizer(self.encoder, codebooks, dedup=dedup, layers=list(stream_layers))
        self.layers = self.tokenizer.layers

    def __call__(self, batch: Batch) -> Batch:
        items = self.feature_items(batch)
        out = self.common_columns(batch, items)
        streams = [self.tokenizer.units_from_features(it.features) if it.features is not None else None
                   for it in items]
        for j in range(len(self.tokenizer.codebooks)):
            out[f"u{j}"] = _objects([b"" if s is None else s[j].ids.astype(np.int32).tobytes() for s in streams])
            out[f"d{j}"] = _objects([b"" if s is None or s[j].durations is None else
                                     s[j].durations.astype(np.int32).tobytes() for s in streams])
        return out


def int32s(raw: bytes) -> np.ndarray:
    """int64 array from int32 bytes."""
    return np.frombuffer(raw, dtype=np.int32).astype(np.int64)


def float32_frames(raw: bytes, dim: int) -> np.ndarray:
    """float32 ``[frames, dim]`` from bytes (a writable copy)."""
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, dim).copy()


class SampleWorker(EncoderWorker):
    """Actor for ``fit``: returns only the frames the driver selected.

    Plan columns ``select`` (int64 frame indices, bytes) and ``frames`` (the frame count the
    driver expects); output column ``x`` (float32 ``[len(select), dim]`` bytes). A frame count
    that differs from the expectation becomes an error row.
    """

    def __init__(self, encoder_name: str, encoder_identity: str | None, device: str, dtype: str, layer: int,
                 threads: int = 1, extract_kwargs: dict[str, Any] | None = None):
        super().__init__(encoder_name, encoder_identity, device, dtype, [layer], threads, extract_kwargs)
        self.layer = int(layer)

    def __call__(self, batch: Batch) -> Batch:
        items = self.feature_items(batch)
        errors, frames = [], []
        for item, raw, expected in zip(items, batch["select"], batch["frames"]):
            if item.features is None:
                errors.append(item.error or "unknown error")
                frames.append(b"")
                continue
            feats = item.features[self.layer]
            if feats.shape[0] != int(expected):
                errors.append(f"{item.utt.path}: {feats.shape[0]} frames, expected {int(expected)}")
                frames.append(b"")
                continue
            errors.append("")
            frames.append(np.ascontiguousarray(feats[np.frombuffer(raw, dtype=np.int64)], dtype=np.float32).tobytes())
        out = self.common_columns(batch, items)
        out["error"] = _objects(errors)
        out["x"] = _objects(frames)
        return out
