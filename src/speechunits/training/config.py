"""Optimisation settings shared by every trainer (pretraining, probes, vocoders, LMs, seq2seq)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from speechunits.errors import SpeechUnitsError

C = TypeVar("C")

#: Learning-rate decay after warmup: to 0 at ``steps`` (linear, cosine) or none (constant).
SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class OptimConfig:
    """AdamW, schedule, step counts, precision and bookkeeping of one training run.

    ``steps`` is the cap on optimizer steps; ``max_minutes`` (optional) is a wall-clock
    budget that stops the run earlier, in which case the decay follows whichever of
    ``step / steps`` and ``elapsed / max_minutes`` is further along (not step-reproducible);
    with ``decay_by_time`` False it follows the steps alone and the budget only stops the run
    (a run that the budget does not stop then repeats step for step, whatever the machine's load).
    ``warmup_fraction`` (optional, with ``max_minutes``) ends the warmup early once that share
    of the budget is spent, so a slow machine cannot spend its budget warming up (not with
    ``decay_by_time`` False).
    An optimizer step averages ``accumulate`` micro-batches on each of the world's ranks.
    """

    steps: int = 1000
    lr: float = 5e-4
    warmup_steps: int = 100
    schedule: str = "linear"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 10.0
    accumulate: int = 1
    bf16: bool = True
    max_minutes: float | None = None
    warmup_fraction: float | None = None
    decay_by_time: bool = True
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        checks = [
            ("--steps", self.steps >= 1),
            ("--lr", self.lr > 0),
            ("--warmup-steps", self.warmup_steps >= 0),
            ("--schedule", self.schedule in SCHEDULES),
            ("--weight-decay", self.weight_decay >= 0),
            ("--betas", len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas)),
            ("--eps", self.eps > 0),
            ("--grad-clip", self.grad_clip > 0),
            ("--accumulate", self.accumulate >= 1),
            ("--max-minutes", self.max_minutes is None or self.max_minutes > 0),
            ("--warmup-fraction", self.warmup_fraction is None or 0.0 < self.warmup_fraction <= 1.0),
            ("--log-every", self.log_every >= 1),
            ("--checkpoint-every", self.checkpoint_every >= 1),
        ]
        for option, ok in checks:
            if not ok:
                raise SpeechUnitsError(f"{option}: invalid value in optimisation config {asdict(self)}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OptimConfig":
        return config_from_dict(cls, data, "optimisation config")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready values (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}


def config_from_dict(cls: type[C], data: dict[str, Any], what: str) -> C:
    """``cls(**data)``, refusing keys ``cls`` does not have (``what`` names the config in the error)."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise SpeechUnitsError(f"{what}: unknown keys {sorted(unknown)}")
    return cls(**data)
