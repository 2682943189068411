"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedule."""
from __future__ import annotations

import math
from typing import Mapping

import torch

from speechunits.training.config import OptimConfig


def learning_rate(step: int, cfg: OptimConfig, time_fraction: float = 0.0) -> float:
    """Learning rate of (0-based) ``step``.

    Linear warmup to ``lr`` over ``warmup_steps`` (step ``s`` gets ``lr * (s + 1) / warmup``),
    then ``lr * f(progress)`` with ``progress`` the decay's share done: ``(step - warmup) /
    (steps - warmup)``, or ``time_fraction`` (elapsed / ``max_minutes``) when that is further
    along and ``cfg.decay_by_time``. ``f`` is ``1 - p`` (linear), ``(1 + cos(pi p)) / 2``
    (cosine) or 1 (constant).
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    if cfg.decay_by_time:
        progress = min(max(progress, time_fraction), 1.0)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (1.0 - progress)


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on 1-D ones (biases, norms, scalars)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def make_optimizers(modules: Mapping[str, torch.nn.Module], cfg: OptimConfig) -> dict[str, torch.optim.AdamW]:
    """One :func:`make_optimizer` per phase of a multi-phase task (``{"generator": g, "discriminator": d}``).

    The modules must not share parameters (each phase updates only its own).
    """
    seen: set[int] = set()
    for name, module in modules.items():
        ids = {id(p) for p in module.parameters()}
        if ids & seen:
            from speechunits.errors import SpeechUnitsError

            raise SpeechUnitsError(f"phase {name!r} shares parameters with another phase")
        seen |= ids
    return {name: make_optimizer(module, cfg) for name, module in modules.items()}
