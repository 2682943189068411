"""Grouped convolutions with few channels per group run in fp32 when the model runs in bf16 on CPU.

torch 2.13's CPU bf16 grouped ``conv1d`` (oneDNN) returns wrong numbers on some CPUs when a group has
fewer than 16 input channels: relative L2 error ~1 against fp32, i.e. noise, not rounding. Seen on
2026-12-01 on an Intel Xeon with AMX and AVX512-BF16, for 2-14 channels per group with kernels of
16, 64 and 128 taps, through ``conv1d``, ``conv2d`` and autocast alike; fp16, depthwise convolutions,
odd kernels and 16 or more channels per group were right. The positional convolution of real SSL
models has 48 (base) or 64 (large) channels per group; small custom models (hidden 32 in 4 groups)
meet the bug. Such convolutions are wrapped in :class:`Fp32Conv1d`: weights and arithmetic in fp32
(weights rounded to bf16 first, like the rest of the model), output cast back to the input's dtype.
"""
from __future__ import annotations

import torch
from torch import nn

#: Grouped convolutions whose groups have fewer input channels than this run in fp32 under bf16 on CPU.
MIN_BF16_CHANNELS_PER_GROUP = 16


def is_fragile_grouped_conv(module: nn.Module) -> bool:
    """A grouped (not depthwise) ``nn.Conv1d`` with fewer than :data:`MIN_BF16_CHANNELS_PER_GROUP` input
    channels per group."""
    if not isinstance(module, nn.Conv1d) or module.groups == 1:
        return False
    per_group = module.in_channels // module.groups
    return 1 < per_group < MIN_BF16_CHANNELS_PER_GROUP


class Fp32Conv1d(nn.Module):
    """``conv`` kept in fp32 whatever the model's dtype: ``[B, C, T]`` in any float dtype, out in the same dtype."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        self.conv = conv.float()

    def _apply(self, fn, recurse: bool = True):  # .to(dtype) of the model must not lower this one
        result = super()._apply(fn, recurse)
        self.conv.float()
        return result

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.conv(hidden.float()).to(hidden.dtype)


def keep_fragile_grouped_convs_fp32(root: nn.Module) -> int:
    """Wrap every fragile grouped convolution under ``root`` in :class:`Fp32Conv1d`; returns how many."""
    wrapped = 0
    for parent in list(root.modules()):
        if isinstance(parent, Fp32Conv1d):
            continue
        for name, child in list(parent.named_children()):
            if is_fragile_grouped_conv(child):
                setattr(parent, name, Fp32Conv1d(child))
                wrapped += 1
    return wrapped
