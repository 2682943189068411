"""``--crop-seconds``: frame-level probes train on random crops whose targets stay aligned with them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.probe.feature_inputs import ArrayInput
from speechunits.probe.inputs import Sample
from speechunits.probe.labels import LabelSet
from speechunits.probe.model_dir import load_probe
from speechunits.probe.splits import Split
from speechunits.probe.task import ProbeTask, crop_sample, predict_logits
from speechunits.probe.vocab import class_vocabulary
from speechunits.probe.train import train_probe


def _indexed(lengths: list[int], mask_rows_per_frame: int | None = None) -> tuple[dict, dict]:
    """Samples whose feature ``[0, t]`` is ``(t, utterance)``, and targets that say which frame they belong to:
    frame targets ``t`` (``mask_rows_per_frame`` None) or mask rows ``[j, 0, :2] = (j, utterance)``."""
    samples, targets = {}, {}
    for u, n in enumerate(lengths):
        x = torch.zeros(1, n, 2)
        x[0, :, 0] = torch.arange(n, dtype=torch.float32)
        x[0, :, 1] = u
        samples[f"u{u}"] = Sample(features=x)
        if mask_rows_per_frame is None:
            targets[f"u{u}"] = np.arange(n, dtype=np.int64) % 5
        else:
            rows = n * mask_rows_per_frame + 1  # an STFT has a frame more than its input frames x r
            y = np.zeros((rows, 3, 4), dtype=np.float32)
            y[:, 0, 0] = np.arange(rows)
            y[:, 0, 1] = u
            targets[f"u{u}"] = y
    return samples, targets


def test_mask_crops_cut_the_stft_targets_at_r_rows_per_input_frame():
    samples, targets = _indexed([30, 45, 80, 120, 200], mask_rows_per_frame=2)
    task = ProbeTask("separate", samples, targets, sorted(samples), frame_rate=50.0, batch_frames=100,
                     seed=3, crop_frames=20)
    offsets = set()
    for index in range(12):
        batch = task.batch(index)
        frames = batch.x.shape[2]
        assert frames <= 20 and (batch.lengths == frames).all()
        for row in range(batch.x.shape[0]):
            first = int(batch.x[row, 0, 0, 0])
            utt = batch.x[row, 0, 0, 1]
            offsets.add(first)
            assert batch.x[row, 0, :, 0].tolist() == list(range(first, first + frames))  # contiguous
            assert int(batch.target_lengths[row]) == 2 * frames
            assert batch.targets[row, :, 0, 0].tolist() == list(range(2 * first, 2 * first + 2 * frames))
            assert (batch.targets[row, :, 0, 1] == utt).all()  # the crop's own utterance
        assert len(batch.x) * frames <= 100 or len(batch.x) == 1
    assert len(offsets) > 3  # random offsets, not always the start
    again = ProbeTask("separate", samples, targets, sorted(samples), frame_rate=50.0, batch_frames=100,
                      seed=3, crop_frames=20)
    for index in (0, 7, 11):  # a pure function of (seed, index): what exact resume needs
        assert torch.equal(task.batch(index).x, again.batch(index).x)
        assert torch.equal(task.batch(index).targets, again.batch(index).targets)


def test_frame_crops_cut_the_frame_labels_alike_and_a_bucket_is_cut_to_its_shortest():
    samples, targets = _indexed([7, 9, 60, 61])
    # buckets of similar lengths: the 7 and 9 frames together (cut to 7), each long one alone (cut to 25)
    task = ProbeTask("frames", samples, targets, sorted(samples), frame_rate=100.0, batch_frames=20,
                     seed=0, crop_frames=25)
    seen = {}
    for index in range(8):
        batch = task.batch(index)
        for row in range(batch.x.shape[0]):
            first, utt = int(batch.x[row, 0, 0, 0]), int(batch.x[row, 0, 0, 1])
            frames = int(batch.lengths[row])
            assert batch.targets[row, :frames].tolist() == [t % 5 for t in range(first, first + frames)]
            seen[utt] = max(seen.get(utt, 0), frames)
    assert seen == {0: 7, 1: 7, 2: 25, 3: 25}


def test_crops_are_refused_where_frames_do_not_line_up():
    samples, targets = _indexed([30, 40])
    with pytest.raises(SpeechUnitsError, match="frame-level"):
        ProbeTask("phones", samples, {k: [1, 2] for k in samples}, sorted(samples), frame_rate=100.0,
                  crop_frames=10)
    with pytest.raises(SpeechUnitsError, match="frame-aligned"):
        crop_sample(Sample(units=torch.zeros(5, 1, dtype=torch.int64), durations=torch.ones(5, dtype=torch.int64)),
                    0, 3)


def _frame_corpus(n_utts: int = 24, seed: int = 0):
    """Long utterances of a linearly separable frame task: the label is the argmax of 4 of 8 dims."""
    rng = np.random.default_rng(seed)
    features, labels = {}, {}
    for i in range(n_utts):
        n = int(rng.integers(150, 400))
        y = np.repeat(rng.integers(0, 4, size=n // 10 + 1), 10)[:n]
        x = 0.3 * rng.standard_normal((n, 8)).astype(np.float32)
        x[np.arange(n), y] += 1.5
        features[f"u{i:02d}"], labels[f"u{i:02d}"] = x, y.astype(np.int64)
    ids = sorted(features)
    inputs = ArrayInput(features, encoder="toy", encoder_identity="enc-a", layers=[0], frame_rate=100.0)
    return inputs, LabelSet("frames", labels, vocabulary=class_vocabulary(["0", "1", "2", "3"])), Split(ids[:16], ids[16:20], ids[20:])


def test_a_frame_probe_trained_on_crops_learns_and_says_so(tmp_path):
    inputs, labels, split = _frame_corpus()
    result = train_probe("frames", inputs, labels, split, tmp_path / "p", interface="single", head="linear",
                         lrs=(3e-2,), max_steps=60, eval_every=20, patience=100, batch_frames=400,
                         crop_seconds=0.5, step_schedule=True, quiet=True, device="cpu")
    assert result.test["frame_accuracy"]["mean"] > 0.97
    meta = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert meta["training"]["crop_seconds"] == 0.5
    # test utterances are read whole: one logit row per input frame
    probe = load_probe(tmp_path / "p")
    samples = inputs.load(split.test).samples
    logits = predict_logits(probe.model, samples, split.test, device="cpu")
    assert all(len(logits[i]) == samples[i].num_frames for i in split.test)


def test_train_probe_refuses_crops_for_other_tasks_and_bad_lengths(tmp_path):
    inputs, labels, split = _frame_corpus()
    with pytest.raises(SpeechUnitsError, match="--crop-seconds"):
        train_probe("frames", inputs, labels, split, tmp_path / "a", crop_seconds=0.0, device="cpu", quiet=True)
    phones = LabelSet("phones", {i: ["a", "b"] for i in inputs.available_ids()})
    with pytest.raises(SpeechUnitsError, match="--crop-seconds.*'phones'"):
        train_probe("phones", inputs, phones, split, tmp_path / "b", crop_seconds=2.0, device="cpu", quiet=True)
