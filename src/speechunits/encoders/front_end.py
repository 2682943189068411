"""The CNN front end of a wav2vec 2.0-style model on a zero-padded batch, with the model's own layers.

Exact for padded batches: the first layer's GroupNorm (``feat_extract_norm="group"``: one group
per channel, statistics over time) takes its statistics over each utterance's valid frames only
(:func:`masked_group_norm`); later layers are unpadded and local, so valid output frames depend
only on valid input. This is the plain path; :mod:`speechunits.encoders.cpu` has a faster one.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def first_layer_frames(conv: nn.Conv1d, lengths: Sequence[int]) -> list[int]:
    """Valid output frames of the first convolution for inputs of ``lengths`` samples: ``(T - k) // s + 1``."""
    kernel, stride = int(conv.kernel_size[0]), int(conv.stride[0])
    return [(int(n) - kernel) // stride + 1 for n in lengths]


def cnn_features(conv_layers: Sequence[nn.Module], batch: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """The CNN on ``batch [B, T]`` (zero-padded; ``lengths[b]`` valid samples) -> ``[B, C, F_max]``."""
    first = conv_layers[0]
    norm = getattr(first, "layer_norm", None)
    if isinstance(norm, nn.GroupNorm):
        valid = first_layer_frames(first.conv, lengths)
        hidden = first.activation(masked_group_norm(first.conv(batch[:, None]), valid, norm))
    else:
        hidden = first(batch[:, None])
    for layer in conv_layers[1:]:
        hidden = layer(hidden)
    return hidden


def masked_group_norm(hidden: torch.Tensor, valid: Sequence[int], norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm of ``[B, C, F]`` with statistics over each row's first ``valid[b]`` frames only.

    Statistics are accumulated in fp32 without copying the (large) first-layer activations:
    a two-pass ``var_mean`` for fp32 inputs, fp32-accumulated sums of x and x^2 for
    low-precision ones. Normalisation and affine are folded into one per-(utterance, channel)
    scale and shift, applied in a single pass. Padded frames get some finite value that no
    valid output frame depends on.
    """
    batch, channels, _ = hidden.shape
    groups, per_group = norm.num_groups, channels // norm.num_groups
    means, variances = [], []
    for b in range(batch):
        row = hidden[b, :, : valid[b]].reshape(groups, -1)
        if hidden.dtype == torch.float32:
            var, mean = torch.var_mean(row, dim=1, correction=0)
        else:
            count = row.shape[1]
            mean = torch.sum(row, dim=1, dtype=torch.float32) / count
            square = torch.linalg.vector_norm(row, dim=1, dtype=torch.float32) ** 2 / count
            var = (square - mean * mean).clamp_min(0.0)
        means.append(mean)
        variances.append(var)
    mean = torch.stack(means).repeat_interleave(per_group, dim=1)  # [B, C]
    inv_std = torch.rsqrt(torch.stack(variances) + norm.eps).repeat_interleave(per_group, dim=1)
    scale = inv_std * norm.weight.float() if norm.affine else inv_std
    shift = (norm.bias.float() if norm.affine else 0.0) - mean * scale
    return torch.addcmul(shift.to(hidden.dtype)[:, :, None], hidden, scale.to(hidden.dtype)[:, :, None])
