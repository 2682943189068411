"""Resumable features: frames kept in parts closed at N utterances or T seconds, joined at the end.

While ``speechunits features`` runs, finished utterances go to ``OUT/.parts/`` (hidden, so
readers of ``OUT`` never see it)::

    .parts/data-{i}of{n}-{token}.L{layer}.f32         raw float32 frames of one part, per layer
    .parts/.data-....f32.{pid}.tmp                     the open part (renamed when it closes)
    .parts/index-{i:05d}of{n:05d}-{seq:06d}.parquet    where each kept utterance is: id, path,
                                                       num_samples, frames, part token, frame offset
    .parts/.speechunits.json                           the settings (encoder identity, layers, dim, dtype)

A part closes when it holds ``rows_per_part`` utterances or ``shard_seconds`` have passed since
the last one (the rule and the atomic, resumable index shards are
:class:`~speechunits.units.parquet_dir.ShardWriter`'s; the data files are renamed into place
first, the index shard naming them is published last, so an utterance is kept iff an index
shard names it). Memory stays flat: frames stream to the open part's files on disk.

A killed run loses the open part (at most about ``shard_seconds`` of finished work). The next
run with the same settings skips every kept utterance; at the end :meth:`FeatureParts.finish`
writes the fairseq layout (``layer{L}.npy``/``.len``, ``manifest.tsv``, ``errors.jsonl``,
``features.json`` last) in corpus order and removes ``.parts``. A complete directory
(``features.json`` present) of the same settings is itself a source of kept utterances, so a
rerun of a finished run computes nothing, and one after fixing bad files computes only those.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa

from speechunits.corpus import Utterance
from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.features.io import META_NAME, FeaturesWriter, read_features_meta
from speechunits.units.parquet_dir import (
    DEFAULT_ROWS_PER_FILE,
    ShardWriter,
    iter_record_batches,
    process_alive,
    shard_files,
)

log = logging.getLogger(__name__)

PARTS_DIR = ".parts"
PARTS_KIND = "features-parts"
#: Settings that must agree between a run and the parts (or complete directory) it resumes.
MATCH_KEYS = ("kind", "encoder_identity", "layers", "dim", "dtype", "settings")
INDEX_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False), pa.field("path", pa.string(), nullable=False),
    pa.field("num_samples", pa.int64(), nullable=False), pa.field("frames", pa.int64(), nullable=False),
    pa.field("part", pa.string(), nullable=False), pa.field("offset", pa.int64(), nullable=False),
])
_DATA_RE = re.compile(r"^data-(?P<stem>\d+of\d+)-(?P<token>[0-9a-f]+)\.L(?P<layer>\d+)\.f32$")
_TEMP_RE = re.compile(r"^\.data-(?P<stem>\d+of\d+)-[0-9a-f]+\.L\d+\.f32\.(?P<pid>\d+)\.tmp$")


class _PartIndex(ShardWriter):
    """The parts' index: a :class:`ShardWriter` whose every flush first closes the data part its
    buffered rows point at (``before_flush``)."""

    def __init__(self, *args: Any, before_flush: Callable[[], None], **kwargs: Any):
        self._before_flush = before_flush
        super().__init__(*args, **kwargs)

    def flush(self) -> None:
        self._before_flush()
        super().flush()


def parts_meta(info: EncoderInfo, layers: list[int], dtype: str, settings: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Settings of a features run that a resumed run must share (``settings``: other options that
    change the frames, e.g. the channel or the chunking)."""
    return {"kind": PARTS_KIND, "encoder": info.name, "encoder_identity": info.identity, "layers": list(layers),
            "dim": int(info.dim), "dtype": dtype, "settings": dict(settings or {})}



class FeatureParts:
    """The resumable writer of one features directory (see the module docstring).

    Args:
        out_dir: the features directory.
        info: the encoder's facts; ``layers``: the layers extracted; ``dtype``: its precision.
        settings: other options that change the frames (channel, chunking); recorded in
            ``features.json`` and compared on resume.
        rows_per_part: utterances per part at most.
        shard_seconds: a part also closes this long after the last one (``None``: rows only).
        job: ``(i, n)`` naming this writer's files.
        clock: monotonic seconds (tests).

    :meth:`kept` tells which utterances of the corpus are kept already (parts and a complete
    directory), :meth:`add` keeps more, :meth:`finish` writes the directory.
    Thread-safe: :meth:`flush_if_due` may run in a :class:`~speechunits.timed_parts.TimedFlusher`.
    """

    def __init__(self, out_dir: str | os.PathLike[str], info: EncoderInfo, layers: list[int], dtype: str, *,
                 settings: dict[str, Any] | None = None, rows_per_part: int = DEFAULT_ROWS_PER_FILE,
                 shard_seconds: float | None = None,
                 job: tuple[int, int] = (0, 1), clock: Callable[[], float] = time.monotonic):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise SpeechUnitsError(f"{self.out_dir}: exists and is not a directory")
        self.info, self.layers, self.dtype = info, list(layers), dtype
        self.meta = parts_meta(info, self.layers, dtype, settings)
        self.parts_dir = self.out_dir / PARTS_DIR
        self._stem = f"{job[0]:05d}of{job[1]:05d}"
        self._lock = threading.RLock()
        self._complete = self._complete_dir()  # id -> path of a complete directory's utterances
        self._reuse: set[str] = set()  # those of them this run keeps (see kept())
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self._remove_dead_temps()
        self._index = _PartIndex(self.parts_dir, INDEX_SCHEMA, self.meta, match_keys=MATCH_KEYS, job=job,
                                 prefix="index", rows_per_file=rows_per_part, max_seconds=shard_seconds,
                                 clock=clock, before_flush=self._close_data)
        self._remove_orphans()
        self._kept_paths = {row["id"]: _norm(row["path"]) for row in self._index_rows()}
        self._data: dict[int, Any] | None = None  # layer -> open temp file of the current part
        self._token = ""
        self._offset = 0
        self.parts_written = 0

    @property
    def shard_seconds(self) -> float | None:
        """The time bound of a part (``None``: by rows only)."""
        return self._index.max_seconds

    # -- start-up --------------------------------------------------------------------------------
    def _complete_dir(self) -> dict[str, str]:
        """``{id: path}`` of a complete features directory of the same settings at ``out_dir``
        (else {}: one of other settings is replaced when this run finishes, as it always was)."""
        if not (self.out_dir / META_NAME).is_file():
            return {}
        meta = read_features_meta(self.out_dir)
        found = {**meta, "kind": PARTS_KIND}
        if any(found.get(key) != self.meta.get(key) for key in MATCH_KEYS):
            log.info("%s: holds features of other settings; they are replaced when this run finishes", self.out_dir)
            return {}
        lines = (self.out_dir / "manifest.tsv").read_text(encoding="utf-8").splitlines()
        paths = [_norm(os.path.join(lines[0], line.split("\t")[0])) for line in lines[1:] if line]
        ids = [str(x) for x in meta["ids"]]
        if len(paths) != len(ids):
            raise SpeechUnitsError(f"{self.out_dir}: {len(ids)} ids in {META_NAME} but {len(paths)} manifest lines")
        return dict(zip(ids, paths))

    def kept(self, corpus: Iterable[Utterance]) -> set[str]:
        """Ids of the utterances of ``corpus`` kept already: in the parts, or in a complete directory
        at the same audio path (a directory of another corpus is not reused for a same-named file).

        Raises:
            SpeechUnitsError: the parts keep an id of ``corpus`` from another audio file (the
                parts belong to another corpus).
        """
        done: set[str] = set()
        with self._lock:
            for utt in corpus:
                path = _norm(utt.path)
                if utt.id in self._kept_paths:
                    if self._kept_paths[utt.id] != path:
                        raise SpeechUnitsError(f"{self.parts_dir}: keeps {utt.id!r} from {self._kept_paths[utt.id]}, "
                                               f"but this corpus has it at {path}; finish the run of that corpus "
                                               "or delete the parts")
                    done.add(utt.id)
                elif self._complete.get(utt.id) == path:
                    done.add(utt.id)
                    self._reuse.add(utt.id)
        return done

    def _remove_dead_temps(self) -> None:
        for path in self.parts_dir.iterdir():
            match = _TEMP_RE.match(path.name)
            if match and match["stem"] == self._stem and not (int(match["pid"]) != os.getpid()
                                                               and process_alive(int(match["pid"]))):
                log.warning("%s: removing the open part of a killed run", path)
                path.unlink(missing_ok=True)

    def _remove_orphans(self) -> None:
        """Data files of this job that no index row names (a run killed between the two renames)."""
        named = {row["part"] for row in self._index_rows()}
        for path in self.parts_dir.iterdir():
            match = _DATA_RE.match(path.name)
            if match and match["stem"] == self._stem and match["token"] not in named:
                log.warning("%s: removing a part no index names (a run killed while closing it)", path)
                path.unlink(missing_ok=True)

    def _index_rows(self) -> Iterable[dict[str, Any]]:
        for _, batch in iter_record_batches(shard_files(self.parts_dir)):
            yield from batch.to_pylist()

    # -- writing ---------------------------------------------------------------------------------
    def _data_name(self, layer: int, token: str) -> str:
        return f"data-{self._stem}-{token}.L{layer}.f32"

    def _open_data(self) -> None:
        self._token = uuid.uuid4().hex[:16]
        self._offset = 0
        self._data = {layer: open(self.parts_dir / f".{self._data_name(layer, self._token)}.{os.getpid()}.tmp", "wb")
                      for layer in self.layers}

    def _close_data(self) -> None:
        """Make the open part's data files final (called by the index before it writes its shard)."""
        with self._lock:
            if self._data is None:
                return
            for layer, handle in self._data.items():
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                os.replace(handle.name, self.parts_dir / self._data_name(layer, self._token))
            self._data = None
            self.parts_written += 1

    def add(self, utt: Utterance, num_samples: int, features: dict[int, np.ndarray]) -> None:
        """Keep one utterance's ``{layer: float32 [frames, D]}`` (all layers the same frame count)."""
        counts = {int(feats.shape[0]) for feats in features.values()}
        if len(counts) != 1:
            raise ValueError(f"{utt.id}: layers have different frame counts {sorted(counts)}")
        frames = counts.pop()
        with self._lock:
            if utt.id in self._kept_paths or utt.id in self._reuse:
                raise SpeechUnitsError(f"{self.out_dir}: {utt.id!r} is already kept")
            if self._data is None:
                self._open_data()
            assert self._data is not None
            for layer in self.layers:
                feats = np.ascontiguousarray(features[layer], dtype="<f4")
                if feats.ndim != 2 or feats.shape[1] != self.info.dim:
                    raise ValueError(f"{utt.id}: layer {layer} features have shape {feats.shape}, "
                                     f"expected [F, {self.info.dim}]")
                self._data[layer].write(feats.tobytes())
            row = {"id": utt.id, "path": utt.path, "num_samples": int(num_samples), "frames": frames,
                   "part": self._token, "offset": self._offset}
            self._offset += frames
            self._kept_paths[utt.id] = _norm(utt.path)
            self._index.add(row)

    def flush_if_due(self) -> bool:
        """Close the open part if ``shard_seconds`` passed since the last one (thread-safe)."""
        with self._lock:
            return self._index.flush_if_due()

    def close(self) -> None:
        """Close the open part (its utterances are complete: worth keeping, also after an error)."""
        with self._lock:
            self._index.close()

    # -- the end ---------------------------------------------------------------------------------
    def finish(self, corpus: Iterable[Utterance], errors: list[dict[str, str]],
               extra_meta: dict[str, Any] | None = None) -> Path:
        """Write the features directory of the kept utterances of ``corpus``, in its order, with
        ``errors`` as ``errors.jsonl``; then remove the parts. Returns ``out_dir``."""
        self.close()
        rows = {row["id"]: row for row in self._index_rows()}
        order = [utt for utt in corpus if utt.id in rows or utt.id in self._reuse]
        if self._complete and not rows and [u.id for u in order] == list(self._complete):  # nothing new
            self._rewrite_meta(errors, extra_meta)
        else:
            self._assemble(order, rows, errors, extra_meta)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.out_dir

    def _assemble(self, order: list[Utterance], rows: dict[str, dict[str, Any]], errors: list[dict[str, str]],
                  extra_meta: dict[str, Any] | None) -> None:
        dim = self.info.dim
        data: dict[tuple[str, int], np.ndarray] = {}

        def part(token: str, layer: int) -> np.ndarray:
            key = (token, layer)
            if key not in data:
                path = self.parts_dir / self._data_name(layer, token)
                size = path.stat().st_size // (4 * dim)
                data[key] = (np.memmap(path, dtype="<f4", mode="r", shape=(size, dim)) if size
                             else np.empty((0, dim), dtype="<f4"))
            return data[key]

        complete = _CompleteDir(self.out_dir, self.layers) if self._complete else None
        writer = FeaturesWriter(self.out_dir, self.info, self.layers)
        try:
            for utt in order:
                row = rows.get(utt.id)
                if row is not None:
                    start, stop = int(row["offset"]), int(row["offset"]) + int(row["frames"])
                    feats = {layer: part(row["part"], layer)[start:stop] for layer in self.layers}
                    writer.add(utt.id, utt.path, int(row["num_samples"]), feats)
                else:
                    assert complete is not None
                    writer.add(utt.id, utt.path, complete.num_samples[utt.id], complete.features(utt.id))
            for record in errors:
                writer.add_error(record["id"], record["path"], record["reason"])
        except BaseException:
            writer.abort()
            raise
        writer.close({**(extra_meta or {}), "dtype": self.dtype, "settings": self.meta["settings"]})

    def _rewrite_meta(self, errors: list[dict[str, str]], extra_meta: dict[str, Any] | None) -> None:
        """A rerun that kept nothing new: the arrays stay, errors and metadata are this run's."""
        meta = read_features_meta(self.out_dir)
        meta.update(extra_meta or {})
        meta["dtype"], meta["settings"] = self.dtype, self.meta["settings"]
        meta["num_errors"] = len(errors)
        meta["ids"] = meta.pop("ids")  # last, as FeaturesWriter writes it
        tmp = self.out_dir / "errors.jsonl.partial"
        tmp.write_text("".join(json.dumps(record) + "\n" for record in errors), encoding="utf-8")
        os.replace(tmp, self.out_dir / "errors.jsonl")
        tmp = self.out_dir / (META_NAME + ".partial")
        tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.out_dir / META_NAME)


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


class _CompleteDir:
    """The arrays of a complete features directory, memory-mapped, by utterance id."""

    def __init__(self, root: Path, layers: list[int]):
        meta = read_features_meta(root)
        ids = [str(x) for x in meta["ids"]]
        self.arrays = {layer: np.load(root / f"layer{layer}.npy", mmap_mode="r") for layer in layers}
        counts = [int(x) for x in (root / f"layer{layers[0]}.len").read_text(encoding="utf-8").split()]
        if len(counts) != len(ids):
            raise SpeechUnitsError(f"{root}: {len(ids)} ids but {len(counts)} lengths")
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.spans = {utt: (int(starts[i]), int(starts[i + 1])) for i, utt in enumerate(ids)}
        lines = (root / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
        self.num_samples = {utt: int(line.split("\t")[1]) for utt, line in zip(ids, lines)}

    def features(self, utt_id: str) -> dict[int, np.ndarray]:
        start, stop = self.spans[utt_id]
        return {layer: array[start:stop] for layer, array in self.arrays.items()}
