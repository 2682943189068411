"""Corpora: where utterances come from.

Nine inputs are understood (see :func:`open_corpus`):

* an audio directory, scanned recursively in sorted order (a Speech Commands tree's
  ``_background_noise_`` recordings as one-second clips, :mod:`speechunits.layouts.speech_commands`; an
  IEMOCAP release's utterances, not its dialogues, :mod:`speechunits.layouts.iemocap`);
* a Kaldi/ESPnet ``wav.scp`` (``utt_id path`` lines; a data directory holding one is read
  through it; with a ``segments`` file beside it, the utterances are its time ranges of the
  recordings, :mod:`speechunits.spans`; piped commands are refused by name; :mod:`speechunits.layouts.kaldi`);
* a Common Voice TSV (a header naming ``client_id``, ``path``, ``sentence``; clips under ``clips/``
  beside it, ids their file names without extension; :mod:`speechunits.layouts.common_voice`);
* a fairseq ``.tsv`` manifest (first line: root dir; then ``relpath<TAB>num_samples``);
* a JSONL manifest, one ``{"id": ..., "path": ...}`` object per line plus optional fields
  (``num_samples``, ``speaker``, ``text`` ...; NeMo's ``audio_filepath`` for ``path``, its
  ``offset``/``duration`` for a time range), or a
  ``datasets`` AudioFolder's ``metadata.jsonl``/``metadata.csv`` (``file_name``; ids its path
  without extension); relative paths are relative to the file (:mod:`speechunits.layouts.manifests`);
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
from typing import Any, Callable, Iterable, Iterator

from speechunits.audio import AUDIO_EXTENSIONS, RAW_EXTENSIONS, RawFormat
from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines, read_pairs
from speechunits.layouts.hf_datasets import (SPEAKER_COLUMNS, is_table_source, iter_table_utterances, parse_row_path,
                                             read_column, table_files)
from speechunits.layouts.iemocap import is_iemocap_tree, speaker_of
from speechunits.layouts.lhotse_manifests import iter_entries, manifest_kind
from speechunits.layouts.lhotse_manifests import read_labels as read_lhotse_labels
from speechunits.layouts.common_voice import common_voice_columns, common_voice_id, iter_clips, iter_common_voice
from speechunits.layouts.kaldi import KALDI_SEGMENTS, KALDI_UTT2SPK, KALDI_WAV_SCP, iter_scp, iter_segments
from speechunits.layouts.librispeech import (LIBRISPEECH_TRANSCRIPTS, LIBRITTS_TRANSCRIPTS,
                                             iter_librispeech_transcripts, libri_speaker)
from speechunits.layouts.manifests import (AUDIOFOLDER_PATH_KEY, NEMO_TARRED_MANIFEST, SPEAKER_FIELDS, csv_names_files,
                                           first_record_field, iter_jsonl_field, iter_manifest_utterances)
from speechunits.layouts.tar_shards import is_tar_source, iter_samples, parse_member_path
from speechunits.layouts.tar_shards import read_labels as read_tar_labels
from speechunits.sources import expand_source, merged_over_sources
from speechunits.spans import parse_span_path


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
        segments = path.parent / KALDI_SEGMENTS
        make_iter = lambda: (Utterance(utt, audio) for utt, audio in iter_segments(path, segments))  # noqa: E731
    elif path.suffix == ".scp":
        make_iter = lambda: (Utterance(utt, audio) for utt, audio in iter_scp(path))  # noqa: E731
    elif path.suffix == ".tsv":
        make_iter = lambda: _iter_tsv(path)  # noqa: E731
    elif manifest_kind(path) is not None:  # a Lhotse CutSet, SupervisionSet or RecordingSet
        make_iter = lambda: (Utterance(utt, audio, fields=labels)  # noqa: E731
                             for utt, audio, labels in iter_entries(path))
    elif path.suffix in (".jsonl", ".json") or (path.suffix == ".csv" and csv_names_files(path)):
        make_iter = lambda: (Utterance(utt, audio, n, fields)  # noqa: E731 - .csv: an AudioFolder's metadata.csv
                             for utt, audio, n, fields in iter_manifest_utterances(path))
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



def _iter_tsv(manifest: Path) -> Iterator[Utterance]:
    if common_voice_columns(manifest) is not None:
        yield from (Utterance(utt, clip, None, fields) for utt, clip, fields in iter_clips(manifest))
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

