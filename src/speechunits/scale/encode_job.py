"""The writing side of ``encode`` for the scale-out paths (overlapped local loader, Ray).

It mirrors :func:`speechunits.units.encode_corpus.encode_corpus` step for step - the same
:class:`~speechunits.units.store.UnitWriter` stores (one per codebook stream), the same
skip-what-is-stored rule, the same hidden errors file and :class:`EncodeReport` - but takes the
units from a *results* function, so where the encoder runs is the caller's choice:

* :func:`local_results` - in this process, audio decoded ahead by worker threads;
* ``ray_backend.ray_results`` - on Ray actors.

Output may be a local directory or a filesystem URI (staged, see :mod:`speechunits.scale.remote`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError
from speechunits.progress import AudioProgress
from speechunits.units.units import Units

log = logging.getLogger(__name__)

#: Seconds between uploads of finished shards when the output is a URI.
SYNC_INTERVAL_S = 10.0


@dataclass(frozen=True)
class UnitResult:
    """Units of one utterance (one :class:`Units` per codebook stream), or why there are none."""

    utt: Utterance
    streams: list[Units] | None
    error: str | None
    duration_s: float


#: ``results(todo) -> UnitResult`` for every utterance of ``todo``, in order.
ResultsFn = Callable[[Sequence[Utterance]], Iterator[UnitResult]]


def local_results(tokenizer: Any, *, loader_workers: int | None, max_batch_seconds: float | None = None,
                  on_error: str = "skip", channel: int | None = None) -> ResultsFn:
    """Units computed in this process; decoding runs ahead in ``loader_workers`` threads."""
    from speechunits.features import iter_features
    from speechunits.features.extract import DEFAULT_MAX_BATCH_SECONDS
    from speechunits.scale.prefetch import prefetch_audio_items

    def results(todo: Sequence[Utterance]) -> Iterator[UnitResult]:
        info = tokenizer.encoder.info
        items = prefetch_audio_items(todo, info.sample_rate, info.receptive_field, channel=channel,
                                     workers=loader_workers)
        for item in iter_features(tokenizer.encoder, todo, tokenizer.layers,
                                  max_batch_seconds=max_batch_seconds or DEFAULT_MAX_BATCH_SECONDS,
                                  on_error=on_error, channel=channel, quiet=True, audio_items=items):
            streams = None if item.features is None else tokenizer.units_from_features(item.features)
            yield UnitResult(item.utt, streams, item.error, item.duration_s)

    return results


def run_encode(results: ResultsFn, corpus: Iterable[Utterance], tokenizer: Any, out_dir: str | os.PathLike[str], *,
               job: tuple[int, int] = (0, 1), rows_per_file: int | None = None, on_error: str = "skip",
               quiet: bool = False, total_seconds: float | None = None, desc: str = "encode") -> Any:
    """Encode what ``out_dir`` does not hold yet; returns an ``EncodeReport``.

    With a URI ``out_dir`` the report's ``stores`` and ``errors_path`` are URIs (strings).
    """
    from speechunits.scale.remote import StagedDirectory, is_uri

    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"--on-error: expected skip or fail, got {on_error!r}")
    kwargs = dict(job=job, rows_per_file=rows_per_file, on_error=on_error, quiet=quiet,
                  total_seconds=total_seconds, desc=desc)
    if not is_uri(out_dir):
        return _encode_into(results, corpus, tokenizer, Path(out_dir), sync=None, **kwargs)
    with StagedDirectory(str(out_dir)) as staged:
        report = _encode_into(results, corpus, tokenizer, staged.local, sync=staged.sync, **kwargs)
    rel = [Path(p).relative_to(staged.local).as_posix() for p in report.stores]
    stores = [staged.uri if r == "." else f"{staged.uri}/{r}" for r in rel]
    return dataclasses.replace(report, stores=stores, errors_path=f"{staged.uri}/{report.errors_path.name}")


def _encode_into(results: ResultsFn, corpus: Iterable[Utterance], tokenizer: Any, out_dir: Path, *,
                 job: tuple[int, int], rows_per_file: int | None, on_error: str, quiet: bool,
                 total_seconds: float | None, desc: str, sync: Callable[[], Any] | None) -> Any:
    from speechunits.units import encode_corpus as encode_corpus_module
    from speechunits.units.encode_corpus import ERRORS_FILE, EncodeReport, stream_dirs
    from speechunits.units.parquet_dir import DEFAULT_ROWS_PER_FILE
    from speechunits.units.store import UnitWriter, store_meta

    dirs = stream_dirs(out_dir, tokenizer)
    errors_path = out_dir / ERRORS_FILE
    encoded = failed = 0
    seconds = 0.0
    last_sync = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(UnitWriter(d, store_meta(tokenizer.store_codebook_meta(j), tokenizer.dedup),
                                                  job=job, rows_per_file=rows_per_file or DEFAULT_ROWS_PER_FILE))
                   for j, d in enumerate(dirs)]
        complete = set.intersection(*(w.done for w in writers))
        utts = list(corpus)
        todo = [utt for utt in utts if utt.id not in complete]
        if total_seconds is None and not quiet:  # the ETA the local encode shows, from file headers
            prescan = getattr(encode_corpus_module, "_total_seconds", None)
            total_seconds = prescan(todo) if prescan is not None else None
        start = time.perf_counter()
        with AudioProgress(total_seconds, desc=desc, quiet=quiet) as progress:
            for result in results(todo):
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
                if sync is not None and time.perf_counter() - last_sync > SYNC_INTERVAL_S:
                    sync()
                    last_sync = time.perf_counter()
        wall = time.perf_counter() - start
    return EncodeReport(encoded, len(utts) - len(todo), failed, seconds, wall, dirs, errors_path)
