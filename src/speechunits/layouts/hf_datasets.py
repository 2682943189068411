"""Hugging Face ``datasets`` audio tables as corpora and label sources.

What is read (``pyarrow`` only; the ``datasets`` package is not needed):

* Parquet shards as the Hub serves them (``data/train-00000-of-00004.parquet``, the
  ``refs/convert/parquet`` branch's ``default/train/0000.parquet``) or as ``Dataset.to_parquet`` writes;
* ``Dataset.save_to_disk`` directories (``state.json`` lists the Arrow shards) and the Arrow files
  of the ``datasets`` cache (Arrow IPC streams).

A source is one such file, a quoted glob of them (``'DIR/data/train-*.parquet'``), or a directory
holding the shards of **one** split; a directory holding several (a ``DatasetDict``, a Hub snapshot
with train and test shards) is refused with the paths of its splits.

The audio column is the one the table's ``huggingface`` metadata calls ``Audio``, else the one
struct column with ``bytes`` and ``path`` fields (the ``Audio`` feature's storage). A row's audio
is its encoded bytes (any format libsndfile reads) or, where ``bytes`` is null, the file at
``path`` (as written, else relative to the table's directory).

Utterance ids: the ``id`` column when there is one; else the stems of the rows' audio paths when
every row has one and they are unique over the source; else ``{file stem}/{row}``. An utterance's
``path`` is :func:`row_path` (``FILE#row=N``), which :func:`read_row_audio` (and through it
:meth:`speechunits.audio.Audio.load`) reads. Transcripts (:data:`TEXT_COLUMNS`), speakers
(:data:`SPEAKER_COLUMNS`) and class labels (``label``, ``ClassLabel`` ids given their names) are
read from the same rows, keyed by the same ids.
"""
from __future__ import annotations

import bisect
import glob
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.sources import split_suffix

#: Suffixes of the tables read here.
TABLE_SUFFIXES = (".parquet", ".arrow")
#: Transcript columns, first present wins (LibriSpeech/most: text; Common Voice: sentence).
TEXT_COLUMNS = ("text", "sentence", "transcription", "transcript", "normalized_text", "text_normalized")
#: Speaker columns (and manifest fields), first present wins (LibriSpeech: speaker_id; Common Voice: client_id).
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id", "speakerId")  # speakerId: Fluent Speech Commands
#: The class-label column ``classify`` reads when none is named (``PATH::COLUMN`` names one).
LABEL_COLUMN = "label"

_ROW_MARK = "#row="
_ROW_PATH = re.compile(r"^(?P<file>.+\.(?:parquet|arrow))#row=(?P<row>\d+)$")
_SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}$")
_GLOB_CHARS = re.compile(r"[*?\[]")


def row_path(file: str | os.PathLike[str], row: int) -> str:
    """The ``path`` of row ``row`` (0-based, within ``file``) as a corpus records it."""
    return f"{file}{_ROW_MARK}{row}"


def parse_row_path(path: str | os.PathLike[str]) -> tuple[Path, int] | None:
    """``(file, row)`` of a :func:`row_path`, else ``None`` (an ordinary audio path)."""
    hit = _ROW_PATH.match(str(path))
    return (Path(hit["file"]), int(hit["row"])) if hit else None


def audio_path_exists(path: str | os.PathLike[str]) -> bool:
    """Whether an utterance's ``path`` names something to read: a file, a row of a table or a member of
    a tar archive that exists."""
    from speechunits.spans import parse_span_path
    from speechunits.layouts.tar_shards import member_exists, parse_member_path

    span = parse_span_path(path)
    if span is not None:
        return audio_path_exists(span[0])
    if parse_member_path(path) is not None:
        return member_exists(path)
    row = parse_row_path(path)
    return row[0].is_file() if row is not None else Path(path).is_file()


# -- finding the tables of a source ------------------------------------------------------------
def _is_glob(source: str) -> bool:
    return bool(_GLOB_CHARS.search(source)) and not Path(source).exists()


def _tables_under(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in sorted(filenames)
                  if not n.startswith(".") and Path(n).suffix in TABLE_SUFFIXES]
    return found


def is_table_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names Hugging Face tables: a ``.parquet``/``.arrow`` file (optionally
    ``::COLUMN``), a glob of them, or a directory saved by ``datasets`` (``state.json``,
    ``dataset_dict.json``) or holding tables and no audio file."""
    text = split_suffix(source)[0]
    path = Path(text)
    if path.suffix in TABLE_SUFFIXES and (path.is_file() or _is_glob(text)):
        return True
    if _is_glob(text):
        return any(Path(p).suffix in TABLE_SUFFIXES for p in glob.glob(text))
    if not path.is_dir():
        return False
    if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
        return True
    from speechunits.corpus import _iter_directory

    return next(_iter_directory(path), None) is None and bool(_tables_under(path))


def table_files(source: str | os.PathLike[str]) -> list[Path]:
    """The table files of ``source`` (see the module docstring), in reading order.

    Raises:
        SpeechUnitsError: no table, a ``DatasetDict`` directory or a directory holding several
            splits (naming the path of each), a ``state.json`` that does not list its files.
    """
    text = str(source)
    path = Path(text)
    if _is_glob(text):
        files = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix in TABLE_SUFFIXES)
        if not files:
            raise SpeechUnitsError(f"{text}: matches no .parquet or .arrow file")
        return files
    if path.is_file():
        return [path]
    if (path / "dataset_dict.json").is_file():
        splits = _json_field(path / "dataset_dict.json", "splits")
        names = ", ".join(str(path / s) for s in splits) if isinstance(splits, list) else "its split directories"
        raise SpeechUnitsError(f"{path}: a DatasetDict saved with save_to_disk; give one split: {names}")
    if (path / "state.json").is_file():
        listed = _json_field(path / "state.json", "_data_files")
        if not isinstance(listed, list) or not all(isinstance(e, dict) and "filename" in e for e in listed):
            raise SpeechUnitsError(f"{path / 'state.json'}: no '_data_files' list of {{'filename': ...}}")
        return [path / e["filename"] for e in listed]
    files = _tables_under(path)
    if not files:
        raise SpeechUnitsError(f"{path}: no .parquet or .arrow file")
    splits: dict[str, list[Path]] = {}
    for file in files:
        shard = _SHARD_NAME.match(file.stem)
        if shard:  # train-00000-of-00004.parquet: the shards of split "train"
            pattern = f"{shard['split']}-*{file.suffix}"
        elif file.stem.isdigit():  # default/train/0000.parquet (the Hub's converted branch): the directory's
            pattern = f"*{file.suffix}"
        else:  # the cache's librispeech_asr-validation.arrow: a split of its own
            pattern = file.name
        splits.setdefault((file.parent.relative_to(path) / pattern).as_posix(), []).append(file)
    if len(splits) > 1:
        shown = ", ".join(f"'{path / key}'" for key in splits)
        raise SpeechUnitsError(f"{path}: holds the shards of {len(splits)} splits; give one of them "
                               f"(quoted, so the shell leaves the * alone): {shown}; a probe given a glob over "
                               "a train, a validation and a test split takes them as its split")
    return files


def _json_field(path: Path, key: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError) as exc:
        raise SpeechUnitsError(f"{path}: unreadable ({exc})") from exc


# -- one table file ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _TableInfo:
    """What is known of one file before reading rows."""

    schema: Any  # pyarrow.Schema
    features: dict[str, Any]  # the huggingface metadata's features, {} when absent
    num_rows: int
    row_group_starts: tuple[int, ...]  # Parquet: first row of each row group; Arrow: (0,)


def _is_parquet(file: Path) -> bool:
    return file.suffix == ".parquet"


def _read_arrow(file: Path) -> Any:
    """The whole Arrow file as a memory-mapped (zero-copy) table: IPC stream (what ``datasets``
    writes) or IPC file format."""
    import pyarrow as pa

    try:
        return pa.ipc.open_stream(pa.memory_map(str(file))).read_all()
    except pa.ArrowInvalid:
        try:
            return pa.ipc.open_file(pa.memory_map(str(file))).read_all()
        except pa.ArrowInvalid as exc:
            raise SpeechUnitsError(f"{file}: not an Arrow IPC stream or file ({exc})") from exc


@lru_cache(maxsize=64)
def _info(file: Path, mtime_ns: int) -> _TableInfo:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if _is_parquet(file):
            meta = pq.ParquetFile(str(file)).metadata
            schema = meta.schema.to_arrow_schema()
            starts, row = [], 0
            for i in range(meta.num_row_groups):
                starts.append(row)
                row += meta.row_group(i).num_rows
            num_rows = meta.num_rows
        else:
            table = _read_arrow(file)
            schema, num_rows, starts = table.schema, table.num_rows, [0]
    except (OSError, pa.ArrowException) as exc:
        raise SpeechUnitsError(f"{file}: unreadable table ({exc})") from exc
    features: dict[str, Any] = {}
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw:
        try:
            features = json.loads(raw).get("info", {}).get("features", {}) or {}
        except ValueError:
            features = {}
    return _TableInfo(schema, features if isinstance(features, dict) else {}, num_rows, tuple(starts))


def table_info(file: Path) -> _TableInfo:
    """Schema, ``datasets`` features, row count and row-group starts of one table file (cached
    until the file changes).

    Raises:
        SpeechUnitsError: a missing or unreadable file.
    """
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as exc:
        raise SpeechUnitsError(f"{file}: no such table ({exc.strerror})") from exc
    return _info(file, mtime)


def audio_column(file: Path) -> str:
    """The audio column of ``file`` (see the module docstring).

    Raises:
        SpeechUnitsError: no audio column, or several struct columns and no metadata saying which.
    """
    import pyarrow as pa

    info = table_info(file)
    tagged = [name for name, feature in info.features.items()
              if isinstance(feature, dict) and feature.get("_type") == "Audio" and name in info.schema.names]
    if len(tagged) == 1:
        return tagged[0]
    shaped = [f.name for f in info.schema
              if pa.types.is_struct(f.type) and {"bytes", "path"} <= {c.name for c in f.type}]
    candidates = tagged or shaped
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SpeechUnitsError(f"{file}: no audio column (an Audio feature, stored as a struct of 'bytes' and "
                               f"'path'); its columns: {', '.join(info.schema.names)}")
    raise SpeechUnitsError(f"{file}: several audio columns ({', '.join(candidates)}); keep one "
                           "(dataset.remove_columns) and save it again")


def _scalar_columns(info: _TableInfo, skip: str) -> list[str]:
    import pyarrow as pa

    return [f.name for f in info.schema if f.name != skip and (
        pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_integer(f.type)
        or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type))]


def _iter_columns(file: Path, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Row dicts of ``columns`` (``"audio.path"`` reads one field of a struct, keyed ``"audio.path"``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if _is_parquet(file):
            for batch in pq.ParquetFile(str(file)).iter_batches(columns=list(columns), batch_size=4096):
                yield from _flat_rows(batch.to_pylist(), columns)
        else:
            table = _read_arrow(file)
            for batch in table.select([c.split(".")[0] for c in dict.fromkeys(columns)]).to_batches(4096):
                yield from _flat_rows(batch.to_pylist(), columns)
    except pa.ArrowException as exc:
        raise SpeechUnitsError(f"{file}: unreadable table ({exc})") from exc


def _flat_rows(rows: list[dict[str, Any]], columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    for row in rows:
        flat = {}
        for column in columns:
            head, _, field = column.partition(".")
            value = row.get(head)
            flat[column] = (value or {}).get(field) if field else value
        yield flat


# -- rows as utterances ------------------------------------------------------------------------
@dataclass(frozen=True)
class TableRow:
    """One row of a source: its utterance id, where it is, and the scalar columns asked for."""

    id: str
    file: Path
    row: int
    values: dict[str, Any]


def iter_rows(source: str | os.PathLike[str], columns: Sequence[str] = ()) -> Iterator[TableRow]:
    """Every row of ``source`` with its utterance id (the module docstring's rule), in order.

    ``columns``: scalar columns to return in ``values`` (absent ones are left out).

    Raises:
        SpeechUnitsError: see :func:`table_files` and :func:`audio_column`.
    """
    files = table_files(source)
    audio = audio_column(files[0])
    names = set(table_info(files[0]).schema.names)
    id_rule = "id" if "id" in names else _path_rule(tuple((f, table_info(f).num_rows, f.stat().st_mtime_ns) for f in files),
                                                    audio)
    for file in files:
        info = table_info(file)
        needed = [audio] + (["id"] if id_rule == "id" else [])
        if file != files[0] and not set(needed) <= set(info.schema.names):
            raise SpeechUnitsError(f"{file}: lacks the column(s) {', '.join(sorted(set(needed) - set(info.schema.names)))} "
                                   f"that {files[0]} has; give the shards of one dataset")
        present = [c for c in columns if c in info.schema.names]
        wanted = list(dict.fromkeys(present + (["id"] if id_rule == "id" else [f"{audio}.path"])))
        for row, values in enumerate(_iter_columns(file, wanted)):
            if id_rule == "id":
                utt_id = "" if values["id"] is None else str(values["id"]).strip()
                if not utt_id:
                    raise SpeechUnitsError(f"{file}: row {row} has an empty 'id'")
            elif id_rule == "path":
                utt_id = Path(values[f"{audio}.path"]).stem
            else:
                utt_id = f"{file.stem}/{row}"
            yield TableRow(utt_id, file, row, {c: values[c] for c in present})


@lru_cache(maxsize=16)
def _path_rule(files: tuple[tuple[Path, int, int], ...], audio: str) -> str:
    """``"path"`` when every row's audio path has a stem and the stems are unique, else ``"row"``
    (``files``: ``(file, rows, mtime)``, so that a rewritten table is looked at again)."""
    seen: set[str] = set()
    for file, _, _ in files:
        for values in _iter_columns(file, [f"{audio}.path"]):
            stem = Path(values[f"{audio}.path"] or "").stem
            if not stem or stem in seen:
                return "row"
            seen.add(stem)
    return "path"


def iter_table_utterances(source: str | os.PathLike[str]) -> Iterator[Any]:
    """The rows of ``source`` as :class:`speechunits.corpus.Utterance` records (path: :func:`row_path`;
    fields: the scalar columns)."""
    from speechunits.corpus import Utterance

    files = table_files(source)
    scalars = _scalar_columns(table_info(files[0]), audio_column(files[0]))
    for item in iter_rows(source, scalars):
        yield Utterance(item.id, row_path(item.file, item.row), fields=item.values)


# -- reading one row's audio -------------------------------------------------------------------
@lru_cache(maxsize=2)
def _audio_chunk(file: Path, mtime_ns: int, group: int, column: str) -> Any:
    """The audio column of one row group (Parquet) or of the whole file (Arrow), cached so that a pass
    in row order decodes each once (``mtime_ns``: a rewritten table is read again)."""
    import pyarrow.parquet as pq

    if _is_parquet(file):
        return pq.ParquetFile(str(file)).read_row_group(group, columns=[column]).column(column)
    return _read_arrow(file).column(column)


def read_row_audio(file: Path, row: int) -> tuple[bytes | None, str | None]:
    """``(encoded bytes, path)`` of row ``row`` of ``file``'s audio column (either may be null).

    Raises:
        SpeechUnitsError: a row past the table's end, an unreadable table.
    """
    import pyarrow as pa

    info = table_info(file)
    if not 0 <= row < info.num_rows:
        raise SpeechUnitsError(f"{row_path(file, row)}: the table has rows 0..{info.num_rows - 1}")
    group = bisect.bisect_right(info.row_group_starts, row) - 1
    try:
        values = _audio_chunk(file, file.stat().st_mtime_ns, group, audio_column(file))
        cell = values[row - info.row_group_starts[group]].as_py() or {}
    except pa.ArrowException as exc:
        raise SpeechUnitsError(f"{row_path(file, row)}: unreadable table ({exc})") from exc
    return cell.get("bytes"), cell.get("path")


def row_audio_file(file: Path, path: str) -> Path:
    """Where the audio of a row that stores only a path lies: ``path`` as written, else relative
    to the table's directory.

    Raises:
        SpeechUnitsError: found in neither place.
    """
    for candidate in (Path(path), file.parent / path):
        if candidate.is_file():
            return candidate
    raise SpeechUnitsError(f"{file}: a row's audio is stored as the path {path!r}, which is not a file here "
                           f"(nor under {file.parent}); save the dataset with its audio embedded")


# -- labels ------------------------------------------------------------------------------------
def has_column(source: str | os.PathLike[str], names: Sequence[str]) -> str | None:
    """The first of ``names`` that is a column of ``source``'s first table, else ``None``."""
    present = set(table_info(table_files(source)[0]).schema.names)
    return next((n for n in names if n in present), None)


def read_column(source: str | os.PathLike[str], names: Sequence[str], what: str) -> dict[str, str]:
    """``{utterance id: value}`` of the first of ``names`` that ``source`` has (``PATH::COLUMN`` names
    the column instead; ``PATH::A+B+C`` joins several with ``+``, a row lacking one of them left out).
    Nulls and empty strings are left out; ``ClassLabel`` ids become their names; strings are
    whitespace-normalised.

    Raises:
        SpeechUnitsError: no such column (naming the columns there), an id twice, no value at all.
    """
    path, named = split_suffix(source)
    files = table_files(path)
    info = table_info(files[0])
    columns = named.split("+") if named is not None else [c for c in [has_column(path, names)] if c is not None]
    absent = [c for c in columns if c not in info.schema.names]
    if not columns or absent:
        wanted = " + ".join(repr(c) for c in absent) if named is not None else " or ".join(repr(n) for n in names)
        raise SpeechUnitsError(f"{path}: no {what} column {wanted}; its columns: {', '.join(info.schema.names)} "
                               f"(name one as {path}::COLUMN)")
    class_names = {c: (info.features.get(c) or {}).get("names") for c in columns
                   if (info.features.get(c) or {}).get("_type") == "ClassLabel"}
    result: dict[str, str] = {}
    for item in iter_rows(path, columns):
        parts = []
        for column in columns:
            value = item.values.get(column)
            names_of = class_names.get(column)
            if names_of is not None and isinstance(value, int) and 0 <= value < len(names_of):
                value = names_of[value]
            text = " ".join(str(value).split()) if value is not None else ""
            if not text:
                break
            parts.append(text)
        else:
            if item.id in result:
                raise SpeechUnitsError(f"{item.file}: utterance {item.id!r} appears twice")
            result[item.id] = "+".join(parts)
    if not result:
        raise SpeechUnitsError(f"{path}: column {' + '.join(repr(c) for c in columns)} holds no {what}")
    return result


# -- the splits a set of tables comes in -------------------------------------------------------
#: A split's name (its start) → the probe part it serves as.
def split_name(file: Path) -> str:
    """The dataset split a table file belongs to: ``train`` of ``train-00000-of-00004.parquet``,
    of ``default/train/0000.parquet`` and of the cache's ``librispeech_asr-train.clean.100-00000-of-00014.arrow``
    (``train.clean.100``)."""
    shard = _SHARD_NAME.match(file.stem)
    name = shard["split"] if shard else (file.parent.name if file.stem.isdigit() else file.stem)
    return name.rsplit("-", 1)[-1]


def split_parts(source: str | os.PathLike[str]) -> dict[str, str] | None:
    """``{utterance id: "train" | "dev" | "test"}`` when ``source``'s tables are the train, validation
    and test splits of one dataset (a quoted glob over them), else ``None``: the split a probe takes
    unasked, as the dataset's authors drew it."""
    if not is_table_source(source):
        return None
    try:
        files = table_files(source)
    except SpeechUnitsError:
        return None
    from speechunits.sources import part_of_name

    part_of_file = {file: part_of_name(split_name(file)) for file in files}
    if None in part_of_file.values() or set(part_of_file.values()) != {"train", "dev", "test"}:
        return None
    return {item.id: str(part_of_file[item.file]) for item in iter_rows(source)}
