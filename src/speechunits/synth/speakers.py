"""Synthetic speakers: an espeak-ng voice variant plus pitch, pitch range and rate."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from speechunits.files import iter_text_lines
from speechunits.errors import SpeechUnitsError

#: espeak-ng base voice per language (any espeak voice name works here).
LANGUAGE_VOICES: dict[str, str] = {
    "en": "en-us",
    "es": "es",
    "de": "de",
    "fr": "fr",
    "it": "it",
    "cmn": "cmn",
    "ja": "ja",
    "hi": "hi",
    "sw": "sw",
}
#: Human-sounding variants (echo, whisper and robot variants are left out on purpose).
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
#: Sampling ranges (espeak units: pitch and range 0-100, rate in words per minute).
PITCH_RANGE = {"m": (25, 60), "f": (50, 85)}
INTONATION_RANGE = (30, 80)
RATE_RANGE = (135, 205)
#: Header of ``speaker_info.tsv`` (a corpus) and ``voices.tsv`` (a benchmark set).
SPEAKER_INFO_COLUMNS = ("speaker", "language", "voice", "pitch", "pitch_range", "rate")


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker."""

    name: str
    language: str
    voice: str
    pitch: int
    pitch_range: int
    rate: int

    def to_row(self) -> dict[str, object]:
        return asdict(self)


def sample_speakers(count: int, languages: list[str], seed: int) -> list[Speaker]:
    """``count`` speakers spread round-robin over ``languages``, alternating male/female variants.

    Deterministic for ``seed``; names are ``{language}{index:02d}`` (e.g. ``en00``).
    """
    if count < len(languages):
        raise SpeechUnitsError(f"--speakers: need at least one speaker per language ({len(languages)}), got {count}")
    unknown = [lang for lang in languages if lang not in LANGUAGE_VOICES]
    if unknown:
        raise SpeechUnitsError(f"--languages: unsupported {unknown} (supported: {', '.join(LANGUAGE_VOICES)})")
    rng = np.random.default_rng([seed, 1])
    male = list(rng.permutation(MALE_VARIANTS))
    female = list(rng.permutation(FEMALE_VARIANTS))
    speakers: list[Speaker] = []
    for i in range(count):
        language = languages[i % len(languages)]
        sex = "m" if i % 2 == 0 else "f"
        pool = male if sex == "m" else female
        variant = pool[(i // 2) % len(pool)]
        low, high = PITCH_RANGE[sex]
        speakers.append(
            Speaker(
                name=f"{language}{i // len(languages):02d}",
                language=language,
                voice=f"{LANGUAGE_VOICES[language]}+{variant}",
                pitch=int(rng.integers(low, high + 1)),
                pitch_range=int(rng.integers(INTONATION_RANGE[0], INTONATION_RANGE[1] + 1)),
                rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
            )
        )
    return speakers


#: Voice variants that :func:`sample_speakers` never uses: benchmark voices built on them are
#: unseen by any corpus, whatever its seed (espeak-ng formant variants, no klatt/echo/robot).
UNSEEN_MALE_VARIANTS = ("m8", "Mike", "paul", "robert")
UNSEEN_FEMALE_VARIANTS = ("Andrea", "steph", "Annie")


def is_corpus_speaker(speaker: Speaker) -> bool:
    """Whether :func:`sample_speakers` could produce this voice and prosody (for some seed).

    A corpus speaker has a variant of :data:`MALE_VARIANTS` (pitch in ``PITCH_RANGE["m"]``) or
    :data:`FEMALE_VARIANTS` (pitch in ``PITCH_RANGE["f"]``), with range and rate in their ranges.
    """
    base, _, variant = speaker.voice.partition("+")
    sex = "m" if variant in MALE_VARIANTS else "f" if variant in FEMALE_VARIANTS else None
    if sex is None or base not in LANGUAGE_VOICES.values():
        return False
    return (PITCH_RANGE[sex][0] <= speaker.pitch <= PITCH_RANGE[sex][1]
            and INTONATION_RANGE[0] <= speaker.pitch_range <= INTONATION_RANGE[1]
            and RATE_RANGE[0] <= speaker.rate <= RATE_RANGE[1])


def sample_unseen_speakers(count: int, language: str, seed: int) -> list[Speaker]:
    """``count`` benchmark voices of ``language`` that no synthetic corpus contains.

    Variants come from :data:`UNSEEN_MALE_VARIANTS` / :data:`UNSEEN_FEMALE_VARIANTS` (alternating,
    male first), which :func:`sample_speakers` never uses; pitch, range and rate are drawn from the
    corpus ranges, so only the voice is new. Names are ``v{index:02d}``; deterministic for ``seed``.
    """
    if count < 1:
        raise SpeechUnitsError(f"--voices must be >= 1, got {count}")
    if language not in LANGUAGE_VOICES:
        raise SpeechUnitsError(f"--language: unsupported {language!r} (supported: {', '.join(LANGUAGE_VOICES)})")
    limit = 2 * min(len(UNSEEN_MALE_VARIANTS), len(UNSEEN_FEMALE_VARIANTS))
    if count > limit:
        raise SpeechUnitsError(f"--voices: at most {limit} distinct unseen voices, got {count}")
    rng = np.random.default_rng([seed, 2])
    male = list(rng.permutation(UNSEEN_MALE_VARIANTS))
    female = list(rng.permutation(UNSEEN_FEMALE_VARIANTS))
    voices = []
    for i in range(count):
        sex = "m" if i % 2 == 0 else "f"
        variant = (male if sex == "m" else female)[i // 2]
        low, high = PITCH_RANGE[sex]
        voices.append(Speaker(
            name=f"v{i:02d}", language=language, voice=f"{LANGUAGE_VOICES[language]}+{variant}",
            pitch=int(rng.integers(low, high + 1)),
            pitch_range=int(rng.integers(INTONATION_RANGE[0], INTONATION_RANGE[1] + 1)),
            rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))))
    return voices


def write_speaker_info(path: str | os.PathLike[str], speakers: Sequence[Speaker]) -> None:
    """:data:`SPEAKER_INFO_COLUMNS` with a header, one speaker per line."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\t".join(SPEAKER_INFO_COLUMNS) + "\n")
        for s in speakers:
            handle.write(f"{s.name}\t{s.language}\t{s.voice}\t{s.pitch}\t{s.pitch_range}\t{s.rate}\n")


def read_speaker_info(path: str | os.PathLike[str]) -> list[Speaker]:
    """The speakers of a ``speaker_info.tsv`` / ``voices.tsv``, in file order.

    Raises:
        SpeechUnitsError: a missing or non-UTF-8 file, another header, a short row, a non-integer pitch, range
            or rate, a repeated speaker name, or no speaker at all.
    """
    lines = iter_text_lines(path, "speaker info file (a synth corpus's speaker_info.tsv)")
    header = next(lines, (1, ""))[1]
    if tuple(header.split("\t")) != SPEAKER_INFO_COLUMNS:
        raise SpeechUnitsError(f"{path}: the header must be {' '.join(SPEAKER_INFO_COLUMNS)} (tab-separated)")
    speakers: list[Speaker] = []
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != len(SPEAKER_INFO_COLUMNS):
            raise SpeechUnitsError(f"{path}:{number}: expected {len(SPEAKER_INFO_COLUMNS)} tab-separated fields, "
                                   f"got {len(fields)}")
        try:
            speakers.append(Speaker(fields[0], fields[1], fields[2], int(fields[3]), int(fields[4]), int(fields[5])))
        except ValueError:
            raise SpeechUnitsError(f"{path}:{number}: pitch, pitch_range and rate must be integers") from None
    names = [s.name for s in speakers]
    if len(set(names)) != len(names):
        raise SpeechUnitsError(f"{path}: a speaker is listed twice")
    if not speakers:
        raise SpeechUnitsError(f"{path}: no speakers")
    return speakers
