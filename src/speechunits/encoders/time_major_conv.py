"""1-D convolutions run as 2-D channels-last ones, on time-major activations (CPU).

A transformer encoder holds its activations time-major (``[B, T, C]``); transformers'
temporal convolutions transpose them to ``[B, C, T]`` views and call ``conv1d``, which oneDNN
runs in its channel-major layout. Seen as ``[B, C, 1, T]`` in the channels-last memory format
(the same bytes: no copy), the same convolution takes oneDNN's channels-last kernels, and the
output comes back time-major too. Measured on this machine (2 cores, AVX512-BF16):

============================================  =============  =============
convolution (T = 500 frames)                  bf16 speed-up  fp32 speed-up
============================================  =============  =============
HuBERT/wav2vec 2.0 positional (768, 16 groups,     1.45x          1.55x
kernel 128)
data2vec-audio positional layer (768, 16, 19)      1.1x           1.0x
conformer depthwise (1024, 1024 groups, 31)        17x            19x
CNN layers 2-7 (512 -> 512, 3/2, stride 2)         1.06x          0.85x
============================================  =============  =============

so the encoder's temporal convolutions always switch on CPU, and the CNN's only in bf16/fp16.
The arithmetic is the same convolution; results equal ``conv1d``'s up to summation order.
"""
from __future__ import annotations

import torch
from torch import nn


class TimeMajorConv1d(nn.Module):
    """``conv``'s weights, applied as a channels-last ``conv2d``: ``[B, C_in, T] -> [B, C_out, T']``.

    The output is a ``[B, C_out, T']`` view of time-major (``[B, T', C_out]``) storage.
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"only zero padding is supported, not {conv.padding_mode!r}")
        weight = conv.weight.detach()[:, :, None, :].contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight)  # [C_out, C_in / groups, 1, k], channels-last
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.stride = (1, conv.stride[0])
        self.dilation = (1, conv.dilation[0])
        self.padding = conv.padding if isinstance(conv.padding, str) else (0, conv.padding[0])
        self.groups = conv.groups

    @property
    def padded(self) -> bool:
        """Whether the convolution zero-pads its input (``padding`` other than none/``valid``)."""
        return self.padding not in ((0, 0), "valid")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.conv2d(hidden[:, :, None, :], self.weight, self.bias, self.stride, self.padding,
                                         self.dilation, self.groups)
        return out[:, :, 0]


def is_temporal_padded(module: nn.Module) -> bool:
    """Whether ``module`` is a zero-padded temporal convolution (plain or :class:`TimeMajorConv1d`)."""
    if isinstance(module, TimeMajorConv1d):
        return module.padded
    return isinstance(module, nn.Conv1d) and module.padding not in (0, (0,), "valid")


def use_time_major_convs(root: nn.Module, *, padded_only: bool = False) -> int:
    """Replace every ``nn.Conv1d`` under ``root`` (only zero-padded ones if ``padded_only``); returns how many."""
    replaced = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Conv1d) or child.padding_mode != "zeros":
                continue
            if padded_only and not is_temporal_padded(child):
                continue
            setattr(parent, name, TimeMajorConv1d(child))
            replaced += 1
    return replaced
