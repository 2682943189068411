"""Token durations without alignments: a learned token-to-frame alignment and monotonic alignment search.

A TTS corpus with transcripts but no forced alignment still fixes the *order* of the tokens; what
is missing is how many unit frames each token lasts. Following RAD-TTS ("One TTS Alignment to
Rule Them All", Badlani et al. 2022) and Glow-TTS (Kim et al. 2020):

* :class:`UnitTextAligner` scores every (unit frame, token) pair by the negative squared distance
  of a key (convolutions over the text encoder's token states) and a query (convolutions over an
  embedding of the frame's unit id), ``scores [B, T, N]``;
* :func:`alignment_log_probs`: the log-softmax of the scores over the tokens plus the log of
  :func:`beta_binomial_log_prior` (RAD-TTS's static prior), a preference for the diagonal that
  lets the alignment converge from a random start;
* :func:`forward_sum_loss` trains it: the negative log-likelihood of the tokens in order under a
  CTC whose "frames" are the unit frames and whose per-frame classes are those log-probabilities
  plus a blank of constant logit, i.e. the sum over *every* monotonic alignment, so no alignment
  is needed to start from (normalising over the tokens first keeps the blank from taking every
  frame);
* :func:`monotonic_alignment_search` (MAS) takes the single best monotonic path through the
  prior-weighted log-probabilities: every frame goes to one token, tokens in order, each token
  at least one frame. Its frame counts are the hard durations the duration predictor learns and
  the length regulator expands by.

MAS is written here (a vectorised torch dynamic program over frames) rather than taken from a
package: ``monotonic-alignment-search`` (PyPI, MIT; Glow-TTS's Cython kernel, Linux wheels,
torch left to the user) would install beside torch 2.13.0, but it copies the scores to the CPU
and numpy on every call, returns a path rather than durations, and is a compiled dependency for
a dozen lines; this version stays on the model's device (CPU or CUDA), is batched over
utterances and tokens, and refuses an utterance with fewer frames than tokens by name.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.seq2seq.layers import padding_mask

#: Logit of the forward-sum's blank (RAD-TTS's value): a frame may belong to no token.
BLANK_LOGIT = -1.0
#: Score of padded tokens (finite: -inf turns CTC's gradient into nan).
MASKED_LOGIT = -1e4


def monotonic_alignment_search(log_probs: torch.Tensor, token_lengths: torch.Tensor,
                               frame_lengths: torch.Tensor) -> torch.Tensor:
    """Durations of the best monotonic alignment of tokens to frames, int64 ``[B, N]``.

    Args:
        log_probs: ``[B, N, T]`` score of token ``n`` at frame ``t`` (higher is better); entries past
            an utterance's lengths are ignored.
        token_lengths, frame_lengths: ``[B]`` tokens and frames of each utterance.

    Returns:
        per token the number of frames of the path that maximises ``sum_t log_probs[b, n(t), t]``
        over paths that start at token 0 on frame 0, end at the last token on the last frame and
        move at most one token forward per frame. Each row sums to its frame count, every real
        token gets at least one frame, padding gets 0.

    Raises:
        SpeechUnitsError: an utterance has fewer frames than tokens, or no tokens.
    """
    if log_probs.dim() != 3:
        raise SpeechUnitsError(f"MAS: scores must be [B, N, T], got shape {tuple(log_probs.shape)}")
    batch, n_max, t_max = log_probs.shape
    token_lengths = token_lengths.to(log_probs.device).long()
    frame_lengths = frame_lengths.to(log_probs.device).long()
    short = torch.nonzero((frame_lengths < token_lengths) | (token_lengths < 1)).flatten().tolist()
    if short:
        b = short[0]
        raise SpeechUnitsError(f"MAS: utterance {b} of the batch has {int(frame_lengths[b])} frames for "
                               f"{int(token_lengths[b])} tokens; every token needs at least one frame")
    neg = torch.finfo(torch.float32).min / 4  # -inf without inf - inf = nan in the comparisons
    scores = log_probs.detach().float().masked_fill(padding_mask(token_lengths, n_max)[:, :, None], neg)
    best = torch.full((batch, n_max, t_max), neg, dtype=torch.float32, device=scores.device)
    best[:, 0, 0] = scores[:, 0, 0]
    for t in range(1, t_max):  # best[n, t] = score[n, t] + max(best[n, t-1], best[n-1, t-1])
        stay = best[:, :, t - 1]
        advance = torch.cat([stay.new_full((batch, 1), neg), stay[:, :-1]], dim=1)
        best[:, :, t] = scores[:, :, t] + torch.maximum(stay, advance)
    rows = torch.arange(batch, device=scores.device)
    token = token_lengths - 1  # where each utterance's path is at frame t, walking back from its last frame
    durations = torch.zeros(batch, n_max, dtype=torch.long, device=scores.device)
    for t in range(t_max - 1, -1, -1):
        active = t < frame_lengths
        durations[rows, token] += active.long()
        if t == 0:
            break
        before = best[rows, (token - 1).clamp(min=0), t - 1]
        here = best[rows, token, t - 1]
        move = active & (token > 0) & ((token == t) | (before > here))
        token = token - move.long()
    return durations


def best_durations(log_probs: np.ndarray) -> np.ndarray:
    """:func:`monotonic_alignment_search` of one utterance: ``log_probs [N, T]`` -> int64 ``[N]``."""
    scores = torch.as_tensor(np.asarray(log_probs, dtype=np.float32))[None]
    n, t = scores.shape[1:]
    return monotonic_alignment_search(scores, torch.tensor([n]), torch.tensor([t]))[0].numpy()


def beta_binomial_log_prior(token_lengths: torch.Tensor, frame_lengths: torch.Tensor, n_max: int, t_max: int,
                            scaling: float = 1.0) -> torch.Tensor:
    """RAD-TTS's static alignment prior, log-probabilities ``[B, T, N]`` (0 on padding).

    Frame ``t`` (1-based) of ``T`` puts a beta-binomial distribution over the tokens ``k = 0..N-1``
    with ``n = N - 1``, ``alpha = scaling * t``, ``beta = scaling * (T - t + 1)``: its mass moves from
    the first token to the last along the diagonal; smaller ``scaling`` widens it.
    """
    device = token_lengths.device
    n = (token_lengths.float() - 1.0)[:, None, None]  # [B, 1, 1]
    frames = frame_lengths.float()[:, None, None]
    k = torch.arange(n_max, dtype=torch.float32, device=device)[None, None, :]  # [1, 1, N]
    t = torch.arange(1, t_max + 1, dtype=torch.float32, device=device)[None, :, None]  # [1, T, 1]
    alpha = scaling * t
    beta = (scaling * (frames - t + 1.0)).clamp(min=scaling)
    rest = (n - k).clamp(min=0.0)

    def log_beta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    log_choose = torch.lgamma(n + 1.0) - torch.lgamma(k + 1.0) - torch.lgamma(rest + 1.0)
    prior = log_choose + log_beta(k + alpha, rest + beta) - log_beta(alpha, beta)
    outside = (k > n) | (t > frames)
    return prior.masked_fill(outside, 0.0)


def forward_sum_loss(scores: torch.Tensor, token_lengths: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood ``[B]`` of each utterance's tokens in order, summed over every monotonic alignment.

    Args:
        scores: ``[B, T, N]`` logits of token ``n`` at frame ``t`` (padding anywhere is ignored), e.g.
            :func:`alignment_log_probs`.

    A CTC loss whose classes are the blank (logit :data:`BLANK_LOGIT`) and the utterance's own tokens
    ``1..N`` and whose target is ``1, 2, ..., N``; ``inf`` (fewer frames than tokens) becomes 0.
    """
    batch, t_max, n_max = scores.shape
    # padded tokens get a very low but finite logit: -inf makes CTC's gradient nan
    logits = scores.float().masked_fill(padding_mask(token_lengths, n_max)[:, None, :], MASKED_LOGIT)
    logits = torch.cat([logits.new_full((batch, t_max, 1), BLANK_LOGIT), logits], dim=-1)
    log_probs = torch.log_softmax(logits, dim=-1).transpose(0, 1)  # [T, B, N + 1]
    targets = torch.arange(1, n_max + 1, device=scores.device).expand(batch, n_max)
    return nn.functional.ctc_loss(log_probs, targets, frame_lengths, token_lengths, blank=0, reduction="none",
                                  zero_infinity=True)


class UnitTextAligner(nn.Module):
    """Scores of every (unit frame, token) pair from token states and frame unit ids (module docstring).

    Args:
        dim: width of the token states. num_units: the codebook's K. hidden: width of keys and queries.
    """

    def __init__(self, dim: int, num_units: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.unit_embed = nn.Embedding(num_units, hidden)
        self.key = nn.Sequential(nn.Conv1d(dim, hidden, 3, padding=1), nn.ReLU(), nn.Conv1d(hidden, hidden, 1))
        self.query = nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                   nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(),
                                   nn.Conv1d(hidden, hidden, 1))

    def forward(self, states: torch.Tensor, token_pad: torch.Tensor, units: torch.Tensor,
                frame_pad: torch.Tensor) -> torch.Tensor:
        """``states [B, N, D]``, ``units [B, T]`` (any value on padding) -> scores ``[B, T, N]``.

        The score is ``-|q_t - k_n|^2 / sqrt(hidden)``; padded tokens get a very low score.
        """
        keys = self.key(states.masked_fill(token_pad[..., None], 0.0).transpose(1, 2)).transpose(1, 2)
        embedded = self.unit_embed(units.clamp(min=0)).masked_fill(frame_pad[..., None], 0.0)
        queries = self.query(embedded.transpose(1, 2)).transpose(1, 2)
        queries, keys = queries.float(), keys.float()
        distance = ((queries ** 2).sum(-1)[:, :, None] + (keys ** 2).sum(-1)[:, None, :]
                    - 2.0 * queries @ keys.transpose(1, 2))  # [B, T, N]; no sqrt: finite gradients at 0
        scores = -distance / math.sqrt(self.hidden)
        return scores.masked_fill(token_pad[:, None, :], MASKED_LOGIT)


def alignment_log_probs(scores: torch.Tensor, token_lengths: torch.Tensor, frame_lengths: torch.Tensor,
                        prior_scaling: float) -> torch.Tensor:
    """``[B, T, N]``: log-softmax of the aligner's scores over the tokens plus the log prior (``prior_scaling``
    0: no prior); what the forward-sum loss trains and (transposed) what MAS searches."""
    log_probs = torch.log_softmax(scores.float(), dim=-1)
    if prior_scaling > 0:
        log_probs = log_probs + beta_binomial_log_prior(token_lengths, frame_lengths, scores.shape[2],
                                                        scores.shape[1], prior_scaling)
    return log_probs
