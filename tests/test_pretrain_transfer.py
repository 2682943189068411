"""pretrain --augment (perturbed input, clean targets) and --init (transfer from another model)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from conftest import cli_error
from speechunits.augment import RandomAugment
from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.data import CropBatches
from speechunits.training.batching import mix_seed
from test_pretrain import small_config

SR = 16000
GAIN = "gain:-6..6,p=1"


def _waves_and_labels(num: int = 6) -> tuple[list[tuple[str, np.ndarray]], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    waves = [(f"u{i}", (0.1 * rng.standard_normal(SR + 320 * i)).astype(np.float32)) for i in range(num)]
    labels = {u: rng.integers(0, 8, size=(len(w) - 80) // 320).astype(np.int64) for u, w in waves}
    return waves, labels


def _batches(augment: str | None) -> CropBatches:
    cfg = small_config()
    waves, labels = _waves_and_labels()
    return CropBatches(waves, labels, int(0.5 * SR), int(1.5 * SR), cfg.hop_length, cfg.num_frames, seed=3,
                       augment=RandomAugment.parse(augment) if augment else None)


def test_augmented_batches_keep_clean_targets_and_are_deterministic():
    clean, noisy = _batches(None), _batches("noise:5..10,gain:-6..6,p=1")
    for index in range(2 * len(clean)):
        a, b = clean.batch(index), noisy.batch(index)
        torch.testing.assert_close(a.labels, b.labels, rtol=0, atol=0)  # targets of the clean audio
        assert a.waves.shape == b.waves.shape
        assert all(not torch.equal(x, y) for x, y in zip(a.waves, b.waves))  # every row perturbed (p=1)
        # resume determinism: a fresh object gives the same augmented batch for the same index
        torch.testing.assert_close(_batches("noise:5..10,gain:-6..6,p=1").batch(index).waves, b.waves, rtol=0, atol=0)


def test_augmentation_is_drawn_from_seed_index_and_row():
    clean, gained = _batches(None), _batches(GAIN)
    spec = RandomAugment.parse(GAIN)
    gains = {}
    for index in range(len(clean) + 2):
        a, b = clean.batch(index), gained.batch(index)
        for row in range(a.waves.shape[0]):
            # an independent reconstruction of the drawn gain: generator seeded by (seed, index, row)
            (_, db, _), = spec.draw(np.random.default_rng(mix_seed(3, index, row, 4)))
            torch.testing.assert_close(b.waves[row], a.waves[row] * np.float32(10 ** (db / 20)), rtol=1e-6, atol=0)
            gains[(index, row)] = db
    assert len(set(gains.values())) == len(gains)  # another index or row draws another gain


def test_pretrain_augment_recorded_targets_unchanged_and_resume_checked(tmp_path, tone_dir):
    from speechunits.pretrain import pretrain
    from speechunits.training.checkpoint import read_state

    spec = "noise:10..20,pitch:-2..2,p=1"
    plain = pretrain(tone_dir, tmp_path / "plain", small_config(steps=1), quiet=True)
    aug = pretrain(tone_dir, tmp_path / "aug", small_config(steps=1, augment=spec), quiet=True)
    assert plain.targets.labels.keys() == aug.targets.labels.keys()
    for utt_id, labels in plain.targets.labels.items():
        np.testing.assert_array_equal(aug.targets.labels[utt_id], labels)
    assert read_state(tmp_path / "aug")["pretrain"]["augment"] == "pitch:-2..2,noise:10..20,p=1"
    assert read_state(tmp_path / "plain")["pretrain"]["augment"] == "none"
    assert plain.history[0].loss != aug.history[0].loss  # the model heard other audio
    with pytest.raises(SpeechUnitsError, match=r"trained with --augment pitch:-2..2,noise:10..20,p=1.*"
                                                r"asks for --augment pitch:-2..2,noise:5..20,p=1"):
        pretrain(tone_dir, tmp_path / "aug", small_config(steps=2, augment="noise:5..20,pitch:-2..2,p=1"),
                 resume=True, quiet=True)
    with pytest.raises(SpeechUnitsError, match="trained with --augment none"):
        pretrain(tone_dir, tmp_path / "plain", small_config(steps=2, augment=spec), resume=True, quiet=True)
    # the same spec in another order is the same augmentation: resumed
    resumed = pretrain(tone_dir, tmp_path / "aug", small_config(steps=2, augment="pitch:-2..2,noise:10..20,p=1"),
                       resume=True, quiet=True)
    assert resumed.training.steps_done == 2


def _source_model(tmp_path, tone_dir, **overrides):
    from speechunits.pretrain import pretrain

    return pretrain(tone_dir, tmp_path / "source", small_config(steps=1, **overrides), quiet=True)


def test_init_loads_encoder_and_keeps_head_only_for_same_targets(tmp_path, tone_dir):
    from safetensors.torch import load_file

    from speechunits.pretrain.init import apply_init, read_init
    from speechunits.pretrain.model import HubertPretrainer

    source = _source_model(tmp_path, tone_dir)
    exported = load_file(str(tmp_path / "source" / "model.safetensors"))
    trained = load_file(str(tmp_path / "source" / "training" / "model.safetensors"))
    init = read_init(tmp_path / "source", small_config())

    # same targets (random-projection:16, same seed): encoder and head taken over, before any step
    torch.manual_seed(0)
    model = HubertPretrainer.build(small_config(), source.targets.vocab_size)
    record = apply_init(model, init, source.targets)
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, exported[key], rtol=0, atol=0)
    torch.testing.assert_close(model.head.unit_embeddings.detach(), trained["head.unit_embeddings"], rtol=0, atol=0)
    assert record["head"] == "loaded"
    assert record["sha256"] == hashlib.sha256((tmp_path / "source" / "model.safetensors").read_bytes()).hexdigest()

    # another K: the encoder is loaded, the head stays as freshly initialised
    from speechunits.pretrain.targets import Targets

    other = Targets(source.targets.labels, 8, {"kind": "random-projection", "k": 8}, {})
    torch.manual_seed(0)
    fresh = HubertPretrainer.build(small_config(), 8)
    torch.manual_seed(0)
    model = HubertPretrainer.build(small_config(), 8)
    record = apply_init(model, init, other)
    assert record["head"].startswith("reinitialised: targets random-projection K=16 became random-projection K=8")
    torch.testing.assert_close(model.head.unit_embeddings, fresh.head.unit_embeddings, rtol=0, atol=0)
    name = "feature_projection.projection.weight"
    torch.testing.assert_close(model.encoder.state_dict()[name], exported[name], rtol=0, atol=0)
    assert not torch.equal(fresh.encoder.state_dict()[name], exported[name])

    # same kind and K, other quantizer (another seed draws another projection): head reinitialised
    same_k = Targets(source.targets.labels, 16, dict(source.targets.spec),
                     {k: v + 1 for k, v in source.targets.tensors.items()})
    assert "quantizer differs" in apply_init(HubertPretrainer.build(small_config(), 16), init, same_k)["head"]


def test_init_end_to_end_recorded_and_refused_when_shapes_differ(tmp_path, tone_dir):
    from speechunits.pretrain import pretrain
    from speechunits.training.checkpoint import read_state

    _source_model(tmp_path, tone_dir)
    src = str(tmp_path / "source")
    result = pretrain(tone_dir, tmp_path / "child", small_config(steps=1, targets="random-projection:8", init=src),
                      quiet=True)
    state = read_state(tmp_path / "child")
    assert state["pretrain"]["init"] == src
    assert state["init"]["path"] == src and state["init"]["head"].startswith("reinitialised")
    assert state["init"]["sha256"] == hashlib.sha256((tmp_path / "source" / "model.safetensors").read_bytes()
                                                     ).hexdigest()
    assert state["init"]["pretrain"]["targets"] == "random-projection:16"
    assert result.init == state["init"]
    # resume: another --init is refused, none (= as recorded) is fine and keeps the record
    with pytest.raises(SpeechUnitsError, match=r"trained with --init .*source, this run asks for --init .*child"):
        pretrain(tone_dir, tmp_path / "child", small_config(steps=2, targets="random-projection:8",
                                                            init=str(tmp_path / "child")), resume=True, quiet=True)
    pretrain(tone_dir, tmp_path / "child", small_config(steps=2, targets="random-projection:8"), resume=True,
             quiet=True)
    assert read_state(tmp_path / "child")["init"] == state["init"]
    # shape mismatches name both sides
    stride_diff = r"differing: conv_stride \[5, 2, 2, 2, 2, 2, 2\] vs \[5, 2, 2, 2, 2, 2, 1\]"
    with pytest.raises(SpeechUnitsError, match=r"does not match --config tiny --frame-rate 100 --frontend cnn \(.*100 Hz\); "
                                                + stride_diff):
        pretrain(tone_dir, tmp_path / "x", small_config(frame_rate=100, init=src), quiet=True)
    wider = dict(small_config().extra_model, hidden_size=64)
    with pytest.raises(SpeechUnitsError, match=r"hidden 32, .*50 Hz\) does not match .*hidden 64"):
        pretrain(tone_dir, tmp_path / "y", small_config(extra_model=wider, init=src), quiet=True)
    with pytest.raises(SpeechUnitsError, match="config.json missing"):
        pretrain(tone_dir, tmp_path / "z", small_config(init=str(tmp_path / "nowhere")), quiet=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_augment_and_init(tmp_path, tone_dir, capsys, caplog):
    from speechunits.cli.main import main

    common = ["--steps", "1", "--max-batch-seconds", "3", "--crop-seconds", "1", "--quiet", "--targets",
              "random-projection:8"]
    out = tmp_path / "m"
    assert main(["pretrain", str(tone_dir), "-o", str(out), *common, "--augment", "gain:-3..3,noise:10..30"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["augment"] == "noise:10..30,gain:-3..3,p=0.5" and summary["init"] is None
    # --resume without --augment keeps the checkpoint's; another one is refused
    assert main(["pretrain", str(tone_dir), "-o", str(out), *common[2:], "--steps", "2", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["augment"] == "noise:10..30,gain:-3..3,p=0.5"
    assert "trained with --augment noise:10..30,gain:-3..3,p=0.5" in cli_error(
        ["pretrain", str(tone_dir), "-o", str(out), *common, "--steps", "3", "--resume", "--augment", "none"], caplog)
    assert "unknown kind 'echo'" in cli_error(
        ["pretrain", str(tone_dir), "-o", str(tmp_path / "bad"), *common, "--augment", "echo:1..2"], caplog)
    # --init from the tiny model just trained (same preset and frame rate)
    assert main(["pretrain", str(tone_dir), "-o", str(tmp_path / "child"), *common, "--init", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["init"]["path"] == str(out) and summary["init"]["head"] == "loaded"
    assert "does not match --config tiny --frame-rate 100" in cli_error(
        ["pretrain", str(tone_dir), "-o", str(tmp_path / "c100"), *common, "--init", str(out), "--frame-rate", "100"],
        caplog)
