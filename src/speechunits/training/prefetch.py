"""Building a task's micro-batches ahead of the loop, in worker processes.

A :class:`~speechunits.training.task.Task`'s ``batch(index)`` is a pure function of ``(seed,
index)``, so it can be computed anywhere, in any order, and give the same batch. When building a
batch costs as much as the step that consumes it (pretraining with ``--augment`` builds a 64 s
batch of pitch-shifted crops in ~0.17 s on one core, while a GPU step of the tiny model takes a
few milliseconds), :class:`BatchPrefetcher` builds the indices this rank will ask for next in
``workers`` processes (a ``torch.utils.data.DataLoader``, forked: the task and its in-memory
audio are shared, not copied) and hands them over in order. The loop's results do not change:
only where and when each batch is built.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Iterator

import torch

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

#: Batches each worker builds ahead of the loop.
PREFETCH_PER_WORKER = 2


class _IndexedBatches(torch.utils.data.Dataset):
    """``dataset[index] = (index, task.batch(index))``."""

    def __init__(self, task: Any):
        self.task = task

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.task.batch(index)


class BatchPrefetcher:
    """``task.batch(i)`` for ``i = first, first + stride, ...``, built ahead by ``workers`` processes.

    Args:
        task: anything with a pure ``batch(index)``; it must be picklable only where processes
            are spawned rather than forked (not on Linux).
        first: the first index the loop will ask for; stride: the step between its indices
            (the world size: ``index = (step * accumulate + micro) * world + rank``).
        workers: processes (>= 1).
        pin_memory: page-locked batches, for a faster copy to a GPU.

    :meth:`get` must be called with the indices in that order; any other index is built inline
    (and logged), so a caller that skips around gets the right batch, only slower.
    """

    def __init__(self, task: Any, first: int, stride: int, workers: int, *, pin_memory: bool = False):
        if workers < 1:
            raise SpeechUnitsError(f"--loader-workers: a prefetcher needs >= 1 worker, got {workers}")
        if stride < 1 or first < 0:
            raise SpeechUnitsError(f"batch prefetcher: bad index sequence (first {first}, stride {stride})")
        self.task = task
        self.expected = first
        self.stride = stride
        self.loader = torch.utils.data.DataLoader(
            _IndexedBatches(task), batch_size=None, sampler=itertools.count(first, stride), num_workers=workers,
            prefetch_factor=PREFETCH_PER_WORKER, pin_memory=pin_memory,
            # the loader draws its workers' base seed from this generator instead of torch's global one,
            # which the loop's dropout reads: the run then stays that of inline batches
            generator=torch.Generator().manual_seed(0))
        self._iterator: Iterator[tuple[int, Any]] | None = None

    def get(self, index: int) -> Any:
        """The batch of ``index`` (equal to ``task.batch(index)``)."""
        if index != self.expected:
            log.warning("batch %d asked for where %d was prefetched: built inline", index, self.expected)
            return self.task.batch(index)
        if self._iterator is None:
            self._iterator = iter(self.loader)
        got, batch = next(self._iterator)
        if got != index:  # the sampler and the loop disagree: a bug, not bad input
            raise RuntimeError(f"batch prefetcher: got batch {got} for index {index}")
        self.expected += self.stride
        return batch

    def close(self) -> None:
        """Stop the workers (their pending batches are dropped)."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
