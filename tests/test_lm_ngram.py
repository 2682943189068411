"""The n-gram baseline: hand-computed probabilities, normalisation, and kenlm reading our ARPA files."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.lm.ngram import START, NGramLM, _discounts

TOY = [[0, 1], [0, 2], [0, 1]]  # read as <s> 0 1 </s>, <s> 0 2 </s>, <s> 0 1 </s>; </s> is id 3, V = 4


def random_corpus(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, 13)
    seqs = [rng.choice(12, size=rng.integers(1, 30), p=zipf / zipf.sum()) for _ in range(400)]
    return seqs + [np.array([1, 2, 3, 4, 5] * 3)] * 20  # a repeated pattern gives the high orders counts


def test_witten_bell_matches_a_hand_computed_bigram():
    lm = NGramLM(2, vocab_size=3, smoothing="witten-bell").fit(TOY)
    # unigram: tokens 0,1,2,</s> counted 3,2,1,3 (N=9, T=4, V=4): P(1) = (2 + 4/4) / 13
    p1 = (2 + 1) / 13
    # bigram after 0: c(0)=3, T(0)=2 (1 twice, 2 once): P(1|0) = (2 + 2 * P(1)) / 5
    assert lm.prob(1, [0]) == pytest.approx((2 + 2 * p1) / 5)
    total, n = lm.score([0, 1])
    p_start0 = (3 + 1 * (3 + 1) / 13) / (3 + 1)  # after <s>: 0 three times, one type
    p_end = (2 + 1 * (3 + 1) / 13) / (2 + 1)      # after 1: </s> twice, one type
    assert n == 3 and total == pytest.approx(math.log(p_start0) + math.log((2 + 2 * p1) / 5) + math.log(p_end))
    assert lm.score([0, 1])[0] > lm.score([1, 0])[0]


def test_kneser_ney_matches_a_hand_computed_bigram():
    lm = NGramLM(2, vocab_size=3).fit(TOY)
    assert lm.smoothing == "kneser-ney"
    # too few counts for discounts from count-of-counts: the fallbacks D1, D2, D3+ = 0.5, 1, 1.5
    assert lm.discounts == [(0.5, 1.0, 1.5), (0.5, 1.0, 1.5)]
    # unigrams use continuation counts (distinct left neighbours): 0 after <s>; 1 and 2 after 0;
    # </s> after 1 and 2 -> 1, 1, 1, 2; A = 5, B = 0.5 * 3 + 1.0 * 1 = 2.5, uniform 1/4
    p_uni = {0: (1 - 0.5 + 2.5 / 4) / 5, 1: (1 - 0.5 + 2.5 / 4) / 5, 2: (1 - 0.5 + 2.5 / 4) / 5,
             3: (2 - 1.0 + 2.5 / 4) / 5}
    assert sum(p_uni.values()) == pytest.approx(1.0)
    for w, p in p_uni.items():
        assert lm.prob(w, []) == pytest.approx(p)
    # bigrams use raw counts: after 0, 1 twice (D2) and 2 once (D1): A = 3, B = 1.0 + 0.5
    p_1_after_0 = (2 - 1.0 + 1.5 * p_uni[1]) / 3
    assert lm.prob(1, [0]) == pytest.approx(p_1_after_0)
    p_0_after_start = (3 - 1.5 + 1.5 * p_uni[0]) / 3  # 0 three times after <s> (D3+)
    p_end_after_1 = (2 - 1.0 + 1.0 * p_uni[3]) / 2
    total, n = lm.score([0, 1])
    assert n == 3
    assert total == pytest.approx(math.log(p_0_after_start) + math.log(p_1_after_0) + math.log(p_end_after_1))


def test_modified_kneser_ney_discounts_follow_the_count_of_counts():
    y = 10 / (10 + 2 * 4)
    assert _discounts(10, 4, 2, 1) == pytest.approx((1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2))
    assert _discounts(10, 0, 2, 1) == (0.5, 1.0, 1.5)  # undefined: fallbacks
    lm = NGramLM(3, vocab_size=12).fit(random_corpus())
    assert lm.discounts[2] != (0.5, 1.0, 1.5)  # the top order of this corpus has enough counts
    assert all(0 < d < j for ds in lm.discounts for j, d in enumerate(ds, 1))


@pytest.mark.parametrize("smoothing", ["kneser-ney", "witten-bell"])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_history_gives_a_distribution(smoothing, order):
    lm = NGramLM(order, vocab_size=14, smoothing=smoothing).fit(random_corpus())  # ids 12, 13 never seen
    for history in ([], [1], [1, 2], [START], [START, 3], [9, 9, 9, 9, 9], [13, 1], [1, 2, 3, 4, 5, 1]):
        assert sum(lm.prob(w, history) for w in range(15)) == pytest.approx(1.0)
    assert lm.prob(13, [1, 2]) > 0
    # a pattern seen 20 times beats its reversal
    assert lm.score([1, 2, 3, 4, 5])[0] > lm.score([5, 4, 3, 2, 1])[0] or order == 1


@pytest.mark.parametrize("smoothing", ["kneser-ney", "witten-bell"])
@pytest.mark.parametrize("order", [2, 3, 5])
def test_kenlm_reads_our_arpa_files_with_the_same_scores(tmp_path, smoothing, order):
    kenlm = pytest.importorskip("kenlm")
    lm = NGramLM(order, vocab_size=14, smoothing=smoothing).fit(random_corpus())
    names = [f"u{i}" for i in range(14)]
    model = kenlm.Model(str(lm.to_arpa(tmp_path / "lm.arpa", names=names)))
    assert model.order == order
    rng = np.random.default_rng(1)
    sentences = [rng.integers(0, 14, size=rng.integers(0, 20)) for _ in range(40)] + [np.array([1, 2, 3, 4, 5, 1])]
    for ids in sentences:
        ours, _ = lm.score(ids)
        theirs = model.score(" ".join(names[i] for i in ids), bos=True, eos=True) * math.log(10)
        assert ours == pytest.approx(theirs, abs=1e-4)  # kenlm stores float32


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(SpeechUnitsError, match="order"):
        NGramLM(0, 5)
    with pytest.raises(SpeechUnitsError, match="vocabulary"):
        NGramLM(3, 0)
    with pytest.raises(SpeechUnitsError, match="smoothing"):
        NGramLM(3, 5, smoothing="good-turing")
    with pytest.raises(SpeechUnitsError, match="no training tokens"):
        NGramLM(3, 5).fit([])
    with pytest.raises(SpeechUnitsError, match="fit"):
        NGramLM(3, 5).prob(0, [])
    lm = NGramLM(2, 3).fit(TOY)
    with pytest.raises(SpeechUnitsError, match=r"\[0, 3\)"):
        lm.score([5])
    with pytest.raises(SpeechUnitsError, match="names"):
        lm.to_arpa(tmp_path / "x.arpa", names=["a", "b"])
    with pytest.raises(SpeechUnitsError, match="spaces"):
        lm.to_arpa(tmp_path / "x.arpa", names=["a", "b c", "d"])


# -- the n-gram LM directory (`speechunits lm ngram`) ------------------------------------------------
def test_cli_ngram_lm_scores_like_kenlm_and_is_refused_where_it_cannot_serve(tmp_path, capsys, caplog):
    import json

    from lm_helpers import cyclic, toy_store
    from speechunits.cli.main import main
    from speechunits.lm.model_dir import load_lm
    from speechunits.units.store import UnitStore

    rng = np.random.default_rng(0)
    train = [np.repeat(cyclic(int(rng.integers(6)), 12), rng.integers(1, 4, size=12)) for _ in range(40)]
    toy_store(tmp_path / "train", train)
    held = [np.repeat(cyclic(2, 10), 2), rng.integers(0, 12, size=15), np.zeros(0, dtype=np.int64)]
    toy_store(tmp_path / "held", held)
    lm_dir = tmp_path / "lm"
    assert main(["lm", "ngram", str(tmp_path / "train"), "-o", str(lm_dir), "--tokens", "dedup", "--order", "4",
                 "--quiet"]) == 0
    meta = json.loads((lm_dir / "lm.json").read_text())
    assert meta["objective"] == "ngram" and meta["ngram"]["order"] == 4 and meta["consumes"]["tokenisation"] == "dedup"
    capsys.readouterr()
    assert main(["lm", "score", str(lm_dir), str(tmp_path / "held"), "--json", "--quiet"]) == 0
    scores = {s["id"]: s for s in json.loads(capsys.readouterr().out)["utterances"]}
    # the same model counted directly on the deduplicated ids
    direct = NGramLM(4, 12).fit(_dedup(x) for _, x in UnitStore.open(tmp_path / "train"))
    for utt, units in UnitStore.open(tmp_path / "held"):
        total, n = direct.score(_dedup(units))
        assert scores[utt]["logprob"] == pytest.approx(total, abs=1e-4) and scores[utt]["tokens"] == n
    assert scores["utt000"]["normalised"] > scores["utt001"]["normalised"]  # the toy language beats noise
    kenlm = pytest.importorskip("kenlm")
    model = kenlm.Model(str(lm_dir / "lm.arpa"))
    for utt, units in UnitStore.open(tmp_path / "held"):
        sentence = " ".join(str(i) for i in _dedup(units))
        assert scores[utt]["logprob"] == pytest.approx(model.score(sentence) * math.log(10), abs=1e-3)
    # what an n-gram LM cannot do, and units of another codebook
    lm = load_lm(lm_dir)
    assert lm.objective == "ngram"
    toy_store(tmp_path / "other", held[:1], sha="b" * 64)
    with pytest.raises(SpeechUnitsError, match="b{64}"):
        from speechunits.lm.score import score_store

        score_store(lm, tmp_path / "other")
    with pytest.raises(SpeechUnitsError, match="an ngram LM; this needs a causal one"):
        load_lm(lm_dir, objective="causal")
    with pytest.raises(SpeechUnitsError, match="already holds an n-gram LM"):
        from speechunits.lm.ngram_dir import train_ngram_lm

        train_ngram_lm(tmp_path / "train", lm_dir)
    with pytest.raises(SpeechUnitsError, match="empty"):
        toy_store(tmp_path / "empty", [])
        train_ngram_lm(tmp_path / "empty", tmp_path / "lm-empty")
    with pytest.raises(SpeechUnitsError, match="order"):
        train_ngram_lm(tmp_path / "train", tmp_path / "lm0", order=0)


def _dedup(units) -> np.ndarray:
    ids = np.repeat(units.ids, units.durations) if units.durations is not None else units.ids
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))] if ids.size else ids


def test_read_arpa_refuses_broken_files(tmp_path):
    from speechunits.lm.arpa import read_arpa

    with pytest.raises(SpeechUnitsError, match="no such"):
        read_arpa(tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("hello\n")
    with pytest.raises(SpeechUnitsError, match="not an ARPA file"):
        read_arpa(bad)
    bad.write_bytes(b"\\data\\\nngram 1=1\n\xff\xfe\x00")
    with pytest.raises(SpeechUnitsError, match="not an ARPA file .not UTF-8"):
        read_arpa(bad)
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t</s>\n\\end\\\n")
    with pytest.raises(SpeechUnitsError, match="declares 2 1-grams"):
        read_arpa(bad)
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\nx\t</s>\n\\end\\\n")
    with pytest.raises(SpeechUnitsError, match=":5: not a number"):
        read_arpa(bad)
    # a hand-written bigram model: P(a|<s>) listed, P(</s>|a) backs off through bow(a)
    good = tmp_path / "good.arpa"
    good.write_text("made by hand\n\\data\\\nngram 1=4\nngram 2=1\n\n\\1-grams:\n-99\t<s>\t-0.5\n-0.3\ta\t-0.2\n"
                    "-0.6\t</s>\n-1.0\t<unk>\n\n\\2-grams:\n-0.1\t<s> a\n\\end\\\n")
    lm = read_arpa(good)
    total, n = lm.score(["a"])
    assert n == 2 and total == pytest.approx((-0.1 + (-0.2 - 0.6)) * math.log(10))
    assert lm.score(["zzz"])[0] == pytest.approx((-0.5 - 1.0 + 0.0 - 0.6) * math.log(10))  # <unk>, no bow for it
