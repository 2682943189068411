"""Random spans in unit-LM training (``crop_prob``): the data path and what it teaches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lm_helpers import cyclic, tiny_config, toy_store
from speechunits.errors import SpeechUnitsError


# -- random spans ----------------------------------------------------------------------------------
def test_random_spans_are_contiguous_and_end_only_at_the_end():
    from speechunits.lm.data import random_span
    from speechunits.lm.vocab import BOS_ID, EOS_ID

    inner = np.arange(10, 20)
    seq = np.concatenate(([BOS_ID], inner, [EOS_ID]))
    gen = torch.Generator().manual_seed(0)
    starts, with_end = set(), 0
    for _ in range(300):
        span = random_span(seq, gen)
        assert span[0] == BOS_ID
        body = span[1:-1] if span[-1] == EOS_ID else span[1:]
        assert body.size >= 1 and np.array_equal(body, np.arange(body[0], body[0] + body.size))  # contiguous
        ends_at_last = body[-1] == inner[-1]
        assert (span[-1] == EOS_ID) == ends_at_last
        starts.add(int(body[0]))
        with_end += int(ends_at_last)
    assert starts == set(inner.tolist())  # every start is drawn
    assert 0 < with_end < 300
    one = np.array([BOS_ID, 10, EOS_ID])
    assert np.array_equal(random_span(one, gen), one)  # nothing to cut


def test_crop_prob_is_a_pure_function_of_seed_and_batch_and_is_checked():
    from speechunits.lm.config import LMConfig
    from speechunits.lm.data import LMTask

    seqs = [np.concatenate(([1], np.arange(5, 25), [2])) for _ in range(8)]
    task = LMTask(seqs, objective="causal", vocab_size=30, batch_tokens=200, seed=3, crop_prob=0.5)
    first = [task.batch(i).input_ids for i in range(4)]
    again = LMTask(seqs, objective="causal", vocab_size=30, batch_tokens=200, seed=3, crop_prob=0.5)
    assert all(torch.equal(a, again.batch(i).input_ids) for i, a in enumerate(first))
    lengths = [int(m.sum()) for i in range(4) for m in task.batch(i).attention_mask]
    assert min(lengths) < 22 and max(lengths) == 22  # some cropped, some whole
    plain = LMTask(seqs, objective="causal", vocab_size=30, batch_tokens=200, seed=3)
    assert all(int(m.sum()) == 22 for m in plain.batch(0).attention_mask)
    with pytest.raises(SpeechUnitsError, match="crop_prob"):
        LMConfig(crop_prob=1.5)


def test_spans_teach_the_lm_a_fragment_spoken_alone(tmp_path):
    """Utterances always open with the same two units; a fragment from their middle, scored alone,
    is unlikely to an LM trained on whole utterances and likely to one trained with spans."""
    from speechunits.lm.model_dir import load_lm, read_meta
    from speechunits.lm.score import score_tokens
    from speechunits.lm.train import train_lm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a shared machine
    try:
        toy_store(tmp_path / "s", [np.concatenate(([10, 11], cyclic(0, 30))) for _ in range(20)])
        for name, crop in (("whole", 0.0), ("spans", 0.5)):
            train_lm(tmp_path / "s", tmp_path / name, tiny_config(steps=200, crop_prob=crop), quiet=True)
    finally:
        torch.set_num_threads(threads)
    fragment, shuffled = cyclic(3, 4), np.array([3, 5, 4, 0])
    scores = {}
    for name in ("whole", "spans"):
        lm = load_lm(tmp_path / name, "cpu")
        toks = [lm.vocab.encode_units(x) for x in (fragment, shuffled)]
        scores[name] = [s for s, _ in score_tokens(lm, toks)]
        assert read_meta(tmp_path / name)["config"]["crop_prob"] == (0.5 if name == "spans" else 0.0)
    assert scores["spans"][0] > scores["spans"][1] + 3.0  # the real fragment beats its shuffle
    assert scores["spans"][0] > scores["whole"][0] + 3.0  # and is far more probable than without spans
