"""The training-loop tasks of the sequence models (:class:`speechunits.training.Task`).

Both batch with :class:`~speechunits.training.batching.LengthBucketSampler` (``fit="pad"``), a
pure function of ``(seed, index)``, so DDP sharding and exact resume come from the loop.

* :class:`TTSTask`: budget in padded unit frames; loss = frame cross-entropy summed over frames
  (of the parallel head, plus the autoregressive head's teacher-forced one when the model has it)
  + ``duration_weight`` x mean squared error of ``log(1 + frames)`` per symbol x frames (so
  the loop's per-frame mean is ``CE + w * MSE``); metrics: frame accuracy (``ar_acc`` for the
  autoregressive head), duration MSE.
  Items without durations (a corpus without alignments) take them from the model's monotonic
  alignment search, and add ``alignment_weight`` x the aligner's forward-sum loss summed over
  utterances (per frame: a negative log-likelihood per frame); metric ``align``.
* :class:`Seq2SeqTask`: budget in padded source frames; loss = label-smoothed cross-entropy of
  the target symbols (``</s>`` included) summed over symbols, + ``ctc_weight`` x per-character
  CTC loss of the target text x symbols; metrics: symbol accuracy, CTC loss per character.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.seq2seq.alignment import forward_sum_loss
from speechunits.seq2seq.symbols import BOS, EOS, PAD
from speechunits.training.batching import LengthBucketSampler
from speechunits.training.task import LossOutput

IGNORE = -100


# -- TTS -------------------------------------------------------------------------------------------

@dataclass
class TTSBatch:
    """Padded TTS examples: tokens / durations int64 ``[B, N]`` (durations None: to be learned),
    lengths ``[B]``, units ``[B, T]`` (IGNORE padded), frame_lengths ``[B]``, speakers ``[B]`` or None."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    durations: torch.Tensor | None
    units: torch.Tensor
    frame_lengths: torch.Tensor
    speakers: torch.Tensor | None = None


@dataclass
class TTSItem:
    """One encoded TTS example: symbol ids, durations (None: learned by alignment search), frame unit ids,
    speaker row."""

    tokens: np.ndarray
    durations: np.ndarray | None
    units: np.ndarray
    speaker: int | None = None


def collate_tts(items: Sequence[TTSItem]) -> TTSBatch:
    n = max(len(i.tokens) for i in items)
    t = max(len(i.units) for i in items)
    tokens = torch.full((len(items), n), PAD, dtype=torch.long)
    learned = [item.durations is None for item in items]
    if any(learned) and not all(learned):
        raise SpeechUnitsError("a TTS batch mixes examples with and without durations")
    durations = None if learned[0] else torch.zeros(len(items), n, dtype=torch.long)
    units = torch.full((len(items), t), IGNORE, dtype=torch.long)
    for b, item in enumerate(items):
        tokens[b, : len(item.tokens)] = torch.as_tensor(item.tokens)
        if durations is not None:
            durations[b, : len(item.durations)] = torch.as_tensor(item.durations)
        units[b, : len(item.units)] = torch.as_tensor(item.units)
    speakers = None if items[0].speaker is None else torch.tensor([int(i.speaker) for i in items], dtype=torch.long)
    return TTSBatch(tokens, torch.tensor([len(i.tokens) for i in items]), durations, units,
                    torch.tensor([len(i.units) for i in items]), speakers)


def tts_loss(model: nn.Module, batch: TTSBatch, duration_weight: float,
             alignment_weight: float = 1.0) -> tuple[torch.Tensor, float, dict]:
    out = model(batch.tokens, batch.lengths, batch.durations, batch.speakers, units=batch.units,
                frame_lengths=batch.frame_lengths)
    logits, log_durations = out.logits.float(), out.log_durations
    t = min(logits.shape[1], batch.units.shape[1])
    targets = batch.units[:, :t]
    flat = logits[:, :t].reshape(-1, logits.shape[-1])
    ce = nn.functional.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    valid = targets.reshape(-1) != IGNORE
    frames = float(valid.sum())
    token_mask = batch.tokens != PAD
    log_target = torch.log1p(out.durations.detach().float())
    squared = ((log_durations.float() - log_target) ** 2)[token_mask]
    tokens = float(token_mask.sum())
    loss = ce + duration_weight * squared.mean() * frames
    correct = float((flat.argmax(-1)[valid] == targets.reshape(-1)[valid]).sum())
    metrics = {"acc": (correct, frames), "dur_mse": (float(squared.detach().sum()), tokens)}
    if out.ar_logits is not None:
        ar_flat = out.ar_logits.float()[:, :t].reshape(-1, logits.shape[-1])
        loss = loss + nn.functional.cross_entropy(ar_flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
        metrics["ar_acc"] = (float((ar_flat.argmax(-1)[valid] == targets.reshape(-1)[valid]).sum()), frames)
    if out.alignment_log_probs is not None:
        align = forward_sum_loss(out.alignment_log_probs, batch.lengths, batch.frame_lengths).sum()
        loss = loss + alignment_weight * align
        metrics["align"] = (float(align.detach()), frames)
    return loss, frames, metrics


class TTSTask:
    """Training batches of encoded TTS examples (see the module docstring).

    Args:
        items: encoded examples. frame_rate: unit frames per second (amount logged = audio seconds).
        batch_frames: padded unit frames per batch. seed: batch order. duration_weight, alignment_weight: see above.
    """

    def __init__(self, items: Sequence[TTSItem], *, frame_rate: float, batch_frames: int = 6000, seed: int = 0,
                 duration_weight: float = 1.0, alignment_weight: float = 1.0, max_batch_size: int | None = None):
        if not items:
            raise SpeechUnitsError("no training utterances")
        self.items = list(items)
        self.frame_rate = frame_rate
        self.duration_weight = duration_weight
        self.alignment_weight = alignment_weight
        self.sampler = LengthBucketSampler([len(i.units) for i in self.items], batch_frames, fit="pad",
                                           max_batch_size=max_batch_size, seed=seed)

    def batch(self, index: int) -> TTSBatch:
        return collate_tts([self.items[i] for i in self.sampler.batch(index)])

    def loss(self, model: nn.Module, batch: TTSBatch) -> LossOutput:
        loss, frames, metrics = tts_loss(model, batch, self.duration_weight, self.alignment_weight)
        return LossOutput(loss=loss, count=frames, metrics=metrics, amount=frames / self.frame_rate)


# -- sequence to sequence --------------------------------------------------------------------------

@dataclass
class Seq2SeqItem:
    """One encoded pair: source (float ``[T, D]`` features or int ``[T]`` symbol ids), target symbol ids
    (without ``<s>``/``</s>``), CTC character ids (or None) and the source's audio seconds."""

    source: np.ndarray | torch.Tensor
    target: np.ndarray
    ctc: np.ndarray | None = None
    seconds: float = 0.0


@dataclass
class Seq2SeqBatch:
    """source ``[B, T, D]`` or ``[B, T]``, lengths ``[B]``; prev (``<s>`` + target) and gold (target +
    ``</s>``) int64 ``[B, U]`` PAD padded; ctc ``[B, C]`` / ctc_lengths ``[B]`` or None; seconds of source audio."""

    source: torch.Tensor
    lengths: torch.Tensor
    prev: torch.Tensor | None = None
    gold: torch.Tensor | None = None
    ctc: torch.Tensor | None = None
    ctc_lengths: torch.Tensor | None = None
    seconds: float = 0.0


def collate_sources(sources: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded sources and their lengths (features stay float32, symbols int64)."""
    tensors = [torch.as_tensor(np.asarray(s)) if not isinstance(s, torch.Tensor) else s for s in sources]
    lengths = torch.tensor([x.shape[0] for x in tensors], dtype=torch.long)
    t = int(lengths.max())
    if tensors[0].is_floating_point():
        out = torch.zeros(len(tensors), t, tensors[0].shape[1], dtype=torch.float32)
        for b, x in enumerate(tensors):
            out[b, : x.shape[0]] = x.float()
    else:
        out = torch.full((len(tensors), t), PAD, dtype=torch.long)
        for b, x in enumerate(tensors):
            out[b, : x.shape[0]] = x.long()
    return out, lengths


def collate_seq2seq(items: Sequence[Seq2SeqItem]) -> Seq2SeqBatch:
    source, lengths = collate_sources([i.source for i in items])
    u = max(len(i.target) for i in items) + 1
    prev = torch.full((len(items), u), PAD, dtype=torch.long)
    gold = torch.full((len(items), u), PAD, dtype=torch.long)
    for b, item in enumerate(items):
        target = torch.as_tensor(np.asarray(item.target, dtype=np.int64))
        prev[b, 0] = BOS
        prev[b, 1: len(target) + 1] = target
        gold[b, : len(target)] = target
        gold[b, len(target)] = EOS
    batch = Seq2SeqBatch(source, lengths, prev, gold, seconds=float(sum(i.seconds for i in items)))
    if items[0].ctc is not None:
        c = max(1, max(len(i.ctc) for i in items))  # type: ignore[arg-type]
        batch.ctc = torch.zeros(len(items), c, dtype=torch.long)
        for b, item in enumerate(items):
            batch.ctc[b, : len(item.ctc)] = torch.as_tensor(item.ctc)  # type: ignore[arg-type]
        batch.ctc_lengths = torch.tensor([len(i.ctc) for i in items], dtype=torch.long)  # type: ignore[arg-type]
    return batch


def seq2seq_loss(model: nn.Module, batch: Seq2SeqBatch, *, label_smoothing: float,
                 ctc_weight: float) -> tuple[torch.Tensor, float, dict]:
    logits, memory, memory_lengths = model(batch.source, batch.lengths, batch.prev)
    logits = logits.float()
    flat = logits.reshape(-1, logits.shape[-1])
    gold = batch.gold.reshape(-1)  # type: ignore[union-attr]
    loss = nn.functional.cross_entropy(flat, gold, ignore_index=PAD, reduction="sum",
                                       label_smoothing=label_smoothing)
    valid = gold != PAD
    count = float(valid.sum())
    metrics = {"acc": (float((flat.argmax(-1)[valid] == gold[valid]).sum()), count)}
    head = getattr(model, "module", model).ctc
    if batch.ctc is not None and head is not None and ctc_weight > 0:
        log_probs = torch.log_softmax(head(memory).float(), dim=-1).transpose(0, 1)
        ctc = nn.functional.ctc_loss(log_probs, batch.ctc, memory_lengths, batch.ctc_lengths, blank=0,
                                     reduction="sum", zero_infinity=True)
        chars = float(batch.ctc_lengths.sum())  # type: ignore[union-attr]
        loss = loss + ctc_weight * ctc / max(chars, 1.0) * count
        metrics["ctc"] = (float(ctc.detach()), chars)
    return loss, count, metrics


class Seq2SeqTask:
    """Training batches of encoded pairs (see the module docstring).

    Args:
        items: encoded pairs. batch_frames: padded source frames per batch. seed: batch order.
        label_smoothing: of the target cross-entropy. ctc_weight: of the auxiliary CTC loss.
    """

    def __init__(self, items: Sequence[Seq2SeqItem], *, batch_frames: int = 20000, seed: int = 0,
                 label_smoothing: float = 0.1, ctc_weight: float = 0.0, max_batch_size: int | None = None):
        if not items:
            raise SpeechUnitsError("no training pairs")
        self.items = list(items)
        self.label_smoothing = label_smoothing
        self.ctc_weight = ctc_weight
        self.sampler = LengthBucketSampler([len(i.source) for i in self.items], batch_frames, fit="pad",
                                           max_batch_size=max_batch_size, seed=seed)

    def batch(self, index: int) -> Seq2SeqBatch:
        return collate_seq2seq([self.items[i] for i in self.sampler.batch(index)])

    def loss(self, model: nn.Module, batch: Seq2SeqBatch) -> LossOutput:
        loss, count, metrics = seq2seq_loss(model, batch, label_smoothing=self.label_smoothing,
                                            ctc_weight=self.ctc_weight)
        return LossOutput(loss=loss, count=count, metrics=metrics, amount=batch.seconds)
