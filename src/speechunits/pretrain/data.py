"""Training audio: loading, length-bucketed batches by audio budget, random crops.

The whole corpus is held in memory (an hour of 16 kHz audio is ~230 MB of float32).
Batches are a pure function of ``(seed, epoch, position)``, so a resumed run sees exactly
the batches an uninterrupted one would:

* utterances sorted by length are cut into buckets by
  :class:`~speechunits.training.batching.LengthBucketSampler` with ``fit="crop"``: a bucket
  starting at the shortest utterance ``u`` takes ``max(1, budget // min(len(u), crop))``
  utterances; the bucket order is shuffled per epoch;
* each utterance of a bucket is cropped to the bucket's crop length at a random offset
  that is a multiple of the model hop, so target frames stay aligned;
* with ``--augment`` (:class:`speechunits.augment.RandomAugment`), row ``r`` of batch ``i``
  is replaced by a perturbed copy of its crop, drawn from a generator seeded by
  ``(seed, i, r)``; the labels stay those of the clean crop (the perturbations keep the
  length), so the model must predict the clean audio's units from the perturbed audio.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from speechunits.augment import RandomAugment
from speechunits.corpus import Corpus
from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.export import SAMPLE_RATE
from speechunits.pretrain.head import IGNORE
from speechunits.training.batching import LengthBucketSampler, mix_seed

log = logging.getLogger(__name__)


def load_waves(corpus: Corpus, sample_rate: int, min_samples: int) -> list[tuple[str, np.ndarray]]:
    """``(id, float32 [T])`` for every usable utterance (read by the one loader,
    :func:`speechunits.features.load_audio_items`); unreadable or too-short files are skipped.

    Raises:
        SpeechUnitsError: when no utterance is usable.
    """
    from speechunits.features.loading import load_audio_items

    waves: list[tuple[str, np.ndarray]] = []
    skipped: list[str] = []
    for item in load_audio_items(corpus, sample_rate, min_samples):
        if item.audio is None:
            skipped.append(str(item.error))
        else:
            waves.append((item.utt.id, item.audio.samples))
    if skipped:
        log.warning("%s: skipped %d unusable file(s), e.g. %s", corpus.source, len(skipped), skipped[0])
    if not waves:
        detail = f" ({len(skipped)} file(s) skipped, e.g. {skipped[0]})" if skipped else ""
        raise SpeechUnitsError(
            f"{corpus.source}: no usable audio for pretraining (need files of at least {min_samples} samples"
            f" = {min_samples / sample_rate:.2f} s){detail}"
        )
    return waves


@dataclass
class Batch:
    """``waves [B, L]`` float32, ``labels [B, F]`` int64 (IGNORE where none)."""

    waves: torch.Tensor
    labels: torch.Tensor


class CropBatches:
    """Deterministic length-bucketed batches of random crops.

    Args:
        waves: ``(id, [T])`` training audio.
        labels: id -> int64 ``[F]`` targets at the model rate (ids without labels are dropped).
        crop_samples: longest crop.
        budget_samples: audio per batch (sum over the batch of crop lengths, at most).
        hop: model hop in samples (crop offsets are multiples of it).
        model_frames: frames of the model for a number of samples.
        seed: run seed.
        augment: perturbations of the model input (the labels stay the clean crop's).
        sample_rate: of ``waves`` (what the perturbations are told).
    """

    def __init__(self, waves: Iterable[tuple[str, np.ndarray]], labels: dict[str, np.ndarray], crop_samples: int,
                 budget_samples: int, hop: int, model_frames, seed: int, augment: RandomAugment | None = None,
                 sample_rate: int = SAMPLE_RATE):
        items = [(utt_id, wave) for utt_id, wave in waves if utt_id in labels]
        if not items:
            raise SpeechUnitsError("no training utterance has targets")
        items.sort(key=lambda item: (len(item[1]), item[0]))
        self.ids = [utt_id for utt_id, _ in items]
        self.waves = [wave for _, wave in items]
        self.labels = [labels[utt_id] for utt_id in self.ids]
        self.crop_samples = crop_samples
        self.hop = hop
        self.model_frames = model_frames
        self.seed = seed
        self.augment = augment if augment else None
        self.sample_rate = sample_rate
        self.sampler = LengthBucketSampler([min(len(w), crop_samples) for w in self.waves], budget_samples,
                                           fit="crop", seed=seed)
        self.total_samples = sum(len(w) for w in self.waves)

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.sampler)

    def batch(self, index: int) -> Batch:
        """Global batch ``index`` (epoch = index // len(self))."""
        epoch, position = self.sampler.locate(index)
        members = self.sampler.batch(index)
        rng = np.random.default_rng(mix_seed(self.seed, epoch, position, 2))
        length = min(min(len(self.waves[i]) for i in members), self.crop_samples)
        frames = self.model_frames(length)
        waves = np.empty((len(members), length), dtype=np.float32)
        labels = np.full((len(members), frames), IGNORE, dtype=np.int64)
        for row, i in enumerate(members):
            wave = self.waves[i]
            max_offset = (len(wave) - length) // self.hop
            offset = int(rng.integers(0, max_offset + 1)) * self.hop
            waves[row] = wave[offset : offset + length]
            if self.augment is not None:
                gen = np.random.default_rng(mix_seed(self.seed, index, row, 4))
                waves[row] = self.augment(waves[row], self.sample_rate, gen)
            first = offset // self.hop
            lab = self.labels[i][first : first + frames]
            labels[row, : len(lab)] = lab
        return Batch(torch.from_numpy(waves), torch.from_numpy(labels))
