"""1-D convolutions run as oneDNN channels-last 2-D ones on time-major activations (CPU inference).

A transformer encoder holds its activations time-major (``[B, T, C]``); transformers' temporal
convolutions transpose them to ``[B, C, T]`` views and call ``conv1d``, which oneDNN runs in its
channel-major layout. Seen as ``[B, C, 1, T]`` in the channels-last memory format (the same bytes:
no copy), the same convolution takes oneDNN's channels-last kernels, and the output comes back
time-major too. Two more things matter (``ONEDNN_VERBOSE=1`` shows both):

* **Weights packed once** (``mkldnn_reorder_conv2d_weight``) and passed to
  ``torch.ops.mkldnn._convolution_pointwise`` (the call torch.compile's CPU backend makes);
  through ``conv2d`` oneDNN would re-order the weight at every call.
* **Fixed shapes.** oneDNN JIT-builds a kernel for every new input shape; stride-1 convolutions
  run over time in tiles of fixed sizes (:data:`TILE_FRAMES`, then :data:`TAIL_FRAMES`), one
  utterance at a time, so only a handful of kernels are ever built.

Without oneDNN (or for anything it refuses) the module falls back to ``conv2d``; results equal
``conv1d``'s up to summation order either way. Measured effects: docs/performance.md.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from speechunits.encoders.cpu import onednn

log = logging.getLogger(__name__)

#: Output frames per tile of a stride-1 convolution, and per tile of the remainder: fixed
#: sizes so that oneDNN's kernels are built once; the last tile wastes < TAIL_FRAMES frames.
TILE_FRAMES = 256
TAIL_FRAMES = 32


class TimeMajorConv1d(nn.Module):
    """``conv``'s weights, applied channels-last: ``[B, C_in, T] -> [B, C_out, T']`` (inference).

    The output is a ``[B, C_out, T']`` view of time-major (``[B, T', C_out]``) storage. With
    ``gelu``, an exact GELU follows the convolution, fused into oneDNN's kernel when packed.
    """

    def __init__(self, conv: nn.Conv1d, *, gelu: bool = False):
        super().__init__()
        self.gelu = gelu
        if conv.padding_mode != "zeros":
            raise ValueError(f"only zero padding is supported, not {conv.padding_mode!r}")
        weight = conv.weight.detach()[:, :, None, :].contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight)  # [C_out, C_in / groups, 1, k], channels-last
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.kernel = conv.kernel_size[0]
        self.stride, self.dilation, self.groups = conv.stride[0], conv.dilation[0], conv.groups
        if isinstance(conv.padding, str):  # "valid" or "same" (stride 1 only, by torch's rules)
            total = 0 if conv.padding == "valid" else self.dilation * (self.kernel - 1)
            self.pad_left, self.pad_right = total // 2, total - total // 2
        else:
            self.pad_left = self.pad_right = conv.padding[0]
        self._packed: torch.Tensor | None = None
        self._pack()

    @property
    def padded(self) -> bool:
        """Whether the convolution zero-pads its input."""
        return self.pad_left > 0 or self.pad_right > 0

    def _pack(self) -> None:
        """oneDNN's blocked copy of the weight (None where oneDNN cannot take it)."""
        self._packed = None
        weight = self.weight
        if weight.device.type != "cpu" or not onednn.available():
            return
        try:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight.contiguous().to_mkldnn(), [0, 0], [1, self.stride], [1, self.dilation], self.groups, None
            )
            probe = torch.zeros(1, weight.shape[1] * self.groups, 1, self.dilation * (self.kernel - 1) + 1,
                                dtype=weight.dtype).contiguous(memory_format=torch.channels_last)
            self._call_packed(probe, packed)
        except (RuntimeError, AttributeError, NotImplementedError) as exc:
            log.debug("oneDNN weight packing unavailable (%s); using conv2d", exc)
            return
        self._packed = packed

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .bfloat16() ... re-pack the new weight
        result = super()._apply(fn, recurse)
        self._pack()
        return result

    def _call_packed(self, windows: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """Unpadded convolution of ``[N, C_in, 1, L]`` with the packed weight -> ``[N, C_out, 1, L']``."""
        return onednn.convolution(windows, packed, self.bias, self.stride, self.dilation, self.groups, gelu=self.gelu)

    def _unpadded(self, windows: torch.Tensor) -> torch.Tensor:
        if self._packed is not None and not torch.is_grad_enabled() and windows.dtype == self.weight.dtype:
            return self._call_packed(windows, self._packed)
        out = torch.nn.functional.conv2d(windows, self.weight, self.bias, (1, self.stride), 0, (1, self.dilation),
                                         self.groups)
        return torch.nn.functional.gelu(out) if self.gelu else out

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, channels, length = hidden.shape
        span = self.dilation * (self.kernel - 1)  # input frames an output frame sees, minus one
        if self._packed is None or self.stride != 1 or torch.is_grad_enabled():
            padded = torch.nn.functional.pad(hidden, (self.pad_left, self.pad_right)) if self.padded else hidden
            return self._unpadded(padded[:, :, None, :])[:, :, 0]
        frames = length + self.pad_left + self.pad_right - span
        tiles, start = [], 0
        while start < frames:
            size = TILE_FRAMES if frames - start >= TILE_FRAMES else TAIL_FRAMES
            tiles.append((start, size))
            start += size
        # Time-major zero-padded input, long enough for the last tile's full window.
        source = hidden.new_zeros(batch, start + span, channels)
        source[:, self.pad_left: self.pad_left + length] = hidden.transpose(1, 2)
        out = hidden.new_empty(batch, frames, self.weight.shape[0])
        for b in range(batch):
            for begin, size in tiles:
                window = source[b: b + 1, begin: begin + size + span].transpose(1, 2)[:, :, None, :]
                keep = min(size, frames - begin)
                out[b, begin: begin + keep] = self._unpadded(window)[0, :, 0, :keep].transpose(0, 1)
        return out.transpose(1, 2)


def is_temporal_padded(module: nn.Module) -> bool:
    """Whether ``module`` is a zero-padded temporal convolution (plain or :class:`TimeMajorConv1d`)."""
    if isinstance(module, TimeMajorConv1d):
        return module.padded
    return isinstance(module, nn.Conv1d) and module.padding not in (0, (0,), "valid")


def use_time_major_cnn_layer(layer: nn.Module, *, fuse_gelu: bool) -> None:
    """Swap the ``conv`` of a CNN layer (``conv`` [-> norm] -> ``activation``) for a :class:`TimeMajorConv1d`.

    With ``fuse_gelu``, and when the layer has no norm and its activation is an exact GELU, the
    GELU moves into the convolution and ``activation`` becomes ``nn.Identity``.
    """
    fuse = fuse_gelu and getattr(layer, "layer_norm", None) is None and onednn.is_exact_gelu(layer.activation)
    layer.conv = TimeMajorConv1d(layer.conv, gelu=fuse)
    if fuse:
        layer.activation = nn.Identity()


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
