"""ABX items: triphone occurrences built from alignments, and Libri-Light's ``.item`` files.

An item spans ``prev + centre + next`` phones and carries the centre phone, its context
(prev, next) and the speaker. The ``.item`` format is a header line, then
``file onset offset phone prev-phone next-phone speaker`` per line.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_text_file

log = logging.getLogger(__name__)

ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
ITEM_COLUMNS = 7
#: Labels treated as silence/non-speech: no triphone item contains them.
SILENCE_LABELS = frozenset({"", "sil", "sp", "spn", "SIL", "SP", "SPN", "<sil>", "<eps>", "_", "_:", "_!", "pau", "h#"})
UNKNOWN_SPEAKER = "unknown"


class SegmentLike(Protocol):
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class AbxItem:
    """One triphone occurrence: ``[onset, offset)`` spans prev + phone + next."""

    utt_id: str
    onset: float
    offset: float
    phone: str
    prev: str
    next: str
    speaker: str


def build_items(alignments: Mapping[str, Sequence[SegmentLike]], speakers: Mapping[str, str] | None = None,
                silence_labels: frozenset[str] = SILENCE_LABELS) -> list[AbxItem]:
    """Triphone items from phone alignments, in sorted utterance order then time.

    Every run of three consecutive segments without silence gives one item centred on the
    middle segment. Utterances without a speaker get ``"unknown"``.
    """
    items: list[AbxItem] = []
    if speakers is not None:
        unknown = [u for u in alignments if u not in speakers]
        if unknown:
            log.warning("%d aligned utterance(s) have no speaker (e.g. %s): they count as speaker %r",
                        len(unknown), unknown[0], UNKNOWN_SPEAKER)
    for utt_id in sorted(alignments):
        segs = list(alignments[utt_id])
        speaker = (speakers or {}).get(utt_id, UNKNOWN_SPEAKER)
        for prev, mid, nxt in zip(segs, segs[1:], segs[2:]):
            if prev.label in silence_labels or mid.label in silence_labels or nxt.label in silence_labels:
                continue
            items.append(AbxItem(utt_id, float(prev.start), float(nxt.end), mid.label, prev.label, nxt.label, speaker))
    return items


def write_items(path: str | Path, items: Iterable[AbxItem]) -> None:
    """Write Libri-Light's ``.item`` format."""
    lines = [ITEM_HEADER]
    for it in items:
        for name, value in (("file", it.utt_id), ("phone", it.phone), ("prev", it.prev), ("next", it.next), ("speaker", it.speaker)):
            if not value or any(ch.isspace() for ch in value):
                raise SpeechUnitsError(f"{path}: item {name} {value!r} is empty or holds whitespace")
        lines.append(f"{it.utt_id} {it.onset:.6f} {it.offset:.6f} {it.phone} {it.prev} {it.next} {it.speaker}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_items(path: str | Path) -> list[AbxItem]:
    """Read Libri-Light's ``.item`` format (first line is a header and is skipped)."""
    path = Path(path)
    lines = read_text_file(path, missing=f"{path}: item file not found").splitlines()
    if not lines or not lines[0].startswith("#"):
        raise SpeechUnitsError(f"{path}: expected the header line {ITEM_HEADER!r}")
    items = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != ITEM_COLUMNS:
            raise SpeechUnitsError(f"{path}:{lineno}: expected {ITEM_COLUMNS} columns "
                                   f"(file onset offset phone prev next speaker), got {len(cols)}")
        try:
            onset, offset = float(cols[1]), float(cols[2])
        except ValueError:
            raise SpeechUnitsError(f"{path}:{lineno}: onset/offset are not numbers: {cols[1]!r} {cols[2]!r}") from None
        if not (math.isfinite(onset) and math.isfinite(offset)) or offset <= onset or onset < 0:
            raise SpeechUnitsError(f"{path}:{lineno}: need 0 <= onset < offset, got {onset} {offset}")
        items.append(AbxItem(cols[0], onset, offset, cols[3], cols[4], cols[5], cols[6]))
    if not items:
        raise SpeechUnitsError(f"{path}: no items")
    return items
