"""Encode a corpus into unit stores, resumably (the library side of ``speechunits encode``).

With one codebook the output directory *is* the store; with several, each stream gets its own
store ``OUT/stream{j}-layer{L}-k{K}``. Utterances already stored (in every stream) are skipped,
so the same command run again after a crash (even ``kill -9``) finishes the job, and the
result equals an uninterrupted run. A shard is written every ``rows_per_file`` utterances or
``shard_seconds`` seconds, whichever comes first, so a crash loses at most about
``shard_seconds`` of finished work (plus what was in flight). Unreadable files are recorded in ``OUT/.errors.jsonl``
(hidden, so Parquet readers of ``OUT`` ignore it) and tried again on the next run.
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from speechunits.corpus import Corpus, Utterance, total_audio_seconds
from speechunits.errors import SpeechUnitsError
from speechunits.progress import AudioProgress
from speechunits.timed_parts import TimedFlusher
from speechunits.units.parquet_dir import DEFAULT_ROWS_PER_FILE, DEFAULT_SHARD_SECONDS
from speechunits.units.store import UnitWriter, store_meta
from speechunits.units.tokenizer import UnitTokenizer

log = logging.getLogger(__name__)

ERRORS_FILE = ".errors.jsonl"


@dataclass(frozen=True)
class UnitResult:
    """Units of one utterance (one :class:`Units` per codebook stream), or why there are none."""

    utt: Utterance
    streams: list[Any] | None
    error: str | None
    duration_s: float


#: ``results(todo) -> UnitResult`` for every utterance of ``todo``, in order. Where the units are
#: computed (this process, worker threads feeding it, Ray actors) is the function's business.
ResultsFn = Callable[[Iterable[Utterance]], Iterator[UnitResult]]


@dataclass(frozen=True)
class EncodeReport:
    """What one run did.

    Attributes:
        encoded: utterances encoded in this run.
        already_stored: utterances skipped because every stream held them.
        failed: utterances skipped because of an error (see ``errors_path``).
        audio_seconds: audio encoded in this run.
        wall_seconds: wall time of the encoding loop.
        stores: the store directories (one per codebook).
    """

    encoded: int
    already_stored: int
    failed: int
    audio_seconds: float
    wall_seconds: float
    stores: list[Path]
    errors_path: Path

    @property
    def realtime_factor(self) -> float:
        """Audio seconds encoded per wall second (x real time)."""
        return self.audio_seconds / max(self.wall_seconds, 1e-9)


def stream_dirs(out_dir: str | os.PathLike[str], tokenizer: UnitTokenizer) -> list[Path]:
    """Store directory of each stream: ``out_dir`` itself for a single codebook."""
    out = Path(out_dir)
    if len(tokenizer.codebooks) == 1:
        return [out]
    return [out / f"stream{j}-layer{layer}-k{cb.k}"
            for j, (cb, layer) in enumerate(zip(tokenizer.codebooks, tokenizer.stream_layers))]


def local_results(tokenizer: UnitTokenizer, *, max_batch_seconds: float | None = None, on_error: str = "skip",
                  channel: int | None = None,
                  audio_items: Callable[[Iterable[Utterance]], Iterable[Any]] | None = None) -> ResultsFn:
    """Units computed in this process; ``audio_items(todo)`` may supply decoded audio (e.g. a
    prefetching loader), else audio is read serially."""
    from speechunits.features import iter_features
    from speechunits.features.defaults import DEFAULT_MAX_BATCH_SECONDS

    def results(todo: Iterable[Utterance]) -> Iterator[UnitResult]:
        items = None if audio_items is None else audio_items(todo)
        for item in iter_features(tokenizer.encoder, todo, tokenizer.layers,
                                  max_batch_seconds=max_batch_seconds or DEFAULT_MAX_BATCH_SECONDS,
                                  on_error=on_error, channel=channel, quiet=True, audio_items=items):
            streams = None if item.features is None else tokenizer.units_from_features(item.features)
            yield UnitResult(item.utt, streams, item.error, item.duration_s)

    return results


def encode_corpus(corpus: Corpus, tokenizer: UnitTokenizer, out_dir: str | os.PathLike[str], *,
                  job: tuple[int, int] = (0, 1), rows_per_file: int = DEFAULT_ROWS_PER_FILE,
                  shard_seconds: float | None = DEFAULT_SHARD_SECONDS,
                  max_batch_seconds: float | None = None, on_error: str = "skip", channel: int | None = None,
                  quiet: bool = False, total_seconds: float | None = None) -> EncodeReport:
    """Encode every utterance of ``corpus`` not yet stored into the stream stores under ``out_dir``.

    Args:
        corpus: the utterances of this job (already sharded by the caller).
        tokenizer: encoder + codebooks (+ dedup flag).
        job: ``(i, n)`` of this job, used to name its shard files.
        rows_per_file: utterances per Parquet shard at most.
        shard_seconds: a shard is also written when an utterance finishes this long after the
            last one (``None``: by rows only); a crash loses at most the utterances finished in
            the last ``shard_seconds`` plus those in flight.
        max_batch_seconds: padded audio per encoder call (default: the features default).
        on_error: ``"skip"`` records bad files and goes on; ``"fail"`` raises at the first one
            (after writing what was complete).
        total_seconds: audio still to encode, for the progress bar's ETA (default: read from
            the file headers unless ``quiet``).
    """
    results = local_results(tokenizer, max_batch_seconds=max_batch_seconds, on_error=on_error, channel=channel)
    return write_results(results, corpus, tokenizer, Path(out_dir), job=job, rows_per_file=rows_per_file,
                         shard_seconds=shard_seconds, on_error=on_error, quiet=quiet, total_seconds=total_seconds)


def write_results(results: ResultsFn, corpus: Iterable[Utterance], tokenizer: UnitTokenizer, out_dir: Path, *,
                  job: tuple[int, int] = (0, 1), rows_per_file: int | None = None,
                  shard_seconds: float | None = DEFAULT_SHARD_SECONDS, on_error: str = "skip",
                  quiet: bool = False, total_seconds: float | None = None, desc: str = "encode",
                  sync: Callable[[], Any] | None = None, sync_interval_s: float = 10.0,
                  clock: Callable[[], float] = time.monotonic, flush_in_background: bool = True) -> EncodeReport:
    """The write loop every backend shares: open one :class:`UnitWriter` per stream, skip what
    every stream already holds, feed the rest to ``results`` and store what comes back.

    Shards hold ``rows_per_file`` utterances, or fewer when ``shard_seconds`` passed since the
    last one (``clock``: monotonic seconds, injectable for tests); with ``flush_in_background``
    a :class:`TimedFlusher` writes them on time also while ``results`` is stalled. ``sync`` (if given) is called
    every ``sync_interval_s`` seconds, e.g. to upload finished shards of a staged remote output.
    The ``results`` stream is closed on the way out, also on an exception or an interrupt (so a
    backend's ``finally`` - e.g. shutting its Ray down - runs before this returns or raises).
    """
    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"--on-error: expected skip or fail, got {on_error!r}")
    dirs = stream_dirs(out_dir, tokenizer)
    errors_path = out_dir / ERRORS_FILE
    encoded = failed = 0
    seconds = 0.0
    last_sync = time.perf_counter()
    stream: Iterator[UnitResult] | None = None
    try:
        with ExitStack() as stack:
            writers = [stack.enter_context(UnitWriter(d, store_meta(tokenizer.store_codebook_meta(j), tokenizer.dedup),
                                                      job=job, rows_per_file=rows_per_file or DEFAULT_ROWS_PER_FILE,
                                                      shard_seconds=shard_seconds, clock=clock))
                       for j, d in enumerate(dirs)]
            if shard_seconds is not None and flush_in_background:
                stack.enter_context(TimedFlusher.for_seconds(writers, shard_seconds))
            complete = set.intersection(*(w.done for w in writers))
            if isinstance(corpus, Corpus):
                todo: Iterable[Utterance] = corpus.filter(lambda utt: utt.id not in complete)
            else:
                todo = [utt for utt in corpus if utt.id not in complete]
            already_stored = sum(1 for utt in corpus if utt.id in complete)
            if total_seconds is None and not quiet:
                total_seconds = total_audio_seconds(todo)
            start = time.perf_counter()
            stream = results(todo)
            with AudioProgress(total_seconds, desc=desc, quiet=quiet) as progress:
                for result in stream:
                    if result.streams is None:
                        if on_error == "fail":
                            raise SpeechUnitsError(result.error or f"{result.utt.path}: failed")
                        failed += 1
                        log.warning("skipped %s", result.error)
                        with open(errors_path, "a", encoding="utf-8") as handle:
                            handle.write(json.dumps({"id": result.utt.id, "path": result.utt.path,
                                                     "error": result.error}) + "\n")
                        continue
                    for writer, units in zip(writers, result.streams):
                        if result.utt.id not in writer.done:
                            writer.add(result.utt.id, units, result.duration_s)
                    encoded += 1
                    seconds += result.duration_s
                    progress.update(result.duration_s)
                    if sync is not None and time.perf_counter() - last_sync > sync_interval_s:
                        sync()
                        last_sync = time.perf_counter()
            wall = time.perf_counter() - start
    finally:  # the writers have flushed; now the backend stops (e.g. its Ray shuts down)
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return EncodeReport(encoded, already_stored, failed, seconds, wall, dirs, errors_path)
