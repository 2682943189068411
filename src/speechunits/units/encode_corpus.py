"""Encode a corpus into unit stores, resumably (the library side of ``speechunits encode``).

With one codebook the output directory *is* the store; with several, each stream gets its own
store ``OUT/stream{j}-layer{L}-k{K}``. Utterances already stored (in every stream) are skipped,
so the same command run again after a crash (even ``kill -9``) finishes the job, and the
result equals an uninterrupted run. Unreadable files are recorded in ``OUT/.errors.jsonl``
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
from typing import Iterable, Sequence

from speechunits.corpus import Corpus, Utterance
from speechunits.units.parquet_dir import DEFAULT_ROWS_PER_FILE
from speechunits.units.store import UnitWriter, store_meta
from speechunits.units.tokenizer import UnitTokenizer

log = logging.getLogger(__name__)

ERRORS_FILE = ".errors.jsonl"
#: Above this many utterances the progress bar does not read file headers for a total (ETA).
MAX_PRESCAN = 50_000


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


def encode_corpus(corpus: Corpus, tokenizer: UnitTokenizer, out_dir: str | os.PathLike[str], *,
                  job: tuple[int, int] = (0, 1), rows_per_file: int = DEFAULT_ROWS_PER_FILE,
                  max_batch_seconds: float | None = None, on_error: str = "skip", channel: int | None = None,
                  quiet: bool = False, total_seconds: float | None = None) -> EncodeReport:
    """Encode every utterance of ``corpus`` not yet stored into the stream stores under ``out_dir``.

    Args:
        corpus: the utterances of this job (already sharded by the caller).
        tokenizer: encoder + codebooks (+ dedup flag).
        job: ``(i, n)`` of this job, used to name its shard files.
        rows_per_file: utterances per Parquet shard (a crash loses at most this many).
        max_batch_seconds: padded audio per encoder call (default: the features default).
        on_error: ``"skip"`` records bad files and goes on; ``"fail"`` raises at the first one
            (after writing what was complete).
        total_seconds: audio still to encode, for the progress bar's ETA (default: read from
            the file headers unless ``quiet``).
    """
    from speechunits.features import iter_features
    from speechunits.features.extract import DEFAULT_MAX_BATCH_SECONDS

    dirs = stream_dirs(out_dir, tokenizer)
    errors_path = Path(out_dir) / ERRORS_FILE
    encoded = failed = 0
    seconds = 0.0
    with ExitStack() as stack:
        writers: Sequence[UnitWriter] = [
            stack.enter_context(UnitWriter(d, store_meta(tokenizer.store_codebook_meta(j), tokenizer.dedup), job=job,
                                           rows_per_file=rows_per_file))
            for j, d in enumerate(dirs)
        ]
        complete = set.intersection(*(w.done for w in writers))
        skipped = [0]

        def needed(utt_id: str) -> bool:
            if utt_id in complete:
                skipped[0] += 1
                return False
            return True

        todo = corpus.filter(lambda utt: needed(utt.id))
        if total_seconds is None and not quiet:
            total_seconds = _total_seconds(todo)
            skipped[0] = 0  # counted again by the real pass
        start = time.perf_counter()
        for item in iter_features(tokenizer.encoder, todo, tokenizer.layers,
                                  max_batch_seconds=max_batch_seconds or DEFAULT_MAX_BATCH_SECONDS,
                                  on_error=on_error, channel=channel, quiet=quiet, total_seconds=total_seconds):
            if item.features is None:
                failed += 1
                log.warning("skipped %s", item.error)
                with open(errors_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"id": item.utt.id, "path": item.utt.path, "error": item.error}) + "\n")
                continue
            for writer, units in zip(writers, tokenizer.units_from_features(item.features)):
                if item.utt.id not in writer.done:
                    writer.add(item.utt.id, units, item.duration_s)
            encoded += 1
            seconds += item.duration_s
        wall = time.perf_counter() - start
    return EncodeReport(encoded, skipped[0], failed, seconds, wall, dirs, errors_path)


def _total_seconds(corpus: Iterable[Utterance]) -> float | None:
    """Audio seconds of ``corpus`` from file headers, for the progress bar's ETA (None if too many)."""
    import soundfile as sf

    total = 0.0
    for count, utt in enumerate(corpus):
        if count >= MAX_PRESCAN:
            return None
        try:
            info = sf.info(utt.path)
        except Exception:  # noqa: BLE001 - bad files are reported by the encoding pass itself
            continue
        total += info.frames / info.samplerate
    return total
