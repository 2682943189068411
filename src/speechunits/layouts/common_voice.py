"""Common Voice TSVs (``validated.tsv``, ``train.tsv`` ...): clips under ``clips/``, ``sentence`` and ``client_id``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines

#: The columns that mark a Common Voice TSV (``validated.tsv``, ``train.tsv`` ...): a header line
#: naming ``path`` (the clip, under ``clips/``), ``sentence`` and ``client_id`` (the speaker).
COMMON_VOICE_COLUMNS = ("client_id", "path", "sentence")


def common_voice_columns(path: str | os.PathLike[str]) -> list[str] | None:
    """The header of a Common Voice TSV, or ``None`` for any other file (a fairseq manifest's first
    line is a directory, a label TSV's an utterance: neither names all of :data:`COMMON_VOICE_COLUMNS`)."""
    path = Path(path)
    if path.suffix != ".tsv" or not path.is_file():
        return None
    first = next(iter_text_lines(path, "TSV"), None)
    columns = first[1].split("\t") if first else []
    return columns if set(COMMON_VOICE_COLUMNS) <= set(columns) else None


def iter_common_voice(manifest: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line_no, {column: value})`` of every clip of a Common Voice TSV.

    Raises:
        SpeechUnitsError: not a Common Voice TSV, or a row with another number of columns (named).
    """
    columns = common_voice_columns(manifest)
    if columns is None:
        raise SpeechUnitsError(f"{manifest}: not a Common Voice TSV (a header with {', '.join(COMMON_VOICE_COLUMNS)})")
    lines = iter_text_lines(manifest, "Common Voice TSV")
    next(lines)
    for line_no, line in lines:
        values = line.split("\t")
        if len(values) != len(columns):
            raise SpeechUnitsError(f"{manifest}:{line_no}: {len(values)} columns, the header has {len(columns)}")
        yield line_no, dict(zip(columns, values))


def common_voice_id(clip: str) -> str:
    """The utterance id of a Common Voice clip: its file name without extension."""
    return Path(clip).stem


def iter_clips(manifest: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """``(utterance id, clip path, {"text", "speaker"})`` of every clip (under ``clips/`` beside the TSV)."""
    clips = manifest.parent / "clips"
    root = clips if clips.is_dir() else manifest.parent
    for _, row in iter_common_voice(manifest):
        fields = {"text": row["sentence"], "speaker": row["client_id"]}
        yield common_voice_id(row["path"]), str(root / row["path"]), fields
