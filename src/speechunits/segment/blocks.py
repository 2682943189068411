"""Read a long audio file in blocks, mono and resampled, in bounded memory.

The same conventions as :meth:`speechunits.audio.Audio.load` (supported extensions, downmix
by averaging or one chosen channel, NaN/Inf and empty files rejected, soxr "HQ"), but a
block at a time: soundfile reads ``block_seconds`` of the file, soxr's ``ResampleStream``
carries the filter state across blocks, so memory does not grow with the file's length.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from speechunits.audio import AUDIO_EXTENSIONS
from speechunits.errors import SpeechUnitsError

#: Seconds of source audio read at a time.
DEFAULT_BLOCK_SECONDS = 60.0


class Block(NamedTuple):
    """One block: ``samples`` float32 mono ``[t]`` at the requested rate, and the stretch of the
    file it came from (``source_frames`` at ``source_rate``)."""

    samples: np.ndarray
    source_frames: int
    source_rate: int


def iter_blocks(path: str | os.PathLike[str], sample_rate: int, *, channel: int | None = None,
                block_seconds: float = DEFAULT_BLOCK_SECONDS) -> Iterator[Block]:
    """Yield the file as :class:`Block` s. Concatenated, their samples are the whole file
    resampled to ``sample_rate`` (streaming soxr: equal to one-shot resampling up to filter
    rounding at the block edges).

    Raises:
        SpeechUnitsError: unsupported extension, missing/unreadable/corrupt/empty file,
            a channel the file does not have, NaN/Inf samples.
    """
    import soundfile as sf
    import soxr

    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise SpeechUnitsError(
            f"{path}: unsupported audio extension {path.suffix!r} (supported: {', '.join(AUDIO_EXTENSIONS)})")
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: no such file")
    try:
        handle = sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile raises several types for corrupt data
        raise SpeechUnitsError(f"{path}: unreadable or corrupt audio ({exc})") from exc
    with handle:
        rate, channels = int(handle.samplerate), int(handle.channels)
        if channel is not None and not 0 <= channel < channels:
            raise SpeechUnitsError(f"{path}: channel {channel} requested but the file has {channels}")
        stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
        block = max(int(block_seconds * rate), 1)
        total = 0
        while True:
            try:
                data = handle.read(block, dtype="float32", always_2d=True)
            except Exception as exc:  # noqa: BLE001 - a corrupt stretch in the middle of the file
                raise SpeechUnitsError(f"{path}: unreadable or corrupt audio after {total / rate:.1f} s ({exc})") from exc
            last = data.shape[0] < block
            if data.shape[0] == 0 and total == 0:
                raise SpeechUnitsError(f"{path}: empty audio (0 samples)")
            mono = _mono(data, channel)
            if not np.isfinite(mono).all():
                raise SpeechUnitsError(f"{path}: contains NaN/Inf sample(s) after {total / rate:.1f} s")
            total += mono.size
            out = mono if stream is None else stream.resample_chunk(mono, last=last)
            yield Block(np.ascontiguousarray(out, dtype=np.float32), mono.size, rate)
            if last:
                return


def _mono(data: np.ndarray, channel: int | None) -> np.ndarray:
    """``[t, C]`` to ``[t]``: the mean of the channels, or one channel."""
    if channel is not None:
        return np.ascontiguousarray(data[:, channel])
    if data.shape[1] == 1:
        return data[:, 0]
    return data.mean(axis=1, dtype=np.float32)
