"""Serial audio loading for feature extraction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from speechunits.audio import Audio
from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError


@dataclass(frozen=True)
class LoadedAudio:
    """An utterance with its audio at the encoder's rate, or the reason it could not be used.

    Exactly one of ``audio`` and ``error`` is set.
    """

    utt: Utterance
    audio: Audio | None
    error: str | None = None


def load_one(utt: Utterance, sample_rate: int, min_samples: int, channel: int | None = None) -> LoadedAudio:
    """Load (headerless PCM by ``utt.raw_format``), downmix/pick ``channel``, resample and check one
    utterance; errors become ``LoadedAudio.error``."""
    try:
        audio = Audio.load(utt.path, channel=channel, sample_rate=sample_rate, raw_format=utt.raw_format)
        audio.require_min_samples(min_samples)
    except SpeechUnitsError as exc:
        return LoadedAudio(utt, None, str(exc))
    return LoadedAudio(utt, audio, None)


def load_audio_items(corpus: Iterable[Utterance], sample_rate: int, min_samples: int,
                     channel: int | None = None) -> Iterator[LoadedAudio]:
    """Lazily load every utterance of ``corpus`` in order (see :func:`load_one`)."""
    for utt in corpus:
        yield load_one(utt, sample_rate, min_samples, channel)
