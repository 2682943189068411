"""Probe models: a featurizer (layers or units -> one frame sequence) and a small head.

Featurizers of continuous features ``x [B, L, T, D]`` (the L requested layers stacked):

* :class:`WeightedSum` (s3prl's featurizer): ``sum_l softmax(w)_l x_l`` with learned ``w``
  (zeros at start: the plain mean); :meth:`WeightedSum.weights` are the reported layer weights.
* :class:`HierarchicalConv` (our reading of "Interface Design for Self-Supervised Speech
  Models", Wu et al., 2024): the layer axis is treated as a sequence with D channels and
  reduced by a stack of kernel-2, stride-2 convolutions (GELU between them) until one position
  is left: ``ceil(log2 L)`` convolutions of ``D x hidden x 2`` weights, so neighbouring layers
  are merged first and deeper merges see the whole stack. Output dimension ``hidden``.
* :class:`Single`: one of the stacked layers, unchanged.

Units ``ids [B, T, S]`` go through :class:`UnitEmbedding`: one ``nn.Embedding`` per stream,
combined by sum or by attention over streams (DASB), plus a duration embedding when the units
are deduplicated (durations clamped to :data:`~speechunits.probe.inputs.MAX_DURATION`). With
``embed_init`` ``centroids`` (DASB's initialisation from the k-means centres), each stream's table
has the codebook's dimension, starts from its standardised centroids (a BPE token: the mean of
its units' centroids) and is followed by a linear map to ``embed_dim``; ``centroids-frozen``
keeps the tables fixed (the probe then reads the quantised features).

Heads (SUPERB's two): :class:`LinearHead` and :class:`BiLSTMHead`, giving frame logits
``[B, T, C]`` (CTC or frame classification) or utterance logits ``[B, C]`` through statistics
pooling (mean and standard deviation over the valid frames).

``--finetune top:N`` (:class:`TopBlocks`): the input caches layer ``K - N`` of a transformers model
and the model trains a copy of its top N blocks with the featurizer and head. ``--finetune lora``
and ``adapters``: the input caches layer 0 (the transformer's input), blocks ``1..deepest read
layer`` run in the training step with frozen weights plus trained peft LoRA updates on their
attention projections (``lora``) or feed-forward (``adapters``); see docs/probe.md.

A :class:`ProbeModel` is built from a JSON *spec* (:func:`build_model`), stored in ``probe.json``.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import standardised_rows
from speechunits.probe.inputs import FEATURES, MAX_DURATION, UNITS
from speechunits.probe.augment import (UnitNoise, apply_time_mask, nearest_units, substitute_units,
                                       time_mask_from_spec, unit_noise_from_spec)

INTERFACES = ("weighted-sum", "hierarchical-conv", "single")
COMBINES = ("sum", "attention")
#: How unit embedding tables start: learned from random, from the codebook centroids, or fixed to them.
EMBED_RANDOM, EMBED_CENTROIDS, EMBED_FROZEN = "random", "centroids", "centroids-frozen"
EMBED_INITS = (EMBED_RANDOM, EMBED_CENTROIDS, EMBED_FROZEN)
HEADS = ("linear", "bilstm")
LEVELS = ("frame", "utterance")


# -- featurizers -----------------------------------------------------------------------------------

class WeightedSum(nn.Module):
    """Softmax-normalised learned weights over ``num_layers`` layers: ``[B, L, T, D] -> [B, T, D]``.

    Args:
        normalize: layer-normalise each layer (no affine) before weighting, as s3prl can.
    """

    def __init__(self, num_layers: int, normalize: bool = False):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))
        self.normalize = normalize

    def weights(self) -> torch.Tensor:
        """The layer weights ``[L]`` (non-negative, summing to one)."""
        return torch.softmax(self.logits.detach().float(), dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.logits.numel():
            raise SpeechUnitsError(f"weighted sum over {self.logits.numel()} layers got {x.shape[1]}")
        if self.normalize:
            x = nn.functional.layer_norm(x, x.shape[-1:])
        weights = torch.softmax(self.logits, dim=0).to(x.dtype)
        return torch.einsum("l,bltd->btd", weights, x)


class HierarchicalConv(nn.Module):
    """Convolutions over the layer axis, halving it until one position is left (module docstring)."""

    def __init__(self, num_layers: int, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.num_layers = num_layers
        self.out_dim = hidden if num_layers > 1 else dim
        convs = []
        channels, length = dim, num_layers
        while length > 1:
            convs.append(nn.Conv1d(channels, hidden, kernel_size=2, stride=2))
            channels, length = hidden, math.ceil(length / 2)
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, layers, t, d = x.shape
        y = x.permute(0, 2, 3, 1).reshape(b * t, d, layers)  # [B*T, D, L]
        for i, conv in enumerate(self.convs):
            if y.shape[-1] % 2:  # odd: repeat the deepest layer so the pairs cover it
                y = torch.cat([y, y[..., -1:]], dim=-1)
            y = conv(y)
            if i < len(self.convs) - 1:
                y = nn.functional.gelu(y)
        return y.reshape(b, t, -1)


class Single(nn.Module):
    """Layer ``index`` of the stacked input (an index into the requested layers, not a layer number)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = int(index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class UnitEmbedding(nn.Module):
    """Unit ids ``[B, T, S]`` (+ durations ``[B, T]``) -> ``[B, T, dim]``.

    Args:
        vocab_sizes: K of each stream.
        combine: "sum" of the stream embeddings, or "attention": per frame, softmax over
            streams of a learned score of each stream's embedding (DASB's attention combiner).
        durations: add an embedding of each unit's duration (deduplicated units), zero at start.
        table_dims: per stream, the width of a table initialised from codebook centroids
            (:meth:`load_centroids`), mapped to ``dim`` by a linear layer; None: ``[K, dim]``
            tables learned from a random start (the weights of older probes).
        frozen: the centroid tables are not trained.
        noise: while training, substitute units by their nearest units by centroid distance
            (:class:`~speechunits.probe.augment.UnitNoise`; needs centroid tables, and the
            neighbours come from :meth:`load_centroids`).
    """

    def __init__(self, vocab_sizes: list[int], dim: int, combine: str = "sum", durations: bool = False,
                 table_dims: list[int] | None = None, frozen: bool = False, noise: UnitNoise | None = None):
        super().__init__()
        if noise is not None and table_dims is None:
            raise SpeechUnitsError("--unit-noise substitutes units by their nearest centroids: it needs "
                                   "--embed-init centroids or centroids-frozen")
        self.noise = noise
        # per stream [K, N] nearest units (set by load_centroids; not saved: only training uses them)
        self.neighbours: list[torch.Tensor] | None = None
        if combine not in COMBINES:
            raise SpeechUnitsError(f"--combine: expected one of {COMBINES}, got {combine!r}")
        if table_dims is not None and len(table_dims) != len(vocab_sizes):
            raise SpeechUnitsError(f"{len(table_dims)} centroid table widths for {len(vocab_sizes)} unit streams")
        widths = [dim] * len(vocab_sizes) if table_dims is None else [int(d) for d in table_dims]
        self.tables = nn.ModuleList(nn.Embedding(int(k), width) for k, width in zip(vocab_sizes, widths))
        self.projections = None if table_dims is None else nn.ModuleList(nn.Linear(w, dim) for w in widths)
        if frozen:
            if table_dims is None:
                raise SpeechUnitsError("frozen unit embeddings need tables initialised from centroids")
            for table in self.tables:
                table.weight.requires_grad_(False)
        self.combine = combine
        self.score = nn.Linear(dim, 1) if combine == "attention" else None
        self.duration = nn.Embedding(MAX_DURATION + 1, dim) if durations else None
        if self.duration is not None:
            # Start neutral: nn.Embedding's N(0, 1) rows are ~3x the scale of a projected centroid
            # row and drowned the unit identity (docs/probe.md, "Durations that start at zero");
            # the rows still learn from the first step.
            nn.init.zeros_(self.duration.weight)
        self.out_dim = dim

    @torch.no_grad()
    def load_centroids(self, tables: list[torch.Tensor]) -> None:
        """Start each stream's table from ``tables[s]`` ``[K_s, D_s]`` (a token's row: the mean of its
        units' centroids), every dimension standardised over the table's rows."""
        if self.projections is None:
            raise SpeechUnitsError("this unit embedding was not built for centroid tables (table_dims)")
        if len(tables) != len(self.tables):
            raise SpeechUnitsError(f"{len(tables)} centroid tables for {len(self.tables)} unit streams")
        for s, (table, values) in enumerate(zip(self.tables, tables)):
            values = torch.as_tensor(values, dtype=torch.float32)
            if tuple(values.shape) != tuple(table.weight.shape):
                raise SpeechUnitsError(f"stream {s}: centroid table {tuple(values.shape)}, the embedding expects "
                                       f"{tuple(table.weight.shape)}")
            table.weight.copy_(standardised_rows(values))
        if self.noise is not None:
            self.neighbours = [nearest_units(table.weight, self.noise.neighbours) for table in self.tables]

    def forward(self, ids: torch.Tensor, durations: torch.Tensor | None = None) -> torch.Tensor:
        if ids.shape[-1] != len(self.tables):
            raise SpeechUnitsError(f"unit embedding of {len(self.tables)} streams got {ids.shape[-1]}")
        if self.training and self.noise is not None:
            if self.neighbours is None:
                raise SpeechUnitsError("--unit-noise: the neighbour lists come from the centroids "
                                       "(load_centroids) and were not computed")
            ids = torch.stack([substitute_units(ids[..., s], near, self.noise.prob)
                               for s, near in enumerate(self.neighbours)], dim=-1)
        embedded = [table(ids[..., s]) for s, table in enumerate(self.tables)]
        if self.projections is not None:
            embedded = [project(e) for project, e in zip(self.projections, embedded)]
        stacked = torch.stack(embedded, dim=2)  # [B, T, S, dim]
        if self.score is not None:
            weights = torch.softmax(self.score(stacked).squeeze(-1), dim=-1)  # [B, T, S]
            out = (weights.unsqueeze(-1) * stacked).sum(2)
        else:
            out = stacked.sum(2)
        if self.duration is not None:
            if durations is None:
                raise SpeechUnitsError("this probe reads deduplicated units: durations are missing")
            out = out + self.duration(durations.clamp(0, MAX_DURATION))
        return out


# -- heads -----------------------------------------------------------------------------------------

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


# -- fine-tuning blocks of the encoder ------------------------------------------------------------

FINETUNE_TOP = "top"
FINETUNE_LORA = "lora"
FINETUNE_ADAPTERS = "adapters"
FINETUNE_KINDS = (FINETUNE_TOP, FINETUNE_LORA, FINETUNE_ADAPTERS)
#: Default rank of the low-rank updates of ``lora`` and ``adapters``.
DEFAULT_RANK = 8
#: Parameter names of the low-rank updates (what a LoRA/adapters probe saves of the encoder).
LOW_RANK_MARK = "lora_"
#: Linear layers of a wav2vec 2.0-style block (HuBERT, wav2vec 2.0, WavLM) that ``lora`` adapts ...
LORA_TARGETS = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj")
#: ... and that ``adapters`` adapts (the feed-forward; see docs/probe.md).
ADAPTER_TARGETS = ("feed_forward.intermediate_dense", "feed_forward.output_dense")
#: The same two sets in a conformer block (wav2vec 2.0-conformer, w2v-BERT 2.0): attention and both
#: macaron feed-forwards.
CONFORMER_LORA_TARGETS = ("self_attn.linear_q", "self_attn.linear_k", "self_attn.linear_v", "self_attn.linear_out")
CONFORMER_ADAPTER_TARGETS = ("ffn1.intermediate_dense", "ffn1.output_dense", "ffn2.intermediate_dense",
                             "ffn2.output_dense")


def is_conformer_block(layer: nn.Module) -> bool:
    """Whether ``layer`` is a conformer block (has a convolution module between attention and feed-forward)."""
    return hasattr(layer, "conv_module")


@dataclass(frozen=True)
class Finetune:
    """A parsed ``--finetune``: ``top:N`` (``blocks``) or ``lora[:R]`` / ``adapters[:R]`` (``rank``)."""

    kind: str
    blocks: int = 0
    rank: int = DEFAULT_RANK

    @property
    def low_rank(self) -> bool:
        """LoRA or adapters: the encoder's weights stay frozen; only low-rank updates train."""
        return self.kind in (FINETUNE_LORA, FINETUNE_ADAPTERS)

    def targets(self, conformer: bool = False) -> tuple[str, ...]:
        """The linear layers adapted in each block (conformer blocks name them differently)."""
        if conformer:
            return CONFORMER_LORA_TARGETS if self.kind == FINETUNE_LORA else CONFORMER_ADAPTER_TARGETS
        return LORA_TARGETS if self.kind == FINETUNE_LORA else ADAPTER_TARGETS


def parse_finetune(text: str | None) -> Finetune | None:
    """``"top:N"``, ``"lora"``, ``"lora:R"``, ``"adapters"``, ``"adapters:R"`` (None: no fine-tuning)."""
    if text is None:
        return None
    kind, colon, count = text.partition(":")
    if kind in (FINETUNE_LORA, FINETUNE_ADAPTERS):
        if colon and (not count.isdigit() or int(count) < 1):
            raise SpeechUnitsError(f"--finetune: expected {kind} or {kind}:RANK with RANK >= 1, got {text!r}")
        return Finetune(kind, rank=int(count) if colon else DEFAULT_RANK)
    if kind != FINETUNE_TOP or not count.isdigit() or int(count) < 1:
        raise SpeechUnitsError(f"--finetune: expected top:N with N >= 1, lora[:RANK] or adapters[:RANK], got {text!r}")
    return Finetune(FINETUNE_TOP, blocks=int(count))


def add_low_rank(layers: nn.Module, kind: str, rank: int) -> None:
    """Wrap the :data:`LORA_TARGETS` (``lora``) or :data:`ADAPTER_TARGETS` (``adapters``) linear layers
    of ``layers`` (the ``CONFORMER_`` ones in conformer blocks) with peft LoRA modules of ``rank`` (alpha ``2 * rank``, no dropout; the update
    starts at zero, so the blocks start as the encoder's). Only the ``lora_`` parameters train."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise SpeechUnitsError(f"--finetune {kind}: needs peft (pip install 'speechunits[finetune]')") from None
    if kind == FINETUNE_LORA and any(hasattr(getattr(layer, "attention", None), "gru_rel_pos_linear")
                                     for layer in layers):
        raise SpeechUnitsError("--finetune lora: this model's attention (WavLM's gated relative position "
                               "attention) reads its projection weights directly, so LoRA there would have no "
                               "effect; use --finetune adapters (feed-forward) or top:N")
    targets = Finetune(kind).targets(conformer=any(is_conformer_block(layer) for layer in layers))
    pattern = r".*\.(" + "|".join(t.replace(".", r"\.") for t in targets) + ")"
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=pattern),
                            layers)
    for name, param in layers.named_parameters():
        param.requires_grad = LOW_RANK_MARK in name


class TopBlocks(nn.Module):
    """Transformer blocks ``first + 1 .. first + blocks`` of a transformers SSL model, trained with the probe.

    Reads layer ``first`` of the model (default ``num_layers - blocks``: the top blocks; what the
    input caches: the frozen part runs once per utterance) and returns layers
    ``first..first + blocks`` stacked, ``[B, blocks + 1, T, D]``, as the encoder defines them
    (block outputs, no final norm). Padded frames are masked in attention. ``pretrained=False``
    builds the blocks from the model's config only (their weights then come from the probe's
    ``head.safetensors``). ``low_rank=(kind, rank)`` freezes the blocks and adds LoRA updates
    (:func:`add_low_rank`). :attr:`identity` is the base model's identity (pretrained only).
    """

    def __init__(self, encoder: str, blocks: int, pretrained: bool = True, *, first: int | None = None,
                 low_rank: tuple[str, int] | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        try:
            model = AutoModel.from_pretrained(encoder) if pretrained else AutoModel.from_config(
                AutoConfig.from_pretrained(encoder))
        except (OSError, ValueError) as exc:
            raise SpeechUnitsError(f"--finetune: cannot load the transformers model {encoder!r} ({exc})") from None
        layers = getattr(getattr(model, "encoder", None), "layers", None)
        if layers is None:
            raise SpeechUnitsError(f"--finetune: {encoder!r} has no encoder.layers to fine-tune")
        first = len(layers) - blocks if first is None else first
        if not 1 <= blocks or not 0 <= first or first + blocks > len(layers):
            raise SpeechUnitsError(f"--finetune: blocks {first + 1}..{first + blocks} of {encoder!r}, which has "
                                   f"{len(layers)} blocks")
        self.identity: str | None = None
        if pretrained:
            from speechunits.encoders.hf import model_identity

            self.identity = model_identity(model, model.config.to_json_string())
        self.config = model.config
        self.layers = nn.ModuleList(layers[first:first + blocks])
        # WavLM: block 1 computes a relative position bias that the later blocks take along; a
        # copy that starts higher borrows block 1's (frozen) bias table, and attention takes the
        # [B, T] mask of valid frames.
        self.relative = hasattr(getattr(layers[0], "attention", None), "rel_attn_embed")
        if self.relative and first > 0:
            table = layers[0].attention.rel_attn_embed
            table.weight.requires_grad = False
            self.layers[0].attention.rel_attn_embed = table
        # Conformer blocks: relative (sinusoidal) or rotary position embeddings come from the encoder
        # (no parameters), and padded frames must be zeroed before each depthwise convolution:
        # w2v-BERT's blocks take the mask (``conv_attention_mask``), wav2vec 2.0-conformer's get it
        # through a hook on their zero-padded convolutions.
        self.conformer = is_conformer_block(layers[0])
        self.embed_positions = getattr(model.encoder, "embed_positions", None) if self.conformer else None
        self._takes_conv_mask = self.conformer and "conv_attention_mask" in inspect.signature(
            layers[0].forward).parameters
        self._conv_mask: torch.Tensor | None = None
        if self.conformer and not self._takes_conv_mask:
            from speechunits.encoders.hf import zero_padded_frames_in_convs

            zero_padded_frames_in_convs(self.layers, lambda: self._conv_mask)
        if low_rank is not None:
            add_low_rank(self.layers, *low_rank)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask = valid_mask(lengths, x.shape[1])
        states, hidden = [x], x
        if self.relative:
            bias = None
            for layer in self.layers:
                hidden, bias = layer(hidden, attention_mask=mask, position_bias=bias)
                states.append(hidden)
            return torch.stack(states, dim=1)
        attention = create_bidirectional_mask(config=self.config, inputs_embeds=x, attention_mask=mask)
        extra: dict[str, torch.Tensor] = {}
        if self.embed_positions is not None:
            extra["relative_position_embeddings"] = self.embed_positions(x)
        if self._takes_conv_mask:
            extra["conv_attention_mask"] = mask
        self._conv_mask = mask if self.conformer else None
        try:
            for layer in self.layers:
                out = layer(hidden, attention_mask=attention, **extra)
                hidden = out[0] if isinstance(out, tuple) else out
                states.append(hidden)
        finally:
            self._conv_mask = None
        return torch.stack(states, dim=1)


# -- the probe model -------------------------------------------------------------------------------

class ProbeModel(nn.Module):
    """Featurizer (or unit embedding) + head; what a probe trains and saves.

    ``forward(x, lengths, durations=None)``: ``x`` float ``[B, L, T, D]`` or int64 ``[B, T, S]``,
    ``lengths [B]`` -> logits ``[B, T', C]`` (frame level) or ``[B, C]`` (utterance level), with
    ``T' = ceil(T / stack)`` and :meth:`output_lengths` the valid ones.

    Spec options for speed on CPU (see docs/probe.md, "A judge that learns in minutes"):
    ``standardize`` (features: every layer's dimensions shifted and scaled by the training part's
    mean and standard deviation, kept as buffers ``input_mean``/``input_std [L, D]`` and set with
    :meth:`set_input_statistics`), ``stack`` (the featurizer's frames concatenated ``stack`` at a
    time before the head: :func:`stack_frames`) and ``lstm_layers`` (BiLSTM depth, default 2).
    ``dropout`` (default 0): the head's dropout while training (:class:`LinearHead`, :class:`BiLSTMHead`).
    ``time_mask`` (default none): SpecAugment time masks on the featurizer's output while training;
    ``unit_noise`` (units): substitution of units by their nearest ones while training
    (:mod:`speechunits.probe.augment`).
    """

    def __init__(self, spec: dict[str, Any], pretrained: bool = False, base: str | None = None):
        super().__init__()
        self.spec = spec
        source = spec["input"]
        finetune = spec.get("finetune")
        self.top = None
        self.select: list[int] | None = None
        if finetune is not None:
            if source["kind"] != FEATURES or source["num_layers"] != 1:
                raise SpeechUnitsError("--finetune reads one layer of encoder features (the input of the blocks)")
            low_rank = finetune["kind"] in (FINETUNE_LORA, FINETUNE_ADAPTERS)
            self.top = TopBlocks(base or finetune["encoder"], int(finetune["blocks"]), pretrained or low_rank,
                                 first=finetune.get("first"),
                                 low_rank=(finetune["kind"], int(finetune["rank"])) if low_rank else None)
            recorded = finetune.get("encoder_identity")
            if low_rank and recorded and self.top.identity != recorded:
                raise SpeechUnitsError(f"{base or finetune['encoder']}: base encoder identity {self.top.identity} is "
                                       f"not the {recorded} this probe's adapters were trained on")
            self.select = finetune.get("select")
        if source["kind"] == FEATURES:
            interface = spec.get("interface", "weighted-sum")
            if finetune is None:
                num_layers = source["num_layers"]
            else:
                num_layers = len(self.select) if self.select is not None else int(finetune["blocks"]) + 1
            if interface == "weighted-sum":
                self.featurizer: nn.Module = WeightedSum(num_layers, bool(spec.get("normalize", False)))
                dim = source["dim"]
            elif interface == "hierarchical-conv":
                self.featurizer = HierarchicalConv(num_layers, source["dim"], spec.get("conv_hidden"))
                dim = self.featurizer.out_dim
            elif interface == "single":
                index = int(spec.get("layer_index", 0))
                if not 0 <= index < num_layers:
                    raise SpeechUnitsError(f"--interface single: layer index {index} outside the "
                                           f"{num_layers} layers read")
                self.featurizer, dim = Single(index), source["dim"]
            else:
                raise SpeechUnitsError(f"--interface: expected one of {INTERFACES}, got {interface!r}")
        elif source["kind"] == UNITS:
            init = spec.get("embed_init", EMBED_RANDOM)
            if init not in EMBED_INITS:
                raise SpeechUnitsError(f"--embed-init: expected one of {EMBED_INITS}, got {init!r}")
            self.featurizer = UnitEmbedding(source["vocab_sizes"], int(spec.get("embed_dim", 256)),
                                            spec.get("combine", "sum"), bool(source.get("durations")),
                                            table_dims=None if init == EMBED_RANDOM else list(spec["table_dims"]),
                                            frozen=init == EMBED_FROZEN,
                                            noise=unit_noise_from_spec(spec.get("unit_noise")))
            dim = self.featurizer.out_dim
        else:
            raise SpeechUnitsError(f"probe input kind {source['kind']!r} is not features or units")
        level, head, classes = spec["level"], spec.get("head", "linear"), int(spec["num_classes"])
        if level not in LEVELS:
            raise SpeechUnitsError(f"probe level {level!r} is not one of {LEVELS}")
        self.stack = int(spec.get("stack", 1))
        if self.stack < 1:
            raise SpeechUnitsError(f"--stack: must be >= 1, got {self.stack}")
        dim *= self.stack
        self.standardize = bool(spec.get("standardize", False))
        if self.standardize:
            if source["kind"] != FEATURES or finetune is not None:
                raise SpeechUnitsError("--standardize applies to features read by the probe's own featurizer "
                                       "(not units, not --finetune)")
            self.register_buffer("input_mean", torch.zeros(int(source["num_layers"]), int(source["dim"])))
            self.register_buffer("input_std", torch.ones(int(source["num_layers"]), int(source["dim"])))
        self.time_mask = time_mask_from_spec(spec.get("time_mask"))
        dropout = float(spec.get("dropout", 0.0))
        if head == "linear":
            self.head: nn.Module = LinearHead(dim, classes, level, dropout)
        elif head == "bilstm":
            self.head = BiLSTMHead(dim, classes, level, int(spec.get("hidden", 256)), int(spec.get("lstm_layers", 2)),
                                   dropout)
        else:
            raise SpeechUnitsError(f"--head: expected one of {HEADS}, got {head!r}")

    def features(self, x: torch.Tensor, durations: torch.Tensor | None = None) -> torch.Tensor:
        """The featurizer's ``[B, T, D']``."""
        if isinstance(self.featurizer, UnitEmbedding):
            return self.featurizer(x, durations)
        return self.featurizer(x if torch.is_floating_point(x) else x.float())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_floating_point(x):
            x = x.float()  # features may arrive as float16 (the input cache)
        if self.standardize:
            x = (x - self.input_mean[:, None]) / self.input_std[:, None]
        if self.top is not None:
            x = self.top(x[:, 0], lengths)
            if self.select is not None:
                x = x[:, self.select]
        features = self.features(x, durations)
        if self.training and self.time_mask is not None:
            features = apply_time_mask(features, lengths, self.time_mask)
        features, lengths = stack_frames(features, lengths, self.stack)
        return self.head(features, lengths)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames of inputs of ``lengths`` frames (``ceil(n / stack)``)."""
        return stacked_lengths(lengths, self.stack)

    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The ``[L, D]`` mean and standard deviation that ``standardize`` removes (training part's)."""
        if not self.standardize:
            raise SpeechUnitsError("set_input_statistics: this probe does not standardize its input")
        if tuple(mean.shape) != tuple(self.input_mean.shape) or tuple(std.shape) != tuple(self.input_std.shape):
            raise SpeechUnitsError(f"input statistics of shape {tuple(mean.shape)}, expected "
                                   f"{tuple(self.input_mean.shape)}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def layer_weights(self) -> list[float] | None:
        """The learned layer weights (weighted sum only)."""
        if isinstance(self.featurizer, WeightedSum):
            return [float(w) for w in self.featurizer.weights()]
        return None


    @property
    def low_rank(self) -> bool:
        """LoRA or adapters: the encoder blocks are frozen and not saved, only their updates."""
        return self.top is not None and self.spec["finetune"]["kind"] in (FINETUNE_LORA, FINETUNE_ADAPTERS)

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What ``head.safetensors`` holds: every weight, except the frozen encoder weights of a
        LoRA/adapters probe (those come from the base encoder, checked by identity)."""
        state = self.state_dict()
        if self.low_rank:
            state = {k: v for k, v in state.items() if not k.startswith("top.") or LOW_RANK_MARK in k}
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_saved(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`saved_state` exactly (RuntimeError naming missing or unexpected weights)."""
        if not self.low_rank:
            self.load_state_dict(state, strict=True)
            return
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("top.") or LOW_RANK_MARK in k]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing weights {missing[:5]}, unexpected weights {result.unexpected_keys[:5]}")


def build_model(spec: dict[str, Any], pretrained: bool = False, base: str | None = None) -> ProbeModel:
    """A fresh :class:`ProbeModel` from its JSON spec (see :class:`ProbeModel`); ``pretrained``: fine-tuned
    blocks start from the model's weights (training) rather than from its config (loading a probe).
    LoRA/adapters probes always load their base encoder (``base``: from another place than the one
    recorded; its identity must be the recorded one)."""
    return ProbeModel(spec, pretrained, base)
