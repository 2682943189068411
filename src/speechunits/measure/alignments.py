"""Phone (or word) alignments in, frame labels out.

Inputs understood by :func:`load_alignments`:

* our TSV, ``utt_id<TAB>start_s<TAB>end_s<TAB>label`` (an optional header line is skipped);
* a Praat TextGrid file (utterance id = file stem) or a directory of them (id = path relative
  to the directory without extension), e.g. Montreal Forced Aligner output; the tier is chosen
  by name (default ``"phones"``) and empty intervals are silence;
* a synth corpus directory (``phones.tsv`` / ``words.tsv`` next to ``textgrids/``): the TSV
  named after the tier is read;
* fairseq's frame-level phone file, ``uid<TAB>ph1,ph2,...`` (one label per frame), which needs
  its ``frame_rate``; frame i covers ``[i / frame_rate, (i + 1) / frame_rate)``.

Silence is labelled :data:`SILENCE` (pass ``silence=None`` to drop silent intervals instead;
frames outside every segment get no label). Segments of an utterance must be in time order
and must not overlap; violations raise :class:`SpeechUnitsError` naming file and utterance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from speechunits.files import iter_text_lines
from speechunits.errors import SpeechUnitsError
from speechunits.sources import merged_over_sources
from speechunits.measure.textgrid import read_textgrid

#: Label given to silence (TextGrid empty intervals, espeak pauses).
SILENCE = "sil"
#: Overlaps and disorder smaller than this (seconds) are rounding, not errors.
TIME_TOLERANCE_S = 1e-6
TEXTGRID_SUFFIXES = (".textgrid",)


@dataclass(frozen=True)
class Segment:
    """A labelled time interval ``[start, end)`` in seconds."""

    start: float
    end: float
    label: str


Alignments = dict[str, list[Segment]]


@merged_over_sources
def load_alignments(
    path: str | os.PathLike[str],
    tier: str = "phones",
    frame_rate: float | None = None,
    *,
    silence: str | None = SILENCE,
) -> Alignments:
    """Read alignments: ``{utt_id: [Segment, ...]}`` sorted by time.

    Args:
        path: our TSV, a TextGrid file or directory, a synth corpus directory, or a fairseq
            frame-level phone file.
        tier: TextGrid tier name (also picks ``{tier}.tsv`` inside a synth corpus directory).
        frame_rate: frames per second of a fairseq frame-level file (required for it).
        silence: label for silent intervals, or ``None`` to drop them.

    Raises:
        SpeechUnitsError: missing path, unknown format, missing tier, empty tier, overlapping
            or out-of-order segments, malformed lines.
    """
    path = Path(path)
    if not path.exists():
        raise SpeechUnitsError(f"{path}: alignments not found")
    if path.is_dir():
        tsv = path / f"{tier}.tsv"
        if tsv.is_file():
            return _read_segment_tsv(tsv, silence)
        return _read_textgrid_dir(path, tier, silence)
    if path.suffix.lower() in TEXTGRID_SUFFIXES:
        return {path.stem: _textgrid_segments(path, tier, silence, path.stem)}
    kind = _sniff(path)
    if kind == "frames":
        if frame_rate is None or frame_rate <= 0:
            raise SpeechUnitsError(
                f"{path}: looks like a fairseq frame-level phone file (uid<TAB>ph1,ph2,...); "
                "give its frame rate (--frame-rate)"
            )
        return _read_frame_file(path, frame_rate, silence)
    return _read_segment_tsv(path, silence)


def _sniff(path: Path) -> str:
    """``"frames"`` for ``uid<TAB>a,b,c`` lines, ``"segments"`` for 4-column TSV."""
    for _, line in iter_text_lines(path, "alignment file"):
        parts = line.split("\t")
        if len(parts) == 2:
            return "frames"
        if len(parts) == 4:
            return "segments"
        raise SpeechUnitsError(
            f"{path}: unknown alignment format (expected utt_id<TAB>start<TAB>end<TAB>label, "
            f"or uid<TAB>ph1,ph2,... frame labels); first line has {len(parts)} columns"
        )
    raise SpeechUnitsError(f"{path}: empty alignment file")


def _check_order(path: Path | str, utt: str, segments: Sequence[Segment]) -> None:
    for prev, seg in zip(segments, segments[1:]):
        if seg.start < prev.start - TIME_TOLERANCE_S:
            raise SpeechUnitsError(
                f"{path}: utterance {utt!r}: segments out of order "
                f"({prev.label!r} at {prev.start:g}s comes before {seg.label!r} at {seg.start:g}s)"
            )
        if seg.start < prev.end - TIME_TOLERANCE_S:
            raise SpeechUnitsError(
                f"{path}: utterance {utt!r}: overlapping segments {prev.label!r} [{prev.start:g}, {prev.end:g}] "
                f"and {seg.label!r} [{seg.start:g}, {seg.end:g}]"
            )


def _read_segment_tsv(path: Path, silence: str | None) -> Alignments:
    result: Alignments = {}
    for line_no, line in iter_text_lines(path, "alignment file"):
        parts = line.split("\t")
        if len(parts) != 4:
            raise SpeechUnitsError(
                f"{path}:{line_no}: expected 4 tab-separated columns utt_id, start_s, end_s, label; got {len(parts)}"
            )
        utt, start_text, end_text, label = parts
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            if line_no == 1:
                continue  # header line
            raise SpeechUnitsError(f"{path}:{line_no}: start/end {start_text!r}, {end_text!r} are not numbers") from None
        if not (np.isfinite(start) and np.isfinite(end)) or end < start or start < 0:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt!r}: bad interval [{start_text}, {end_text}]")
        if not label.strip():
            if silence is None:
                continue
            label = silence
        segments = result.setdefault(utt, [])
        if segments:
            _check_order(f"{path}:{line_no}", utt, [segments[-1], Segment(start, end, label)])
        segments.append(Segment(start, end, label))
    if not result:
        raise SpeechUnitsError(f"{path}: no segments")
    return result


def _textgrid_segments(path: Path, tier_name: str, silence: str | None, utt: str) -> list[Segment]:
    tiers = read_textgrid(path)
    matching = [t for t in tiers if t.name == tier_name]
    if not matching:
        names = ", ".join(repr(t.name) for t in tiers) or "none"
        raise SpeechUnitsError(f"{path}: no tier named {tier_name!r} (tiers: {names})")
    tier = matching[0]
    if not tier.is_interval:
        raise SpeechUnitsError(f"{path}: tier {tier_name!r} is a point tier, not an interval tier")
    segments: list[Segment] = []
    for interval in tier.intervals:
        label = interval.text.strip()
        if interval.xmax < interval.xmin:
            raise SpeechUnitsError(
                f"{path}: utterance {utt!r}: interval {label!r} ends before it starts "
                f"[{interval.xmin:g}, {interval.xmax:g}]"
            )
        if not label:
            if silence is None:
                continue
            label = silence
        segments.append(Segment(interval.xmin, interval.xmax, label))
    if not any(s.label != silence for s in segments):
        raise SpeechUnitsError(f"{path}: utterance {utt!r}: tier {tier_name!r} is empty (no labelled interval)")
    _check_order(path, utt, segments)
    return segments


def _read_textgrid_dir(root: Path, tier: str, silence: str | None) -> Alignments:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXTGRID_SUFFIXES)
    if not files:
        raise SpeechUnitsError(f"{root}: no .TextGrid files (and no {tier}.tsv)")
    result: Alignments = {}
    for file in files:
        utt = file.relative_to(root).with_suffix("").as_posix()
        result[utt] = _textgrid_segments(file, tier, silence, utt)
    return result


def _read_frame_file(path: Path, frame_rate: float, silence: str | None) -> Alignments:
    result: Alignments = {}
    step = 1.0 / frame_rate
    for line_no, line in iter_text_lines(path, "alignment file"):
        parts = line.split("\t")
        if len(parts) != 2:
            raise SpeechUnitsError(f"{path}:{line_no}: expected uid<TAB>ph1,ph2,...; got {len(parts)} columns")
        utt, labels_text = parts
        if utt in result:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt!r} appears twice")
        labels = [x.strip() for x in labels_text.split(",")]
        segments: list[Segment] = []
        run_start = 0
        for i in range(1, len(labels) + 1):
            if i == len(labels) or labels[i] != labels[run_start]:
                label = labels[run_start] or silence
                if label is not None:
                    segments.append(Segment(round(run_start * step, 9), round(i * step, 9), label))
                run_start = i
        if not segments:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt!r} has no labelled frame")
        result[utt] = segments
    if not result:
        raise SpeechUnitsError(f"{path}: no utterances")
    return result


def frame_centres(num_frames: int, frame_rate: float, frame_offset_s: float) -> np.ndarray:
    """Centre time (seconds) of each frame: ``frame_offset_s + i / frame_rate``, float64 ``[num_frames]``."""
    return frame_offset_s + np.arange(num_frames, dtype=np.float64) / frame_rate


def frame_segment_indices(
    segments: Sequence[Segment], num_frames: int, frame_rate: float, frame_offset_s: float
) -> np.ndarray:
    """Index into ``segments`` of the segment covering each frame centre, or -1; int64 ``[num_frames]``.

    A centre exactly on a boundary belongs to the later segment (``start <= t < end``).
    """
    if frame_rate <= 0:
        raise SpeechUnitsError(f"frame rate must be positive, got {frame_rate}")
    centres = frame_centres(num_frames, frame_rate, frame_offset_s)
    if not segments:
        return np.full(num_frames, -1, dtype=np.int64)
    starts = np.fromiter((s.start for s in segments), dtype=np.float64, count=len(segments))
    ends = np.fromiter((s.end for s in segments), dtype=np.float64, count=len(segments))
    index = np.searchsorted(starts, centres, side="right") - 1
    valid = index >= 0
    valid[valid] = centres[valid] < ends[index[valid]]
    return np.where(valid, index, -1).astype(np.int64)


def frame_labels(
    segments: Sequence[Segment], num_frames: int, frame_rate: float, frame_offset_s: float
) -> list[str | None]:
    """Label at each frame's centre time (``None`` where no segment covers it)."""
    index = frame_segment_indices(segments, num_frames, frame_rate, frame_offset_s)
    return [segments[i].label if i >= 0 else None for i in index.tolist()]


def frame_label_ids(
    segments: Sequence[Segment],
    num_frames: int,
    frame_rate: float,
    frame_offset_s: float,
    vocabulary: dict[str, int],
) -> np.ndarray:
    """Like :func:`frame_labels` but as ids from ``vocabulary`` (new labels are added); -1 = no label.

    Returns:
        int64 ``[num_frames]``.
    """
    index = frame_segment_indices(segments, num_frames, frame_rate, frame_offset_s)
    segment_ids = np.array([vocabulary.setdefault(s.label, len(vocabulary)) for s in segments] + [-1], dtype=np.int64)
    return segment_ids[index]


def write_segments_tsv(path: str | os.PathLike[str], alignments: Alignments) -> None:
    """Write ``utt_id<TAB>start_s<TAB>end_s<TAB>label`` lines (utterances in the given order)."""
    with open(path, "w", encoding="utf-8") as handle:
        for utt, segments in alignments.items():
            for seg in segments:
                handle.write(f"{utt}\t{_fmt(seg.start)}\t{_fmt(seg.end)}\t{seg.label}\n")


def _fmt(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"
