"""One training run per output directory: a second process aiming at the same ``-o`` is refused.

Two trainings started into one directory (the same command in two terminals, a job resubmitted
while the first still runs) would overwrite each other's checkpoints and leave a model directory
mixed from both. :func:`exclusive_output` holds an advisory ``flock`` on the directory itself for
as long as the command runs; nothing is written into it, and the kernel drops the lock when the
process ends, however it ends. Under ``torchrun`` only rank 0 takes it (the ranks of one job share
their directory). Where ``fcntl`` is missing (Windows) nothing is locked.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from speechunits.errors import SpeechUnitsError


@contextlib.contextmanager
def exclusive_output(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Create ``out_dir`` if needed and hold an exclusive lock on it until the block ends (a directory
    this created and nothing filled is removed again).

    Raises:
        SpeechUnitsError: another process holds it (naming the directory).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    if int(os.environ.get("RANK", "0") or 0) != 0:
        yield
        return
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            created = False  # the other run's directory
            raise SpeechUnitsError(f"{out}: another training run is writing this directory now; wait for it "
                                   "to end, or train into another -o") from None
        yield
    finally:
        if created:  # a command refused before it wrote anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty
        os.close(fd)  # releases the lock
