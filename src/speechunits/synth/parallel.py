"""A bilingual, sentence-aligned synthetic corpus for speech-to-speech translation.

Layout of ``out_dir``::

    {source}/, {target}/   ordinary synthetic corpora (see :mod:`speechunits.synth.corpus`):
                           wavs/, manifest.tsv, phones.tsv, words.tsv, textgrids/, text.tsv, speakers.tsv, ...
    pairs.tsv              id<TAB>source<TAB>target<TAB>source_text<TAB>target_text<TAB>split
    parallel.json          arguments and counts

Sentences come from :mod:`speechunits.synth.bilingual` (slot values with aligned translations),
in a seeded order. Training pairs are spoken until the source audio reaches
``(1 - 2 * HELDOUT_SHARE) * minutes``; then dev and test each get about ``HELDOUT_SHARE`` of
the pairs (at least one each): sentences that are not in train but whose every slot value
(subject, verb, object, adverbial) occurs in train, i.e. new recombinations of seen words.
Each sentence is spoken in the source language by source speaker ``k`` and in the target
language by target speaker ``k + 1`` (mod ``speakers``; speakers alternate male/female
variants, so with an even count the two voices also differ in sex).

A run writes ``out_dir/.incomplete`` first and removes it last: a directory with that marker
is a half-written corpus, which the next run clears and rebuilds. Same arguments, same bytes.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.synth.bilingual import LANGUAGES, Combination, combinations
from speechunits.synth.speakers import sample_speakers

log = logging.getLogger(__name__)

#: Share of pairs held out for dev and for test (each).
HELDOUT_SHARE = 0.1
INCOMPLETE_MARKER = ".incomplete"
PAIRS_FILE = "pairs.tsv"
PAIRS_COLUMNS = ("id", "source", "target", "source_text", "target_text", "split")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class _Pair:
    combination: Combination
    split: str
    source_task: Any  # corpus._Task
    target_task: Any


def synthesize_parallel(out_dir: str | os.PathLike[str], *, source: str = "es", target: str = "en",
                        minutes: float = 5.0, speakers: int = 4, seed: int = 0, workers: int | None = None,
                        quiet: bool = False) -> Path:
    """Write the bilingual corpus to ``out_dir`` (see the module docstring); returns ``out_dir``.

    Raises:
        SpeechUnitsError: an unsupported language pair, bad counts, a non-empty ``out_dir`` that
            is not a half-written parallel corpus, or espeak-ng missing.
    """
    from speechunits.synth.process import run_in_fresh_process

    _validate(Path(out_dir), source, target, minutes, speakers, workers)
    reply = run_in_fresh_process("parallel", dict(out_dir=str(out_dir), source=source, target=target,
                                                  minutes=minutes, speakers=speakers, seed=seed, workers=workers,
                                                  quiet=quiet))
    log.info("synth parallel: %s pairs (train/dev/test) in %s", reply["pairs"], out_dir)
    return Path(out_dir)


def _validate(out: Path, source: str, target: str, minutes: float, speakers: int, workers: int | None) -> None:
    for flag, language in (("--source", source), ("--target", target)):
        if language not in LANGUAGES:
            raise SpeechUnitsError(f"{flag} {language!r}: the bilingual grammar covers {', '.join(LANGUAGES)}")
    if source == target:
        raise SpeechUnitsError(f"--source and --target are both {source!r}")
    if not minutes > 0 or not np.isfinite(minutes):
        raise SpeechUnitsError(f"--minutes must be positive, got {minutes}")
    if speakers < 1:
        raise SpeechUnitsError(f"--speakers must be >= 1, got {speakers}")
    if workers is not None and workers < 1:
        raise SpeechUnitsError(f"--workers must be >= 1, got {workers}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / INCOMPLETE_MARKER).exists())):
        raise SpeechUnitsError(f"{out}: output directory exists and is not empty")


def heldout_candidates(order: list[Combination], train: set[Combination]) -> Iterator[Combination]:
    """Combinations of ``order`` not in ``train`` whose every slot value occurs in ``train``."""
    seen = {value for combo in train for value in combo.values()}
    for combo in order:
        if combo not in train and all(value in seen for value in combo.values()):
            yield combo


def parallel_here(out_dir: str, source: str, target: str, minutes: float, speakers: int, seed: int,
                  workers: int | None, quiet: bool) -> dict[str, Any]:
    """The synthesis itself, in this process (``python -m speechunits.synth``)."""
    from functools import partial

    import soxr  # noqa: F401  (imported before forking, so that forks do not import it)

    from speechunits.progress import AudioProgress
    from speechunits.synth.align import segments_from_events  # noqa: F401  (imported before forking, as soxr)
    from speechunits.synth.corpus import (SAMPLE_RATE, _remove_extra_files, _Task, _synthesise_task, _warm_up,
                                          _write_tables)
    from speechunits.synth.espeak import initialise
    from speechunits.synth.forking import map_forked

    out = Path(out_dir)
    _validate(out, source, target, minutes, speakers, workers)
    if (out / INCOMPLETE_MARKER).exists():
        log.warning("%s: clearing a half-written parallel corpus", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text("written by speechunits synth parallel; removed when complete\n")
    dirs = {source: out / source, target: out / target}
    for d in dirs.values():
        (d / "wavs").mkdir(parents=True)
        (d / "textgrids").mkdir()
    voices = {source: sample_speakers(speakers, [source], seed), target: sample_speakers(speakers, [target], seed)}
    workers = workers if workers is not None else (os.cpu_count() or 1)
    initialise()
    _warm_up(voices[source] + voices[target])

    order = [c for c in combinations()]
    order = [order[i] for i in np.random.default_rng([seed, 6]).permutation(len(order))]

    def make_pair(combo: Combination, split: str, k: int) -> _Pair:
        """Pair number ``k``: its ids and seeds depend on ``k`` only (not on how far the forks ran ahead)."""
        tasks = []
        for side, (language, speaker) in enumerate(((source, voices[source][k % speakers]),
                                                     (target, voices[target][(k + 1) % speakers]))):
            tasks.append(_Task(f"{speaker.name}_{k // speakers:04d}", speaker, combo.text(language),
                               seed * 1_000_003 + 2 * k + side))
        return _Pair(combo, split, tasks[0], tasks[1])

    def speak_all(pairs: Iterator[_Pair]) -> Iterator[tuple[_Pair, Any, Any]]:
        pending: list[_Pair] = []

        def tasks() -> Iterator[tuple[Any, Path]]:
            for pair in pairs:
                pending.append(pair)
                yield pair.source_task, dirs[source]
                yield pair.target_task, dirs[target]

        results = map_forked(lambda job: _synthesise_task(job[0], job[1]), tasks(), workers)
        try:
            for src in results:
                tgt = next(results)
                yield pending.pop(0), src, tgt
        finally:
            results.close()

    train_target_s = minutes * 60.0 * (1.0 - 2 * HELDOUT_SHARE)
    done: list[tuple[_Pair, Any, Any]] = []
    source_s = 0.0
    with AudioProgress(minutes * 60.0, desc="synth parallel", quiet=quiet) as progress:
        spoken = speak_all(make_pair(combo, "train", k) for k, combo in enumerate(order))
        for pair, src, tgt in spoken:
            done.append((pair, src, tgt))
            seconds = src.num_samples / SAMPLE_RATE
            source_s += seconds
            progress.update(seconds)
            if source_s >= train_target_s:
                break
        spoken.close()  # stops the forks that ran ahead; their files are removed below
        train = {p.combination for p, _, _ in done}
        per_split = max(1, int(round(len(done) * HELDOUT_SHARE / (1.0 - 2 * HELDOUT_SHARE))))
        held = list(_take(heldout_candidates(order, train), 2 * per_split))
        if len(held) < 2:
            raise SpeechUnitsError(f"--minutes {minutes}: too few training sentences to recombine into held-out ones")
        splits = ["dev" if i % 2 == 0 else "test" for i in range(len(held))]
        start = len(done)
        heldout_pairs = (make_pair(combo, split, start + i) for i, (combo, split) in enumerate(zip(held, splits)))
        for pair, src, tgt in speak_all(heldout_pairs):
            done.append((pair, src, tgt))
            progress.update(src.num_samples / SAMPLE_RATE)
    _check_heldout(done)
    _remove_extra_files(dirs[source], {entry[1].utt_id for entry in done})
    _remove_extra_files(dirs[target], {entry[2].utt_id for entry in done})

    args = dict(minutes=minutes, speakers=speakers, seed=seed, source=source, target=target)
    for side, language in ((1, source), (2, target)):
        _write_tables(dirs[language], [entry[side] for entry in done], voices[language],
                      dict(args, languages=[language], parallel=True))
    with open(out / PAIRS_FILE, "w", encoding="utf-8") as handle:
        handle.write("\t".join(PAIRS_COLUMNS) + "\n")
        for n, (pair, src, tgt) in enumerate(done):
            handle.write(f"p{n:05d}\t{src.utt_id}\t{tgt.utt_id}\t{src.text}\t{tgt.text}\t{pair.split}\n")
    counts = {split: sum(1 for p, _, _ in done if p.split == split) for split in ("train", "dev", "test")}
    meta = {"format_version": FORMAT_VERSION, **args, "pairs": counts,
            "train_minutes_source": round(train_target_s / 60.0, 3), "heldout_share": HELDOUT_SHARE}
    (out / "parallel.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / INCOMPLETE_MARKER).unlink()
    return {"pairs": counts}


def _take(items: Iterator[Combination], n: int) -> Iterator[Combination]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


def _check_heldout(done: list[tuple[_Pair, Any, Any]]) -> None:
    """Held-out sentences never occur in train, in either language, and use only seen slot values."""
    train = [(p, s, t) for p, s, t in done if p.split == "train"]
    train_texts = {s.text for _, s, _ in train} | {t.text for _, _, t in train}
    seen = {value for p, _, _ in train for value in p.combination.values()}
    for pair, src, tgt in done:
        if pair.split == "train":
            continue
        if src.text in train_texts or tgt.text in train_texts:
            raise SpeechUnitsError(f"internal error: held-out sentence {src.text!r} occurs in train")
        if not all(value in seen for value in pair.combination.values()):
            raise SpeechUnitsError(f"internal error: held-out sentence {src.text!r} has an unseen word")


def read_parallel_pairs(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a ``pairs.tsv`` as dicts keyed by header name."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != PAIRS_COLUMNS:
        raise SpeechUnitsError(f"{path}: not a pairs file (header must be {' '.join(PAIRS_COLUMNS)})")
    return [dict(zip(PAIRS_COLUMNS, line.split("\t"))) for line in lines[1:] if line]

