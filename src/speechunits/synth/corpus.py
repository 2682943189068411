"""Write a multi-speaker, phone-aligned synthetic corpus with espeak-ng.

Layout of ``out_dir``::

    wavs/{utt}.wav           16 kHz mono PCM_16
    manifest.tsv             fairseq manifest (root = absolute wavs dir)
    phones.tsv, words.tsv    utt_id<TAB>start_s<TAB>end_s<TAB>label (silence = "sil" in phones)
    textgrids/{utt}.TextGrid Praat long format, tiers "words" and "phones" (silence = empty)
    speakers.tsv             utt_id<TAB>speaker
    speaker_info.tsv         speaker, language, voice, pitch, pitch_range, rate
    text.tsv                 utt_id<TAB>sentence
    text                     Kaldi transcripts: ``utt_id sentence`` (sorted by id, as Kaldi wants)
    manifest.jsonl           one ``{"id", "path" (relative to the file), "num_samples", "speaker", "text"}`` per line
    corpus.json              the arguments, for the record

Text (``text``): ``list``, the language's built-in sentences (:mod:`speechunits.synth.sentences`),
each spoken by many voices; ``grammar``, sentences sampled from the English agreement grammar of
:mod:`speechunits.synth.syntax` (nearly all distinct; the quarter reserved for syntactic benchmarks
is never used); ``mixed``, the two in turn, so a unit LM hears both the list's vocabulary (the
lexical benchmark's words) and the grammar (the syntactic benchmark's). Only English has the grammar.

Determinism: espeak-ng is initialised (and warmed up the same way) in one process and every
utterance is synthesised in a fresh fork of it, so the same arguments give byte-identical
files whatever ``workers``. Utterances are planned in a fixed order (speakers round-robin,
each language's sentences in a seeded shuffle) and synthesis stops at the first utterance
that reaches ``minutes``.

Speed: that process is a fresh, lean interpreter (``python -m speechunits.synth``), since
forking a process that has loaded torch costs several times more than the synthesis of a
short utterance; each fork writes its own wav and TextGrid.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from itertools import count as count_from
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import SILENCE, Segment, write_segments_tsv
from speechunits.measure.textgrid import Tier, fill_tier, write_textgrid
from speechunits.progress import AudioProgress
from speechunits.synth.forking import map_forked
from speechunits.synth.sentences import sentences
from speechunits.synth.speakers import Speaker, sample_speakers, write_speaker_info

log = logging.getLogger(__name__)

#: Output sample rate of the corpus.
SAMPLE_RATE = 16000
CORPUS_FORMAT_VERSION = 1
#: The parent's warm-up synthesis (see :func:`_warm_up`).
WARM_UP_TEXT = "a e i o u"
WARM_UP_RATE = 175
WARM_UP_PITCH = 50
#: Where a corpus's sentences come from (module docstring).
TEXT_SOURCES = ("list", "grammar", "mixed")
#: Languages that have a sentence grammar for ``grammar``/``mixed`` text.
GRAMMAR_LANGUAGES = ("en",)


@dataclass(frozen=True)
class _Task:
    utt_id: str
    speaker: Speaker
    text: str
    seed: int


@dataclass(frozen=True)
class _Result:
    utt_id: str
    speaker: str
    text: str
    num_samples: int  # at SAMPLE_RATE
    phones: list[Segment]
    words: list[Segment]


def _plan(speakers: Sequence[Speaker], seed: int, text: str = "list") -> Iterator[_Task]:
    """Endless deterministic utterance plan: speakers round-robin; per language, the built-in
    sentences shuffled (``list``), grammar samples (``grammar``), or the two in turn (``mixed``)."""
    from speechunits.synth.syntax import make_sentence, spoken_text

    orders: dict[str, list[str]] = {}
    positions: dict[str, int] = {}
    rounds: dict[str, int] = {}
    grammar_rngs: dict[str, np.random.Generator] = {}
    per_speaker = {s.name: 0 for s in speakers}

    def from_list(lang: str) -> str:
        if positions.get(lang, 0) >= len(orders.get(lang, [])):
            pool = sentences(lang)
            rng = np.random.default_rng([seed, rounds.get(lang, 0), sum(map(ord, lang))])
            orders[lang] = [pool[i] for i in rng.permutation(len(pool))]
            positions[lang] = 0
            rounds[lang] = rounds.get(lang, 0) + 1
        positions[lang] += 1
        return orders[lang][positions[lang] - 1]

    def from_grammar(lang: str) -> str:
        rng = grammar_rngs.setdefault(lang, np.random.default_rng([seed, 6, sum(map(ord, lang))]))
        return spoken_text(make_sentence(rng))

    for n in count_from():
        speaker = speakers[n % len(speakers)]
        lang = speaker.language
        index = per_speaker[speaker.name]
        per_speaker[speaker.name] += 1
        # mixed: each speaker alternates, neighbouring speakers in opposite phase
        grammar = text == "grammar" or (text == "mixed" and (index + n % len(speakers)) % 2 == 1)
        sentence = from_grammar(lang) if grammar else from_list(lang)
        yield _Task(f"{speaker.name}_{index:04d}", speaker, sentence, seed * 1_000_003 + n)


@dataclass(frozen=True)
class Spoken:
    """One utterance: int16 ``samples [T]`` at :data:`SAMPLE_RATE`, its phone and word segments
    (phones cover the whole audio) and the labels of espeak's phone events (stress-free, pauses
    left out), which keep phones the alignment drops as zero-length."""

    samples: np.ndarray
    phones: list[Segment]
    words: list[Segment]
    phone_events: tuple[str, ...]


def speak(text: str, speaker: Speaker, seed: int, *, phonemes: bool = False) -> Spoken:
    """Speak and align one utterance (call it in a fresh fork, see the module docstring).

    ``phonemes=True`` reads ``[[...]]`` as espeak phoneme mnemonics (see
    :func:`speechunits.synth.espeak.phoneme_input`).
    """
    import soxr

    from speechunits.synth.align import clean_label, segments_from_events
    from speechunits.synth.espeak import synthesise

    synthesis = synthesise(text, speaker.voice, rate=speaker.rate, pitch=speaker.pitch,
                           pitch_range=speaker.pitch_range, seed=seed, phonemes=phonemes)
    phones, words = segments_from_events(synthesis, text)
    audio = soxr.resample(synthesis.samples.astype(np.float32) / 32768.0, synthesis.sample_rate, SAMPLE_RATE, "HQ")
    samples = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    duration = samples.size / SAMPLE_RATE
    phones = _clip(phones, duration)
    if phones:  # phones cover the whole audio: end exactly where the 16 kHz audio ends
        last = phones[-1]
        phones[-1] = Segment(last.start, round(duration, 5), last.label)
    events = tuple(label for label in (clean_label(e.label) for e in synthesis.phones) if label)
    return Spoken(samples, phones, _clip(words, duration), events)


def _synthesise_task(task: _Task, out: Path) -> _Result:
    """Run in a fresh fork: speak, align, resample to 16 kHz int16, write wav and TextGrid."""
    spoken = speak(task.text, task.speaker, task.seed)
    result = _Result(task.utt_id, task.speaker.name, task.text, int(spoken.samples.size), spoken.phones, spoken.words)
    _write_utterance(out, result, spoken.samples)
    return result


def _clip(segments: list[Segment], duration: float) -> list[Segment]:
    """Clamp segments to ``[0, duration]`` (resampling can shorten the audio by a sample)."""
    out = []
    for seg in segments:
        end = min(seg.end, round(duration, 5))
        if end > seg.start:
            out.append(Segment(seg.start, end, seg.label))
    return out


def synthesize_corpus(
    out_dir: str | os.PathLike[str],
    minutes: float,
    speakers: int,
    languages: Sequence[str] = ("en",),
    seed: int = 0,
    workers: int | None = None,
    quiet: bool = False,
    text: str = "list",
) -> Path:
    """Synthesise about ``minutes`` of speech by ``speakers`` voices into ``out_dir``.

    ``text`` is one of :data:`TEXT_SOURCES` (module docstring).

    The work runs in a fresh ``python -m speechunits.synth`` process (see module docstring).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        SpeechUnitsError: bad arguments, unknown language, non-empty output directory,
            espeak-ng not installed, or a failure inside the synthesis process.
    """
    from speechunits.synth.process import run_in_fresh_process

    out = Path(out_dir)
    _validate(out, minutes, speakers, list(languages), seed, workers, text)
    reply = run_in_fresh_process("corpus", dict(out_dir=str(out), minutes=minutes, speakers=speakers,
                                                languages=list(languages), seed=seed, workers=workers, quiet=quiet,
                                                text=text))
    log.info("synth: %d utterances, %.1f min of audio, %d speakers in %s (%.0fx real time)",
             reply["utterances"], reply["duration_s"] / 60.0, reply["speakers"], out, reply["realtime_factor"])
    return out


def _validate(out: Path, minutes: float, speakers: int, languages: list[str], seed: int,
              workers: int | None, text: str = "list") -> list[Speaker]:
    if not minutes > 0 or not np.isfinite(minutes):
        raise SpeechUnitsError(f"--minutes must be positive, got {minutes}")
    if workers is not None and workers < 1:
        raise SpeechUnitsError(f"--workers must be >= 1, got {workers}")
    if not languages:
        raise SpeechUnitsError("--languages: empty list")
    for lang in languages:
        sentences(lang)  # raises for an unknown language
    if text not in TEXT_SOURCES:
        raise SpeechUnitsError(f"--text must be one of {', '.join(TEXT_SOURCES)}, got {text!r}")
    no_grammar = [lang for lang in languages if lang not in GRAMMAR_LANGUAGES]
    if text != "list" and no_grammar:
        raise SpeechUnitsError(f"--text {text}: no sentence grammar for {', '.join(no_grammar)} "
                               f"(only {', '.join(GRAMMAR_LANGUAGES)}); use --text list")
    speaker_list = sample_speakers(speakers, languages, seed)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpeechUnitsError(f"{out}: output directory exists and is not empty")
    return speaker_list


def synthesize_here(out_dir: str | os.PathLike[str], minutes: float, speakers: int, languages: Sequence[str],
                    seed: int, workers: int | None, quiet: bool, text: str = "list") -> dict[str, float]:
    """The synthesis itself, in this process (called by ``python -m speechunits.synth``).

    Returns:
        A summary: utterances, duration_s, speakers, realtime_factor.
    """
    from functools import partial

    import soxr  # noqa: F401  (imported before forking, so that forks do not import it)

    from speechunits.synth.align import segments_from_events  # noqa: F401
    from speechunits.synth.espeak import initialise

    out = Path(out_dir)
    speaker_list = _validate(out, minutes, speakers, list(languages), seed, workers, text)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    (out / "textgrids").mkdir(exist_ok=True)

    initialise()  # before any fork
    _warm_up(speaker_list)
    target_s = minutes * 60.0
    done_s = 0.0
    results: list[_Result] = []
    results_iter = map_forked(partial(_synthesise_task, out=out), _plan(speaker_list, seed, text), workers)
    with AudioProgress(target_s, desc="synth", quiet=quiet) as progress:
        for result in results_iter:
            results.append(result)
            seconds = result.num_samples / SAMPLE_RATE
            done_s += seconds
            progress.update(seconds)
            if done_s >= target_s:
                break
        results_iter.close()  # stops the forks still running
        speed = progress.realtime_factor
    _remove_extra_files(out, {r.utt_id for r in results})
    args: dict[str, object] = dict(minutes=minutes, speakers=speakers, languages=list(languages), seed=seed)
    if text != "list":  # corpus.json of a list corpus stays as it was
        args["text"] = text
    _write_tables(out, results, speaker_list, args)
    return {"utterances": len(results), "duration_s": done_s, "speakers": len(speaker_list),
            "realtime_factor": speed}


def _remove_extra_files(out: Path, keep: set[str]) -> None:
    """Delete wavs/TextGrids of utterances synthesised past the target (and any partial file)."""
    for folder in (out / "wavs", out / "textgrids"):
        for path in folder.iterdir():
            if path.stem not in keep or path.name.startswith("."):
                path.unlink()


def _warm_up(speakers: Sequence[Speaker]) -> None:
    """Synthesise a fixed phrase per language in the parent, so that forks start warm.

    A fresh process spends about half of its first synthesis on one-off set-up; doing it
    once here, always the same way, halves the per-utterance cost and keeps every fork's
    starting state identical (so output stays byte-identical).
    """
    import soxr

    from speechunits.synth.espeak import synthesise

    for language in dict.fromkeys(s.language for s in speakers):
        voice = next(s.voice for s in speakers if s.language == language)
        result = synthesise(WARM_UP_TEXT, voice, rate=WARM_UP_RATE, pitch=WARM_UP_PITCH, pitch_range=WARM_UP_PITCH)
        soxr.resample(result.samples.astype(np.float32), result.sample_rate, SAMPLE_RATE, "HQ")


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Write int16 ``samples [T]`` as a 16 kHz mono PCM_16 wav."""
    import wave

    # The stdlib writer: soundfile's close() fsyncs every file (about 10 ms each here).
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(samples.astype("<i2").tobytes())


def _write_utterance(out: Path, result: _Result, samples: np.ndarray) -> None:
    write_wav(out / "wavs" / f"{result.utt_id}.wav", samples)
    duration = round(samples.size / SAMPLE_RATE, 5)
    tiers = [
        Tier("words", 0.0, duration, fill_tier([(s.start, s.end, s.label) for s in result.words], 0.0, duration)),
        Tier("phones", 0.0, duration, fill_tier(
            [(s.start, s.end, s.label) for s in result.phones if s.label != SILENCE], 0.0, duration)),
    ]
    write_textgrid(out / "textgrids" / f"{result.utt_id}.TextGrid", tiers)


def _write_tables(out: Path, results: list[_Result], speakers: list[Speaker], args: dict[str, object]) -> None:
    from speechunits.corpus import write_tsv

    write_tsv(out / "manifest.tsv", str((out / "wavs").resolve()),
              [(f"{r.utt_id}.wav", r.num_samples) for r in results])
    write_segments_tsv(out / "phones.tsv", {r.utt_id: r.phones for r in results})
    write_segments_tsv(out / "words.tsv", {r.utt_id: r.words for r in results})
    with open(out / "speakers.tsv", "w", encoding="utf-8") as handle:
        for r in results:
            handle.write(f"{r.utt_id}\t{r.speaker}\n")
    write_speaker_info(out / "speaker_info.tsv", speakers)
    with open(out / "text.tsv", "w", encoding="utf-8") as handle:
        for r in results:
            handle.write(f"{r.utt_id}\t{r.text}\n")
    _write_other_transcripts(out, results)
    meta = {"format_version": CORPUS_FORMAT_VERSION, "sample_rate": SAMPLE_RATE, "utterances": len(results),
            "duration_s": round(sum(r.num_samples for r in results) / SAMPLE_RATE, 3), **args}
    (out / "corpus.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not results:
        raise SpeechUnitsError(f"{out}: no utterance was synthesised")


def _write_other_transcripts(out: Path, results: list[_Result]) -> None:
    """The same transcripts as ``text.tsv`` as a Kaldi ``text`` file and a JSONL manifest.

    Kaldi's file is sorted by utterance id (``LC_ALL=C`` order, what its tools check); the
    JSONL's ``path`` is relative to the manifest, so both files are byte-identical wherever the
    corpus is written.
    """
    with open(out / "text", "w", encoding="utf-8") as handle:
        for r in sorted(results, key=lambda r: r.utt_id.encode("utf-8")):
            handle.write(f"{r.utt_id} {' '.join(r.text.split())}\n")
    with open(out / "manifest.jsonl", "w", encoding="utf-8") as handle:
        for r in results:
            record = {"id": r.utt_id, "path": f"wavs/{r.utt_id}.wav", "num_samples": r.num_samples,
                      "speaker": r.speaker, "text": r.text}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
