"""Several inputs given as one: a quoted glob or brace pattern over corpora or label files.

Corpora often come as one folder or manifest per split: Kaldi/ESPnet ``data/train``, ``data/dev``,
``data/test``; LibriSpeech's ``train-clean-100/``, ``dev-clean/``, ``test-clean/``; Lhotse's
``librispeech_cuts_train-clean-100.jsonl.gz`` ...; Common Voice's ``train.tsv``, ``dev.tsv``,
``test.tsv``; NeMo's ``train_manifest.json`` .... A pattern such as ``'data/{train,dev,test}'`` or
``'cv/*.tsv'`` (quoted, so that the shell leaves it alone) names them together: the corpus is the
concatenation of the matches in the pattern's order (brace order as written; glob matches sorted),
each read as it would be alone, and every label reader given a pattern merges what it reads from
each match. A probe given such a pattern keeps the parts' own split when their names say train,
dev/validation and test (:func:`split_parts`).

Patterns over Hugging Face tables and WebDataset shards are not expanded here: their matches are
shards of one corpus, read by :mod:`speechunits.layouts.hf_datasets` and :mod:`speechunits.layouts.tar_shards`.
"""
from __future__ import annotations

import functools
import glob
import os
import re
from pathlib import Path
from typing import Any, Callable

from speechunits.errors import SpeechUnitsError

_BRACE = re.compile(r"\{[^{}]*(?:\.\.|,)[^{}]*\}")
_GLOB_CHARS = re.compile(r"[*?\[]")
_NAME_TOKENS = re.compile(r"[^a-z]+")
#: Words of input names that say which part of a dataset's split an input is.
_SPLIT_WORDS = {"train": "train", "training": "train", "dev": "dev", "devel": "dev", "development": "dev",
                "valid": "dev", "validation": "dev", "test": "test", "testing": "test"}
#: Beginnings of a name's first word that say its part when no whole word does (``trainset``).
_SPLIT_PREFIXES = (("train", "train"), ("valid", "dev"), ("dev", "dev"), ("test", "test"))


def is_pattern(text: str) -> bool:
    """Whether ``text`` is a glob or brace pattern (and not a path that exists as written)."""
    return (bool(_BRACE.search(text)) or bool(_GLOB_CHARS.search(text))) and not Path(text).exists()


def pattern_matches(pattern: str, keep_missing: bool = False) -> list[str]:
    """The paths a glob or brace pattern names, in its order (brace order as written, the glob
    matches of each alternative sorted), each once; ``keep_missing``: also the brace alternatives
    without glob characters that do not exist (so that a reader can name a missing shard)."""
    from braceexpand import braceexpand

    found: dict[str, None] = {}  # ordered, each once (a glob of a whole corpus may name 100k files)
    for part in braceexpand(pattern) if _BRACE.search(pattern) else [pattern]:
        if _GLOB_CHARS.search(part):
            hits = sorted(glob.glob(part))
        else:
            hits = [part] if keep_missing or Path(part).exists() else []
        found.update(dict.fromkeys(hits))
    return list(found)


def expand_source(source: str | os.PathLike[str]) -> list[str] | None:
    """The inputs a pattern ``source`` names (see the module docstring), or ``None`` when ``source``
    is not such a pattern: an existing path, a pattern over Hugging Face tables or WebDataset shards,
    or one that matches nothing (then the reader says what is missing).
    """
    text = str(source)
    if not is_pattern(text):
        return None
    from speechunits.layouts.hf_datasets import is_table_source
    from speechunits.layouts.tar_shards import is_tar_source

    if is_table_source(text) or is_tar_source(text):
        return None
    found = pattern_matches(text)
    return found or None


def merged_over_sources(reader: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Make a label reader (``path -> {utterance id: label}``) read a pattern by merging what it reads
    from each match; an utterance labelled by two matches is an error naming both."""

    @functools.wraps(reader)
    def read(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> dict[str, Any]:
        parts = _label_parts(path) if isinstance(path, (str, os.PathLike)) else None
        if parts is None:
            return reader(path, *args, **kwargs)
        merged: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for part in parts:
            for utt, value in reader(part, *args, **kwargs).items():
                if utt in merged:
                    raise SpeechUnitsError(f"{path}: utterance {utt!r} is labelled in both {origin[utt]} and {part}")
                merged[utt], origin[utt] = value, part
        return merged

    return read


def split_suffix(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``"PATH::WHAT"`` → ``(PATH, WHAT)`` (a table's or manifest's column, a WebDataset member
    extension); anything else → ``(source, None)``."""
    head, sep, suffix = str(source).rpartition("::")
    return (head, suffix) if sep and head and suffix else (str(source), None)


def _label_parts(path: str | os.PathLike[str]) -> list[str] | None:
    """The label sources a pattern names; a ``::COLUMN`` after the pattern goes to each of them."""
    parts = expand_source(path)
    if parts is not None:
        return parts
    head, column = split_suffix(path)
    parts = expand_source(head) if column is not None else None
    return None if parts is None else [f"{part}::{column}" for part in parts]


def union_pattern(paths: list[Path]) -> Path | None:
    """The brace pattern naming ``paths`` together (what :func:`expand_source` gives back), or ``None``
    when a path holds a character that would need escaping (``{``, ``}``, ``,``)."""
    texts = list(dict.fromkeys(str(p) for p in paths))  # inputs sharing a label file name it once
    if any(c in t for t in texts for c in "{},"):
        return None
    return Path(texts[0]) if len(texts) == 1 else Path("{" + ",".join(texts) + "}")


def part_of_name(path: str | os.PathLike[str]) -> str | None:
    """``train``, ``dev`` or ``test``: the part of a dataset's split that ``path``'s file name says, else ``None``.

    The one rule for every layout (inputs of a pattern, Hugging Face split names, WebDataset shards).
    The name's words are its runs of letters. When exactly one part is among the words
    (``validation``/``valid``/``devel`` say dev), it is that part: ``librispeech_cuts_dev-clean.jsonl.gz``
    → dev, ``train.clean.100`` → train, ``data/test`` → test. When none is, the first word may begin
    with one (``trainset-000000.tar`` → train, ``validation2`` → dev). Anything else, including a name
    with words of two parts, is ``None``.
    """
    words = [w for w in _NAME_TOKENS.split(Path(path).name.lower()) if w]
    parts = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    if parts:
        return parts.pop() if len(parts) == 1 else None
    return next((part for prefix, part in _SPLIT_PREFIXES if words and words[0].startswith(prefix)), None)


def split_parts(source: str | os.PathLike[str]) -> dict[str, str] | None:
    """``{utterance id: "train" | "dev" | "test"}`` when ``source`` is a pattern whose matches are a
    dataset's train, dev and test inputs by name, else ``None``."""
    parts = expand_source(source)
    if parts is None:
        return None
    named = {part: part_of_name(part) for part in parts}
    if None in named.values() or set(named.values()) != {"train", "dev", "test"}:
        return None
    from speechunits.corpus import open_corpus_via_manifest

    return {utt.id: str(named[part]) for part in parts for utt in open_corpus_via_manifest(part)}

