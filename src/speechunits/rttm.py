"""NIST RTTM files: the one reader and writer of the format (diarization references and hypotheses,
spoken term occurrences), and the reader of UEM files (the scored regions).

One record per line, space separated: ``TYPE FILE CHANNEL TBEG TDUR ORTHO STYPE NAME CONF [SLAT]``,
times in seconds, ``<NA>`` for fields that do not apply. Diarization uses ``SPEAKER`` lines (``NAME``
is the speaker); spoken term detection ground truth uses ``LEXEME`` lines (``ORTHO`` names the term).
Lines starting with ``;;`` are comments.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines

NA = "<NA>"


@dataclass(frozen=True)
class RttmRecord:
    """One RTTM line (the fields diarization and term detection use)."""

    type: str
    file: str
    channel: str
    start: float
    duration: float
    ortho: str = NA
    name: str = NA

    @property
    def end(self) -> float:
        return self.start + self.duration


def read_rttm(path: str | os.PathLike[str], types: Iterable[str] | None = None) -> list[RttmRecord]:
    """The records of an RTTM file, in file order; with ``types`` (e.g. ``{"SPEAKER"}``) only those.

    Raises:
        SpeechUnitsError: a kept line with fewer than 5 fields (6 for ``LEXEME``, 8 for ``SPEAKER``),
            non-numeric or negative times, naming the line.
    """
    wanted = None if types is None else set(types)
    records = []
    for line_no, line in iter_text_lines(path, "RTTM file"):
        if line.lstrip().startswith(";;"):
            continue
        fields = line.split()
        kind = fields[0]
        if wanted is not None and kind not in wanted:
            continue
        needed = {"SPEAKER": 8, "LEXEME": 6}.get(kind, 5)
        if len(fields) < needed:
            raise SpeechUnitsError(f"{path}:{line_no}: a {kind} line needs at least {needed} fields "
                                   f"(TYPE FILE CHANNEL TBEG TDUR ORTHO STYPE NAME ...), got {len(fields)}")
        try:
            start, duration = float(fields[3]), float(fields[4])
        except ValueError:
            raise SpeechUnitsError(f"{path}:{line_no}: TBEG and TDUR must be numbers, got {fields[3]!r} {fields[4]!r}") from None
        if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration < 0:
            raise SpeechUnitsError(f"{path}:{line_no}: TBEG and TDUR must be finite and >= 0, got {start} {duration}")
        records.append(RttmRecord(kind, fields[1], fields[2], start, duration,
                                  fields[5] if len(fields) > 5 else NA, fields[7] if len(fields) > 7 else NA))
    return records


def format_rttm(records: Iterable[RttmRecord]) -> str:
    """RTTM text of ``records`` (millisecond times; ``<NA>`` in the fields a record does not have)."""
    lines = []
    for r in records:
        stype = "lex" if r.type == "LEXEME" else NA
        lines.append(f"{r.type} {r.file} {r.channel} {r.start:.3f} {r.duration:.3f} {r.ortho} {stype} {r.name} {NA} {NA}\n")
    return "".join(lines)


def write_rttm(path: str | os.PathLike[str], records: Iterable[RttmRecord]) -> None:
    """Write ``records`` as an RTTM file (see :func:`format_rttm`)."""
    Path(path).write_text(format_rttm(records), encoding="utf-8")


def speaker_turns(file: str, turns: Iterable[tuple[str, float, float]]) -> list[RttmRecord]:
    """``SPEAKER`` records of one recording from ``(speaker, start_s, end_s)`` turns."""
    return [RttmRecord("SPEAKER", file, "1", start, end - start, NA, speaker) for speaker, start, end in turns]


def read_uem(path: str | os.PathLike[str]) -> dict[str, tuple[float, float]]:
    """``{recording: (start, end)}`` of a NIST UEM file (``FILE CHANNEL START END`` per line), one
    scored region per recording (a second one is an error)."""
    regions: dict[str, tuple[float, float]] = {}
    for line_no, line in iter_text_lines(path, "UEM file"):
        if line.lstrip().startswith(";;"):
            continue
        fields = line.split()
        try:
            start, end = float(fields[2]), float(fields[3])
        except (IndexError, ValueError):
            raise SpeechUnitsError(f"{path}:{line_no}: expected 'FILE CHANNEL START END', got {line!r}") from None
        if not 0 <= start <= end:
            raise SpeechUnitsError(f"{path}:{line_no}: need 0 <= START <= END, got {start} {end}")
        if fields[0] in regions:
            raise SpeechUnitsError(f"{path}:{line_no}: a second region for {fields[0]} (one per recording)")
        regions[fields[0]] = (start, end)
    return regions
