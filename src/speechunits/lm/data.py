"""Training data of a unit LM: token sequences and the :class:`LMTask` of the one training loop.

A sequence is ``<s> tokens </s>``; utterances longer than ``max_tokens`` are cut into pieces.
Batches are length-bucketed (:class:`~speechunits.training.batching.LengthBucketSampler`,
padded, under a token budget) and a pure function of ``(seed, index)``: the masked LM's mask
and the interleaving swaps come from a generator seeded by ``(seed, index)``, so DDP sharding
and exact resume hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.lm.interleave import InterleavedUtterance
from speechunits.lm.vocab import BOS_ID, EOS_ID, MASK_ID, NUM_SPECIAL, PAD_ID
from speechunits.training.batching import LengthBucketSampler, mix_seed
from speechunits.training.task import LossOutput

IGNORE = -100


@dataclass
class LMBatch:
    """``input_ids [B, L]`` int64, ``attention_mask [B, L]`` int64, ``labels [B, L]`` (IGNORE where not
    predicted; for causal LMs the label at t is the token at t, predicted from ``< t``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


def with_specials(tokens: np.ndarray) -> np.ndarray:
    return np.concatenate(([BOS_ID], np.asarray(tokens, dtype=np.int64), [EOS_ID]))


def cut(tokens: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """``tokens`` (without specials) in pieces of at most ``max_tokens - 2`` (room for ``<s> </s>``)."""
    step = max_tokens - 2
    if tokens.size <= step:
        return [tokens]
    return [tokens[i:i + step] for i in range(0, tokens.size, step)]


def random_span(seq: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """``<s> x_i .. x_j`` of ``seq = <s> x_1 .. x_n </s>``: start uniform over the n tokens, end
    uniform after it; ``</s>`` is kept only when the span reaches ``x_n``."""
    inner = seq[1:-1]
    n = inner.size
    if n < 2:
        return seq
    start = int(torch.randint(n, (1,), generator=generator))
    stop = start + 1 + int(torch.randint(n - start, (1,), generator=generator))
    span = inner[start:stop]
    tail = [EOS_ID] if stop == n else []
    return np.concatenate(([BOS_ID], span, tail)).astype(np.int64)


def pad_batch(sequences: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids [B, L]`` and ``attention_mask [B, L]``."""
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def mask_tokens(ids: torch.Tensor, attention: torch.Tensor, prob: float, vocab_size: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of non-special tokens: ``prob`` of them are predicted; of those 80 % become
    ``<mask>``, 10 % a random unit or word token, 10 % stay. Returns (inputs, labels)."""
    maskable = (ids >= NUM_SPECIAL) & (attention > 0)
    chosen = (torch.rand(ids.shape, generator=generator) < prob) & maskable
    # at least one prediction per row that has a maskable token
    for row in range(ids.shape[0]):
        if not chosen[row].any() and maskable[row].any():
            positions = torch.nonzero(maskable[row]).flatten()
            chosen[row, positions[torch.randint(len(positions), (1,), generator=generator)]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = MASK_ID
    random_tokens = torch.randint(NUM_SPECIAL, vocab_size, ids.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_tokens[swap]
    return inputs, labels


class LMTask:
    """Causal or masked LM training over token sequences (a :class:`speechunits.training.Task`).

    Args:
        sequences: token ids per item, with ``<s> ... </s>`` (plain items).
        interleaved: per item, an :class:`InterleavedUtterance` (its words swapped to text with
            ``interleave_prob`` at every batch) or None; when given, its length is ``sequences``'.
        objective: "causal" or "masked".
        crop_prob: at every batch, each item is replaced with this probability by a random span
            ``<s> x_i .. x_j`` (start and end uniform, ``</s>`` only when the span reaches the
            utterance's end). An LM trained on whole utterances only meets ``<s>`` before an
            utterance's first token; the lexical benchmark scores words spoken alone.
    Logged: ``acc`` (next-token or masked-token accuracy); amount: tokens.
    """

    def __init__(self, sequences: list[np.ndarray], *, objective: str, vocab_size: int, batch_tokens: int,
                 seed: int, mask_prob: float = 0.15, interleaved: list[InterleavedUtterance | None] | None = None,
                 interleave_prob: float = 0.0, crop_prob: float = 0.0):
        if not sequences:
            raise SpeechUnitsError("no training sequences")
        self.sequences = sequences
        self.objective = objective
        self.vocab_size = vocab_size
        self.seed = seed
        self.mask_prob = mask_prob
        self.interleaved = interleaved
        self.interleave_prob = interleave_prob
        self.crop_prob = crop_prob
        self.sampler = LengthBucketSampler([len(s) for s in sequences], batch_tokens, fit="pad", seed=seed)

    def item(self, i: int, generator: torch.Generator) -> np.ndarray:
        if self.interleaved is None or self.interleaved[i] is None or self.interleave_prob <= 0:
            seq = self.sequences[i]
        else:
            utt = self.interleaved[i]
            swap = torch.rand(len(utt.words), generator=generator).numpy() < self.interleave_prob
            seq = with_specials(utt.tokens(swap))
        if self.crop_prob > 0 and float(torch.rand((), generator=generator)) < self.crop_prob:
            seq = random_span(seq, generator)
        return seq

    def batch(self, index: int) -> LMBatch:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, index, 11))
        seqs = [self.item(i, gen) for i in self.sampler.batch(index)]
        ids, attention = pad_batch(seqs)
        if self.objective == "causal":
            labels = torch.where(attention > 0, ids, torch.full_like(ids, IGNORE))
            return LMBatch(ids, attention, labels)
        inputs, labels = mask_tokens(ids, attention, self.mask_prob, self.vocab_size, gen)
        return LMBatch(inputs, attention, labels)

    def loss(self, model: torch.nn.Module, batch: LMBatch) -> LossOutput:
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        labels = batch.labels
        if self.objective == "causal":
            logits, labels = logits[:, :-1], labels[:, 1:]
        logits = logits.float().reshape(-1, logits.shape[-1])
        labels = labels.reshape(-1)
        valid = labels != IGNORE
        loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
        count = float(valid.sum())
        correct = float((logits.argmax(-1)[valid] == labels[valid]).sum())
        return LossOutput(loss=loss, count=count, metrics={"acc": (correct, count)},
                          amount=float(batch.attention_mask.sum()))
