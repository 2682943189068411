"""Progress bars for long jobs: audio hours done, speed as x real time, ETA."""
from __future__ import annotations

import sys
import time
from types import TracebackType

from tqdm import tqdm


class AudioProgress:
    """Progress over a known (or estimated) total of audio seconds.

    ``update(seconds)`` after each processed chunk of audio. The bar shows hours done,
    hours total, x real time (audio seconds per wall second) and tqdm's ETA. ``quiet``
    disables it entirely.
    """

    def __init__(self, total_seconds: float | None, desc: str = "audio", quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()
        self.done_seconds = 0.0
        self._bar = None
        if not quiet:
            total_h = None if total_seconds is None else total_seconds / 3600.0
            self._bar = tqdm(
                total=total_h,
                desc=desc,
                unit="h",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} h audio [{elapsed}<{remaining}{postfix}]"
                if total_h
                else "{desc}: {n:.3f} h audio [{elapsed}{postfix}]",
                mininterval=0.5,
            )

    def update(self, audio_seconds: float) -> None:
        self.done_seconds += audio_seconds
        if self._bar is not None:
            step = audio_seconds / 3600.0
            if self._bar.total:
                # Totals come from file headers; resampling rounds lengths, so never run past them.
                step = min(step, max(self._bar.total - self._bar.n, 0.0))
            self._bar.update(step)
            self._bar.set_postfix_str(f"{self.realtime_factor:.1f}x real time", refresh=False)

    @property
    def realtime_factor(self) -> float:
        """Audio seconds processed per wall-clock second so far."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return self.done_seconds / elapsed

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "AudioProgress":
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
