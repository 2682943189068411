"""Audio records: the one module that reads audio files.

Multichannel files are downmixed by averaging the channels (``channel=None``)
or reduced to one chosen channel (``channel=N``, 0-based). Resampling uses
soxr's "HQ" quality, which is deterministic.

Files are decoded by libsndfile, which recognises a format by its header, not its name:
NIST SPHERE (``.sph``; also TIMIT's SPHERE files named ``.WAV``) with PCM, mu-law or A-law
samples is read like any other file. Shorten-compressed SPHERE (Switchboard, Fisher, many
LDC releases) is refused with the command that converts it. Headerless PCM (``.raw``,
``.pcm``) carries no rate or encoding, so it needs a :class:`RawFormat`.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.layouts.hf_datasets import parse_row_path, read_row_audio, row_audio_file
from speechunits.layouts.tar_shards import members, parse_member_path, read_member
from speechunits.spans import SoundSpan, parse_span_path

#: File extensions with a header (read through libsndfile). ``.opus`` is Ogg/Opus, ``.sph`` NIST SPHERE.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph")
#: Extensions of headerless PCM: readable only with a :class:`RawFormat`.
RAW_EXTENSIONS = (".raw", ".pcm")

#: ``--raw-format`` sample encodings: name -> (libsndfile subtype, endianness, bytes per sample).
RAW_ENCODINGS: dict[str, tuple[str, str, int]] = {
    "s8": ("PCM_S8", "FILE", 1), "u8": ("PCM_U8", "FILE", 1),
    "s16le": ("PCM_16", "LITTLE", 2), "s16be": ("PCM_16", "BIG", 2),
    "s24le": ("PCM_24", "LITTLE", 3), "s24be": ("PCM_24", "BIG", 3),
    "s32le": ("PCM_32", "LITTLE", 4), "s32be": ("PCM_32", "BIG", 4),
    "f32le": ("FLOAT", "LITTLE", 4), "f32be": ("FLOAT", "BIG", 4),
    "f64le": ("DOUBLE", "LITTLE", 8), "f64be": ("DOUBLE", "BIG", 8),
    "mulaw": ("ULAW", "FILE", 1), "alaw": ("ALAW", "FILE", 1),
}
_RAW_HINT = "ENCODING:RATE[:CHANNELS], e.g. s16le:16000 or s16le:8000:2"
#: What libsndfile and soundfile raise for undecodable input (soundfile.LibsndfileError is a
#: RuntimeError); anything else, MemoryError included, is not bad input and propagates.
_DECODE_ERRORS = (RuntimeError, ValueError, TypeError, OSError, EOFError)


@dataclass(frozen=True)
class RawFormat:
    """How to read headerless PCM: sample encoding (a key of :data:`RAW_ENCODINGS`), rate, channels.

    Written ``ENCODING:RATE[:CHANNELS]`` (``s16le:16000``, ``mulaw:8000``, ``f32le:16000:2``),
    the names ffmpeg and sox use; samples are interleaved by channel.
    """

    encoding: str
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in RAW_ENCODINGS:
            raise SpeechUnitsError(f"raw format: unknown encoding {self.encoding!r} "
                                   f"(one of {', '.join(RAW_ENCODINGS)})")
        if self.sample_rate <= 0 or self.channels <= 0:
            raise SpeechUnitsError(f"raw format {self}: sample rate and channels must be positive")

    @classmethod
    def parse(cls, text: str) -> "RawFormat":
        """``"s16le:16000"`` or ``"s16le:16000:2"`` into a :class:`RawFormat`."""
        parts = text.strip().lower().split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            rate, channels = int(parts[1]), int(parts[2]) if len(parts) == 3 else 1
        except ValueError:
            raise SpeechUnitsError(f"raw format {text!r}: expected {_RAW_HINT}") from None
        return cls(parts[0], rate, channels)

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return RAW_ENCODINGS[self.encoding][2] * self.channels

    def num_frames(self, path: str | Path) -> int:
        """Frames in the headerless file ``path`` (its size must be a whole number of frames)."""
        size = os.path.getsize(path)
        if size % self.frame_bytes:
            raise SpeechUnitsError(f"{path}: {size} bytes is not a whole number of {self} frames "
                                   f"({self.frame_bytes} bytes each): wrong --raw-format?")
        return size // self.frame_bytes

    def __str__(self) -> str:
        return f"{self.encoding}:{self.sample_rate}" + (f":{self.channels}" if self.channels != 1 else "")


def _open_sound_file(path: Path, raw_format: RawFormat | str | None):
    """Validate ``path`` and open it with libsndfile (headerless PCM through ``raw_format``).

    Raises:
        SpeechUnitsError: unsupported extension, raw PCM without ``raw_format`` or with a size that is
            not a whole number of frames, missing, unreadable, corrupt or compressed-SPHERE file.
    """
    import soundfile as sf

    span = parse_span_path(path)
    if span is not None:  # a time range of a recording (speechunits.spans)
        return SoundSpan(_open_sound_file(Path(span[0]), raw_format), span[1], span[2], str(path))
    row = parse_row_path(path)
    if row is not None:  # a row of a Hugging Face table (speechunits.layouts.hf_datasets)
        return _open_table_row(path, *row)
    member = parse_member_path(path)
    if member is not None:  # a member of a tar archive (speechunits.layouts.tar_shards)
        return _open_encoded(read_member(*member), path, "the archive")
    if isinstance(raw_format, str):
        raw_format = RawFormat.parse(raw_format)
    suffix = path.suffix.lower()
    is_raw = suffix not in AUDIO_EXTENSIONS and (raw_format is not None or suffix in RAW_EXTENSIONS)
    if is_raw and raw_format is None:
        raise SpeechUnitsError(f"{path}: headerless PCM does not say its encoding and rate; "
                               f"pass --raw-format {_RAW_HINT} (raw_format= in Python)")
    if not is_raw and suffix not in AUDIO_EXTENSIONS:
        raise SpeechUnitsError(
            f"{path}: unsupported audio extension {path.suffix!r} (supported: {', '.join(AUDIO_EXTENSIONS)}; "
            f"headerless PCM with --raw-format)"
        )
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: no such file")
    try:
        if is_raw:
            raw_format.num_frames(path)  # a whole number of frames, or an error
            subtype, endian, _ = RAW_ENCODINGS[raw_format.encoding]
            return sf.SoundFile(str(path), format="RAW", subtype=subtype, endian=endian,
                                samplerate=raw_format.sample_rate, channels=raw_format.channels)
        return sf.SoundFile(str(path))
    except SpeechUnitsError:
        raise
    except _DECODE_ERRORS as exc:  # not MemoryError: running out of memory is no bad input
        raise SpeechUnitsError(_sphere_problem(path) or f"{path}: unreadable or corrupt audio ({exc})") from exc


def _open_table_row(where: Path, table: Path, row: int):
    """Open the audio of row ``row`` of ``table``: its encoded bytes, else the file its path names."""
    encoded, stored_path = read_row_audio(table, row)
    if encoded is None:
        if not stored_path:
            raise SpeechUnitsError(f"{where}: the row has no audio (null bytes and path)")
        return _open_sound_file(row_audio_file(table, stored_path), None)
    return _open_encoded(encoded, where, "the table")


def _open_encoded(encoded: bytes, where: Path, container: str):
    """Open an encoded audio file held in memory (``container`` names where it was stored, for errors)."""
    import soundfile as sf

    try:
        return sf.SoundFile(io.BytesIO(encoded))
    except _DECODE_ERRORS as exc:
        raise SpeechUnitsError(f"{where}: unreadable or corrupt audio in {container} ({exc})") from exc


def open_sound_file(path: str | Path, raw_format: RawFormat | str | None = None):
    """A ``soundfile.SoundFile`` open on ``path``: an audio file, headerless PCM through
    ``raw_format``, a Hugging Face table row (:func:`speechunits.layouts.hf_datasets.row_path`), a member of a
    tar archive (:func:`speechunits.layouts.tar_shards.member_path`), or a time
    range of any of these (a :class:`speechunits.spans.SoundSpan`, :func:`speechunits.spans.span_path`).

    Raises:
        SpeechUnitsError: as :meth:`Audio.load`.
    """
    return _open_sound_file(Path(path), raw_format)


def size_hint(path: str | Path) -> int:
    """Bytes that stand for an utterance's length without reading a header: the file's size, a tar
    member's, a time range's seconds at 16-bit 16 kHz (32 kB/s); 0 for a table row or anything
    unreadable. For ordering utterances by length, nothing more.
    """
    span = parse_span_path(path)
    if span is not None:
        return int((span[2] - span[1]) * 32000) if span[2] is not None else size_hint(span[0])
    member = parse_member_path(path)
    if member is not None:
        try:
            return members(member[0]).get(member[1], (0, 0))[1]
        except SpeechUnitsError:
            return 0
    if parse_row_path(path) is not None:
        return 0
    try:
        return os.path.getsize(path)
    except OSError:  # decoding reports it
        return 0


def _mono(data: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """``[t, C]`` float32 to ``[t]``: the mean of the channels, or channel ``channel``."""
    if channel is None:
        return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not 0 <= channel < data.shape[1]:
        raise SpeechUnitsError(
            f"{path}: channel {channel} requested but the file has channels 0..{data.shape[1] - 1}")
    return data[:, channel]


@dataclass(frozen=True)
class AudioBlock:
    """One block of :meth:`Audio.stream`: ``samples`` float32 mono ``[t]`` at the requested rate, and
    the stretch of the file it came from (``source_frames`` frames at ``source_rate``)."""

    samples: np.ndarray
    source_frames: int
    source_rate: int


def sphere_header(path: str | Path) -> dict[str, str] | None:
    """The fields of a NIST SPHERE header (``{"sample_coding": "pcm,embedded-shorten-v2.00", ...}``),
    or None when ``path`` is not a SPHERE file."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if not head.startswith(b"NIST_1A"):
        return None
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines()[2:]:
        if line.strip() == "end_head":
            break
        parts = line.split(None, 2)
        if len(parts) == 3:
            fields[parts[0]] = parts[2].strip()
    return fields


def _sphere_problem(path: Path) -> str | None:
    """Why libsndfile cannot read a SPHERE file (compressed samples), with the fix; None if not that."""
    try:
        header = sphere_header(path)
    except OSError:
        return None
    coding = (header or {}).get("sample_coding", "")
    if not any(word in coding for word in ("shorten", "wavpack", "shortpack")):
        return None
    kind = "shorten" if "shorten" in coding else coding.split(",")[-1]
    return (f"{path}: NIST SPHERE with {kind}-compressed samples (sample_coding {coding!r}), which libsndfile "
            f"cannot decode; convert it first, e.g. `sph2pipe -f wav {path.name} {path.stem}.wav` "
            f"(LDC's sph2pipe; or `sox`, built with shorten support)")


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
    def load(cls, path: str | Path, channel: int | None = None, sample_rate: int | None = None,
             raw_format: RawFormat | str | None = None) -> "Audio":
        """Read ``path``, downmix (or pick ``channel``), validate, optionally resample.

        ``raw_format`` (a :class:`RawFormat` or its ``"s16le:16000"`` spelling) reads every file
        whose extension is not one of :data:`AUDIO_EXTENSIONS` as headerless PCM; ``.raw`` and
        ``.pcm`` files need it.

        Raises:
            SpeechUnitsError: unsupported extension, raw PCM without ``raw_format``,
                unreadable/corrupt or compressed-SPHERE file, empty file, NaN/Inf samples,
                or a channel index the file does not have.
        """
        path = Path(path)
        with _open_sound_file(path, raw_format) as handle:
            rate = int(handle.samplerate)
            try:
                data = handle.read(dtype="float32", always_2d=True)
            except _DECODE_ERRORS as exc:  # a corrupt stretch inside the file
                raise SpeechUnitsError(f"{path}: unreadable or corrupt audio ({exc})") from exc
        if data.shape[0] == 0:
            raise SpeechUnitsError(f"{path}: empty audio (0 samples)")
        mono = _mono(data, channel, path)
        audio = cls(np.ascontiguousarray(mono), int(rate), str(path))
        audio.check_finite()
        if sample_rate is not None:
            audio = audio.resample(sample_rate)
        return audio

    @staticmethod
    def stream(path: str | Path, sample_rate: int, *, channel: int | None = None, block_seconds: float = 60.0,
               raw_format: RawFormat | str | None = None) -> Iterator[AudioBlock]:
        """:meth:`load` a block at a time, in memory that does not grow with the file's length.

        soundfile reads ``block_seconds`` of the file at a time and soxr's ``ResampleStream`` carries
        the filter state across blocks: concatenated, the blocks equal the whole file loaded and
        resampled to ``sample_rate``, up to filter rounding at block edges. Same checks as :meth:`load`
        (NaN/Inf are reported with the time they occur at).
        """
        import soxr

        path = Path(path)
        with _open_sound_file(path, raw_format) as handle:
            rate = int(handle.samplerate)
            if channel is not None and not 0 <= channel < handle.channels:
                raise SpeechUnitsError(
                    f"{path}: channel {channel} requested but the file has channels 0..{handle.channels - 1}")
            resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32",
                                                                             quality="HQ")
            block = max(int(block_seconds * rate), 1)
            total = 0
            while True:
                try:
                    data = handle.read(block, dtype="float32", always_2d=True)
                except _DECODE_ERRORS as exc:  # a corrupt stretch inside the file
                    raise SpeechUnitsError(
                        f"{path}: unreadable or corrupt audio after {total / rate:.1f} s ({exc})") from exc
                last = data.shape[0] < block
                if data.shape[0] == 0 and total == 0:
                    raise SpeechUnitsError(f"{path}: empty audio (0 samples)")
                mono = _mono(data, channel, path)
                if not np.isfinite(mono).all():
                    raise SpeechUnitsError(f"{path}: contains NaN/Inf sample(s) after {total / rate:.1f} s")
                total += mono.size
                out = mono if resampler is None else resampler.resample_chunk(mono, last=last)
                yield AudioBlock(np.ascontiguousarray(out, dtype=np.float32), mono.size, rate)
                if last:
                    return

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
