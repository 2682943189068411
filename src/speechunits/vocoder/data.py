"""Training data of a vocoder: units, F0 and aligned audio per utterance, computed once and cached.

For every utterance of the corpus: the audio at the encoder's rate, frame-level units of every
codebook stream (:class:`speechunits.units.tokenizer.UnitTokenizer`), F0 at the unit frame
centres (:func:`speechunits.pitch.extract_f0`). Units and F0 are cached in
``VOC/cache/units-f0.npz`` (keyed by the codebooks' sha256 and the F0 method) so that a resumed
or repeated run does not encode again. With ``perturb_semitones`` (see
:class:`speechunits.vocoder.config.VocoderConfig`) the units of pitch- and formant-shifted copies
are computed (and cached) too, into ``Utterance.perturbed``.

Alignment: unit frame ``i`` is centred at ``frame_offset_s + i / frame_rate``; the vocoder
makes ``hop`` samples per frame, frame ``i`` covering output samples ``[i hop, (i + 1) hop)``.
So the training target of ``T`` frames is the audio from sample ``lead = round(frame_offset_s *
sr - hop / 2)`` on, ``T * hop`` samples long (zero-padded past the end); a synthesis is
shifted back by ``lead`` samples to line up with its source (:func:`lead_samples`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechunits.audio import Audio
from speechunits.corpus import Corpus
from speechunits.errors import SpeechUnitsError
from speechunits.pitch import F0Stats, F0Track, extract_f0, f0_stats

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
CACHE_FILE = "units-f0.npz"
CACHE_META = "units-f0.json"
#: Key of the statistics over every training utterance (speaker "none", and the fallback).
ALL_SPEAKERS = "*"


@dataclass
class Utterance:
    """One training utterance: ``units`` int64 ``[S, T]``, ``f0`` float32 ``[T]`` Hz, ``audio`` float32 ``[T * hop]``;
    ``perturbed``: int64 ``[C, S, T]``, the units of ``C`` shifted copies (None without perturbation)."""

    id: str
    speaker: str | None
    units: np.ndarray
    f0: np.ndarray
    audio: np.ndarray
    perturbed: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.units.shape[1])


def lead_samples(frame_offset_s: float, sample_rate: int, hop: int) -> int:
    """Samples between the start of the audio and the start of output frame 0 (may be negative)."""
    return int(round(frame_offset_s * sample_rate - hop / 2))


def aligned_audio(samples: np.ndarray, lead: int, num_frames: int, hop: int) -> np.ndarray:
    """``samples[lead : lead + num_frames * hop]``, zero-padded where that range leaves the audio."""
    out = np.zeros(num_frames * hop, dtype=np.float32)
    start, stop = max(lead, 0), min(lead + num_frames * hop, samples.size)
    if stop > start:
        out[start - lead:stop - lead] = samples[start:stop]
    return out


def find_speakers_file(source: str | Path) -> Path | None:
    """The ``speakers.tsv`` a corpus carries by convention (beside its manifest or in its directory)."""
    from speechunits.probe.labels import find_label_files

    return find_label_files(source).get("speakers")


def _cache_key(codebook_sha256s: Sequence[str], f0_method: str, sample_rate: int,
               perturb_semitones: Sequence[float] = ()) -> dict[str, Any]:
    key = {"codebook_sha256": list(codebook_sha256s), "f0_method": f0_method, "sample_rate": int(sample_rate),
           "version": 1}
    if perturb_semitones:
        key["perturb_semitones"] = [float(x) for x in perturb_semitones]
    return key


def unit_ids(tokenizer: Any, audio: Audio) -> np.ndarray:
    """Units int64 ``[S, T]`` of ``audio``, one row per codebook stream."""
    return np.stack([s.ids for s in tokenizer.encode_streams(audio)]).astype(np.int64)


def perturbed_units(audio: Audio, tokenizer: Any, semitones: Sequence[float], num_frames: int) -> np.ndarray:
    """Units ``[C, S, num_frames]`` of ``audio`` shifted by each of ``semitones`` (pitch and formants,
    duration kept: :func:`speechunits.augment.pitch_shift`); cut or edge-padded to ``num_frames``."""
    from speechunits.augment import pitch_shift

    copies = []
    for shift in semitones:
        shifted = Audio(pitch_shift(audio.samples, audio.sample_rate, float(shift)), audio.sample_rate)
        units = unit_ids(tokenizer, shifted)[:, :num_frames]
        if units.shape[1] < num_frames:
            units = np.pad(units, ((0, 0), (0, num_frames - units.shape[1])), mode="edge")
        copies.append(units)
    return np.stack(copies)


def load_utterances(corpus: Corpus, tokenizer: Any, *, hop: int, frame_offset_s: float, f0_method: str,
                    speakers: dict[str, str] | None, cache_dir: Path | None,
                    codebook_sha256s: Sequence[str], perturb_semitones: Sequence[float] = (),
                    quiet: bool = False) -> list[Utterance]:
    """Every readable utterance of ``corpus`` with units, F0 and aligned audio (see the module docstring).

    Units and F0 come from the cache when it was made for the same codebooks and F0 method.
    Unreadable files are skipped with a warning; utterances without a speaker are skipped when
    ``speakers`` is given.

    Raises:
        SpeechUnitsError: no usable utterance.
    """
    from speechunits.progress import AudioProgress

    sample_rate = int(tokenizer.encoder.info.sample_rate)
    key = _cache_key(codebook_sha256s, f0_method, sample_rate, perturb_semitones)
    cached: dict[str, np.ndarray] = {}
    if cache_dir is not None and (cache_dir / CACHE_META).is_file() and (cache_dir / CACHE_FILE).is_file():
        try:
            if json.loads((cache_dir / CACHE_META).read_text(encoding="utf-8")) == key:
                with np.load(cache_dir / CACHE_FILE) as data:
                    cached = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable cache (%s); computing units and F0 again", cache_dir, exc)
    lead = lead_samples(frame_offset_s, sample_rate, hop)
    frame_rate = sample_rate / hop
    out: list[Utterance] = []
    fresh: dict[str, np.ndarray] = {}
    skipped = 0
    utterances = list(corpus)
    with AudioProgress(total_seconds=None, desc="units + F0", quiet=quiet) as progress:
        for utt in utterances:
            speaker = None
            if speakers is not None:
                speaker = speakers.get(utt.id)
                if speaker is None:
                    skipped += 1
                    continue
            try:
                audio = Audio.load(utt.path, sample_rate=sample_rate, raw_format=utt.raw_format)
            except SpeechUnitsError as exc:
                log.warning("skipping %s: %s", utt.id, exc)
                skipped += 1
                continue
            samples = audio.samples
            if f"{utt.id}/units" in cached:
                units, f0 = cached[f"{utt.id}/units"], cached[f"{utt.id}/f0"]
            else:
                if samples.size < tokenizer.encoder.info.receptive_field:
                    skipped += 1
                    continue
                units = unit_ids(tokenizer, audio)
                f0 = extract_f0(audio, frame_rate=frame_rate, offset_s=frame_offset_s, num_frames=units.shape[1],
                                method=f0_method).f0
            fresh[f"{utt.id}/units"], fresh[f"{utt.id}/f0"] = units, f0
            if units.shape[1] < 2:
                skipped += 1
                continue
            perturbed = None
            if perturb_semitones:
                name = f"{utt.id}/perturbed"
                perturbed = cached[name] if name in cached else perturbed_units(audio, tokenizer, perturb_semitones,
                                                                                 units.shape[1])
                fresh[name] = perturbed
            out.append(Utterance(utt.id, speaker, units, f0.astype(np.float32),
                                 aligned_audio(samples, lead, units.shape[1], hop), perturbed))
            progress.update(audio.duration_s)
    if skipped:
        log.warning("%s: %d utterances skipped (unreadable, too short or without a speaker)", corpus.source, skipped)
    if not out:
        raise SpeechUnitsError(f"{corpus.source}: no usable utterance to train a vocoder on")
    if cache_dir is not None and set(fresh) != set(cached):
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / (CACHE_FILE + ".tmp.npz")
        np.savez(tmp, **fresh)
        tmp.replace(cache_dir / CACHE_FILE)
        (cache_dir / CACHE_META).write_text(json.dumps(key), encoding="utf-8")
    return out


def speaker_f0_stats(utterances: Sequence[Utterance], frame_rate: float) -> dict[str, F0Stats]:
    """Log-F0 statistics per speaker, and over every utterance under :data:`ALL_SPEAKERS`.

    A speaker without a voiced frame gets the overall statistics (with a warning).
    """
    tracks: dict[str, list[F0Track]] = {}
    for utt in utterances:
        track = F0Track(utt.f0, frame_rate)
        tracks.setdefault(ALL_SPEAKERS, []).append(track)
        if utt.speaker is not None:
            tracks.setdefault(utt.speaker, []).append(track)
    try:
        overall = f0_stats(tracks[ALL_SPEAKERS])
    except SpeechUnitsError:
        log.warning("no voiced frame in the training data: F0 statistics fall back to 120 Hz +- 0.2")
        overall = F0Stats(float(np.log(120.0)), 0.2, 0)
    stats = {ALL_SPEAKERS: overall}
    for speaker, items in tracks.items():
        if speaker == ALL_SPEAKERS:
            continue
        try:
            stats[speaker] = f0_stats(items)
        except SpeechUnitsError:
            log.warning("speaker %s has no voiced frame: it gets the overall F0 statistics", speaker)
            stats[speaker] = overall
    return stats


def utterance_stats(f0: np.ndarray, fallback: F0Stats) -> F0Stats:
    """Log-F0 statistics of one utterance (``fallback`` when it has no voiced frame)."""
    try:
        return f0_stats([F0Track(np.asarray(f0, dtype=np.float32), 1.0)])
    except SpeechUnitsError:
        return fallback
