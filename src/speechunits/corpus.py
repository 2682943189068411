"""Corpora: where utterances come from.

Nine inputs are understood (see :func:`open_corpus`):

* an audio directory, scanned recursively in sorted order (a Speech Commands tree's
  ``_background_noise_`` recordings as one-second clips, :mod:`speechunits.layouts.speech_commands`; an
  IEMOCAP release's utterances, not its dialogues, :mod:`speechunits.layouts.iemocap`);
* a Kaldi/ESPnet ``wav.scp`` (``utt_id path`` lines; a data directory holding one is read
  through it; with a ``segments`` file beside it, the utterances are its time ranges of the
  recordings, :mod:`speechunits.spans`; piped commands are refused by name);
* a Common Voice TSV (a header naming ``client_id``, ``path``, ``sentence``; clips under ``clips/``
  beside it, ids their file names without extension);
* a fairseq ``.tsv`` manifest (first line: root dir; then ``relpath<TAB>num_samples``);
* a JSONL manifest, one ``{"id": ..., "path": ...}`` object per line plus optional fields
  (``num_samples``, ``speaker``, ``text`` ...; NeMo's ``audio_filepath`` for ``path``, its
  ``offset``/``duration`` for a time range), or a
  ``datasets`` AudioFolder's ``metadata.jsonl``/``metadata.csv`` (``file_name``; ids its path
  without extension); relative paths are relative to the file;
* Lhotse manifests (a CutSet, or a SupervisionSet with its RecordingSet; ``.jsonl[.gz]``,
  :mod:`speechunits.layouts.lhotse_manifests`), a Lhotse Shar directory;
* WebDataset ``.tar`` shards (a file, a quoted glob or brace pattern, a directory of them;
  :mod:`speechunits.layouts.tar_shards`) and NeMo tarred datasets (``tarred_audio_manifest.json`` with its
  ``audio_N.tar`` shards, or their directory);
* Hugging Face ``datasets`` tables: Parquet shards (the Hub's, ``to_parquet``'s) or Arrow files
  (``save_to_disk``, the cache), one split at a time (:mod:`speechunits.layouts.hf_datasets`).

A quoted glob or brace pattern over any of these (``'data/{train,dev,test}'``) is their
concatenation (:mod:`speechunits.sources`). A single audio file is a corpus of one. The utterance id is the path relative to the root
without its extension (JSONL and wav.scp give it explicitly); duplicate ids are an error (naming both
files). Directory scans pick up the extensions libsndfile reads (:data:`AUDIO_EXTENSIONS`,
SPHERE ``.sph`` included) and headerless ``.raw``/``.pcm``, which load only when the corpus is
opened with a :class:`~speechunits.audio.RawFormat` (``--raw-format``). Iteration is
lazy: manifests are read line by line. ``shard(i, n)`` keeps every n-th utterance starting
at the i-th (0-based), so shards are disjoint, cover the corpus, and do not depend on timing.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from speechunits.audio import AUDIO_EXTENSIONS, RAW_EXTENSIONS, RawFormat
from speechunits.errors import SpeechUnitsError
from speechunits.files import parse_json_object
from speechunits.layouts.hf_datasets import (SPEAKER_COLUMNS, is_table_source, iter_table_utterances, parse_row_path,
                                             read_column, table_files)
from speechunits.layouts.iemocap import is_iemocap_tree, speaker_of
from speechunits.layouts.lhotse_manifests import iter_entries, manifest_kind
from speechunits.layouts.lhotse_manifests import read_labels as read_lhotse_labels
from speechunits.layouts.tar_shards import is_tar_source, iter_samples, member_path, parse_member_path
from speechunits.layouts.tar_shards import read_labels as read_tar_labels
from speechunits.sources import expand_source, merged_over_sources
from speechunits.spans import parse_span_path, span_path


@dataclass(frozen=True)
class Utterance:
    """One entry of a corpus.

    Attributes:
        id: utterance id (relative path without extension, or the manifest's id).
        path: absolute or working-dir-relative audio path.
        num_samples: length at the file's own rate, when the manifest says so.
        fields: any other manifest fields (speaker, text ...).
        raw_format: how to read the file if it is headerless PCM (``--raw-format``), else None.
    """

    id: str
    path: str
    num_samples: int | None = None
    fields: dict[str, Any] = field(default_factory=dict, compare=False)
    raw_format: RawFormat | None = None


def parse_shard(spec: str | None) -> tuple[int, int]:
    """Parse ``"i/n"`` (0 <= i < n) into ``(i, n)``; ``None`` means ``(0, 1)``."""
    if spec is None:
        return 0, 1
    try:
        i_text, n_text = spec.split("/")
        index, count = int(i_text), int(n_text)
    except ValueError:
        raise SpeechUnitsError(f"--shard: expected 'i/n' such as '0/4', got {spec!r}") from None
    if count < 1 or not 0 <= index < count:
        raise SpeechUnitsError(f"--shard: need 0 <= i < n, got {spec!r}")
    return index, count


class Corpus:
    """A lazy, re-iterable sequence of :class:`Utterance` records."""

    def __init__(self, source: str, make_iter: Callable[[], Iterator[Utterance]], shard: tuple[int, int] = (0, 1)):
        self.source = source
        self._make_iter = make_iter
        self._shard = shard

    def __iter__(self) -> Iterator[Utterance]:
        index, count = self._shard
        seen: set[str] = set()
        for position, utt in enumerate(self._make_iter()):
            if utt.id in seen:
                first = next(u.path for u in self._make_iter() if u.id == utt.id)  # rare: look it up again
                raise SpeechUnitsError(_duplicate_message(self.source, utt.id, first, utt.path))
            seen.add(utt.id)
            if position % count == index:
                yield utt

    def shard(self, index: int, count: int) -> "Corpus":
        """Return shard ``index`` of ``count`` (applied on top of any existing sharding)."""
        if count < 1 or not 0 <= index < count:
            raise SpeechUnitsError(f"shard: need 0 <= i < n, got {index}/{count}")
        old_index, old_count = self._shard
        # Shard of a shard: positions p with p % old_count == old_index, then every count-th of those.
        return Corpus(self.source, self._make_iter, (old_index + index * old_count, old_count * count))

    def whole(self) -> "Corpus":
        """The same source without sharding."""
        return Corpus(self.source, self._make_iter)

    def filter(self, keep: Callable[[Utterance], bool]) -> "Corpus":
        """Lazily keep only utterances for which ``keep`` is true."""
        parent = self
        return Corpus(self.source, lambda: (u for u in parent if keep(u)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def require_utterances(self) -> "Corpus":
        """``self``, or a :class:`SpeechUnitsError` when the source holds no utterance at all.

        Shards are not looked at: a shard of a small corpus may be empty, the corpus may not.
        Reads up to the first utterance only.
        """
        if next(iter(self._make_iter()), None) is None:
            raise SpeechUnitsError(f"{self.source}: no audio files (directories are scanned for "
                                   f"{', '.join(_SCANNED_EXTENSIONS)}; manifests and tables need at least one row)")
        return self

    def __repr__(self) -> str:
        return f"Corpus({self.source!r}, shard={self._shard[0]}/{self._shard[1]})"


def _duplicate_message(source: str, utt_id: str, first: str, second: str) -> str:
    """Name both files that claim ``utt_id`` and say how to resolve it."""
    if first == second:
        fix = "the manifest lists the file twice; remove one line"
    elif Path(first).with_suffix("") == Path(second).with_suffix(""):
        fix = ("the same recording in two formats? keep one of them (move the other out of the directory), "
               "or list the files to use in a .tsv/.jsonl manifest")
    else:
        fix = "give every file its own id (the manifest's 'id' field, or rename one)"
    return f"{source}: utterance id {utt_id!r} is claimed by two files, {first} and {second}; {fix}"


def open_corpus(source: str | os.PathLike[str], shard: str | tuple[int, int] | None = None,
                raw_format: RawFormat | str | None = None) -> Corpus:
    """Open an audio directory, a Kaldi ``wav.scp`` (or a data directory holding one, with its
    ``segments``), a fairseq ``.tsv``, a ``.jsonl`` manifest (NeMo's too), an AudioFolder
    ``metadata.csv``, a Lhotse manifest or Shar directory, WebDataset ``.tar`` shards, a NeMo tarred
    dataset, Hugging Face Parquet/Arrow tables (a file, a quoted glob, a directory of one split's
    shards) or a single audio file (see the module docstring); or a quoted glob or brace pattern
    naming several of these, read one after the other (:mod:`speechunits.sources`).

    ``raw_format`` (``"s16le:16000"`` or a :class:`RawFormat`) tells how to read the corpus's
    headerless PCM files; it rides on every :class:`Utterance`.
    """
    if isinstance(raw_format, str):
        raw_format = RawFormat.parse(raw_format)
    parts = expand_source(source)
    if parts is not None and all(Path(p).suffix.lower() in _SCANNED_EXTENSIONS and Path(p).is_file() for p in parts):
        files = [Path(p) for p in parts]  # a glob of audio files: one corpus of them, ids their names
        utterances = lambda: (Utterance(f.stem, str(f), raw_format=raw_format) for f in files)  # noqa: E731
        return _sharded(Corpus(str(source), utterances), shard)
    if parts is not None:  # several corpora named by one pattern (speechunits.sources)
        return _union(str(source), [open_corpus(part, raw_format=raw_format) for part in parts], shard)
    path = Path(source)
    table = is_table_source(path)  # Hugging Face datasets: Parquet/Arrow shards with an audio column
    shar = not table and manifest_kind(path) == "shar"  # a Lhotse Shar directory (tars of cuts' audio)
    tars = not (table or shar) and is_tar_source(source)  # WebDataset shards
    if not path.exists() and not (table or tars):  # a quoted glob of shards exists only as shards
        raise SpeechUnitsError(f"{path}: no such file or directory")
    if path.is_dir() and (path / KALDI_WAV_SCP).is_file():  # a Kaldi/ESPnet data directory
        path, table = path / KALDI_WAV_SCP, False
    if path.is_dir() and (path / NEMO_TARRED_MANIFEST).is_file() and not table:  # a NeMo tarred dataset
        path, tars = path / NEMO_TARRED_MANIFEST, False
    if table:
        table_files(path)  # one split, or an error naming them
        make_iter = lambda: iter_table_utterances(path)  # noqa: E731
    elif tars:
        make_iter = lambda: (Utterance(utt, audio) for utt, audio in iter_samples(source))  # noqa: E731
    elif path.is_dir() and not shar:
        make_iter: Callable[[], Iterator[Utterance]] = lambda: _iter_directory(path)  # noqa: E731
    elif path.suffix == ".scp" and (path.parent / KALDI_SEGMENTS).is_file():  # utterances are time ranges
        make_iter = lambda: _iter_kaldi_segments(path, path.parent / KALDI_SEGMENTS)  # noqa: E731
    elif path.suffix == ".scp":
        make_iter = lambda: _iter_scp(path)  # noqa: E731
    elif path.suffix == ".tsv":
        make_iter = lambda: _iter_tsv(path)  # noqa: E731
    elif manifest_kind(path) is not None:  # a Lhotse CutSet, SupervisionSet or RecordingSet
        make_iter = lambda: (Utterance(utt, audio, fields=labels)  # noqa: E731
                             for utt, audio, labels in iter_entries(path))
    elif path.suffix in (".jsonl", ".json") or (path.suffix == ".csv" and _csv_names_files(path)):
        make_iter = lambda: _iter_jsonl(path)  # noqa: E731 - .csv: an AudioFolder's metadata.csv
    elif path.suffix.lower() in _SCANNED_EXTENSIONS or raw_format is not None:
        make_iter = lambda: iter([Utterance(path.stem, str(path))])  # noqa: E731
    else:
        raise SpeechUnitsError(f"{path}: not an audio directory, wav.scp, .tsv/.jsonl manifest, AudioFolder "
                               f"metadata.csv or CSV manifest (a '{AUDIOFOLDER_PATH_KEY}' or 'path' column), Hugging Face "
                               "Parquet/Arrow table, "
                               "WebDataset .tar shard, Lhotse manifest or audio file")
    if raw_format is not None:
        plain_iter = make_iter
        make_iter = lambda: (replace(utt, raw_format=raw_format) for utt in plain_iter())  # noqa: E731
    return _sharded(Corpus(str(path), make_iter), shard)


def _sharded(corpus: Corpus, shard: str | tuple[int, int] | None) -> Corpus:
    index, count = parse_shard(shard) if (shard is None or isinstance(shard, str)) else shard
    return corpus.shard(index, count) if count > 1 else corpus


def _union(source: str, corpora: list[Corpus], shard: str | tuple[int, int] | None) -> Corpus:
    """The corpora one after the other (their ids must differ: a duplicate names both files)."""
    return _sharded(Corpus(source, lambda: (utt for corpus in corpora for utt in corpus)), shard)


def open_corpus_via_manifest(source: str | os.PathLike[str], raw_format: RawFormat | str | None = None) -> Corpus:
    """:func:`open_corpus`, except that a directory holding ``manifest.tsv`` (a ``speechunits synth``
    corpus) is read through that manifest, so utterance ids match its label files (``speakers.tsv``,
    ``phones.tsv``, ``text.tsv``) and not the ``wavs/...`` paths a folder scan would give."""
    parts = expand_source(source)
    if parts is not None:  # several corpora named by one pattern, each read so
        return _union(str(source), [open_corpus_via_manifest(part, raw_format) for part in parts], None)
    path = Path(source)
    if path.is_dir() and (path / "manifest.tsv").is_file():
        return open_corpus(path / "manifest.tsv", raw_format=raw_format)
    return open_corpus(path, raw_format=raw_format)


def refuse_output_in_input(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Refuse an output directory that is the input directory or lies inside it.

    Files written there would overwrite input files of the same name, and the next scan of the
    input would read them as input. (A manifest's audio may lie anywhere: writers also check each
    file with :func:`refuse_overwriting_input`.)

    Raises:
        SpeechUnitsError: naming both directories.
    """
    for part in expand_source(source) or [source]:  # each input a pattern names
        source_path = Path(part)
        if source_path.is_dir() and Path(out).resolve().is_relative_to(source_path.resolve()):
            raise SpeechUnitsError(f"{out}: inside the input directory {part}; writing there would overwrite or "
                                   "add to the input (its next scan would read the outputs as input): choose another -o")


def refuse_overwriting_input(target: str | os.PathLike[str], input_path: str | os.PathLike[str]) -> None:
    """Refuse to write ``target`` when it is the input file ``input_path`` itself.

    Raises:
        SpeechUnitsError: naming the file.
    """
    target = Path(target)
    if target.exists() and Path(input_path).exists() and target.samefile(input_path):
        raise SpeechUnitsError(f"{target}: is an input file; writing it would destroy the input: choose another -o")


#: What a directory scan picks up: files with a header, and headerless PCM (loadable with a raw format).
_SCANNED_EXTENSIONS = AUDIO_EXTENSIONS + RAW_EXTENSIONS


def _iter_directory(root: Path) -> Iterator[Utterance]:
    from speechunits.layouts.iemocap import SENTENCES, sessions
    from speechunits.layouts.speech_commands import NOISE_FOLDER, is_speech_commands_tree, noise_clips

    noise = root / NOISE_FOLDER if is_speech_commands_tree(root) else None  # its recordings as 1-s clips
    tops = [session / SENTENCES for session in sessions(root)] or [root]  # IEMOCAP: its utterances only
    for dirpath, dirnames, filenames in (walked for top in tops for walked in os.walk(top, followlinks=True)):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in _SCANNED_EXTENSIONS:
                full = Path(dirpath) / name
                if noise is not None and full.parent == noise:
                    yield from (Utterance(utt, path) for utt, path in noise_clips(root, full))
                    continue
                rel = full.relative_to(root)
                yield Utterance(rel.with_suffix("").as_posix(), str(full))


def _tsv_root(manifest: Path, root_line: str) -> Path:
    """The audio root of a fairseq manifest from its first line (relative roots are from the manifest's folder)."""
    if not root_line:
        raise SpeechUnitsError(f"{manifest}: empty manifest (expected a root directory on line 1)")
    root = Path(root_line.rstrip("\r\n"))
    return root if root.is_absolute() else manifest.parent / root


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


def _iter_common_voice_clips(manifest: Path) -> Iterator[Utterance]:
    clips = manifest.parent / "clips"
    root = clips if clips.is_dir() else manifest.parent
    for _, row in iter_common_voice(manifest):
        fields = {"text": row["sentence"], "speaker": row["client_id"]}
        yield Utterance(common_voice_id(row["path"]), str(root / row["path"]), None, fields)


def _iter_tsv(manifest: Path) -> Iterator[Utterance]:
    if common_voice_columns(manifest) is not None:
        yield from _iter_common_voice_clips(manifest)
        return
    try:
        with open(manifest, encoding="utf-8-sig") as handle:
            root = _tsv_root(manifest, handle.readline())
            for line_no, line in enumerate(handle, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                parts = line.split("\t")
                rel = parts[0]
                num_samples = None
                if len(parts) > 1 and parts[1]:
                    try:
                        num_samples = int(parts[1])
                    except ValueError:
                        raise SpeechUnitsError(
                            f"{manifest}:{line_no}: num_samples {parts[1]!r} is not an integer") from None
                yield Utterance(_tsv_id(rel), str(root / rel), num_samples)
    except UnicodeDecodeError as exc:
        raise SpeechUnitsError(f"{manifest}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _tsv_id(rel: str) -> str:
    """A fairseq manifest row's id: its path without extension. Rows a features directory lists for
    other inputs: a table row's (``FILE#row=N``) is ``FILE-without-extension/N``; a time range's
    (``FILE#t=START,END``) is ``FILE-without-extension_SSSSSSS-EEEEEEE`` (centiseconds, as Kaldi
    names segments; ``end`` for an open end)."""
    span = parse_span_path(rel)
    if span is not None:
        end = "end" if span[2] is None else f"{round(span[2] * 100):07d}"
        return f"{_tsv_id(span[0])}_{round(span[1] * 100):07d}-{end}"
    row = parse_row_path(rel)
    if row is not None:
        return f"{row[0].with_suffix('').as_posix()}/{row[1]}"
    member = parse_member_path(rel)
    if member is not None:  # a member of a tar archive: its name without extension
        return Path(member[1]).with_suffix("").as_posix()
    return Path(rel).with_suffix("").as_posix()


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


def _csv_names_files(path: Path) -> bool:
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


def _iter_jsonl(manifest: Path) -> Iterator[Utterance]:
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
        yield Utterance(utt_id, path, int(num_samples) if num_samples is not None else None, record)


#: A Kaldi/ESPnet data directory's list of recordings: ``utt_id path`` lines.
KALDI_WAV_SCP = "wav.scp"


#: A Kaldi/ESPnet data directory's time ranges: ``utt_id recording_id start_s end_s`` lines.
KALDI_SEGMENTS = "segments"


def _iter_kaldi_segments(scp: Path, segments: Path) -> Iterator[Utterance]:
    """The utterances of a ``segments`` file: time ranges (:mod:`speechunits.spans`) of the recordings
    ``wav.scp`` lists (an end of ``-1``: to the recording's end)."""
    recordings = {utt.id: utt.path for utt in _iter_scp(scp)}
    for line_no, line in iter_text_lines(segments, "Kaldi segments"):
        fields = line.split()
        if len(fields) != 4:
            raise SpeechUnitsError(f"{segments}:{line_no}: expected 'utt_id recording_id start end', got {line[:80]!r}")
        utt_id, recording, start_text, end_text = fields
        if recording not in recordings:
            raise SpeechUnitsError(f"{segments}:{line_no}: recording {recording!r} is not in {scp}")
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            raise SpeechUnitsError(f"{segments}:{line_no}: start and end must be seconds, got {line[:80]!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise SpeechUnitsError(f"{segments}:{line_no}: needs 0 <= start < end (or end -1), got {start_text} {end_text}")
        yield Utterance(utt_id, span_path(recordings[recording], start, None if end == -1 else end))


def _scp_base(scp: Path, first_path: str) -> Path:
    """Where an ``.scp`` file's relative paths start: the working directory (Kaldi's and ESPnet's
    convention: the recipe directory), else the first folder above the ``.scp`` where the first path exists."""
    if Path(first_path).exists():
        return Path(".")
    for base in scp.resolve().parents:
        if (base / first_path).exists():
            return base
    return Path(".")


def _iter_scp(scp: Path) -> Iterator[Utterance]:
    base: Path | None = None
    for line_no, line in iter_text_lines(scp, "Kaldi wav.scp"):
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise SpeechUnitsError(f"{scp}:{line_no}: expected 'utt_id path', got {line[:80]!r}")
        utt_id, where = fields[0], fields[1].strip()
        if where.endswith("|"):
            raise SpeechUnitsError(f"{scp}:{line_no}: {utt_id} is a shell command ({where[:60]!r}); speechunits reads "
                                   "audio files only: write them out first (ESPnet's format_wav_scp.sh, Kaldi's "
                                   "wav-copy) and give the wav.scp that lists the files")
        if base is None:
            base = _scp_base(scp, where)
        path = Path(where)
        yield Utterance(utt_id, str(path if path.is_absolute() else base / path))


#: Above this many utterances :func:`total_audio_seconds` gives up (reading headers would take long).
MAX_PRESCAN = 50_000


def total_audio_seconds(utterances: Iterable[Utterance], limit: int = MAX_PRESCAN) -> float | None:
    """Audio seconds from file headers, for progress bars' ETA; ``None`` above ``limit`` utterances.

    Unreadable files are left out (the pass that processes them reports them).
    """
    import soundfile as sf

    total = 0.0
    for count, utt in enumerate(utterances):
        if count >= limit:
            return None
        span = parse_span_path(utt.path)
        if span is not None and span[2] is not None:  # a closed time range: its length is in its path
            total += span[2] - span[1]
            continue
        if span is not None or parse_row_path(utt.path) is not None or parse_member_path(utt.path) is not None:
            return None  # a table row, tar member or open time range: its length is known only once decoded
        try:
            if utt.raw_format is not None and Path(utt.path).suffix.lower() not in AUDIO_EXTENSIONS:
                total += utt.raw_format.num_frames(utt.path) / utt.raw_format.sample_rate
                continue
            info = sf.info(utt.path)
        except Exception:  # noqa: BLE001 - libsndfile raises several types; reported later
            continue
        total += info.frames / info.samplerate
    return total


def write_tsv(path: str | os.PathLike[str], root: str, rows: list[tuple[str, int]]) -> None:
    """Write a fairseq manifest: ``root`` then ``relpath<TAB>num_samples`` per row."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{root}\n")
        for rel, num_samples in rows:
            handle.write(f"{rel}\t{num_samples}\n")


def write_tsv_subset(source: str | os.PathLike[str], ids: set[str], path: str | os.PathLike[str]) -> int:
    """Write the rows of the fairseq manifest ``source`` whose utterance id is in ``ids`` to ``path``,
    under the same (absolute) root, so ids and sample counts are unchanged. Returns the rows written."""
    source = Path(source)
    if source.suffix != ".tsv":
        raise SpeechUnitsError(f"{source}: expected a fairseq .tsv manifest")
    with open(source, encoding="utf-8") as handle:
        root = _tsv_root(source, handle.readline()).resolve()
    rows = [(Path(u.path).resolve().relative_to(root).as_posix(), u.num_samples)
            for u in _iter_tsv(source) if u.id in ids]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{root}\n")
        for rel, num_samples in rows:
            handle.write(f"{rel}\t{'' if num_samples is None else num_samples}\n")
    return len(rows)


#: The speaker list a corpus may carry (``speechunits synth`` writes one): ``utt_id<TAB>speaker`` lines.
SPEAKERS_FILE = "speakers.tsv"
#: A Kaldi/ESPnet data directory's speaker list: ``utt_id speaker`` lines.
KALDI_UTT2SPK = "utt2spk"


#: The ending of LibriSpeech's per-chapter transcript files (``19-198.trans.txt``: ``19-198-0001 TEXT``).
LIBRISPEECH_TRANSCRIPTS = ".trans.txt"
#: The ending of LibriTTS's (and LibriTTS-R's) per-chapter transcript files (``19_198.trans.tsv``:
#: ``19_198_000000_000000<TAB>original text<TAB>normalised text``).
LIBRITTS_TRANSCRIPTS = ".trans.tsv"
#: Both, the per-chapter transcripts of a Libri* tree.
CHAPTER_TRANSCRIPTS = (LIBRISPEECH_TRANSCRIPTS, LIBRITTS_TRANSCRIPTS)


def iter_librispeech_transcripts(root: str | os.PathLike[str]) -> Iterator[Path]:
    """The per-chapter transcript files of a LibriSpeech (``SPEAKER-CHAPTER.trans.txt``) or LibriTTS
    (``SPEAKER_CHAPTER.trans.tsv``) tree under ``root``, in sorted walk order (lazily: the first one
    is found without walking the whole tree)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(CHAPTER_TRANSCRIPTS):
                yield Path(dirpath) / name


def libri_speaker(utt_id: str) -> str:
    """The speaker in a LibriSpeech (``19-198-0001``) or LibriTTS (``19_198_000000_000000``) id."""
    return re.split(r"[-_]", utt_id, maxsplit=1)[0]


#: VCTK's audio folders (0.92, 0.80) beside its ``txt/`` folder of one transcript file per sentence.
VCTK_AUDIO_DIRS = ("wav48_silence_trimmed", "wav48")


#: VoxCeleb's speaker folders (``wav/id10001/VIDEO/00001.wav``).
_VOXCELEB_SPEAKER = re.compile(r"^id\d{5}$")


def is_voxceleb_tree(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a VoxCeleb ``wav/`` folder: every sub-folder a speaker (``idNNNNN``) holding
    video folders."""
    path = Path(root)
    if not path.is_dir():
        return False
    folders = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return bool(folders) and all(_VOXCELEB_SPEAKER.match(d.name) for d in folders) and \
        any(child.is_dir() for child in folders[0].iterdir())


def vctk_audio_dir(root: str | os.PathLike[str]) -> Path | None:
    """The audio folder of a VCTK corpus at ``root`` (``txt/`` beside ``wav48_silence_trimmed/`` or
    ``wav48/``), else ``None``."""
    root = Path(root)
    if not (root / "txt").is_dir():
        return None
    return next((root / name for name in VCTK_AUDIO_DIRS if (root / name).is_dir()), None)


def iter_vctk(root: str | os.PathLike[str]) -> Iterator[tuple[str, str, Path | None]]:
    """``(audio stem, speaker, transcript file or None)`` of every audio file of a VCTK corpus: both
    microphones of 0.92 (``p225_001_mic1``, ``p225_001_mic2``) share ``txt/p225/p225_001.txt``;
    sentences without one (p315's, the spontaneous ``_000`` ones) give ``None``."""
    audio_dir = vctk_audio_dir(root)
    if audio_dir is None:
        return
    for utt in _iter_directory(audio_dir):
        stem = Path(utt.id).name
        sentence = re.sub(r"_mic\d$", "", stem)
        speaker = sentence.split("_", 1)[0]
        text = Path(root) / "txt" / speaker / f"{sentence}.txt"
        yield stem, speaker, text if text.is_file() else None


@merged_over_sources
def read_speakers(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt_id: speaker}`` from a ``utt_id<TAB>speaker`` file such as ``speakers.tsv``, or from a
    Kaldi ``utt2spk`` (``utt_id speaker``, separated by any whitespace), or of a LibriSpeech or
    LibriTTS tree (a directory: the ids of its ``*.trans.txt``/``*.trans.tsv`` files,
    ``SPEAKER-CHAPTER-N``/``SPEAKER_CHAPTER_...``, give the speakers), or of a
    Common Voice TSV (``client_id`` of each clip), or of a JSONL manifest (``speaker`` fields), or of
    a VCTK corpus (its root: each audio file's speaker prefix, keyed by the file's stem), or of a
    VoxCeleb ``wav/`` folder (each file's speaker folder), or of an IEMOCAP release (each utterance's
    actor).

    Blank lines are ignored; surrounding whitespace of the speaker is dropped.

    Raises:
        SpeechUnitsError: no such file, or a line that is not two non-empty tab-separated
            fields, or an utterance listed twice (the message names the file and line).
    """
    result: dict[str, str] = {}
    if is_table_source(path):  # a Hugging Face table's speaker column
        return read_column(path, SPEAKER_COLUMNS, "speaker")
    if manifest_kind(path) is not None:  # a Lhotse manifest's supervisions
        return read_lhotse_labels(path, "speaker")
    if is_tar_source(path):  # WebDataset samples' .json speaker fields
        return read_tar_labels(path, "speaker")
    if Path(path).suffix.lower() in (".jsonl", ".json", ".csv"):  # a manifest's speaker fields
        field = first_record_field(path, SPEAKER_FIELDS) or SPEAKER_FIELDS[0]
        result = {utt_id: str(speaker).strip() for _, utt_id, speaker in iter_jsonl_field(path, field)}
        if not result:
            raise SpeechUnitsError(f"{path}: no record has a '{field}'")
        return result
    if common_voice_columns(path) is not None:
        return {common_voice_id(row["path"]): row["client_id"] for _, row in iter_common_voice(path)}
    if Path(path).is_dir() and vctk_audio_dir(path) is not None:  # VCTK: the speaker prefix of each file
        return {stem: speaker for stem, speaker, _ in iter_vctk(path)}
    if is_voxceleb_tree(path):  # VoxCeleb: SPEAKER/VIDEO/NNNNN, the speaker its first folder
        return {utt.id: utt.id.split("/", 1)[0] for utt in open_corpus(path)}
    if Path(path).is_dir() and is_iemocap_tree(path):  # IEMOCAP: the session and actor in each name
        return {utt.id: speaker for utt in open_corpus(path) if (speaker := speaker_of(utt.id)) is not None}
    if Path(path).is_dir():
        for chapter in iter_librispeech_transcripts(path):
            for _, line in iter_text_lines(chapter, "LibriSpeech transcripts"):
                utt_id = line.split(None, 1)[0]
                result[utt_id] = libri_speaker(utt_id)
        if not result:
            raise SpeechUnitsError(f"{path}: no speakers file, and no LibriSpeech or LibriTTS transcripts "
                                   f"(*{LIBRISPEECH_TRANSCRIPTS}, *{LIBRITTS_TRANSCRIPTS}) whose ids name the speakers")
        return result
    if Path(path).name == KALDI_UTT2SPK:
        return read_pairs(path, what="Kaldi utt2spk", key_name="utt_id", value_name="speaker", whitespace=True)
    return read_pairs(path, what="speakers file", key_name="utt_id", value_name="speaker")


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