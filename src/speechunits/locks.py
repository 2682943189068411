"""Advisory locks that keep two processes from writing the same thing at once.

:class:`ExclusiveLock` holds a non-blocking ``flock`` on a file (created if missing) or a directory.
The kernel drops it when the holder closes it or ends, however it ends, so a killed run never
leaves a stale lock behind. Where ``fcntl`` is missing (Windows) or the filesystem cannot lock,
nothing is locked (the latter with a warning).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


class ExclusiveLock:
    """Hold an exclusive lock on ``path`` until :meth:`release` (or the end of the process).

    Raises:
        SpeechUnitsError: ``busy`` when another open of ``path`` (another process, or another
            lock in this one) holds it.
    """

    def __init__(self, path: str | os.PathLike[str], busy: str):
        self.path = Path(path)
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX
            return
        fd = os.open(self.path, os.O_RDONLY if self.path.is_dir() else os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpeechUnitsError(busy) from None
        except OSError as exc:  # a filesystem without flock (ENOLCK, EOPNOTSUPP): go on unlocked, as on Windows
            os.close(fd)
            log.warning("%s: cannot lock here (%s); nothing keeps a second writer out", self.path, exc.strerror)
            return
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # an owner dropped without release() frees the lock with it
        self.release()
