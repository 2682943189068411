"""Length-sorted batches under a padded-audio budget."""
from __future__ import annotations

from typing import Sequence


def plan_batches(lengths: Sequence[int], max_batch_samples: int, max_count: int | None = None) -> list[list[int]]:
    """Group indices of ``lengths`` into batches, longest first.

    Indices are sorted by length (descending, ties by index) and cut greedily so that the
    padded size ``len(batch) * longest_in_batch`` stays within ``max_batch_samples`` and
    ``len(batch) <= max_count``. An item longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        full = max_count is not None and len(current) >= max_count
        if current and (full or (len(current) + 1) * longest > max_batch_samples):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
