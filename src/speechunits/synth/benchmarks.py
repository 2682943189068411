"""Lexical (sWUGGY-like) and syntactic (sBLIMP-like) minimal-pair sets in ZeroSpeech 2021's layout.

``write_lexical(OUT)`` writes ``OUT/lexical/{dev,test}/<filename>.wav`` and ``gold.csv`` with
``id,filename,word,correct,voice,frequency,length,phones``; ``write_syntactic(OUT)`` writes
``OUT/syntactic/{dev,test}/`` with ``id,filename,type,subtype,correct,voice,transcription``.
Rows with the same ``id`` and ``voice`` form a pair (``correct`` 1 = word / grammatical). Beside
them: ``{dev,test}/phones.tsv`` (the phone alignment of every file, keyed by filename),
``voices.tsv`` and ``lexical.json`` / ``syntactic.json`` (arguments and counts).

* Lexical: real words are words of the language's training sentences with ``frequency`` = their
  count there (:mod:`speechunits.synth.lexicon`); each gets one non-word
  (:mod:`speechunits.synth.nonwords`). dev and test use disjoint words. Both members are spoken
  from espeak-ng phoneme mnemonics (``[[...]]``), so they take the same path through espeak;
  ``phones`` (and ``length``) are the phones espeak-ng reports speaking (its phone events, IPA
  without stress). They equal the requested ones for every real word; for a few non-words
  (about 3 in 1000 files) espeak picks another allophone in the new context (``t`` spoken as a
  flap ``ɾ``, ``ɔː`` as ``ɔːɹ``): those are listed in ``lexical.json`` (``phone_mismatches``), the
  phone count never changes, and the spoken form is checked against the lexicon again (a
  non-word spoken as a lexicon word is an error).
  With a ``carrier`` (e.g. ``"she said {} twice"``) every word and non-word is spoken inside the
  same phrase instead of alone, so that it has the stress and timing of running speech (a unit LM
  trained on sentences has never heard words in citation form). The carrier's words are spoken
  from their espeak-ng mnemonics too; ``phones`` and ``length`` stay the item's own phones, and
  ``phones.tsv`` aligns the whole file.
* Syntactic: pairs from :mod:`speechunits.synth.syntax`, subtypes in turn; dev and test share
  no grammatical sentence. Both members are spoken from text.
* Voices: :func:`speechunits.synth.speakers.sample_unseen_speakers` (variants no corpus uses), or
  with ``voices_from`` the first ``voices`` speakers of a corpus's ``speaker_info.tsv``: a set in the
  training voices separates what an LM cannot model from what a new voice changes (a diagnosis,
  not the benchmark).

The whole set is built in ``OUT/.lexical.partial`` (or ``.syntactic.partial``) and renamed into
place at the end, so ``OUT/lexical`` is either complete or absent; a leftover partial directory
(an interrupted run) is removed by the next run. Same arguments, same bytes (each file is
spoken in a fresh fork of one warmed-up espeak-ng process, as :mod:`speechunits.synth.corpus`).
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.synth.set_reuse import write_set_meta
from speechunits.measure.alignments import Segment
from speechunits.synth.lexicon import Pronunciation
from speechunits.synth.speakers import LANGUAGE_VOICES, Speaker, read_speaker_info, sample_unseen_speakers

log = logging.getLogger(__name__)

SPLITS = ("dev", "test")
LEXICAL_COLUMNS = ("id", "filename", "word", "correct", "voice", "frequency", "length", "phones")
SYNTACTIC_COLUMNS = ("id", "filename", "type", "subtype", "correct", "voice", "transcription")
FORMAT_VERSION = 1
#: Defaults: pairs per split and voices per pair.
LEXICAL_PAIRS = 300
SYNTACTIC_PAIRS = 350
VOICES = 2
#: Shortest real word (in phones) that gets a non-word.
MIN_WORD_PHONES = 3
#: Draws of a minimal pair before the grammar counts as exhausted.
MAX_DRAWS = 2000
#: Where the word goes in a lexical ``carrier`` phrase.
CARRIER_SLOT = "{}"


@dataclass(frozen=True)
class LexicalPair:
    word: Pronunciation
    nonword: Pronunciation
    frequency: int


@dataclass(frozen=True)
class _Item:
    """One file to speak: where it goes, what to say, how, and the row it gets in gold.csv."""

    split: str
    filename: str
    text: str
    phonemes: bool
    speaker: Speaker
    seed: int
    expected_phones: tuple[str, ...] | None
    row: tuple[object, ...]


# ----------------------------------------------------------------------------- planning (pure Python)


def choose_lexical_pairs(lexicon: dict[str, Pronunciation], frequencies: dict[str, int], pairs: int, seed: int,
                         min_length: int = MIN_WORD_PHONES) -> dict[str, list[LexicalPair]]:
    """``pairs`` (word, non-word) pairs per split, disjoint words, deterministic for ``seed``.

    Raises:
        SpeechUnitsError: fewer usable words than ``2 * pairs``.
    """
    from speechunits.synth.nonwords import NonwordGenerator

    generator = NonwordGenerator(lexicon)
    pool = sorted(w for w in lexicon if generator.eligible(w, min_length))
    need = pairs * len(SPLITS)
    if need > len(pool):
        raise SpeechUnitsError(f"--pairs {pairs}: the vocabulary has only {len(pool)} words of {min_length}+ phones "
                               f"(at most {len(pool) // len(SPLITS)} pairs per split)")
    order = [pool[i] for i in np.random.default_rng([seed, 3]).permutation(len(pool))]
    chosen: list[LexicalPair] = []
    for index, word in enumerate(order):
        nonword = generator.generate(word, np.random.default_rng([seed, 4, index]))
        if nonword is not None:
            chosen.append(LexicalPair(lexicon[word], nonword, int(frequencies.get(word, 0))))
        if len(chosen) == need:
            break
    if len(chosen) < need:
        raise SpeechUnitsError(f"--pairs {pairs}: only {len(chosen)} words got a non-word "
                               f"(at most {len(chosen) // len(SPLITS)} pairs per split)")
    return {split: chosen[i * pairs:(i + 1) * pairs] for i, split in enumerate(SPLITS)}


def choose_syntactic_pairs(pairs: int, seed: int) -> dict[str, list[Any]]:
    """``pairs`` minimal pairs per split, subtypes in turn, no grammatical sentence twice.

    Every grammatical member is one of the grammar's benchmark-reserved sentences
    (:func:`speechunits.synth.syntax.reserved_for_benchmarks`), which no training text contains.
    """
    from speechunits.synth.syntax import SUBTYPES, make_pair, reserved_for_benchmarks

    seen: set[tuple[str, ...]] = set()
    out: dict[str, list[Any]] = {}
    for s, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 5, s])
        chosen = []
        for k in range(pairs):
            type_, subtype = SUBTYPES[k % len(SUBTYPES)]
            for _ in range(MAX_DRAWS):
                pair = make_pair(type_, subtype, rng)
                if pair.grammatical not in seen and reserved_for_benchmarks(pair.grammatical):
                    break
            else:
                raise SpeechUnitsError(f"--pairs {pairs}: the grammar ran out of distinct {type_}/{subtype} "
                                       f"sentences after {len(chosen)} pairs of {split}")
            seen.add(pair.grammatical)
            chosen.append(pair)
        out[split] = chosen
    return out


def _filename(kind: str, language: str, seed: int, split: str, pair_id: int, voice: str, correct: int,
              carrier: str | None = None) -> str:
    """An opaque, deterministic file name (it must not tell the word from the non-word)."""
    key = f"{kind}|{language}|{seed}|{split}|{pair_id}|{voice}|{correct}"
    if carrier is not None:
        key += f"|{carrier}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def carrier_words(carrier: str) -> tuple[list[str], list[str]]:
    """The words before and after the slot of a lexical carrier phrase (lowercased, punctuation dropped).

    Raises:
        SpeechUnitsError: the phrase has no ``{}`` slot, more than one, or no word besides it.
    """
    from speechunits.synth.lexicon import words_of

    if carrier.count(CARRIER_SLOT) != 1:
        raise SpeechUnitsError(f"--carrier {carrier!r}: needs exactly one {CARRIER_SLOT} where the word goes")
    before, after = (words_of(part) for part in carrier.split(CARRIER_SLOT))
    if not before and not after:
        raise SpeechUnitsError(f"--carrier {carrier!r}: has no word besides the {CARRIER_SLOT} slot")
    return before, after


# ----------------------------------------------------------------------------- public entry points


def write_lexical(out_dir: str | os.PathLike[str], *, language: str = "en", pairs: int = LEXICAL_PAIRS,
                  voices: int = VOICES, seed: int = 0, workers: int | None = None, quiet: bool = False,
                  voices_from: str | os.PathLike[str] | None = None, carrier: str | None = None) -> Path:
    """Write the lexical set to ``out_dir/lexical`` (see the module docstring); returns that directory.

    ``voices_from``: a ``speaker_info.tsv`` whose first ``voices`` speakers speak the set instead of
    unseen voices. ``carrier``: a phrase with one ``{}`` (``"she said {} twice"``) that every item is
    spoken in; ``None`` speaks items alone (ZeroSpeech's sWUGGY design).

    Raises:
        SpeechUnitsError: unknown language, bad counts, more pairs than the vocabulary allows,
            ``out_dir/lexical`` already there, a bad ``voices_from`` (see :func:`_check_common`), a bad
            ``carrier`` (see :func:`carrier_words`; also a carrier word espeak-ng cannot pronounce), or
            espeak-ng missing.
    """
    from speechunits.synth.lexicon import training_vocabulary

    voices_from = None if voices_from is None else str(voices_from)
    if carrier is not None:
        carrier_words(carrier)
    _check_common(out_dir, "lexical", language, pairs, voices, seed, workers, voices_from)
    vocabulary = training_vocabulary(language)
    if pairs * len(SPLITS) > len(vocabulary):
        raise SpeechUnitsError(f"--pairs {pairs}: {language} has {len(vocabulary)} distinct words in its training "
                               f"sentences, fewer than {len(SPLITS)} x {pairs}")
    return _run("lexical", out_dir, language=language, pairs=pairs, voices=voices, seed=seed, workers=workers,
                quiet=quiet, voices_from=voices_from, carrier=carrier)


def write_syntactic(out_dir: str | os.PathLike[str], *, language: str = "en", pairs: int = SYNTACTIC_PAIRS,
                    voices: int = VOICES, seed: int = 0, workers: int | None = None, quiet: bool = False,
                    voices_from: str | os.PathLike[str] | None = None) -> Path:
    """Write the syntactic set to ``out_dir/syntactic`` (see the module docstring); returns that directory.

    ``voices_from`` as :func:`write_lexical`.

    Raises:
        SpeechUnitsError: a language without a grammar (only ``en``), bad counts, ``out_dir/syntactic``
            already there, a bad ``voices_from``, or espeak-ng missing.
    """
    voices_from = None if voices_from is None else str(voices_from)
    _check_common(out_dir, "syntactic", language, pairs, voices, seed, workers, voices_from)
    if language != "en":
        raise SpeechUnitsError(f"--language {language!r}: the syntactic grammar exists for en only")
    return _run("syntactic", out_dir, language=language, pairs=pairs, voices=voices, seed=seed, workers=workers,
                quiet=quiet, voices_from=voices_from)


def _check_common(out_dir: str | os.PathLike[str], kind: str, language: str, pairs: int, voices: int, seed: int,
                  workers: int | None, voices_from: str | None = None) -> list[Speaker]:
    """Check the arguments; the speakers of the set.

    Raises:
        SpeechUnitsError: also when ``voices_from`` cannot be read, has fewer than ``voices``
            speakers, or one of the first ``voices`` speaks another language than ``language``.
    """
    from speechunits.synth.sentences import available_languages

    if language not in available_languages() or language not in LANGUAGE_VOICES:
        known = sorted(set(available_languages()) & set(LANGUAGE_VOICES))
        raise SpeechUnitsError(f"--language {language!r}: no training sentences to draw from (known: {', '.join(known)})")
    if pairs < 1:
        raise SpeechUnitsError(f"--pairs must be >= 1, got {pairs}")
    if workers is not None and workers < 1:
        raise SpeechUnitsError(f"--workers must be >= 1, got {workers}")
    target = Path(out_dir) / kind
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SpeechUnitsError(f"{target}: already exists (remove it to rebuild)")
    if voices_from is None:
        return sample_unseen_speakers(voices, language, seed)
    if voices < 1:
        raise SpeechUnitsError(f"--voices must be >= 1, got {voices}")
    speakers = read_speaker_info(voices_from)
    if len(speakers) < voices:
        raise SpeechUnitsError(f"--voices {voices}: {voices_from} lists only {len(speakers)} speakers")
    other = [s.name for s in speakers[:voices] if s.language != language]
    if other:
        raise SpeechUnitsError(f"--voices-from {voices_from}: {', '.join(other)} speak another language than "
                               f"{language!r}")
    return speakers[:voices]


def _run(kind: str, out_dir: str | os.PathLike[str], **request: Any) -> Path:
    from speechunits.synth.process import run_in_fresh_process

    reply = run_in_fresh_process(kind, dict(out_dir=str(out_dir), **request))
    log.info("synth %s: %d files, %.1f min of audio in %s", kind, reply["files"], reply["duration_s"] / 60.0,
             Path(out_dir) / kind)
    return Path(out_dir) / kind


# ----------------------------------------------------------------------------- in the synthesis process


def lexical_here(out_dir: str, language: str, pairs: int, voices: int, seed: int, workers: int | None,
                 quiet: bool, voices_from: str | None = None, carrier: str | None = None) -> dict[str, Any]:
    """Plan and speak the lexical set in this process (``python -m speechunits.synth``)."""
    from speechunits.synth.espeak import initialise, phoneme_phrase
    from speechunits.synth.lexicon import pronounce, training_vocabulary
    from speechunits.synth.nonwords import NonwordGenerator

    speakers = _check_common(out_dir, "lexical", language, pairs, voices, seed, workers, voices_from)
    initialise()
    vocabulary = training_vocabulary(language)
    lexicon = pronounce(sorted(vocabulary), LANGUAGE_VOICES[language])
    plan = choose_lexical_pairs(lexicon, dict(vocabulary), pairs, seed)
    before, after = ([], []) if carrier is None else carrier_words(carrier)
    frame = pronounce(before + after, LANGUAGE_VOICES[language])
    unspoken = sorted(set(before + after) - set(frame))
    if unspoken:
        raise SpeechUnitsError(f"--carrier {carrier!r}: espeak-ng has no pronunciation of {', '.join(unspoken)}")
    head, tail = [frame[w] for w in before], [frame[w] for w in after]
    head_ipa = tuple(p for w in head for p in w.ipa)
    tail_ipa = tuple(p for w in tail for p in w.ipa)
    items: list[_Item] = []
    for split, chosen in plan.items():
        for pair_id, pair in enumerate(chosen, start=1):
            for speaker in speakers:
                for correct, pron in ((1, pair.word), (0, pair.nonword)):
                    name = _filename("lexical", language, seed, split, pair_id, speaker.name, correct, carrier)
                    row = (pair_id, name, pron.spelling, correct, speaker.name, pair.frequency if correct else 0,
                           len(pron.ipa), " ".join(pron.ipa))
                    text = phoneme_phrase([w.mnemonics for w in [*head, pron, *tail]])
                    items.append(_Item(split, name, text, True, speaker, seed * 1_000_003 + len(items),
                                       head_ipa + pron.ipa + tail_ipa, row))
    generator = NonwordGenerator(lexicon)

    def finalize(item: _Item, spoken: tuple[str, ...]) -> tuple[object, ...]:
        word_phones = plan[item.split][int(item.row[0]) - 1].word.ipa  # type: ignore[call-overload]
        if len(spoken) != len(head_ipa) + len(word_phones) + len(tail_ipa):
            raise SpeechUnitsError(f"{item.split}/{item.filename}: espeak spoke {len(spoken)} phones for "
                                   f"{item.row[2]!r}, its word has {len(word_phones)}"
                                   + (" (choose another --seed)" if carrier is None else
                                      f" and the carrier {len(head_ipa) + len(tail_ipa)}: espeak-ng joined them (a "
                                      "linking r before a vowel, say); choose another --carrier"))
        spoken = spoken[len(head_ipa):len(spoken) - len(tail_ipa)]  # the item's own phones
        if item.row[3] == 0 and generator.is_lexical(Pronunciation(str(item.row[2]), (), spoken)):
            raise SpeechUnitsError(f"{item.split}/{item.filename}: non-word {item.row[2]!r} was spoken as a word "
                                   f"of the lexicon ({' '.join(spoken)}; choose another --seed)")
        return (*item.row[:6], len(spoken), " ".join(spoken))

    extra = {"vocabulary_words": len(vocabulary), "pronounced_words": len(lexicon),
             "distinct_words": len({p.word.spelling for c in plan.values() for p in c}),
             "min_word_phones": MIN_WORD_PHONES, "carrier_phones_before": list(head_ipa),
             "carrier_phones_after": list(tail_ipa)}
    return _speak_set(Path(out_dir), "lexical", items, LEXICAL_COLUMNS, speakers, workers, quiet,
                      dict(language=language, pairs=pairs, voices=voices, seed=seed, voices_from=voices_from,
                           carrier=carrier), extra, finalize)


def syntactic_here(out_dir: str, language: str, pairs: int, voices: int, seed: int, workers: int | None,
                   quiet: bool, voices_from: str | None = None) -> dict[str, Any]:
    """Plan and speak the syntactic set in this process (``python -m speechunits.synth``)."""
    from speechunits.synth.espeak import initialise
    from speechunits.synth.syntax import spoken_text

    speakers = _check_common(out_dir, "syntactic", language, pairs, voices, seed, workers, voices_from)
    initialise()
    plan = choose_syntactic_pairs(pairs, seed)
    items: list[_Item] = []
    subtype_counts: dict[str, int] = {}
    for split, chosen in plan.items():
        for pair_id, pair in enumerate(chosen, start=1):
            key = f"{split}/{pair.type}/{pair.subtype}"
            subtype_counts[key] = subtype_counts.get(key, 0) + 1
            for speaker in speakers:
                for correct, words in ((1, pair.grammatical), (0, pair.ungrammatical)):
                    name = _filename("syntactic", language, seed, split, pair_id, speaker.name, correct)
                    text = spoken_text(words)
                    row = (pair_id, name, pair.type, pair.subtype, correct, speaker.name, text)
                    items.append(_Item(split, name, text, False, speaker, seed * 1_000_003 + len(items), None, row))
    return _speak_set(Path(out_dir), "syntactic", items, SYNTACTIC_COLUMNS, speakers, workers, quiet,
                      dict(language=language, pairs=pairs, voices=voices, seed=seed, voices_from=voices_from),
                      {"pairs_by_subtype": subtype_counts}, lambda item, spoken: item.row)


def _speak_item(item: _Item, root: Path) -> tuple[int, list[Segment], tuple[str, ...]]:
    """Run in a fresh fork: speak one item and write its wav; returns (samples, phone segments, phone events)."""
    from speechunits.synth.corpus import speak, write_wav

    spoken = speak(item.text, item.speaker, item.seed, phonemes=item.phonemes)
    write_wav(root / item.split / f"{item.filename}.wav", spoken.samples)
    return int(spoken.samples.size), spoken.phones, spoken.phone_events


def _speak_set(out: Path, kind: str, items: list[_Item], columns: Sequence[str], speakers: list[Speaker],
               workers: int | None, quiet: bool, args: dict[str, Any], extra: dict[str, Any],
               finalize: Callable[[_Item, tuple[str, ...]], tuple[object, ...]]) -> dict[str, Any]:
    """Speak ``items`` into ``out/.{kind}.partial``, write gold.csv, phones.tsv, voices.tsv, then rename.

    ``finalize(item, phone_events)`` gives the item's gold.csv row once it is spoken.
    """
    from functools import partial

    import soxr  # noqa: F401  (imported before forking, so that forks do not import it)

    from speechunits.measure.alignments import write_segments_tsv
    from speechunits.progress import AudioProgress
    from speechunits.synth.align import segments_from_events  # noqa: F401  (imported before forking, as soxr)
    from speechunits.synth.corpus import SAMPLE_RATE, _warm_up
    from speechunits.synth.speakers import write_speaker_info
    from speechunits.synth.forking import map_forked

    if len({i.filename for i in items}) != len(items):
        raise SpeechUnitsError(f"{kind}: file names collide; choose another --seed")
    building = out / f".{kind}.partial"
    if building.exists():
        log.warning("%s: removing a half-written set from an interrupted run", building)
        shutil.rmtree(building)
    for split in SPLITS:
        (building / split).mkdir(parents=True)
    _warm_up(speakers)  # also clears espeak's state after phonemisation (it loses the first phone event otherwise)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    phones: dict[str, dict[str, list[Segment]]] = {split: {} for split in SPLITS}
    mismatches: list[dict[str, str]] = []
    rows: dict[str, list[tuple[object, ...]]] = {split: [] for split in SPLITS}
    duration = 0.0
    with AudioProgress(None, desc=f"synth {kind}", quiet=quiet) as progress:
        for item, (num_samples, segments, spoken) in zip(
                items, map_forked(partial(_speak_item, root=building), items, workers)):
            phones[item.split][item.filename] = segments
            seconds = num_samples / SAMPLE_RATE
            duration += seconds
            progress.update(seconds)
            try:
                rows[item.split].append(finalize(item, spoken))
            except SpeechUnitsError:  # the set cannot be finished with these arguments: leave nothing behind
                shutil.rmtree(building)
                raise
            if item.expected_phones is not None and spoken != item.expected_phones:
                mismatches.append({"filename": f"{item.split}/{item.filename}", "requested": " ".join(item.expected_phones),
                                   "spoken": " ".join(spoken)})
    if mismatches:
        log.warning("%s: %d files whose phone events differ from the requested phones (see %s.json)", kind,
                    len(mismatches), kind)
    for split in SPLITS:
        _write_csv(building / split / "gold.csv", columns, rows[split])
        write_segments_tsv(building / split / "phones.tsv", phones[split])
    write_speaker_info(building / "voices.tsv", speakers)
    meta = {"format_version": FORMAT_VERSION, "kind": kind, **args, "files": len(items),
            "pairs_per_split": {s: len({i.row[0] for i in items if i.split == s}) for s in SPLITS},
            "duration_s": round(duration, 3), "voices": [s.to_row() for s in speakers], **extra,
            "phone_mismatches": len(mismatches), "phone_mismatch_examples": mismatches[:20]}
    write_set_meta(building / f"{kind}.json", meta)
    target = out / kind
    if target.exists():
        target.rmdir()  # empty (checked before); a non-empty one was refused
    building.rename(target)
    return {"files": len(items), "duration_s": duration, "phone_mismatches": len(mismatches)}


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[tuple[object, ...]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def read_gold(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a ZeroSpeech 2021 ``gold.csv`` as dicts keyed by header name."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))

