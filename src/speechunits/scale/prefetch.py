"""Overlapped local loading: decode + resample ahead of the encoder, in corpus order.

:func:`ordered_map` is a bounded, order-preserving parallel map over worker threads
(default) or processes. At most ``prefetch`` results are pending or buffered at any
time, so memory stays bounded on any corpus size. :func:`prefetch_audio_items` applies it
to audio loading and yields the same :class:`~speechunits.features.LoadedAudio` records,
in the same order, as the serial :func:`~speechunits.features.load_audio_items`; only the
wall-clock time differs.

Threads are enough for this job: libsndfile (through cffi) and soxr release the GIL while
they work, and so does torch in the encoder that consumes the items. Processes are there
for decoders that hold the GIL; they pay a copy of every waveform through a pipe.

This module never imports ray.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import multiprocessing
import os
from collections import deque
from typing import Callable, Iterable, Iterator, Literal, TypeVar

from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError
from speechunits.features import loading
from speechunits.features.loading import LoadedAudio

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Loader workers used when the caller does not say (bounded by the machine's cores).
DEFAULT_MAX_WORKERS = 4
#: Items decoded ahead of the consumer, per worker.
DEFAULT_PREFETCH_PER_WORKER = 4

Mode = Literal["thread", "process"]


def default_loader_workers() -> int:
    """A sensible worker count: the machine's cores, at most :data:`DEFAULT_MAX_WORKERS`."""
    return max(1, min(DEFAULT_MAX_WORKERS, os.cpu_count() or 1))


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int,
    prefetch: int | None = None,
    mode: Mode = "thread",
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order, computed by ``workers`` in parallel.

    Args:
        fn: the work; with ``mode="process"`` it must be a picklable module-level function.
        items: any iterable, consumed lazily (never more than ``prefetch`` ahead).
        workers: parallel workers (threads or processes); ``0`` runs ``fn`` inline.
        prefetch: results computed ahead of the consumer (default ``workers * 4``).
        mode: ``"thread"`` or ``"process"`` (spawned, so safe after torch has started threads).

    An exception raised by ``fn`` is re-raised here, at the item's position; pending work
    is cancelled. Closing the generator early also cancels pending work.
    """
    if workers < 0:
        raise SpeechUnitsError(f"--loader-workers: must be >= 0, got {workers}")
    if mode not in ("thread", "process"):
        raise SpeechUnitsError(f"loader mode must be 'thread' or 'process', got {mode!r}")
    if workers == 0:
        for item in items:
            yield fn(item)
        return
    depth = prefetch if prefetch is not None else workers * DEFAULT_PREFETCH_PER_WORKER
    if depth < 1:
        raise SpeechUnitsError(f"prefetch depth must be >= 1, got {depth}")
    executor: cf.Executor
    if mode == "thread":
        executor = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="speechunits-loader")
    else:
        executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[cf.Future[R]] = deque()
    source = iter(items)
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < depth:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(executor.submit(fn, item))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


def prefetch_audio_items(
    corpus: Iterable[Utterance],
    sample_rate: int,
    min_samples: int,
    *,
    channel: int | None = None,
    workers: int | None = None,
    prefetch: int | None = None,
    mode: Mode = "thread",
) -> Iterator[LoadedAudio]:
    """Overlapped counterpart of :func:`speechunits.features.load_audio_items`.

    Args:
        corpus: utterances, consumed lazily in order.
        sample_rate: the encoder's rate; audio is resampled to it in the workers.
        min_samples: shortest acceptable audio (the encoder's receptive field).
        channel: ``None`` downmixes, ``N`` picks a channel.
        workers: loader threads/processes (default :func:`default_loader_workers`).
        prefetch: items decoded ahead (bounds memory: about ``prefetch`` waveforms).

    Yields:
        ``LoadedAudio(utt, audio | None, error | None)`` in corpus order; a bad file gives an
        item with ``error`` set, exactly like the serial loader.
    """
    count = default_loader_workers() if workers is None else workers
    # looked up at call time, so the loader in use is always the features package's current one
    work = functools.partial(loading.load_one, sample_rate=sample_rate, min_samples=min_samples, channel=channel)
    log.debug("loading audio with %d %s worker(s), %s item(s) ahead", count, mode, prefetch)
    return ordered_map(work, corpus, workers=count, prefetch=prefetch, mode=mode)
