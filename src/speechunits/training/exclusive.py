"""One training run per output directory: a second process aiming at the same ``-o`` is refused.

Two trainings started into one directory (the same command in two terminals, a job resubmitted
while the first still runs) would overwrite each other's checkpoints and leave a model directory
mixed from both. :func:`exclusive_output` holds an :class:`~speechunits.locks.ExclusiveLock` on the
directory itself for as long as the command runs (nothing is written into it). Under ``torchrun``
only rank 0 takes it: the ranks of one job share their directory.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from speechunits.locks import ExclusiveLock


@contextlib.contextmanager
def exclusive_output(out_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Create ``out_dir`` if needed and hold an exclusive lock on it until the block ends (a directory
    this created and nothing filled is removed again).

    Raises:
        SpeechUnitsError: another process holds it (naming the directory).
    """
    if int(os.environ.get("RANK", "0") or 0) != 0:
        yield
        return
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = ExclusiveLock(out, f"{out}: another training run is writing this directory now; wait for it "
                              "to end, or train into another -o")
    try:
        yield
    finally:
        if created:  # a command refused before it wrote anything leaves no empty directory behind
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty
        lock.release()
