"""A directory of Parquet shards written atomically and resumably.

Layout of a shard directory::

    DIR/{prefix}-{i:05d}of{n:05d}-{seq:06d}.parquet   complete shards (one writer job "i/n" each)
    DIR/.{final name}.{pid}.tmp                        a shard being written (linked to its name when complete)
    DIR/.{final name}.corrupt                          an unreadable shard moved aside on resume
    DIR/.speechunits.json                              the directory's metadata (also in every shard)

Every shard holds complete rows (whole utterances) and carries the metadata JSON under the
Parquet file-metadata key ``speechunits``. Hidden names (``.``) are skipped by
``pyarrow.dataset`` and by ``datasets.load_dataset("parquet", data_dir=...)``, so temp files,
quarantined shards and the sidecar never disturb readers.

A killed writer leaves at most a temp file; on restart :class:`ShardWriter` removes its own
job's temp files, moves unreadable shards aside, and reports the keys already stored so the
caller skips them. Jobs with different ``i/n`` never write the same file name.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object, write_json_atomic
from speechunits.locks import ExclusiveLock

log = logging.getLogger(__name__)

#: Parquet file-metadata key holding the JSON metadata.
META_KEY = b"speechunits"
#: Sidecar with the same metadata, so an empty directory already knows what it holds.
SIDECAR = ".speechunits.json"
#: Rows per shard file unless told otherwise (a killed run loses at most this many rows).
DEFAULT_ROWS_PER_FILE = 500
#: Seconds after which a corpus run writes a shard however few rows it holds (``encode
#: --shard-seconds``): a killed run loses at most about this much finished work.
DEFAULT_SHARD_SECONDS = 60.0
COMPRESSION = "zstd"

_SHARD_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_]+)-(?P<i>\d+)of(?P<n>\d+)-(?P<seq>\d+)\.parquet$")


_TEMP_RE = re.compile(r"^\..+\.parquet\.(?P<pid>\d+)\.tmp$")


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(tmp: Path, final: Path) -> bool:
    """Atomically give ``tmp`` the name ``final`` unless ``final`` exists; False if it does."""
    try:
        os.link(tmp, final)  # fails instead of overwriting
    except FileExistsError:
        return False
    except OSError:  # file systems without hard links: rename (atomic, but may overwrite)
        if final.exists():
            return False
        os.replace(tmp, final)
        return True
    tmp.unlink()
    return True


class CorruptShardError(SpeechUnitsError):
    """A shard file that cannot be read (e.g. truncated by a crash)."""


def shard_files(directory: Path) -> list[Path]:
    """Complete shard files of ``directory`` in name order (hidden files excluded)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))


def read_file_meta(path: Path) -> dict[str, Any]:
    """The ``speechunits`` metadata of one shard.

    Raises:
        SpeechUnitsError: unreadable Parquet, or no/invalid ``speechunits`` metadata.
    """
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptShardError(f"{path}: unreadable Parquet shard ({exc}); if a run was killed, "
                                "run the same command again to recover") from exc
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise SpeechUnitsError(f"{path}: Parquet file without 'speechunits' metadata (not written by speechunits)")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpeechUnitsError(f"{path}: invalid 'speechunits' metadata ({exc.msg})") from exc


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    path = directory / SIDECAR
    if not path.is_file():
        return None
    return read_json_object(path)


def directory_meta(directory: Path, shards: list[Path] | None = None) -> dict[str, Any] | None:
    """Metadata of a shard directory (sidecar, else first shard); ``None`` if neither exists."""
    meta = read_sidecar(directory)
    if meta is not None:
        return meta
    shards = shard_files(directory) if shards is None else shards
    return read_file_meta(shards[0]) if shards else None


def check_same(expected: dict[str, Any], found: dict[str, Any], keys: Iterable[str], where: str,
               hint: str = "use another output directory") -> None:
    """Refuse metadata that differs from ``expected`` in any of ``keys``."""
    diffs = [f"{key}: {found.get(key)!r} != {expected.get(key)!r}" for key in keys if found.get(key) != expected.get(key)]
    if diffs:
        raise SpeechUnitsError(f"{where}: holds data made with different settings ({'; '.join(diffs)}); {hint}")


class ShardWriter:
    """Appends rows to a shard directory, one atomically written Parquet file per ``rows_per_file``
    rows, or sooner: when a row arrives ``max_seconds`` or more after the last shard was written
    (before the first shard: after the first row arrived, so a slow start-up - loading a model,
    starting Ray - does not close a shard early), the buffer including that row becomes a shard.

    Args:
        directory: the shard directory (created if missing).
        schema: Arrow schema of every shard (metadata is added here).
        meta: JSON-able metadata; must agree with what the directory already holds on ``match_keys``.
        match_keys: metadata keys that must be equal for an append to be allowed.
        key_column: the column whose values identify rows (utterance ids).
        job: ``(i, n)`` of this writer; files are named after it so concurrent jobs never clash.
        prefix: file name prefix.
        rows_per_file: rows buffered before a shard is written.
        max_seconds: time bound of a shard (``None``: rows only). Rows that finish within
            ``max_seconds`` of the last shard wait in memory; so a killed writer loses the rows
            finished in the last ``max_seconds`` at most (plus whatever its producer had in flight).
        clock: monotonic seconds (injectable for tests).

    After construction, :attr:`done` holds the keys already stored (by any job).
    """

    def __init__(self, directory: str | os.PathLike[str], schema: pa.Schema, meta: dict[str, Any], *,
                 match_keys: Iterable[str], key_column: str = "id", job: tuple[int, int] = (0, 1),
                 prefix: str = "part", rows_per_file: int = DEFAULT_ROWS_PER_FILE,
                 max_seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rows_per_file < 1:
            raise SpeechUnitsError(f"rows per file must be >= 1, got {rows_per_file}")
        if max_seconds is not None and not max_seconds > 0:
            raise SpeechUnitsError(f"shard seconds must be > 0, got {max_seconds}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", prefix):
            raise SpeechUnitsError(f"shard prefix must be alphanumeric, got {prefix!r}")
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise SpeechUnitsError(f"{self.directory}: exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema.with_metadata({META_KEY: json.dumps(meta, sort_keys=True).encode()})
        self.meta = meta
        self.match_keys = list(match_keys)
        self.key_column = key_column
        self.job = job
        self.prefix = prefix
        self.rows_per_file = rows_per_file
        self.max_seconds = max_seconds
        self._clock = clock
        self._rows: list[dict[str, Any]] = []
        self.files_written = 0
        self._stem = f"{prefix}-{job[0]:05d}of{job[1]:05d}"
        # one writer per job: two would both skip nothing and store every row twice
        self._job_lock = ExclusiveLock(
            self.directory / f".{self._stem}.lock",
            f"{self.directory}: job {job[0]}/{job[1]} is being written by another process now; wait for it "
            "to end, or give concurrent jobs different --shard values")
        try:
            self._remove_own_temps()
            self.done: set[str] = self._recover()
            self._seq = self._next_seq()
        except BaseException:  # refused (other settings, ...): no lock outlives the refusal
            self._job_lock.release()
            raise
        self._last_shard: float | None = None  # clock() of the last shard, or of the first row
        self._lock = threading.RLock()  # add/flush may be called from a flushing thread too

    # -- start-up --------------------------------------------------------------------------------
    def _remove_own_temps(self) -> None:
        """Delete this job's temp files, except those of a live process on this host (a duplicate job)."""
        for path in self.directory.iterdir():
            match = _TEMP_RE.match(path.name)
            if not match or not path.name.startswith(f".{self._stem}-"):
                continue
            pid = int(match["pid"])
            if pid != os.getpid() and process_alive(pid):
                log.warning("%s: another live process (%d) is writing job %d/%d into this directory",
                            path, pid, *self.job)
                continue
            log.warning("%s: removing a partial shard left by a killed run", path)
            path.unlink(missing_ok=True)

    def _recover(self) -> set[str]:
        """Check metadata, quarantine unreadable shards, collect stored keys."""
        where = str(self.directory)
        sidecar = read_sidecar(self.directory)
        if sidecar is not None:
            check_same(sidecar, self.meta, self.match_keys, where)
        done: set[str] = set()
        for path in shard_files(self.directory):
            try:
                file_meta = read_file_meta(path)
                keys = pq.read_table(path, columns=[self.key_column]).column(0).to_pylist()
            except (CorruptShardError, OSError, pa.ArrowException) as exc:
                self._quarantine(path, exc)
                continue
            check_same(file_meta, self.meta, self.match_keys, str(path))
            done.update(keys)
        if sidecar is None:
            write_json_atomic(self.directory / SIDECAR, self.meta)
        return done

    def _quarantine(self, path: Path, exc: BaseException) -> None:
        target = path.with_name(f".{path.name}.corrupt")
        n = 1
        while target.exists():
            target = path.with_name(f".{path.name}.corrupt{n}")
            n += 1
        try:
            os.replace(path, target)
        except FileNotFoundError:  # another job moved it first
            return
        log.warning("%s: unreadable shard (%s) moved to %s; its rows will be written again", path, exc, target.name)

    def _next_seq(self) -> int:
        seqs = [int(m["seq"]) for p in shard_files(self.directory)
                if (m := _SHARD_RE.match(p.name)) and p.name.startswith(self._stem + "-")]
        return max(seqs, default=-1) + 1

    # -- writing ---------------------------------------------------------------------------------
    def add(self, row: dict[str, Any]) -> None:
        """Buffer one complete row; writes a shard when ``rows_per_file`` rows are buffered or
        ``max_seconds`` have passed since the last shard."""
        key = row[self.key_column]
        with self._lock:
            if key in self.done:
                raise SpeechUnitsError(f"{self.directory}: {self.key_column} {key!r} is already stored")
            self._rows.append(row)
            self.done.add(key)
            if self._last_shard is None and self.max_seconds is not None:
                self._last_shard = self._clock()
            if len(self._rows) >= self.rows_per_file or self._due():
                self.flush()

    def _due(self) -> bool:
        return (self.max_seconds is not None and self._last_shard is not None
                and self._clock() - self._last_shard >= self.max_seconds)

    def flush_if_due(self) -> bool:
        """Write the buffered rows if ``max_seconds`` have passed since the last shard (for a
        thread that calls this while the producer of rows is slow); returns whether it wrote."""
        with self._lock:
            if not self._rows or not self._due():
                return False
            self.flush()
            return True

    def flush(self) -> None:
        """Write buffered rows as one shard (temp name, fsync, atomic rename)."""
        with self._lock:
            if not self._rows:
                return
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            tmp = self.directory / f".{self._stem}-{self._seq:06d}.parquet.{os.getpid()}.tmp"
            pq.write_table(table, tmp, compression=COMPRESSION)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            while True:  # never overwrite a shard (a duplicate job may have taken the name)
                final = self.directory / f"{self._stem}-{self._seq:06d}.parquet"
                self._seq += 1
                if _publish(tmp, final):
                    break
            log.debug("wrote %s (%d rows)", final, table.num_rows)
            self.files_written += 1
            self._rows = []
            self._last_shard = self._clock()

    def close(self) -> None:
        """Write what is buffered, then let another writer of this job in."""
        try:
            self.flush()
        finally:
            self._job_lock.release()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Buffered rows are complete, so they are worth keeping even when the caller failed.
        self.close()


def iter_record_batches(shards: list[Path], columns: list[str] | None = None,
                        batch_size: int = 1024) -> Iterator[tuple[Path, pa.RecordBatch]]:
    """Record batches of every shard in order, with clear errors for unreadable files."""
    for path in shards:
        try:
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                yield path, batch
        except (OSError, pa.ArrowException) as exc:
            raise CorruptShardError(f"{path}: unreadable Parquet shard ({exc}); if a run was killed, "
                                    "run the same command again to recover") from exc


def list_column(batch: pa.RecordBatch, name: str) -> Callable[[int], Any]:
    """Fast row accessor for a ``list<int>`` column: ``get(i) -> int64 ndarray``."""
    import numpy as np

    column = batch.column(name)
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)

    def get(i: int) -> np.ndarray:
        return values[offsets[i]:offsets[i + 1]]

    return get
