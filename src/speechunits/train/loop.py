"""The training loop: AdamW, warmup + linear decay, clipping, accumulation, bf16 autocast, DDP.

Everything random in a step is derived from ``(seed, micro-batch index)`` (crops, masks) or
restored from the checkpoint (the torch RNG behind dropout), so stopping after step ``n`` and
resuming reproduces the uninterrupted run. With DDP (``torchrun``), rank ``r`` of ``W`` takes
micro-batches ``W * m + r``; rank 0 logs and writes checkpoints.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from speechunits.train.checkpoint import save_checkpoint
from speechunits.train.config import TrainConfig
from speechunits.train.data import CropBatches, mix_seed
from speechunits.train.head import masked_prediction_loss
from speechunits.train.masking import span_mask
from speechunits.train.model import HubertPretrainer

log = logging.getLogger(__name__)


def learning_rate(step: int, train: TrainConfig, time_fraction: float = 0.0) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then linear decay to 0 at ``steps``.

    ``time_fraction`` (elapsed / ``max_minutes``) takes over the decay when it is further along.
    """
    if train.warmup_steps > 0 and step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    span = max(train.steps - train.warmup_steps, 1)
    left = max(train.steps - step, 0) / span
    return train.lr * max(0.0, min(left, 1.0 - time_fraction))


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and embeddings (1-D parameters)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, eps=1e-6)


@dataclass
class StepLog:
    """Logged figures of one step (averaged over its micro-batches and ranks)."""

    step: int
    loss: float
    masked_acc: float
    unmasked_acc: float
    lr: float
    grad_norm: float
    audio_seconds: float
    wall_seconds: float
    audio_per_second: float


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1


class Trainer:
    """Runs steps ``start_step .. train.steps - 1`` on ``model`` and checkpoints to ``out_dir``.

    Args:
        state_extra: JSON-able facts stored in each checkpoint's state (targets, data).
    """

    def __init__(self, model: HubertPretrainer, optimizer: torch.optim.Optimizer, batches: CropBatches,
                 train: TrainConfig, out_dir: Path | None, *, device: torch.device, dist: Distributed | None = None,
                 state_extra: dict[str, Any] | None = None, quiet: bool = False, sample_rate: int = 16000):
        self.model = model
        self.optimizer = optimizer
        self.batches = batches
        self.train = train
        self.out_dir = out_dir
        self.device = device
        self.dist = dist or Distributed()
        self.state_extra = state_extra or {}
        self.quiet = quiet
        self.sample_rate = sample_rate
        self.wrapped: torch.nn.Module = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.train.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def step(self, step: int, time_fraction: float = 0.0) -> StepLog:
        """One optimizer step over ``accumulate`` micro-batches."""
        start = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(6, dtype=torch.float64)  # loss, masked n, masked ok, unmasked n, unmasked ok, samples
        for micro in range(self.train.accumulate):
            index = (step * self.train.accumulate + micro) * self.dist.world + self.dist.rank
            batch = self.batches.batch(index)
            gen = torch.Generator().manual_seed(mix_seed(self.train.seed, index, 3))
            mask = span_mask(batch.labels.shape[0], batch.labels.shape[1], mask_prob=self.train.mask_prob,
                             mask_length=self.train.mask_length, min_masks=self.train.min_masks, generator=gen)
            waves, labels, mask = (t.to(self.device) for t in (batch.waves, batch.labels, mask))
            sync = self.dist.enabled and micro < self.train.accumulate - 1
            with (self.wrapped.no_sync() if sync else contextlib.nullcontext()):
                with self._autocast():
                    logits = self.wrapped(waves, mask)
                loss, stats = masked_prediction_loss(logits, labels, mask, self.train.unmasked_weight)
                (loss / max(stats.masked_frames, 1) / self.train.accumulate).backward()
            totals += torch.tensor([stats.loss_sum, stats.masked_frames, stats.masked_correct,
                                    stats.unmasked_frames, stats.unmasked_correct, batch.waves.numel()],
                                   dtype=torch.float64)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.grad_clip))
        lr = learning_rate(step, self.train, time_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            log.warning("step %d: non-finite gradient norm, update skipped", step)
        if self.dist.enabled:
            torch.distributed.all_reduce(totals)
        wall = time.perf_counter() - start
        audio = float(totals[5]) / self.sample_rate
        return StepLog(
            step=step + 1,
            loss=float(totals[0] / max(totals[1], 1)),
            masked_acc=float(totals[2] / max(totals[1], 1)),
            unmasked_acc=float(totals[4] / max(totals[3], 1)),
            lr=lr,
            grad_norm=grad_norm,
            audio_seconds=audio,
            wall_seconds=wall,
            audio_per_second=audio / max(wall, 1e-9),
        )

    def checkpoint(self, step: int) -> None:
        if self.out_dir is None:
            return
        state = {"step": step, "train": self.train.to_dict(), "world_size": self.dist.world, **self.state_extra}
        save_checkpoint(self.out_dir, self.model, self.optimizer, state, rank=self.dist.rank)
        if self.dist.enabled:
            torch.distributed.barrier()

    def run(self, start_step: int = 0, on_step: Callable[[StepLog], None] | None = None) -> list[StepLog]:
        """Train to ``train.steps``; returns every step's log."""
        from tqdm import tqdm

        history: list[StepLog] = []
        main = self.dist.rank == 0
        log_file = None
        if main and self.out_dir is not None:
            (self.out_dir / "training").mkdir(parents=True, exist_ok=True)
            log_file = open(self.out_dir / "training" / "log.jsonl", "a", encoding="utf-8")
        bar = tqdm(total=self.train.steps, initial=start_step, desc="pretrain", unit="step", file=sys.stderr,
                   disable=self.quiet or not main, dynamic_ncols=True, mininterval=1.0)
        window: list[StepLog] = []
        budget = None if self.train.max_minutes is None else self.train.max_minutes * 60.0
        started = time.perf_counter()
        try:
            for step in range(start_step, self.train.steps):
                fraction = 0.0 if budget is None else (time.perf_counter() - started) / budget
                if self.dist.enabled and budget is not None:  # every rank stops at the same step
                    shared = torch.tensor([fraction], dtype=torch.float64)
                    torch.distributed.broadcast(shared, 0)
                    fraction = float(shared[0])
                if fraction >= 1.0 and step > start_step:
                    log.info("time budget of %.1f min spent at step %d", self.train.max_minutes, step)
                    self.checkpoint(step)
                    break
                entry = self.step(step, fraction)
                history.append(entry)
                window.append(entry)
                if on_step is not None:
                    on_step(entry)
                done = step + 1
                if main:
                    bar.update(1)
                    bar.set_postfix_str(f"loss {entry.loss:.3f} acc {entry.masked_acc:.3f} "
                                        f"{entry.audio_per_second:.1f}x real time", refresh=False)
                    if log_file is not None:
                        log_file.write(json.dumps(asdict(entry)) + "\n")
                        log_file.flush()
                    if done % self.train.log_every == 0 or done == self.train.steps:
                        audio = sum(e.audio_seconds for e in window)
                        wall = sum(e.wall_seconds for e in window)
                        log.info("step %d/%d loss %.4f masked acc %.3f unmasked acc %.3f lr %.2e grad %.2f "
                                 "%.1f audio s/s", done, self.train.steps, sum(e.loss for e in window) / len(window),
                                 sum(e.masked_acc for e in window) / len(window), entry.unmasked_acc, entry.lr,
                                 entry.grad_norm, audio / max(wall, 1e-9))
                        window = []
                if done % self.train.checkpoint_every == 0 or done == self.train.steps:
                    self.checkpoint(done)
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        return history
