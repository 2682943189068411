"""Lhotse manifests (k2/icefall's and NeMo's data format) as corpora and label sources.

Read without the ``lhotse`` package, from the JSON-lines files it writes (``.jsonl`` or
``.jsonl.gz``), whichever of its three manifests is given:

* a **CutSet** (``cuts.jsonl.gz``): each ``MonoCut`` is an utterance, the stretch ``[start,
  start + duration)`` of its recording; its supervisions give the transcript (their texts joined)
  and the speaker (the first one's);
* a **SupervisionSet** (``supervisions.jsonl.gz``): each supervision is an utterance, a stretch of
  the recording the **RecordingSet** beside it lists (the same name with ``supervisions`` →
  ``recordings``);
* a **RecordingSet** alone: each recording is an utterance, the whole file.

A **Lhotse Shar** directory (``cuts.000000.jsonl.gz`` ... with ``recording.000000.tar`` ... beside
them, as ``CutSet.to_shar`` writes it; or one of its ``cuts`` files) is a CutSet whose audio lies
in the tar of the same shard, one member ``CUT_ID.EXT`` per cut (:mod:`speechunits.layouts.tar_shards`).

Stretches shorter than their recording are time ranges (:mod:`speechunits.spans`), read by
seeking in the file. Ids are the manifest's. Recordings whose audio is not a local file (URLs,
shell commands, in-memory audio) and cuts of multi-channel recordings are refused by name.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

from speechunits.errors import SpeechUnitsError
from speechunits.layouts import collect_label

#: A stretch this close to its recording's length is the whole recording.
_WHOLE_TOLERANCE_S = 1e-3
#: A Lhotse Shar shard's cuts file, and the name of the archive holding its recordings.
_SHAR_CUTS = re.compile(r"^cuts\.(?P<shard>\d+)\.jsonl(?:\.gz)?$")
_SHAR_RECORDINGS = "recording.{shard}.tar"


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_no, object)`` of a JSON-lines file, gzip-compressed or not."""
    from speechunits.files import iter_jsonl_objects

    return iter_jsonl_objects(path, "Lhotse manifest")


def shar_cut_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``cuts.NNNNNN.jsonl[.gz]`` files of a Lhotse Shar directory in shard order (``[]``: not one)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _SHAR_CUTS.match(p.name)]
    return sorted(found, key=lambda p: int(_SHAR_CUTS.match(p.name)["shard"]))


def _shar_archive(cuts_file: Path, where: str) -> Path:
    """The ``recording.NNNNNN.tar`` of the Shar shard whose cuts are ``cuts_file``."""
    hit = _SHAR_CUTS.match(cuts_file.name)
    archive = cuts_file.with_name(_SHAR_RECORDINGS.format(shard=hit["shard"])) if hit else None
    if archive is None or not archive.is_file():
        expected = archive.name if archive is not None else "recording.NNNNNN.tar beside cuts.NNNNNN.jsonl.gz"
        raise SpeechUnitsError(f"{where}: a Lhotse Shar cut; its audio is read from {expected}, which is missing "
                               "(was the Shar written with fields={'recording': ...}?)")
    return archive


def manifest_kind(path: str | os.PathLike[str]) -> str | None:
    """``"cuts"``, ``"supervisions"`` or ``"recordings"`` for a Lhotse manifest (by its first record),
    ``"shar"`` for a Lhotse Shar directory, else ``None``."""
    path = Path(path)
    if shar_cut_files(path):
        return "shar"
    if not path.is_file() or not (path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz"))):
        return None
    try:
        first = next(_records(path), None)
    except SpeechUnitsError:
        return None
    if first is None:
        return None
    record = first[1]
    if "recording" in record and "start" in record and "duration" in record:
        return "cuts"
    if {"recording_id", "start", "duration"} <= set(record) and "sources" not in record:
        return "supervisions"
    if {"sources", "sampling_rate", "num_samples"} <= set(record):
        return "recordings"
    return None


def _audio_file(recording: dict[str, Any], where: str, manifest: Path, cut_id: str) -> str:
    """The local file of a recording (a single ``file`` source of all its channels), or for a Shar
    cut (``shar`` source) its member ``cut_id.EXT`` of the shard's recording archive."""
    from speechunits.layouts.tar_shards import AUDIO_MEMBER_EXTENSIONS, member_path, members

    sources = recording.get("sources") or []
    if len(sources) != 1 or not isinstance(sources[0], dict):
        raise SpeechUnitsError(f"{where}: recording {recording.get('id')!r} has {len(sources)} sources (one file per "
                               "channel?); speechunits reads recordings stored as one file")
    kind, source = sources[0].get("type"), sources[0].get("source")
    if kind == "shar":
        archive = _shar_archive(manifest, where)
        index = members(archive)
        name = next((f"{cut_id}.{ext}" for ext in AUDIO_MEMBER_EXTENSIONS if f"{cut_id}.{ext}" in index), None)
        if name is None:
            raise SpeechUnitsError(f"{where}: cut {cut_id!r} has no audio member in {archive}")
        return member_path(archive, name)
    if kind != "file" or not isinstance(source, str):
        raise SpeechUnitsError(f"{where}: recording {recording.get('id')!r} is a {kind!r} source; speechunits reads "
                               "local files (save the audio to files first, e.g. cuts.save_audios(...))")
    path = Path(source)
    return str(path if path.is_absolute() or path.exists() else manifest.parent / path)


def _channels(recording: dict[str, Any]) -> int:
    return len(recording.get("channel_ids") or [0])


def _stretch(file: str, start: float, duration: float, total: float | None) -> str:
    from speechunits.spans import span_path

    if start <= _WHOLE_TOLERANCE_S and (total is None or abs(duration - total) <= _WHOLE_TOLERANCE_S):
        return file
    return span_path(file, start, start + duration)


def _recordings(path: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for line_no, record in _records(path):
        if "id" not in record:
            raise SpeechUnitsError(f"{path}:{line_no}: a recording without 'id'")
        found[str(record["id"])] = record
    return found


def recordings_beside(supervisions: Path) -> Path:
    """The RecordingSet that goes with a SupervisionSet (``supervisions`` → ``recordings`` in its name).

    Raises:
        SpeechUnitsError: no such file.
    """
    name = supervisions.name.replace("supervisions", "recordings")
    candidate = supervisions.with_name(name)
    if name == supervisions.name or not candidate.is_file():
        raise SpeechUnitsError(f"{supervisions}: a Lhotse SupervisionSet needs its RecordingSet beside it "
                               f"({candidate.name}), or give the CutSet")
    return candidate


def iter_entries(path: str | os.PathLike[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(utterance id, audio path, labels)`` of every entry of a Lhotse manifest; ``labels`` holds
    ``text`` and ``speaker`` where the manifest gives them.

    Raises:
        SpeechUnitsError: not a Lhotse manifest, an entry without id, a supervision of a recording
            the RecordingSet lacks, a non-file or multi-file source, a multi-channel cut.
    """
    path = Path(path)
    kind = manifest_kind(path)
    if kind is None:
        raise SpeechUnitsError(f"{path}: not a Lhotse CutSet, SupervisionSet or RecordingSet")
    entries = _iter_kind(path, kind)
    while True:
        try:
            entry = next(entries)
        except StopIteration:
            return
        except (KeyError, TypeError, ValueError) as exc:  # a field missing or of the wrong type
            raise SpeechUnitsError(f"{path}: an entry lacks a field or has one of the wrong type ({exc!r})") from None
        yield entry


def _iter_kind(path: Path, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    if kind == "shar":
        for cuts in shar_cut_files(path):
            yield from _iter_kind(cuts, "cuts")
        return
    if kind == "recordings":
        for line_no, record in _records(path):
            yield str(record["id"]), _audio_file(record, f"{path}:{line_no}", path, str(record["id"])), {}
        return
    if kind == "supervisions":
        recordings_path = recordings_beside(path)
        recordings = _recordings(recordings_path)
        for line_no, sup in _records(path):
            recording = recordings.get(str(sup["recording_id"]))
            if recording is None:
                raise SpeechUnitsError(f"{path}:{line_no}: recording {sup['recording_id']!r} is not in {recordings_path}")
            yield _entry(f"{path}:{line_no}", path, recording, sup, [sup])
        return
    for line_no, cut in _records(path):
        if cut.get("type", "MonoCut") != "MonoCut":
            raise SpeechUnitsError(f"{path}:{line_no}: a {cut.get('type')} (speechunits reads MonoCuts: one stretch "
                                   "of one recording); cut.to_mono() or save the mixed audio first")
        recording = cut.get("recording")
        if not isinstance(recording, dict):
            raise SpeechUnitsError(f"{path}:{line_no}: cut {cut.get('id')!r} has no recording (features only?); "
                                   "speechunits reads audio")
        yield _entry(f"{path}:{line_no}", path, recording, cut, cut.get("supervisions") or [])


def _entry(where: str, manifest: Path, recording: dict[str, Any], stretch: dict[str, Any],
           supervisions: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    """``(id, audio path, labels)`` of a cut or supervision (``stretch``: its ``id``, ``start``,
    ``duration`` and ``channel``) of ``recording``, listed in ``manifest``."""
    _refuse_channels(recording, where, stretch.get("channel"))
    file = _audio_file(recording, where, manifest, str(stretch["id"]))
    audio = _stretch(file, float(stretch["start"]), float(stretch["duration"]), recording.get("duration"))
    return str(stretch["id"]), audio, _labels(supervisions)


def _refuse_channels(recording: dict[str, Any], where: str, channel: Any) -> None:
    if _channels(recording) > 1:
        raise SpeechUnitsError(f"{where}: recording {recording.get('id')!r} has {_channels(recording)} channels "
                               f"(this entry uses channel {channel}); speechunits reads one stream per file: "
                               "save the channel's audio first")


def _labels(supervisions: list[dict[str, Any]]) -> dict[str, Any]:
    texts = [s["text"] for s in supervisions if isinstance(s.get("text"), str) and s["text"].strip()]
    speakers = [s["speaker"] for s in supervisions if s.get("speaker") is not None]
    labels: dict[str, Any] = {}
    if texts:
        labels["text"] = " ".join(" ".join(t.split()) for t in texts)
    if speakers:
        labels["speaker"] = str(speakers[0])
    return labels


def label_keys(path: str | os.PathLike[str]) -> set[str]:
    """The labels (``text``, ``speaker``) the first entry of a Lhotse manifest carries."""
    for _, _, labels in iter_entries(path):
        return set(labels)
    return set()


def read_labels(path: str | os.PathLike[str], key: str) -> dict[str, str]:
    """``{utterance id: value}`` of ``key`` (``text`` or ``speaker``) over a Lhotse manifest.

    Raises:
        SpeechUnitsError: as :func:`iter_entries`; an id twice; no entry with ``key``.
    """
    return collect_label(((utt, labels) for utt, _, labels in iter_entries(path)), key, source=path,
                         what="utterance", missing=f"{path}: no entry has a {key}")
