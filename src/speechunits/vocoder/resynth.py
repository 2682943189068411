"""Audio -> units -> audio through a vocoder: resynthesis and voice conversion.

Both encode the source through the vocoder's own codebooks (so units always match), take F0
from the source at the unit frames, and synthesise:

* :func:`resynthesize`: the source's voice (its speaker for a table vocoder, itself as the
  reference for an embedding vocoder) and its F0 as it is;
* :func:`convert`: the content of the source in a target voice (a table speaker or reference
  audio); the source's log-F0 is normalised by the source utterance's statistics and
  de-normalised by the target's, so intonation follows the source and the range the target.

Any input rate is resampled to the vocoder's; input shorter than the encoder's receptive field
(or silent) is zero-padded to it, so a very short file gives a short output, not an error. The
output has the input's duration at the vocoder's sample rate.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError, some_of
from speechunits.pitch import F0Track, extract_f0, f0_stats
from speechunits.units.units import Units
from speechunits.vocoder.f0 import convert_track
from speechunits.vocoder.vocoder import Vocoder

log = logging.getLogger(__name__)


def analyse(vocoder: Vocoder, tokenizer: Any, audio: Audio) -> tuple[list[Units], F0Track, Audio]:
    """``(units per stream, F0 at the unit frames, the input at the vocoder's rate)``."""
    wave = audio.resample(vocoder.sample_rate)
    field = int(tokenizer.encoder.info.receptive_field)
    samples = wave.samples
    if samples.size < field:
        samples = np.concatenate([samples, np.zeros(field - samples.size, dtype=np.float32)])
    padded = Audio(samples, vocoder.sample_rate)
    streams = tokenizer.encode_streams(padded)
    if vocoder.meta["dedup"]:
        streams = [s.dedup() for s in streams]
    frames = streams[0].num_frames
    track = extract_f0(padded, frame_rate=vocoder.frame_rate, offset_s=float(vocoder.meta["frame_offset_s"]),
                       num_frames=frames, method=vocoder.meta["f0_method"])
    return streams, track, wave


def _fit_length(audio: Audio, num_samples: int) -> Audio:
    samples = audio.samples[:num_samples]
    if samples.size < num_samples:
        samples = np.concatenate([samples, np.zeros(num_samples - samples.size, dtype=np.float32)])
    return Audio(samples, audio.sample_rate)


def resynthesize(vocoder: Vocoder, tokenizer: Any, audio: Audio, *, speaker: str | None = None) -> Audio:
    """The source re-voiced from its own units and F0 (see the module docstring).

    ``speaker``: a table vocoder's voice for the source (required there: units do not say who
    speaks); an embedding vocoder uses the source itself as the reference unless it is given.
    """
    streams, track, wave = analyse(vocoder, tokenizer, audio)
    mode = vocoder.meta["speaker"]
    kwargs: dict[str, Any] = {}
    if mode == "table":
        if speaker is None:
            raise SpeechUnitsError(f"vocoder {vocoder.path} has a speaker table: give --speaker "
                                   f"(one of: {some_of(vocoder.speakers)})")
        kwargs["speaker"] = speaker
    elif mode == "embedding":
        if speaker is not None:
            kwargs["speaker"] = speaker
        else:
            kwargs["reference"] = wave
    out = vocoder.synthesize(streams, f0=track, **kwargs)
    return _fit_length(out, wave.num_samples)


def convert(vocoder: Vocoder, tokenizer: Any, audio: Audio, *, speaker: str | None = None,
            reference: Audio | None = None) -> Audio:
    """The source's content in the target voice (``speaker`` of the table, or ``reference`` audio)."""
    if (speaker is None) == (reference is None):
        raise SpeechUnitsError("voice conversion needs exactly one target: a speaker name or reference audio")
    streams, track, wave = analyse(vocoder, tokenizer, audio)
    _, target_stats = vocoder.target(speaker, reference)
    try:
        source_stats = f0_stats([track])
    except SpeechUnitsError:
        source_stats = target_stats  # an unvoiced source has no F0 to move
    converted = convert_track(track, source_stats, target_stats)
    out = vocoder.synthesize(streams, speaker=speaker, reference=reference, f0=converted)
    return _fit_length(out, wave.num_samples)
