"""Manifests of one record per utterance: JSONL (ours, NeMo's, with time ranges and tarred shards), a
``datasets`` AudioFolder's ``metadata.jsonl``/``metadata.csv``, and CSV manifests with a path column
(Fluent Speech Commands, ESC-50).

Records give ``(utterance id, audio path, num_samples, fields)``; :func:`speechunits.corpus.open_corpus`
makes the utterances. Relative paths start at :func:`_manifest_base`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_jsonl_objects
from speechunits.layouts.hf_datasets import SPEAKER_COLUMNS
from speechunits.layouts.tar_shards import member_path
from speechunits.spans import span_path

#: The keys of a JSONL manifest's audio path: ours, NeMo's, the ``file_name`` of a ``datasets``
#: AudioFolder's ``metadata.jsonl``/``metadata.csv``, and ESC-50's ``filename``.
AUDIOFOLDER_PATH_KEY = "file_name"
JSONL_PATH_KEYS = ("path", "audio_filepath", AUDIOFOLDER_PATH_KEY, "filename")
#: A ``datasets`` AudioFolder's metadata files, beside the audio they describe.
AUDIOFOLDER_METADATA = ("metadata.jsonl", "metadata.csv")
#: Fields of manifest records that name speakers, first present wins.
SPEAKER_FIELDS = SPEAKER_COLUMNS  # one order for tables, manifests and WebDataset samples


def jsonl_audio_key(record: dict[str, Any]) -> str | None:
    """Which of :data:`JSONL_PATH_KEYS` a JSONL record holds (the first), or ``None``."""
    return next((key for key in JSONL_PATH_KEYS if key in record), None)


def jsonl_record_id(record: dict[str, Any]) -> str | None:
    """A manifest record's utterance id: ``id``, else its audio path's stem (an AudioFolder's
    ``file_name``: the path without extension, as a scan of its directory names the file; a NeMo
    record with an ``offset``: ``STEM_OOOOOOO``, the offset in centiseconds as Kaldi names
    segments); ``None`` without either."""
    if record.get("id") is not None:
        return str(record["id"])
    key = jsonl_audio_key(record)
    if key is None:
        return None
    audio = Path(str(record[key]))
    if key == AUDIOFOLDER_PATH_KEY:
        return audio.with_suffix("").as_posix()
    if isinstance(record.get(NEMO_OFFSET), (int, float)):
        return f"{audio.stem}_{round(record[NEMO_OFFSET] * 100):07d}"
    return audio.stem


#: NeMo's fields of a stretch of a recording: where it starts and how long it lasts (seconds).
NEMO_OFFSET, NEMO_DURATION = "offset", "duration"
#: A NeMo tarred dataset: its manifest, the field naming a record's shard, and the shards' names.
NEMO_TARRED_MANIFEST, NEMO_SHARD_ID, NEMO_SHARD_NAME = "tarred_audio_manifest.json", "shard_id", "audio_{}.tar"


def _nemo_tarred_member(manifest: Path, line_no: int, record: dict[str, Any], name: str) -> str:
    """The utterance path of a NeMo tarred-dataset record: member ``name`` of ``audio_{shard_id}.tar``
    beside the manifest (NeMo's ``convert_to_tarred_audio_dataset.py`` layout)."""
    shard = record.pop(NEMO_SHARD_ID)
    archive = manifest.parent / NEMO_SHARD_NAME.format(shard)
    if not isinstance(shard, int) or not archive.is_file():
        raise SpeechUnitsError(f"{manifest}:{line_no}: {name!r} is in tarred shard {shard!r}, but "
                               f"{archive.name} is not beside the manifest (NeMo names shards "
                               f"{NEMO_SHARD_NAME.format('N')}; give the manifest in the shards' directory)")
    return member_path(archive, name)


def _record_audio_path(manifest: Path, line_no: int, record: dict[str, Any], audio_path: Path) -> str:
    """The utterance path of a manifest record: the file, or with NeMo's ``offset`` (and
    ``duration``) the time range of it (:func:`speechunits.spans.span_path`)."""
    if NEMO_OFFSET not in record:
        return str(audio_path)
    offset, duration = record.pop(NEMO_OFFSET), record.get(NEMO_DURATION)
    if not isinstance(offset, (int, float)) or not (duration is None or isinstance(duration, (int, float))):
        raise SpeechUnitsError(f"{manifest}:{line_no}: 'offset' and 'duration' must be seconds (numbers)")
    try:
        return span_path(audio_path, float(offset), None if duration is None else float(offset) + float(duration))
    except SpeechUnitsError as exc:
        raise SpeechUnitsError(f"{manifest}:{line_no}: {exc}") from None


def iter_manifest_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_no, record)`` of a JSONL manifest, or of an AudioFolder ``metadata.csv`` (a header
    naming ``file_name`` or ``path``; empty cells are absent values, unnamed columns left out).

    Raises:
        SpeechUnitsError: as :func:`iter_jsonl_objects`; a CSV without ``file_name`` or ``path``, a row with
            more cells than the header (naming ``file:line``).
    """
    if Path(path).suffix.lower() != ".csv":
        yield from iter_jsonl_objects(path, "JSONL manifest")
        return
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if not set(JSONL_PATH_KEYS) & set(reader.fieldnames or []):
                raise SpeechUnitsError(f"{path}: a CSV manifest (an AudioFolder's metadata.csv) needs a "
                                       f"'{AUDIOFOLDER_PATH_KEY}' or 'path' column; its columns: "
                                       f"{', '.join(reader.fieldnames or [])}")
            for row in reader:
                if None in row:
                    raise SpeechUnitsError(f"{path}:{reader.line_num}: more cells than the header has columns")
                # unnamed columns (a pandas index written with to_csv) are no fields
                yield reader.line_num, {k: v for k, v in row.items() if k and v not in (None, "")}
    except FileNotFoundError:
        raise SpeechUnitsError(f"{path}: manifest not found") from None
    except UnicodeDecodeError as exc:
        raise SpeechUnitsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def csv_names_files(path: Path) -> bool:
    """Whether a CSV's header has an audio path column (AudioFolder's ``file_name``, or ``path``)."""
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return bool(set(JSONL_PATH_KEYS) & set(next(csv.reader(handle), [])))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def first_record_field(path: str | os.PathLike[str], names: Iterable[str]) -> str | None:
    """The first of ``names`` that the first record of a manifest (JSONL, AudioFolder CSV) holds, else
    ``None`` (also for a file that is not such a manifest)."""
    try:
        for _, record in iter_manifest_records(path):
            return next((n for n in names if n in record), None)
    except SpeechUnitsError:
        return None
    return None


def iter_jsonl_field(path: str | os.PathLike[str], field: str) -> Iterator[tuple[int, str, Any]]:
    """``(line_no, utterance id, value)`` of every record of a JSONL manifest whose ``field`` is set
    (ids by :func:`jsonl_record_id`); records without it are utterances without that label.

    Raises:
        SpeechUnitsError: see :func:`iter_jsonl_objects`; a record with neither an id nor an audio
            path, or an utterance whose ``field`` is given twice (naming ``file:line``).
    """
    seen: set[str] = set()
    for line_no, record in iter_manifest_records(path):
        utt_id = jsonl_record_id(record)
        if utt_id is None:
            raise SpeechUnitsError(f"{path}:{line_no}: object has neither 'id' nor an audio path")
        if record.get(field) is None:
            continue
        if utt_id in seen:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt_id!r} listed twice")
        seen.add(utt_id)
        yield line_no, utt_id, record[field]


def _manifest_base(manifest: Path, first_path: str) -> Path:
    """Where a manifest's relative audio paths start: its own folder, else the first folder above it
    where the first path exists (Fluent Speech Commands' ``data/train_data.csv`` names
    ``wavs/speakers/...`` from the dataset's root), else a folder beside its own where it does
    (ESC-50's ``meta/esc50.csv`` names the files of ``audio/``)."""
    if (manifest.parent / first_path).exists():
        return manifest.parent
    above = next((base for base in manifest.resolve().parents[1:] if (base / first_path).exists()), None)
    if above is not None:
        return above
    beside = manifest.resolve().parent.parent
    try:
        siblings = sorted(d for d in beside.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        siblings = []
    return next((d for d in siblings if (d / first_path).exists()), manifest.parent)


def read_manifest_columns(path: str | os.PathLike[str], columns: Sequence[str]) -> dict[str, str]:
    """``{utterance id: value}`` of a manifest's (JSONL, CSV) ``columns``, joined with ``+`` (Fluent
    Speech Commands' intent: ``action+object+location``); records lacking one of them are left out.

    Raises:
        SpeechUnitsError: as :func:`iter_manifest_records`; an utterance twice; no record with them all.
    """
    result: dict[str, str] = {}
    for line_no, record in iter_manifest_records(path):
        utt_id = jsonl_record_id(record)
        values = [" ".join(str(record[c]).split()) for c in columns if record.get(c) not in (None, "")]
        if utt_id is None or len(values) != len(columns) or not all(values):
            continue
        if utt_id in result:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt_id!r} listed twice")
        result[utt_id] = "+".join(values)
    if not result:
        raise SpeechUnitsError(f"{path}: no record has {' and '.join(repr(c) for c in columns)}")
    return result


def iter_manifest_utterances(manifest: Path) -> Iterator[tuple[str, str, int | None, dict[str, Any]]]:
    """``(utterance id, audio path, num_samples or None, the other fields)`` of every record of a manifest."""
    base: Path | None = None
    for line_no, record in iter_manifest_records(manifest):
        key = jsonl_audio_key(record)
        if key is None:
            raise SpeechUnitsError(f"{manifest}:{line_no}: each line needs an object with a 'path' "
                                   "(or NeMo's 'audio_filepath', an AudioFolder's 'file_name')")
        utt_id = str(jsonl_record_id(record))
        listed = str(record.pop(key))
        audio_path = Path(listed)
        record.pop("id", None)
        if not audio_path.is_absolute():
            base = base if base is not None else _manifest_base(manifest, listed)
            audio_path = base / audio_path
        if NEMO_SHARD_ID in record and not audio_path.is_file():  # audio inside a NeMo tarred shard
            audio_path = Path(_nemo_tarred_member(manifest, line_no, record, listed))
        num_samples = record.pop("num_samples", None)
        path = _record_audio_path(manifest, line_no, record, audio_path)
        yield utt_id, path, int(num_samples) if num_samples is not None else None, record
