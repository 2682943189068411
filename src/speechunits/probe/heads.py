"""Probe heads (SUPERB's two, and its speaker head) and the sequence helpers they share.

:class:`LinearHead` and :class:`BiLSTMHead` map frames ``[B, T, D]`` to frame logits ``[B, T, C]``
(CTC or frame classification) or, through statistics pooling (mean and standard deviation over
the valid frames), to utterance logits ``[B, C]``. :class:`XVectorHead` (utterance level only) is
the x-vector network of SUPERB's speaker verification head: dilated 1-D convolutions over time,
statistics pooling, then two affine layers.
"""
from __future__ import annotations

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError

HEADS = ("linear", "bilstm", "xvector")
LEVELS = ("frame", "utterance")


def valid_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """``[B, T]`` bool, True on the first ``lengths[b]`` frames."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def statistics_pooling(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over the valid frames: ``[B, T, D] -> [B, 2D]``."""
    mask = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    count = mask.sum(1).clamp_min(1.0)
    mean = (x * mask).sum(1) / count
    var = (((x - mean.unsqueeze(1)) ** 2) * mask).sum(1) / count
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)


def stacked_lengths(lengths: torch.Tensor, stack: int) -> torch.Tensor:
    """Frames left of ``lengths`` input frames once every ``stack`` of them are one: ``ceil(n / stack)``."""
    return torch.div(lengths + stack - 1, stack, rounding_mode="floor")


def stack_frames(x: torch.Tensor, lengths: torch.Tensor, stack: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every ``stack`` adjacent frames: ``[B, T, D] -> [B, ceil(T / stack), stack * D]``.

    Frames past ``lengths`` are zeroed first and the last group of an utterance is completed
    with zeros, so a result does not depend on the batch it is in. Returns the stacked frames and
    their lengths (:func:`stacked_lengths`).
    """
    if stack == 1:
        return x, lengths
    b, t, d = x.shape
    x = x * valid_mask(lengths, t).unsqueeze(-1).to(x.dtype)
    extra = (-t) % stack
    if extra:
        x = nn.functional.pad(x, (0, 0, 0, extra))
    return x.reshape(b, (t + extra) // stack, stack * d), stacked_lengths(lengths, stack)


def check_dropout(p: float) -> float:
    """``p`` as a float when it is a dropout probability in [0, 1); else SpeechUnitsError."""
    if not 0.0 <= float(p) < 1.0:
        raise SpeechUnitsError(f"--dropout: expected a probability in [0, 1), got {p}")
    return float(p)


class Dropout(nn.Module):
    """Inverted dropout (training only): each element zeroed with probability ``p``, the rest scaled by
    ``1 / (1 - p)``, as ``nn.Dropout``. On CPU the mask is drawn with ``torch.rand_like`` instead of
    torch's Bernoulli sampler, which is slow there: on one thread and a [200, 100, 256] batch, forward
    and backward take about half of ``F.dropout``'s time, which was a tenth of a unit probe's step.
    On other devices it is ``F.dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        scale = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))  # 0 or 1 / (1 - p)
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float) -> nn.Module | None:
    """:class:`Dropout` ``(p)``, or None for ``p == 0`` (no module: a head without dropout draws no random
    numbers, so probes trained before the option repeat exactly)."""
    p = check_dropout(p)
    return Dropout(p) if p > 0 else None


class LinearHead(nn.Module):
    """A linear map per frame, or of the pooled statistics (``level="utterance"``); ``dropout`` on its input."""

    def __init__(self, in_dim: int, num_classes: int, level: str = "frame", dropout: float = 0.0):
        super().__init__()
        self.level = level
        self.dropout = make_dropout(dropout)
        self.proj = nn.Linear(in_dim * (2 if level == "utterance" else 1), num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
            x = self.dropout(x)
        if self.level == "utterance":
            return self.proj(statistics_pooling(x, lengths))
        return self.proj(x)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of ``x [B, T, D]`` reversed within its first ``lengths[b]`` frames; padding stays put."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    valid = lengths.to(x.device)[:, None]
    index = torch.where(t < valid, valid - 1 - t, t)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class BiLSTMHead(nn.Module):
    """A bidirectional LSTM (padding ignored) then a linear map per frame or of pooled statistics.

    The weights are one ``nn.LSTM(bidirectional=True)`` (``lstm.*`` in the state dict), but it does
    not run on a ``PackedSequence``: on CPU, autograd through a packed LSTM zero-fills a copy of the
    whole packed sequence for every time step in the backward pass (quadratic in T; 15-20x the
    forward's cost on 3-s utterances, pytorch/pytorch#149194). Each direction of each layer runs
    instead as a unidirectional LSTM over the padded batch with the bidirectional module's weights
    of that direction: forwards as is (padding at the end cannot reach the valid frames), backwards
    on every sequence reversed within its own length (:func:`reverse_padded`), then reversed back.
    Outputs on valid frames equal the packed LSTM's (tested), whatever the padding.

    ``dropout`` (training only) applies to the input of every LSTM layer and to the last layer's
    output, as s3prl's RNN downstream does between its layers.
    """

    def __init__(self, in_dim: int, num_classes: int, level: str = "frame", hidden: int = 256, num_layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise SpeechUnitsError(f"--lstm-layers: must be >= 1, got {num_layers}")
        self.level = level
        self.dropout = make_dropout(dropout)
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden * (2 if level == "utterance" else 1), num_classes)
        # weightless shells that run one direction with the weights above (a list: not submodules)
        self._shells = [nn.LSTM(in_dim if layer == 0 else 2 * hidden, hidden, batch_first=True)
                        for layer in range(num_layers)]
        for shell in self._shells:
            for name in list(shell._flat_weights_names):
                setattr(shell, name, None)

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        from torch.func import functional_call

        weights = {f"{name}_l0": getattr(self.lstm, f"{name}_l{layer}{suffix}")
                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        return functional_call(self._shells[layer], weights, (x,))[0]

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, T, D] -> [B, T, 2 * hidden]`` (frames past ``lengths`` hold no meaning)."""
        lengths = lengths.clamp_min(1)
        for layer in range(self.lstm.num_layers):
            if self.dropout is not None:
                x = self.dropout(x)
            forward = self._direction(x, layer, "")
            backward = reverse_padded(self._direction(reverse_padded(x, lengths), layer, "_reverse"), lengths)
            x = torch.cat([forward, backward], dim=-1)
        return x if self.dropout is None else self.dropout(x)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = self.encode(x, lengths)
        if self.level == "utterance":
            return self.proj(statistics_pooling(y, lengths))
        return self.proj(y)


class XVectorHead(nn.Module):
    """The x-vector network (Snyder et al. 2018) on probe features: five time-delay layers (1-D
    convolutions, kernel/dilation 5/1, 3/2, 3/3, 1/1, 1/1; ``hidden`` channels, the last ``3 * hidden``)
    with ReLU, statistics pooling over the valid frames, an affine layer of ``hidden`` with ReLU, then
    a linear map to ``num_classes`` (a ``verify`` probe's embedding size). Frames past ``lengths`` are
    zeroed before every convolution, so an utterance's output does not depend on its batch's padding.
    No batch normalisation: its statistics would mix padding in. ``dropout`` (training only) on the
    pooled statistics and the affine layer's output."""

    LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))

    def __init__(self, in_dim: int, num_classes: int, level: str = "utterance", hidden: int = 512,
                 dropout: float = 0.0):
        super().__init__()
        if level != "utterance":
            raise SpeechUnitsError("--head xvector pools utterances: it serves speaker, classify and verify")
        self.level = level
        widths = [in_dim] + [hidden] * (len(self.LAYERS) - 1) + [3 * hidden]
        self.tdnn = nn.ModuleList(nn.Conv1d(widths[i], widths[i + 1], kernel, dilation=dilation,
                                            padding=dilation * (kernel - 1) // 2)
                                  for i, (kernel, dilation) in enumerate(self.LAYERS))
        self.segment = nn.Linear(2 * widths[-1], hidden)
        self.dropout = make_dropout(dropout)
        self.proj = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.clamp_min(1)
        mask = valid_mask(lengths, x.shape[1]).unsqueeze(1).to(x.dtype)  # [B, 1, T]
        h = x.transpose(1, 2)  # [B, D, T]
        for conv in self.tdnn:
            h = torch.relu(conv(h * mask))
        pooled = statistics_pooling((h * mask).transpose(1, 2), lengths)
        if self.dropout is not None:
            pooled = self.dropout(pooled)
        h = torch.relu(self.segment(pooled))
        if self.dropout is not None:
            h = self.dropout(h)
        return self.proj(h)
