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


def _even_split(frames: int, tokens: int) -> np.ndarray:
    """The uniform baseline: ``frames`` shared as evenly as whole frames allow among ``tokens``."""
    return np.diff(np.floor(np.linspace(0, frames, tokens + 1)).astype(np.int64))


def _frame_agreement(durations: np.ndarray, reference: np.ndarray) -> float:
    """Share of frames given to the same token by two duration vectors of one utterance."""
    index = np.arange(len(durations))
    return float(np.mean(np.repeat(index, durations) == np.repeat(index, reference)))


@pytest.mark.slow
def test_learned_durations_follow_the_unused_alignment_better_than_an_even_split(tmp_path):
    """MAS training on phone *sequences* only; the corpus's phones.tsv durations (never shown to the
    model) are the independent reference. The learned durations must correlate with them better than
    an even split of each utterance's frames does, and put more frames on the right phone."""
    import logging

    from speechunits.audio import Audio
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.measure.alignments import load_alignments
    from speechunits.quantize.fit import fit_sample
    from speechunits.seq2seq.data import codebook_record, token_durations
    from speechunits.seq2seq.symbols import symbols_of
    from speechunits.seq2seq.tasks import TTSItem, TTSTask, collate_tts
    from speechunits.seq2seq.tts_model import TTSConfig, TTSModel
    from speechunits.synth.testing import small_corpus
    from speechunits.training import OptimConfig, Trainer

    torch.set_num_threads(1)
    corpus = small_corpus(tmp_path, minutes=0.5, speakers=3)
    mfcc = load_encoder("mfcc")
    features = {u.id: mfcc.extract(Audio.load(u.path), [0])[0] for u in open_corpus(corpus / "manifest.tsv")}
    codebook = fit_sample(np.concatenate(list(features.values())), 64, mfcc.info, 0, seed=0, device="cpu")
    record = codebook_record(codebook)
    units = {u: np.asarray(codebook.assign(f, device="cpu"), dtype=np.int64) for u, f in features.items()}
    alignment = load_alignments(corpus / "phones.tsv", tier="phones")
    utts = sorted(units)
    tokens = {u: [s.label for s in alignment[u]] for u in utts}
    truth = {u: token_durations(alignment[u], len(units[u]), record["frame_rate"], record["frame_offset_s"])
             for u in utts}
    symbols = symbols_of(tokens.values(), "phones")
    items = [TTSItem(np.asarray(symbols.encode(tokens[u]), dtype=np.int64), None, units[u]) for u in utts]

    torch.manual_seed(0)
    model = TTSModel(TTSConfig(vocab_size=len(symbols), num_units=64, dim=64, heads=2, ffn=128, encoder_layers=1,
                               decoder_layers=1, duration_hidden=32, dropout=0.0, alignment_dim=64))
    optim = OptimConfig(steps=400, lr=3e-3, warmup_steps=20, schedule="constant", bf16=False, weight_decay=0.0,
                        log_every=1000, checkpoint_every=10_000)
    Trainer(model, TTSTask(items, frame_rate=record["frame_rate"], batch_frames=3000), optim, None,
            device=torch.device("cpu"), quiet=True).run()
    batch = collate_tts(items)
    learned = model.eval().align(batch.tokens, batch.lengths, batch.units, batch.frame_lengths).numpy()
    learned_by = {u: learned[i, : len(tokens[u])] for i, u in enumerate(utts)}
    even_by = {u: _even_split(len(units[u]), len(tokens[u])) for u in utts}
    reference = np.concatenate([truth[u] for u in utts])
    for u in utts:
        assert learned_by[u].sum() == len(units[u]) and learned_by[u].min() >= 1
    r_learned = np.corrcoef(np.concatenate([learned_by[u] for u in utts]), reference)[0, 1]
    r_even = np.corrcoef(np.concatenate([even_by[u] for u in utts]), reference)[0, 1]
    agree_learned = np.mean([_frame_agreement(learned_by[u], truth[u]) for u in utts])
    agree_even = np.mean([_frame_agreement(even_by[u], truth[u]) for u in utts])
    logging.getLogger(__name__).info("durations vs phones.tsv: r = %.3f learned, %.3f even split; frames on the "
                                     "right phone %.3f learned, %.3f even split", r_learned, r_even,
                                     agree_learned, agree_even)
    assert r_learned > r_even
    assert agree_learned > agree_even
