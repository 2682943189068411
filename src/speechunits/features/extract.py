"""Batched, exact feature extraction over a corpus, in corpus order with flat memory.

Utterances are read into a bounded *window* (``window_seconds`` of audio or
``window_utterances`` items, whichever comes first). Inside a window, long utterances are
split into pieces (see :mod:`speechunits.features.chunking`), pieces are sorted by length
and grouped under a padded-audio budget (``max_batch_seconds``; ``batch_size`` caps the
count), the encoder runs each batch, and results are emitted in corpus order. Memory
therefore depends on the window, not on the corpus size.
"""
from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from speechunits.corpus import Utterance
from speechunits.encoders.base import Encoder
from speechunits.errors import SpeechUnitsError
from speechunits.features.batching import plan_batches
from speechunits.features.chunking import Piece, plan_pieces
from speechunits.features.defaults import (  # re-exported for callers
    DEFAULT_CHUNK_CONTEXT_SECONDS,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_MAX_BATCH_SECONDS,
)
from speechunits.features.loading import LoadedAudio, load_audio_items
from speechunits.progress import AudioProgress

log = logging.getLogger(__name__)

#: Windows hold this many batches' worth of audio (bounded memory, good length sorting).
WINDOW_BATCHES = 8
DEFAULT_WINDOW_UTTERANCES = 512


@dataclass(frozen=True)
class FeatureItem:
    """Features of one utterance, or why there are none.

    Attributes:
        utt: the corpus entry.
        features: ``{layer: float32 [frames, dim]}``; None iff ``error`` is set.
        error: reason the utterance was skipped.
        duration_s: audio duration (0 when it could not be read).
    """

    utt: Utterance
    features: dict[int, np.ndarray] | None
    error: str | None
    duration_s: float
    num_samples: int = 0


def iter_features(
    encoder: Encoder,
    corpus: Iterable[Utterance],
    layers: Sequence[int],
    *,
    max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS,
    batch_size: int | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    chunk_context_seconds: float = DEFAULT_CHUNK_CONTEXT_SECONDS,
    on_error: str = "skip",
    channel: int | None = None,
    quiet: bool = False,
    audio_items: Iterable[LoadedAudio] | None = None,
    window_seconds: float | None = None,
    window_utterances: int = DEFAULT_WINDOW_UTTERANCES,
    total_seconds: float | None = None,
) -> Iterator[FeatureItem]:
    """Extract ``layers`` for every utterance of ``corpus``, yielded in corpus order.

    Args:
        encoder: from :func:`speechunits.encoders.load_encoder`.
        corpus: utterances (a :class:`~speechunits.corpus.Corpus` or any iterable).
        layers: layer numbers (see :mod:`speechunits.encoders.base`).
        max_batch_seconds: padded audio per encoder call.
        batch_size: at most this many pieces per call (None: no cap).
        chunk_seconds: files longer than this are split (not for spectral encoders).
        chunk_context_seconds: extra audio each side of a chunk, dropped after encoding.
        on_error: ``"skip"`` yields items with ``error`` set; ``"fail"`` raises at the first bad file.
            Only bad input is skipped: files that cannot be decoded, are too short or hold
            NaN/Inf, and :class:`SpeechUnitsError` the encoder raises for one input. Any other
            exception from the encoder (a bug, ``torch.OutOfMemoryError``, ``MemoryError``)
            propagates with its traceback and ends the run.
        channel: channel to use instead of the downmix.
        quiet: no progress bar.
        audio_items: pre-loaded :class:`LoadedAudio` (at the encoder rate) used instead of
            loading ``corpus`` serially.
        window_seconds / window_utterances: bound of the reordering window.
        total_seconds: total audio for the progress bar's ETA, if known.

    Raises:
        SpeechUnitsError: bad options, or with ``on_error="fail"`` the first bad file.
        Exception: whatever else the encoder raises, unchanged.
    """
    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"--on-error: expected skip or fail, got {on_error!r}")
    if max_batch_seconds <= 0:
        raise SpeechUnitsError(f"--max-batch-seconds must be positive, got {max_batch_seconds}")
    if batch_size is not None and batch_size < 1:
        raise SpeechUnitsError(f"--batch-size must be at least 1, got {batch_size}")
    info = encoder.info
    if chunk_seconds * info.sample_rate < info.receptive_field:
        raise SpeechUnitsError(f"--chunk-seconds {chunk_seconds} is shorter than the encoder's receptive field")
    layers = encoder.check_layers(layers)
    rate = info.sample_rate
    budget = int(max_batch_seconds * rate)
    window_limit = int((window_seconds if window_seconds is not None else WINDOW_BATCHES * max_batch_seconds) * rate)
    chunk = None if encoder.supports_long_input else int(chunk_seconds * rate)
    context = int(chunk_context_seconds * rate)
    if audio_items is None:
        audio_items = load_audio_items(corpus, rate, info.receptive_field, channel)

    def windows() -> Iterator[list[LoadedAudio]]:
        window: list[LoadedAudio] = []
        samples = 0
        for item in audio_items:
            if item.error is not None and on_error == "fail":
                raise SpeechUnitsError(item.error)
            window.append(item)
            samples += item.audio.num_samples if item.audio is not None else 0
            if samples >= window_limit or len(window) >= window_utterances:
                yield window
                window, samples = [], 0
        if window:
            yield window

    with AudioProgress(total_seconds, desc="features", quiet=quiet) as progress:
        for window in windows():
            yield from _run_window(encoder, window, layers, budget, batch_size, chunk, context, on_error, progress)


#: Free heap memory (bytes) above which :func:`release_memory` hands it back to the OS.
RELEASE_FREE_BYTES = 64 << 20


def release_memory(min_free_bytes: int = RELEASE_FREE_BYTES) -> None:
    """Return freed heap memory to the OS once more than ``min_free_bytes`` of it has piled up.

    Keeps peak RSS flat with corpus length (variable-size tensors fragment glibc's heap) without
    trimming after every batch, which makes the next batch fault its pages back in; the threshold
    bounds the extra RSS instead (figures: docs/performance.md). glibc only (``malloc_trim``,
    ``mallinfo2``); a no-op elsewhere.
    """
    libc = _libc()
    if libc is None:
        return
    if min_free_bytes > 0 and hasattr(libc, "mallinfo2"):
        if libc.mallinfo2().fordblks <= min_free_bytes:
            return
    libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): ten ``size_t`` fields; ``fordblks`` = free heap bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def _extract(encoder: Encoder, waves: list[np.ndarray], layers: list[int]) -> list[dict[int, np.ndarray]]:
    """``extract_batch`` of already-prepared waves (encoders without ``prepare`` get the plain call)."""
    if type(encoder).prepare is Encoder.prepare:
        return encoder.extract_batch(waves, layers)
    return encoder.extract_batch(waves, layers, prepared=True)


def _run_window(encoder: Encoder, window: list[LoadedAudio], layers: list[int], budget: int,
                batch_size: int | None, chunk: int | None, context: int, on_error: str,
                progress: AudioProgress) -> Iterator[FeatureItem]:
    info = encoder.info
    pieces: list[tuple[int, Piece]] = []  # (window index, piece)
    prepared: dict[int, np.ndarray] = {}
    for index, item in enumerate(window):
        if item.audio is None:
            continue
        prepared[index] = encoder.prepare(item.audio.samples)
        n = item.audio.num_samples
        spans = plan_pieces(n, info, chunk, context) if chunk is not None else [Piece(0, n, 0, info.num_frames(n))]
        pieces.extend((index, span) for span in spans)
    outputs: list[dict[int, np.ndarray] | None] = [None] * len(pieces)
    errors: dict[int, str] = {}
    lengths = [p.end - p.start for _, p in pieces]
    for batch in plan_batches(lengths, budget, batch_size):
        waves = [prepared[pieces[i][0]][pieces[i][1].start: pieces[i][1].end] for i in batch]
        try:
            results = _extract(encoder, waves, layers)
        except SpeechUnitsError as exc:  # bad input (e.g. too short): retried one by one to find the culprit
            if len(batch) == 1:
                results = [None]
                errors[pieces[batch[0]][0]] = f"{window[pieces[batch[0]][0]].utt.path}: encoder refused it ({exc})"
            else:
                log.warning("batch of %d refused (%s); retrying one by one", len(batch), exc)
                results = []
                for i, wave in zip(batch, waves):
                    try:
                        results.extend(_extract(encoder, [wave], layers))
                    except SpeechUnitsError as single_exc:
                        results.append(None)
                        errors[pieces[i][0]] = f"{window[pieces[i][0]].utt.path}: encoder refused it ({single_exc})"
        for i, result in zip(batch, results):
            outputs[i] = result
        release_memory()
        progress.update(sum(lengths[i] for i in batch) / info.sample_rate)
    by_item: dict[int, list[tuple[Piece, dict[int, np.ndarray] | None]]] = {}
    for (index, piece), result in zip(pieces, outputs):
        by_item.setdefault(index, []).append((piece, result))
    for index, item in enumerate(window):
        if item.audio is None:
            yield FeatureItem(item.utt, None, item.error, 0.0)
            continue
        duration, n = item.audio.duration_s, item.audio.num_samples
        if index in errors:
            if on_error == "fail":
                raise SpeechUnitsError(errors[index])
            yield FeatureItem(item.utt, None, errors[index], duration, n)
            continue
        parts = by_item[index]
        if len(parts) == 1 and parts[0][0].keep_from == 0:
            features = parts[0][1]
        else:
            features = {
                layer: np.concatenate([res[layer][p.keep_from: p.keep_from + p.keep] for p, res in parts])
                for layer in layers
            }
        yield FeatureItem(item.utt, features, None, duration, n)
