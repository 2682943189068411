"""The :class:`Units` record: unit ids of one utterance, optionally deduplicated."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechunits.errors import SpeechUnitsError


@dataclass(frozen=True, eq=False)
class Units:
    """Unit ids of one utterance.

    Two records are equal when ids, durations (both absent or equal), frame rate and vocab
    size are: a deduplicated record never equals its expanded form (compare ``a.expand() ==
    b.expand()`` for that). Records are unhashable (array fields); key dicts by utterance id.

    Attributes:
        ids: int64 ``[N]`` unit ids in ``[0, vocab_size)``.
        durations: int64 ``[N]`` frames per id when deduplicated, else ``None``
            (then every id is one frame).
        frame_rate: frames per second of the undeduplicated stream (e.g. 50.0).
        vocab_size: number of distinct units (the codebook's K).
    """

    ids: np.ndarray
    frame_rate: float
    vocab_size: int
    durations: np.ndarray | None = None

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Units):
            return False  # not NotImplemented: numpy would answer ``x == array`` elementwise
        if self.frame_rate != other.frame_rate or self.vocab_size != other.vocab_size:
            return False
        if (self.durations is None) != (other.durations is None):
            return False
        same_durations = self.durations is None or np.array_equal(self.durations, other.durations)
        return same_durations and self.ids.dtype == other.ids.dtype and np.array_equal(self.ids, other.ids)

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "ids", ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise SpeechUnitsError(f"unit ids must lie in [0, {self.vocab_size}), got [{ids.min()}, {ids.max()}]")
        if self.durations is not None:
            durations = np.asarray(self.durations, dtype=np.int64).reshape(-1)
            if durations.shape != ids.shape:
                raise SpeechUnitsError(f"durations {durations.shape} do not match ids {ids.shape}")
            if durations.size and durations.min() < 1:
                raise SpeechUnitsError("durations must be >= 1")
            object.__setattr__(self, "durations", durations)

    @property
    def is_deduplicated(self) -> bool:
        return self.durations is not None

    @property
    def num_frames(self) -> int:
        """Frames of the undeduplicated stream."""
        return int(self.durations.sum()) if self.durations is not None else int(self.ids.size)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.frame_rate

    def dedup(self) -> "Units":
        """Merge runs of equal ids (``torch.unique_consecutive`` semantics), keeping durations."""
        if self.ids.size == 0:
            return Units(self.ids, self.frame_rate, self.vocab_size, np.zeros(0, dtype=np.int64))
        frames = self.expand().ids
        starts = np.flatnonzero(np.concatenate(([True], frames[1:] != frames[:-1])))
        durations = np.diff(np.concatenate((starts, [frames.size])))
        return Units(frames[starts], self.frame_rate, self.vocab_size, durations)

    def expand(self) -> "Units":
        """Back to one id per frame (identity when not deduplicated)."""
        if self.durations is None:
            return self
        return Units(np.repeat(self.ids, self.durations), self.frame_rate, self.vocab_size)

    def to_string(self) -> str:
        """Space-separated ids, e.g. ``"12 7 7 3"``."""
        return " ".join(map(str, self.ids.tolist()))

    @classmethod
    def from_string(cls, text: str, frame_rate: float, vocab_size: int) -> "Units":
        """Parse space-separated ids."""
        try:
            ids = [int(tok) for tok in text.split()]
        except ValueError:
            raise SpeechUnitsError(f"unit string holds a non-integer token: {text[:60]!r}") from None
        return cls(np.asarray(ids, dtype=np.int64), frame_rate, vocab_size)

    def __len__(self) -> int:
        return int(self.ids.size)
