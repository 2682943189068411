"""The ``diarize`` probe (SUPERB's SD, after Hitachi's EEND): speaker activity per frame, its PIT loss and DER.

A recording's label is a :class:`SpeakerActivity`: one column per speaker, ``1`` in the frames whose
centre ``frame_offset_s + i / frame_rate`` lies in one of that speaker's turns (``start <= t < end``,
the rule of :func:`speechunits.measure.alignments.frame_segment_indices`), speakers ordered by their
first turn. The probe has ``S`` speaker slots (one logit each per frame); training pads the
activity to ``S`` columns and takes, per recording, the least summed binary cross-entropy over the
``S!`` orders of the slots (permutation-invariant training, :func:`pit_bce`). At inference a slot
talks where its sigmoid exceeds 0.5 (:func:`active_slots`); frames become turns
(:func:`activity_turns`) and are scored by the diarization error rate of
:mod:`speechunits.measure.diarization` (:func:`diarization_scores`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import frame_centres
from speechunits.measure.diarization import DiarizationErrors, Turn, diarization_errors

#: The most speaker slots a probe may have (PIT tries all ``S!`` orders of them).
MAX_SPEAKER_SLOTS = 4
#: SUPERB's (NIST md-eval's) forgiveness collar around every reference boundary, seconds.
DER_COLLAR_S = 0.25
#: The sigmoid above which a slot talks in a frame.
THRESHOLD = 0.5


@dataclass(frozen=True)
class SpeakerActivity:
    """Who talks in each frame of one recording.

    Attributes:
        active: float32 ``[T, K]``, 1 where speaker ``k`` talks in frame ``t``.
        speakers: the ``K`` speaker names, in column order (by first turn).
        frame_rate: frames per second; frame_offset_s: centre of frame 0, seconds.
    """

    active: np.ndarray
    speakers: tuple[str, ...]
    frame_rate: float
    frame_offset_s: float

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)


def speaker_activity(turns: Sequence[Turn], num_frames: int, frame_rate: float,
                     frame_offset_s: float) -> SpeakerActivity:
    """The :class:`SpeakerActivity` of one recording's ``(speaker, start_s, end_s)`` turns over
    ``num_frames`` frames (module rule; a speaker's overlapping turns simply add up to activity)."""
    if frame_rate <= 0:
        raise SpeechUnitsError(f"frame rate must be positive, got {frame_rate}")
    if num_frames < 0:
        raise SpeechUnitsError(f"negative frame count {num_frames}")
    ordered = sorted(turns, key=lambda t: (t[1], t[2]))
    speakers = tuple(dict.fromkeys(t[0] for t in ordered))
    column = {s: k for k, s in enumerate(speakers)}
    centres = frame_centres(num_frames, frame_rate, frame_offset_s)
    active = np.zeros((num_frames, len(speakers)), dtype=np.float32)
    for speaker, start, end in ordered:  # centres are increasing: start <= c < end is one slice
        lo, hi = np.searchsorted(centres, [start, end], side="left")
        active[lo:hi, column[speaker]] = 1.0
    return SpeakerActivity(active, speakers, float(frame_rate), float(frame_offset_s))


def check_speaker_slots(labels: Mapping[str, SpeakerActivity], slots: int, source: str) -> None:
    """Refuse a recording with more speakers than ``slots`` (SpeechUnitsError naming it)."""
    for utt, label in labels.items():
        if label.num_speakers > slots:
            raise SpeechUnitsError(f"{source}: recording {utt!r} has {label.num_speakers} speakers "
                                   f"({', '.join(label.speakers)}); the diarization probe has {slots} speaker slots")


def slot_targets(label: SpeakerActivity, slots: int) -> np.ndarray:
    """``label``'s activity padded with silent columns to float32 ``[T, slots]`` (a training target)."""
    if label.num_speakers > slots:
        raise SpeechUnitsError(f"a recording with {label.num_speakers} speakers; the probe has {slots} speaker slots")
    out = np.zeros((label.active.shape[0], slots), dtype=np.float32)
    out[:, : label.num_speakers] = label.active
    return out


def pit_bce(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation-invariant binary cross-entropy of a batch.

    Args:
        logits: float ``[B, T, S]``; targets: float ``[B, T, S]`` (0/1); lengths: int64 ``[B]`` valid frames.

    Returns:
        ``(loss, correct)``: the sum over recordings of the least (over the ``S!`` orders of the target
        columns, chosen per recording) BCE summed over valid frames and slots; and how many valid
        frame-slot decisions (logit > 0) agree with the targets in that order.
    """
    slots = logits.shape[-1]
    if targets.shape != logits.shape:
        raise SpeechUnitsError(f"diarization targets {tuple(targets.shape)} do not match the logits {tuple(logits.shape)}")
    if not 1 <= slots <= MAX_SPEAKER_SLOTS:
        raise SpeechUnitsError(f"PIT over {slots} speaker slots: expected 1 to {MAX_SPEAKER_SLOTS}")
    mask = (torch.arange(logits.shape[1], device=logits.device)[None, :] < lengths.to(logits.device)[:, None])
    mask = mask.to(logits.dtype)[:, :, None, None]
    a, b = torch.broadcast_tensors(logits[:, :, :, None], targets[:, :, None, :])  # [B, T, slot, target column]
    pair = (nn.functional.binary_cross_entropy_with_logits(a, b, reduction="none") * mask).sum(1)  # [B, S, S]
    orders = torch.tensor(list(itertools.permutations(range(slots))), dtype=torch.int64, device=logits.device)
    per_order = pair[:, torch.arange(slots, device=logits.device), orders].sum(-1)  # [B, S!]
    best = per_order.argmin(-1)
    loss = per_order.gather(1, best[:, None]).sum()
    with torch.no_grad():
        ordered = targets.gather(2, orders[best][:, None, :].expand_as(targets))
        agree = ((logits > 0).to(targets.dtype) == ordered).to(logits.dtype) * mask[:, :, :, 0]
    return loss, agree.sum()


def active_slots(logits: np.ndarray) -> np.ndarray:
    """uint8 ``[T, S]``: 1 where a slot's sigmoid exceeds :data:`THRESHOLD` (its logit exceeds 0)."""
    return (np.asarray(logits) > 0.0).astype(np.uint8)


def activity_turns(active: np.ndarray, frame_rate: float, frame_offset_s: float,
                   names: Sequence[str] | None = None) -> list[Turn]:
    """``(name, start_s, end_s)`` turns of ``[T, S]`` activity: each run of active frames ``i..j`` of a
    column spans ``[offset + (i - 0.5) / rate, offset + (j + 0.5) / rate]``, clipped at 0 (frame
    resolution). ``names``: the columns' (default ``slot0``, ``slot1``, ...)."""
    active = np.asarray(active) > 0.5
    if active.ndim != 2:
        raise SpeechUnitsError(f"speaker activity must be [frames, speakers], got shape {active.shape}")
    names = list(names) if names is not None else [f"slot{k}" for k in range(active.shape[1])]
    turns: list[Turn] = []
    for k in range(active.shape[1]):
        edges = np.diff(np.concatenate([[0], active[:, k].astype(np.int8), [0]]))
        for first, last in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1):
            start = max(0.0, frame_offset_s + (first - 0.5) / frame_rate)
            turns.append((names[k], start, frame_offset_s + (last + 0.5) / frame_rate))
    return turns


def diarization_scores(references: Sequence[SpeakerActivity], predictions: Sequence[np.ndarray]) -> dict[str, float]:
    """DER of predicted ``[T, S]`` activity against the references, summed over recordings.

    References are turned into turns at frame resolution too (:func:`activity_turns`; a reference
    turn's ends move by at most half a frame), predictions at the reference's frame timing.
    Returns ``der`` (collar 0.25 s, SUPERB's), ``der_collar0`` and the ``missed``, ``false_alarm``
    and ``confusion`` shares of the reference speech (collar 0.25 s; they add up to ``der``).
    """
    totals = {collar: DiarizationErrors(0.0, 0.0, 0.0, 0.0) for collar in (DER_COLLAR_S, 0.0)}
    for ref, hyp in zip(references, predictions):
        ref_turns = activity_turns(ref.active, ref.frame_rate, ref.frame_offset_s, ref.speakers)
        hyp_turns = activity_turns(hyp, ref.frame_rate, ref.frame_offset_s)
        for collar in totals:
            totals[collar] = totals[collar] + diarization_errors(ref_turns, hyp_turns, collar=collar)
    main = totals[DER_COLLAR_S]
    share = (lambda seconds: seconds / main.reference) if main.reference > 0 else (lambda seconds: float("nan"))
    return {"der": main.der, "der_collar0": totals[0.0].der, "missed": share(main.missed),
            "false_alarm": share(main.false_alarm), "confusion": share(main.confusion)}
