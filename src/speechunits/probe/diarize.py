"""The ``diarize`` probe (SUPERB's SD, after Hitachi's EEND): speaker activity per frame, its PIT loss and DER.

A recording's label is a :class:`SpeakerActivity`: one column per speaker, ``1`` in the frames whose
centre ``frame_offset_s + i / frame_rate`` lies in one of that speaker's turns (``start <= t < end``,
the rule of :func:`speechunits.measure.alignments.frame_segment_indices`), speakers ordered by their
first turn. The probe has ``S`` speaker slots (one logit each per frame); training pads the
activity to ``S`` columns and takes, per recording, the least summed binary cross-entropy over the
``S!`` orders of the slots (permutation-invariant training, :func:`pit_bce`). At inference a slot
talks where its sigmoid exceeds a threshold, and each slot's 0/1 track is then median-filtered
(:class:`SlotDecision`, :func:`active_slots`, as EEND's ``make_rttm.py``); frames become turns
(:func:`activity_turns`) and are scored by the diarization error rate of
:mod:`speechunits.measure.diarization` (:func:`diarization_scores`).

The decision is chosen on dev after training (:func:`tune_decision`) over SUPERB's grid: thresholds
0.3 to 0.7 and a median filter of one frame or of about 0.11 s (s3prl's 11 frames of 10 ms). s3prl
takes the best of that grid on test; here dev picks it and test is read with that one setting.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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
#: The sigmoid above which a slot talks in a frame, unless a probe's dev-chosen decision says otherwise.
THRESHOLD = 0.5
#: SUPERB's (s3prl ``score.sh``) grid that :func:`tune_decision` searches: thresholds, and median widths in
#: seconds (0: no filter; 0.11 s: s3prl's 11 frames at 100 frames/s).
DECISION_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
DECISION_MEDIAN_S = (0.0, 0.11)


@dataclass(frozen=True)
class SlotDecision:
    """How a slot's logits become activity: it talks where its sigmoid exceeds ``threshold``; then its
    0/1 track is median-filtered over ``median_frames`` frames (odd; 1 = no filter; frames past either
    end count as silent, as ``scipy.signal.medfilt``'s zero padding)."""

    threshold: float = THRESHOLD
    median_frames: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise SpeechUnitsError(f"a diarization threshold is a probability in (0, 1), got {self.threshold}")
        if int(self.median_frames) != self.median_frames or self.median_frames < 1 or self.median_frames % 2 == 0:
            raise SpeechUnitsError(f"a median filter spans an odd number of frames >= 1, got {self.median_frames}")

    @property
    def key(self) -> str:
        """The setting's name in a grid table, e.g. ``"t0.4-m5"``."""
        return f"t{self.threshold:g}-m{self.median_frames}"

    def record(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "median_frames": int(self.median_frames)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> "SlotDecision":
        """The decision a probe recorded (the default 0.5 and no filter when it recorded none)."""
        if record is None:
            return cls()
        try:
            threshold, width = float(record["threshold"]), int(record["median_frames"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeechUnitsError(f"a diarization decision needs threshold and median_frames, got {record!r}") from exc
        return cls(threshold, width)


def median_frames_for(seconds: float, frame_rate: float) -> int:
    """The odd frame count nearest ``seconds`` at ``frame_rate`` (at least 1): 0.11 s is 11 frames at
    100 frames/s, 5 at 50."""
    return max(1, 2 * int(round((seconds * frame_rate - 1) / 2)) + 1)


def majority_filter(active: np.ndarray, width: int) -> np.ndarray:
    """uint8 ``[T, S]``: the median over ``width`` (odd) frames of each column of 0/1 ``active``, frames
    past the ends counting as 0 (``scipy.signal.medfilt(active, (width, 1))``; a median of 0/1 values
    is 1 where at least ``(width + 1) / 2`` of them are)."""
    active = (np.asarray(active) > 0).astype(np.int32)
    if width == 1 or active.shape[0] == 0:
        return active.astype(np.uint8)
    if width < 1 or width % 2 == 0:
        raise SpeechUnitsError(f"a median filter spans an odd number of frames >= 1, got {width}")
    half = width // 2
    padded = np.pad(active, ((half + 1, half), (0, 0)))
    sums = np.cumsum(padded, axis=0)
    window = sums[width:] - sums[:-width]  # [T, S]: the ones among frames t-half .. t+half
    return (window > half).astype(np.uint8)


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


def active_slots(logits: np.ndarray, decision: SlotDecision | None = None) -> np.ndarray:
    """uint8 ``[T, S]``: the slots that talk in each frame under ``decision`` (default: sigmoid above
    :data:`THRESHOLD`, no filter) for float ``[T, S]`` logits."""
    decision = decision or SlotDecision()
    cut = float(np.log(decision.threshold / (1.0 - decision.threshold)))  # sigmoid(x) > p <=> x > logit(p)
    return majority_filter(np.asarray(logits) > cut, decision.median_frames)


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


def tune_decision(references: Sequence[SpeakerActivity], logits: Sequence[np.ndarray],
                  frame_rate: float) -> tuple[SlotDecision, dict[str, dict[str, float]]]:
    """The :class:`SlotDecision` of the grid (:data:`DECISION_THRESHOLDS` x :data:`DECISION_MEDIAN_S`)
    with the least DER (0.25 s collar) of ``logits`` (float ``[T, S]`` each) against ``references``;
    ties go to the setting nearest the default (threshold 0.5, then the narrower filter).

    Returns the decision and every setting's :func:`diarization_scores`, keyed ``"t0.5-m1"``."""
    if not references:
        raise SpeechUnitsError("tuning a diarization decision needs at least one recording")
    widths = sorted({median_frames_for(s, frame_rate) for s in DECISION_MEDIAN_S})
    table: dict[str, dict[str, float]] = {}
    ranked: list[tuple[float, float, int, SlotDecision]] = []
    for width in widths:
        for threshold in DECISION_THRESHOLDS:
            decision = SlotDecision(threshold, width)
            scores = diarization_scores(references, [active_slots(x, decision) for x in logits])
            table[decision.key] = scores
            ranked.append((scores["der"], abs(threshold - THRESHOLD), width, decision))
    best = min(ranked, key=lambda r: r[:3])
    return best[3], table
