"""The write loop of ``speechunits features``, shared by every backend: resumable, time-bounded.

``items(todo)`` yields a :class:`~speechunits.features.FeatureItem` per utterance of ``todo``
in order (this process, prefetching threads or Ray actors: see :mod:`speechunits.scale.jobs`);
:func:`write_features` skips what the directory already keeps, keeps finished utterances in
parts closed at ``rows_per_part`` utterances or ``shard_seconds`` (a background
:class:`~speechunits.timed_parts.TimedFlusher` closes a due part while ``items`` is stalled),
and at the end writes the fairseq layout in corpus order (:mod:`speechunits.features.parts`).
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from speechunits.corpus import Corpus, Utterance
from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.features.parts import FeatureParts
from speechunits.timed_parts import TimedFlusher
from speechunits.units.parquet_dir import DEFAULT_ROWS_PER_FILE, DEFAULT_SHARD_SECONDS

log = logging.getLogger(__name__)

#: ``items(todo) -> FeatureItem`` for every utterance of ``todo``, in order.
ItemsFn = Callable[[Iterable[Utterance]], Iterator[Any]]


@dataclass(frozen=True)
class FeaturesReport:
    """What one ``features`` run did.

    Attributes:
        extracted: utterances extracted in this run.
        already_stored: utterances kept by an earlier run (skipped).
        failed: utterances skipped as bad input (listed in ``errors_path``).
        audio_seconds: audio extracted in this run.
        wall_seconds: wall time of the extraction loop.
        parts_written: parts closed in this run.
    """

    extracted: int
    already_stored: int
    failed: int
    audio_seconds: float
    wall_seconds: float
    parts_written: int
    out_dir: Path
    errors_path: Path


def write_features(items: ItemsFn, corpus: Iterable[Utterance], out_dir: str | os.PathLike[str], info: EncoderInfo,
                   layers: list[int], *, dtype: str = "fp32", settings: dict[str, Any] | None = None,
                   rows_per_part: int | None = None,
                   shard_seconds: float | None = DEFAULT_SHARD_SECONDS, on_error: str = "skip",
                   extra_meta: dict[str, Any] | None = None,
                   clock: Callable[[], float] = time.monotonic, flush_in_background: bool = True) -> FeaturesReport:
    """Extract what ``out_dir`` does not keep yet and write the complete features directory.

    Args:
        items: the backend (see :data:`ItemsFn`); its stream is closed on the way out, also on an
            exception or an interrupt (so a backend's ``finally`` - Ray's shutdown - runs first).
        corpus: this run's utterances, in the order the directory lists them.
        dtype / settings: the encoder's precision and the options that change the frames
            (channel, chunking): a resumed run must have the same (see
            :class:`~speechunits.features.parts.FeatureParts`).
        rows_per_part / shard_seconds: a part closes at that many utterances or seconds
            (``None``: by rows only); a kill loses at most the open part.
        on_error: ``"skip"`` records bad files in ``errors.jsonl``; ``"fail"`` raises at the
            first (after keeping the finished utterances).

    Raises:
        SpeechUnitsError: bad options, kept parts or a complete directory of other settings
            (encoder, layers, dtype), or with ``on_error="fail"`` the first bad file.
    """
    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"--on-error: expected skip or fail, got {on_error!r}")
    out = Path(out_dir)
    parts = FeatureParts(out, info, layers, dtype, settings=settings,
                         rows_per_part=rows_per_part or DEFAULT_ROWS_PER_FILE,
                         shard_seconds=shard_seconds, clock=clock)
    if not isinstance(corpus, Corpus):
        corpus = list(corpus)
    done = parts.kept(corpus)
    if isinstance(corpus, Corpus):
        todo: Iterable[Utterance] = corpus.filter(lambda utt: utt.id not in done)
    else:
        todo = [utt for utt in corpus if utt.id not in done]
    already = sum(1 for utt in corpus if utt.id in done)
    if already:
        log.info("%s: %d utterance(s) kept by an earlier run are skipped", out, already)
    errors: list[dict[str, str]] = []
    extracted = 0
    seconds = 0.0
    stream: Iterator[Any] | None = None
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            stack.callback(parts.close)  # finished utterances are kept, also after an error
            if shard_seconds is not None and flush_in_background:
                stack.enter_context(TimedFlusher.for_seconds([parts], shard_seconds))
            stream = items(todo)
            for item in stream:
                if item.features is None:
                    if on_error == "fail":
                        raise SpeechUnitsError(item.error or f"{item.utt.path}: failed")
                    log.warning("skipped %s", item.error)
                    errors.append({"id": item.utt.id, "path": item.utt.path, "reason": item.error or "unknown error"})
                    continue
                parts.add(item.utt, item.num_samples, item.features)
                extracted += 1
                seconds += item.duration_s
    finally:  # the parts are closed; now the backend stops (e.g. its Ray shuts down)
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    wall = time.perf_counter() - start
    parts.finish(corpus, errors, extra_meta)
    return FeaturesReport(extracted, already, len(errors), seconds, wall, parts.parts_written, out,
                          out / "errors.jsonl")
