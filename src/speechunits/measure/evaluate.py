"""Units + phone alignments -> one report of unit-quality metrics.

Frame labelling: frame i of an utterance takes the phone whose segment ``[start, end)``
contains its centre time ``frame_offset_s + i / frame_rate`` (store metadata); deduplicated
stores are expanded with their durations first.

What is counted over what (always the same set of utterances: those with units AND alignments):

* phone/unit agreement (PNMI, purities, H(phone), H(phone|unit)) uses the *labelled* frames;
  frames whose centre lies in no segment (before the first, in a gap, or past the last
  segment) are left out and counted in ``unlabelled_frames`` (``frames_past_alignment_end``
  for those after the last segment's end);
* unit usage, mean segment length and bitrate use *every* frame of those utterances
  (they describe the unit stream, which needs no labels); bitrate divides by audio seconds.

Utterances of the store without alignments are skipped, counted and named in the report;
alignments without units are counted. When no id is in common, ids are matched by their file
path endings (:func:`~speechunits.id_match.match_ids`: a store of ``corpus/`` says ``wavs/u1``, its
``phones.tsv`` says ``u1``); none matching then either is an error.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from speechunits.id_match import match_ids
from speechunits.errors import SpeechUnitsError
from speechunits.measure import metrics
from speechunits.measure.alignments import Segment
from speechunits.units.units import Units

log = logging.getLogger(__name__)

#: Warn when more than this share of frames lies past the last aligned segment
#: (a frame-rate or alignment mismatch is likely).
PAST_END_WARN_FRACTION = 0.1
#: How many missing utterance ids the report lists by name.
MAX_LISTED_MISSING = 20


@dataclass(frozen=True)
class EvaluationReport:
    """Unit-quality metrics of a unit store against phone alignments (see module docstring)."""

    pnmi: float
    phone_purity: float
    cluster_purity: float
    h_phone: float
    h_phone_given_unit: float
    mutual_information: float
    bitrate: float
    bitrate_entropy: float
    frame_bitrate: float
    tokens_per_s: float
    mean_segment_frames: float
    mean_segment_s: float
    unit_perplexity: float
    unit_entropy: float
    used_units: int
    dead_units: int
    vocab_size: int
    num_phones: int
    frame_rate: float
    frame_offset_s: float
    utterances: int
    utterances_missing_alignments: int
    alignments_without_units: int
    frames: int
    labelled_frames: int
    unlabelled_frames: int
    frames_past_alignment_end: int
    audio_seconds: float
    missing_alignment_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _label_frames(segments: Sequence[Segment], num_frames: int, frame_rate: float, frame_offset_s: float,
                  vocabulary: dict[str, int]) -> tuple[np.ndarray, int]:
    """Phone id at each frame centre (-1 = none) ``[num_frames]`` and the number of frames past the last segment.

    Same rule as :func:`speechunits.measure.alignments.frame_segment_indices` (``start <= t < end``,
    a centre on a boundary belongs to the later segment), in one pass over the segments.
    """
    if not segments:
        return np.full(num_frames, -1, dtype=np.int64), 0
    table = np.array([(s.start, s.end, vocabulary.setdefault(s.label, len(vocabulary))) for s in segments],
                     dtype=np.float64)
    starts, ends, seg_ids = table[:, 0], table[:, 1], table[:, 2].astype(np.int64)
    centres = frame_offset_s + np.arange(num_frames, dtype=np.float64) / frame_rate
    index = np.searchsorted(starts, centres, side="right") - 1
    inside = (index >= 0) & (centres < ends[np.maximum(index, 0)])
    labels = np.where(inside, seg_ids[np.maximum(index, 0)], -1)
    return labels, int(np.count_nonzero(centres >= ends[-1]))


def evaluate_units(
    units: Iterable[tuple[str, Units]] | Iterable[tuple[str, Units, float]],
    alignments: Mapping[str, Sequence[Segment]],
    *,
    frame_rate: float,
    frame_offset_s: float,
    vocab_size: int,
) -> EvaluationReport:
    """Metrics of ``(utt_id, Units[, audio_seconds])`` rows against ``alignments``.

    Args:
        units: rows in any order; ``audio_seconds`` defaults to ``num_frames / frame_rate``.
        alignments: ``{utt_id: [Segment]}`` sorted by time (as :func:`load_alignments` gives).
        frame_rate, frame_offset_s: frame i is centred at ``frame_offset_s + i / frame_rate``.
        vocab_size: K (the codebook size).
    """
    if frame_rate <= 0:
        raise SpeechUnitsError(f"frame rate must be > 0, got {frame_rate}")
    if vocab_size < 1:
        raise SpeechUnitsError(f"vocab_size must be >= 1, got {vocab_size}")
    vocabulary: dict[str, int] = {}
    label_chunks: list[np.ndarray] = []
    unit_chunks: list[np.ndarray] = []
    token_chunks: list[np.ndarray] = []
    unaligned: list[tuple[str, Units, float | None]] = []
    seen: set[str] = set()
    past_end = 0
    seconds = 0.0

    def add(utt_id: str, utt_units: Units, audio_seconds: float | None, segments: Sequence[Segment]) -> None:
        nonlocal past_end, seconds
        ids = utt_units.ids if utt_units.durations is None else np.repeat(utt_units.ids, utt_units.durations)
        if ids.size and (ids.max() >= vocab_size):
            raise SpeechUnitsError(f"{utt_id}: unit id {ids.max()} >= vocab size {vocab_size}")
        seconds += audio_seconds if audio_seconds is not None else ids.size / frame_rate
        labels, beyond = _label_frames(segments, ids.size, frame_rate, frame_offset_s, vocabulary)
        past_end += beyond
        label_chunks.append(labels)
        unit_chunks.append(ids)
        token_chunks.append(ids[metrics.run_starts(ids)])

    for row in units:
        utt_id, utt_units = row[0], row[1]
        audio_seconds = float(row[2]) if len(row) > 2 else None
        segments = alignments.get(utt_id)
        if segments is None:
            unaligned.append((utt_id, utt_units, audio_seconds))
            continue
        seen.add(utt_id)
        add(utt_id, utt_units, audio_seconds, segments)
    if not seen and unaligned:  # no id in common: match ids by their file path endings (store of a folder)
        aligned_as = match_ids([row[0] for row in unaligned], alignments, "the alignments")
        for utt_id, utt_units, audio_seconds in unaligned:
            if utt_id in aligned_as:
                seen.add(utt_id)
                add(utt_id, utt_units, audio_seconds, alignments[aligned_as[utt_id]])
        unaligned = [row for row in unaligned if row[0] not in aligned_as]
    missing = [row[0] for row in unaligned]
    if missing:
        log.warning("%d utterance(s) have units but no alignments and are skipped (e.g. %s)", len(missing), missing[0])
    if not seen:
        raise SpeechUnitsError("the units and the alignments have no utterance in common "
                               f"(units e.g. {missing[:3]}, alignments e.g. {sorted(alignments)[:3]})")
    labels = np.concatenate(label_chunks)
    unit_ids = np.concatenate(unit_chunks)
    tokens = np.concatenate(token_chunks)
    labelled = labels >= 0
    if not labelled.any():
        raise SpeechUnitsError("no frame centre falls inside any aligned segment: check the alignments' time unit "
                               "and the store's frame rate")
    counts = metrics.contingency(labels[labelled], unit_ids[labelled], len(vocabulary), vocab_size)
    used_phones = int((counts.sum(axis=1) > 0).sum())
    if used_phones < 2:
        raise SpeechUnitsError(f"PNMI needs at least two different phones on labelled frames, found {used_phones} "
                               "(is the alignment tier right?)")
    agreement = metrics.phone_unit_scores(counts)
    usage = metrics.unit_usage(np.bincount(unit_ids, minlength=vocab_size))
    rate = metrics.bitrate(tokens.size, seconds, vocab_size, np.bincount(tokens, minlength=vocab_size), frame_rate)
    segments_stats = metrics.segment_stats(tokens.size, unit_ids.size, frame_rate)
    if unit_ids.size and past_end > PAST_END_WARN_FRACTION * unit_ids.size:
        log.warning("%.0f%% of frames lie past the last aligned segment: do the alignments match these units "
                    "(frame rate %.3g Hz)?", 100.0 * past_end / unit_ids.size, frame_rate)
    return EvaluationReport(
        pnmi=agreement.pnmi,
        phone_purity=agreement.phone_purity,
        cluster_purity=agreement.cluster_purity,
        h_phone=agreement.h_phone,
        h_phone_given_unit=agreement.h_phone_given_unit,
        mutual_information=agreement.mutual_information,
        bitrate=rate.uniform,
        bitrate_entropy=rate.entropy,
        frame_bitrate=rate.frame_bitrate,
        tokens_per_s=rate.tokens_per_s,
        mean_segment_frames=segments_stats.mean_frames,
        mean_segment_s=segments_stats.mean_seconds,
        unit_perplexity=usage.perplexity,
        unit_entropy=usage.entropy,
        used_units=usage.used_units,
        dead_units=usage.dead_units,
        vocab_size=vocab_size,
        num_phones=used_phones,
        frame_rate=frame_rate,
        frame_offset_s=frame_offset_s,
        utterances=len(seen),
        utterances_missing_alignments=len(missing),
        alignments_without_units=len(alignments) - len(seen),
        frames=int(unit_ids.size),
        labelled_frames=int(labelled.sum()),
        unlabelled_frames=int((~labelled).sum()),
        frames_past_alignment_end=past_end,
        audio_seconds=seconds,
        missing_alignment_ids=missing[:MAX_LISTED_MISSING],
    )


def evaluate_store(store_path: str | os.PathLike[str], alignments: Mapping[str, Sequence[Segment]]) -> EvaluationReport:
    """Metrics of a unit store directory against alignments (frame timing from the store's metadata)."""
    from speechunits.units.store import UnitStore

    store = UnitStore.open(Path(store_path))
    meta = store.meta
    try:
        return evaluate_units(store.iter_rows(), alignments, frame_rate=float(meta["frame_rate"]),
                              frame_offset_s=float(meta.get("frame_offset_s") or 0.0), vocab_size=int(meta["vocab_size"]))
    except SpeechUnitsError as exc:
        raise SpeechUnitsError(f"{store_path}: {exc}") from None
