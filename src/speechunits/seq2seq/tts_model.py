"""A non-autoregressive text-to-units model in the FastSpeech mould (as ESPnet's tts2).

::

    tokens [B, N] --embed + positions--> encoder (transformer) --+ speaker--> h [B, N, D]
    h --duration predictor (convs)--> log(1 + frames) per token [B, N]
    h --length regulator (token i repeated d_i times)--> [B, T, D] --+ positions + speaker-->
      decoder (transformer) --> unit logits [B, T, K]

Training uses the reference durations (frames of each token from the corpus's alignments)
and scores every frame's unit by cross-entropy plus the durations by a squared error in the
log domain. Without alignments (``alignment_dim > 0``) a :class:`~speechunits.seq2seq.alignment.UnitTextAligner`
scores every (unit frame, token) pair from ``h`` and the frame's unit, is trained by the forward-sum
loss, and monotonic alignment search over its prior-weighted log-probabilities gives the hard
durations that the length regulator and the duration predictor use instead. Inference rounds the
predicted durations (a token may get 0 frames) and takes the argmax unit of every frame, or draws
it from the frame's distribution at a temperature (``temperature > 0``): the per-frame argmax of a
non-autoregressive model keeps only the likeliest unit of each stretch and so drops the short runs
that real unit sequences have. With ``ar_hidden > 0`` a small autoregressive head
(:class:`FrameUnitAR`, a GRU over the decoder's frame states and the previous frame's unit) predicts
each frame's unit given the units before it, and inference runs it frame by frame: the joint
distribution of the units inside a phone, which per-frame argmax or independent draws of the
non-autoregressive head cannot give (their deduplicated sequences keep too few, or random, short
runs). The frame-level units are then deduplicated (ids + run lengths) for a unit vocoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.seq2seq.alignment import UnitTextAligner, alignment_log_probs, monotonic_alignment_search
from speechunits.seq2seq.layers import ConvStack, encoder_stack, padding_mask, sinusoidal_positions
from speechunits.seq2seq.symbols import PAD
from speechunits.training.config import config_from_dict, config_to_dict


@dataclass
class TTSConfig:
    """Shape of a :class:`TTSModel`.

    Attributes:
        vocab_size: input symbols (specials included). num_units: the codebook's K.
        num_speakers: rows of the speaker table (0: a single-voice model).
        dim, heads, ffn: transformer width, attention heads, feed-forward width.
        encoder_layers, decoder_layers: transformer blocks before and after the length regulator.
        duration_hidden, duration_kernel, duration_layers: the duration predictor's convolutions.
        dropout: everywhere.
        alignment_dim: width of the learned token-to-frame aligner (0: none; durations come from
            alignments). alignment_prior: scaling of its beta-binomial diagonal prior (0: none).
        ar_hidden: GRU width of the autoregressive unit head (0: none, units from the parallel head).
        ar_unit_dim: its embedding of the previous unit. ar_unit_dropout: share of training frames
            whose previous unit is hidden (replaced by the start symbol), so the head keeps listening
            to the frame states rather than only copying the unit before.
    """

    vocab_size: int
    num_units: int
    num_speakers: int = 0
    dim: int = 192
    heads: int = 2
    ffn: int = 768
    encoder_layers: int = 3
    decoder_layers: int = 3
    duration_hidden: int = 192
    duration_kernel: int = 3
    duration_layers: int = 2
    dropout: float = 0.1
    alignment_dim: int = 0
    alignment_prior: float = 1.0
    ar_hidden: int = 0
    ar_unit_dim: int = 64
    ar_unit_dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.vocab_size < 1 or self.num_units < 1 or self.num_speakers < 0:
            raise SpeechUnitsError(f"TTS config: bad sizes {config_to_dict(self)}")
        if self.dim % self.heads or self.dim % 2:
            raise SpeechUnitsError(f"TTS config: dim {self.dim} must be even and divisible by heads {self.heads}")
        if self.alignment_dim < 0 or self.alignment_prior < 0:
            raise SpeechUnitsError(f"TTS config: alignment_dim {self.alignment_dim} and alignment_prior "
                                   f"{self.alignment_prior} must be >= 0")
        if self.ar_hidden < 0 or self.ar_unit_dim < 1 or not 0 <= self.ar_unit_dropout < 1:
            raise SpeechUnitsError(f"TTS config: ar_hidden {self.ar_hidden} must be >= 0, ar_unit_dim "
                                   f"{self.ar_unit_dim} >= 1 and ar_unit_dropout {self.ar_unit_dropout} in [0, 1)")

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TTSConfig":
        return config_from_dict(cls, data, "TTS config")


def length_regulate(h: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat token ``i`` of ``h [B, N, D]`` ``durations[b, i]`` times (int ``[B, N]``, >= 0, 0 on padding).

    Returns:
        ``(frames [B, T, D], frame_lengths [B])`` with ``T = max_b sum_i durations[b, i]`` (at least 1);
        frames past an utterance's length are zero.
    """
    durations = durations.clamp(min=0).long()
    ends = durations.cumsum(-1)  # [B, N]
    lengths = ends[:, -1] if ends.shape[1] else torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
    total = max(int(lengths.max()) if lengths.numel() else 0, 1)
    grid = torch.arange(total, device=h.device).expand(h.shape[0], total).contiguous()
    index = torch.searchsorted(ends, grid, right=True).clamp(max=max(h.shape[1] - 1, 0))  # [B, T]
    frames = torch.gather(h, 1, index[..., None].expand(-1, -1, h.shape[2]))
    frames = frames.masked_fill(padding_mask(lengths, total)[..., None], 0.0)
    return frames, lengths


def choose_units(logits: torch.Tensor, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Unit ids ``[...]`` from logits ``[..., K]``: the argmax (``temperature`` 0) or one draw from
    ``softmax(logits / temperature)`` per position, with ``generator``."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    drawn = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return drawn.reshape(probs.shape[:-1])


class FrameUnitAR(nn.Module):
    """``p(unit_t | unit_<t, state_t)``: a GRU over frame states ``[B, T, D]`` and the previous frame's unit.

    Index ``num_units`` of the unit embedding is the start symbol (before frame 0, and the hidden
    unit of ``unit_dropout``'s frames in training). The GRU is causal, so frames padded at the end
    change nothing before them.
    """

    def __init__(self, dim: int, num_units: int, hidden: int, unit_dim: int, unit_dropout: float):
        super().__init__()
        self.start = num_units
        self.unit_dropout = unit_dropout
        self.embed = nn.Embedding(num_units + 1, unit_dim)
        self.rnn = nn.GRU(dim + unit_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, num_units)

    def forward(self, states: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, K]`` of frame units ``units [B, T']`` (negative = padding)."""
        t = states.shape[1]
        units = units[:, :t].clamp(min=-1)
        if units.shape[1] < t:
            units = torch.cat([units, units.new_full((units.shape[0], t - units.shape[1]), -1)], dim=1)
        prev = torch.cat([units.new_full((units.shape[0], 1), self.start), units[:, :-1]], dim=1)
        prev = prev.masked_fill(prev < 0, self.start)
        if self.training and self.unit_dropout > 0:
            hide = torch.rand(prev.shape, device=prev.device) < self.unit_dropout
            prev = prev.masked_fill(hide, self.start)
        y, _ = self.rnn(torch.cat([states, self.embed(prev)], dim=-1))
        return self.out(y)

    def generate(self, states: torch.Tensor, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Units ``[B, T]`` frame by frame: argmax (``temperature`` 0) or drawn at ``temperature``."""
        batch, frames, dim = states.shape
        # The GRU's input projection split in two and hoisted out of the loop: the states' part for all
        # frames in one matmul, the unit part as a table over the K + 1 units. Each step is then one
        # hidden matmul and the gates (about 3x faster than calling nn.GRU per frame; same equations).
        w_ih, w_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0
        from_states = torch.nn.functional.linear(states, w_ih[:, :dim], self.rnn.bias_ih_l0)  # [B, T, 3H]
        from_units = torch.nn.functional.linear(self.embed.weight, w_ih[:, dim:])  # [K + 1, 3H]
        prev = torch.full((batch,), self.start, dtype=torch.long, device=states.device)
        hidden = states.new_zeros((batch, self.rnn.hidden_size))
        chosen = []
        for t in range(frames):
            hidden = self._step(from_states[:, t] + from_units[prev], hidden, w_hh)
            prev = choose_units(self.out(hidden).float(), temperature, generator)
            chosen.append(prev)
        return torch.stack(chosen, dim=1) if chosen else states.new_zeros((batch, 0), dtype=torch.long)

    def _step(self, x_gates: torch.Tensor, hidden: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
        """One GRU step (PyTorch's gate order r, z, n) from the input's gate pre-activations ``[B, 3H]``."""
        h_gates = torch.nn.functional.linear(hidden, w_hh, self.rnn.bias_hh_l0)
        x_r, x_z, x_n = x_gates.chunk(3, dim=-1)
        h_r, h_z, h_n = h_gates.chunk(3, dim=-1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        return candidate + update * (hidden - candidate)


@dataclass
class TTSOutput:
    """A teacher-forced pass: unit logits ``[B, T, K]``, predicted ``log(1 + frames)`` ``[B, N]``, frame
    counts ``[B]``, the durations used ``[B, N]`` (given, or from MAS), and the aligner's prior-weighted
    log-probabilities of the tokens at each frame ``[B, T, N]`` (None when durations were given), and the
    autoregressive head's teacher-forced logits ``[B, T, K]`` (None without the head or the units)."""

    logits: torch.Tensor
    log_durations: torch.Tensor
    frame_lengths: torch.Tensor
    durations: torch.Tensor
    alignment_log_probs: torch.Tensor | None = None
    ar_logits: torch.Tensor | None = None


class TTSModel(nn.Module):
    """Tokens (+ speaker) to frame-level unit logits and token durations; see the module docstring."""

    def __init__(self, config: TTSConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.dim, padding_idx=PAD)
        self.speakers = nn.Embedding(c.num_speakers, c.dim) if c.num_speakers else None
        self.encoder = encoder_stack(c.dim, c.heads, c.ffn, c.encoder_layers, c.dropout)
        self.duration_body = ConvStack(c.dim, c.duration_hidden, c.duration_kernel, c.duration_layers, c.dropout)
        self.duration_out = nn.Linear(c.duration_hidden, 1)
        self.decoder = encoder_stack(c.dim, c.heads, c.ffn, c.decoder_layers, c.dropout)
        self.out = nn.Linear(c.dim, c.num_units)
        self.dropout = nn.Dropout(c.dropout)
        self.aligner = UnitTextAligner(c.dim, c.num_units, c.alignment_dim) if c.alignment_dim else None
        self.ar = (FrameUnitAR(c.dim, c.num_units, c.ar_hidden, c.ar_unit_dim, c.ar_unit_dropout)
                   if c.ar_hidden else None)

    def _speaker(self, speakers: torch.Tensor | None, batch: int) -> torch.Tensor | float:
        if self.speakers is None:
            return 0.0
        if speakers is None:
            raise SpeechUnitsError("this TTS model has a speaker table: give a speaker")
        return self.speakers(speakers)[:, None, :]

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor,
               speakers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token states ``[B, N, D]`` (speaker added), predicted ``log(1 + frames)`` ``[B, N]``, pad mask ``[B, N]``."""
        pad = padding_mask(lengths, tokens.shape[1])
        x = self.embed(tokens) * (self.config.dim ** 0.5)
        x = self.dropout(x + sinusoidal_positions(tokens.shape[1], self.config.dim, tokens.device))
        h = self.encoder(x, src_key_padding_mask=pad)
        h = (h + self._speaker(speakers, tokens.shape[0])).masked_fill(pad[..., None], 0.0)
        log_durations = self.duration_out(self.duration_body(h, pad)).squeeze(-1).masked_fill(pad, 0.0)
        return h, log_durations, pad

    def decode_states(self, h: torch.Tensor, durations: torch.Tensor,
                      speakers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder frame states ``[B, T, D]`` and frame counts ``[B]`` of token states expanded by ``durations``."""
        frames, frame_lengths = length_regulate(h, durations)
        pad = padding_mask(frame_lengths, frames.shape[1])
        x = frames + sinusoidal_positions(frames.shape[1], self.config.dim, frames.device)
        x = self.dropout(x + self._speaker(speakers, frames.shape[0]))
        return self.decoder(x, src_key_padding_mask=pad), frame_lengths

    def decode(self, h: torch.Tensor, durations: torch.Tensor,
               speakers: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel-head unit logits ``[B, T, K]`` and frame counts ``[B]`` (see :meth:`decode_states`)."""
        states, frame_lengths = self.decode_states(h, durations, speakers)
        return self.out(states), frame_lengths

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None,
                speakers: torch.Tensor | None = None, units: torch.Tensor | None = None,
                frame_lengths: torch.Tensor | None = None) -> TTSOutput:
        """Teacher-forced pass (:class:`TTSOutput`) with the given ``durations``, or, when None, with the
        durations monotonic alignment search finds between the tokens and the frame ``units [B, T]``
        (needs the aligner and ``frame_lengths``). ``units`` are also what the autoregressive head, if
        any, is teacher-forced with (its logits are None without them)."""
        h, log_durations, pad = self.encode(tokens, lengths, speakers)
        log_probs = None
        if durations is None:
            log_probs, durations = self._align(h, pad, lengths, units, frame_lengths)
        states, decoded_lengths = self.decode_states(h, durations, speakers)
        ar_logits = self.ar(states, units) if self.ar is not None and units is not None else None
        return TTSOutput(self.out(states), log_durations, decoded_lengths, durations, log_probs, ar_logits)

    def _align(self, h: torch.Tensor, pad: torch.Tensor, lengths: torch.Tensor, units: torch.Tensor | None,
               frame_lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.aligner is None:
            raise SpeechUnitsError("this TTS model has no aligner (alignment_dim 0): give durations")
        if units is None or frame_lengths is None:
            raise SpeechUnitsError("learning durations needs the frame units and their lengths")
        scores = self.aligner(h, pad, units, padding_mask(frame_lengths, units.shape[1]))
        log_probs = alignment_log_probs(scores, lengths, frame_lengths, self.config.alignment_prior)
        return log_probs, monotonic_alignment_search(log_probs.detach().transpose(1, 2), lengths, frame_lengths)

    @torch.no_grad()
    def align(self, tokens: torch.Tensor, lengths: torch.Tensor, units: torch.Tensor, frame_lengths: torch.Tensor,
              speakers: torch.Tensor | None = None) -> torch.Tensor:
        """Durations ``[B, N]`` (int64, sum = frame_lengths) that MAS finds for tokens and their frame units."""
        h, _, pad = self.encode(tokens, lengths, speakers)
        return self._align(h, pad, lengths, units, frame_lengths)[1]

    @torch.no_grad()
    def infer(self, tokens: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor | None = None,
              duration_scale: float = 1.0, temperature: float = 0.0, generator: torch.Generator | None = None,
              durations: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Units from tokens: ``(unit ids [B, T], frame counts [B], token durations [B, N])``.

        Durations are ``round(scale * (exp(pred) - 1))`` clamped at 0; an utterance whose
        durations sum to 0 gets one frame on its longest-predicted token. Each frame's unit is the
        argmax of its logits (``temperature`` 0) or a draw from ``softmax(logits / temperature)``
        with ``generator`` (a generator on the model's device, for repeatable draws); with the
        autoregressive head, of its logits given the units chosen before. Given ``durations`` (int
        ``[B, N]``, e.g. a reference's) are used instead of the predicted ones.
        """
        if temperature < 0:
            raise SpeechUnitsError(f"TTS: temperature must be >= 0 (0: argmax), got {temperature}")
        h, log_durations, pad = self.encode(tokens, lengths, speakers)
        if durations is None:
            durations = torch.round(duration_scale * (torch.exp(log_durations.float()) - 1.0)).clamp(min=0).long()
        durations = durations.to(h.device).long().masked_fill(pad, 0)
        empty = durations.sum(-1) == 0
        if empty.any():
            best = log_durations.masked_fill(pad, float("-inf")).argmax(-1)
            durations[empty, best[empty]] = 1
        if self.ar is not None:
            states, frame_lengths = self.decode_states(h, durations, speakers)
            return self.ar.generate(states, temperature, generator), frame_lengths, durations
        logits, frame_lengths = self.decode(h, durations, speakers)
        return choose_units(logits, temperature, generator), frame_lengths, durations
