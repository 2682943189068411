"""What a trainer gives the loop: deterministic batches and a loss.

A task owns its data and objective; the loop owns optimisation, precision, DDP, logging,
checkpoints and stopping. Two methods::

    task.batch(index)        -> any batch (tensors inside dicts, lists, tuples or dataclasses)
    task.loss(model, batch)  -> LossOutput

``index`` is the global micro-batch index ``(step * accumulate + micro) * world + rank``, so
a task whose ``batch`` is a pure function of ``(seed, index)`` (see
:class:`speechunits.training.batching.LengthBucketSampler`) gets DDP sharding and exact
resume for free. The loop moves the batch to the device (:func:`move_to`) and calls ``loss``
under bf16 autocast when asked; ``model`` is what to call (the DDP wrapper under torchrun).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class LossOutput:
    """The loss of one micro-batch and what to log about it.

    Attributes:
        loss: scalar tensor with grad, *summed* over the ``count`` items it covers.
        count: items the loss sums over (frames, tokens, utterances); the loop backpropagates
            ``loss / count`` (a per-micro-batch mean) and logs ``sum(loss) / sum(count)``.
        metrics: name -> ``(numerator, denominator)``; the loop sums both over micro-batches
            and ranks and logs the ratio (e.g. accuracy = ``(correct, total)``).
        amount: work in the task's unit (audio seconds, tokens), logged per step and per
            wall-clock second.
    """

    loss: torch.Tensor
    count: float
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)
    amount: float = 0.0


@runtime_checkable
class Task(Protocol):
    """The trainer-specific part of a training run (see the module docstring)."""

    def batch(self, index: int) -> Any:
        """Micro-batch ``index`` (deterministic)."""

    def loss(self, model: torch.nn.Module, batch: Any) -> LossOutput:
        """Forward ``batch`` through ``model`` and score it."""


def move_to(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples, namedtuples, dataclasses) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {key: move_to(value, device) for key, value in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(move_to(value, device) for value in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(value, device) for value in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: move_to(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj
