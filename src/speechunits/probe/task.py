"""Probe objectives as :class:`speechunits.training.task.Task` objects, and batched inference.

Task kinds and their objective (:data:`OBJECTIVES`):

* ``phones``, ``asr``, ``slots``: CTC over a label vocabulary whose id 0 is the blank; targets are id
  sequences; the loss is summed over utterances and counted per target token (``slots``: characters
  and slot tags, :mod:`speechunits.probe.slots`).
* ``frames``: cross-entropy per frame; targets ``[T]`` with -100 where a frame has no label
  (the targets are cut or padded with -100 to the input's frame count).
* ``speaker``, ``classify``: cross-entropy per utterance (statistics pooling in the head).
* ``verify``: speaker verification. The head pools each utterance into an embedding; training
  classifies the training speakers with additive-margin softmax (AM-softmax: logits ``s cos(theta)``
  of the embedding and each speaker's weight vector, the target's lowered by ``s m``), and dev and
  test score the cosine similarity of embeddings of speakers never seen in training
  (:mod:`speechunits.probe.verification`).
* ``diarize``: speaker diarization (SUPERB's SD): one logit per speaker slot and frame; targets
  float32 ``[T, S]`` (1 where slot ``s`` talks); permutation-invariant binary cross-entropy, the
  least over the orders of the slots per recording (:func:`speechunits.probe.diarize.pit_bce`),
  counted per valid frame and slot.
* ``enhance``, ``separate``: speech enhancement and separation (SUPERB's SE, SS): ``r x S`` sigmoid masks
  per input frame over the mixture's STFT bins; targets float ``[N, 1 + S, F]`` (mixture and reference
  magnitudes); the L1 distance of each masked mixture magnitude to its reference's, under the order of
  the sources that makes it least per utterance, counted per valid STFT frame, bin and source
  (:mod:`speechunits.probe.masking`).

Batches are length-bucketed (:class:`LengthBucketSampler`, ``fit="pad"``) under a budget of
padded frames, a pure function of ``(seed, index)``. With ``crop_frames`` (frame-level tasks only:
``frames``, ``diarize``, ``enhance``, ``separate``) they are random crops instead (``fit="crop"``):
every utterance of a batch is cut to ``min(crop_frames, its shortest)`` input frames at an offset drawn
from ``(seed, epoch, position)``, its frame targets (``r`` STFT frames per input frame for the masks)
cut to match, as separation and enhancement recipes train on segments of a few seconds. The task
holds the (already computed, cached) inputs: the frozen encoder never enters the model, so the
loop's checkpoints hold only the featurizer and head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.probe.defaults import DEFAULT_BATCH_FRAMES
from speechunits.probe.inputs import Sample
from speechunits.training.batching import LengthBucketSampler, mix_seed
from speechunits.training.task import LossOutput, move_to

CTC = "ctc"
FRAME = "frame"
UTTERANCE = "utterance"
MARGIN = "margin"
PIT = "pit"
MASK = "mask"
#: Task kind -> objective.
OBJECTIVES = {"phones": CTC, "asr": CTC, "frames": FRAME, "speaker": UTTERANCE, "classify": UTTERANCE,
              "verify": MARGIN, "slots": CTC, "diarize": PIT,
              "enhance": MASK, "separate": MASK}
#: Objectives that label every input frame (a model that stacks frames cannot serve them).
FRAME_LEVEL = (FRAME, PIT, MASK)
IGNORE = -100


def objective_of(task: str) -> str:
    """The objective of task kind ``task`` (SpeechUnitsError for an unknown one)."""
    if task not in OBJECTIVES:
        raise SpeechUnitsError(f"unknown probe task {task!r}: expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[task]


@dataclass
class ProbeBatch:
    """Padded inputs and targets of a few utterances.

    Attributes:
        x: floating ``[B, L, T, D]`` features (the cache's dtype) or int64 ``[B, T, S]`` unit ids (zero padded).
        lengths: int64 ``[B]`` valid frames.
        durations: int64 ``[B, T]`` (deduplicated units) or None.
        targets: CTC: int64 ``[B, U]`` (padded with 0); frame: ``[B, T]`` (IGNORE padded);
            PIT: float32 ``[B, T, S]`` (zero padded; ``lengths`` masks the padding);
            MASK: float32 ``[B, N, 1 + S, F]`` STFT magnitudes (zero padded);
            utterance: ``[B]``; None when predicting.
        target_lengths: int64 ``[B]`` (CTC; MASK: valid STFT frames) or None.
        (utterance and margin objectives: ``targets`` ``[B]`` class ids)
    """

    x: torch.Tensor
    lengths: torch.Tensor
    durations: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    target_lengths: torch.Tensor | None = None


def collate(samples: Sequence[Sample], objective: str, targets: Sequence[Any] | None = None) -> ProbeBatch:
    """Pad ``samples`` (and their encoded ``targets``) into one :class:`ProbeBatch`."""
    lengths = torch.tensor([s.num_frames for s in samples], dtype=torch.int64)
    t = int(lengths.max()) if len(samples) else 0
    if samples[0].features is not None:
        first = samples[0].features
        x = torch.zeros(len(samples), first.shape[0], t, first.shape[2], dtype=first.dtype)  # the cache's dtype:
        for i, s in enumerate(samples):  # half the bytes to move for a float16 cache; the model reads float32
            x[i, :, : s.num_frames] = s.features  # type: ignore[union-attr]
    else:
        x = torch.zeros(len(samples), t, samples[0].units.shape[1], dtype=torch.int64)  # type: ignore[union-attr]
        for i, s in enumerate(samples):
            x[i, : s.num_frames] = s.units  # type: ignore[index]
    durations = None
    if samples[0].durations is not None:
        durations = torch.zeros(len(samples), t, dtype=torch.int64)
        for i, s in enumerate(samples):
            durations[i, : s.num_frames] = s.durations  # type: ignore[index]
    batch = ProbeBatch(x, lengths, durations)
    if targets is None:
        return batch
    if objective == CTC:
        seqs = [torch.as_tensor(np.asarray(y, dtype=np.int64)) for y in targets]
        batch.target_lengths = torch.tensor([len(y) for y in seqs], dtype=torch.int64)
        batch.targets = torch.zeros(len(seqs), max(1, int(batch.target_lengths.max())), dtype=torch.int64)
        for i, y in enumerate(seqs):
            batch.targets[i, : len(y)] = y
    elif objective == FRAME:
        batch.targets = torch.full((len(samples), t), IGNORE, dtype=torch.int64)
        for i, (s, y) in enumerate(zip(samples, targets)):
            n = min(s.num_frames, len(y))
            batch.targets[i, :n] = torch.as_tensor(np.asarray(y[:n], dtype=np.int64))
    elif objective == PIT:
        slots = np.asarray(targets[0]).shape[1]
        batch.targets = torch.zeros(len(samples), t, slots, dtype=torch.float32)
        for i, (s, y) in enumerate(zip(samples, targets)):
            n = min(s.num_frames, len(y))
            batch.targets[i, :n] = torch.as_tensor(np.asarray(y[:n], dtype=np.float32))
    elif objective == MASK:
        arrays = [np.asarray(y) for y in targets]
        batch.target_lengths = torch.tensor([len(y) for y in arrays], dtype=torch.int64)
        batch.targets = torch.zeros(len(arrays), max(1, int(batch.target_lengths.max())), *arrays[0].shape[1:],
                                    dtype=torch.float32)
        for i, y in enumerate(arrays):
            batch.targets[i, : len(y)] = torch.as_tensor(y.astype(np.float32))
    else:
        batch.targets = torch.tensor([int(y) for y in targets], dtype=torch.int64)
    return batch


def output_lengths(model: nn.Module, lengths: torch.Tensor) -> torch.Tensor:
    """Valid output frames of ``model`` (a probe model, possibly DDP-wrapped) for inputs of ``lengths``
    frames: fewer than the input's when it stacks frames."""
    inner = getattr(model, "module", model)
    method = getattr(inner, "output_lengths", None)
    return lengths if method is None else method(lengths)


def ctc_min_frames(target: Sequence[int]) -> int:
    """The fewest frames a CTC alignment of ``target`` needs: one per label, plus a blank between
    every two equal neighbours."""
    ids = list(target)
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def ctc_too_short(frames: Mapping[str, int], targets: Mapping[str, Sequence[int]]) -> list[str]:
    """Ids whose output ``frames`` cannot hold a CTC alignment of their targets (their loss is infinite:
    zeroed in training, so they teach nothing)."""
    return [i for i, n in frames.items() if i in targets and n < ctc_min_frames(targets[i])]


def batch_loss(model: nn.Module, batch: ProbeBatch, objective: str,
               class_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, float, dict]:
    """Summed loss, its count and the metrics (``{name: (num, den)}``) of one batch; with
    ``class_weights`` ``[C]`` (utterance tasks) each utterance's loss is weighted by its class's
    weight and the count is the sum of those weights. PIT: the count is valid frames x slots and
    ``acc`` the share of those decisions right under each recording's best order of the slots."""
    logits = model(batch.x, batch.lengths, batch.durations).float()
    assert batch.targets is not None
    if objective == CTC:
        log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)  # [T', B, C]
        lengths = output_lengths(model, batch.lengths)
        loss = nn.functional.ctc_loss(log_probs, batch.targets, lengths, batch.target_lengths,
                                      blank=0, reduction="sum", zero_infinity=True)
        return loss, float(batch.target_lengths.sum()), {}  # type: ignore[union-attr]
    if objective == MASK:
        from speechunits.probe.masking import BINS, pit_mask_l1

        sources = batch.targets.shape[2] - 1
        upsample = logits.shape[-1] // (BINS * sources)
        valid = torch.minimum(batch.lengths * upsample, batch.target_lengths)  # type: ignore[arg-type]
        loss = pit_mask_l1(logits, batch.targets, valid, upsample)
        return loss, float(valid.sum()) * BINS * sources, {}
    if objective in FRAME_LEVEL and logits.shape[1] != batch.targets.shape[1]:
        raise SpeechUnitsError(f"frame labels: {batch.targets.shape[1]} frames, the model gives "
                               f"{logits.shape[1]} (a frame task cannot stack frames)")
    if objective == PIT:
        from speechunits.probe.diarize import pit_bce

        loss, correct_pit = pit_bce(logits, batch.targets, batch.lengths)
        count = float(batch.lengths.sum()) * logits.shape[-1]
        return loss, count, {"acc": (float(correct_pit), count)}
    if objective == FRAME:
        flat = logits.reshape(-1, logits.shape[-1])
        targets = batch.targets.reshape(-1)
        loss = nn.functional.cross_entropy(flat, targets, ignore_index=IGNORE, reduction="sum")
        valid = targets != IGNORE
        correct = float((flat.argmax(-1)[valid] == targets[valid]).sum())
        count = float(valid.sum())
        return loss, count, {"acc": (correct, count)}
    correct = float((logits.argmax(-1) == batch.targets).sum())
    metrics = {"acc": (correct, float(len(batch.targets)))}
    if objective == MARGIN:  # AM-softmax: the model gives s cos(theta); the target's logit loses s m
        shift = getattr(model, "module", model).margin_shift
        logits = logits - torch.zeros_like(logits).scatter_(1, batch.targets[:, None], shift)
    if class_weights is not None:
        weights = class_weights.to(logits.device)
        loss = nn.functional.cross_entropy(logits, batch.targets, weight=weights, reduction="sum")
        return loss, float(weights[batch.targets].sum()), metrics
    loss = nn.functional.cross_entropy(logits, batch.targets, reduction="sum")
    return loss, float(len(batch.targets)), metrics


def crop_sample(sample: Sample, offset: int, frames: int) -> Sample:
    """Input frames ``[offset, offset + frames)`` of ``sample`` (not deduplicated: frame-aligned inputs)."""
    if sample.durations is not None:
        raise SpeechUnitsError("crops need frame-aligned inputs; deduplicated units and BPE tokens are not")
    if sample.features is not None:
        return Sample(features=sample.features[:, offset: offset + frames])
    return Sample(units=sample.units[offset: offset + frames])  # type: ignore[index]


def crop_target(target: Any, objective: str, offset: int, frames: int, upsample: int = 1) -> Any:
    """The frame targets that go with :func:`crop_sample`'s crop: ``FRAME``/``PIT`` rows ``[offset,
    offset + frames)``; ``MASK`` STFT rows ``[offset * upsample, (offset + frames) * upsample)``."""
    if objective in (FRAME, PIT):
        return target[offset: offset + frames]
    if objective == MASK:
        return target[offset * upsample: (offset + frames) * upsample]
    raise SpeechUnitsError(f"crops are for frame-level objectives ({', '.join(FRAME_LEVEL)}), not {objective!r}")


class ProbeTask:
    """Training batches of ``ids`` and the loss of ``task`` (see the module docstring).

    Args:
        task: task kind (``phones``, ``asr``, ``frames``, ``speaker``, ``classify``).
        samples: cached inputs by utterance id.
        targets: encoded targets by id (id sequences, per-frame ids or a class id).
        ids: the training utterances.
        frame_rate: input frames per second (for the amount logged: audio seconds).
        batch_frames: padded frames per batch. seed: batch order.
        class_weights: the loss weight of each class id (``speaker``, ``classify``; None: all 1).
        crop_frames: train on random crops of at most this many input frames (frame-level tasks;
            None: whole utterances); ``batch_frames`` then bounds ``len(batch) x crop length``.
    """

    def __init__(self, task: str, samples: Mapping[str, Sample], targets: Mapping[str, Any], ids: Sequence[str], *,
                 frame_rate: float, batch_frames: int = DEFAULT_BATCH_FRAMES, seed: int = 0,
                 max_batch_size: int | None = None, class_weights: Sequence[float] | None = None,
                 crop_frames: int | None = None):
        self.objective = objective_of(task)
        if crop_frames is not None and (self.objective not in FRAME_LEVEL or crop_frames < 1):
            raise SpeechUnitsError(f"--crop-seconds: crops of at least one frame, for frame-level tasks (frames, "
                                   f"diarize, enhance, separate), not {task!r} with {crop_frames} frames")
        if class_weights is not None and self.objective != UTTERANCE:
            raise SpeechUnitsError(f"class weights apply to utterance-level tasks (speaker, classify), not {task!r}")
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.ids = [i for i in ids if i in samples and i in targets]
        if not self.ids:
            raise SpeechUnitsError("no training utterance has both an input and a label")
        self.samples = samples
        self.targets = targets
        self.frame_rate = frame_rate
        self.seed = seed
        self.crop_frames = crop_frames
        self.upsample = 1
        if crop_frames is not None and self.objective == MASK:
            from speechunits.probe.masking import upsample_factor

            self.upsample = upsample_factor(frame_rate)
        lengths = [samples[i].num_frames for i in self.ids]
        if crop_frames is None:
            self.sampler = LengthBucketSampler(lengths, batch_frames, fit="pad", max_batch_size=max_batch_size,
                                               seed=seed)
        else:
            self.sampler = LengthBucketSampler([min(n, crop_frames) for n in lengths], batch_frames, fit="crop",
                                               max_batch_size=max_batch_size, seed=seed)

    def batch(self, index: int) -> ProbeBatch:
        chosen = [self.ids[i] for i in self.sampler.batch(index)]
        samples = [self.samples[i] for i in chosen]
        targets = [self.targets[i] for i in chosen]
        if self.crop_frames is not None:
            rng = np.random.default_rng(mix_seed(self.seed, *self.sampler.locate(index), 5))
            frames = min(self.crop_frames, min(s.num_frames for s in samples))
            offsets = [int(rng.integers(0, s.num_frames - frames + 1)) for s in samples]
            targets = [crop_target(y, self.objective, a, frames, self.upsample) for y, a in zip(targets, offsets)]
            samples = [crop_sample(s, a, frames) for s, a in zip(samples, offsets)]
        return collate(samples, self.objective, targets)

    def loss(self, model: nn.Module, batch: ProbeBatch) -> LossOutput:
        loss, count, metrics = batch_loss(model, batch, self.objective, self.class_weights)
        frames = batch.durations.sum() if batch.durations is not None else batch.lengths.sum()
        return LossOutput(loss=loss, count=count, metrics=metrics, amount=float(frames) / self.frame_rate)


@torch.no_grad()
def predict_logits(model: nn.Module, samples: Mapping[str, Sample], ids: Sequence[str], *,
                   device: torch.device | str = "cpu", batch_frames: int = DEFAULT_BATCH_FRAMES,
                   embeddings: bool = False) -> dict[str, np.ndarray]:
    """Logits of every id in ``ids``: float32 ``[T', C]`` (frame level, valid output frames only:
    ``T' = ceil(T / stack)`` for a model that stacks frames) or ``[C]``; with ``embeddings``
    (``verify`` probes) the unit-length utterance embedding ``[E]`` instead.

    Batches are length-bucketed like training; results do not depend on the batching (padding
    is masked), up to float rounding.
    """
    ids = [i for i in ids if i in samples]
    if not ids:
        return {}
    was_training = model.training
    model.eval()
    device = torch.device(device)
    sampler = LengthBucketSampler([samples[i].num_frames for i in ids], batch_frames, fit="pad", shuffle=False)
    out: dict[str, np.ndarray] = {}
    try:
        for index in range(len(sampler)):
            chosen = [ids[i] for i in sampler.batch(index)]
            batch = move_to(collate([samples[i] for i in chosen], FRAME), device)
            run = getattr(model, "module", model).embed if embeddings else model
            logits = run(batch.x, batch.lengths, batch.durations).float().cpu().numpy()
            valid = output_lengths(model, batch.lengths).tolist()
            for row, utt_id in enumerate(chosen):
                out[utt_id] = logits[row, : valid[row]] if logits.ndim == 3 else logits[row]
    finally:
        model.train(was_training)
    return out
