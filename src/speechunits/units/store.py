"""The unit store: a directory of Parquet shards of units keyed by utterance id.

Columns: ``id`` string, ``units`` list<int32>, ``durations`` list<int32> (deduplicated stores
only), ``num_frames`` int64 (frames before dedup), ``duration_s`` float64 (audio seconds).
Every shard's file metadata key ``speechunits`` holds the store metadata (:func:`store_meta`):
the codebook's JSON and sha256, frame rate and offset, vocabulary size and the dedup flag.
See :mod:`speechunits.units.parquet_dir` for the file layout and crash recovery.

A multi-stream store (dMel: one stream per mel channel) has the metadata key ``streams`` = S
(absent: 1, as in every store written before it existed) and holds, per utterance, the
``T x S`` ids frame-major in ``units`` (frame t's S ids at ``[t*S, (t+1)*S)``), with
``num_frames`` = T; it is never deduplicated. Read it with :meth:`UnitStore.iter_multistream`;
the single-stream readers (:meth:`UnitStore.iter_rows`, iteration) refuse it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from speechunits.errors import SpeechUnitsError
from speechunits.units.parquet_dir import (
    DEFAULT_ROWS_PER_FILE,
    ShardWriter,
    check_same,
    directory_meta,
    iter_record_batches,
    list_column,
    read_file_meta,
    shard_files,
)
from speechunits.units.multistream import MultiStreamUnits
from speechunits.units.units import Units

STORE_FORMAT_VERSION = 1
STORE_KIND = "units"
#: Metadata keys that must agree between a store and anything appended to it.
MATCH_KEYS = ("kind", "codebook_sha256", "dedup", "vocab_size", "frame_rate", "streams")
SHARD_PREFIX = "units"


def store_meta(codebook_meta: dict[str, Any], dedup: bool) -> dict[str, Any]:
    """Store metadata from a codebook's JSON (``codebook.json`` contents)."""
    missing = [key for key in ("k", "frame_rate") if codebook_meta.get(key) is None]
    if missing:
        raise SpeechUnitsError(f"codebook metadata lacks {missing} (is it a speechunits codebook.json?)")
    offset = codebook_meta.get("frame_offset_s")
    if offset is None and codebook_meta.get("receptive_field") and codebook_meta.get("sample_rate"):
        offset = codebook_meta["receptive_field"] / (2 * codebook_meta["sample_rate"])
    meta = {
        "format_version": STORE_FORMAT_VERSION,
        "kind": STORE_KIND,
        "codebook": codebook_meta,
        "codebook_sha256": codebook_meta.get("sha256"),
        "frame_rate": float(codebook_meta["frame_rate"]),
        "frame_offset_s": float(offset or 0.0),
        "vocab_size": int(codebook_meta["k"]),
        "dedup": bool(dedup),
    }
    streams = int(codebook_meta.get("streams") or 1)
    if streams > 1:
        if dedup:
            raise SpeechUnitsError(f"a {streams}-stream codebook ({codebook_meta.get('kind')}) gives units that "
                                   "are not deduplicated; drop --dedup")
        meta["streams"] = streams
    return meta


def store_schema(dedup: bool) -> pa.Schema:
    fields = [pa.field("id", pa.string(), nullable=False), pa.field("units", pa.list_(pa.int32()), nullable=False)]
    if dedup:
        fields.append(pa.field("durations", pa.list_(pa.int32()), nullable=False))
    fields += [pa.field("num_frames", pa.int64(), nullable=False), pa.field("duration_s", pa.float64(), nullable=False)]
    return pa.schema(fields)


class UnitStore:
    """Read access to a unit store.

    Iteration yields ``(utt_id, Units)`` in shard-name order, rows in written order.
    """

    def __init__(self, path: Path, meta: dict[str, Any], shards: list[Path]):
        self.path = path
        self.meta = meta
        self.shards = shards

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, codebook_sha256: str | None = None) -> "UnitStore":
        """Open a store directory; every shard must carry the same codebook and settings.

        Args:
            codebook_sha256: if given, the store must hold units of this codebook.

        Raises:
            SpeechUnitsError: missing directory, no metadata, an unreadable shard, shards
                from different codebooks / dedup settings, or units of another codebook.
        """
        path = Path(path)
        if not path.is_dir():
            raise SpeechUnitsError(f"{path}: no such unit store directory")
        shards = shard_files(path)
        meta = directory_meta(path, shards)
        if meta is None:
            streams = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.startswith("stream"))
            if streams:
                raise SpeechUnitsError(f"{path}: holds one unit store per codebook stream; open one of "
                                       f"{', '.join(streams)}")
            raise SpeechUnitsError(f"{path}: not a unit store (no .parquet shards or .speechunits.json)")
        if meta.get("kind") != STORE_KIND:
            raise SpeechUnitsError(f"{path}: holds {meta.get('kind')!r} data, not a unit store")
        for shard in shards:
            check_same(meta, read_file_meta(shard), MATCH_KEYS, str(shard),
                       hint="shards of different stores were mixed in one directory")
        if codebook_sha256 is not None and meta.get("codebook_sha256") != codebook_sha256:
            raise SpeechUnitsError(f"{path}: holds units of codebook {meta.get('codebook_sha256')}, "
                                   f"not of the expected codebook {codebook_sha256}")
        return cls(path, meta, shards)

    @property
    def dedup(self) -> bool:
        return bool(self.meta["dedup"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def frame_rate(self) -> float:
        return float(self.meta["frame_rate"])

    @property
    def streams(self) -> int:
        """Parallel unit streams per frame (1 unless the codebook is multi-stream, e.g. dMel)."""
        return int(self.meta.get("streams") or 1)

    def __len__(self) -> int:
        return sum(pq.ParquetFile(shard).metadata.num_rows for shard in self.shards)

    def ids(self) -> list[str]:
        """Utterance ids in store order (duplicates are an error: the store was tampered with)."""
        ids: list[str] = []
        for _, batch in iter_record_batches(self.shards, columns=["id"]):
            ids.extend(batch.column(0).to_pylist())
        if len(set(ids)) != len(ids):
            raise SpeechUnitsError(f"{self.path}: some utterance ids are stored more than once")
        return ids

    def __iter__(self) -> Iterator[tuple[str, Units]]:
        for utt_id, units, _ in self.iter_rows():
            yield utt_id, units

    def iter_rows(self) -> Iterator[tuple[str, Units, float]]:
        """``(utt_id, Units, duration_s)`` for every stored utterance (single-stream stores only)."""
        if self.streams > 1:
            raise SpeechUnitsError(f"{self.path}: holds {self.streams} parallel unit streams "
                                   f"({self.meta.get('codebook', {}).get('kind')}), not one unit sequence per "
                                   "utterance; read it with UnitStore.iter_multistream() or decode it with "
                                   "`speechunits units decode`")
        for path, utt_id, ids, durations, num_frames, seconds in self._rows():
            units = Units(ids, self.frame_rate, self.vocab_size, durations)
            if units.num_frames != num_frames:
                raise SpeechUnitsError(f"{path}: {utt_id!r}: num_frames {num_frames} does not match "
                                       f"its units ({units.num_frames} frames)")
            yield utt_id, units, seconds

    def iter_multistream(self) -> Iterator[tuple[str, MultiStreamUnits, float]]:
        """``(utt_id, MultiStreamUnits [T, streams], duration_s)`` for every stored utterance (any
        store; a deduplicated single-stream one is expanded to frames)."""
        streams = self.streams
        for path, utt_id, ids, durations, num_frames, seconds in self._rows():
            flat = np.asarray(ids) if durations is None else np.repeat(ids, durations)
            if flat.size != num_frames * streams:
                raise SpeechUnitsError(f"{path}: {utt_id!r}: {flat.size} ids do not fill {num_frames} "
                                       f"frames of {streams} streams")
            yield utt_id, MultiStreamUnits(flat.reshape(-1, streams), self.frame_rate, self.vocab_size), seconds

    def _rows(self) -> Iterator[tuple[Path, str, Any, Any, int, float]]:
        """``(shard, id, units, durations or None, num_frames, duration_s)`` of every stored row."""
        for path, batch in iter_record_batches(self.shards):
            ids = batch.column("id").to_pylist()
            get_units = list_column(batch, "units")
            get_durations = list_column(batch, "durations") if self.dedup else None
            num_frames = batch.column("num_frames").to_numpy()
            seconds = batch.column("duration_s").to_pylist()
            for i, utt_id in enumerate(ids):
                yield (path, utt_id, get_units(i), None if get_durations is None else get_durations(i),
                       int(num_frames[i]), seconds[i])

    def to_dict(self) -> dict[str, Units]:
        """All utterances in memory, keyed by id."""
        return dict(iter(self))


class UnitWriter:
    """Resumable writer of a unit store (used by ``speechunits encode``).

    On construction it refuses a store made with another codebook or dedup setting, cleans
    what a killed run of the same job left, and fills :attr:`done` with the ids already stored
    (by any job); callers skip those. ``shard_seconds`` also bounds a shard by time (see
    :class:`~speechunits.units.parquet_dir.ShardWriter`'s ``max_seconds``).
    """

    def __init__(self, path: str | os.PathLike[str], meta: dict[str, Any], *, job: tuple[int, int] = (0, 1),
                 rows_per_file: int = DEFAULT_ROWS_PER_FILE, shard_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.meta = meta
        self._writer = ShardWriter(path, store_schema(meta["dedup"]), meta, match_keys=MATCH_KEYS, job=job,
                                   prefix=SHARD_PREFIX, rows_per_file=rows_per_file, max_seconds=shard_seconds,
                                   clock=clock)
        self.path = self._writer.directory

    @property
    def done(self) -> set[str]:
        return self._writer.done

    def add(self, utt_id: str, units: Units | MultiStreamUnits, duration_s: float | None = None) -> None:
        """Buffer one utterance; ``duration_s`` defaults to frames / frame rate."""
        streams = int(self.meta.get("streams") or 1)
        multi = isinstance(units, MultiStreamUnits)
        if multi != (streams > 1) or (multi and units.num_streams != streams):  # type: ignore[union-attr]
            got = f"{units.num_streams}-stream units" if multi else "single-stream units"  # type: ignore[union-attr]
            raise SpeechUnitsError(f"{self.path}: {utt_id!r}: {got} do not fit a store of {streams} stream(s)")
        if units.vocab_size != self.meta["vocab_size"] or units.frame_rate != self.meta["frame_rate"]:
            raise SpeechUnitsError(f"{self.path}: {utt_id!r}: units (K={units.vocab_size}, {units.frame_rate} Hz) "
                                   f"do not match the store (K={self.meta['vocab_size']}, {self.meta['frame_rate']} Hz)")
        if units.is_deduplicated != self.meta["dedup"]:
            raise SpeechUnitsError(f"{self.path}: {utt_id!r}: store dedup={self.meta['dedup']} but units "
                                   f"are {'deduplicated' if units.is_deduplicated else 'frame-level'}")
        row: dict[str, Any] = {"id": utt_id, "units": units.ids.reshape(-1).astype(np.int32)}
        if units.durations is not None:
            row["durations"] = units.durations.astype(np.int32)
        row["num_frames"] = units.num_frames
        row["duration_s"] = float(units.duration_s if duration_s is None else duration_s)
        self._writer.add(row)

    def flush(self) -> None:
        self._writer.flush()

    def flush_if_due(self) -> bool:
        """Write buffered rows if ``shard_seconds`` have passed since the last shard (thread-safe)."""
        return self._writer.flush_if_due()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "UnitWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_units(path: str | os.PathLike[str], items: Iterable[tuple[str, Units | MultiStreamUnits]],
                codebook_meta: dict[str, Any], *,
                dedup: bool | None = None, durations_s: dict[str, float] | None = None,
                rows_per_file: int = DEFAULT_ROWS_PER_FILE) -> UnitStore:
    """Write a complete store into a new (or empty) directory and open it.

    Args:
        items: ``(utt_id, Units)`` pairs; all deduplicated or all frame-level (``MultiStreamUnits``
            when the codebook's JSON has ``streams`` > 1).
        codebook_meta: the codebook's JSON.
        dedup: store flag; default: from the first item (``False`` for no items).
        durations_s: optional audio seconds per id (default: frames / frame rate).
    """
    path = Path(path)
    if shard_files(path):
        raise SpeechUnitsError(f"{path}: already holds a unit store; write into a new directory")
    iterator = iter(items)
    first = next(iterator, None)
    if dedup is None:
        dedup = bool(first is not None and first[1].is_deduplicated)
    meta = store_meta(codebook_meta, dedup)
    with UnitWriter(path, meta, rows_per_file=rows_per_file) as writer:
        if first is not None:
            for utt_id, units in _chain(first, iterator):
                writer.add(utt_id, units, None if durations_s is None else durations_s.get(utt_id))
    return UnitStore.open(path)


def _chain(first: tuple[str, Any], rest: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    yield first
    yield from rest
