"""evaluate: centre-time labelling, dedup expansion, counts, bad input, the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_error
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment, write_segments_tsv
from speechunits.measure.evaluate import evaluate_store, evaluate_units
from speechunits.units.units import Units

FR = 10.0  # frames at 0.05, 0.15, 0.25, ... with offset 0.05
OFF = 0.05
CODEBOOK_META = {"k": 4, "frame_rate": FR, "frame_offset_s": OFF, "sha256": "0" * 64, "layer": 0, "encoder": "test"}


def test_centre_time_labelling_by_hand() -> None:
    # Frames centred at 0.05 .. 0.45; 'a' covers 0.05, 0.15; 'b' covers 0.25; 0.35 and 0.45 lie past the end.
    alignments = {"u": [Segment(0.0, 0.2, "a"), Segment(0.2, 0.3, "b")]}
    units = Units(np.array([0, 0, 1, 1, 1]), FR, 4)
    rep = evaluate_units([("u", units)], alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    assert (rep.frames, rep.labelled_frames, rep.unlabelled_frames, rep.frames_past_alignment_end) == (5, 3, 2, 2)
    assert rep.pnmi == pytest.approx(1.0) and rep.phone_purity == 1.0 and rep.cluster_purity == 1.0
    # Shift the offset so frame centres move 0.1 s later: 0.15 ('a'), 0.25 ('b') then past the end.
    rep2 = evaluate_units([("u", units)], alignments, frame_rate=FR, frame_offset_s=0.15, vocab_size=4)
    assert rep2.labelled_frames == 2


def test_confusion_by_hand_and_unit_stream_stats() -> None:
    # Labels a a b b over units 0 0 0 1 -> counts [[2, 0], [1, 1]].
    alignments = {"u": [Segment(0.0, 0.2, "a"), Segment(0.2, 0.4, "b")]}
    units = Units(np.array([0, 0, 0, 1]), FR, 4)
    rep = evaluate_units([("u", units, 0.5)], alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    mi = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25
    assert rep.pnmi == pytest.approx(mi)
    assert rep.phone_purity == pytest.approx(0.75) and rep.cluster_purity == pytest.approx(0.75)
    # Two runs (0 0 0 | 1) in 0.5 s of audio, K = 4.
    assert rep.tokens_per_s == pytest.approx(4.0)
    assert rep.bitrate == pytest.approx(4.0 * 2.0)
    assert rep.bitrate_entropy == pytest.approx(4.0 * 1.0)
    assert rep.frame_bitrate == pytest.approx(FR * 2.0)
    assert rep.mean_segment_frames == pytest.approx(2.0) and rep.mean_segment_s == pytest.approx(0.2)
    assert (rep.used_units, rep.dead_units) == (2, 2)
    assert rep.unit_perplexity == pytest.approx(2 ** (-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))))


def test_dedup_units_are_expanded() -> None:
    alignments = {"u": [Segment(0.0, 0.3, "a"), Segment(0.3, 0.6, "b")]}
    frames = Units(np.array([2, 2, 3, 1, 1, 1]), FR, 4)
    plain = evaluate_units([("u", frames)], alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    dedup = evaluate_units([("u", frames.dedup())], alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    assert plain == dedup
    assert plain.frames == 6


def test_missing_alignments_are_counted_and_skipped() -> None:
    alignments = {"u1": [Segment(0.0, 0.2, "a"), Segment(0.2, 0.4, "b")], "only_aligned": [Segment(0, 1, "a")]}
    rows = [("u1", Units(np.array([0, 0, 1, 1]), FR, 4)), ("u2", Units(np.array([3, 3, 3]), FR, 4))]
    rep = evaluate_units(rows, alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    assert rep.utterances == 1 and rep.utterances_missing_alignments == 1 and rep.missing_alignment_ids == ["u2"]
    assert rep.alignments_without_units == 1
    assert rep.frames == 4  # u2's frames count nowhere
    assert rep.dead_units == 2


def test_bad_inputs() -> None:
    rows = [("u", Units(np.array([0, 1]), FR, 4))]
    with pytest.raises(SpeechUnitsError, match="no utterance in common"):
        evaluate_units(rows, {"other": [Segment(0, 1, "a")]}, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    with pytest.raises(SpeechUnitsError, match="two different phones"):
        evaluate_units(rows, {"u": [Segment(0, 1, "a")]}, frame_rate=FR, frame_offset_s=OFF, vocab_size=4)
    with pytest.raises(SpeechUnitsError, match="no frame centre"):
        evaluate_units(rows, {"u": [Segment(5, 6, "a"), Segment(6, 7, "b")]}, frame_rate=FR, frame_offset_s=OFF,
                       vocab_size=4)
    with pytest.raises(SpeechUnitsError, match="frame rate"):
        evaluate_units(rows, {"u": []}, frame_rate=0.0, frame_offset_s=OFF, vocab_size=4)


def test_random_units_score_below_copying_units() -> None:
    rng = np.random.default_rng(0)
    alignments, good, bad = {}, [], []
    for u in range(20):
        bounds = np.cumsum(rng.integers(1, 6, size=30)) / FR
        labels = rng.integers(0, 5, size=30)
        alignments[f"u{u}"] = [Segment(s, e, "p%d" % lab) for s, e, lab in zip(np.r_[0, bounds[:-1]], bounds, labels)]
        n = int(bounds[-1] * FR)
        phone_of_frame = labels[np.searchsorted(bounds, OFF + np.arange(n) / FR, side="right")]
        good.append((f"u{u}", Units(phone_of_frame, FR, 5)))
        bad.append((f"u{u}", Units(rng.integers(0, 5, size=n), FR, 5)))
    hi = evaluate_units(good, alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=5)
    lo = evaluate_units(bad, alignments, frame_rate=FR, frame_offset_s=OFF, vocab_size=5)
    assert hi.pnmi == pytest.approx(1.0) and lo.pnmi < 0.05


def _store_and_alignments(tmp_path: Path, dedup: bool) -> tuple[Path, Path]:
    from speechunits.units.store import write_units

    alignments = {"u1": [Segment(0.0, 0.2, "a"), Segment(0.2, 0.5, "b")],
                  "u2": [Segment(0.0, 0.3, "b"), Segment(0.3, 0.5, "c")]}
    ali = tmp_path / "phones.tsv"
    write_segments_tsv(ali, alignments)
    rows = [("u1", Units(np.array([0, 0, 1, 1, 1]), FR, 4)), ("u2", Units(np.array([1, 1, 1, 2, 2]), FR, 4)),
            ("u3", Units(np.array([3]), FR, 4))]
    if dedup:
        rows = [(u, x.dedup()) for u, x in rows]
    store = tmp_path / ("store_dedup" if dedup else "store")
    write_units(store, rows, CODEBOOK_META)
    return store, ali


@pytest.mark.parametrize("dedup", [False, True])
def test_evaluate_store_and_cli_json(tmp_path: Path, dedup: bool, capsys: pytest.CaptureFixture[str]) -> None:
    from speechunits.cli.main import main
    from speechunits.measure.alignments import load_alignments

    store, ali = _store_and_alignments(tmp_path, dedup)
    rep = evaluate_store(store, load_alignments(ali))
    assert rep.pnmi == pytest.approx(1.0) and rep.utterances == 2 and rep.utterances_missing_alignments == 1
    assert rep.frame_rate == FR and rep.frame_offset_s == OFF
    assert main(["evaluate", str(store), "--alignments", str(ali), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("pnmi", "phone_purity", "cluster_purity", "bitrate", "utterances_missing_alignments", "dead_units"):
        assert key in out
    assert out["pnmi"] == pytest.approx(1.0)
    assert main(["evaluate", str(store), "--alignments", str(ali)]) == 0
    assert "PNMI" in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, ali = _store_and_alignments(tmp_path, False)
    other = tmp_path / "other.tsv"
    other.write_text("zz\t0\t1\ta\nzz\t1\t2\tb\n")
    assert "no utterance in common" in cli_error(["evaluate", str(store), "--alignments", str(other)], caplog)
    assert "missing.tsv: alignments not found" in cli_error(["evaluate", str(store), "--alignments",
                                                             str(tmp_path / "missing.tsv")], caplog)
    overlapping = tmp_path / "overlap.tsv"
    overlapping.write_text("u1\t0\t0.3\ta\nu1\t0.2\t0.5\tb\n")
    assert "overlapping segments" in cli_error(["evaluate", str(store), "--alignments", str(overlapping)], caplog)


def test_labelling_agrees_with_alignments_frame_label_ids() -> None:
    from speechunits.measure.alignments import frame_label_ids
    from speechunits.measure.evaluate import _label_frames

    rng = np.random.default_rng(0)
    for trial in range(20):
        # Boundaries on the 0.1 s grid put frame centres exactly on segment edges; gaps included.
        edges = np.sort(rng.choice(np.arange(0, 30), size=12, replace=False)) / 10
        segs = [Segment(float(a), float(b), "p%d" % rng.integers(0, 4)) for a, b in zip(edges[0::2], edges[1::2])]
        vocab_a: dict[str, int] = {}
        vocab_b: dict[str, int] = {}
        ours, beyond = _label_frames(segs, 40, FR, 0.05 * (trial % 3), vocab_a)
        ref = frame_label_ids(segs, 40, FR, 0.05 * (trial % 3), vocab_b)
        assert vocab_a == vocab_b
        np.testing.assert_array_equal(ours, ref)
        centres = 0.05 * (trial % 3) + np.arange(40) / FR
        assert beyond == int((centres >= segs[-1].end).sum())
