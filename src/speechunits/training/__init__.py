"""The one training loop and checkpoint format of every trainer in speechunits.

A trainer (HuBERT pretraining in :mod:`speechunits.pretrain`; probes, vocoders, unit LMs and
seq2seq models next) supplies a model and a :class:`Task` (``batch(index)`` and
``loss(model, batch) -> LossOutput``); :class:`Trainer` does the rest: AdamW and the
learning-rate schedule (:class:`OptimConfig`), accumulation, clipping, bf16 autocast, DDP via
torchrun, the progress bar, ``log.jsonl``, the time budget and exact resume from the
checkpoint format of :mod:`speechunits.training.checkpoint`.
:class:`LengthBucketSampler` makes deterministic length-bucketed batches. See docs/train.md.
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

_LAZY = {
    "OptimConfig": "speechunits.training.config",
    "Distributed": "speechunits.training.distributed",
    "init_distributed": "speechunits.training.distributed",
    "LossOutput": "speechunits.training.task",
    "Task": "speechunits.training.task",
    "move_to": "speechunits.training.task",
    "Trainer": "speechunits.training.loop",
    "StepLog": "speechunits.training.loop",
    "TrainResult": "speechunits.training.loop",
    "LengthBucketSampler": "speechunits.training.batching",
    "learning_rate": "speechunits.training.optim",
    "make_optimizer": "speechunits.training.optim",
    "make_optimizers": "speechunits.training.optim",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = list(_LAZY)
