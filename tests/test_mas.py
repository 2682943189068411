"""Durations without alignments: monotonic alignment search, the alignment prior, the learned aligner."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError


def _path_score(scores: np.ndarray, durations: np.ndarray) -> float:
    ends = np.concatenate([[0], np.cumsum(durations)])
    return float(sum(scores[i, ends[i]: ends[i + 1]].sum() for i in range(len(durations))))


def _brute_force_best(scores: np.ndarray) -> float:
    """The best score over every monotonic path: all ways to cut T frames into N non-empty runs."""
    n, t = scores.shape
    best = -np.inf
    for cuts in itertools.combinations(range(1, t), n - 1):
        best = max(best, _path_score(scores, np.diff((0, *cuts, t))))
    return best


def test_mas_finds_the_best_monotonic_path_of_random_scores():
    from speechunits.seq2seq.alignment import best_durations

    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 6))
        t = int(rng.integers(n, 10))
        scores = rng.standard_normal((n, t)).astype(np.float32)
        durations = best_durations(scores)
        assert durations.sum() == t and durations.min() >= 1 and len(durations) == n
        assert _path_score(scores, durations) == pytest.approx(_brute_force_best(scores), abs=1e-4)


def test_batched_mas_with_padding_equals_each_utterance_alone():
    from speechunits.seq2seq.alignment import best_durations, monotonic_alignment_search

    rng = np.random.default_rng(1)
    shapes = [(3, 7), (5, 5), (1, 4), (4, 9)]
    batch = np.full((len(shapes), 5, 9), 100.0, dtype=np.float32)  # padding would win if it were read
    for b, (n, t) in enumerate(shapes):
        batch[b, :n, :t] = rng.standard_normal((n, t))
    durations = monotonic_alignment_search(torch.from_numpy(batch), torch.tensor([n for n, _ in shapes]),
                                           torch.tensor([t for _, t in shapes])).numpy()
    for b, (n, t) in enumerate(shapes):
        assert durations[b, :n].tolist() == best_durations(batch[b, :n, :t]).tolist()
        assert durations[b, n:].sum() == 0


def test_mas_refuses_fewer_frames_than_tokens():
    from speechunits.seq2seq.alignment import best_durations, monotonic_alignment_search

    with pytest.raises(SpeechUnitsError, match="3 frames for 4 tokens"):
        best_durations(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(SpeechUnitsError, match="utterance 1 .* 2 frames for 3 tokens"):
        monotonic_alignment_search(torch.zeros(2, 3, 5), torch.tensor([2, 3]), torch.tensor([5, 2]))


def test_beta_binomial_prior_matches_scipy():
    from scipy.stats import betabinom

    from speechunits.seq2seq.alignment import beta_binomial_log_prior

    lengths, frames = torch.tensor([4, 2]), torch.tensor([6, 3])
    prior = beta_binomial_log_prior(lengths, frames, 4, 6, scaling=0.5).numpy()
    for b, (n, t) in enumerate(zip(lengths.tolist(), frames.tolist())):
        for frame in range(1, t + 1):
            expected = betabinom.logpmf(np.arange(n), n - 1, 0.5 * frame, 0.5 * (t - frame + 1))
            np.testing.assert_allclose(prior[b, frame - 1, :n], expected, rtol=1e-4, atol=1e-5)
        assert (prior[b, t:] == 0).all() and (prior[b, :, n:] == 0).all()


def test_forward_sum_loss_of_one_token_sums_over_blank_placements():
    """One token over two frames: its paths are (tok, tok), (tok, blank), (blank, tok) -- by hand."""
    from speechunits.seq2seq.alignment import BLANK_LOGIT, forward_sum_loss

    logit = 0.3
    loss = forward_sum_loss(torch.full((1, 2, 1), logit), torch.tensor([1]), torch.tensor([2]))
    p_tok = np.exp(logit) / (np.exp(logit) + np.exp(BLANK_LOGIT))
    p_blank = 1.0 - p_tok
    assert float(loss[0]) == pytest.approx(-np.log(p_tok * p_tok + 2 * p_tok * p_blank), rel=1e-5)


def test_a_model_without_aligner_needs_durations():
    from speechunits.seq2seq.tts_model import TTSConfig, TTSModel

    model = TTSModel(TTSConfig(vocab_size=8, num_units=4, dim=16, heads=2, ffn=32, encoder_layers=1,
                               decoder_layers=1, duration_hidden=16))
    with pytest.raises(SpeechUnitsError, match="no aligner"):
        model(torch.tensor([[4, 5]]), torch.tensor([2]), None, units=torch.tensor([[1, 2, 3]]),
              frame_lengths=torch.tensor([3]))
