"""The one entry to the CPU kernels: :func:`optimize_for_cpu` and the :class:`CpuKernels` it returns."""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from speechunits.encoders.cpu import onednn
from speechunits.encoders.cpu.attention import MaskMemo, use_cpu_attention
from speechunits.encoders.cpu.cnn_chunks import ROUND_FRAMES, cnn_in_chunks
from speechunits.encoders.cpu.first_conv import FirstLayerPlan, is_plain_first_conv
from speechunits.encoders.cpu.time_major_conv import use_time_major_cnn_layer, use_time_major_convs
from speechunits.encoders.front_end import cnn_features, first_layer_frames

#: Set to a non-empty value other than ``0`` to keep transformers' plain modules on CPU.
DISABLE_ENV = "SPEECHUNITS_NO_CPU_KERNELS"


def cpu_kernels_wanted(requested: bool | None = None) -> bool:
    """``requested`` when given; otherwise on unless :data:`DISABLE_ENV` is set (non-empty, not ``0``)."""
    if requested is not None:
        return bool(requested)
    return os.environ.get(DISABLE_ENV, "").strip() in ("", "0")


class CpuKernels:
    """What :func:`optimize_for_cpu` installed in one model, and the CNN front end it runs.

    Attributes:
        first_layer_matmul: the first CNN layer runs as one matmul (``first_conv.py``).
        cnn_in_pieces: the CNN runs over time in pieces (``cnn_chunks.py``).
        time_major_cnn: CNN layers 2.. are channels-last convolutions (``time_major_conv.py``;
            bf16/fp16 only).
        fused_gelu: linears use packed weights and GELUs are fused into the op before them
            (``onednn.py``; bf16 with oneDNN only).
        attention: the mask memo of the model's matmul-softmax attention (``attention.py``;
            bf16/fp16 SDPA models only), else None.
    """

    def __init__(self, conv_layers: nn.ModuleList, kernels: Sequence[int], strides: Sequence[int], *,
                 first_layer_matmul: bool, cnn_in_pieces: bool, time_major_cnn: bool, fused_gelu: bool,
                 attention: MaskMemo | None):
        self._conv_layers = conv_layers
        self._kernels, self._strides = [int(k) for k in kernels], [int(s) for s in strides]
        self.first_layer_matmul = first_layer_matmul
        self.cnn_in_pieces = cnn_in_pieces
        self.time_major_cnn = time_major_cnn
        self.fused_gelu = fused_gelu
        self.attention = attention

    def conv_features(self, batch: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
        """The CNN front end on ``batch [B, T]`` (zero-padded; ``lengths[b]`` valid samples) -> ``[B, C, F_max]``.

        Equals :func:`speechunits.encoders.front_end.cnn_features` (per-utterance GroupNorm
        statistics) up to summation order; may be stored time-major.
        """
        layers = self._conv_layers
        if not self.first_layer_matmul:
            return cnn_features(layers, batch, lengths)
        valid = first_layer_frames(layers[0].conv, lengths)
        plan = FirstLayerPlan(layers[0], batch, valid, time_major=self.time_major_cnn, fuse_gelu=self.fused_gelu)
        if self.cnn_in_pieces:
            return cnn_in_chunks(plan, layers[1:], batch, self._kernels, self._strides, round_frames=ROUND_FRAMES)
        hidden = plan(batch)
        for layer in layers[1:]:
            hidden = layer(hidden)
        return hidden

    def __repr__(self) -> str:
        return (f"CpuKernels(first_layer_matmul={self.first_layer_matmul}, cnn_in_pieces={self.cnn_in_pieces}, "
                f"time_major_cnn={self.time_major_cnn}, fused_gelu={self.fused_gelu}, "
                f"attention={self.attention is not None})")


def optimize_for_cpu(model: nn.Module, dtype: torch.dtype) -> CpuKernels:
    """Swap faster CPU equivalents into a wav2vec 2.0-style transformers model, in place, for inference.

    ``model`` must already be in eval mode, on CPU and in ``dtype`` (``feature_extractor``,
    ``feature_projection`` and ``encoder`` parts). In every dtype: the encoder's zero-padded
    temporal convolutions become channels-last ones, and the CNN's first layer a matmul run over
    time in pieces (when its shape allows). In bf16/fp16: the CNN's later layers channels-last and
    attention as matmul-softmax-matmul. In bf16 with oneDNN on a CPU that has bf16 instructions
    (:func:`onednn.supports`): packed linears and fused GELUs.
    The swapped modules fall back to plain ops under autograd. fp32 keeps transformers'
    arithmetic up to summation order.
    """
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device.type != "cpu":
        raise ValueError(f"optimize_for_cpu: the model is on {parameter.device}, not on the CPU")
    config = model.config
    conv_layers = model.feature_extractor.conv_layers
    first_layer_matmul = is_plain_first_conv(conv_layers[0])
    cnn_in_pieces = first_layer_matmul and all(_unpadded_conv(getattr(layer, "conv", None))
                                               for layer in conv_layers[1:])
    time_major_cnn = cnn_in_pieces and dtype != torch.float32
    fused_gelu = dtype == torch.bfloat16 and onednn.supports(dtype)
    attention = use_cpu_attention(model) if dtype != torch.float32 else None
    use_time_major_convs(model.encoder, padded_only=True)
    if time_major_cnn:
        for layer in conv_layers[1:]:
            use_time_major_cnn_layer(layer, fuse_gelu=fused_gelu)
    if fused_gelu:
        onednn.use_packed_linears(model.feature_projection)
        onednn.use_packed_linears(model.encoder)
    return CpuKernels(conv_layers, config.conv_kernel, config.conv_stride, first_layer_matmul=first_layer_matmul,
                      cnn_in_pieces=cnn_in_pieces, time_major_cnn=time_major_cnn, fused_gelu=fused_gelu,
                      attention=attention)


def _unpadded_conv(conv: nn.Module | None) -> bool:
    return isinstance(conv, nn.Conv1d) and conv.padding in (0, (0,), "valid") and conv.dilation == (1,)
