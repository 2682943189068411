"""Attention for bf16/fp16 inference on CPU: two batched matmuls and a softmax.

PyTorch's CPU flash-attention kernel (what ``scaled_dot_product_attention`` picks on CPU)
reached ~110-125 GFLOP/s in bf16 here, about 30 % of this machine's bf16 matmul speed, for
the shapes of speech encoders (12 heads of 64, 150-750 frames). Written out as
``softmax(q k^T * scale + mask) v`` with two ``matmul`` calls it ran 1.35x faster on the
same shapes: the T x T scores of one utterance (a few MB) fit in cache, which is the case
flash attention's tiling is built for on GPUs and gains little from here.

When the mask only pads keys at the end (what a padded batch of utterances gives), each
utterance attends over its own frames: no mask pass over the T x T scores and no work on padded
frames (measured 1.07x end to end on a bf16 HuBERT-base run); padded query rows get zeros,
which nothing reads. Any other mask goes through ``masked_fill``.

:func:`use_cpu_attention` registers this function with transformers' attention interface
(and the boolean padding mask that SDPA uses, so padded keys stay masked) and switches a
model to it. Anything else (fp32, CUDA, training) falls back to transformers' SDPA path.
"""
from __future__ import annotations

import logging
import weakref
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Name under which the function is registered with transformers.
NAME = "speechunits_cpu_math"


def cpu_math_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    """``[B, H, T, d]`` query/key/value -> ``([B, T, H, d], None)``; ``attention_mask``: bool, True = attend."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu" or module.training or query.dtype == torch.float32:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    lengths = _key_lengths(attention_mask, query.shape[2])
    if lengths is None:
        scores = torch.matmul(query * scale, key.transpose(-1, -2))  # [B, H, T, T]
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, float("-inf"))
        elif attention_mask is not None:
            scores += attention_mask
        out = torch.matmul(torch.softmax(scores, dim=-1), value)  # [B, H, T, d]
        return out.transpose(1, 2).contiguous(), None
    # Key padding only: each utterance attends over its own frames, no mask pass, no padded work.
    frames = query.shape[2]
    out = query.new_empty(query.shape[0], frames, query.shape[1], query.shape[3])  # [B, T, H, d]
    for b, n in enumerate(lengths):
        q, k, v = query[b, :, :n], key[b, :, :n], value[b, :, :n]  # [H, n, d]
        scores = torch.matmul(q * scale, k.transpose(-1, -2))  # [H, n, n]
        torch.softmax(scores, dim=-1, out=scores)  # in place: one [H, n, n] buffer, not two
        out[b, :n] = torch.matmul(scores, v).transpose(0, 1)
        if n < frames:
            out[b, n:] = 0  # padded query rows: read by nothing, but kept finite
    return out, None


#: The last mask examined (weakly held, with its storage address) and its answer. transformers
#: builds one mask per forward pass and passes that tensor to every block, so it is examined
#: once per batch, not once per block; a mask is taken not to change while it is in use.
_last_mask: tuple[weakref.ref, int, list[int] | None] | None = None


def _key_lengths(mask: torch.Tensor | None, frames: int) -> list[int] | None:
    """Per-row valid lengths when ``mask`` ([B, 1, T, T] bool) only masks padded keys at the end, else None."""
    global _last_mask
    if mask is None or mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1:
        return None
    if _last_mask is not None and _last_mask[0]() is mask and _last_mask[1] == mask.data_ptr():
        return _last_mask[2]
    lengths = _padding_lengths(mask, frames)
    _last_mask = (weakref.ref(mask), mask.data_ptr(), lengths)
    return lengths


def _padding_lengths(mask: torch.Tensor, frames: int) -> list[int] | None:
    keys = mask[:, 0, 0, :]  # [B, T]: what the first query may see
    lengths = keys.sum(-1)
    prefix = torch.arange(frames, device=mask.device)[None, :] < lengths[:, None]
    if not torch.equal(keys, prefix) or not torch.equal(mask[:, 0], keys[:, None, :].expand_as(mask[:, 0])):
        return None
    return [int(n) for n in lengths]


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, cpu_math_attention)
        AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def use_cpu_attention(model: nn.Module) -> bool:
    """Switch a transformers model from SDPA to :func:`cpu_math_attention`; False when it cannot be."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    try:
        _register()
        model.set_attn_implementation(NAME)
    except (AttributeError, ImportError, KeyError, ValueError) as exc:
        log.debug("%s: keeping SDPA attention (%s)", type(model).__name__, exc)
        return False
    return model.config._attn_implementation == NAME
