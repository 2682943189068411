"""Long runs keep their work in parts closed at N rows or T seconds: the shared timing pieces.

Every corpus job that may run for days keeps what it finished on disk in *parts* (``encode``:
Parquet shards; ``features``: frame parts under ``OUT/.parts``; ``fit``: snapshots of the frame
sample), each closed when it holds N rows or T seconds (``--shard-seconds``) have passed since
the last one, so a killed run loses at most about T of finished work. The rows/seconds rule of
the Parquet shards lives in :class:`~speechunits.units.parquet_dir.ShardWriter` (which the
features parts use for their index); this module holds what the jobs share around it:

* :class:`TimedFlusher` - a daemon thread that closes a due part also while the producer of
  rows is stalled (a slow file, a restarting worker), by calling ``flush_if_due()`` of each writer.
* :class:`PartTimer` - the time half of the rule for writers that are not row-based (fit's
  sample snapshots).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol, Sequence

log = logging.getLogger(__name__)


class Flushable(Protocol):
    def flush_if_due(self) -> bool:
        """Close the open part if it is due (thread-safe); returns whether it did."""


class TimedFlusher:
    """A daemon thread that calls ``flush_if_due()`` of every writer each ``interval_s`` seconds,
    so a finished row reaches disk within the writers' time bound + ``interval_s`` even while no
    further row arrives. Use as a context manager; a write error in the thread is raised on exit."""

    def __init__(self, writers: Sequence[Flushable], interval_s: float):
        self._writers = list(writers)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="speechunits-part-flusher", daemon=True)

    @classmethod
    def for_seconds(cls, writers: Sequence[Flushable], seconds: float) -> "TimedFlusher":
        """A flusher that checks four times per ``seconds`` (at least once a second)."""
        return cls(writers, min(1.0, seconds / 4))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                for writer in self._writers:
                    writer.flush_if_due()
            except Exception as exc:  # e.g. a full disk: stop flushing here, report it on exit
                log.error("writing a part failed: %s", exc)
                self._error = exc
                return

    def __enter__(self) -> "TimedFlusher":
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._error is not None and exc_type is None:
            raise self._error


class PartTimer:
    """When the open part is due: ``seconds`` after the last part was closed; before the first
    one, ``seconds`` after the first row arrived (so a slow start-up - loading a model, starting
    Ray - does not close a part early). The same rule as ``ShardWriter``'s ``max_seconds``.

    Args:
        seconds: the time bound (``None``: never due by time).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        if seconds is not None and not seconds > 0:
            from speechunits.errors import SpeechUnitsError

            raise SpeechUnitsError(f"shard seconds must be > 0, got {seconds}")
        self.seconds = seconds
        self._clock = clock
        self._last: float | None = None

    def row(self) -> None:
        """A row arrived (starts the clock of the first part)."""
        if self._last is None and self.seconds is not None:
            self._last = self._clock()

    def due(self) -> bool:
        return self.seconds is not None and self._last is not None and self._clock() - self._last >= self.seconds

    def closed(self) -> None:
        """A part was just closed."""
        self._last = self._clock()
