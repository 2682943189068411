"""The :class:`MultiStreamUnits` record: several parallel unit streams of one utterance.

dMel gives one token per mel channel per frame; such units are a matrix, not a sequence.
They are never deduplicated (a frame repeats only if all its streams do).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.units.units import Units


@dataclass(frozen=True, eq=False)
class MultiStreamUnits:
    """Unit ids ``[frames, streams]`` of one utterance, every stream with the same vocabulary.

    Attributes:
        ids: int64 ``[T, S]``: row ``t`` holds frame ``t``'s id in each of the ``S`` streams.
        frame_rate: frames per second.
        vocab_size: ids lie in ``[0, vocab_size)``.
    """

    ids: np.ndarray
    frame_rate: float
    vocab_size: int

    #: Multi-stream units are frame-level: no durations (same interface as :class:`Units`).
    durations = None
    is_deduplicated = False

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] < 1:
            raise SpeechUnitsError(f"multi-stream units must be [frames, streams], got shape {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise SpeechUnitsError(f"unit ids must lie in [0, {self.vocab_size}), got [{ids.min()}, {ids.max()}]")
        object.__setattr__(self, "ids", ids)

    @property
    def num_streams(self) -> int:
        return int(self.ids.shape[1])

    @property
    def num_frames(self) -> int:
        return int(self.ids.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.frame_rate

    def stream(self, index: int) -> Units:
        """Stream ``index`` as single-stream :class:`Units`."""
        return Units(self.ids[:, index], self.frame_rate, self.vocab_size)

    def dedup(self) -> "MultiStreamUnits":
        raise SpeechUnitsError("multi-stream units (dMel) are not deduplicated")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiStreamUnits):
            return NotImplemented
        return (self.frame_rate, self.vocab_size) == (other.frame_rate, other.vocab_size) \
            and np.array_equal(self.ids, other.ids)

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return self.num_frames
