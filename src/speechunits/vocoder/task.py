"""The vocoder's :class:`speechunits.training.Task`: random crops as a pure function of ``(seed, index)``.

Micro-batch ``index`` draws ``batch_size`` utterances (probability proportional to length, among
those at least ``segment_frames`` long) and a crop of each, all from a generator seeded by
``(seed, index)``, so DDP sharding and exact resume come from the loop. With perturbed units
(``perturb_semitones``) each crop's units come from the original or one shifted copy, uniformly;
its audio, F0 and speaker are always the original's. GAN configurations are
multi-phase: ``phases(step)`` is ``("discriminator", "generator")`` from ``gan_start`` on, else
``("generator",)``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from speechunits.pitch import F0Stats
from speechunits.training.batching import mix_seed
from speechunits.training.task import LossOutput
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.data import ALL_SPEAKERS, Utterance, utterance_stats
from speechunits.vocoder.f0 import conditioning_f0
from speechunits.vocoder.model import DISCRIMINATOR, GENERATOR


def stats_for(utt: Utterance, stats: dict[str, F0Stats], speaker_mode: str) -> F0Stats:
    """The F0 statistics that normalise ``utt``: its speaker's; per utterance for an embedding
    vocoder trained without speakers; overall for a speaker-less vocoder."""
    if speaker_mode != "none" and utt.speaker is not None and utt.speaker in stats:
        return stats[utt.speaker]
    if speaker_mode == "embedding":
        return utterance_stats(utt.f0, stats[ALL_SPEAKERS])
    return stats[ALL_SPEAKERS]


class VocoderTask:
    """Random crops of ``utterances`` for a vocoder of config ``cfg``."""

    def __init__(self, cfg: VocoderConfig, utterances: Sequence[Utterance], stats: dict[str, F0Stats],
                 speakers: Sequence[str], seed: int = 0):
        self.cfg = cfg
        self.utterances = list(utterances)
        self.seed = seed
        self.speaker_index = {name: i for i, name in enumerate(speakers)}
        self.f0 = [conditioning_f0(u.f0, stats_for(u, stats, cfg.speaker), cfg.f0) for u in self.utterances]
        longest = max(u.num_frames for u in self.utterances)
        self.segment = min(cfg.segment_frames, longest)
        usable = np.array([i for i, u in enumerate(self.utterances) if u.num_frames >= self.segment])
        weights = np.array([self.utterances[i].num_frames for i in usable], dtype=np.float64)
        self.usable, self.weights = usable, weights / weights.sum()
        self.by_speaker: dict[str | None, list[int]] = {}
        for i, u in enumerate(self.utterances):
            self.by_speaker.setdefault(u.speaker, []).append(i)
        self.current_step = 0

    @property
    def audio_seconds_per_batch(self) -> float:
        return self.cfg.batch_size * self.segment * self.cfg.hop / self.cfg.sample_rate

    def phases(self, step: int) -> tuple[str, ...]:
        """The phases of ``step`` (a plain generator step before ``gan_start``)."""
        self.current_step = step
        if self.cfg.gan and step >= self.cfg.discriminator_start:
            return (DISCRIMINATOR, GENERATOR)
        return (GENERATOR,)

    def batch(self, index: int) -> dict[str, Any]:
        cfg, seg, hop = self.cfg, self.segment, self.cfg.hop
        rng = np.random.default_rng(mix_seed(self.seed, index, 7))
        picks = rng.choice(self.usable, size=cfg.batch_size, p=self.weights)
        units, z, voiced, hz, audio, speakers, refs = [], [], [], [], [], [], []
        for i in picks:
            utt = self.utterances[int(i)]
            start = int(rng.integers(0, utt.num_frames - seg + 1))
            frames = slice(start, start + seg)
            source = utt.units
            if utt.perturbed is not None:  # information perturbation: the original or one shifted copy
                copy = int(rng.integers(0, utt.perturbed.shape[0] + 1))
                source = utt.units if copy == 0 else utt.perturbed[copy - 1]
            units.append(source[:, frames])
            fz, fv, fh = self.f0[int(i)]
            z.append(fz[frames])
            voiced.append(fv[frames])
            hz.append(fh[frames])
            audio.append(utt.audio[start * hop:(start + seg) * hop])
            if cfg.speaker == "table":
                speakers.append(self.speaker_index[utt.speaker])
            elif cfg.speaker == "embedding":
                refs.append(self._reference(utt, int(i), rng))
        batch: dict[str, Any] = {
            "units": torch.from_numpy(np.stack(units)), "f0_z": torch.from_numpy(np.stack(z)),
            "voiced": torch.from_numpy(np.stack(voiced)), "f0_hz": torch.from_numpy(np.stack(hz)),
            "audio": torch.from_numpy(np.stack(audio)),
        }
        if speakers:
            batch["speaker"] = torch.tensor(speakers, dtype=torch.long)
        if refs:
            batch["reference"] = torch.from_numpy(np.stack(refs))
        if cfg.dedup:
            batch.update(self._dedup(np.stack(units)[:, 0]))
        return batch

    def _reference(self, utt: Utterance, index: int, rng: np.random.Generator) -> np.ndarray:
        """A crop of another utterance of the same speaker (the same one when it has no other)."""
        length = int(self.cfg.reference_seconds * self.cfg.sample_rate)
        pool = [j for j in self.by_speaker.get(utt.speaker, [index]) if j != index] if utt.speaker else []
        source = self.utterances[int(rng.choice(pool))] if pool else utt
        out = np.zeros(length, dtype=np.float32)
        if source.audio.size <= length:
            out[:source.audio.size] = source.audio
        else:
            start = int(rng.integers(0, source.audio.size - length + 1))
            out[:] = source.audio[start:start + length]
        return out

    @staticmethod
    def _dedup(frames: np.ndarray) -> dict[str, torch.Tensor]:
        """Run-length targets of the crops' first stream: ids ``[B, 1, N]``, ``log(1 + d)``, mask."""
        runs = []
        for row in frames:
            starts = np.flatnonzero(np.concatenate(([True], row[1:] != row[:-1])))
            runs.append((row[starts], np.diff(np.concatenate((starts, [row.size])))))
        n = max(len(ids) for ids, _ in runs)
        ids = np.zeros((len(runs), 1, n), dtype=np.int64)
        dur = np.zeros((len(runs), n), dtype=np.float32)
        mask = np.zeros((len(runs), n), dtype=np.float32)
        for b, (row_ids, row_dur) in enumerate(runs):
            ids[b, 0, :len(row_ids)] = row_ids
            dur[b, :len(row_dur)] = np.log1p(row_dur)
            mask[b, :len(row_ids)] = 1.0
        return {"dedup_units": torch.from_numpy(ids), "log_durations": torch.from_numpy(dur),
                "dedup_mask": torch.from_numpy(mask)}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], phase: str = GENERATOR) -> LossOutput:
        gan_on = self.cfg.gan and self.current_step >= self.cfg.discriminator_start
        batch = {**batch, "gan_on": torch.tensor(1.0 if gan_on else 0.0)}
        loss, metrics = model(batch, phase)
        amount = self.audio_seconds_per_batch if phase == GENERATOR else 0.0
        return LossOutput(loss=loss, count=1.0, metrics=metrics, amount=amount)
