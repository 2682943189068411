"""Resumable frame sampling for ``speechunits fit``: snapshots of the sample in progress.

The sampling pass of ``fit`` streams a corpus through the encoder (hours to days); what it has
done so far is the :class:`~speechunits.quantize.fit.FrameReservoir` (kept rows, their keys and
positions, the generator's state) plus how many utterances of the corpus it consumed. A
:class:`SampleCheckpoint` writes that state to ``CODEBOOK/.fit-sample/state-{seq}/`` whenever
``shard_seconds`` passed since the last snapshot (a background
:class:`~speechunits.timed_parts.TimedFlusher` also does it while the stream is stalled), each
through a temp directory renamed into place, so a killed ``fit`` loses at most about
``shard_seconds`` of sampling. The next run with the same settings (encoder, layer, dtype,
``--max-frames``, ``--seed``, the corpus' ids in order) restores the reservoir, skips the
consumed utterances, and ends with the *same* sample, hence the same codebook, as an
uninterrupted run. A snapshot costs one write of the kept rows (at most ``max_frames x D x 4``
bytes: 614 MB for 200k x 768), so ``shard_seconds`` should stay well above that write's time.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.fit import FrameReservoir
from speechunits.timed_parts import PartTimer

log = logging.getLogger(__name__)

CHECKPOINT_DIR = ".fit-sample"
FORMAT_VERSION = 1
_STATE_RE = re.compile(r"^state-(?P<seq>\d{6})$")


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 of the ids in order (a resumed run must see the same corpus in the same order)."""
    digest = hashlib.sha256()
    for utt_id in ids:
        digest.update(utt_id.encode("utf-8") + b"\n")
    return digest.hexdigest()


@dataclass
class SampleProgress:
    """Where a sampling pass stands: utterances consumed (a prefix of the corpus), those that
    gave frames, and ``(path, reason)`` of those skipped as bad input."""

    consumed: int = 0
    used: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class SampleCheckpoint:
    """Snapshots of one sampling pass (see the module docstring).

    Args:
        directory: where the snapshots live (``CODEBOOK/.fit-sample``).
        meta: the settings a resumed run must share (JSON-able).
        shard_seconds: a snapshot is due this long after the last one (``None``: only at
            :meth:`save` calls).
        clock: monotonic seconds (tests).

    Use: :meth:`load` (a resumed reservoir and progress, or fresh ones), then for every
    utterance ``with checkpoint.updating(): <change reservoir and progress>``; a
    :class:`~speechunits.timed_parts.TimedFlusher` on it calls :meth:`flush_if_due`.
    """

    def __init__(self, directory: str | os.PathLike[str], meta: dict[str, Any], *,
                 shard_seconds: float | None, clock: Callable[[], float] = time.monotonic):
        self.directory = Path(directory)
        self.meta = {"format_version": FORMAT_VERSION, **meta}
        self._timer = PartTimer(shard_seconds, clock)
        self._lock = threading.RLock()
        self.reservoir: FrameReservoir | None = None
        self.progress = SampleProgress()
        self.snapshots_written = 0
        self._dirty = False
        self._broken = False

    @property
    def shard_seconds(self) -> float | None:
        return self._timer.seconds

    def _states(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = [(int(m["seq"]), p) for p in self.directory.iterdir() if (m := _STATE_RE.match(p.name))]
        return sorted(found)

    def load(self, max_frames: int, seed: int) -> tuple[FrameReservoir, SampleProgress]:
        """The latest snapshot's reservoir and progress (fresh ones without a snapshot).

        Raises:
            SpeechUnitsError: a snapshot of other settings (naming both), or an unreadable one.
        """
        states = self._states()
        if not states:
            self.reservoir, self.progress = FrameReservoir(max_frames, seed), SampleProgress()
            return self.reservoir, self.progress
        path = states[-1][1]
        try:
            state = json.loads((path / "state.json").read_text(encoding="utf-8"))
            arrays = {name: np.load(path / f"{name}.npy") for name in ("x", "key", "pos")}
        except (OSError, ValueError) as exc:
            raise SpeechUnitsError(f"{path}: unreadable sampling snapshot ({exc}); delete {self.directory} "
                                   "to sample from the start") from exc
        diffs = [f"{key}: {state['meta'].get(key)!r} != {value!r}" for key, value in self.meta.items()
                 if state["meta"].get(key) != value]
        if diffs:
            raise SpeechUnitsError(f"{self.directory}: a sampling pass in progress with other settings "
                                   f"({'; '.join(diffs)}); delete it, or fit into another -o")
        self.reservoir = FrameReservoir.from_state(arrays, state["reservoir"])
        progress = state["progress"]
        self.progress = SampleProgress(int(progress["consumed"]), int(progress["used"]),
                                       [(str(p), str(r)) for p, r in progress["skipped"]])
        log.info("%s: resuming the frame sample after %d utterance(s) (%d frames seen)", self.directory,
                 self.progress.consumed, self.reservoir.seen)
        return self.reservoir, self.progress

    @contextlib.contextmanager
    def updating(self) -> Iterator[None]:
        """Hold the snapshot lock while the caller changes the reservoir and progress of one
        utterance; then write a snapshot if one is due."""
        with self._lock:
            try:
                yield
            except BaseException:  # an update cut short (Ctrl-C inside it): this state is never written
                self._broken = True
                raise
            self._dirty = True
            self._timer.row()
            self.flush_if_due()

    def flush_if_due(self) -> bool:
        """Write a snapshot if ``shard_seconds`` passed since the last one (thread-safe)."""
        with self._lock:
            if not self._dirty or not self._timer.due():
                return False
            self.save()
            return True

    def save(self) -> Path | None:
        """Write a snapshot now (temp directory, fsync, rename), then drop the older ones. Nothing
        is written once an update was cut short (the reservoir may be half-changed)."""
        with self._lock:
            if self.reservoir is None or self._broken:
                return None
            arrays, info = self.reservoir.state()
            self.directory.mkdir(parents=True, exist_ok=True)
            states = self._states()
            seq = states[-1][0] + 1 if states else 0
            tmp = self.directory / f".state-{seq:06d}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name, array in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as handle:
                    np.save(handle, array)
                    handle.flush()
                    os.fsync(handle.fileno())
            progress = {"consumed": self.progress.consumed, "used": self.progress.used,
                        "skipped": [list(x) for x in self.progress.skipped]}
            (tmp / "state.json").write_text(json.dumps({"meta": self.meta, "reservoir": info, "progress": progress}),
                                            encoding="utf-8")
            final = self.directory / f"state-{seq:06d}"
            os.rename(tmp, final)
            for _, old in states:
                shutil.rmtree(old, ignore_errors=True)
            for stale in self.directory.glob(".state-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            self.snapshots_written += 1
            self._dirty = False
            self._timer.closed()
            log.debug("sampling snapshot %s: %d utterance(s), %d frames seen", final, self.progress.consumed,
                      self.reservoir.seen)
            return final

    def remove(self) -> None:
        """Delete every snapshot (the codebook is saved: the pass is over)."""
        shutil.rmtree(self.directory, ignore_errors=True)
