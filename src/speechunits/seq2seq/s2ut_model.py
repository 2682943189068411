"""A transformer encoder-decoder from speech (features or units) or text to target symbols.

fairseq's S2UT recipe in small: continuous source features are subsampled in time by 1-D
convolutions (kernel 5, stride 2, GLU; ``subsample`` of them, 4x for 2), token sources
(source units, characters) are embedded; a pre-LN transformer encodes them, and a causal
transformer decoder predicts the target symbols (deduplicated units, or characters for the
cascade's text translator) after ``<s>`` until ``</s>``. An optional CTC head on the
encoder predicts the target *text* (characters; blank = id 0) as an auxiliary loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.seq2seq.decoder import CachedDecoder, DecoderState
from speechunits.seq2seq.layers import ConvSubsampler, encoder_stack, padding_mask, sinusoidal_positions
from speechunits.seq2seq.symbols import PAD
from speechunits.training.config import config_from_dict, config_to_dict

SOURCE_FEATURES = "features"
SOURCE_TOKENS = "tokens"


@dataclass
class Seq2SeqConfig:
    """Shape of a :class:`Seq2SeqModel`.

    Attributes:
        source: ``"features"`` (``source_dim`` floats per frame) or ``"tokens"`` (``source_vocab`` ids).
        target_vocab: target symbols, specials included.
        subsample: stride-2 convolutions on feature sources (0 = a linear projection).
        ctc_vocab: characters of the auxiliary CTC head, blank included (0: no head).
    """

    source: str
    target_vocab: int
    source_dim: int = 0
    source_vocab: int = 0
    subsample: int = 2
    dim: int = 256
    heads: int = 4
    ffn: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 3
    dropout: float = 0.1
    ctc_vocab: int = 0

    def __post_init__(self) -> None:
        if self.source not in (SOURCE_FEATURES, SOURCE_TOKENS):
            raise SpeechUnitsError(f"seq2seq config: source must be features or tokens, got {self.source!r}")
        if self.source == SOURCE_FEATURES and self.source_dim < 1:
            raise SpeechUnitsError("seq2seq config: a feature source needs source_dim >= 1")
        if self.source == SOURCE_TOKENS and self.source_vocab < 1:
            raise SpeechUnitsError("seq2seq config: a token source needs source_vocab >= 1")
        if self.dim % self.heads or self.dim % 2 or self.target_vocab < 1 or self.subsample < 0:
            raise SpeechUnitsError(f"seq2seq config: bad sizes {config_to_dict(self)}")

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Seq2SeqConfig":
        return config_from_dict(cls, data, "seq2seq config")


class Seq2SeqModel(nn.Module):
    """Source -> target symbols (see the module docstring)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = c = config
        if c.source == SOURCE_FEATURES:
            self.subsampler: nn.Module | None = ConvSubsampler(c.source_dim, c.dim, c.subsample)
            self.source_embed: nn.Module | None = None
        else:
            self.subsampler = None
            self.source_embed = nn.Embedding(c.source_vocab, c.dim, padding_idx=PAD)
        self.encoder = encoder_stack(c.dim, c.heads, c.ffn, c.encoder_layers, c.dropout)
        self.target_embed = nn.Embedding(c.target_vocab, c.dim, padding_idx=PAD)
        self.decoder = CachedDecoder(c.dim, c.heads, c.ffn, c.decoder_layers, c.dropout)
        self.out = nn.Linear(c.dim, c.target_vocab)
        self.ctc = nn.Linear(c.dim, c.ctc_vocab) if c.ctc_vocab else None
        self.dropout = nn.Dropout(c.dropout)

    def encode(self, source: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``source`` (float ``[B, T, D]`` or int ``[B, T]``) -> ``(memory [B, S, dim], lengths [B])``."""
        if self.subsampler is not None:
            x, lengths = self.subsampler(source.float(), lengths)
        else:
            x = self.source_embed(source) * (self.config.dim ** 0.5)  # type: ignore[misc]
        x = self.dropout(x * 1.0 + sinusoidal_positions(x.shape[1], self.config.dim, x.device))
        lengths = lengths.clamp(max=x.shape[1])
        return self.encoder(x, src_key_padding_mask=padding_mask(lengths, x.shape[1])), lengths

    def decode(self, prev: torch.Tensor, memory: torch.Tensor, memory_lengths: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, U, V]`` of the next symbol after each prefix of ``prev`` (int ``[B, U]``, ``<s>`` first)."""
        x = self.target_embed(prev) * (self.config.dim ** 0.5)
        x = self.dropout(x + sinusoidal_positions(prev.shape[1], self.config.dim, prev.device))
        return self.out(self.decoder(x, memory, padding_mask(memory_lengths, memory.shape[1])))

    def start_decoding(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> DecoderState:
        """A decoding cache over ``memory`` (see :mod:`speechunits.seq2seq.decoder`)."""
        return self.decoder.start(memory, padding_mask(memory_lengths, memory.shape[1]))

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Logits ``[B, V]`` of the symbol after ``tokens [B]`` (the last symbol of each prefix); ``state`` grows."""
        position = sinusoidal_positions(state.length + 1, self.config.dim, tokens.device)[state.length]
        x = self.target_embed(tokens) * (self.config.dim ** 0.5) + position
        return self.out(self.decoder.step(x, state))

    def forward(self, source: torch.Tensor, lengths: torch.Tensor,
                prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: ``(logits [B, U, V], memory [B, S, dim], memory lengths [B])``."""
        memory, memory_lengths = self.encode(source, lengths)
        return self.decode(prev, memory, memory_lengths), memory, memory_lengths
