"""Unit text formats: export a unit store to the field's text files and import them back.

Every export writes into a directory ``OUT`` (``NAME`` defaults to ``units``):

============  ==========================================  =========================================
format        files                                       durations
============  ==========================================  =========================================
fairseq       ``NAME.km`` (frame-level ids, one line per   implicit: always frame-level (a deduped
              utterance), ``NAME.ids``, ``dict.km.txt``    store is expanded; import ``--dedup``)
gslm          ``NAME.txt``: ``id|u1 u2 ...``               not carried by the format; a deduped
                                                           store adds ``NAME.dur.txt`` (``id|d1 d2``)
textless      ``NAME.units``, ``NAME.durations`` (deduped  carried (``NAME.durations``)
              only), ``NAME.ids``
kaldi         ``NAME.text``: ``uttid u1 u2 ...``           not carried; a deduped store adds
                                                           ``NAME.dur.text`` (``uttid d1 d2``)
============  ==========================================  =========================================

Each export also writes ``speechunits.json`` (the store metadata: codebook JSON, sha256, dedup
flag) and ``utt2dur`` (Kaldi style ``id seconds``, exact float repr), so importing the directory
back gives the identical store. Without ``speechunits.json`` (text from another tool) the
codebook metadata must be given (``--codebook``).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object, read_text_file, write_lines
from speechunits.units.store import UnitStore, store_meta, write_units
from speechunits.units.units import Units

log = logging.getLogger(__name__)

FORMATS = ("fairseq", "gslm", "textless", "kaldi")
META_FILE = "speechunits.json"
UTT2DUR = "utt2dur"


@dataclass(frozen=True)
class _Layout:
    """File names (suffixes after NAME) of a format."""

    units: str
    durations: str | None  # None: the format has no durations (fairseq: frame-level)
    ids: str | None  # separate id list (None: ids are on the unit lines)
    separator: str | None  # between id and units on a line (None: no id on the line)


_LAYOUTS = {
    "fairseq": _Layout(".km", None, ".ids", None),
    "gslm": _Layout(".txt", ".dur.txt", None, "|"),
    "textless": _Layout(".units", ".durations", ".ids", None),
    "kaldi": _Layout(".text", ".dur.text", None, " "),
}


def _check_format(fmt: str) -> _Layout:
    if fmt not in _LAYOUTS:
        raise SpeechUnitsError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return _LAYOUTS[fmt]


def _check_id(utt_id: str, fmt: str) -> None:
    if not utt_id or any(ch.isspace() for ch in utt_id) or (fmt == "gslm" and "|" in utt_id):
        bad = "whitespace or '|'" if fmt == "gslm" else "whitespace"
        raise SpeechUnitsError(f"utterance id {utt_id!r} is empty or contains {bad}: not representable in {fmt} text")


def read_order(path: str | os.PathLike[str]) -> list[str]:
    """Utterance ids from a fairseq ``.tsv``/``.jsonl`` manifest or a plain list (one id per line)."""
    path = Path(path)
    if path.suffix in (".tsv", ".jsonl"):
        from speechunits.corpus import open_corpus

        return [utt.id for utt in open_corpus(path)]
    return [line for line in read_text_file(path, missing=f"{path}: no such id list").splitlines() if line]


def _ordered(store: UnitStore, order: list[str] | None) -> Iterator[tuple[str, Units, float]]:
    if order is None:
        yield from store.iter_rows()
        return
    rows = {utt: (units, secs) for utt, units, secs in store.iter_rows()}
    missing = [utt for utt in order if utt not in rows]
    if missing:
        raise SpeechUnitsError(f"{store.path}: {len(missing)} id(s) of the order list are not in the store "
                               f"(first: {missing[0]!r}); lines would not align with the manifest")
    if len(set(order)) != len(order):
        raise SpeechUnitsError("order list: duplicate ids")
    extra = len(rows) - len(order)
    if extra:
        log.warning("%s: %d stored utterance(s) are not in the order list and are not exported", store.path, extra)
    for utt in order:
        yield (utt, *rows[utt])


def export_units(store: UnitStore, fmt: str, out_dir: str | os.PathLike[str], *, name: str = "units",
                 order: list[str] | None = None) -> list[Path]:
    """Write ``store`` as ``fmt`` text into ``out_dir``; returns the files written.

    Args:
        order: ids in the wanted line order (e.g. a fairseq manifest's); default: store order.
    """
    layout = _check_format(fmt)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unit_lines: list[str] = []
    duration_lines: list[str] = []
    id_lines: list[str] = []
    utt2dur: list[str] = []
    write_durations = layout.durations is not None and store.dedup
    for utt_id, units, seconds in _ordered(store, order):
        _check_id(utt_id, fmt)
        if fmt == "fairseq":
            units = units.expand()
        prefix = "" if layout.separator is None else utt_id + layout.separator
        unit_lines.append(prefix + units.to_string())
        if write_durations:
            duration_lines.append(prefix + " ".join(map(str, units.durations.tolist())))
        id_lines.append(utt_id)
        utt2dur.append(f"{utt_id} {float(seconds)!r}")
    written = [write_lines(out / f"{name}{layout.units}", unit_lines)]
    if write_durations:
        written.append(write_lines(out / f"{name}{layout.durations}", duration_lines))
    if layout.ids is not None:
        written.append(write_lines(out / f"{name}{layout.ids}", id_lines))
    if fmt == "fairseq":
        written.append(write_lines(out / "dict.km.txt", [f"{u} 1" for u in range(store.vocab_size)]))
    written.append(write_lines(out / UTT2DUR, utt2dur))
    meta_path = out / META_FILE
    meta_path.write_text(json.dumps(store.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    written.append(meta_path)
    return written


def import_units(fmt: str, src_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                 name: str | None = None, codebook_meta: dict[str, Any] | None = None,
                 dedup: bool | None = None) -> UnitStore:
    """Read ``fmt`` text from ``src_dir`` (as written by :func:`export_units`) into a new store.

    Args:
        name: file name stem; default: the only ``*{suffix}`` file of the format in ``src_dir``.
        codebook_meta: codebook JSON, required when ``src_dir`` has no ``speechunits.json``.
        dedup: deduplicate on import; default: as the exported store was (or: when durations
            are present).
    """
    layout = _check_format(fmt)
    src = Path(src_dir)
    if not src.is_dir():
        raise SpeechUnitsError(f"{src}: no such directory")
    name = name or _guess_name(src, layout.units, fmt)
    meta = _import_meta(src, codebook_meta)
    k, rate = int(meta["vocab_size"]), float(meta["frame_rate"])
    unit_file = src / f"{name}{layout.units}"
    ids, unit_texts = _read_lines(unit_file, layout.separator)
    durations: list[str] | None = None
    if layout.durations is not None and (src / f"{name}{layout.durations}").is_file():
        dur_ids, durations = _read_lines(src / f"{name}{layout.durations}", layout.separator)
        if layout.separator is not None and dur_ids != ids:
            raise SpeechUnitsError(f"{src / (name + layout.durations)}: ids differ from {unit_file.name}")
    if layout.ids is not None:
        id_file = src / f"{name}{layout.ids}"
        if not id_file.is_file():
            raise SpeechUnitsError(f"{id_file}: missing (the id list naming the lines of {unit_file.name})")
        ids = read_order(id_file)
    if len(ids) != len(unit_texts) or (durations is not None and len(durations) != len(unit_texts)):
        raise SpeechUnitsError(f"{src}: {len(ids)} ids, {len(unit_texts)} unit lines"
                               + ("" if durations is None else f", {len(durations)} duration lines") + ": counts differ")
    if dedup is None:
        dedup = bool(meta.get("dedup")) if meta.get("kind") else durations is not None
    seconds = _read_utt2dur(src / UTT2DUR)

    def items() -> Iterator[tuple[str, Units]]:
        for line_no, (utt_id, text) in enumerate(zip(ids, unit_texts), start=1):
            units = _parse_units(text, k, rate, f"{unit_file}:{line_no}")
            if durations is not None:
                dur = _parse_ints(durations[line_no - 1], f"{name}{layout.durations}:{line_no}")
                try:
                    units = Units(units.ids, rate, k, dur)
                except SpeechUnitsError as exc:
                    raise SpeechUnitsError(f"{src / (name + layout.durations)}:{line_no}: {exc}") from None
            if dedup and not units.is_deduplicated:
                units = units.dedup()
            elif not dedup and units.is_deduplicated:
                units = units.expand()
            yield utt_id, units

    return write_units(out_dir, items(), meta["codebook"], dedup=dedup, durations_s=seconds or None)


def _guess_name(src: Path, suffix: str, fmt: str) -> str:
    names = sorted(p.name[: -len(suffix)] for p in src.iterdir()
                   if p.name.endswith(suffix) and not p.name.endswith((".dur" + suffix, ".dur.text")))
    if len(names) != 1:
        raise SpeechUnitsError(f"{src}: expected exactly one *{suffix} file for format {fmt}, found {len(names)}; "
                               "give --name")
    return names[0]


def _import_meta(src: Path, codebook_meta: dict[str, Any] | None) -> dict[str, Any]:
    meta_path = src / META_FILE
    if meta_path.is_file():
        meta = read_json_object(meta_path)
        if codebook_meta is not None and codebook_meta.get("sha256") != meta.get("codebook_sha256"):
            raise SpeechUnitsError(f"{meta_path}: units were made with codebook {meta.get('codebook_sha256')}, "
                                   f"not the given one ({codebook_meta.get('sha256')})")
        return meta
    if codebook_meta is None:
        raise SpeechUnitsError(f"{src}: no {META_FILE}; give the codebook the units come from (--codebook)")
    meta = store_meta(codebook_meta, dedup=False)
    meta.pop("kind")  # marks "no exported store metadata": dedup then follows the files
    return meta


def _read_lines(path: Path, separator: str | None) -> tuple[list[str], list[str]]:
    """Lines of ``path`` split into (ids, rest); ids are empty without a separator."""
    text = read_text_file(path, missing=f"{path}: no such file")
    if text and not text.endswith("\n"):
        text += "\n"
    lines = text.split("\n")[:-1]
    if separator is None:
        return [], lines
    ids, rest = [], []
    for line_no, line in enumerate(lines, start=1):
        utt_id, sep, tail = line.partition(separator)
        if not sep and separator == " ":
            utt_id, tail = line, ""
        elif not sep:
            raise SpeechUnitsError(f"{path}:{line_no}: expected 'id{separator}units', got {line[:60]!r}")
        if not utt_id:
            raise SpeechUnitsError(f"{path}:{line_no}: empty utterance id")
        ids.append(utt_id)
        rest.append(tail)
    if len(set(ids)) != len(ids):
        raise SpeechUnitsError(f"{path}: duplicate utterance ids")
    return ids, rest


def _parse_ints(text: str, where: str) -> np.ndarray:
    try:
        return np.asarray([int(tok) for tok in text.split()], dtype=np.int64)
    except ValueError:
        raise SpeechUnitsError(f"{where}: non-integer token in {text[:60]!r}") from None


def _parse_units(text: str, k: int, rate: float, where: str) -> Units:
    ids = _parse_ints(text, where)
    try:
        return Units(ids, rate, k)
    except SpeechUnitsError as exc:
        raise SpeechUnitsError(f"{where}: {exc}") from None


def _read_utt2dur(path: Path) -> dict[str, float]:
    if not path.is_file():
        return {}
    seconds: dict[str, float] = {}
    for line_no, line in enumerate(read_text_file(path).splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2:
            raise SpeechUnitsError(f"{path}:{line_no}: expected 'id seconds', got {line[:60]!r}")
        try:
            seconds[parts[0]] = float(parts[1])
        except ValueError:
            raise SpeechUnitsError(f"{path}:{line_no}: {parts[1]!r} is not a number") from None
    return seconds
