"""ABX: batched DTW vs a loop reference, item files, known answers, a brute-force protocol check."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.measure import abx, abx_items, dtw

FRAME_RATE = 50.0
OFFSET = 0.0125
PHONES = ["a", "b", "c", "d"]


@dataclass(frozen=True)
class Seg:
    start: float
    end: float
    label: str


def make_corpus(num_speakers: int = 3, utts_per_speaker: int = 6, phones_per_utt: int = 25, seed: int = 0):
    """Random phone strings over 4 phones; returns alignments, speakers, frame phone ids per utterance."""
    rng = np.random.default_rng(seed)
    alignments, speakers, frame_phones = {}, {}, {}
    for s in range(num_speakers):
        for u in range(utts_per_speaker):
            utt = f"s{s}_u{u}"
            # No phone repeats itself (a repeat would make "c c b" and "c b b" identical frame strings).
            steps = rng.integers(1, len(PHONES), size=phones_per_utt)
            labels = np.cumsum(steps) % len(PHONES)
            durs = rng.integers(3, 7, size=phones_per_utt)  # frames
            bounds = np.concatenate(([0], np.cumsum(durs))) / FRAME_RATE
            alignments[utt] = [Seg(bounds[i], bounds[i + 1], PHONES[p]) for i, p in enumerate(labels)]
            speakers[utt] = f"spk{s}"
            frame_phones[utt] = np.repeat(labels, durs)
    return alignments, speakers, frame_phones


def test_dtw_batch_matches_loop_reference_including_ties() -> None:
    rng = np.random.default_rng(0)
    for integer in (False, True):
        mats = [rng.random((rng.integers(1, 9), rng.integers(1, 9))) for _ in range(150)]
        if integer:
            mats = [np.round(x) for x in mats]
        big_n = max(x.shape[0] for x in mats)
        big_m = max(x.shape[1] for x in mats)
        dist = torch.full((len(mats), big_n, big_m), 7.0, dtype=torch.float64)  # padding must not matter
        for k, x in enumerate(mats):
            dist[k, : x.shape[0], : x.shape[1]] = torch.from_numpy(x)
        n = torch.tensor([x.shape[0] for x in mats])
        m = torch.tensor([x.shape[1] for x in mats])
        np.testing.assert_allclose(dtw.dtw_batch(dist, n, m).numpy(), [dtw.dtw_reference(x) for x in mats], atol=1e-12)


def test_dtw_by_hand() -> None:
    # Diagonal path costs 0 + 0 over 2 cells.
    assert dtw.dtw_reference(np.array([[0.0, 1.0], [1.0, 0.0]])) == 0.0
    # 1x3: the only path visits all three cells: (1 + 2 + 3) / 3.
    assert dtw.dtw_reference(np.array([[1.0, 2.0, 3.0]])) == pytest.approx(2.0)
    out = dtw.dtw_batch(torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([1]), torch.tensor([3]))
    assert out.item() == pytest.approx(2.0)


def test_angular_distance_by_hand() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [-3.0, 0.0]])
    np.testing.assert_allclose(dtw.angular_distance_matrix(a, b), [[0.25, 1.0], [0.25, 0.5]], atol=1e-7)


def test_build_items_skips_silence_and_spans_triphones() -> None:
    segs = [Seg(0.0, 0.1, "sil"), Seg(0.1, 0.2, "k"), Seg(0.2, 0.3, "a"), Seg(0.3, 0.4, "t"), Seg(0.4, 0.5, "s"),
            Seg(0.5, 0.6, "sil")]
    items = abx_items.build_items({"u1": segs}, {"u1": "alice"})
    assert items == [abx_items.AbxItem("u1", 0.1, 0.4, "a", "k", "t", "alice"), abx_items.AbxItem("u1", 0.2, 0.5, "t", "a", "s", "alice")]
    assert abx_items.build_items({"u2": segs[:3]})[0:1] == []
    assert abx_items.build_items({"u1": segs})[0].speaker == abx_items.UNKNOWN_SPEAKER


def test_item_file_round_trip_and_reference_format(tmp_path: Path) -> None:
    # Lines in the Libri-Light reference layout.
    ref = tmp_path / "ref.item"
    ref.write_text("#file onset offset #phone prev-phone next-phone speaker\n"
                   "6295-244435-0009 0.2925 0.4725 IH L NG 6295\n"
                   "6295-244435-0009 0.3725 0.5325 NG IH K 6295\n")
    items = abx_items.read_items(ref)
    assert items[0] == abx_items.AbxItem("6295-244435-0009", 0.2925, 0.4725, "IH", "L", "NG", "6295")
    out = tmp_path / "out.item"
    abx_items.write_items(out, items)
    assert out.read_text().splitlines()[0] == abx_items.ITEM_HEADER
    assert abx_items.read_items(out) == items


@pytest.mark.parametrize("body, message", [
    ("u 0.1 0.2 a b c\n", "expected 7 columns"),
    ("u x 0.2 a b c s\n", "not numbers"),
    ("u 0.3 0.2 a b c s\n", "onset < offset"),
    ("", "no items"),
])
def test_item_file_errors(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.item"
    path.write_text(abx_items.ITEM_HEADER + "\n" + body)
    with pytest.raises(SpeechUnitsError, match=message):
        abx_items.read_items(path)
    with pytest.raises(SpeechUnitsError, match="not found"):
        abx_items.read_items(tmp_path / "nope.item")
    headerless = tmp_path / "headerless.item"
    headerless.write_text("u 0.1 0.2 a b c s\n")
    with pytest.raises(SpeechUnitsError, match="header"):
        abx_items.read_items(headerless)


def test_write_items_rejects_whitespace_labels(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="whitespace"):
        abx_items.write_items(tmp_path / "x.item", [abx_items.AbxItem("u", 0.0, 1.0, "a b", "c", "d", "s")])


def test_phone_identity_features_give_zero_error_and_random_features_half() -> None:
    alignments, speakers, frame_phones = make_corpus()
    items = abx_items.build_items(alignments, speakers)
    rng = np.random.default_rng(1)
    onehot = {u: np.eye(len(PHONES))[p] + 0.05 * rng.standard_normal((p.size, len(PHONES))) for u, p in frame_phones.items()}
    good = abx.compute_abx(items, onehot.items(), FRAME_RATE, OFFSET)
    assert good.abx_within is not None and good.abx_across is not None
    assert good.abx_within < 0.02 and good.abx_across < 0.02
    assert good.num_within_cells > 20 and good.num_across_cells > 20
    noise = {u: rng.standard_normal((p.size, 16)) for u, p in frame_phones.items()}
    bad = abx.compute_abx(items, noise.items(), FRAME_RATE, OFFSET)
    assert 0.4 < bad.abx_within < 0.6 and 0.4 < bad.abx_across < 0.6


def test_units_equal_to_phones_give_zero_error_with_hamming() -> None:
    alignments, speakers, frame_phones = make_corpus(seed=3)
    items = abx_items.build_items(alignments, speakers)
    res = abx.compute_abx(items, frame_phones.items(), FRAME_RATE, OFFSET, distance="hamming")
    assert res.abx_within == pytest.approx(0.0) and res.abx_across == pytest.approx(0.0)
    rng = np.random.default_rng(0)
    rand = {u: rng.integers(0, 50, size=p.size) for u, p in frame_phones.items()}
    res = abx.compute_abx(items, rand.items(), FRAME_RATE, OFFSET, distance="hamming")
    assert 0.4 < res.abx_within < 0.6


def _brute_force(items, feats, modes):
    """Independent protocol: python loops over every triplet, loop DTW, Libri-Light's reduction."""
    def frames(it):
        f = feats[it.utt_id]
        centres = OFFSET + np.arange(f.shape[0]) / FRAME_RATE
        return f[(centres >= it.onset - 1e-9) & (centres < it.offset - 1e-9)]

    def d(i, j):
        return dtw.dtw_reference(dtw.angular_distance_matrix(frames(items[i]), frames(items[j])))

    groups = defaultdict(list)
    for k, it in enumerate(items):
        groups[(it.prev + "+" + it.next, it.speaker, it.phone)].append(k)
    cells = defaultdict(list)  # (speaker, a, b) -> scores over contexts (and X speakers)
    for (ctx, spk, pa), ga in groups.items():
        for (ctx2, spk2, pb), gb in groups.items():
            if ctx2 != ctx or spk2 != spk or pb == pa:
                continue
            if modes == "within" and len(ga) > 1:
                errs = [float(d(x, a) > d(x, b)) + 0.5 * float(d(x, a) == d(x, b))
                        for x in ga for a in ga if a != x for b in gb]
                cells[(spk, pa, pb)].append(np.mean(errs))
            if modes == "across":
                for (ctx3, spk3, pc), gx in groups.items():
                    if ctx3 == ctx and pc == pa and spk3 != spk:
                        errs = [float(d(x, a) > d(x, b)) + 0.5 * float(d(x, a) == d(x, b))
                                for x in gx for a in ga for b in gb]
                        cells[(spk, pa, pb)].append(np.mean(errs))
    per_pair = defaultdict(list)
    for (spk, pa, pb), scores in cells.items():
        per_pair[(pa, pb)].append(np.mean(scores))
    return float(np.mean([np.mean(v) for v in per_pair.values()]))


def test_matches_brute_force_protocol() -> None:
    alignments, speakers, frame_phones = make_corpus(num_speakers=3, utts_per_speaker=2, phones_per_utt=14, seed=5)
    items = abx_items.build_items(alignments, speakers)
    rng = np.random.default_rng(2)
    feats = {u: np.eye(len(PHONES))[p] + 0.8 * rng.standard_normal((p.size, len(PHONES))) for u, p in frame_phones.items()}
    res = abx.compute_abx(items, feats.items(), FRAME_RATE, OFFSET, max_size_group=1000, max_x_across=1000)
    assert res.abx_within == pytest.approx(_brute_force(items, feats, "within"), abs=1e-6)
    assert res.abx_across == pytest.approx(_brute_force(items, feats, "across"), abs=1e-6)


def test_deterministic_for_seed_and_subsampling_changes_with_seed() -> None:
    alignments, speakers, frame_phones = make_corpus(num_speakers=2, utts_per_speaker=12, seed=4)
    items = abx_items.build_items(alignments, speakers)
    rng = np.random.default_rng(0)
    feats = {u: rng.standard_normal((p.size, 8)) for u, p in frame_phones.items()}
    runs = [abx.compute_abx(items, feats.items(), FRAME_RATE, OFFSET, max_size_group=2, seed=s) for s in (0, 0, 1)]
    assert runs[0] == runs[1]
    assert runs[0].abx_within != runs[2].abx_within


def test_bad_inputs() -> None:
    alignments, speakers, frame_phones = make_corpus(num_speakers=1, utts_per_speaker=2)
    items = abx_items.build_items(alignments, speakers)
    with pytest.raises(SpeechUnitsError, match="share no utterance"):
        abx.compute_abx(items, [("other", np.zeros((10, 4)))], FRAME_RATE, OFFSET)
    with pytest.raises(SpeechUnitsError, match="no items"):
        abx.compute_abx([], [], FRAME_RATE, OFFSET)
    with pytest.raises(SpeechUnitsError, match="distance"):
        abx.compute_abx(items, [], FRAME_RATE, OFFSET, distance="cosine")  # type: ignore[arg-type]
    with pytest.raises(SpeechUnitsError, match="features"):
        abx.compute_abx(items, [(u, p) for u, p in frame_phones.items()], FRAME_RATE, OFFSET)
    # One speaker only: no across score, reported as None; one utterance missing is counted.
    feats = {u: np.eye(4)[p] for u, p in frame_phones.items()}
    first = sorted(feats)[0]
    res = abx.compute_abx(items, [(first, feats[first])], FRAME_RATE, OFFSET)
    assert res.abx_across is None
    assert res.missing_utterances == [sorted(feats)[1]]
    assert res.num_items_missing_utterance == sum(it.utt_id != first for it in items)
    assert math.isfinite(res.abx_within)


def test_items_past_the_end_are_empty_and_counted() -> None:
    items = [abx_items.AbxItem("u", 5.0, 6.0, "a", "b", "c", "s")] * 2 + [abx_items.AbxItem("u", 0.0, 0.1, "a", "b", "c", "s")] * 2
    res = abx.compute_abx(items, [("u", np.ones((10, 3)))], FRAME_RATE, OFFSET)
    assert res.num_items_empty == 2 and res.num_items_used == 2
    assert res.abx_within is None  # a single phone per context: no triplet
