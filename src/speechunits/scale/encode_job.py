"""``encode`` on the scale-out paths: overlapped local decoding, Ray, and URI outputs.

The write loop is :func:`speechunits.units.encode_corpus.write_results`, the one every backend
shares (same stores, same skip-what-is-stored rule, same errors file and report); this module only
chooses where units come from (:func:`local_results` with prefetching threads, or
``ray_encode.ray_results``) and stages a filesystem-URI output (:mod:`speechunits.scale.remote`).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

from speechunits.corpus import Utterance
from speechunits.units.encode_corpus import ResultsFn, UnitResult, write_results
from speechunits.units.parquet_dir import DEFAULT_SHARD_SECONDS

__all__ = ["ResultsFn", "UnitResult", "local_results", "run_encode"]

#: Seconds between uploads of finished shards when the output is a URI.
SYNC_INTERVAL_S = 10.0


def local_results(tokenizer: Any, *, loader_workers: int | None, max_batch_seconds: float | None = None,
                  on_error: str = "skip", channel: int | None = None) -> ResultsFn:
    """Units computed in this process; decoding runs ahead in ``loader_workers`` threads."""
    from speechunits.scale.prefetch import prefetch_audio_items
    from speechunits.units.encode_corpus import local_results as units_in_process

    info = tokenizer.encoder.info

    def prefetched(todo: Iterable[Utterance]) -> Iterable[Any]:
        return prefetch_audio_items(todo, info.sample_rate, info.receptive_field, channel=channel,
                                    workers=loader_workers)

    return units_in_process(tokenizer, max_batch_seconds=max_batch_seconds, on_error=on_error, channel=channel,
                            audio_items=prefetched)


def run_encode(results: ResultsFn, corpus: Iterable[Utterance], tokenizer: Any, out_dir: str | os.PathLike[str], *,
               job: tuple[int, int] = (0, 1), rows_per_file: int | None = None,
               shard_seconds: float | None = DEFAULT_SHARD_SECONDS, on_error: str = "skip",
               quiet: bool = False, total_seconds: float | None = None, desc: str = "encode") -> Any:
    """Encode what ``out_dir`` does not hold yet; returns an ``EncodeReport``.

    With a URI ``out_dir`` the report's ``stores`` and ``errors_path`` are URIs (strings).
    """
    from speechunits.scale.remote import StagedDirectory, is_uri

    kwargs = dict(job=job, rows_per_file=rows_per_file, shard_seconds=shard_seconds, on_error=on_error, quiet=quiet,
                  total_seconds=total_seconds, desc=desc)
    if not is_uri(out_dir):
        return write_results(results, corpus, tokenizer, Path(out_dir), **kwargs)
    with StagedDirectory(str(out_dir)) as staged:
        report = write_results(results, corpus, tokenizer, staged.local, sync=staged.sync,
                               sync_interval_s=SYNC_INTERVAL_S, **kwargs)
    rel = [Path(p).relative_to(staged.local).as_posix() for p in report.stores]
    stores = [staged.uri if r == "." else f"{staged.uri}/{r}" for r in rel]
    return dataclasses.replace(report, stores=stores, errors_path=f"{staged.uri}/{report.errors_path.name}")
