"""Text front ends of the TTS model: espeak-ng phones or characters.

* ``phones``: the IPA phone labels espeak-ng speaks for a text, with pauses as ``sil`` (the
  labels :mod:`speechunits.synth.align` writes into a synth corpus's ``phones.tsv``, so a
  model trained on those alignments reads the same symbols at inference). Needs the
  ``[synth]`` extra (espeak-ng, GPL-3), loaded only here.
* ``chars``: the characters of :func:`speechunits.probe.vocab.normalize_text`, the space as
  ``|``, with one ``|`` added at each end (they carry the leading and trailing silence).
"""
from __future__ import annotations

from typing import Mapping

from speechunits.errors import SpeechUnitsError

PHONES = "phones"
CHARS = "chars"
INPUT_KINDS = (PHONES, CHARS)
#: Default speaking rate (words/min) of the phonemiser; models record their corpus's median rate (labels do not depend on pitch).
PHONEMIZER_RATE = 175


def base_voice(voice: str) -> str:
    """espeak-ng voice without its variant (``"en-us+m3"`` -> ``"en-us"``)."""
    return voice.split("+", 1)[0]


def phonemize(text: str, voice: str, rate: int = PHONEMIZER_RATE) -> list[str]:
    """espeak-ng's phone labels of ``text`` in ``voice`` at ``rate`` words/min (stress stripped, pauses ``sil``).

    espeak-ng drops or merges a few phones at higher rates: phonemise at the training corpus's rate.
    """
    from speechunits.synth.align import segments_from_events
    from speechunits.synth.espeak import synthesise

    if not text.strip():
        raise SpeechUnitsError("empty text: nothing to say")
    synthesis = synthesise(text, voice, rate=int(rate), pitch=50, pitch_range=50)
    phones, _ = segments_from_events(synthesis, text)
    return [segment.label for segment in phones]


def text_chars(text: str) -> list[str]:
    """The ``chars`` input of ``text``: ``|`` + normalised characters (space = ``|``) + ``|``."""
    from speechunits.probe.vocab import WORD_BOUNDARY, text_to_chars

    chars = text_to_chars(text)
    if not chars:
        raise SpeechUnitsError(f"text {text[:60]!r} has no letters or digits")
    return [WORD_BOUNDARY, *chars, WORD_BOUNDARY]


def transcript_tokens(texts: Mapping[str, str], kind: str, voice: str | None = None,
                      rate: int | None = None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Input symbols of every transcript (``{utt: text}``, e.g. from
    :func:`speechunits.probe.labels.read_transcripts`): ``({utt: tokens}, {utt: why skipped})``.

    Each distinct text is phonemised once; a text with nothing to say is skipped, not raised.
    """
    if kind not in INPUT_KINDS:
        raise SpeechUnitsError(f"--input must be one of {INPUT_KINDS}, got {kind!r}")
    if kind == PHONES and not voice:
        raise SpeechUnitsError("phone input needs an espeak-ng voice to phonemise with")
    tokens: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    seen: dict[str, list[str] | str] = {}
    for utt, text in texts.items():
        if text not in seen:
            try:
                seen[text] = text_tokens(text, kind, voice, rate)
            except SpeechUnitsError as exc:
                seen[text] = str(exc)
        result = seen[text]
        if isinstance(result, str):
            skipped[utt] = result
        else:
            tokens[utt] = list(result)
    return tokens, skipped


def text_tokens(text: str, kind: str, voice: str | None = None, rate: int | None = None) -> list[str]:
    """Input symbols of ``text`` for a TTS model reading ``kind``."""
    if kind == CHARS:
        return text_chars(text)
    if kind == PHONES:
        if not voice:
            raise SpeechUnitsError("phone input needs an espeak-ng voice to phonemise with")
        return phonemize(text, voice, rate or PHONEMIZER_RATE)
    raise SpeechUnitsError(f"--input must be one of {INPUT_KINDS}, got {kind!r}")
