"""ZeroSpeech 2021 lexical (sWUGGY) and syntactic (sBLIMP) accuracy of a unit LM.

Layout (the challenge's, and what ``speechunits synth lexical|syntactic`` writes)::

    DIR/lexical/{dev,test}/<filename>.wav + gold.csv   id,filename,word,correct,voice,frequency,length,phones
    DIR/syntactic/{dev,test}/<filename>.wav + gold.csv id,filename,type,subtype,correct,voice,transcription

Gold files are read by header name (column order and extra columns do not matter). Rows with
the same ``id`` and ``voice`` form a pair: ``correct`` 1 (real word / grammatical) against 0.
A pair scores 1 when the correct item's score is higher, 0.5 when equal, 0 otherwise; pair
scores are averaged over voices per ``id``, then over ids - overall, by ``type`` / ``subtype``
(syntactic), by ``length`` and by frequency band of the real word (lexical:
``oov`` (0), ``1-5``, ``6-20``, ``21-100``, ``>100``). Both the summed and the
length-normalised log-probability are used as scores and reported side by side.

Submission files (``write_submission``): ``OUT/lexical/<set>.txt`` and
``OUT/syntactic/<set>.txt``, one ``<filename> <score>`` line per file, as the challenge's
evaluation tool reads them.
"""
from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

TASKS = ("lexical", "syntactic")
GOLD_FILE = "gold.csv"
REQUIRED = ("id", "filename", "correct", "voice")
FREQUENCY_BANDS = ((0, 0, "oov"), (1, 5, "1-5"), (6, 20, "6-20"), (21, 100, "21-100"), (101, math.inf, ">100"))
SCORINGS = ("sum", "normalised")


@dataclass(frozen=True)
class GoldRow:
    """One gold.csv row: the pairing keys, the label and every other column (``fields``)."""

    id: str
    filename: str
    correct: int
    voice: str
    fields: dict[str, str]


def read_gold(path: str | Path) -> list[GoldRow]:
    """Rows of a ZeroSpeech 2021 ``gold.csv`` (by header name; extra columns kept in ``fields``)."""
    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: gold file not found")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise SpeechUnitsError(f"{path}: header {header} lacks the columns {missing}")
        rows = []
        for line_no, raw in enumerate(reader, start=2):
            record = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if record["correct"] not in ("0", "1", "True", "False", "true", "false"):
                raise SpeechUnitsError(f"{path}:{line_no}: correct must be 1 or 0, got {record['correct']!r}")
            correct = 1 if record["correct"] in ("1", "True", "true") else 0
            rows.append(GoldRow(record["id"], record["filename"], correct, record["voice"], record))
    if not rows:
        raise SpeechUnitsError(f"{path}: no rows")
    return rows


def frequency_band(frequency: str | float) -> str:
    """The band of a word count (``oov`` for 0 or empty); a non-numeric value is its own band."""
    try:
        value = float(frequency or 0)
    except ValueError:
        return str(frequency)
    for low, high, name in FREQUENCY_BANDS:
        if low <= value <= high:
            return name
    return "oov"


@dataclass
class Pair:
    """One (id, voice) pair: the correct and the incorrect item's filenames and the correct row."""

    id: str
    voice: str
    correct: GoldRow
    wrong: GoldRow


def make_pairs(rows: Iterable[GoldRow], source: str = "gold.csv") -> list[Pair]:
    """Pairs by (id, voice); each must have exactly one correct and one incorrect row."""
    groups: dict[tuple[str, str], list[GoldRow]] = defaultdict(list)
    for row in rows:
        groups[(row.id, row.voice)].append(row)
    pairs = []
    for (pid, voice), members in groups.items():
        good = [r for r in members if r.correct == 1]
        bad = [r for r in members if r.correct == 0]
        if len(good) != 1 or len(bad) != 1:
            raise SpeechUnitsError(f"{source}: id {pid!r} voice {voice!r} has {len(good)} correct and {len(bad)} "
                                   "incorrect rows; a pair needs one of each")
        pairs.append(Pair(pid, voice, good[0], bad[0]))
    return pairs


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def pair_accuracy(pairs: list[Pair], scores: dict[str, float],
                  groups: dict[str, Callable[[Pair], str]] | None = None) -> dict[str, Any]:
    """ZeroSpeech 2021 accuracy: pair score (1 / 0.5 / 0), mean over voices per id, mean over ids.

    Args:
        scores: filename -> score (higher = more probable); a pair with a missing file is an error.
        groups: name -> function giving a pair's group (e.g. its subtype); each group is averaged
            the same way over the ids in it.

    Returns:
        ``{"accuracy", "ids", "pairs", "by_<name>": {group: {"accuracy", "ids"}}}``.
    """
    per_id: dict[str, list[float]] = defaultdict(list)
    first: dict[str, Pair] = {}
    for pair in pairs:
        for row in (pair.correct, pair.wrong):
            if row.filename not in scores:
                raise SpeechUnitsError(f"no score for {row.filename!r} (pair id {pair.id!r}, voice {pair.voice!r})")
        good, bad = scores[pair.correct.filename], scores[pair.wrong.filename]
        per_id[pair.id].append(1.0 if good > bad else 0.5 if good == bad else 0.0)
        first.setdefault(pair.id, pair)
    id_scores = {pid: _mean(values) for pid, values in per_id.items()}
    out: dict[str, Any] = {"accuracy": _mean(id_scores.values()), "ids": len(id_scores), "pairs": len(pairs)}
    for name, key in (groups or {}).items():
        buckets: dict[str, list[float]] = defaultdict(list)
        for pid, value in id_scores.items():
            buckets[key(first[pid])].append(value)
        out[f"by_{name}"] = {group: {"accuracy": _mean(values), "ids": len(values)}
                             for group, values in sorted(buckets.items())}
    return out


def task_groups(task: str) -> dict[str, Callable[[Pair], str]]:
    """How a task's results are broken down (columns absent from a gold file give "?")."""
    if task == "syntactic":
        return {"type": lambda p: p.correct.fields.get("type", "?"),
                "subtype": lambda p: p.correct.fields.get("subtype", "?")}
    return {"length": lambda p: p.correct.fields.get("length", "?"),
            "frequency": lambda p: frequency_band(p.correct.fields.get("frequency", ""))}


def find_sets(directory: str | Path, set_name: str) -> dict[str, Path]:
    """``{task: DIR/task/set}`` for the tasks whose set directory holds a gold.csv."""
    found = {task: Path(directory) / task / set_name for task in TASKS
             if (Path(directory) / task / set_name / GOLD_FILE).is_file()}
    if not found:
        raise SpeechUnitsError(f"{directory}: neither lexical/{set_name}/{GOLD_FILE} nor syntactic/{set_name}/"
                               f"{GOLD_FILE} (ZeroSpeech 2021 layout expected)")
    return found


def evaluate_scores(task: str, rows: list[GoldRow], scores: dict[str, dict[str, float]], source: str) -> dict[str, Any]:
    """Accuracy of one task under each scoring (``scores[scoring][filename]``)."""
    pairs = make_pairs(rows, source)
    return {scoring: pair_accuracy(pairs, table, task_groups(task)) for scoring, table in scores.items()}


def write_submission(out_dir: str | Path, task: str, set_name: str, scores: dict[str, float]) -> Path:
    """``OUT/<task>/<set>.txt`` with ``<filename> <score>`` lines (sorted by filename)."""
    path = Path(out_dir) / task / f"{set_name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name} {value!r}\n" for name, value in sorted(scores.items())), encoding="utf-8")
    return path


def run_benchmark(lm: Any, directory: str | Path, *, set_name: str = "dev", codebook: str | Path | None = None,
                  encoder: str | None = None, submission: str | Path | None = None, batch_tokens: int = 16384,
                  dtype: str = "fp32", score_fn: Callable[[Path], dict[str, tuple[float, int]]] | None = None,
                  quiet: bool = True) -> dict[str, Any]:
    """Score every wav of ``DIR/lexical/<set>`` and ``DIR/syntactic/<set>`` and compute the accuracies.

    ``score_fn(set_dir) -> {filename: (logprob, positions)}`` replaces the LM (e.g. an n-gram
    baseline on already-encoded units); by default ``lm`` scores the audio through its codebook.
    """
    from speechunits.lm.score import score_corpus

    results: dict[str, Any] = {"set": set_name, "directory": str(directory)}
    for task, set_dir in find_sets(directory, set_name).items():
        rows = read_gold(set_dir / GOLD_FILE)
        if score_fn is None:
            scored, errors = score_corpus(lm, set_dir, codebook=codebook, encoder=encoder, batch_tokens=batch_tokens,
                                          dtype=dtype, quiet=quiet)
            if errors:
                raise SpeechUnitsError(f"{set_dir}: {len(errors)} files could not be encoded, e.g. "
                                       f"{next(iter(errors.items()))}")
            raw = {s.id: (s.logprob, s.tokens) for s in scored}
        else:
            raw = score_fn(set_dir)
        tables = {"sum": {k: v[0] for k, v in raw.items()},
                  "normalised": {k: v[0] / v[1] if v[1] else 0.0 for k, v in raw.items()}}
        results[task] = evaluate_scores(task, rows, tables, str(set_dir / GOLD_FILE))
        results[task]["files"] = len(raw)
        if submission is not None:
            for scoring, table in tables.items():
                write_submission(Path(submission) / scoring, task, set_name, table)
    return results
