"""Synthetic speakers: an espeak-ng voice variant plus pitch, pitch range and rate."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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
