"""A pre-LN transformer decoder with a key/value cache for step-by-step decoding.

Training runs :meth:`CachedDecoder.forward` over whole target prefixes (causal self-attention;
padding sits only at the end of a sequence, so the causal mask alone keeps valid positions
from seeing it). Decoding calls :meth:`CachedDecoder.start` once per source (the memory's
keys and values of every layer's cross-attention are projected once) and :meth:`CachedDecoder.step`
once per output symbol (the new position's self-attention keys and values are appended), so
a step costs one position, not the whole prefix; :meth:`DecoderState.select` reorders the
cache for a beam. ``step`` equals the last position of ``forward`` on the same prefix (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head scaled dot-product attention with separate query and key/value projections."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D/H]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected keys and values ``[B, H, T, D/H]`` of ``x [B, T, D]``."""
        k, v = self.key_value(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """Attend from ``x [B, Tq, D]`` to ``k, v``; ``allowed``: bool, broadcastable to ``[B, H, Tq, Tk]``."""
        q = self._split(self.query(x))
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=allowed,
                                             dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=is_causal and allowed is None)
        return self.out(out.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the memory, feed-forward (GELU)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_norm, self.cross_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, self_kv: tuple[torch.Tensor, torch.Tensor], cross_kv: tuple,
                memory_allowed: torch.Tensor, causal: bool) -> torch.Tensor:
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attn(h, *self_kv, is_causal=causal))
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), *cross_kv, allowed=memory_allowed))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


@dataclass
class DecoderState:
    """Cache of one decoding run: per layer the memory's keys/values and the self-attention ones so far."""

    cross: list[tuple[torch.Tensor, torch.Tensor]]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    memory_allowed: torch.Tensor
    length: int = 0

    def select(self, rows: torch.Tensor) -> "DecoderState":
        """The cache of hypotheses ``rows`` (a beam reordered or grown from one row)."""
        return DecoderState([(k[rows], v[rows]) for k, v in self.cross], [k[rows] for k in self.keys],
                            [v[rows] for v in self.values], self.memory_allowed[rows], self.length)


class CachedDecoder(nn.Module):
    """A stack of :class:`DecoderLayer` with a final layer norm (see the module docstring)."""

    def __init__(self, dim: int, heads: int, ffn: int, layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    @staticmethod
    def _memory_allowed(memory_pad: torch.Tensor) -> torch.Tensor:
        return (~memory_pad)[:, None, None, :]

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """States ``[B, U, D]`` of target inputs ``x [B, U, D]`` (causal) attending to ``memory [B, S, D]``."""
        allowed = self._memory_allowed(memory_pad)
        for layer in self.layers:
            self_kv = layer.self_attn.keys_values(layer.self_norm(x))
            x = layer(x, self_kv, layer.cross_attn.keys_values(memory), allowed, causal=True)
        return self.norm(x)

    def start(self, memory: torch.Tensor, memory_pad: torch.Tensor) -> DecoderState:
        """An empty cache for ``memory [B, S, D]`` (cross-attention keys and values projected once)."""
        cross = [layer.cross_attn.keys_values(memory) for layer in self.layers]
        empty = memory.new_zeros(memory.shape[0], self.layers[0].self_attn.heads, 0,
                                 memory.shape[2] // self.layers[0].self_attn.heads) if self.layers else memory
        return DecoderState(cross, [empty] * len(self.layers), [empty] * len(self.layers),
                            self._memory_allowed(memory_pad))

    def step(self, x: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """State ``[B, D]`` of the next position from its input ``x [B, D]``; ``state`` grows by one position."""
        h = x[:, None, :]
        for i, layer in enumerate(self.layers):
            k, v = layer.self_attn.keys_values(layer.self_norm(h))
            state.keys[i] = torch.cat([state.keys[i].to(k.dtype), k], dim=2)
            state.values[i] = torch.cat([state.values[i].to(v.dtype), v], dim=2)
            h = layer(h, (state.keys[i], state.values[i]), state.cross[i], state.memory_allowed, causal=False)
        state.length += 1
        return self.norm(h)[:, 0]
