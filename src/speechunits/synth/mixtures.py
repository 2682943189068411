"""Two-speaker mixtures with diarization ground truth (LibriMix-style; SUPERB's speaker diarization data).

``write_mixtures(CORPUS, OUT)`` writes ``OUT/mix/``::

    train/ dev/ test/             disjoint speakers
        wavs/<mix_id>.wav         16 kHz mono int16, two utterances of two speakers summed
        wav.scp                   ``mix_id wavs/<mix_id>.wav`` (the path relative to the split directory)
        reco2dur                  ``mix_id duration_s``
        rttm                      ``SPEAKER`` turns of every mixture (:mod:`speechunits.rttm`)
        mixtures.tsv              one row per mixture (header: :data:`MIXTURE_COLUMNS`)
        s1/ s2/ spk1.scp spk2.scp with ``with_sources``: each source as it lies in the mixture (offset, gain and
                                  scale applied, the mixture's length; ESPnet's separation layout)
    mix.json                      the arguments, the corpus and counts per split

Kaldi files are sorted by their first field (``LC_ALL=C`` order, what Kaldi's tools check). No
``segments``/``utt2spk`` are written: in a Kaldi data directory they make the turns the utterances,
and a diarization corpus's utterances are the recordings (s3prl's loader, which reads its labels from
them, can have them made from the ``rttm``).

* Corpus: a directory with speakers (``speakers.tsv``, ``utt2spk`` or a layout's ids:
  :func:`corpus_speakers`) and, where it has them,
  ``words.tsv`` (or, without it, ``phones.tsv``: ``utt<TAB>start<TAB>end<TAB>label``), keyed by the
  utterance ids of its audio as :func:`speechunits.corpus.open_corpus_via_manifest` reads it (a
  ``speechunits synth`` corpus), or by their endings (LibriSpeech's ``103-1240-0000`` for
  ``flac/103-1240-0000``). An utterance takes part when it has audio, a speaker and at least one
  speech segment.
* Splits: the speakers (sorted, then a seeded permutation) are cut into train/dev/test by the
  ``split`` shares, largest remainders, at least :data:`MIN_SPEAKERS_PER_SPLIT` each (taken from the
  largest split); ``mixtures`` is shared out the same way, at least one each.
* A mixture: two different speakers of the split drawn uniformly, then the next utterance of each
  in that speaker's own seeded cycle (every utterance of a speaker is used once before any twice).
  The first starts at 0; the second at ``round(len(first) * (1 - r))`` samples, ``r`` (recorded as
  ``overlap_ratio``, 4 decimals) uniform in ``[0, max_overlap]``: ``r = 0`` puts them one after the
  other, and the second may run past the end of the first. Each source is scaled by a gain
  (recorded, 3 decimals) uniform in ``[-gain_db / 2, gain_db / 2]`` dB, relative to the file as it
  is (no loudness normalisation); the mixture is their sum times ``scale``: 1, or, where the sum
  would clip, the largest 6-decimal factor that keeps its peak within int16.
* Speech activity (``activity``): ``alignments``, a source's word segments (``phones.tsv``: its
  segments but silence, :data:`SILENCE_LABELS`); ``vad``, silero-vad's speech runs (``[vad]`` extra;
  :mod:`speechunits.segment`: its hysteresis thresholds, runs under 0.25 s dropped, no padding), for
  corpora without alignments such as LibriSpeech; ``auto`` (default): the alignment where the corpus has
  one, else the VAD. Segments are merged where the pause between two is shorter than ``min_pause``
  seconds (touching ones always), clipped to the source's length and shifted by its offset; each becomes a
  ``SPEAKER`` turn named by the corpus speaker id. ``mix.json``'s ``alignment`` names the source used.

With ``with_sources`` (SUPERB's SS, Libri2Mix-style separation data) each mixture's two sources are written
too, so that ``s1 + s2`` is the mixture up to int16 rounding; separation sets usually overlap fully:
``max_overlap=1`` lets the second utterance start anywhere in the first.

Built in ``OUT/.mix.partial`` and renamed into place, so ``OUT/mix`` is complete or absent (a
leftover partial directory is removed by the next run). ``OUT/mix`` already holding the same set
(same arguments and corpus in ``mix.json``) is returned as it is; another set is refused. The same
arguments give the same bytes.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from speechunits.audio import RawFormat
from speechunits.errors import SpeechUnitsError
from speechunits.files import write_lines
from speechunits.synth.set_reuse import check_corpus_set, holds_same_set, write_set_meta
from speechunits.measure.alignments import SILENCE, TIME_TOLERANCE_S

log = logging.getLogger(__name__)

KIND = "mix"
FORMAT_VERSION = 1
SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000
#: Defaults.
MIXTURES = 300
MAX_OVERLAP = 0.5
MIN_PAUSE = 0.3
GAIN_DB = 5.0
SPLIT = (0.6, 0.2, 0.2)
MIN_SPEAKERS_PER_SPLIT = 2
#: Labels of ``phones.tsv`` that are not speech (the synth corpus's ``sil``; Kaldi's and MFA's ``sp``).
SILENCE_LABELS = frozenset({SILENCE, "sp"})
#: Where speech activity comes from (see the module docstring), and ``mix.json``'s name for the VAD's.
ACTIVITIES = ("auto", "alignments", "vad")
VAD_ACTIVITY = "silero-vad"
#: The arguments recorded in ``mix.json`` that define a set (and ``sources``, ``activity``, when asked).
SET_ARGUMENTS = ("corpus", "mixtures", "max_overlap", "min_pause", "gain_db", "split", "seed")
MIXTURE_COLUMNS = ("mix_id", "utt1", "speaker1", "offset1_s", "gain1_db", "utt2", "speaker2", "offset2_s", "gain2_db",
                   "overlap_ratio", "duration_s", "scale")
#: Largest int16 sample over full scale: a mixture's peak stays within it.
PEAK_LIMIT = 32767 / 32768


@dataclass(frozen=True)
class Source:
    """One usable utterance: its audio, speaker and speech segments (merged, in seconds)."""

    utt: str
    speaker: str
    path: str
    speech: tuple[tuple[float, float], ...]
    raw_format: RawFormat | None = None


@dataclass(frozen=True)
class Draw:
    """The random choices of one mixture: its utterances, overlap ratio and gains."""

    mix_id: str
    first: Source
    second: Source
    overlap_ratio: float
    gains_db: tuple[float, float]


# ----------------------------------------------------------------------------- planning (pure)


def apportion(total: int, shares: Sequence[float], minimum: int) -> list[int]:
    """``total`` shared out by ``shares`` (largest remainders, ties to the earlier share), then raised to
    ``minimum`` each by taking from the largest count (the earlier one on ties).

    Raises:
        SpeechUnitsError: ``total < minimum * len(shares)``.
    """
    if total < minimum * len(shares):
        raise SpeechUnitsError(f"cannot share {total} out as {len(shares)} parts of at least {minimum}")
    weight = float(sum(shares))
    exact = [total * s / weight for s in shares]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        while counts[i] < minimum:
            j = max(range(len(counts)), key=lambda k: (counts[k], -k))
            counts[j] -= 1
            counts[i] += 1
    return counts


def split_speakers(speakers: Iterable[str], split: Sequence[float], seed: int) -> dict[str, list[str]]:
    """``{split: sorted speakers}``: disjoint, cut from a seeded permutation by :func:`apportion`.

    Raises:
        SpeechUnitsError: fewer than :data:`MIN_SPEAKERS_PER_SPLIT` speakers per split.
    """
    pool = sorted(set(speakers))
    needed = MIN_SPEAKERS_PER_SPLIT * len(SPLITS)
    if len(pool) < needed:
        raise SpeechUnitsError(f"the corpus has {len(pool)} speaker(s) with usable utterances; mixing needs at least "
                               f"{needed}, {MIN_SPEAKERS_PER_SPLIT} per split ({', '.join(SPLITS)}), as the splits "
                               "share no speaker")
    order = [pool[i] for i in np.random.default_rng([seed, 0]).permutation(len(pool))]
    result, start = {}, 0
    for name, count in zip(SPLITS, apportion(len(pool), split, MIN_SPEAKERS_PER_SPLIT)):
        result[name] = sorted(order[start:start + count])
        start += count
    return result


def merge_segments(segments: Iterable[tuple[float, float]], min_pause: float) -> list[tuple[float, float]]:
    """``(start, end)`` segments sorted and merged where the pause between two is shorter than ``min_pause``
    (by more than :data:`TIME_TOLERANCE_S`, so that 3.3 - 3.0 is not shorter than 0.3); touching or
    overlapping ones always."""
    merged: list[list[float]] = []
    for start, end in sorted(segments):
        pause = start - merged[-1][1] if merged else math.inf
        if pause < min_pause - TIME_TOLERANCE_S or pause <= TIME_TOLERANCE_S:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def plan_split(name: str, sources: Sequence[Source], speakers: Sequence[str], count: int, max_overlap: float,
               gain_db: float, seed: int) -> list[Draw]:
    """The ``count`` mixtures of one split (ids ``<split>_00001``...): see the module docstring."""
    rng = np.random.default_rng([seed, 1, SPLITS.index(name)])
    by_speaker = {s: sorted((x for x in sources if x.speaker == s), key=lambda x: x.utt) for s in speakers}
    cycles = {s: [by_speaker[s][i] for i in rng.permutation(len(by_speaker[s]))] for s in speakers}
    used = {s: 0 for s in speakers}

    def next_of(speaker: str) -> Source:
        cycle = cycles[speaker]
        used[speaker] += 1
        return cycle[(used[speaker] - 1) % len(cycle)]

    draws = []
    for k in range(count):
        a, b = rng.choice(len(speakers), size=2, replace=False)
        first, second = next_of(speakers[int(a)]), next_of(speakers[int(b)])
        ratio = round(float(rng.uniform(0.0, max_overlap)), 4)
        gains = rng.uniform(-gain_db / 2, gain_db / 2, size=2)
        draws.append(Draw(f"{name}_{k + 1:05d}", first, second, ratio,
                          (round(float(gains[0]), 3) + 0.0, round(float(gains[1]), 3) + 0.0)))
    return draws


def second_offset(first_samples: int, overlap_ratio: float) -> int:
    """Where the second source starts (samples): ``len(first) * (1 - r)``, rounded."""
    return int(round(first_samples * (1.0 - overlap_ratio)))


def mix_sources(first: np.ndarray, second: np.ndarray, offset: int,
                gains_db: tuple[float, float]) -> tuple[np.ndarray, float]:
    """``(int16 mixture, scale)`` of two float sources (full scale 1, as int16 / 32768): the first at 0,
    the second at ``offset`` samples, each times ``10 ** (gain / 20)``; ``scale`` is 1 unless the sum
    would clip, then the largest 6-decimal factor that keeps it within int16."""
    total = np.zeros(max(first.size, offset + second.size), dtype=np.float64)
    total[:first.size] += first.astype(np.float64) * 10.0 ** (gains_db[0] / 20.0)
    total[offset:offset + second.size] += second.astype(np.float64) * 10.0 ** (gains_db[1] / 20.0)
    peak = float(np.max(np.abs(total))) if total.size else 0.0
    scale = 1.0 if peak <= PEAK_LIMIT else math.floor(PEAK_LIMIT / peak * 1e6) / 1e6
    samples = np.clip(np.rint(total * (scale * 32768.0)), -32768, 32767).astype(np.int16)
    return samples, scale


def placed_sources(first: np.ndarray, second: np.ndarray, offset: int, gains_db: tuple[float, float], scale: float,
                   length: int) -> tuple[np.ndarray, np.ndarray]:
    """The two int16 sources ``[length]`` as :func:`mix_sources` sums them: at 0 and ``offset``, times their
    gains and ``scale``."""
    tracks = []
    for source, start, gain in ((first, 0, gains_db[0]), (second, offset, gains_db[1])):
        track = np.zeros(length, dtype=np.float64)
        track[start:start + source.size] = source.astype(np.float64) * 10.0 ** (gain / 20.0)
        tracks.append(np.clip(np.rint(track * (scale * 32768.0)), -32768, 32767).astype(np.int16))
    return tracks[0], tracks[1]


def overlap_seconds(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Time two lists of disjoint ``(start, end)`` segments share."""
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


# ----------------------------------------------------------------------------- reading the corpus


def corpus_speakers(corpus: str | os.PathLike[str], purpose: str,
                    field: str) -> tuple[list[Any], dict[str, str], str]:
    """The utterances of the corpus directory ``corpus``, ``{utt id: speaker}`` keyed by their ids, and
    where the speakers came from: its ``speakers.tsv``, Kaldi ``utt2spk`` or JSONL ``speaker`` fields,
    else the layout's ids (a LibriSpeech, VCTK ... tree: :func:`speechunits.corpus.read_speakers`), matched
    to the audio's ids exactly or by their endings (LibriSpeech's ``103-1240-0000`` names
    ``flac/103-1240-0000``). ``purpose`` and ``field`` (what a speaker id becomes) go into the messages.

    Raises:
        SpeechUnitsError: not a directory, no speakers, a speaker id with whitespace.
    """
    from speechunits.corpus import SPEAKERS_FILE, open_corpus_via_manifest, read_speakers
    from speechunits.id_match import rekey
    from speechunits.probe.labels import find_label_files

    root = Path(corpus)
    if not root.is_dir():
        raise SpeechUnitsError(f"{corpus}: not a corpus directory")
    source = find_label_files(root).get("speakers")
    if source is None:
        raise SpeechUnitsError(f"{corpus}: no {SPEAKERS_FILE} (utt<TAB>speaker), utt2spk or layout whose ids name "
                               f"the speakers (LibriSpeech, VCTK ...); {purpose}")
    speakers = read_speakers(source)
    bad = next((s for s in speakers.values() if len(s.split()) != 1), None)
    if bad is not None:
        raise SpeechUnitsError(f"{source}: speaker {bad!r} has whitespace (it becomes {field})")
    utterances = list(open_corpus_via_manifest(root))
    return utterances, rekey(speakers, [u.id for u in utterances], str(source)), str(source)


def read_sources(corpus: str | os.PathLike[str], min_pause: float, activity: str = "auto",
                 quiet: bool = True) -> tuple[list[Source], str]:
    """The usable utterances of ``corpus`` (sorted by id) and where their speech came from (``words.tsv``,
    ``phones.tsv`` or :data:`VAD_ACTIVITY`; ``activity`` as the module docstring says).

    Raises:
        SpeechUnitsError: ``corpus`` not a directory, no speakers, a speaker id with whitespace,
            no alignment where ``activity`` asks for one, silero-vad missing where the VAD is needed, or
            no usable utterance.
    """
    from speechunits.id_match import named_by
    from speechunits.measure.alignments import load_alignments

    if activity not in ACTIVITIES:
        raise SpeechUnitsError(f"--activity must be one of {', '.join(ACTIVITIES)}, got {activity!r}")
    root = Path(corpus)
    utterances, speakers, speaker_source = corpus_speakers(root, "mixtures need the speaker of each utterance",
                                                           "an RTTM field")
    ids = [u.id for u in utterances]
    alignment = next((name for name in ("words.tsv", "phones.tsv") if (root / name).is_file()), None)
    if activity == "vad" or (activity == "auto" and alignment is None):
        alignment = VAD_ACTIVITY
        with_speaker = [u for u in utterances if u.id in speakers]
        segments = vad_speech(with_speaker, min_pause, quiet)
    elif alignment is None:
        raise SpeechUnitsError(f"{corpus}: no words.tsv or phones.tsv (utt<TAB>start<TAB>end<TAB>label) for "
                               "--activity alignments; --activity vad (or auto) finds the speech with silero-vad")
    else:
        table = load_alignments(root / alignment, silence=None)
        speech_only = alignment == "phones.tsv"  # words.tsv holds words alone
        segments = {utt: [(s.start, s.end) for s in segs if not (speech_only and s.label in SILENCE_LABELS)]
                    for utt, segs in named_by(table, ids, str(root / alignment)).items()}
    sources, skipped = [], 0
    for utt in utterances:
        speech = merge_segments(segments.get(utt.id, ()), min_pause)
        if utt.id in speakers and speech:
            sources.append(Source(utt.id, speakers[utt.id], utt.path, tuple(speech), utt.raw_format))
        else:
            skipped += 1
    if skipped:
        log.warning("synth mix: %d utterance(s) of %s have no speaker or no speech in %s: left out",
                    skipped, corpus, alignment)
    if not sources:
        raise SpeechUnitsError(f"{corpus}: no utterance has audio, a speaker in {speaker_source} and speech in "
                               f"{alignment} (do their ids match the audio's?)")
    return sorted(sources, key=lambda s: s.utt), alignment


def vad_speech(utterances: Sequence[Any], min_pause: float, quiet: bool = True) -> dict[str, list[tuple[float, float]]]:
    """``{utt id: [(start_s, end_s), ...]}``: silero-vad's speech runs in each utterance
    (:class:`~speechunits.segment.vad.SileroVAD`, :func:`~speechunits.segment.segments.find_segments`
    with its default thresholds and shortest run, pauses under ``min_pause`` bridged, no padding or cap).

    Raises:
        SpeechUnitsError: silero-vad is not installed (naming the ``[vad]`` extra), unreadable audio.
    """
    from speechunits.audio import Audio
    from speechunits.progress import AudioProgress
    from speechunits.segment.segments import SegmentOptions, find_segments
    from speechunits.segment.vad import WINDOW_S, SileroVAD

    try:
        vad = SileroVAD.load()
    except SpeechUnitsError as exc:
        raise SpeechUnitsError(f"the corpus has no word or phone alignment, so speech activity comes from "
                               f"silero-vad, which is missing ({exc}); or give the corpus a words.tsv") from None
    options = SegmentOptions(min_silence_s=min_pause, pad_s=0.0, max_seconds=None)
    found: dict[str, list[tuple[float, float]]] = {}
    with AudioProgress(None, desc="synth mix: speech activity (silero-vad)", quiet=quiet) as progress:
        for utt in utterances:
            audio = Audio.load(utt.path, sample_rate=SAMPLE_RATE, raw_format=utt.raw_format)
            duration = audio.samples.size / SAMPLE_RATE
            found[utt.id] = [(seg.start_s, seg.end_s) for seg in
                             find_segments(vad.speech_probabilities(audio), WINDOW_S, duration, options)]
            progress.update(duration)
    return found


# ----------------------------------------------------------------------------- public entry point


def write_mixtures(corpus: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, mixtures: int = MIXTURES,
                   max_overlap: float = MAX_OVERLAP, min_pause: float = MIN_PAUSE, gain_db: float = GAIN_DB,
                   split: Sequence[float] = SPLIT, seed: int = 0, with_sources: bool = False,
                   activity: str = "auto", quiet: bool = False) -> Path:
    """Write the two-speaker mixtures of ``corpus`` to ``out_dir/mix`` (see the module docstring);
    returns that directory.

    ``mixtures`` in all, shared out over train/dev/test by ``split`` (three positive shares) as the
    speakers are. ``with_sources``: also write each mixture's two sources (separation data). ``activity``:
    where speech activity comes from (``auto``, ``alignments``, ``vad``; the module docstring). A complete
    set with the same arguments and corpus already there is returned as it is.

    Raises:
        SpeechUnitsError: a bad argument (``mixtures < 3``, ``max_overlap`` outside [0, 1], negative
            ``min_pause``/``gain_db``/``seed``), a corpus without speakers, without alignments where
            ``activity`` asks for them, or with fewer than 6 speakers, ``out_dir`` inside the corpus, or
            ``out_dir/mix`` holding another set.
    """
    from speechunits.audio import Audio
    from speechunits.progress import AudioProgress

    request = _arguments(corpus, mixtures, max_overlap, min_pause, gain_db, split, seed, with_sources, activity)
    out = Path(out_dir)
    target = out / KIND
    if _check(corpus, out, request):
        log.info("synth mix: %s already holds this set", target)
        return target
    sources, alignment = read_sources(corpus, min_pause, activity, quiet)
    by_split = split_speakers((s.speaker for s in sources), split, seed)
    counts = dict(zip(SPLITS, apportion(mixtures, split, 1)))
    plans = {name: plan_split(name, sources, by_split[name], counts[name], max_overlap, gain_db, seed)
             for name in SPLITS}
    building = out / f".{KIND}.partial"
    if building.exists():
        log.warning("%s: removing a half-written set from an interrupted run", building)
        shutil.rmtree(building)
    summary: dict[str, Any] = {}
    with AudioProgress(None, desc="synth mix", quiet=quiet) as progress:
        for name in SPLITS:
            folder = building / name
            (folder / "wavs").mkdir(parents=True)
            rows = []
            if with_sources:
                (folder / "s1").mkdir()
                (folder / "s2").mkdir()
            for draw in plans[name]:
                first, second = (Audio.load(s.path, sample_rate=SAMPLE_RATE, raw_format=s.raw_format).samples
                                 for s in (draw.first, draw.second))
                offset = second_offset(first.size, draw.overlap_ratio)
                samples, scale = mix_sources(first, second, offset, draw.gains_db)
                _write_wav(folder / "wavs" / f"{draw.mix_id}.wav", samples)
                if with_sources:
                    for name_k, track in zip(("s1", "s2"), placed_sources(first, second, offset, draw.gains_db,
                                                                          scale, samples.size)):
                        _write_wav(folder / name_k / f"{draw.mix_id}.wav", track)
                rows.append((draw, offset, first.size, second.size, samples.size, scale))
                progress.update(samples.size / SAMPLE_RATE)
            summary[name] = _write_split(folder, rows, by_split[name], with_sources)
    meta = {"format_version": FORMAT_VERSION, "kind": KIND, **request, "alignment": alignment,
            "sample_rate": SAMPLE_RATE, "splits": summary}
    write_set_meta(building / f"{KIND}.json", meta)
    if target.exists():
        target.rmdir()  # empty (checked before); a non-empty one was refused
    building.rename(target)
    log.info("synth mix: %s", ", ".join(f"{n} {summary[n]['mixtures']} mixtures ({summary[n]['minutes']} min)"
                                        for n in SPLITS))
    return target


def _arguments(corpus: str | os.PathLike[str], mixtures: int, max_overlap: float, min_pause: float, gain_db: float,
               split: Sequence[float], seed: int, sources: bool = False, activity: str = "auto") -> dict[str, Any]:
    request = dict(corpus=str(Path(corpus).resolve()), mixtures=mixtures, max_overlap=float(max_overlap),
                   min_pause=float(min_pause), gain_db=float(gain_db), split=[float(s) for s in split], seed=seed)
    # recorded only when asked, so that sets written before these options stay the same sets
    if sources:
        request["sources"] = True
    if activity != "auto":
        request["activity"] = activity
    return request


def _check(corpus: str | os.PathLike[str], out: Path, request: dict[str, Any]) -> bool:
    """Check the arguments; whether ``out/mix`` already holds this very set.

    Raises:
        SpeechUnitsError: a bad argument, ``out`` inside the corpus, or ``out/mix`` holding something else.
    """
    if isinstance(request["mixtures"], bool) or not isinstance(request["mixtures"], int) or \
            request["mixtures"] < len(SPLITS):
        raise SpeechUnitsError(f"--mixtures must be an integer >= {len(SPLITS)} (one per split: "
                               f"{', '.join(SPLITS)}), got {request['mixtures']!r}")
    if request.get("activity", "auto") not in ACTIVITIES:
        raise SpeechUnitsError(f"--activity must be one of {', '.join(ACTIVITIES)}, got {request['activity']!r}")
    if not 0.0 <= request["max_overlap"] <= 1.0:
        raise SpeechUnitsError(f"--max-overlap must be in [0, 1] (a share of the first utterance), "
                               f"got {request['max_overlap']}")
    for option in ("min_pause", "gain_db"):
        if not (math.isfinite(request[option]) and request[option] >= 0):
            raise SpeechUnitsError(f"--{option.replace('_', '-')} must be finite and >= 0, got {request[option]}")
    check_corpus_set(corpus, out, request, SPLITS, "mixtures")
    target = out / KIND
    return holds_same_set(target, f"{KIND}.json", request, tuple(request), FORMAT_VERSION, "mixture set")


# ----------------------------------------------------------------------------- writing


def _write_wav(path: Path, samples: np.ndarray) -> None:
    from speechunits.synth.corpus import write_wav  # the stdlib writer; loads no espeak-ng

    write_wav(path, samples)


def _seconds(value: float) -> str:
    """Seconds with 7 decimals, trailing zeros dropped (a sample is 62.5 us at 16 kHz: exact)."""
    text = f"{value:.7f}".rstrip("0").rstrip(".")
    return text or "0"


def _turns(draw: Draw, offset: int, first_samples: int, second_samples: int) -> list[tuple[str, float, float]]:
    """``(speaker, start, end)`` of both sources in the mixture, sorted by start then speaker."""
    turns = []
    for source, shift, length in ((draw.first, 0, first_samples), (draw.second, offset, second_samples)):
        duration, start_s = length / SAMPLE_RATE, shift / SAMPLE_RATE
        for start, end in source.speech:
            start, end = min(start, duration), min(end, duration)
            if end > start:
                turns.append((source.speaker, start_s + start, start_s + end))
    return sorted(turns, key=lambda t: (t[1], t[0], t[2]))


def _write_split(folder: Path, rows: list[tuple[Draw, int, int, int, int, float]],
                 speakers: list[str], sources: bool = False) -> dict[str, Any]:
    """wav.scp, reco2dur, rttm, mixtures.tsv (and with ``sources`` spk1.scp, spk2.scp) of one split; its counts."""
    from speechunits.rttm import speaker_turns, write_rttm

    records, table = [], []
    speech = overlap = total = 0.0
    for draw, offset, n1, n2, n, scale in rows:
        turns = _turns(draw, offset, n1, n2)
        records.extend(speaker_turns(draw.mix_id, turns))
        per_speaker: dict[str, list[tuple[float, float]]] = {}
        for speaker, start, end in turns:
            per_speaker.setdefault(speaker, []).append((start, end))
        both = overlap_seconds(per_speaker.get(draw.first.speaker, []), per_speaker.get(draw.second.speaker, []))
        speech += sum(end - start for _, start, end in turns) - both
        overlap += both
        total += n / SAMPLE_RATE
        table.append((draw.mix_id, draw.first.utt, draw.first.speaker, "0", f"{draw.gains_db[0]:.3f}",
                      draw.second.utt, draw.second.speaker, _seconds(offset / SAMPLE_RATE),
                      f"{draw.gains_db[1]:.3f}", f"{draw.overlap_ratio:.4f}", _seconds(n / SAMPLE_RATE),
                      f"{scale:.6f}".rstrip("0").rstrip(".")))
    ids = sorted((row[0] for row in table), key=lambda x: x.encode("utf-8"))
    duration = {row[0]: row[10] for row in table}
    write_lines(folder / "wav.scp", [f"{m} wavs/{m}.wav" for m in ids])
    if sources:
        for k in (1, 2):
            write_lines(folder / f"spk{k}.scp", [f"{m} s{k}/{m}.wav" for m in ids])
    write_lines(folder / "reco2dur", [f"{m} {duration[m]}" for m in ids])
    write_rttm(folder / "rttm", records)
    write_lines(folder / "mixtures.tsv", ["\t".join(MIXTURE_COLUMNS)] + ["\t".join(row) for row in table])
    return {"mixtures": len(rows), "speakers": len(speakers), "speaker_ids": speakers,
            "minutes": round(total / 60.0, 3), "overlap_share": round(overlap / speech, 4) if speech else 0.0,
            "scaled": sum(1 for row in rows if row[5] != 1.0)}
