"""A query-by-example spoken term detection (QbE-STD) set in QUESST 2014's layout.

``write_qbe(OUT)`` writes ``OUT/qbe/`` (``<name>`` defaults to ``qbe_<language>``)::

    Audio/<name>_00001.wav                  documents, 16 kHz mono int16
    dev_queries/<name>_dev_0001.wav         queries: one word alone, in voices no document has
    eval_queries/<name>_eval_0001.wav
    scoring/language_key_utterances.lst     ``Audio/<doc>.wav <language>`` per document
    scoring/language_key_{dev,eval}.lst     ``{dev,eval}_queries/<query>.wav <language>`` per query
    scoring/groundtruth_<name>_{dev,eval}/  ECF, term list and RTTM
                                            (:func:`speechunits.search.quesst.write_ground_truth`)
    documents.tsv                           doc_id, voice, text (with a header)
    words.tsv                               the documents' word alignment (``doc start_s end_s label``)
    queries.tsv                             query_id, split, word, voice, n_documents (with a header)
    voices.tsv                              document voices (``d00``...) then query voices (``q00``...)
    qbe.json                                the arguments and counts

so ``speechunits.search.quesst.quesst_ground_truth(OUT/qbe, "dev")`` reads it as it reads QUESST.

* Documents: one sentence each of the language's built-in list (:func:`speechunits.synth.sentences.sentences`,
  the text of a ``list`` corpus) in a seeded order, cycled when more documents are asked than
  sentences are left (English has 207): a sentence then comes back in another voice. Voices:
  :func:`speechunits.synth.speakers.sample_speakers` (the corpus's espeak-ng variants) with
  prosody drawn from a seed stream (:data:`DOC_VOICE_STREAM` + seed) that no corpus seed below it
  uses, round-robin.
* Queries: words of at least ``min_phones`` phones (espeak-ng's pronunciation alone; the phone
  count keeps out most function words), each spoken alone from its text by one of
  ``query_voices`` voices of :func:`speechunits.synth.speakers.sample_unseen_speakers`, variants
  no corpus and no document uses. dev and eval use disjoint words. A share (``unmatched_share``)
  of each split occurs in no document, as QUESST's queries without a match: the eligible words of
  fewest sentences are held out and their sentences never become documents (at most
  :data:`MAX_HELD_OUT_SHARE` of the sentences). The others occur in at least one document.
* Ground truth: an occurrence is a document word segment of
  :func:`speechunits.synth.corpus.speak` whose label is the query's word (case-insensitive,
  punctuation stripped, :func:`speechunits.synth.lexicon.words_of`); start and duration are
  the segment's. espeak-ng glues some short words to a neighbour (``of the`` gets one word
  event), so a word that is not timed on its own in every document that says it is never a
  query: the RTTM lists every occurrence of every query. Only whole words count (``light`` does
  not occur in ``lighthouse``), as in QUESST's exact-match ground truth.

The set is built in ``OUT/.qbe.partial`` and renamed into place at the end, so ``OUT/qbe`` is
complete or absent; a leftover partial directory is removed by the next run. ``OUT/qbe`` already
holding the same set (same arguments in ``qbe.json``) is returned as it is; another set is
refused. Same arguments, same bytes (each file is spoken in a fresh fork of one warmed-up
espeak-ng process, as :mod:`speechunits.synth.benchmarks`).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import write_lines
from speechunits.synth.set_reuse import holds_same_set, write_set_meta
from speechunits.measure.alignments import Segment
from speechunits.synth.lexicon import words_of
from speechunits.synth.speakers import (LANGUAGE_VOICES, UNSEEN_FEMALE_VARIANTS, UNSEEN_MALE_VARIANTS, Speaker,
                                        sample_speakers, sample_unseen_speakers)

log = logging.getLogger(__name__)

KIND = "qbe"
FORMAT_VERSION = 1
SPLITS = ("dev", "eval")
#: Defaults.
DOCUMENTS = 300
QUERIES = 60
DOC_VOICES = 6
QUERY_VOICES = 4
UNMATCHED_SHARE = 0.2
MIN_PHONES = 4
#: Most of the sentences that holding out words for unmatched queries may take from the documents.
MAX_HELD_OUT_SHARE = 1 / 3
#: Added to the seed of the document voices' prosody (a corpus of seed s draws from stream s).
DOC_VOICE_STREAM = 1 << 32
#: What a set's name may hold (it becomes file stems and RTTM fields).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
#: The arguments recorded in ``qbe.json`` that define a set (``workers`` and ``quiet`` do not).
SET_ARGUMENTS = ("name", "language", "documents", "queries", "doc_voices", "query_voices", "unmatched_share",
                 "min_phones", "seed")
DOCUMENT_COLUMNS = ("doc_id", "voice", "text")
QUERY_COLUMNS = ("query_id", "split", "word", "voice", "n_documents")


@dataclass(frozen=True)
class _File:
    """One wav to speak: its folder under the set, its stem, text, voice and espeak seed."""

    folder: str
    stem: str
    text: str
    speaker: Speaker
    seed: int


@dataclass(frozen=True)
class Query:
    """One query of the set."""

    query_id: str
    split: str
    word: str
    voice: str


# ----------------------------------------------------------------------------- planning (pure Python)


def plan_documents(pool: Sequence[str], eligible: Iterable[str], documents: int, held_out: int,
                   seed: int) -> tuple[list[str], list[str]]:
    """The documents' texts and ``held_out`` words of ``eligible`` that none of them says.

    The sentences of ``pool`` are shuffled (seeded); the held-out words are the eligible words of
    fewest sentences (ties in a seeded order), each taking its sentences out of the documents while
    at most :data:`MAX_HELD_OUT_SHARE` of the sentences are taken. The documents are the remaining
    sentences in that order, cycled until there are ``documents``.

    Raises:
        SpeechUnitsError: fewer than ``held_out`` words can be held out.
    """
    order = [pool[i] for i in np.random.default_rng([seed, 8]).permutation(len(pool))]
    containing: dict[str, list[int]] = {}
    for index, sentence in enumerate(order):
        for word in dict.fromkeys(words_of(sentence)):
            containing.setdefault(word, []).append(index)
    candidates = sorted(set(eligible) & set(containing))
    rank = dict(zip(candidates, np.random.default_rng([seed, 9]).permutation(len(candidates)).tolist()))
    candidates.sort(key=lambda w: (len(containing[w]), rank[w]))
    limit = int(len(order) * MAX_HELD_OUT_SHARE)
    held: list[str] = []
    removed: set[int] = set()
    for word in candidates:
        if len(held) == held_out:
            break
        grown = removed | set(containing[word])
        if len(grown) <= limit:
            held.append(word)
            removed = grown
    if len(held) < held_out:
        raise SpeechUnitsError(f"--queries: {held_out} words that occur in no document are needed (the unmatched "
                               f"share of dev and eval), but only {len(held)} can be held out of the documents "
                               f"without losing more than a third of the {len(order)} sentences; ask fewer "
                               "--queries or a lower --unmatched-share")
    kept = [sentence for index, sentence in enumerate(order) if index not in removed]
    return [kept[k % len(kept)] for k in range(documents)], held


def _single_word(label: str) -> str | None:
    words = words_of(label)
    return words[0] if len(words) == 1 else None


def timed_words(texts: Sequence[str], alignments: Sequence[Sequence[Segment]]) -> set[str]:
    """Words of ``texts`` that have a word segment of their own at each of their occurrences.

    ``alignments[i]`` are the word segments of ``texts[i]``; a word counts in a document as often
    as a segment's label is that word alone (case-insensitive, punctuation stripped).
    """
    said_anywhere: set[str] = set()
    untimed: set[str] = set()
    for text, segments in zip(texts, alignments):
        said = Counter(words_of(text))
        timed = Counter(_single_word(s.label) for s in segments)
        said_anywhere.update(said)
        untimed.update(w for w, n in said.items() if timed.get(w, 0) != n)
    return said_anywhere - untimed


def occurrences_in(word: str, alignments: Sequence[Sequence[Segment]]) -> list[tuple[int, Segment]]:
    """``(document index, segment)`` of each segment whose label is ``word`` alone, in document order."""
    return [(index, s) for index, segments in enumerate(alignments) for s in segments
            if _single_word(s.label) == word]


def choose_matched(candidates: Iterable[str], count: int, seed: int) -> list[str]:
    """``count`` of ``candidates`` in a seeded order (dev's first, then eval's).

    Raises:
        SpeechUnitsError: fewer candidates than ``count``.
    """
    pool = sorted(set(candidates))
    if len(pool) < count:
        raise SpeechUnitsError(f"--queries: the documents say only {len(pool)} distinct words that can be queries "
                               f"(timed on their own in every document, enough phones), fewer than the {count} "
                               "matched queries of dev and eval; ask more --documents or fewer --queries")
    return [pool[i] for i in np.random.default_rng([seed, 10]).permutation(len(pool))[:count]]


def split_queries(name: str, matched: Sequence[str], unmatched: Sequence[str], per_split: int,
                  voices: Sequence[Speaker], seed: int) -> list[Query]:
    """The queries of dev then eval: each split's matched and unmatched words in a seeded order,
    numbered from 1, voices in turn."""
    matched_each = len(matched) // len(SPLITS)
    unmatched_each = len(unmatched) // len(SPLITS)
    queries = []
    for s, split in enumerate(SPLITS):
        words = (list(matched[s * matched_each:(s + 1) * matched_each])
                 + list(unmatched[s * unmatched_each:(s + 1) * unmatched_each]))
        assert len(words) == per_split
        order = np.random.default_rng([seed, 11, s]).permutation(len(words)).tolist()
        for j, index in enumerate(order):
            queries.append(Query(f"{name}_{split}_{j + 1:04d}", split, words[index], voices[j % len(voices)].name))
    return queries


def document_voice(index: int, cycle: int, voices: int) -> int:
    """The voice of document ``index`` when the sentences repeat every ``cycle`` documents: voices in
    turn, shifted by one at each repeat, so a sentence comes back in another voice (while it comes
    back fewer times than there are voices)."""
    return (index % cycle + index // cycle) % voices


def set_voices(language: str, doc_voices: int, query_voices: int, seed: int) -> tuple[list[Speaker], list[Speaker]]:
    """The document voices (``d00``...) and the query voices (``q00``...); see the module docstring."""
    documents = sample_speakers(doc_voices, [language], DOC_VOICE_STREAM + seed)
    queries = sample_unseen_speakers(query_voices, language, seed)
    return ([replace(s, name=f"d{i:02d}") for i, s in enumerate(documents)],
            [replace(s, name=f"q{i:02d}") for i, s in enumerate(queries)])


def unmatched_count(queries: int, unmatched_share: float) -> int:
    """Queries per split that occur in no document (the share, rounded half up)."""
    return int(queries * unmatched_share + 0.5)


# ----------------------------------------------------------------------------- public entry point


def write_qbe(out_dir: str | os.PathLike[str], *, language: str = "en", documents: int = DOCUMENTS,
              queries: int = QUERIES, doc_voices: int = DOC_VOICES, query_voices: int = QUERY_VOICES,
              unmatched_share: float = UNMATCHED_SHARE, min_phones: int = MIN_PHONES, seed: int = 0,
              workers: int | None = None, quiet: bool = False, name: str | None = None) -> Path:
    """Write the QbE set to ``out_dir/qbe`` (see the module docstring); returns that directory.

    ``queries`` per split (dev and eval); ``name`` defaults to ``qbe_<language>``. A complete set
    with the same arguments already there is returned as it is.

    Raises:
        SpeechUnitsError: unknown language, bad counts or name, more query voices than there are
            unseen voices, too few words for the queries asked, ``out_dir/qbe`` holding something
            else, or espeak-ng missing.
    """
    from speechunits.synth.lexicon import training_vocabulary
    from speechunits.synth.process import run_in_fresh_process

    request = _arguments(language, documents, queries, doc_voices, query_voices, unmatched_share, min_phones, seed,
                         name)
    target = Path(out_dir) / KIND
    if _check(out_dir, request, workers):
        log.info("synth qbe: %s already holds this set", target)
        return target
    vocabulary = training_vocabulary(language)
    if queries * len(SPLITS) > len(vocabulary):
        raise SpeechUnitsError(f"--queries {queries}: {language} has {len(vocabulary)} distinct words in its "
                               f"sentences, fewer than {len(SPLITS)} x {queries}")
    reply = run_in_fresh_process(KIND, dict(out_dir=str(out_dir), workers=workers, quiet=quiet, **request))
    log.info("synth qbe: %d documents (%.1f min), %d + %d queries, %d occurrences in %s", reply["documents"],
             reply["document_minutes"], queries, queries, reply["occurrences"], target)
    return target


def _arguments(language: str, documents: int, queries: int, doc_voices: int, query_voices: int,
               unmatched_share: float, min_phones: int, seed: int, name: str | None) -> dict[str, Any]:
    return dict(name=name if name is not None else f"qbe_{language}", language=language, documents=documents,
                queries=queries, doc_voices=doc_voices, query_voices=query_voices,
                unmatched_share=float(unmatched_share), min_phones=min_phones, seed=seed)


def _check(out_dir: str | os.PathLike[str], request: dict[str, Any], workers: int | None) -> bool:
    """Check the arguments; whether ``out_dir/qbe`` already holds this very set.

    Raises:
        SpeechUnitsError: a bad argument, or ``out_dir/qbe`` holding something else.
    """
    from speechunits.synth.sentences import available_languages

    language = request["language"]
    if language not in available_languages() or language not in LANGUAGE_VOICES:
        known = sorted(set(available_languages()) & set(LANGUAGE_VOICES))
        raise SpeechUnitsError(f"--language {language!r}: no sentences to make documents of "
                               f"(known: {', '.join(known)})")
    for option in ("documents", "queries", "doc_voices", "query_voices", "min_phones"):
        if request[option] < 1:
            raise SpeechUnitsError(f"--{option.replace('_', '-')} must be >= 1, got {request[option]}")
    limit = 2 * min(len(UNSEEN_MALE_VARIANTS), len(UNSEEN_FEMALE_VARIANTS))
    if request["query_voices"] > limit:
        raise SpeechUnitsError(f"--query-voices: at most {limit} distinct unseen voices, got {request['query_voices']}")
    share = request["unmatched_share"]
    if not 0.0 <= share < 1.0:
        raise SpeechUnitsError(f"--unmatched-share must be in [0, 1), got {share}")
    if unmatched_count(request["queries"], share) >= request["queries"]:
        raise SpeechUnitsError(f"--unmatched-share {share}: leaves no query with a match out of "
                               f"--queries {request['queries']}")
    if request["seed"] < 0:
        raise SpeechUnitsError(f"--seed must be >= 0, got {request['seed']}")
    if workers is not None and workers < 1:
        raise SpeechUnitsError(f"--workers must be >= 1, got {workers}")
    if not NAME_PATTERN.fullmatch(request["name"]):
        raise SpeechUnitsError(f"--name {request['name']!r}: use letters, digits, '_' and '-' only "
                               "(it names files and RTTM fields)")
    target = Path(out_dir) / KIND
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise SpeechUnitsError(f"{out_dir}: exists and is not a directory")
    return holds_same_set(target, f"{KIND}.json", request, SET_ARGUMENTS, FORMAT_VERSION, "QbE set")


# ----------------------------------------------------------------------------- in the synthesis process


def qbe_here(out_dir: str, name: str, language: str, documents: int, queries: int, doc_voices: int,
             query_voices: int, unmatched_share: float, min_phones: int, seed: int, workers: int | None,
             quiet: bool) -> dict[str, Any]:
    """Plan and speak the set in this process (``python -m speechunits.synth``)."""
    from functools import partial

    from speechunits.progress import AudioProgress
    from speechunits.synth.corpus import SAMPLE_RATE, _warm_up
    from speechunits.synth.espeak import initialise
    from speechunits.synth.forking import map_forked
    from speechunits.synth.lexicon import pronounce, training_vocabulary
    from speechunits.synth.sentences import sentences

    request = _arguments(language, documents, queries, doc_voices, query_voices, unmatched_share, min_phones, seed,
                         name)
    out = Path(out_dir)
    target = out / KIND
    if _check(out, request, workers):
        meta = json.loads((target / f"{KIND}.json").read_text(encoding="utf-8"))
        return {"documents": documents, "document_minutes": meta["document_minutes"],
                "occurrences": sum(meta["occurrences"].values())}
    doc_speakers, query_speakers = set_voices(language, doc_voices, query_voices, seed)
    initialise()
    lexicon = pronounce(sorted(training_vocabulary(language)), LANGUAGE_VOICES[language])
    eligible = {w for w, p in lexicon.items() if len(p.ipa) >= min_phones}
    unmatched_each = unmatched_count(queries, unmatched_share)
    matched_each = queries - unmatched_each
    pool = sentences(language)
    texts, held = plan_documents(pool, eligible, documents, unmatched_each * len(SPLITS), seed)
    said = {w for text in texts for w in words_of(text)}
    choose_matched(eligible & said, matched_each * len(SPLITS), seed)  # fails before any synthesis

    doc_ids = [f"{name}_{k + 1:05d}" for k in range(documents)]
    cycle = len(set(texts))
    files = [_File("Audio", doc_ids[k], text, doc_speakers[document_voice(k, cycle, doc_voices)],
                   seed * 1_000_003 + k) for k, text in enumerate(texts)]
    workers = workers if workers is not None else (os.cpu_count() or 1)
    building = out / f".{KIND}.partial"
    if building.exists():
        log.warning("%s: removing a half-written set from an interrupted run", building)
        shutil.rmtree(building)
    for folder in ("Audio", *(f"{split}_queries" for split in SPLITS), "scoring"):
        (building / folder).mkdir(parents=True)
    _warm_up(doc_speakers + query_speakers)  # loads soxr too (align came with lexicon): forks import nothing
    speak = partial(_speak_file, root=building)
    durations: dict[str, float] = {}
    alignments: list[list[Segment]] = []
    with AudioProgress(None, desc="synth qbe", quiet=quiet) as progress:
        for item, (num_samples, words) in zip(files, map_forked(speak, files, workers)):
            durations[item.stem] = num_samples / SAMPLE_RATE
            alignments.append(words)
            progress.update(durations[item.stem])
        try:
            matched = choose_matched(eligible & timed_words(texts, alignments), matched_each * len(SPLITS), seed)
        except SpeechUnitsError:  # the set cannot be finished with these arguments: leave nothing behind
            shutil.rmtree(building)
            raise
        plan = split_queries(name, matched, held, queries, query_speakers, seed)
        voice_of = {s.name: s for s in query_speakers}
        query_files = [_File(f"{q.split}_queries", q.query_id, q.word, voice_of[q.voice],
                             seed * 1_000_003 + documents + j) for j, q in enumerate(plan)]
        query_durations: list[float] = []
        for num_samples, _ in map_forked(speak, query_files, workers):
            query_durations.append(num_samples / SAMPLE_RATE)
            progress.update(query_durations[-1])

    found = {q.query_id: occurrences_in(q.word, alignments) for q in plan}
    unexpected = [q.word for q in plan if q.word in held and found[q.query_id]]
    assert not unexpected, unexpected  # held-out words were taken out of every document
    meta = _write_tables(building, request, doc_ids, files, durations, alignments, plan, found,
                         doc_speakers, query_speakers, query_durations, len(set(texts)))
    if target.exists():
        target.rmdir()  # empty (checked before); a non-empty one was refused
    building.rename(target)
    return {"documents": documents, "document_minutes": meta["document_minutes"],
            "occurrences": sum(meta["occurrences"].values())}


def _speak_file(item: _File, root: Path) -> tuple[int, list[Segment]]:
    """Run in a fresh fork: speak one file and write its wav; returns (samples, word segments)."""
    from speechunits.synth.corpus import speak, write_wav

    spoken = speak(item.text, item.speaker, item.seed)
    write_wav(root / item.folder / f"{item.stem}.wav", spoken.samples)
    return int(spoken.samples.size), spoken.words


def _write_tables(building: Path, request: dict[str, Any], doc_ids: list[str], files: list[_File],
                  durations: dict[str, float], alignments: list[list[Segment]], plan: list[Query],
                  found: dict[str, list[tuple[int, Segment]]], doc_speakers: list[Speaker],
                  query_speakers: list[Speaker], query_durations: list[float], distinct: int) -> dict[str, Any]:
    """Ground truth, language keys, documents.tsv, words.tsv, queries.tsv, voices.tsv and qbe.json."""
    from speechunits.measure.alignments import write_segments_tsv
    from speechunits.search.quesst import Occurrence, write_ground_truth
    from speechunits.synth.speakers import write_speaker_info

    name, language = request["name"], request["language"]
    scoring = building / "scoring"
    doc_durations = {doc: durations[doc] for doc in doc_ids}
    write_lines(scoring / "language_key_utterances.lst", [f"Audio/{doc}.wav {language}" for doc in doc_ids])
    occurrences: dict[str, int] = {}
    unmatched: dict[str, int] = {}
    for split in SPLITS:
        chosen = [q for q in plan if q.split == split]
        write_lines(scoring / f"language_key_{split}.lst",
                     [f"{split}_queries/{q.query_id}.wav {language}" for q in chosen])
        lines = [Occurrence(doc_ids[index], q.query_id, segment.start, round(segment.end - segment.start, 5))
                 for q in chosen for index, segment in found[q.query_id]]
        write_ground_truth(scoring / f"groundtruth_{name}_{split}", f"{name}_{split}", documents=doc_durations,
                           terms={q.query_id: q.word for q in chosen}, occurrences=lines, language=language)
        occurrences[split] = len(lines)
        unmatched[split] = sum(1 for q in chosen if not found[q.query_id])
    write_lines(building / "documents.tsv", ["\t".join(DOCUMENT_COLUMNS)]
                 + [f"{f.stem}\t{f.speaker.name}\t{f.text}" for f in files])
    write_segments_tsv(building / "words.tsv", dict(zip(doc_ids, alignments)))
    write_lines(building / "queries.tsv", ["\t".join(QUERY_COLUMNS)]
                 + [f"{q.query_id}\t{q.split}\t{q.word}\t{q.voice}\t{len({i for i, _ in found[q.query_id]})}"
                    for q in plan])
    write_speaker_info(building / "voices.tsv", doc_speakers + query_speakers)
    total = sum(doc_durations.values())
    meta = {"format_version": FORMAT_VERSION, "kind": KIND, **request,
            "distinct_sentences": distinct, "document_minutes": round(total / 60.0, 3),
            "queries_per_split": {s: sum(1 for q in plan if q.split == s) for s in SPLITS},
            "unmatched_queries": unmatched, "occurrences": occurrences,
            "query_seconds": {"min": round(min(query_durations), 3),
                              "mean": round(sum(query_durations) / len(query_durations), 3)},
            "voices": {"documents": [s.to_row() for s in doc_speakers],
                       "queries": [s.to_row() for s in query_speakers]}}
    write_set_meta(building / f"{KIND}.json", meta)
    return meta
