"""Audio records: the one module that reads audio files.

Multichannel files are downmixed by averaging the channels (``channel=None``)
or reduced to one chosen channel (``channel=N``, 0-based). Resampling uses
soxr's "HQ" quality, which is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechunits.errors import SpeechUnitsError

#: File extensions we read (through libsndfile). ``.opus`` is Ogg/Opus.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")


@dataclass(frozen=True, eq=False)
class Audio:
    """Mono float32 audio.

    Two records are equal when their sample rates and samples (values, dtype, length) are;
    ``path`` is not compared. Records are unhashable: the samples are a (writable) array and
    hashing them would cost a pass over the audio; key dicts by utterance id instead.

    Attributes:
        samples: float32 array ``[T]``.
        sample_rate: samples per second.
        path: where it came from, if anywhere (used in error messages).
    """

    samples: np.ndarray
    sample_rate: int
    path: str | None = field(default=None, compare=False)

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Audio):
            return False  # not NotImplemented: numpy would answer ``x == array`` elementwise
        return (self.sample_rate == other.sample_rate and self.samples.dtype == other.samples.dtype
                and np.array_equal(self.samples, other.samples, equal_nan=True))

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        if samples.ndim != 1:
            raise SpeechUnitsError(f"{self._where()}: expected mono samples [T], got shape {samples.shape}")
        if samples.dtype != np.float32:
            samples = samples.astype(np.float32)
        object.__setattr__(self, "samples", samples)
        if self.sample_rate <= 0:
            raise SpeechUnitsError(f"{self._where()}: sample rate must be positive, got {self.sample_rate}")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, channel: int | None = None, sample_rate: int | None = None) -> "Audio":
        """Read ``path``, downmix (or pick ``channel``), validate, optionally resample.

        Raises:
            SpeechUnitsError: unsupported extension, unreadable/corrupt file, empty file,
                NaN/Inf samples, or a channel index the file does not have.
        """
        import soundfile as sf

        path = Path(path)
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            raise SpeechUnitsError(
                f"{path}: unsupported audio extension {path.suffix!r} (supported: {', '.join(AUDIO_EXTENSIONS)})"
            )
        if not path.is_file():
            raise SpeechUnitsError(f"{path}: no such file")
        try:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile raises several types for corrupt data
            raise SpeechUnitsError(f"{path}: unreadable or corrupt audio ({exc})") from exc
        if data.shape[0] == 0:
            raise SpeechUnitsError(f"{path}: empty audio (0 samples)")
        if channel is None:
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        else:
            if not 0 <= channel < data.shape[1]:
                raise SpeechUnitsError(f"{path}: channel {channel} requested but the file has {data.shape[1]}")
            mono = data[:, channel]
        audio = cls(np.ascontiguousarray(mono), int(rate), str(path))
        audio.check_finite()
        if sample_rate is not None:
            audio = audio.resample(sample_rate)
        return audio

    # -- operations (each returns a new Audio) ----------------------------------------------------
    def resample(self, sample_rate: int) -> "Audio":
        """Return this audio at ``sample_rate`` (soxr HQ); itself if already there."""
        if sample_rate == self.sample_rate:
            return self
        import soxr

        out = soxr.resample(self.samples, self.sample_rate, sample_rate, quality="HQ")
        return Audio(np.ascontiguousarray(out, dtype=np.float32), sample_rate, self.path)

    # -- checks ---------------------------------------------------------------------------------
    def check_finite(self) -> None:
        """Raise if any sample is NaN or infinite."""
        if not np.isfinite(self.samples).all():
            bad = int((~np.isfinite(self.samples)).sum())
            raise SpeechUnitsError(f"{self._where()}: contains {bad} NaN/Inf sample(s)")

    def require_min_samples(self, min_samples: int, what: str = "the encoder's receptive field") -> None:
        """Raise if shorter than ``min_samples`` (e.g. an encoder's receptive field)."""
        if len(self.samples) < min_samples:
            raise SpeechUnitsError(
                f"{self._where()}: too short ({len(self.samples)} samples = "
                f"{1000 * len(self.samples) / self.sample_rate:.1f} ms) for {what} "
                f"({min_samples} samples at {self.sample_rate} Hz)"
            )

    # -- properties -----------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def _where(self) -> str:
        return self.path or "<audio>"

    def save(self, path: str | Path, subtype: str = "PCM_16") -> None:
        """Write a wav/flac file (16-bit PCM by default)."""
        import soundfile as sf

        sf.write(str(path), self.samples, self.sample_rate, subtype=subtype)
