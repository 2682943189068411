"""Probe featurizers: stacked layers or unit ids -> one frame sequence ``[B, T, D]``.

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
"""
from __future__ import annotations

import math

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.probe.augment import UnitNoise, nearest_units, substitute_units
from speechunits.probe.inputs import MAX_DURATION
from speechunits.quantize.codebook import standardised_rows

INTERFACES = ("weighted-sum", "hierarchical-conv", "single")
COMBINES = ("sum", "attention")
#: How unit embedding tables start: learned from random, from the codebook centroids, or fixed to them.
EMBED_RANDOM, EMBED_CENTROIDS, EMBED_FROZEN = "random", "centroids", "centroids-frozen"
EMBED_INITS = (EMBED_RANDOM, EMBED_CENTROIDS, EMBED_FROZEN)


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
