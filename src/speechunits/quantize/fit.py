"""Fit a codebook from a corpus (features streamed, never dumped) or a features directory.

Frames are sampled with *bottom-k* reservoir sampling: every frame of the stream gets a
uniform random key from one generator seeded with ``seed`` (drawn utterance by utterance,
in corpus order), and the ``max_frames`` frames with the smallest keys are kept. That is a
uniform sample without replacement, the same for a given seed and corpus whatever the
batching, and memory stays at about ``1.25 x max_frames x D`` floats however long the corpus.

One sampler (:func:`sample_stream`) and one fit path (:func:`fit_sample`) serve every caller:
``speechunits fit`` (local or Ray), the layer x K sweep and the demo. Frames may come from a
corpus (:func:`corpus_source`), a features directory (:func:`features_dir_source`) or memory
(:func:`memory_source`).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import Codebook
from speechunits.quantize.options import DEFAULT_MAX_FRAMES

if TYPE_CHECKING:
    from speechunits.quantize.fit_checkpoint import SampleCheckpoint, SampleProgress

log = logging.getLogger(__name__)

#: Pending candidates are merged into the reservoir when they reach this share of it.
PENDING_FRACTION = 0.25


class FrameReservoir:
    """Uniform sample of at most ``capacity`` rows from a stream of ``[n_i, D]`` blocks.

    Deterministic for ``seed`` and the sequence of block lengths (keys come from one
    ``numpy.random.Generator`` in stream order).
    """

    def __init__(self, capacity: int, seed: int):
        if capacity < 1:
            raise SpeechUnitsError(f"--max-frames must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.dim: int | None = None
        self._x: np.ndarray | None = None  # [capacity, D]
        self._key = np.full(self.capacity, np.inf)
        self._pos = np.full(self.capacity, -1, dtype=np.int64)
        self._filled = 0
        self._pend_x: list[np.ndarray] = []
        self._pend_key: list[np.ndarray] = []
        self._pend_pos: list[np.ndarray] = []
        self._pending = 0
        self._threshold = np.inf

    def add(self, block: np.ndarray, source: str = "features") -> None:
        """Offer the rows of ``block`` ``[n, D]`` to the sample."""
        if block.ndim != 2:
            raise SpeechUnitsError(f"{source}: expected [frames, dim] features, got shape {block.shape}")
        n = block.shape[0]
        if self.dim is None:
            self.dim = int(block.shape[1])
            self._x = np.empty((self.capacity, self.dim), dtype=np.float32)
        elif block.shape[1] != self.dim:
            raise SpeechUnitsError(f"{source}: feature dim {block.shape[1]} differs from earlier frames ({self.dim})")
        if n == 0:
            return
        keys = self.rng.random(n)
        pos = np.arange(self.seen, self.seen + n, dtype=np.int64)
        self.seen += n
        take = keys < self._threshold
        if not take.any():
            return
        rows = np.asarray(block[take], dtype=np.float32)
        if not np.isfinite(rows).all():
            raise SpeechUnitsError(f"{source}: features contain NaN or Inf")
        self._pend_x.append(rows)
        self._pend_key.append(keys[take])
        self._pend_pos.append(pos[take])
        self._pending += rows.shape[0]
        if self._pending >= max(1, int(PENDING_FRACTION * self.capacity)):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        assert self._x is not None
        cand_x = np.concatenate(self._pend_x)
        cand_key = np.concatenate(self._pend_key)
        cand_pos = np.concatenate(self._pend_pos)
        self._pend_x, self._pend_key, self._pend_pos, self._pending = [], [], [], 0
        free = self.capacity - self._filled
        if free:  # fill empty slots with the smallest-key candidates first
            order = np.argsort(cand_key, kind="stable")
            first, cand_rest = order[:free], order[free:]
            sl = slice(self._filled, self._filled + first.size)
            self._x[sl], self._key[sl], self._pos[sl] = cand_x[first], cand_key[first], cand_pos[first]
            self._filled += first.size
            cand_x, cand_key, cand_pos = cand_x[cand_rest], cand_key[cand_rest], cand_pos[cand_rest]
        if cand_key.size:
            all_key = np.concatenate([self._key, cand_key])
            keep = np.argpartition(all_key, self.capacity - 1)[: self.capacity]
            incoming = np.sort(keep[keep >= self.capacity]) - self.capacity
            kept_old = np.zeros(self.capacity, dtype=bool)
            kept_old[keep[keep < self.capacity]] = True
            slots = np.flatnonzero(~kept_old)
            self._x[slots] = cand_x[incoming]
            self._key[slots] = cand_key[incoming]
            self._pos[slots] = cand_pos[incoming]
        if self._filled == self.capacity:
            self._threshold = float(self._key.max())

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Everything the sample's future depends on: the kept rows ``x [filled, D]``, their keys
        and stream positions, and ``{capacity, seen, dim, filled, threshold, rng}`` (the
        generator's bit state). :meth:`from_state` of it continues exactly where this one is."""
        self._merge()
        n = self._filled
        arrays = {"x": np.array(self._x[:n]) if self._x is not None else np.empty((0, 0), np.float32),
                  "key": self._key[:n].copy(), "pos": self._pos[:n].copy()}
        info = {"capacity": self.capacity, "seen": int(self.seen), "dim": self.dim, "filled": n,
                "threshold": float(self._threshold), "rng": self.rng.bit_generator.state}
        return arrays, info

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> "FrameReservoir":
        """The reservoir :meth:`state` described."""
        reservoir = cls(int(info["capacity"]), 0)
        reservoir.rng.bit_generator.state = info["rng"]
        reservoir.seen = int(info["seen"])
        n = int(info["filled"])
        if info["dim"] is not None:
            reservoir.dim = int(info["dim"])
            reservoir._x = np.empty((reservoir.capacity, reservoir.dim), dtype=np.float32)
            reservoir._x[:n] = arrays["x"]
        reservoir._key[:n] = arrays["key"]
        reservoir._pos[:n] = arrays["pos"]
        reservoir._filled = n
        reservoir._threshold = float(info["threshold"])
        return reservoir

    def sample(self) -> np.ndarray:
        """The sampled rows ``[min(seen, capacity), D]`` float32, in stream order."""
        self._merge()
        if self._x is None or self._filled == 0:
            return np.empty((0, self.dim or 0), dtype=np.float32)
        x = self._x[: self._filled]
        order = np.argsort(self._pos[: self._filled], kind="stable")
        _permute_rows_in_place(x, order)
        self._pos[: self._filled] = self._pos[: self._filled][order]
        self._key[: self._filled] = self._key[: self._filled][order]
        return x


def _permute_rows_in_place(x: np.ndarray, order: np.ndarray) -> None:
    """``x[:] = x[order]`` with one spare row of memory (cycle following)."""
    done = order == np.arange(order.size)
    for start in np.flatnonzero(~done):
        if done[start]:
            continue
        spare = x[start].copy()
        i = start
        while True:
            j = order[i]
            done[i] = True
            if j == start:
                x[i] = spare
                break
            x[i] = x[j]
            i = j


def sample_items(items: Iterable[Any], layer: int, max_frames: int, seed: int, *,
                 checkpoint: SampleCheckpoint | None = None) -> tuple[np.ndarray, int, SampleProgress]:
    """The seeded uniform sample of ``layer``'s frames of :class:`~speechunits.features.FeatureItem`
    records (bad items are logged and counted); returns ``(sample, frames_seen, progress)``.

    With a :class:`~speechunits.quantize.fit_checkpoint.SampleCheckpoint` the pass resumes from
    its last snapshot (``items`` must then start after the ``progress.consumed`` utterances
    :meth:`~SampleCheckpoint.load` reported) and snapshots itself every ``shard_seconds``, also
    from a background thread while ``items`` is stalled; the sample equals an uninterrupted pass's.
    """
    from speechunits.quantize.fit_checkpoint import SampleProgress
    from speechunits.timed_parts import TimedFlusher

    if checkpoint is None:
        reservoir, progress = FrameReservoir(max_frames, seed), SampleProgress()
        updating: Any = contextlib.nullcontext
        flusher: Any = contextlib.nullcontext()
    else:
        reservoir, progress = checkpoint.reservoir, checkpoint.progress
        if reservoir is None:
            reservoir, progress = checkpoint.load(max_frames, seed)
        updating = checkpoint.updating
        seconds = checkpoint.shard_seconds
        flusher = TimedFlusher.for_seconds([checkpoint], seconds) if seconds else contextlib.nullcontext()
    with flusher:
        try:
            for item in items:
                with updating():
                    if item.features is None:
                        progress.skipped.append((str(item.utt.path), str(item.error)))
                        log.warning("%s: skipped (%s)", item.utt.path, item.error)
                    else:
                        reservoir.add(item.features[layer], str(item.utt.path))
                        progress.used += 1
                    progress.consumed += 1
        except BaseException:  # Ctrl-C, SIGTERM, an error: keep what was consumed
            if checkpoint is not None:
                checkpoint.save()
            raise
    if checkpoint is not None:  # the pass is complete: its last state is kept until the codebook is saved
        checkpoint.save()
    if progress.skipped:
        log.warning("%d utterance(s) skipped", len(progress.skipped))
    return reservoir.sample(), reservoir.seen, progress


def sample_stream(blocks: Iterable[tuple[str, np.ndarray]], max_frames: int, seed: int) -> tuple[np.ndarray, int]:
    """Uniform sample of ``max_frames`` rows from ``(source, [n, D])`` blocks; returns ``(sample, frames_seen)``."""
    reservoir = FrameReservoir(max_frames, seed)
    for source, block in blocks:
        reservoir.add(block, source)
    return reservoir.sample(), reservoir.seen


@dataclass
class FeatureSource:
    """Where training frames come from and the encoder facts that go into the codebook.

    Attributes:
        blocks: ``(source name, float32 [n, D])`` per utterance, consumed once.
        encoder_info: the :class:`~speechunits.encoders.base.EncoderInfo` of the frames.
        layer: the layer the frames come from.
        used: utterances that gave frames so far (counted as ``blocks`` is consumed).
        skipped: ``(path, reason)`` of the utterances skipped as bad input so far.
    """

    blocks: Iterator[tuple[str, np.ndarray]]
    encoder_info: Any
    layer: int
    used: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def all_failed(self) -> bool:
        """True when utterances were skipped and none gave frames (after ``blocks`` is consumed)."""
        return bool(self.skipped) and self.used == 0


def choose_layer(info: Any, layer: int | None, option: str = "--layer") -> int:
    """``layer`` checked against ``info``; ``None`` picks the only layer of a spectral encoder."""
    if layer is not None:
        if not 0 <= int(layer) <= int(info.num_layers):
            raise SpeechUnitsError(f"{option} {layer}: out of range 0..{info.num_layers} for {info.name}")
        return int(layer)
    if int(info.num_layers) == 0:
        return 0
    raise SpeechUnitsError(f"{option} is required for {info.name} (layers 0..{info.num_layers})")


def items_source(items: Iterable[Any], encoder_info: Any, layer: int) -> FeatureSource:
    """Frames of ``layer`` from :class:`~speechunits.features.FeatureItem` records (any backend);
    items with an error are logged and counted in ``skipped``."""
    source = FeatureSource(iter(()), encoder_info, int(layer))

    def blocks() -> Iterator[tuple[str, np.ndarray]]:
        for item in items:
            if item.features is None:
                source.skipped.append((str(item.utt.path), str(item.error)))
                log.warning("%s: skipped (%s)", item.utt.path, item.error)
                continue
            source.used += 1
            yield str(item.utt.path), item.features[source.layer]
        if source.skipped:
            log.warning("%d utterance(s) skipped", len(source.skipped))

    source.blocks = blocks()
    return source


def corpus_source(input_path: str | Path, encoder: Any, layer: int | None, *, on_error: str = "skip",
                  quiet: bool = False, shard: str | None = None, raw_format: Any = None) -> FeatureSource:
    """Features of ``layer`` streamed from ``iter_features`` over a corpus (serial loader; ``raw_format``:
    see ``open_corpus``)."""
    from speechunits.corpus import open_corpus
    from speechunits.features import iter_features

    info = encoder.info
    chosen = choose_layer(info, layer)
    corpus = open_corpus(str(input_path), shard=shard, raw_format=raw_format).require_utterances()
    return items_source(iter_features(encoder, corpus, [chosen], on_error=on_error, quiet=quiet), info, chosen)


def memory_source(features: Mapping[str, np.ndarray], encoder_info: Any, layer: int) -> FeatureSource:
    """Frames held in memory, ``{utt_id: float32 [n, D]}``, in the mapping's order."""
    source = FeatureSource(iter(()), encoder_info, int(layer), used=len(features))
    source.blocks = iter(features.items())
    return source


def features_dir_source(features_dir: str | Path, layer: int | None, encoder: str | None = None) -> FeatureSource:
    """Frames of a ``features`` output dir (or a fairseq ``.npy``/``.len`` dump with ``encoder``)."""
    from speechunits.encoders.base import EncoderInfo
    from speechunits.features import read_features_dir

    root = Path(features_dir)
    if not root.is_dir():
        raise SpeechUnitsError(f"--from-features {root}: not a directory")
    meta_path = root / "features.json"
    info: Any
    if meta_path.is_file():
        from speechunits.features import read_features_meta

        meta = read_features_meta(root)
        try:
            info = EncoderInfo(name=meta["encoder"], sample_rate=int(meta["sample_rate"]),
                               hop_length=int(meta["hop_length"]), receptive_field=int(meta["receptive_field"]),
                               num_layers=max(int(x) for x in meta["layers"]), dim=int(meta["dim"]),
                               identity=meta.get("encoder_identity") or "")
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeechUnitsError(f"{meta_path}: missing or bad field ({exc})") from None
        layers = [int(x) for x in meta["layers"]]
        if encoder is not None:
            from speechunits.encoders import load_encoder

            real = load_encoder(encoder, device="cpu").info
            if real.identity != info.identity:
                raise SpeechUnitsError(f"--from-features {root}: made with {info.name} (identity {info.identity}), "
                                       f"not --encoder {encoder} (identity {real.identity})")
        if layer is None:
            if len(layers) != 1:
                raise SpeechUnitsError(f"--from-features {root}: holds layers {layers}; pass --layer")
            layer = layers[0]
        if int(layer) not in layers:
            raise SpeechUnitsError(f"--from-features {root}: no layer {layer} (has {layers})")
    else:
        if encoder is None:
            raise SpeechUnitsError(f"--from-features {root}: no features.json; pass --encoder to describe the features")
        from speechunits.encoders import load_encoder

        info = load_encoder(encoder, device="cpu").info
        if layer is None:
            found = sorted(int(p.stem[5:]) for p in root.glob("layer*.npy") if p.stem[5:].isdigit())
            if len(found) != 1:
                raise SpeechUnitsError(f"--from-features {root}: pass --layer (found layers {found})")
            layer = found[0]
    chosen = int(layer)
    rows = read_features_dir(root, chosen)

    def blocks() -> Iterator[tuple[str, np.ndarray]]:
        for utt_id, feats in rows:
            if feats.shape[1] != info.dim:
                raise SpeechUnitsError(f"--from-features {root}: {utt_id} has dim {feats.shape[1]}, encoder dim {info.dim}")
            yield f"{root}:{utt_id}", feats

    return FeatureSource(blocks(), info, chosen)


def check_fit_options(k: int, max_frames: int) -> None:
    """Raise :class:`SpeechUnitsError` unless ``1 <= k <= max_frames``."""
    if k < 1:
        raise SpeechUnitsError(f"--k must be >= 1, got {k}")
    if max_frames < k:
        raise SpeechUnitsError(f"--max-frames {max_frames} is smaller than --k {k}")


def fit_sample(sample: np.ndarray, k: int, encoder_info: Any, layer: int | None, *, seed: int = 0,
               init: str = "kmeans++", iters: int = 20, device: str = "auto", precision: str = "auto") -> Codebook:
    """k-means on the sampled frames ``sample [N, D]``; the codebook (not saved).

    ``precision`` is the assignment matmul precision of :func:`~speechunits.quantize.kmeans.fit_kmeans`.

    Raises:
        SpeechUnitsError: K < 1 or larger than the number of frames.
    """
    from speechunits.quantize.kmeans import fit_kmeans

    if k < 1:
        raise SpeechUnitsError(f"--k must be >= 1, got {k}")
    if sample.shape[0] < k:
        raise SpeechUnitsError(f"--k {k}: only {sample.shape[0]} frames available (K must not exceed the number of frames)")
    result = fit_kmeans(np.ascontiguousarray(sample, dtype=np.float32), k, iters=iters, init=init,  # type: ignore[arg-type]
                        seed=seed, device=device, precision=precision)  # type: ignore[arg-type]
    return Codebook.from_fit(result, encoder_info, layer, training_frames=int(sample.shape[0]),
                             seed=seed, iters=iters, init=init)


def sample_source(source: FeatureSource, max_frames: int = DEFAULT_MAX_FRAMES, seed: int = 0) -> np.ndarray:
    """The seeded uniform sample of at most ``max_frames`` frames of ``source`` (consumes it)."""
    sample, seen = sample_stream(source.blocks, max_frames, seed)
    log.info("k-means on %d of %d frames (layer %d, D=%d)", sample.shape[0], seen, source.layer, sample.shape[1])
    return sample


def fit_codebook(source: FeatureSource, k: int, *, max_frames: int = DEFAULT_MAX_FRAMES, seed: int = 0,
                 init: str = "kmeans++", iters: int = 20, device: str = "auto", precision: str = "auto") -> Codebook:
    """Sample frames from ``source`` (:func:`sample_source`) and fit k-means (:func:`fit_sample`).

    Raises:
        SpeechUnitsError: K larger than the frames available, bad options.
    """
    check_fit_options(k, max_frames)
    sample = sample_source(source, max_frames, seed)
    return fit_sample(sample, k, source.encoder_info, source.layer, seed=seed, init=init, iters=iters,
                      device=device, precision=precision)
