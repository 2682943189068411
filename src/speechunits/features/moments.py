"""Mean and standard deviation of frames over many utterances, accumulated one utterance at a time."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError


def frame_moments(arrays: Iterable[np.ndarray | torch.Tensor], *, frame_axis: int = 0,
                  floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 mean and standard deviation of every dimension over the frames of all ``arrays``.

    Each array holds its frames along ``frame_axis`` (``[T, D]``: 0; ``[L, T, D]``: 1); the result has
    the array's shape without that axis. Sums of ``x`` and ``x**2`` are kept in float64 and the
    variance is ``E[x**2] - mean**2`` (clamped at 0); a standard deviation below ``floor`` counts as
    ``floor``. Raises :class:`SpeechUnitsError` when there is no frame.
    """
    total = squares = None
    frames = 0
    for array in arrays:
        x = torch.from_numpy(np.array(array, dtype=np.float64)) if isinstance(array, np.ndarray) \
            else array.to(torch.float64)
        total = x.sum(frame_axis) if total is None else total + x.sum(frame_axis)
        squares = (x * x).sum(frame_axis) if squares is None else squares + (x * x).sum(frame_axis)
        frames += x.shape[frame_axis]
    if total is None or squares is None or frames == 0:
        raise SpeechUnitsError("feature statistics: no frames")
    mean = total / frames
    return mean, (squares / frames - mean * mean).clamp_min(0.0).sqrt().clamp_min(floor)
