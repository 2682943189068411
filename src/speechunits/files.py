"""The readers of artefact files: the JSON objects that describe them, their safetensors tensors, text;
and the one reader of each line-based text format (:func:`iter_text_lines`, :func:`iter_jsonl_objects`,
:func:`read_pairs` for two-column files); :func:`write_lines`, the writer of line-based files.

Every artefact directory (codebook, probe, LM, vocoder, checkpoint ...) holds a JSON object of
metadata, read by :func:`read_json_object`, and most hold tensors, read as a dict by
:func:`read_safetensors` (``speechunits.training.checkpoint.load_safetensors`` loads them into a
model). A missing, unreadable, truncated or malformed file is always a
:class:`~speechunits.errors.SpeechUnitsError` that names the file, never a bare ``JSONDecodeError``
or ``SafetensorError`` traceback.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from speechunits.errors import SpeechUnitsError

if TYPE_CHECKING:
    import torch

#: how an unreadable safetensors file is described (also by ``load_safetensors``)
UNREADABLE_SAFETENSORS = "unreadable safetensors file, truncated or not safetensors"


def read_json_object(path: str | os.PathLike[str], *, missing: str | None = None) -> dict[str, Any]:
    """The JSON object stored in ``path``.

    Raises :class:`SpeechUnitsError`: ``missing`` (default ``"<path>: not found"``) when ``path`` is
    not a file; ``"<path>: unreadable ..."`` when it cannot be read, ``"<path>: not valid JSON ..."``;
    ``"<path>: expected a JSON object ..."`` when the JSON is not an object.
    """
    return parse_json_object(read_text_file(path, missing=missing), str(Path(path)))


def read_text_file(path: str | os.PathLike[str], *, missing: str | None = None) -> str:
    """The whole UTF-8 text of ``path`` (a leading byte-order mark dropped).

    Raises :class:`SpeechUnitsError`: ``missing`` (default ``"<path>: not found"``) when ``path`` is
    not a file; ``"<path>: unreadable ..."`` when it cannot be read or is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(missing if missing is not None else f"{path}: not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpeechUnitsError(f"{path}: unreadable ({exc})") from None


def parse_json_object(text: str, where: str) -> dict[str, Any]:
    """The JSON object in ``text`` (a file's content or one JSONL line); errors begin with ``where``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpeechUnitsError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SpeechUnitsError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Write ``lines`` to ``path`` as UTF-8, each ended by ``\\n`` (streamed: a generator is never
    held in memory); returns the path."""
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")
    return path


def write_json_atomic(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as JSON through a temp name and an atomic rename (a reader sees the old or the new file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_safetensors(path: str | os.PathLike[str]) -> "dict[str, torch.Tensor]":
    """The tensors of a safetensors file (on the CPU), or a :class:`SpeechUnitsError` when it is missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # what a damaged file raises, by version
        raise SpeechUnitsError(f"{path}: {UNREADABLE_SAFETENSORS} ({exc})") from None


def iter_text_lines(path: str | os.PathLike[str], what: str) -> Iterator[tuple[int, str]]:
    """``(line_no, line)`` of a UTF-8 text file, gzip-compressed when its name ends in ``.gz`` (a
    leading BOM dropped, line ends stripped, blank lines skipped).

    Raises:
        SpeechUnitsError: the file is missing (``"{path}: {what} not found"``), not UTF-8, or a
            ``.gz`` that is not gzip.
    """
    import gzip

    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: {what} not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as handle:
            for line_no, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line_no, line
    except UnicodeDecodeError as exc:
        raise SpeechUnitsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (gzip.BadGzipFile, EOFError) as exc:
        raise SpeechUnitsError(f"{path}: not a whole gzip file ({exc})") from None


def iter_jsonl_objects(path: str | os.PathLike[str], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_no, object)`` of a JSON-lines file (blank lines skipped): the one JSONL parser.

    Raises:
        SpeechUnitsError: missing or not UTF-8 (as :func:`iter_text_lines`), a line that is not
        valid JSON or not a JSON object (naming ``path:line``).
    """
    for line_no, line in iter_text_lines(path, what):
        yield line_no, parse_json_object(line, f"{path}:{line_no}")


def read_pairs(path: str | os.PathLike[str], *, what: str, value_name: str, key_name: str = "utt",
               allow_empty: bool = False, whitespace: bool = False) -> dict[str, str]:
    """``{key: value}`` from ``key<TAB>value`` lines: the one reader of two-column files (speakers,
    utterance labels, phone transcripts); with ``whitespace``, Kaldi's ``key value`` lines split at
    any whitespace (``utt2spk``). Both fields are stripped.

    Raises:
        SpeechUnitsError: see :func:`iter_text_lines`; a line that is not exactly two fields with a
            non-empty key (and value, unless ``allow_empty``), or a key listed twice, naming ``file:line``.
    """
    result: dict[str, str] = {}
    expected = f"'{key_name} {value_name}'" if whitespace else f"{key_name}<TAB>{value_name}"
    for line_no, line in iter_text_lines(path, what):
        cols = line.split() if whitespace else line.split("\t")
        if len(cols) != 2 or not cols[0].strip() or (not allow_empty and not cols[1].strip()):
            raise SpeechUnitsError(f"{path}:{line_no}: expected {expected}, got {line[:80]!r}")
        key = cols[0].strip()
        if key in result:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {key!r} listed twice")
        result[key] = cols[1].strip()
    return result
