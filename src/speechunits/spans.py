"""Time ranges of audio files as utterances.

Kaldi/ESPnet ``segments`` files and NeMo manifests with ``offset`` make an utterance of a stretch
of a longer recording. Such an utterance's ``path`` is ``FILE#t=START,END`` (seconds; the W3C
media-fragment spelling; ``END`` empty: to the end of the file), and
:meth:`speechunits.audio.Audio.load` (through :func:`speechunits.audio.open_sound_file`) reads
only that stretch, seeking in the file instead of decoding what lies before it where the format
allows (wav, flac).
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from speechunits.errors import SpeechUnitsError

_SPAN = re.compile(r"^(?P<file>.+)#t=(?P<start>\d+(?:\.\d*)?),(?P<end>\d+(?:\.\d*)?)?$")
#: How far past a file's end a span may claim to reach (Kaldi segments are rounded to 10 ms).
END_TOLERANCE_S = 0.05


def span_path(file: str | os.PathLike[str], start_s: float, end_s: float | None) -> str:
    """The ``path`` of the stretch ``[start_s, end_s)`` of ``file`` (``end_s=None``: to its end).

    Raises:
        SpeechUnitsError: a negative start, or an end not after the start.
    """
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise SpeechUnitsError(f"{file}: a time range needs 0 <= start < end, got {start_s}-{end_s}")
    return f"{file}#t={_seconds(start_s)},{'' if end_s is None else _seconds(end_s)}"


def _seconds(value: float) -> str:
    """Seconds to the microsecond, without trailing zeros (exact enough to find the sample at any rate
    up to 192 kHz again with ``round(seconds * rate)``)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def parse_span_path(path: str | os.PathLike[str]) -> tuple[str, float, float | None] | None:
    """``(file, start_s, end_s or None)`` of a :func:`span_path`, else ``None``."""
    hit = _SPAN.match(str(path))
    if hit is None:
        return None
    return hit["file"], float(hit["start"]), float(hit["end"]) if hit["end"] else None


class SoundSpan:
    """A stretch of an open ``soundfile.SoundFile``, read like one: ``samplerate``, ``channels``,
    ``subtype``, ``frames`` (of the stretch), ``seek`` and ``read`` relative to its start."""

    def __init__(self, handle: Any, start_s: float, end_s: float | None, where: str):
        self._handle = handle
        rate = int(handle.samplerate)
        total = int(handle.frames)
        self._start = int(round(start_s * rate))
        stop = total if end_s is None else int(round(end_s * rate))
        if self._start >= total or stop > total + int(END_TOLERANCE_S * rate):
            handle.close()
            raise SpeechUnitsError(f"{where}: the time range {start_s:g}-{'end' if end_s is None else f'{end_s:g}'} s "
                                   f"lies outside the recording ({total / rate:.3f} s)")
        self.frames = min(stop, total) - self._start
        self._position = 0
        try:
            handle.seek(self._start)
        except (RuntimeError, ValueError, OSError) as exc:  # libsndfile: a stream it cannot seek in
            handle.close()
            raise SpeechUnitsError(f"{where}: cannot seek to {start_s:g} s ({exc})") from exc

    samplerate = property(lambda self: self._handle.samplerate)
    channels = property(lambda self: self._handle.channels)
    subtype = property(lambda self: self._handle.subtype)

    def seek(self, frame: int) -> int:
        """Move to ``frame`` of the stretch (0-based)."""
        self._position = max(0, min(int(frame), self.frames))
        self._handle.seek(self._start + self._position)
        return self._position

    def read(self, frames: int = -1, dtype: str = "float64", always_2d: bool = False) -> np.ndarray:
        """Up to ``frames`` frames (``-1``: the rest of the stretch), as ``SoundFile.read``."""
        left = self.frames - self._position
        count = left if frames < 0 else min(int(frames), left)
        data = self._handle.read(count, dtype=dtype, always_2d=always_2d)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "SoundSpan":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
