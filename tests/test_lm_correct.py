"""Unit correction by a masked LM and interleaved unit-text data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lm_helpers import K, RATE, cyclic, tiny_config, toy_store
from speechunits.errors import SpeechUnitsError


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory):
    from speechunits.lm.train import train_lm

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mlm")
    rng = np.random.default_rng(0)
    toy_store(root / "store", [cyclic(int(rng.integers(6)), int(rng.integers(20, 40))) for _ in range(40)])
    train_lm(root / "store", root / "mlm", tiny_config("masked", steps=300), quiet=True)
    return root


def test_correction_repairs_a_corrupted_unit(masked_lm, tmp_path):
    from speechunits.lm.correct import CorrectOptions, correct_store
    from speechunits.lm.model_dir import load_lm
    from speechunits.units.store import UnitStore

    clean = [cyclic(2, 24), cyclic(5, 30)]
    corrupted = [c.copy() for c in clean]
    corrupted[0][10] = (corrupted[0][10] + 3) % 6
    corrupted[1][7] = 9  # a unit the toy language never uses
    for dedup in (False, True):
        src = toy_store(tmp_path / f"in{dedup}", corrupted, dedup=dedup)
        lm = load_lm(masked_lm / "mlm", "cpu")
        report = correct_store(lm, src.path, tmp_path / f"out{dedup}", CorrectOptions(threshold=0.2, iterations=2))
        out = UnitStore.open(tmp_path / f"out{dedup}", codebook_sha256="a" * 64)
        assert out.dedup == dedup and out.meta["codebook"] == src.meta["codebook"]
        fixed = dict(out)
        for i, c in enumerate(clean):
            assert np.array_equal(fixed[f"utt{i:03d}"].expand().ids, c)
        assert report.changed == 2 and report.utterances == 2


def test_a_sequence_longer_than_the_training_length_is_corrected_window_by_window(masked_lm):
    from speechunits.lm.correct import CorrectOptions, correct_sequence
    from speechunits.lm.model_dir import load_lm

    lm = load_lm(masked_lm / "mlm", "cpu")
    assert lm.trained_length == 256  # 254 units per window, cores of 127
    clean = cyclic(1, 700)
    noisy = clean.copy()
    for where in (5, 126, 127, 300, 511, 699):  # core edges, the middle, both ends
        noisy[where] = (noisy[where] + 3) % 6
    # threshold 0.05: this toy LM saw only 20-40-token sequences; at 0.2 it also rewrites three clean
    # neighbours of the corruptions in 254-unit windows (measured), a weakness of the LM, not of the windows
    options = CorrectOptions(threshold=0.05, iterations=2)
    assert np.array_equal(correct_sequence(lm, noisy, options), clean)
    assert np.array_equal(correct_sequence(lm, clean, options), clean)


def test_correction_respects_max_fraction_and_refuses_wrong_inputs(masked_lm, tmp_path):
    from speechunits.lm.correct import CorrectOptions, correct_sequence, correct_store
    from speechunits.lm.model_dir import load_lm

    lm = load_lm(masked_lm / "mlm", "cpu")
    noisy = np.random.default_rng(3).integers(0, K, 40)
    fixed = correct_sequence(lm, noisy, CorrectOptions(threshold=1.0, iterations=5, max_fraction=0.1))
    assert 0 < (fixed != noisy).sum() <= 4
    toy_store(tmp_path / "b", [cyclic(0, 10)], sha="b" * 64)
    with pytest.raises(SpeechUnitsError, match="b{64}"):
        correct_store(lm, tmp_path / "b", tmp_path / "o", CorrectOptions())
    toy_store(tmp_path / "e", [])
    with pytest.raises(SpeechUnitsError, match="empty"):
        correct_store(lm, tmp_path / "e", tmp_path / "o2", CorrectOptions())
    with pytest.raises(SpeechUnitsError, match="--max-fraction"):
        CorrectOptions(max_fraction=0.0)


def test_cli_units_correct(masked_lm, tmp_path, caplog):
    from conftest import cli_error
    from speechunits.cli.main import main
    from speechunits.units.store import UnitStore

    bad = cyclic(1, 20)
    bad[5] = 11
    toy_store(tmp_path / "in", [bad])
    assert main(["units", "correct", str(tmp_path / "in"), "--lm", str(masked_lm / "mlm"), "-o", str(tmp_path / "out"),
                 "--threshold", "0.2", "--stride", "1"]) == 0
    assert np.array_equal(dict(UnitStore.open(tmp_path / "out"))["utt000"].ids, cyclic(1, 20))
    assert "not a unit LM directory" in cli_error(["units", "correct", str(tmp_path / "in"), "--lm",
                                                   str(tmp_path / "in"), "-o", str(tmp_path / "x")], caplog)


# -- interleaving ----------------------------------------------------------------------------------
def test_interleaved_pieces_and_training(tmp_path):
    from speechunits.lm.data import LMTask
    from speechunits.lm.interleave import read_words, split_units
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.train import train_lm
    from speechunits.lm.vocab import LMVocab, NUM_SPECIAL
    from speechunits.units import Units

    frames = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])  # 50 Hz, offset 0.0125 s: centres 0.0125 + i/50
    words = tmp_path / "words.tsv"
    words.write_text("utt000\t0.04\t0.10\tThe\nutt000\t0.10\t0.15\tcat\n"
                     "utt001\t0.0\t0.1\tthe\n")
    alignments = read_words(words)
    vocab = LMVocab("dedup", K, words=["cat", "the"])
    utt = split_units(Units(frames, RATE, K), alignments["utt000"], 0.0125, vocab)
    # frames 0-1 before 'The' (centres 0.0125, 0.0325), 2-4 'The', 5-6 'cat' (0.1125, 0.1325), 7-9 after
    assert [p.tolist() for p in utt.pieces] == [[NUM_SPECIAL], [1 + NUM_SPECIAL], [2 + NUM_SPECIAL], [3 + NUM_SPECIAL]]
    assert utt.words == [-1, vocab.word_id("the"), vocab.word_id("cat"), -1]
    assert utt.tokens(np.array([False, True, True, False])).tolist() == [
        NUM_SPECIAL, vocab.word_id("the"), vocab.word_id("cat"), 3 + NUM_SPECIAL]
    toy_store(tmp_path / "s", [frames, frames[::-1]])
    result = train_lm(tmp_path / "s", tmp_path / "lm", tiny_config(steps=2), tokens="dedup", interleave=words,
                      interleave_prob=0.5, quiet=True)
    assert result.meta["interleave"]["utterances"] == 2 and result.meta["vocab"]["words"] == ["cat", "the"]
    lm = load_lm(tmp_path / "lm", "cpu")
    assert lm.vocab.size == NUM_SPECIAL + K + 2 and lm.model.config.vocab_size == lm.vocab.size
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "lm"))
    assert tok("[cat]")["input_ids"] == [1, lm.vocab.word_id("cat"), 2]
    task = LMTask([np.array([1, 5, 2])], objective="causal", vocab_size=lm.vocab.size, batch_tokens=64, seed=0,
                  interleaved=[utt], interleave_prob=1.0)
    assert task.batch(0).input_ids[0].tolist() == [1, NUM_SPECIAL, vocab.word_id("the"), vocab.word_id("cat"),
                                                   3 + NUM_SPECIAL, 2]
    toy_store(tmp_path / "other", [frames], prefix="zz")
    with pytest.raises(SpeechUnitsError, match="no word alignments"):
        train_lm(tmp_path / "other", tmp_path / "lm2", tiny_config(steps=1), interleave=words, quiet=True)


def test_interleaved_dedup_runs_cut_by_a_word_boundary_merge_again():
    from speechunits.lm.interleave import InterleavedUtterance

    utt = InterleavedUtterance([np.array([5, 7]), np.array([7, 8]), np.array([8])], [-1, 20, -1], merge_runs=True)
    assert utt.tokens(np.array([False, False, False])).tolist() == [5, 7, 8]  # = whole-utterance dedup
    assert utt.tokens(np.array([False, True, False])).tolist() == [5, 7, 20, 8]
    plain = InterleavedUtterance(utt.pieces, utt.words)
    assert plain.tokens(np.array([False, False, False])).tolist() == [5, 7, 7, 8, 8]
