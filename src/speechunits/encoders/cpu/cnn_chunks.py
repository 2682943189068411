"""The CNN front end over time in pieces, so its large activations are never allocated whole.

On CPU the CNN runs one utterance at a time; whole, a long utterance's layers write hundreds of
MB of fresh activations, and every new page costs a page fault. In pieces of a few MB the same
buffers are reused from the heap and stay in cache (figures: docs/performance.md).

Layers 2.. of the CNN are unpadded strided convolutions, so output frames ``[o0, o1)`` depend
only on first-layer frames ``[o0 * H, (o1 - 1) * H + R)`` (``H``, ``R``: hop and receptive field
of layers 2.. in first-layer frames), and those on samples ``[a * s, (b - 1) * s + k)``. Each
piece computes exactly the frames it keeps; the first layer's norm statistics come from the
whole utterance (:class:`~speechunits.encoders.cpu.first_conv.FirstLayerPlan`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from speechunits.encoders.base import conv_geometry

#: Output frames per piece (2.56 s at 50 Hz; first-layer activations of ~4 MB in bf16).
CHUNK_FRAMES = 128
#: The encoder rounds each utterance's last piece up to a multiple of this many frames: oneDNN
#: JIT-builds a kernel for every new shape, and with rounding only 16 last-piece shapes exist
#: (at the cost of 3.5 frames of extra work per utterance on average).
ROUND_FRAMES = 8


def cnn_in_chunks(first: Callable[[torch.Tensor], torch.Tensor], rest: Sequence[nn.Module], waves: torch.Tensor,
                  kernels: Sequence[int], strides: Sequence[int], chunk_frames: int = CHUNK_FRAMES,
                  round_frames: int = 1) -> torch.Tensor:
    """The CNN on ``waves [B, T]`` -> ``[B, C, F]``, ``chunk_frames`` output frames at a time.

    Args:
        first: the first layer on a waveform slice, ``[B, T'] -> [B, C, F1']``.
        rest: the remaining layers, applied in order (unpadded convolutions).
        kernels, strides: of all layers, the first included.
        round_frames: the last piece computes a multiple of this many frames, from zero samples
            past the end where needed, and the extra frames are dropped, so that piece sizes
            repeat (oneDNN builds a kernel for every new shape: :data:`ROUND_FRAMES`).

    Returns:
        ``[B, C, F]``, stored time-major (a view of ``[B, F, C]``) when there is more than one piece.
    """
    if chunk_frames < 1 or round_frames < 1:
        raise ValueError(f"chunk_frames and round_frames must be >= 1, got {chunk_frames} and {round_frames}")
    first_kernel, first_stride = int(kernels[0]), int(strides[0])
    hop, field = conv_geometry(kernels[1:], strides[1:])
    first_frames = (waves.shape[1] - first_kernel) // first_stride + 1
    total = (first_frames - field) // hop + 1
    if total <= chunk_frames and total % round_frames == 0:
        spans = [(0, waves.shape[1])]  # one piece: the whole input
    else:
        spans = []
        for start in range(0, total, chunk_frames):
            stop = min(start + chunk_frames, total)
            if stop == total:  # the last piece: round up (past the end, frames are dropped below)
                stop = start + -(-(stop - start) // round_frames) * round_frames
            lo, hi = start * hop, (stop - 1) * hop + field  # first-layer frames
            spans.append((lo * first_stride, (hi - 1) * first_stride + first_kernel))
    pieces = []
    for begin, end in spans:
        piece = waves[:, begin:end]
        if end > waves.shape[1]:
            piece = torch.nn.functional.pad(piece, (0, end - waves.shape[1]))
        hidden = first(piece)
        for layer in rest:
            hidden = layer(hidden)
        pieces.append(hidden)
    if len(pieces) == 1:
        return pieces[0][:, :, :total]
    # Joined time-major: the encoder reads the result as [B, F, C], so no further copy is needed.
    return torch.cat([piece.transpose(1, 2) for piece in pieces], dim=1)[:, :total].transpose(1, 2)
