"""Splitting long audio into overlapping pieces whose frames concatenate exactly.

A wave of ``T`` samples has ``F = (T - rf) // hop + 1`` frames (frame i covers samples
``[i*hop, i*hop + rf)``). Above the chunk limit, the frames are split into consecutive
runs of ``n = frames_in(chunk_samples)`` frames; run ``[a, b)`` is computed from the
samples of frames ``[a - c, b + c)`` (``c`` context frames on each side, clipped to the
file) and only its own ``b - a`` frames are kept. So

* the total frame count is exactly ``F`` and every piece holds at least one full frame
  (there is no "last piece shorter than the first convolution" failure);
* every CNN frame sees exactly its own samples, but the transformer only sees
  ``c`` frames (``context_seconds``) beyond each run, and group-norm front ends take their
  statistics per piece: features within ``context_seconds`` of a cut can differ slightly
  from a (memory-hungry) single pass over the whole file.
"""
from __future__ import annotations

from dataclasses import dataclass

from speechunits.encoders.base import EncoderInfo


@dataclass(frozen=True)
class Piece:
    """Samples ``[start, end)`` of a wave; keep output frames ``[keep_from, keep_from + keep)``."""

    start: int
    end: int
    keep_from: int
    keep: int


def plan_pieces(num_samples: int, info: EncoderInfo, chunk_samples: int, context_samples: int = 0) -> list[Piece]:
    """Pieces covering all ``info.num_frames(num_samples)`` frames (one piece if short enough).

    Raises:
        ValueError: ``chunk_samples`` smaller than the receptive field.
    """
    hop, field = info.hop_length, info.receptive_field
    total = info.num_frames(num_samples)
    if num_samples <= chunk_samples or total == 0:
        return [Piece(0, num_samples, 0, total)]
    if chunk_samples < field:
        raise ValueError(f"chunk of {chunk_samples} samples is shorter than the receptive field ({field})")
    per_piece = (chunk_samples - field) // hop + 1
    context = max(0, context_samples // hop)
    pieces = []
    for first in range(0, total, per_piece):
        last = min(first + per_piece, total)  # exclusive
        lo, hi = max(0, first - context), min(total, last + context)
        pieces.append(Piece(lo * hop, (hi - 1) * hop + field, first - lo, last - first))
    return pieces
