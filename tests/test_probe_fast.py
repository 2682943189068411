"""The judge's speed options: padded BiLSTM, frame stacking, standardisation, budget-capped warmup (fast, toy data)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.probe.heads import BiLSTMHead, reverse_padded, stack_frames
from speechunits.probe.model import ProbeModel
from speechunits.probe.feature_inputs import ArrayInput
from speechunits.probe.inputs import Sample, feature_statistics
from speechunits.probe.unit_inputs import UnitInput
from speechunits.probe.labels import LabelSet
from speechunits.probe.model_dir import load_probe
from speechunits.probe.splits import Split
from speechunits.probe.task import ctc_min_frames, ctc_too_short, predict_logits
from speechunits.probe.train import train_probe
from speechunits.probe.vocab import class_vocabulary
from speechunits.training.loop import step_records


# -- the padded BiLSTM is the packed one -----------------------------------------------------------

def test_reverse_padded_reverses_each_sequence_within_its_length():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_padded(x, torch.tensor([5, 3]))[..., 0]
    assert out.tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]


def test_bilstm_head_equals_a_packed_bidirectional_lstm_outputs_and_gradients():
    torch.manual_seed(0)
    head = BiLSTMHead(4, 6, hidden=5, num_layers=2)
    x = torch.randn(3, 9, 4)
    lengths = torch.tensor([9, 2, 6])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).unsqueeze(-1)
    ours = head.encode(x, lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = head.lstm(packed)  # torch's own packed implementation: the reference
    reference, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=9)
    torch.testing.assert_close(ours * mask, reference * mask, atol=1e-6, rtol=1e-5)
    weights = [head.lstm.weight_ih_l0, head.lstm.weight_hh_l1_reverse]
    ours_grad = torch.autograd.grad((ours * mask).square().sum(), weights)
    reference_grad = torch.autograd.grad((reference * mask).square().sum(), weights)
    for a, b in zip(ours_grad, reference_grad):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert [k for k in head.state_dict() if k.startswith("lstm.")][:2] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0"]


# -- frame stacking --------------------------------------------------------------------------------

def test_stack_frames_concatenates_neighbours_and_zeroes_what_lies_past_the_length():
    x = torch.arange(2 * 7 * 2, dtype=torch.float32).reshape(2, 7, 2) + 1.0
    out, lengths = stack_frames(x, torch.tensor([7, 4]), 3)
    assert out.shape == (2, 3, 6) and lengths.tolist() == [3, 2]
    assert out[0, 0].tolist() == x[0, 0:3].reshape(-1).tolist()
    assert out[0, 2].tolist() == x[0, 6].tolist() + [0.0] * 4  # the last group is completed with zeros
    assert out[1, 1].tolist() == x[1, 3].tolist() + [0.0] * 4  # frames 4-5 of a 4-frame utterance are padding
    same, unchanged = stack_frames(x, torch.tensor([7, 4]), 1)
    assert same is x and unchanged.tolist() == [7, 4]


def test_a_stacking_model_gives_ceil_t_over_n_frames_whatever_the_batch():
    torch.manual_seed(0)
    spec = {"input": {"kind": "features", "num_layers": 1, "dim": 3}, "interface": "single", "head": "bilstm",
            "hidden": 4, "lstm_layers": 1, "level": "frame", "num_classes": 5, "stack": 3}
    model = ProbeModel(spec)
    rng = np.random.default_rng(0)
    samples = {f"u{i}": Sample(features=torch.from_numpy(rng.standard_normal((1, 4 + 3 * i, 3)).astype(np.float32)))
               for i in range(5)}
    one = predict_logits(model, samples, list(samples), batch_frames=1)
    many = predict_logits(model, samples, list(samples), batch_frames=10_000)
    assert [one[k].shape[0] for k in samples] == [2, 3, 4, 5, 6]  # ceil((4 + 3 i) / 3)
    assert all(np.allclose(one[k], many[k], atol=1e-5) for k in samples)


def test_ctc_minimum_frames_count_a_blank_between_repeated_labels():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8
    assert ctc_min_frames([]) == 0
    assert ctc_too_short({"a": 3, "b": 3, "c": 7}, {"a": [1, 2, 3], "b": [1, 1, 2], "c": [4] * 5}) == ["b", "c"]


# -- a toy CTC task --------------------------------------------------------------------------------

PHONES = ["a", "b", "c", "d"]


def _spelled_frames(n_utts: int, seed: int = 0, frames_per_phone: tuple[int, int] = (6, 10)):
    """Frames that spell their phones: phone p has mean 3 e_p in 8 dims, noise 0.3, then every
    dimension scaled by 40 and shifted by -25 (MFCC-like scales that an unstandardised LSTM saturates on)."""
    rng = np.random.default_rng(seed)
    scale, shift = 40.0, -25.0
    features, labels = {}, {}
    for i in range(n_utts):
        seq = [int(rng.integers(0, 4))]
        while len(seq) < int(rng.integers(3, 7)):
            seq.append(int((seq[-1] + rng.integers(1, 4)) % 4))
        durations = rng.integers(*frames_per_phone, size=len(seq))
        x = 0.3 * rng.standard_normal((int(durations.sum()), 8))
        x[np.arange(len(x)), np.repeat(seq, durations)] += 3.0
        features[f"u{i:02d}"] = (scale * x + shift).astype(np.float32)
        labels[f"u{i:02d}"] = [PHONES[p] for p in seq]
    return features, labels


def _toy_input(features):
    return ArrayInput(features, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)


def test_the_fast_configuration_learns_a_toy_ctc_task_and_round_trips_through_probe_json(tmp_path):
    features, labels = _spelled_frames(40)
    inputs = _toy_input(features)
    ids = sorted(features)
    split = Split(ids[:28], ids[28:34], ids[34:])
    result = train_probe("phones", inputs, LabelSet("phones", labels), split, tmp_path / "p", interface="single",
                         head="bilstm", hidden=16, lstm_layers=1, stack=3, standardize=True, lrs=(1e-2,),
                         max_steps=120, eval_every=40, batch_frames=300, quiet=True, device="cpu")
    assert result.test["per"]["mean"] < 0.2
    meta = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert meta["model"]["stack"] == 3 and meta["model"]["standardize"] is True
    assert meta["model"]["lstm_layers"] == 1
    assert meta["training"]["batch_frames"] == 300 and meta["training"]["warmup_fraction"] == 0.1
    assert meta["ctc_too_short"] == 0
    probe = load_probe(tmp_path / "p")
    x = np.concatenate([features[i] for i in split.train]).astype(np.float64)  # the training part's statistics
    np.testing.assert_allclose(probe.model.input_mean[0].numpy(), x.mean(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(probe.model.input_std[0].numpy(), x.std(0), rtol=1e-4)
    samples = inputs.load(split.test).samples
    reloaded = probe.logits(samples)
    assert all(reloaded[i].shape[0] == -(-samples[i].num_frames // 3) for i in split.test)


def test_utterances_with_fewer_stacked_frames_than_ctc_needs_are_reported(tmp_path, caplog):
    features, labels = _spelled_frames(12, seed=3, frames_per_phone=(3, 5))
    features["u00"] = features["u00"][:5]  # 5 frames -> 2 stacked frames for 3..6 phones
    inputs = _toy_input(features)
    ids = sorted(features)
    with caplog.at_level(logging.WARNING, logger="speechunits.probe.train"):
        train_probe("phones", inputs, LabelSet("phones", labels), Split(ids[:8], ids[8:10], ids[10:]),
                    tmp_path / "p", interface="single", head="linear", stack=3, lrs=(1e-2,), max_steps=2,
                    eval_every=1, batch_frames=200, quiet=True, device="cpu")
    meta = json.loads((tmp_path / "p" / "probe.json").read_text())
    expected = [i for i in ids[:8] if -(-len(features[i]) // 3) < ctc_min_frames(labels[i])]
    assert "u00" in expected and meta["ctc_too_short"] == len(expected)
    assert any("stacked (x3)" in r.getMessage() and "u00" in r.getMessage() for r in caplog.records)


def test_stack_and_standardize_are_refused_where_they_make_no_sense(tmp_path):
    features, labels = _spelled_frames(6)
    inputs = _toy_input(features)
    ids = sorted(features)
    frame_labels = LabelSet("frames", {i: np.zeros(len(features[i]), dtype=np.int64) for i in ids},
                            vocabulary=class_vocabulary(["x"]))
    with pytest.raises(SpeechUnitsError, match="cannot stack"):
        train_probe("frames", inputs, frame_labels, Split(ids[:4], ids[4:5], ids[5:]), tmp_path / "f", stack=2,
                    max_steps=1, quiet=True, device="cpu")
    with pytest.raises(SpeechUnitsError, match="--stack"):
        train_probe("phones", inputs, LabelSet("phones", labels), Split(ids[:4], ids[4:5], ids[5:]), tmp_path / "g",
                    stack=0, max_steps=1, quiet=True, device="cpu")
    units_spec = {"input": {"kind": "units", "vocab_sizes": [4], "durations": False}, "head": "linear",
                  "level": "frame", "num_classes": 3, "standardize": True}
    with pytest.raises(SpeechUnitsError, match="--standardize"):
        ProbeModel(units_spec)
    assert UnitInput  # units read through UnitInput never carry feature statistics:
    with pytest.raises(SpeechUnitsError, match="no feature statistics"):
        feature_statistics({"u": Sample(units=torch.zeros(3, 1, dtype=torch.int64))}, ["u"])


# -- warmup under a time budget --------------------------------------------------------------------

def _probe_on_fake_clock(tmp_path, monkeypatch, **options):
    """A 12-step phones probe whose steps take 1 s of a 60 s budget (a fake clock), with a 1000-step
    warmup: the result and the learning rate of every step."""
    from speechunits.training.loop import Trainer

    calls = []

    def fake_fraction(self, started):  # before step s, s steps of 1 s are spent of the 60 s budget
        calls.append(1)
        return (len(calls) - 1) / 60.0

    monkeypatch.setattr(Trainer, "_shared_fraction", fake_fraction)
    features, labels = _spelled_frames(8, seed=1)
    ids = sorted(features)
    result = train_probe("phones", _toy_input(features), LabelSet("phones", labels), Split(ids[:6], ids[6:7], ids[7:]),
                         tmp_path / "p", interface="single", lrs=(1e-2,), max_steps=12, max_minutes=1.0,
                         warmup_steps=1000, eval_every=100, batch_frames=200, quiet=True, device="cpu", **options)
    lrs = [record["lr"] for record in step_records(tmp_path / "p" / "runs" / "lr0.01-seed0" / "training" / "log.jsonl")]
    return result, lrs


def test_a_slow_run_cannot_spend_its_budget_in_warmup(tmp_path, monkeypatch):
    """The fake clock: a 1000-step warmup ends after 6 steps (10 % of the budget)."""
    result, lrs = _probe_on_fake_clock(tmp_path, monkeypatch)
    assert result.runs[0].warmup_steps == 6
    assert lrs[5] == pytest.approx(1e-2 * 6 / 1000)  # step 6: still warming up
    assert lrs[6] > 0.5e-2  # step 7: the full rate, decaying over the rest of the budget


def test_step_schedule_keeps_warmup_and_decay_on_the_steps(tmp_path, monkeypatch):
    """The same clock with ``step_schedule``: the warmup is not cut, so every one of the 12 steps gets
    lr * (s + 1) / 1000, and the probe records the setting."""
    result, lrs = _probe_on_fake_clock(tmp_path, monkeypatch, step_schedule=True)
    assert result.runs[0].warmup_steps == 1000
    assert lrs == pytest.approx([1e-2 * (s + 1) / 1000 for s in range(12)])
    assert result.meta["training"]["step_schedule"] is True
