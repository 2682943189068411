"""The features directory: fairseq ``layer{L}.npy`` + ``layer{L}.len``, manifest, errors, metadata.

Layout (written by ``speechunits features``)::

    layer{L}.npy    float32 [total_frames, D], utterances concatenated in manifest order
    layer{L}.len    frames per utterance, one integer per line
    manifest.tsv    fairseq manifest of what was extracted (root line, then relpath<TAB>num_samples)
    errors.jsonl    {"id", "path", "reason"} per skipped utterance
    features.json   encoder, identity, layers, dim, rates, ids - written last

Everything is first written under temporary names and renamed by :meth:`FeaturesWriter.close`,
``features.json`` last, so a directory with ``features.json`` is always complete. While
``speechunits features`` runs, finished utterances are kept in ``.parts/`` so that a killed run
resumes (:mod:`speechunits.features.parts`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object, read_text_file

META_NAME = "features.json"
FORMAT_VERSION = 1
_TMP = ".partial"


class FeaturesWriter:
    """Streams utterance features into a features directory.

    ``.npy`` files are written with a placeholder header that :meth:`close` rewrites with the
    final frame count, so memory stays flat however large the corpus.
    """

    def __init__(self, out_dir: str | os.PathLike[str], info: EncoderInfo, layers: list[int],
                 root: str | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.info, self.layers = info, list(layers)
        self.root = root
        self.ids: list[str] = []
        self.paths: list[str] = []
        self.num_samples: list[int] = []
        self.errors: list[dict[str, str]] = []
        self._frames = 0
        self._npy = {layer: open(self._tmp(f"layer{layer}.npy"), "wb") for layer in self.layers}
        self._len = {layer: open(self._tmp(f"layer{layer}.len"), "w", encoding="utf-8") for layer in self.layers}
        self._header_size = len(self._header(0))
        for handle in self._npy.values():
            handle.write(self._header(0))

    def _tmp(self, name: str) -> Path:
        return self.out_dir / (name + _TMP)

    def _header(self, frames: int) -> bytes:
        """A .npy v1 header for float32 ``[frames, dim]``, padded to a fixed width (64 bytes multiple)."""
        header = {"descr": "<f4", "fortran_order": False, "shape": (frames, self.info.dim)}
        text = repr(header).encode("latin1")
        width = 128  # enough for any frame count
        prefix = b"\x93NUMPY\x01\x00"
        body = text + b" " * (width - len(prefix) - 2 - len(text) - 1) + b"\n"
        return prefix + len(body).to_bytes(2, "little") + body

    def add(self, utt_id: str, path: str, num_samples: int, features: dict[int, np.ndarray]) -> None:
        """Append one utterance's ``{layer: [frames, D]}`` (all layers must have the same frame count)."""
        counts = {feats.shape[0] for feats in features.values()}
        if len(counts) != 1:
            raise ValueError(f"{utt_id}: layers have different frame counts {sorted(counts)}")
        for layer in self.layers:
            feats = np.ascontiguousarray(features[layer], dtype="<f4")
            if feats.ndim != 2 or feats.shape[1] != self.info.dim:
                raise ValueError(f"{utt_id}: layer {layer} features have shape {feats.shape}, expected [F, {self.info.dim}]")
            self._npy[layer].write(feats.tobytes())
            self._len[layer].write(f"{feats.shape[0]}\n")
        self._frames += counts.pop()
        self.ids.append(utt_id)
        self.paths.append(path)
        self.num_samples.append(num_samples)

    def add_error(self, utt_id: str, path: str, reason: str) -> None:
        self.errors.append({"id": utt_id, "path": path, "reason": reason})

    def close(self, extra_meta: dict[str, Any] | None = None) -> Path:
        """Finish headers, write manifest/errors, rename everything into place, ``features.json`` last
        (an earlier ``features.json`` is removed before the first rename: until this call, a
        complete directory already there stays complete and readable)."""
        for layer, handle in self._npy.items():
            handle.seek(0)
            handle.write(self._header(self._frames))
            handle.close()
            self._len[layer].close()
        root = self.root or _common_root(self.paths)
        with open(self._tmp("manifest.tsv"), "w", encoding="utf-8") as handle:
            handle.write(f"{root}\n")
            for path, count in zip(self.paths, self.num_samples):
                handle.write(f"{os.path.relpath(path, root)}\t{count}\n")
        with open(self._tmp("errors.jsonl"), "w", encoding="utf-8") as handle:
            for record in self.errors:
                handle.write(json.dumps(record) + "\n")
        names = [f"layer{layer}.npy" for layer in self.layers] + [f"layer{layer}.len" for layer in self.layers]
        (self.out_dir / META_NAME).unlink(missing_ok=True)
        for name in names + ["manifest.tsv", "errors.jsonl"]:
            os.replace(self._tmp(name), self.out_dir / name)
        meta = {
            "format_version": FORMAT_VERSION,
            "encoder": self.info.name,
            "encoder_identity": self.info.identity,
            "layers": self.layers,
            "dim": self.info.dim,
            "sample_rate": self.info.sample_rate,
            "frame_rate": self.info.frame_rate,
            "hop_length": self.info.hop_length,
            "receptive_field": self.info.receptive_field,
            "frame_offset_s": self.info.frame_offset_s,
            "num_utterances": len(self.ids),
            "num_frames": self._frames,
            "num_errors": len(self.errors),
            **(extra_meta or {}),
            "ids": self.ids,
        }
        tmp_meta = self._tmp(META_NAME)
        tmp_meta.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp_meta, self.out_dir / META_NAME)
        return self.out_dir

    def abort(self) -> None:
        """Close and delete the temporary files (nothing that looks complete is left)."""
        for handle in list(self._npy.values()) + list(self._len.values()):
            handle.close()
        for path in self.out_dir.glob("*" + _TMP):
            path.unlink(missing_ok=True)


def _common_root(paths: list[str]) -> str:
    if not paths:
        return os.getcwd()
    dirs = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return os.path.commonpath(dirs)


def read_features_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``features.json`` of a complete features directory."""
    return read_json_object(Path(path) / META_NAME,
                            missing=f"{path}: not a complete features directory (no {META_NAME})")


def read_features_dir(path: str | os.PathLike[str], layer: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt_id, float32 [frames, D])`` in manifest order, memory-mapped.

    ``layer`` may be omitted when the directory holds a single layer. Ids come from
    ``features.json`` when present, else from the fairseq ``manifest.tsv`` (relative path
    without extension), so plain fairseq feature dumps (``.npy`` + ``.len``) are read too.
    """
    root = Path(path)
    if layer is None:
        found = sorted(int(p.stem[len("layer"):]) for p in root.glob("layer*.npy") if p.stem[len("layer"):].isdigit())
        if len(found) != 1:
            raise SpeechUnitsError(f"{path}: pass a layer (found layers {found})")
        layer = found[0]
    npy, lens = root / f"layer{layer}.npy", root / f"layer{layer}.len"
    if not npy.is_file() or not lens.is_file():
        raise SpeechUnitsError(f"{path}: no features for layer {layer} ({npy.name}/{lens.name} missing)")
    try:
        counts = [int(line) for line in read_text_file(lens).split()]
    except ValueError:
        raise SpeechUnitsError(f"{lens}: expected one frame count (an integer) per line") from None
    ids = _read_ids(root, len(counts))
    try:
        data = np.load(npy, mmap_mode="r")
    except (OSError, ValueError) as exc:  # truncated, not .npy, or pickled objects (never loaded)
        raise SpeechUnitsError(f"{npy}: unreadable as a float .npy array ({exc})") from None
    if data.ndim != 2 or data.shape[0] != sum(counts):
        raise SpeechUnitsError(f"{npy}: shape {data.shape} does not match {lens.name} (total {sum(counts)} frames)")
    offset = 0
    for utt_id, count in zip(ids, counts):
        yield utt_id, data[offset: offset + count]
        offset += count


def _read_ids(root: Path, expected: int) -> list[str]:
    meta_path = root / META_NAME
    if meta_path.is_file():
        ids = read_json_object(meta_path).get("ids")
        if not isinstance(ids, list):
            raise SpeechUnitsError(f"{meta_path}: no 'ids' list")
    elif (root / "manifest.tsv").is_file():
        lines = read_text_file(root / "manifest.tsv").splitlines()[1:]
        ids = [os.path.splitext(line.split("\t")[0])[0] for line in lines if line]
    else:
        ids = [str(i) for i in range(expected)]
    if len(ids) != expected:
        raise SpeechUnitsError(f"{root}: {len(ids)} ids but {expected} lengths")
    return ids
