"""Audio inside tar archives: WebDataset shards (and the member reading NeMo tarred datasets and
Lhotse Shar use).

An utterance stored in a tar is ``SHARD.tar#member=NAME``: :func:`speechunits.audio.open_sound_file`
finds the member through an index of the archive's headers (built once per archive and cached) and
decodes its bytes from memory, so the archive is never unpacked and any member is read with one
seek. Compressed archives (``.tar.gz`` ...) cannot be read at an offset and are refused with the
command that decompresses them; WebDataset shards are plain tars as its writers make them.

**WebDataset** shards group the members of one sample by key: the member's path up to the first
dot of its file name (``train/u0001.flac`` and ``train/u0001.json`` are sample ``train/u0001`` with
extensions ``flac`` and ``json``), consecutive in the archive. A corpus of shards is a ``.tar``, a
quoted glob (``'shards/*.tar'``), WebDataset's brace pattern (``'shards/train-{000000..000099}.tar'``)
or a directory holding ``.tar`` files and no audio file. Each sample is an utterance whose id is its
key and whose audio is its one member with an audio extension (``flac``, ``wav``, ``mp3`` ...; with
several, ``SOURCE::EXT`` names the one to read). Labels ride in the sample's other members:
``txt`` (transcript), ``cls`` (class label) and ``json`` (fields named as in manifests: ``text``,
``speaker``/``speaker_id``, ``label`` ...), read only when labels are asked for.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from speechunits.errors import SpeechUnitsError
from speechunits.layouts import collect_label
from speechunits.sources import is_pattern, pattern_matches, split_suffix

#: Names of archives, compressed ones included (these are recognised so as to be refused by name).
ARCHIVE_NAME_ENDINGS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")
_MEMBER_MARK = "#member="
_MEMBER_PATH = re.compile(r"^(?P<file>.+?\.(?:tar|tar\.gz|tgz|tar\.bz2|tar\.xz|tar\.zst))#member=(?P<name>.+)$")
#: Magic bytes of the compressions tar archives come in, with the command that undoes each.
_COMPRESSIONS = ((b"\x1f\x8b", "gzip", "gunzip -k"), (b"BZh", "bzip2", "bunzip2 -k"),
                 (b"\xfd7zXZ\x00", "xz", "unxz -k"), (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"))
#: Extensions (the last part of a member's) that hold audio libsndfile decodes.
AUDIO_MEMBER_EXTENSIONS = ("flac", "wav", "mp3", "ogg", "opus", "sph")
#: A sample's members that carry labels, by extension: transcript and class label.
TEXT_EXTENSIONS = ("txt", "text", "transcript")
CLASS_EXTENSIONS = ("cls", "label")


# -- one archive -------------------------------------------------------------------------------
def member_path(tar: str | os.PathLike[str], name: str) -> str:
    """The ``path`` of member ``name`` of archive ``tar`` as a corpus records it."""
    return f"{tar}{_MEMBER_MARK}{name}"


def parse_member_path(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(archive, member name)`` of a :func:`member_path`, else ``None``."""
    hit = _MEMBER_PATH.match(str(path))
    return (Path(hit["file"]), hit["name"]) if hit else None


def _refuse_compressed(tar: Path) -> None:
    try:
        with open(tar, "rb") as handle:
            head = handle.read(6)
    except FileNotFoundError:
        raise SpeechUnitsError(f"{tar}: no such file") from None
    except OSError as exc:
        raise SpeechUnitsError(f"{tar}: unreadable ({exc})") from exc
    for magic, name, undo in _COMPRESSIONS:
        if head.startswith(magic):
            raise SpeechUnitsError(f"{tar}: a {name}-compressed tar, which cannot be read at an offset; "
                                   f"decompress it first (`{undo} {tar.name}`) and give the .tar")


@lru_cache(maxsize=32)
def _index(tar: Path, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    """``{member name: (offset of its data, size)}`` of the regular files of ``tar``, in archive order
    (``mtime_ns`` and ``size`` key the cache, so a rewritten archive is indexed again)."""
    _refuse_compressed(tar)
    found: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(tar, mode="r:") as archive:
            for info in archive:
                if info.isfile():
                    found[info.name] = (info.offset_data, info.size)
    except (tarfile.TarError, EOFError) as exc:
        raise SpeechUnitsError(f"{tar}: not a readable tar archive ({exc})") from exc
    return found


def members(tar: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """The regular files of archive ``tar``: ``{name: (data offset, size)}`` in archive order.

    Raises:
        SpeechUnitsError: no such file, a compressed or corrupt archive.
    """
    tar = Path(tar)
    try:
        stat = tar.stat()
    except FileNotFoundError:
        raise SpeechUnitsError(f"{tar}: no such file") from None
    return _index(tar, stat.st_mtime_ns, stat.st_size)


def read_member(tar: str | os.PathLike[str], name: str) -> bytes:
    """The bytes of member ``name`` of archive ``tar``.

    Raises:
        SpeechUnitsError: as :func:`members`; no such member (naming a few that exist).
    """
    index = members(tar)
    if name not in index:
        shown = ", ".join(list(index)[:3])
        raise SpeechUnitsError(f"{tar}: no member {name!r} (it holds {len(index)} files"
                               f"{': ' + shown + ', ...' if shown else ''})")
    offset, size = index[name]
    with open(tar, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise SpeechUnitsError(f"{tar}: member {name!r} is cut short (truncated archive?)")
    return data


def member_exists(path: str | os.PathLike[str]) -> bool:
    """Whether a :func:`member_path` names a member of an archive that exists."""
    parsed = parse_member_path(path)
    if parsed is None or not parsed[0].is_file():
        return False
    try:
        return parsed[1] in members(parsed[0])
    except SpeechUnitsError:
        return False


# -- WebDataset samples ------------------------------------------------------------------------
def sample_key(name: str) -> tuple[str, str] | None:
    """``(key, extension)`` of a WebDataset member name (split at the first dot of its file name),
    or ``None`` for a name without one."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem or not ext:
        return None
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _strip_extension_choice(source: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``"SOURCE::EXT"`` → ``(SOURCE, ext)`` (lower case, no dot); anything else → ``(source, None)``."""
    head, ext = split_suffix(source)
    return head, None if ext is None else ext.lower().lstrip(".")


def is_tar_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names WebDataset shards: a ``.tar`` file (optionally ``::EXT``), a glob or
    brace pattern of them, or a directory holding ``.tar`` files and no audio file (and not a Lhotse
    Shar or NeMo tarred dataset, whose manifests say what the tars hold)."""
    text = _strip_extension_choice(source)[0]
    path = Path(text)
    if is_pattern(text):
        return any(p.endswith(ARCHIVE_NAME_ENDINGS) for p in pattern_matches(text, keep_missing=True))
    if path.name.endswith(ARCHIVE_NAME_ENDINGS):
        return path.is_file()
    if not path.is_dir():
        return False
    from speechunits.corpus import _iter_directory
    from speechunits.layouts.manifests import NEMO_TARRED_MANIFEST
    from speechunits.layouts.lhotse_manifests import shar_cut_files

    if shar_cut_files(path) or (path / NEMO_TARRED_MANIFEST).is_file():  # tars, but read through their manifests
        return False
    return next(_iter_directory(path), None) is None and bool(_tars_under(path))


def _tars_under(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / n for n in sorted(filenames) if n.endswith(ARCHIVE_NAME_ENDINGS) and not n.startswith(".")]
    return found


def tar_files(source: str | os.PathLike[str]) -> list[Path]:
    """The shards of ``source`` in reading order.

    Raises:
        SpeechUnitsError: a pattern that matches no ``.tar`` (or names one that is missing), a
            directory without any.
    """
    text = _strip_extension_choice(source)[0]
    if is_pattern(text):
        files = [Path(p) for p in pattern_matches(text, keep_missing=True)]
        missing = [p for p in files if not p.is_file()]
        if missing:
            raise SpeechUnitsError(f"{text}: names {len(missing)} shard(s) that do not exist, e.g. {missing[0]}")
        files = [p for p in files if p.name.endswith(ARCHIVE_NAME_ENDINGS)]
        if not files:
            raise SpeechUnitsError(f"{text}: matches no .tar file")
        return files
    path = Path(text)
    if path.is_file():
        return [path]
    files = _tars_under(path) if path.is_dir() else []
    if not files:
        raise SpeechUnitsError(f"{path}: no .tar shards")
    return files


def _samples(tar: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``(key, {extension: member name})`` of each sample of one shard (consecutive members of one key)."""
    key, group = None, {}
    for name in members(tar):
        parsed = sample_key(name)
        if parsed is None:
            continue
        if parsed[0] != key:
            if key is not None:
                yield key, group
            key, group = parsed[0], {}
        group.setdefault(parsed[1], name)
    if key is not None:
        yield key, group


def _audio_member(tar: Path, key: str, group: dict[str, str], choice: str | None, source: str) -> str | None:
    """The member holding the sample's audio (``None``: the sample has no audio)."""
    if choice is not None:
        return group.get(choice)
    audio = [name for ext, name in group.items() if ext.rsplit(".", 1)[-1] in AUDIO_MEMBER_EXTENSIONS]
    if len(audio) > 1:
        exts = sorted(ext for ext, name in group.items() if name in audio)
        raise SpeechUnitsError(f"{tar}: sample {key!r} has {len(audio)} audio members ({', '.join(audio)}); "
                               f"name the one to read: '{source}::{exts[0]}'")
    return audio[0] if audio else None


def _audio_samples(source: str | os.PathLike[str]) -> Iterator[tuple[Path, str, dict[str, str], str]]:
    """``(shard, key, {extension: member}, audio member)`` of every sample of ``source`` that has audio."""
    text, choice = _strip_extension_choice(source)
    for tar in tar_files(text):
        for key, group in _samples(tar):
            audio = _audio_member(tar, key, group, choice, text)
            if audio is not None:
                yield tar, key, group, audio


def iter_samples(source: str | os.PathLike[str]) -> Iterator[tuple[str, str]]:
    """``(utterance id, audio path)`` of every sample of WebDataset shards ``source`` that has audio
    (samples without an audio member are skipped, as WebDataset's decoders skip them).

    Raises:
        SpeechUnitsError: as :func:`tar_files` and :func:`members`; a sample with several audio
            members and no ``::EXT`` choice; shards in which no sample has audio.
    """
    seen_audio = False
    for tar, key, _, audio in _audio_samples(source):
        seen_audio = True
        yield key, member_path(tar, audio)
    if not seen_audio:
        choice = _strip_extension_choice(source)[1]
        wanted = f"'{choice}'" if choice else "audio (" + ", ".join(AUDIO_MEMBER_EXTENSIONS) + ")"
        raise SpeechUnitsError(f"{source}: no sample has a member with {wanted}")


def _sample_labels(tar: Path, group: dict[str, str]) -> dict[str, str]:
    """The labels one sample's members carry: ``text``, ``speaker``, ``label``."""
    from speechunits.layouts.manifests import SPEAKER_FIELDS
    from speechunits.layouts.hf_datasets import LABEL_COLUMN, TEXT_COLUMNS

    labels: dict[str, str] = {}
    if "json" in group:
        raw = read_member(tar, group["json"])
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SpeechUnitsError(f"{tar}: member {group['json']!r} is not UTF-8 JSON ({exc})") from None
        if isinstance(record, dict):
            for key, names in (("text", TEXT_COLUMNS), ("speaker", SPEAKER_FIELDS), ("label", (LABEL_COLUMN,))):
                value = next((record[n] for n in names if record.get(n) is not None), None)
                if value is not None:
                    labels[key] = " ".join(str(value).split())
    for key, exts in (("text", TEXT_EXTENSIONS), ("label", CLASS_EXTENSIONS)):
        ext = next((e for e in exts if e in group), None)
        if ext is not None:
            try:
                labels[key] = " ".join(read_member(tar, group[ext]).decode("utf-8").split())
            except UnicodeDecodeError:
                raise SpeechUnitsError(f"{tar}: member {group[ext]!r} is not UTF-8 text") from None
    return {k: v for k, v in labels.items() if v}


def iter_sample_labels(source: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """``(utterance id, labels)`` of every sample with audio (see :func:`_sample_labels`)."""
    for tar, key, group, _ in _audio_samples(source):
        yield key, _sample_labels(tar, group)


def label_keys(source: str | os.PathLike[str]) -> set[str]:
    """The labels (``text``, ``speaker``, ``label``) the first sample of ``source`` carries."""
    for _, labels in iter_sample_labels(source):
        return set(labels)
    return set()


def read_labels(source: str | os.PathLike[str], key: str) -> dict[str, str]:
    """``{utterance id: value}`` of label ``key`` (``text``, ``speaker`` or ``label``) over the shards.

    Raises:
        SpeechUnitsError: as :func:`iter_samples`; a key twice; no sample with ``key``.
    """
    member = ".txt" if key == "text" else ".cls" if key == "label" else ".json"
    return collect_label(iter_sample_labels(source), key, source=source, what="sample",
                         missing=f"{source}: no sample carries a {key} (a .json field, or a {member} member)")


def split_parts(source: str | os.PathLike[str]) -> dict[str, str] | None:
    """``{utterance id: "train" | "dev" | "test"}`` when ``source``'s shards are a dataset's train,
    validation and test splits (a pattern over ``train-000000.tar``, ``validation-000000.tar`` ...,
    or over split folders ``train/``, ``dev/``, ``test/``), else ``None``: the split a probe takes
    unasked, as the dataset's authors drew it."""
    from speechunits.sources import part_of_name

    if not is_tar_source(source):
        return None
    try:
        files = tar_files(_strip_extension_choice(source)[0])
    except SpeechUnitsError:
        return None
    part_of_file = {}
    for tar in files:  # the shard's name (its number is no word), else its folder's
        part_of_file[tar] = part_of_name(tar.stem) or part_of_name(tar.parent.name)
    if None in part_of_file.values() or set(part_of_file.values()) != {"train", "dev", "test"}:
        return None
    return {key: str(part_of_file[tar]) for tar, key, _, _ in _audio_samples(source)}
