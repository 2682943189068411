"""What a probe reads: frozen encoder features, a features directory, or units.

Every input gives, per utterance id, a :class:`Sample` (continuous features ``[L, T, D]`` or
unit ids ``[T, S]`` with optional durations) and an *identity*: a JSON record of what the
samples are (encoder identity and layers, or codebook sha256s, dedup and BPE). A probe stores
the identity of what it was trained on; :meth:`ProbeInput.check` refuses any other input
with a :class:`SpeechUnitsError` that names both.

Features and the same features read from a ``speechunits features`` directory have the same
identity (``kind`` "features"), so a probe trained on the fly can be evaluated on a dump and
back. Units are compared by codebook sha256 (one per stream), dedup and BPE sha256.

Memory: inputs cache every utterance they load for the life of the object (a probe trains many
epochs over the same features and the encoder runs once per utterance). Features are cached as
``cache_dtype`` (float16 by default): ``frames x layers x dim x 2`` bytes, e.g. one hour at
50 Hz of 13 layers x 768 = 3.6 GB, of MFCC (100 Hz, 1 x 39) 28 MB. For more, select fewer
layers or read a features directory (memory-mapped on disk, cached only once loaded).
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from speechunits.corpus import Corpus, Utterance, open_corpus
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

FEATURES = "features"
UNITS = "units"
#: Durations above this share one embedding (frames per deduplicated unit or BPE token).
MAX_DURATION = 32


@dataclass(frozen=True)
class Sample:
    """What a probe reads of one utterance.

    Exactly one of ``features`` (``[L, T, D]`` floating, the requested layers stacked in
    order) and ``units`` (int64 ``[T, S]``: S parallel streams) is set; ``durations`` (int64
    ``[T]``) is set for deduplicated units and BPE tokens (frames per element).
    """

    features: torch.Tensor | None = None
    units: torch.Tensor | None = None
    durations: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        """Sequence length T the probe sees."""
        data = self.features if self.features is not None else self.units
        assert data is not None
        return int(data.shape[-2] if self.features is not None else data.shape[0])

    @property
    def input_frames(self) -> int:
        """Frames before deduplication (what the audio duration is, at the input's frame rate)."""
        return int(self.durations.sum()) if self.durations is not None else self.num_frames


@dataclass
class LoadResult:
    """Samples loaded for the requested ids, and why others could not be (``{id: reason}``)."""

    samples: dict[str, Sample]
    errors: dict[str, str]


class ProbeInput(ABC):
    """A source of :class:`Sample` records with an identity (see the module docstring)."""

    #: :data:`FEATURES` or :data:`UNITS`.
    kind: str
    #: Frames per second of the samples before deduplication, and the centre time of frame 0.
    frame_rate: float
    frame_offset_s: float = 0.0

    def __init__(self) -> None:
        self._cache: dict[str, Sample] = {}
        self._errors: dict[str, str] = {}
        #: Wall-clock seconds spent computing or reading samples so far (extraction throughput).
        self.load_seconds = 0.0

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """JSON record of what the samples are (stored in ``probe.json``)."""

    @abstractmethod
    def model_spec(self) -> dict[str, Any]:
        """What a model needs to read these samples: ``{"kind", "num_layers", "dim"}`` or
        ``{"kind", "vocab_sizes", "durations"}``."""

    @abstractmethod
    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        """``(id, sample, error)`` for the ids not cached yet (None: every id the input has)."""

    @abstractmethod
    def available_ids(self) -> list[str]:
        """Every utterance id this input can give."""

    def cached_seconds(self) -> float:
        """Audio seconds of the samples cached so far."""
        return sum(sample.input_frames for sample in self._cache.values()) / self.frame_rate

    def check(self, other: dict[str, Any]) -> None:
        """Refuse to stand in for an input of identity ``other`` (SpeechUnitsError) unless equal
        in what matters (see :func:`check_identity`)."""
        check_identity(other, self.identity())

    def load(self, ids: Sequence[str] | None = None) -> LoadResult:
        """Samples of ``ids`` (default: all), each computed once and cached for this object's life.

        ``load_seconds`` grows by the time spent; ``cached_seconds()`` is the audio cached so far."""
        wanted = None if ids is None else set(ids)
        todo = None if wanted is None else wanted - set(self._cache) - set(self._errors)
        if todo is None or todo:
            started = time.perf_counter()
            for utt_id, sample, error in self._load(todo):
                if sample is None:
                    self._errors[utt_id] = error or "no sample"
                else:
                    self._cache[utt_id] = sample
            self.load_seconds += time.perf_counter() - started
        keys = self.available_ids() if wanted is None else list(ids or [])
        samples = {i: self._cache[i] for i in keys if i in self._cache}
        errors = {i: self._errors.get(i, "not in this input") for i in keys if i not in self._cache}
        return LoadResult(samples, errors)


def feature_statistics(samples: Mapping[str, Sample], ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``[L, D]`` (float32) of every layer's dimensions over all frames of
    the features of ``ids`` (accumulated in float64; a standard deviation under 1e-5 counts as 1e-5)."""
    total = squares = None
    frames = 0
    for utt in ids:
        features = samples[utt].features
        if features is None:
            raise SpeechUnitsError(f"{utt}: units have no feature statistics (standardize applies to features)")
        x = features.to(torch.float64)
        total = x.sum(1) if total is None else total + x.sum(1)
        squares = (x * x).sum(1) if squares is None else squares + (x * x).sum(1)
        frames += x.shape[1]
    if total is None or squares is None or frames == 0:
        raise SpeechUnitsError("feature statistics: no frames")
    mean = total / frames
    std = (squares / frames - mean * mean).clamp_min(0.0).sqrt().clamp_min(1e-5)
    return mean.float(), std.float()


# -- identity checks -------------------------------------------------------------------------------

#: Keys of an identity that must agree, per kind.
_MATCH = {FEATURES: ("encoder_identity", "layers", "dim"),
          UNITS: ("codebook_sha256", "dedup", "bpe_sha256", "streams")}


def describe_identity(identity: dict[str, Any]) -> str:
    """A short human form of an identity, for error messages."""
    if identity.get("kind") == FEATURES:
        return (f"features of {identity.get('encoder')} (identity {identity.get('encoder_identity')}) "
                f"layers {identity.get('layers')}")
    if identity.get("kind") == UNITS:
        shas = ", ".join(str(s)[:12] for s in identity.get("codebook_sha256") or [])
        bpe = f" + BPE {str(identity.get('bpe_sha256'))[:12]}" if identity.get("bpe_sha256") else ""
        return f"units of codebook(s) {shas}{' deduplicated' if identity.get('dedup') else ''}{bpe}"
    return repr(identity)


def identity_facts(identity: dict[str, Any]) -> dict[str, Any]:
    """The part of an identity that :func:`check_identity` compares (its kind and :data:`_MATCH` keys):
    no names or paths, so the same input read from another folder or working directory agrees."""
    return {"kind": identity.get("kind"),
            **{key: identity.get(key) for key in _MATCH.get(str(identity.get("kind")), ())}}


def check_identity(expected: dict[str, Any], got: dict[str, Any]) -> None:
    """Raise SpeechUnitsError unless ``got`` gives what ``expected`` describes."""
    if expected.get("kind") != got.get("kind"):
        raise SpeechUnitsError(f"this probe reads {describe_identity(expected)}, not {describe_identity(got)}")
    for key in _MATCH.get(str(expected.get("kind")), ()):
        if expected.get(key) != got.get(key):
            raise SpeechUnitsError(f"this probe reads {describe_identity(expected)}; the input gives "
                                   f"{describe_identity(got)} ({key} {got.get(key)!r} != {expected.get(key)!r})")


# -- continuous features ---------------------------------------------------------------------------

def _features_identity(encoder: str, encoder_identity: str, layers: list[int], dim: int,
                       frame_rate: float) -> dict[str, Any]:
    return {"kind": FEATURES, "encoder": encoder, "encoder_identity": encoder_identity, "layers": list(layers),
            "dim": int(dim), "frame_rate": float(frame_rate)}


def _stack(features: dict[int, np.ndarray], layers: list[int], dtype: torch.dtype) -> torch.Tensor:
    """``{layer: [T, D]}`` -> ``[L, T, D]`` in ``layers`` order, as ``dtype``."""
    return torch.from_numpy(np.stack([np.asarray(features[layer], dtype=np.float32) for layer in layers])).to(dtype)


def as_corpus(source: str | Path | Corpus | Iterable[Utterance]) -> Corpus:
    """A corpus from a path (:func:`open_corpus`), a corpus, or utterance records."""
    if isinstance(source, Corpus):
        return source
    if isinstance(source, (str, Path)):
        return open_corpus(source)
    utts = list(source)
    return Corpus("<utterances>", lambda: iter(utts))


def audio_corpus(paths: Sequence[str | Path]) -> Corpus:
    """A corpus of audio files (ids: file names without extension; duplicates are refused)."""
    return as_corpus([Utterance(Path(p).stem, str(p)) for p in paths])


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


# -- units -----------------------------------------------------------------------------------------

class UnitInput(ProbeInput):
    """Units from one or several unit stores (one stream each, or a multi-stream store).

    Args:
        stores: a unit store directory, or several (one stream each: DASB's multi-layer units;
            every store must hold the same frames per utterance).
        dedup: merge repeated units and keep their durations (single stream only); a
            deduplicated store read with ``dedup=False`` is expanded back to frames.
        bpe_dir: a ``speechunits bpe train`` directory: the deduplicated units become BPE tokens
            (implies ``dedup``), durations are frames per token.
        codebooks: the codebook directory of each store, in order (checked by sha256): only needed
            for embedding tables that start from the centroids (:meth:`centroid_tables`).
    """

    kind = UNITS

    def __init__(self, stores: str | Path | Sequence[str | Path], *, dedup: bool = False,
                 bpe_dir: str | Path | None = None, codebooks: Sequence[str | Path] | None = None):
        super().__init__()
        from speechunits.units.store import UnitStore

        paths = [stores] if isinstance(stores, (str, Path)) else list(stores)
        if not paths:
            raise SpeechUnitsError("--units: no unit store given")
        self.stores = [UnitStore.open(p) for p in paths]
        self.dedup = bool(dedup or bpe_dir is not None)
        rates = {store.frame_rate for store in self.stores}
        if len(rates) != 1:
            raise SpeechUnitsError(f"unit stores at different frame rates {sorted(rates)} cannot be read together")
        self.frame_rate = float(rates.pop())
        self.frame_offset_s = float(self.stores[0].meta.get("frame_offset_s") or 0.0)
        self.num_streams = sum(store.streams for store in self.stores)
        if self.dedup and self.num_streams > 1:
            raise SpeechUnitsError(f"{self.num_streams} parallel unit streams cannot be deduplicated (a frame repeats "
                                   "only when every stream does); drop --dedup/--bpe")
        self.bpe = None
        if bpe_dir is not None:
            from speechunits.units.bpe import UnitBPE

            self.bpe = UnitBPE.load(bpe_dir)
            store = self.stores[0]
            trained_on = self.bpe.meta.get("source_codebook_sha256")
            if store.vocab_size != self.bpe.unit_vocab_size or (trained_on and trained_on != store.meta.get(
                    "codebook_sha256")):
                raise SpeechUnitsError(f"{bpe_dir}: BPE trained on units of codebook {str(trained_on)[:12]} "
                                       f"(K={self.bpe.unit_vocab_size}), but {store.path} holds codebook "
                                       f"{str(store.meta.get('codebook_sha256'))[:12]} (K={store.vocab_size})")
        self.bpe_dir = None if bpe_dir is None else Path(bpe_dir)
        self.codebooks = None if not codebooks else self._check_codebooks(codebooks)
        self._centroid_tables: list[torch.Tensor] | None = None

    def _check_codebooks(self, paths: Sequence[str | Path]) -> list[Any]:
        from speechunits.quantize.codebook import Codebook

        if isinstance(paths, (str, Path)):
            paths = [paths]
        if len(paths) != len(self.stores):
            raise SpeechUnitsError(f"--codebook: {len(paths)} given for {len(self.stores)} unit stores (one each, "
                                   "in the order of --units)")
        loaded = []
        for path, store in zip(paths, self.stores):
            codebook = Codebook.load(path)
            held = store.meta.get("codebook_sha256")
            if codebook.sha256 != held:
                raise SpeechUnitsError(f"{path}: codebook {codebook.sha256[:12]}, but {store.path} holds units of "
                                       f"codebook {str(held)[:12]}")
            if store.streams != 1 or codebook.centroids.ndim != 2 or codebook.k != store.vocab_size:
                raise SpeechUnitsError(f"{path}: centroid tables need one [K, D] codebook per single-stream store "
                                       f"({store.path}: {store.streams} streams, K={store.vocab_size})")
            loaded.append(codebook)
        return loaded

    def centroid_tables(self) -> list[torch.Tensor]:
        """Per stream, ``[K, D]`` float32 codebook centroids (``[V, D]`` with BPE: each token's row is the
        mean of its units' centroids), for :meth:`UnitEmbedding.load_centroids`; computed once.

        Raises:
            SpeechUnitsError: no codebooks were given.
        """
        if self.codebooks is None:
            raise SpeechUnitsError("embedding tables from centroids need the codebook of every unit store "
                                   "(--codebook DIR, in the order of --units)")
        if self._centroid_tables is None:
            tables = [torch.as_tensor(np.asarray(cb.centroids, dtype=np.float32)) for cb in self.codebooks]
            if self.bpe is not None:
                units = tables[0]
                tables = [torch.stack([units[torch.as_tensor(self.bpe.decode([token]))].mean(0)
                                       for token in range(self.bpe.vocab_size)])]
            self._centroid_tables = tables
        return self._centroid_tables

    def _stream_vocab_sizes(self) -> list[int]:
        return [store.vocab_size for store in self.stores for _ in range(store.streams)]

    def identity(self) -> dict[str, Any]:
        codebooks = [store.meta.get("codebook", {}) for store in self.stores]
        return {"kind": UNITS,
                "codebook_sha256": [store.meta.get("codebook_sha256") for store in self.stores],
                "streams": self.num_streams, "vocab_sizes": self._stream_vocab_sizes(), "dedup": self.dedup,
                "bpe_sha256": None if self.bpe is None else self.bpe.sha256,
                "frame_rate": self.frame_rate,
                "encoder": [c.get("encoder") for c in codebooks], "layer": [c.get("layer") for c in codebooks],
                "stores": [str(store.path) for store in self.stores],
                "bpe_dir": None if self.bpe_dir is None else str(self.bpe_dir)}

    def model_spec(self) -> dict[str, Any]:
        sizes = [self.bpe.vocab_size] if self.bpe is not None else self._stream_vocab_sizes()
        return {"kind": UNITS, "vocab_sizes": sizes, "durations": self.dedup}

    def available_ids(self) -> list[str]:
        return self.stores[0].ids()

    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        per_store: list[dict[str, Any]] = []
        for store in self.stores:
            rows: dict[str, Any] = {}
            if store.streams > 1:
                for utt_id, multi, _ in store.iter_multistream():
                    if ids is None or utt_id in ids:
                        rows[utt_id] = multi.ids
            else:
                for utt_id, units, _ in store.iter_rows():
                    if ids is None or utt_id in ids:
                        rows[utt_id] = units
            per_store.append(rows)
        wanted = set(per_store[0]) if ids is None else ids
        for utt_id in sorted(wanted):
            missing = [str(s.path) for s, rows in zip(self.stores, per_store) if utt_id not in rows]
            if missing:
                yield utt_id, None, f"not in unit store {', '.join(missing)}"
                continue
            yield (utt_id, *self._sample(utt_id, [rows[utt_id] for rows in per_store]))

    def _sample(self, utt_id: str, streams: list[Any]) -> tuple[Sample | None, str | None]:
        try:
            return unit_sample(streams, dedup=self.dedup, bpe=self.bpe), None
        except SpeechUnitsError as exc:
            return None, f"{utt_id}: {exc}"


def unit_sample(streams: Sequence[Any], *, dedup: bool = False, bpe: Any = None) -> Sample:
    """A :class:`Sample` from one utterance's streams (:class:`Units`, :class:`MultiStreamUnits` or
    ``[T, S]`` arrays, one per store): deduplicated (one stream) and BPE-tokenised when asked."""
    if dedup or bpe is not None:
        if len(streams) != 1 or getattr(streams[0], "num_streams", None) is not None:
            raise SpeechUnitsError("only a single unit stream can be deduplicated")
        units = streams[0].dedup()
        ids, durations = units.ids, units.durations
        if bpe is not None:
            tokens = bpe.encode(ids)
            durations = bpe.token_durations(tokens, durations)
            ids = tokens
        return Sample(units=torch.from_numpy(np.asarray(ids, dtype=np.int64)).reshape(-1, 1),
                      durations=torch.from_numpy(np.asarray(durations, dtype=np.int64)))
    columns = [_frame_ids(s) for s in streams]
    frames = {c.shape[0] for c in columns}
    if len(frames) != 1:
        raise SpeechUnitsError(f"the unit streams hold different frame counts {sorted(frames)}")
    return Sample(units=torch.from_numpy(np.concatenate(columns, axis=1)))


def _frame_ids(stream: Any) -> np.ndarray:
    """int64 ``[T, S]`` from :class:`Units` (expanded), :class:`MultiStreamUnits` or an array."""
    if isinstance(stream, np.ndarray):
        return np.asarray(stream, dtype=np.int64).reshape(stream.shape[0], -1)
    if getattr(stream, "num_streams", None) is not None:  # MultiStreamUnits
        return np.asarray(stream.ids, dtype=np.int64)
    return stream.expand().ids.reshape(-1, 1)
