"""Output directories behind a filesystem URI (``s3://``, ``gs://``, ``hdfs://``, ``file://`` ...).

The unit store writer works on a local directory (atomic renames, fsync). For a URI we
*stage*: the remote directory is mirrored into a local temp directory, the ordinary writer
runs there, and :meth:`StagedDirectory.sync` uploads every new or changed file (through a
hidden temp name and a move, so readers never see a half-written shard) and deletes remote
files the writer removed (e.g. a quarantined corrupt shard). A rerun after a crash downloads
what was uploaded and resumes from it, so URIs get the same resume guarantee as local paths.

Filesystems come from ``pyarrow.fs.FileSystem.from_uri`` (S3, GCS, HDFS, local); anything
fsspec knows works through ``pyarrow.fs.PyFileSystem(FSSpecHandler(fs))`` as well.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

#: Files that are never uploaded (a writer's in-progress temp files).
SKIP_SUFFIXES = (".tmp", ".partial")


def is_uri(path: str | os.PathLike[str]) -> bool:
    """``True`` for ``scheme://...`` outputs (local paths are written directly)."""
    return "://" in str(path)


def filesystem_for(uri: str) -> tuple[Any, str]:
    """``(pyarrow FileSystem, path inside it)`` for ``uri``."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise SpeechUnitsError(f"--out {uri}: unsupported or unreachable filesystem URI ({exc})") from exc


class StagedDirectory:
    """A local mirror of a remote directory; use as a context manager.

    Attributes:
        uri: the remote directory.
        local: the local staging directory (hand it to the ordinary writer).
    """

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem_for(self.uri)
        self.root = self.root.rstrip("/")
        self.local = Path(tempfile.mkdtemp(prefix="speechunits-stage-"))
        self._synced: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) uploaded/downloaded

    # -- life cycle ------------------------------------------------------------------------------
    def __enter__(self) -> "StagedDirectory":
        try:
            self.download()
        except BaseException:
            shutil.rmtree(self.local, ignore_errors=True)
            raise
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        try:
            self.sync()
        finally:
            shutil.rmtree(self.local, ignore_errors=True)

    def subpath(self, relative: str | os.PathLike[str]) -> Path:
        return self.local / relative

    # -- transfers -------------------------------------------------------------------------------
    def download(self) -> int:
        """Copy the remote directory (if any) into the staging directory; returns files copied."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.File:
            raise SpeechUnitsError(f"--out {self.uri}: exists and is a file, not a directory")
        if info.type == pafs.FileType.NotFound:
            return 0
        count = 0
        for entry in self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True)):
            if entry.type != pafs.FileType.File:
                continue
            rel = entry.path[len(self.root):].lstrip("/")
            if rel.endswith(SKIP_SUFFIXES) or Path(rel).name.startswith(".upload-"):
                continue
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(entry.path) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            self._synced[rel] = self._stamp(target)
            count += 1
        log.info("%s: resumed from %d remote file(s)", self.uri, count)
        return count

    def sync(self) -> int:
        """Upload new/changed files (shards first), delete remote files removed locally; returns uploads."""
        present = {p.relative_to(self.local).as_posix(): p for p in self.local.rglob("*")
                   if p.is_file() and not p.name.endswith(SKIP_SUFFIXES)}
        changed = [rel for rel, p in present.items() if self._synced.get(rel) != self._stamp(p)]
        changed.sort(key=lambda rel: (Path(rel).name.startswith("."), rel))  # data before sidecars
        for rel in changed:
            self._upload(present[rel], rel)
        for rel in [r for r in self._synced if r not in present]:
            remote = f"{self.root}/{rel}"
            log.debug("deleting %s (removed by the writer)", remote)
            try:
                self.fs.delete_file(remote)
            except (FileNotFoundError, OSError):
                pass
            del self._synced[rel]
        return len(changed)

    def _upload(self, path: Path, rel: str) -> None:
        stamp = self._stamp(path)
        remote = f"{self.root}/{rel}"
        parent = remote.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.upload-{Path(rel).name}.tmp"
        with open(path, "rb") as src, self.fs.open_output_stream(tmp) as dst:
            shutil.copyfileobj(src, dst)
        self.fs.move(tmp, remote)
        self._synced[rel] = stamp
        log.debug("uploaded %s", remote)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
