"""Length-bucketed batches under a size budget, as a pure function of ``(seed, index)``.

Items sorted by length (ties by position) are cut greedily into batches whose cost stays
within ``budget`` (frames, samples or tokens):

* ``fit="pad"`` (sequence models: every item padded to the batch's longest):
  ``len(batch) * longest <= budget``;
* ``fit="crop"`` (random crops: every item cut to the batch's shortest):
  ``len(batch) * shortest <= budget``.

An item over the budget on its own forms a batch by itself. The batches are fixed; each
epoch visits all of them in an order shuffled by ``(seed, epoch)``. Global batch ``index``
belongs to epoch ``index // len(sampler)``, so a loop that asks for micro-batch
``(step * accumulate + micro) * world + rank`` gets DDP sharding and exact resume.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

FITS = ("pad", "crop")


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (deterministic across runs and platforms)."""
    seq = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values])
    return int(seq.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1 << 31, 1], dtype=np.uint64)) & (
        (1 << 63) - 1
    )


class LengthBucketSampler:
    """Batches of item indices with similar lengths under a cost ``budget`` (see the module docstring).

    Args:
        lengths: length of every item (frames, samples or tokens), any order.
        budget: the most a batch may cost (``len(batch) * longest`` or ``* shortest``).
        fit: "pad" or "crop".
        max_batch_size: an optional cap on items per batch.
        seed: run seed (batch order per epoch).
        shuffle: False visits batches shortest first every epoch.
    """

    def __init__(self, lengths: Sequence[int], budget: int, *, fit: str = "pad", max_batch_size: int | None = None,
                 seed: int = 0, shuffle: bool = True):
        if len(lengths) == 0:
            raise SpeechUnitsError("length-bucketed batches: no items")
        if budget < 1:
            raise SpeechUnitsError(f"length-bucketed batches: budget must be >= 1, got {budget}")
        if fit not in FITS:
            raise SpeechUnitsError(f"length-bucketed batches: fit must be one of {FITS}, got {fit!r}")
        if max_batch_size is not None and max_batch_size < 1:
            raise SpeechUnitsError(f"length-bucketed batches: max_batch_size must be >= 1, got {max_batch_size}")
        if any(int(n) < 0 for n in lengths):
            raise SpeechUnitsError("length-bucketed batches: negative length")
        self.lengths = [int(n) for n in lengths]
        self.budget = int(budget)
        self.fit = fit
        self.seed = seed
        self.shuffle = shuffle
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
        cap = max_batch_size or len(order)
        self.batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            trial = current + [i]
            # sorted ascending: the newest item is the longest, the first one the shortest
            size = self.lengths[i] if fit == "pad" else self.lengths[trial[0]]
            if current and (len(trial) > cap or len(trial) * max(size, 1) > self.budget):
                self.batches.append(current)
                current = [i]
            else:
                current = trial
        self.batches.append(current)

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.batches)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Positions in :attr:`batches` in the order epoch ``epoch`` visits them."""
        return _permutation(self.seed, epoch, len(self.batches), self.shuffle)

    def locate(self, index: int) -> tuple[int, int]:
        """``(epoch, position in that epoch)`` of global batch ``index``."""
        if index < 0:
            raise SpeechUnitsError(f"batch index must be >= 0, got {index}")
        return divmod(index, len(self.batches))

    def batch(self, index: int) -> list[int]:
        """Item indices of global batch ``index`` (shortest first)."""
        epoch, position = self.locate(index)
        return list(self.batches[int(self.epoch_order(epoch)[position])])


@lru_cache(maxsize=8)
def _permutation(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    order = np.random.default_rng(mix_seed(seed, epoch, 1)).permutation(n)
    order.flags.writeable = False
    return order
