"""The first CNN layer of a wav2vec 2.0-style front end, as one matmul per batch.

The first layer maps the raw waveform (1 channel) to C channels with a short kernel
(HuBERT/wav2vec 2.0: C=512, kernel 10, stride 5). oneDNN runs that convolution far below the
machine's matmul speed; as a matmul over strided windows of the waveform (``unfold``: no copy)
it runs near it.

Its GroupNorm (``feat_extract_norm="group"``: one group per channel, statistics over time)
needs no pass over the ``[C, F]`` output either: the output is linear in the windows, so
each channel's mean and variance follow from the windows' ``k``-vector mean and ``k x k``
covariance (``mean_c = w_c.mu + b_c``, ``var_c = w_c Sigma w_c``), taken in float64 over each
utterance's valid frames only. Normalisation and affine then fold into a per-utterance
weight and bias, and conv + norm become one batched matmul. Measured effects: docs/performance.md.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from speechunits.encoders.cpu import onednn


def _window_stats(frames: torch.Tensor, valid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[k]`` and population covariance ``[k, k]`` (float64) of ``frames[:valid]`` ``[F, k]``."""
    rows = frames[:valid].double()
    mean = rows.mean(0)
    centred = rows - mean
    return mean, centred.T @ centred / valid


def is_plain_first_conv(layer: nn.Module) -> bool:
    """Whether ``layer`` is conv(1 -> C, no padding/dilation/groups) [+ norm] + activation."""
    conv = getattr(layer, "conv", None)
    if not isinstance(conv, nn.Conv1d) or not hasattr(layer, "activation"):
        return False
    if conv.in_channels != 1 or conv.groups != 1 or conv.dilation != (1,) or conv.padding not in (0, (0,), "valid"):
        return False
    norm = getattr(layer, "layer_norm", None)
    if norm is None:
        return True
    if isinstance(norm, nn.GroupNorm):
        return norm.num_groups == norm.num_channels == conv.out_channels
    return isinstance(norm, nn.LayerNorm)


class FirstLayerPlan:
    """``layer`` (see :func:`is_plain_first_conv`) with its norm statistics fixed from a whole batch.

    Calling the plan on any time slice ``[B, T']`` of that batch gives that slice's output frames
    ``[B, C, (T' - kernel) // stride + 1]``, normalised with the whole utterances' statistics, so
    the CNN can run over time in pieces (:mod:`speechunits.encoders.cpu.cnn_chunks`). Padded frames
    hold finite values that no valid later frame depends on.

    Args:
        layer: transformers' first feature-extractor conv layer (``conv``, optional
            ``layer_norm``, ``activation``).
        batch: ``[B, T]`` zero-padded waveforms in the model's dtype.
        valid: valid output frames per utterance (``(T_b - kernel) // stride + 1``);
            GroupNorm statistics use only those.
        time_major: return ``[B, C, F']`` views of time-major (``[B, F', C]``) storage, the
            layout that :mod:`speechunits.encoders.cpu.time_major_conv` convolutions take and give.
        fuse_gelu: with ``time_major``, run matmul + exact GELU as one oneDNN call
            (:mod:`speechunits.encoders.cpu.onednn`) when the layer's activation is an exact GELU and no LayerNorm sits between them.
    """

    def __init__(self, layer: nn.Module, batch: torch.Tensor, valid: Sequence[int], *, time_major: bool = False,
                 fuse_gelu: bool = False):
        conv: nn.Conv1d = layer.conv
        self.layer = layer
        self.time_major = time_major
        self.fuse_gelu = (time_major and fuse_gelu and onednn.supports(batch.dtype)
                          and onednn.is_exact_gelu(layer.activation)
                          and not isinstance(getattr(layer, "layer_norm", None), nn.LayerNorm))
        self.kernel, self.stride = conv.kernel_size[0], conv.stride[0]
        self.weight = conv.weight[:, 0, :]  # [C, k]
        self.folded: torch.Tensor | None = None
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm):
            frames = batch.unfold(1, self.kernel, self.stride)  # [B, F, k] view of the waveform
            weights, biases = [], []
            w64 = self.weight.double()
            b64 = conv.bias.double() if conv.bias is not None else torch.zeros_like(w64[:, 0])
            for b, count in enumerate(valid):
                mu, sigma = _window_stats(frames[b], int(count))
                mean = w64 @ mu + b64
                var = ((w64 @ sigma) * w64).sum(1).clamp_min(0.0)
                scale = torch.rsqrt(var + norm.eps)
                if norm.affine:
                    scale = scale * norm.weight.double()
                shift = (norm.bias.double() if norm.affine else 0.0) - mean * scale
                weights.append(w64 * scale[:, None])
                biases.append(b64 * scale + shift)
            # The bias rides along as a (k+1)-th weight column against a column of ones: baddbmm
            # would first copy the broadcast bias into the whole [B, C, F] output.
            self.folded = torch.cat([torch.stack(weights), torch.stack(biases)[:, :, None]], dim=2).to(batch.dtype)

    def __call__(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, T']`` -> ``[B, C, F']``."""
        layer, conv = self.layer, self.layer.conv
        frames = waves.unfold(1, self.kernel, self.stride)  # [B, F', k]
        if self.folded is not None:
            ones = torch.ones(*frames.shape[:2], 1, dtype=waves.dtype, device=waves.device)
            windows = torch.cat([frames, ones], dim=2)  # [B, F', k + 1]
            if self.fuse_gelu:
                return _matmul_gelu(windows, self.folded, None).transpose(1, 2)
            if self.time_major:
                return layer.activation(torch.bmm(windows, self.folded.transpose(1, 2))).transpose(1, 2)
            return layer.activation(torch.bmm(self.folded, windows.transpose(1, 2)))  # [B, C, F']
        if self.fuse_gelu:
            weight = self.weight.to(waves.dtype)
            return _matmul_gelu(frames, weight.expand(frames.shape[0], -1, -1), conv.bias).transpose(1, 2)
        if self.time_major:
            hidden = torch.matmul(frames, self.weight.to(waves.dtype).T).transpose(1, 2)  # [B, C, F'] view
        else:
            hidden = torch.matmul(self.weight.to(waves.dtype), frames.transpose(1, 2))  # [B, C, F']
        if conv.bias is not None:
            hidden = hidden + conv.bias[:, None]
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.LayerNorm):
            hidden = norm(hidden.transpose(-2, -1)).transpose(-2, -1)
        return layer.activation(hidden)


def _matmul_gelu(rows: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``gelu(rows[b] @ weights[b]^T + bias)`` per utterance, one oneDNN call each: ``[B, F, k], [B, C, k] -> [B, F, C]``."""
    outs = [onednn.linear(rows[b].contiguous(), weights[b].contiguous(), bias, gelu=True) for b in range(rows.shape[0])]
    return outs[0][None] if len(outs) == 1 else torch.stack(outs)
