"""Attention for bf16/fp16 inference on CPU: two batched matmuls and a softmax.

PyTorch's CPU flash-attention kernel (what ``scaled_dot_product_attention`` picks on CPU) is
tiled for GPUs; for speech encoders' shapes (a few heads of 64, 150-750 frames) one utterance's
``T x T`` scores fit in cache, and ``softmax(q k^T * scale + mask) v`` written as two ``matmul``
calls runs faster (docs/performance.md).

When the mask only pads keys at the end (what a padded batch of utterances gives), each
utterance attends over its own frames: no mask pass over the ``T x T`` scores and no work on
padded frames; padded query rows get zeros, which nothing reads. Any other mask goes through
``masked_fill``.

:func:`use_cpu_attention` registers :func:`cpu_math_attention` with transformers' attention
interface (with the boolean padding mask that SDPA uses, so padded keys stay masked; this
registration is the only process-wide state) and switches one model to it. Anything else (fp32,
CUDA, training) falls back to transformers' SDPA path.
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
#: Attribute under which :func:`use_cpu_attention` gives a model's attention modules their
#: shared :class:`MaskMemo`.
MEMO_ATTRIBUTE = "_speechunits_mask_memo"


def cpu_math_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                       **kwargs: Any) -> tuple[torch.Tensor, None]:
    """``[B, H, T, d]`` query/key/value -> ``([B, T, H, d], None)``; ``attention_mask``: bool, True = attend."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu" or module.training or query.dtype == torch.float32:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    memo = getattr(module, MEMO_ATTRIBUTE, None)
    frames = query.shape[2]
    lengths = memo.key_lengths(attention_mask, frames) if memo is not None else key_lengths(attention_mask, frames)
    if lengths is None:
        scores = torch.matmul(query * scale, key.transpose(-1, -2))  # [B, H, T, T]
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, float("-inf"))
        elif attention_mask is not None:
            scores += attention_mask
        out = torch.matmul(torch.softmax(scores, dim=-1), value)  # [B, H, T, d]
        return out.transpose(1, 2).contiguous(), None
    # Key padding only: each utterance attends over its own frames, no mask pass, no padded work.
    out = query.new_empty(query.shape[0], frames, query.shape[1], query.shape[3])  # [B, T, H, d]
    for b, n in enumerate(lengths):
        q, k, v = query[b, :, :n], key[b, :, :n], value[b, :, :n]  # [H, n, d]
        scores = torch.matmul(q * scale, k.transpose(-1, -2))  # [H, n, n]
        torch.softmax(scores, dim=-1, out=scores)  # in place: one [H, n, n] buffer, not two
        out[b, :n] = torch.matmul(scores, v).transpose(0, 1)
        if n < frames:
            out[b, n:] = 0  # padded query rows: read by nothing, but kept finite
    return out, None


class MaskMemo:
    """The key lengths of the last attention mask one model's blocks saw.

    transformers builds one mask per forward pass and passes that tensor to every block, so with
    this memo (shared by the blocks of one model, owned by that model) the mask is examined once
    per pass, not once per block. The mask is held weakly, with its storage address; a mask is
    taken not to change while it is in use.
    """

    def __init__(self) -> None:
        self._mask: weakref.ref | None = None
        self._address = 0
        self._lengths: list[int] | None = None

    def key_lengths(self, mask: torch.Tensor | None, frames: int) -> list[int] | None:
        """:func:`key_lengths` of ``mask``, computed once per mask tensor."""
        if mask is None:
            return None
        if self._mask is not None and self._mask() is mask and self._address == mask.data_ptr():
            return self._lengths
        lengths = key_lengths(mask, frames)
        self._mask, self._address, self._lengths = weakref.ref(mask), mask.data_ptr(), lengths
        return lengths


def key_lengths(mask: torch.Tensor | None, frames: int) -> list[int] | None:
    """Per-row valid lengths when ``mask`` ([B, 1, T, T] bool) only masks padded keys at the end, else None."""
    if mask is None or mask.dtype != torch.bool or mask.dim() != 4 or mask.shape[1] != 1:
        return None
    return _padding_lengths(mask, frames)


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


def use_cpu_attention(model: nn.Module) -> MaskMemo | None:
    """Switch a transformers model from SDPA to :func:`cpu_math_attention`.

    Returns the :class:`MaskMemo` its attention modules now share, or None when the model keeps
    its attention (not SDPA, or transformers refuses the switch).
    """
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return None
    try:
        _register()
        model.set_attn_implementation(NAME)
    except (AttributeError, ImportError, KeyError, ValueError) as exc:
        log.debug("%s: keeping SDPA attention (%s)", type(model).__name__, exc)
        return None
    if model.config._attn_implementation != NAME:
        return None
    memo = MaskMemo()
    for module in model.modules():
        if all(hasattr(module, name) for name in ("q_proj", "k_proj", "v_proj")):
            setattr(module, MEMO_ATTRIBUTE, memo)
    return memo
