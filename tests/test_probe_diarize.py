"""The ``diarize`` probe (SUPERB's SD): RTTM -> frame targets, PIT-BCE, DER scoring, training end to end.

The mixtures are built here by hand from a synth corpus (two voices per recording, partly overlapping),
laid out as LibriMix data directories (``wavs/``, ``wav.scp`` with relative paths, ``rttm``); the
tests do not depend on ``speechunits synth mix``.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import load_alignments
from speechunits.measure.diarization import diarization_errors, turns_by_recording
from speechunits.probe.diarize import (SlotDecision, active_slots, activity_turns, diarization_scores,
                                       majority_filter, median_frames_for, pit_bce, speaker_activity, tune_decision)
from speechunits.probe.evaluate import corpus_labels, evaluate_probe, probe_input
from speechunits.probe.labels import find_label_files, load_task_labels
from speechunits.probe.model_dir import load_probe
from speechunits.probe.task import PIT, ProbeBatch, batch_loss
from speechunits.probe.unit_inputs import UnitInput
from speechunits.rttm import RttmRecord, read_rttm, speaker_turns, write_rttm
from speechunits.synth.testing import small_corpus
from speechunits.units.store import write_units
from speechunits.units.units import Units
from conftest import cli_error

PARTS = ("train", "dev", "test")


def _mixtures(root: Path, counts: tuple[int, ...] = (12, 3, 3)) -> Path:
    """``root/mix/{train,dev,test}``: two utterances of different synth voices per recording, the second
    starting at 60 % of the first; one ``SPEAKER`` turn per utterance, from its first to its last phone."""
    corpus = small_corpus(root / "src", minutes=0.6, speakers=3)
    speakers = dict(line.split("\t") for line in (corpus / "speakers.tsv").read_text().splitlines() if line)
    alignments = load_alignments(corpus / "phones.tsv")
    ids = sorted(speakers)
    rng = np.random.default_rng(0)
    number = 0
    for part, count in zip(PARTS, counts):
        data = root / "mix" / part
        (data / "wavs").mkdir(parents=True)
        scp, records = [], []
        for _ in range(count):
            first = ids[rng.integers(len(ids))]
            second = first
            while speakers[second] == speakers[first]:
                second = ids[rng.integers(len(ids))]
            a, rate = sf.read(corpus / "wavs" / f"{first}.wav", dtype="float32")
            b, _ = sf.read(corpus / "wavs" / f"{second}.wav", dtype="float32")
            offset = int(0.6 * len(a))
            mixed = np.zeros(max(len(a), offset + len(b)), dtype=np.float32)
            mixed[: len(a)] += a
            mixed[offset: offset + len(b)] += b
            mix_id = f"mix{number:02d}"
            number += 1
            sf.write(data / "wavs" / f"{mix_id}.wav", mixed / max(1.0, float(np.abs(mixed).max())), rate)
            turns = []
            for utt, shift in ((first, 0.0), (second, offset / rate)):
                speech = [s for s in alignments[utt] if s.label.strip() not in ("", "sil", "sp", "spn", "_")]
                turns.append((speakers[utt], speech[0].start + shift, speech[-1].end + shift))
            records += speaker_turns(mix_id, turns)
            scp.append(f"{mix_id} wavs/{mix_id}.wav\n")
        (data / "wav.scp").write_text("".join(scp))
        write_rttm(data / "rttm", records)
    return root / "mix"


def _ids(data: Path) -> list[str]:
    """The recordings of a data directory's ``wav.scp``."""
    return [line.split()[0] for line in (data / "wav.scp").read_text().splitlines()]


@pytest.fixture(scope="module")
def mixset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _mixtures(tmp_path_factory.mktemp("diarize"))


@pytest.fixture(scope="module")
def trained(mixset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear MFCC probe trained on the mixtures' own train/dev/test parts through the CLI."""
    out = tmp_path_factory.mktemp("probe") / "sd"
    assert main(["probe", "train", "diarize", str(mixset / "{train,dev,test}"), "--encoder", "mfcc", "-o", str(out),
                 "--lr", "1e-2", "--max-steps", "300", "--eval-every", "50", "--batch-frames", "2000",
                 "--device", "cpu", "--quiet"]) == 0
    return out


# -- the loss --------------------------------------------------------------------------------------

def _bce(x: np.ndarray, y: np.ndarray) -> float:
    p = 1.0 / (1.0 + np.exp(-x))
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())


def test_pit_loss_is_the_least_bce_over_slot_orders_per_recording():
    logits = torch.tensor([[[2.0, -1.0], [1.5, -2.0], [-0.5, 0.5]],
                           [[-1.0, 3.0], [-2.0, 1.0], [9.0, 9.0]]])  # recording 1's frame 2 is padding
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
                            [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    lengths = torch.tensor([3, 2])
    by_order = []
    for b, n in enumerate(lengths.tolist()):
        x, y = logits[b, :n].numpy(), targets[b, :n].numpy()
        by_order.append([_bce(x, y[:, list(order)]) for order in itertools.permutations(range(2))])
    # recording 0 fits the slots as given, recording 1 swapped: a per-batch minimum would be larger
    assert np.argmin(by_order[0]) == 0 and np.argmin(by_order[1]) == 1
    expected = sum(min(v) for v in by_order)
    assert expected < min(by_order[0][0] + by_order[1][0], by_order[0][1] + by_order[1][1]) - 1.0
    loss, correct = pit_bce(logits, targets, lengths)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(correct) == 10  # every valid decision right in the best order
    swapped, _ = pit_bce(logits, targets.flip(-1), lengths)
    assert float(swapped) == pytest.approx(float(loss), rel=1e-6)

    class Fixed(torch.nn.Module):  # batch_loss with a model that returns these logits
        def forward(self, x, lengths, durations=None):
            return logits

    total, count, metrics = batch_loss(Fixed(), ProbeBatch(torch.zeros(2, 1, 3, 1), lengths, targets=targets), PIT)
    assert float(total) == pytest.approx(expected, rel=1e-6) and count == 5 * 2 and metrics["acc"] == (10.0, 10.0)


def test_pit_loss_tries_every_order_of_three_slots():
    torch.manual_seed(0)
    logits = torch.randn(1, 6, 3)
    targets = (torch.rand(1, 6, 3) > 0.5).float()
    loss, _ = pit_bce(logits, targets, torch.tensor([6]))
    x, y = logits[0].numpy(), targets[0].numpy()
    assert float(loss) == pytest.approx(min(_bce(x, y[:, list(o)]) for o in itertools.permutations(range(3))),
                                        rel=1e-6)


# -- RTTM -> frame targets -> turns ----------------------------------------------------------------

def test_rttm_turns_become_frame_targets_by_frame_centres(tmp_path):
    # 4 frames per second, frame 0 centred at 0.125 s: centres 0.125, 0.375, 0.625, 0.875, 1.125, 1.375
    rttm = tmp_path / "ref.rttm"
    write_rttm(rttm, [RttmRecord("SPEAKER", "rec1", "1", 0.5, 0.7, name="bob"),  # 0.5-1.2, listed first
                      RttmRecord("SPEAKER", "rec1", "1", 0.125, 0.5, name="ann"),  # 0.125-0.625: starts first
                      RttmRecord("SPEAKER", "other", "1", 0.0, 1.0, name="cat")])
    labels = load_task_labels("diarize", ["train/rec1"], labels=rttm, frame_rate=4.0, frame_offset_s=0.125,
                              num_frames={"train/rec1": 6})
    activity = labels.labels["train/rec1"]  # matched by the id's ending
    assert activity.speakers == ("ann", "bob")  # ordered by first turn
    # a centre on a turn's start is in it, one on its end is not (start <= t < end)
    assert activity.active.T.tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0]]
    assert activity.active.dtype == np.float32 and list(labels.labels) == ["train/rec1"]
    # frames back to turns: frame i spans centre +- half a frame, clipped at 0
    assert activity_turns(activity.active, 4.0, 0.125, activity.speakers) == [("ann", 0.0, 0.5), ("bob", 0.5, 1.25)]
    overlap = speaker_activity([("a", 0.0, 1.0), ("b", 0.3, 0.6), ("a", 0.2, 0.4)], 10, 10.0, 0.05)
    assert overlap.active.sum(0).tolist() == [10, 3] and overlap.active[3:6].tolist() == [[1, 1]] * 3
    with pytest.raises(SpeechUnitsError, match="recording 'train/rec1' has 2 speakers"):
        load_task_labels("diarize", ["train/rec1"], labels=rttm, frame_rate=4.0, frame_offset_s=0.125,
                         num_frames={"train/rec1": 6}, speaker_slots=1)


def test_der_of_frame_activity_is_zero_for_the_reference_and_one_for_nobody():
    ref = speaker_activity([("a", 0.0, 2.0), ("b", 1.5, 3.0)], 300, 100.0, 0.005)
    right = ref.active[:, ::-1].astype(np.uint8)  # the slots' order does not matter
    assert diarization_scores([ref], [right])["der"] == pytest.approx(0.0, abs=1e-9)
    nobody = diarization_scores([ref], [np.zeros((300, 2), np.uint8)])
    assert nobody["der"] == pytest.approx(1.0) and nobody["missed"] == pytest.approx(1.0)


# -- the decision: threshold and median filter ----------------------------------------------------

@pytest.mark.parametrize("width", [1, 3, 5, 11])
def test_majority_filter_is_scipys_zero_padded_median_filter(width):
    from scipy.signal import medfilt

    rng = np.random.default_rng(width)
    active = (rng.random((200, 3)) < 0.45).astype(np.uint8)
    active[:7, 0] = 1  # runs at both ends meet the zero padding
    active[-4:, 1] = 1
    expected = medfilt(active.astype(float), (width, 1)).astype(np.uint8)
    assert np.array_equal(majority_filter(active, width), expected)
    assert majority_filter(np.zeros((0, 2), np.uint8), width).shape == (0, 2)


def test_median_frames_is_the_odd_count_nearest_the_duration():
    assert median_frames_for(0.11, 100.0) == 11  # s3prl's setting at 10-ms frames
    assert median_frames_for(0.11, 50.0) == 5
    assert median_frames_for(0.0, 100.0) == 1 and median_frames_for(0.004, 100.0) == 1


def test_a_decision_thresholds_the_sigmoid_then_filters():
    logits = np.log(np.array([[0.35], [0.45], [0.55], [0.65], [0.45], [0.65], [0.65]]) /
                    (1 - np.array([[0.35], [0.45], [0.55], [0.65], [0.45], [0.65], [0.65]])))
    assert active_slots(logits)[:, 0].tolist() == [0, 0, 1, 1, 0, 1, 1]  # default: sigmoid above 0.5
    assert active_slots(logits, SlotDecision(0.4))[:, 0].tolist() == [0, 1, 1, 1, 1, 1, 1]
    # thresholded at 0.5, then the median of 3: the lone silent frame between talk is filled in
    assert active_slots(logits, SlotDecision(0.5, 3))[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 1]
    for bad, match in (({"threshold": 1.0, "median_frames": 1}, "probability"),
                       ({"threshold": 0.5, "median_frames": 4}, "odd number"),
                       ({"threshold": 0.5}, "needs threshold and median_frames")):
        with pytest.raises(SpeechUnitsError, match=match):
            SlotDecision.from_record(bad)
    assert SlotDecision.from_record(None) == SlotDecision(0.5, 1)


def test_tune_decision_picks_the_grids_least_der():
    ref = speaker_activity([("a", 0.0, 1.0), ("b", 0.8, 2.0)], 200, 100.0, 0.005)
    # slot 0 is speaker a at sigmoid 0.65 with one-frame dropouts every 10 frames; slot 1 is b at 0.35
    logits = np.full((200, 2), -4.0, np.float32)
    logits[ref.active[:, 0] > 0, 0] = np.log(0.65 / 0.35)
    logits[ref.active[:, 1] > 0, 1] = np.log(0.35 / 0.65)
    logits[5:100:10, 0] = -4.0
    decision, table = tune_decision([ref], [logits], 100.0)
    assert len(table) == 10 and set(table) >= {"t0.3-m1", "t0.7-m11"}
    best = min(v["der"] for v in table.values())
    assert table[decision.key]["der"] == best
    # only a threshold below 0.35 finds speaker b, and the filter fills the dropouts (collar 0.25 s
    # forgives neither a 10-ms gap inside a turn)
    assert decision == SlotDecision(0.3, 11) and best < table["t0.3-m1"]["der"] < table["t0.5-m1"]["der"]
    with pytest.raises(SpeechUnitsError, match="at least one recording"):
        tune_decision([], [], 100.0)


# -- training end to end ---------------------------------------------------------------------------

def test_find_label_files_finds_a_data_directorys_rttm(mixset):
    assert find_label_files(mixset / "dev")["rttm"] == mixset / "dev" / "rttm"
    assert "rttm" in find_label_files(str(mixset / "{train,dev,test}"))


def test_diarize_probe_learns_the_mixtures_and_reloads_exactly(mixset, trained, tmp_path, capsys):
    meta = json.loads((trained / "probe.json").read_text())
    assert meta["task"] == "diarize" and meta["labels"]["speaker_slots"] == 2 and meta["model"]["num_classes"] == 2
    assert meta["selection"]["metric"] == "der" and meta["selection"]["lower_is_better"] is True
    assert meta["split"]["train"] == 12 and meta["split"]["dev"] == 3 and meta["split"]["test"] == 3  # own parts
    # the threshold and median filter were chosen on dev, over SUPERB's grid; the probe keeps them
    grid = meta["decision_grid"]
    assert len(grid["dev_der"]) == 10 and grid["dev_der"][grid["chosen"]] == min(grid["dev_der"].values())
    assert SlotDecision.from_record(meta["labels"]["decision"]).key == grid["chosen"]
    assert meta["dev"]["der"]["mean"] == pytest.approx(grid["dev_der"][grid["chosen"]])
    probe = load_probe(trained)
    assert probe.coder.decision == SlotDecision.from_record(meta["labels"]["decision"])
    test = mixset / "test"
    made = probe_input(probe.identity, test, device="cpu", quiet=True)
    samples = made.load(_ids(test)).samples
    labels = corpus_labels("diarize", test, list(samples), inputs=made, samples=samples).labels
    refs = [labels[i] for i in samples]
    nobody = diarization_scores(refs, [np.zeros((r.active.shape[0], 2), np.uint8) for r in refs])["der"]
    everyone = diarization_scores(refs, [np.ones((r.active.shape[0], 2), np.uint8) for r in refs])["der"]
    assert nobody == pytest.approx(1.0)
    hyp_rttm = tmp_path / "hyp.rttm"
    assert main(["probe", "eval", str(trained), str(test), "--device", "cpu", "--json", "--quiet",
                 "--rttm-out", str(hyp_rttm)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "diarize" and result["utterances"] == 3
    assert result["der"] < 0.5 and result["der"] < everyone - 0.2, (result, everyone)
    assert result["der"] == pytest.approx(result["missed"] + result["false_alarm"] + result["confusion"])
    assert 0 < result["der_collar0"] < 1  # the collar removes reference speech too: either may be lower
    # the RTTM written holds the turns scored (to its millisecond rounding)
    hyp = turns_by_recording(read_rttm(hyp_rttm))
    assert sorted(hyp) == sorted(samples) and {t[0] for turns in hyp.values() for t in turns} <= {"slot0", "slot1"}
    errors = [diarization_errors(activity_turns(labels[i].active, 100.0, labels[i].frame_offset_s, labels[i].speakers),
                                 hyp[i], collar=0.25) for i in samples]
    assert sum(errors[1:], errors[0]).der == pytest.approx(result["der"], abs=1e-3)
    # the reloaded probe scores the test part exactly as the trained model did
    assert result["der"] == pytest.approx(meta["test"]["der"]["mean"], abs=1e-12)
    again = load_probe(trained).logits(samples)
    for utt, logits in probe.logits(samples).items():
        assert np.array_equal(logits, again[utt]) and logits.shape == (samples[utt].num_frames, 2)


def test_eval_decision_override_reproduces_the_dev_grid(mixset, trained, capsys, caplog):
    """``probe eval --threshold/--median-frames`` scores the dev part as the training-time grid did for
    that setting (computed there from the logits by tune_decision, here through the CLI)."""
    grid = json.loads((trained / "probe.json").read_text())["decision_grid"]
    others = [key for key in grid["dev_der"] if key != grid["chosen"]]
    for key in (others[0], others[-1]):
        threshold, width = key[1:].split("-m")
        assert main(["probe", "eval", str(trained), str(mixset / "dev"), "--device", "cpu", "--json", "--quiet",
                     "--threshold", threshold, "--median-frames", width]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["decision"] == {"threshold": float(threshold), "median_frames": int(width)}
        assert result["der"] == pytest.approx(grid["dev_der"][key], abs=1e-12)
    # one part given: the other stays the probe's choice
    chosen = SlotDecision.from_record(json.loads((trained / "probe.json").read_text())["labels"]["decision"])
    assert main(["probe", "eval", str(trained), str(mixset / "dev"), "--device", "cpu", "--json", "--quiet",
                 "--threshold", "0.45"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == {"threshold": 0.45,
                                                               "median_frames": chosen.median_frames}
    dev = str(mixset / "dev")
    assert "odd number of frames" in cli_error(["probe", "eval", str(trained), dev, "--median-frames", "4",
                                                "--device", "cpu"], caplog)
    assert "probability in (0, 1)" in cli_error(["probe", "eval", str(trained), dev, "--threshold", "1.5",
                                                 "--device", "cpu"], caplog)


# -- refusals --------------------------------------------------------------------------------------

def test_diarize_refuses_what_it_cannot_score(mixset, trained, tmp_path, caplog):
    corpus = str(mixset / "{train,dev,test}")
    args = ["--encoder", "mfcc", "--max-steps", "1", "--device", "cpu", "--quiet"]
    bare = tmp_path / "bare"  # a data directory without an rttm
    bare.mkdir()
    (bare / "wav.scp").write_text((mixset / "dev" / "wav.scp").read_text().replace("wavs/", f"{mixset}/dev/wavs/"))
    assert "needs speaker turns" in cli_error(["probe", "train", "diarize", str(bare), "-o", str(tmp_path / "a"),
                                               *args], caplog)
    message = cli_error(["probe", "train", "diarize", corpus, "-o", str(tmp_path / "b"),
                         "--speakers-per-recording", "1", *args], caplog)
    assert "recording 'mix00' has 2 speakers" in message and "1 speaker slots" in message
    assert "--head xvector pools utterances" in cli_error(["probe", "train", "diarize", corpus, "-o",
                                                            str(tmp_path / "c"), "--head", "xvector", *args], caplog)
    assert "cannot stack frames" in cli_error(["probe", "train", "diarize", corpus, "-o", str(tmp_path / "d"),
                                               "--stack", "2", *args], caplog)
    assert "applies to task 'diarize'" in cli_error(["probe", "train", "frames", corpus, "-o", str(tmp_path / "e"),
                                                     "--speakers-per-recording", "2", *args], caplog)
    assert "normalises a verification probe" in cli_error(["probe", "eval", str(trained), str(mixset / "dev"),
                                                           "--score-norm", "s-norm", "--device", "cpu"], caplog)
    # evaluation refuses a recording with more speakers than the probe has slots
    three = tmp_path / "three.rttm"
    write_rttm(three, read_rttm(mixset / "dev" / "rttm") + [RttmRecord("SPEAKER", "mix12", "1", 0.1, 0.5, name="zed")])
    with pytest.raises(SpeechUnitsError, match="recording 'mix12' has 3 speakers"):
        evaluate_probe(trained, mixset / "dev", labels=three, device="cpu", quiet=True)
    # deduplicated units have no frame timing
    ids = _ids(mixset / "dev")
    meta = {"k": 6, "frame_rate": 50.0, "sha256": "x", "encoder": "toy", "layer": 3, "receptive_field": 400,
            "sample_rate": 16000}
    store = write_units(tmp_path / "units", [(i, Units(np.array([1, 1, 2, 3]), 50.0, 6)) for i in ids], meta)
    units = UnitInput(store.path, dedup=True)
    with pytest.raises(SpeechUnitsError, match="deduplicated units have no frame timing"):
        corpus_labels("diarize", mixset / "dev", ids, inputs=units, samples=units.load(ids).samples)
