"""HuBERT-style pretraining: masking, head/loss, targets alignment, batches, loop, checkpoints, HF export."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from conftest import write_tone, cli_error
from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.config import PretrainConfig, conv_frames, hop_length, hubert_config, receptive_field
from speechunits.pretrain.data import CropBatches, load_waves
from speechunits.pretrain.head import IGNORE, PredictionHead, masked_prediction_loss
from speechunits.pretrain.masking import span_mask
from speechunits.pretrain.targets import align_labels, frame_ratio, parse_spec

#: A model small enough for CI (the structure of the presets, fewer/narrower layers).
SMALL_MODEL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def small_config(**overrides) -> PretrainConfig:
    base = dict(targets="random-projection:16", steps=4, max_batch_seconds=4.0, crop_seconds=1.0, warmup_steps=1,
                log_every=1, checkpoint_every=100, dropout=0.1, extra_model=SMALL_MODEL)
    base.update(overrides)
    return PretrainConfig(**base)


# -- geometry ------------------------------------------------------------------------------------

def test_conv_geometry_matches_hubert():
    assert receptive_field() == 400 and hop_length() == 320
    # (T - 400) // 320 + 1, the written rule; and what the real CNN produces.
    for samples in (399, 400, 719, 720, 16000, 16321):
        expected = 0 if samples < 400 else (samples - 400) // 320 + 1
        assert conv_frames(samples) == expected
    import transformers

    cfg = hubert_config(PretrainConfig(extra_model=SMALL_MODEL))
    model = transformers.HubertModel(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 16321)).last_hidden_state
    assert out.shape[1] == conv_frames(16321)



def test_100hz_geometry_matches_mfcc_frames():
    import transformers

    train = PretrainConfig(frame_rate=100, extra_model=SMALL_MODEL)
    assert (train.receptive_field, train.hop_length) == (400, 160)
    # hand-computed: the 50 Hz CNN's rule with hop 160, i.e. MFCC's frame count
    for samples in (399, 400, 559, 560, 16000):
        assert train.num_frames(samples) == (0 if samples < 400 else (samples - 400) // 160 + 1)
    model = transformers.HubertModel(hubert_config(train)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 16000)).last_hidden_state
    assert out.shape[1] == train.num_frames(16000) == 98
    with pytest.raises(SpeechUnitsError, match="--frame-rate"):
        PretrainConfig(frame_rate=75)

# -- masking -------------------------------------------------------------------------------------

def test_span_mask_counts_spans_and_determinism():
    gen = torch.Generator().manual_seed(3)
    mask = span_mask(4, 200, mask_prob=0.08, mask_length=10, generator=gen)
    again = span_mask(4, 200, mask_prob=0.08, mask_length=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mask, again)
    assert mask.shape == (4, 200) and mask.dtype == torch.bool
    for row in mask:
        # every masked run is at least one whole span long
        runs, current = [], 0
        for value in row.tolist() + [False]:
            if value:
                current += 1
            elif current:
                runs.append(current)
                current = 0
        assert runs and min(runs) >= 10
        # int(0.08 * 200 + u) = 16 starts, spans of 10: between 10 and 160 frames masked
        assert 10 <= int(row.sum()) <= 160
    # span length 1: exactly int(p * F + u) distinct frames (u < 1) -> 16
    single = span_mask(3, 200, mask_prob=0.08, mask_length=1, generator=gen)
    assert single.sum(1).tolist() == [16, 16, 16]


def test_span_mask_short_and_bad():
    assert not span_mask(2, 5, mask_prob=0.08, mask_length=10).any()
    # min_masks applies to short utterances: 12 frames, 3 positions, 2 starts at least
    assert span_mask(1, 12, mask_prob=0.01, mask_length=10, min_masks=2).sum() >= 10
    with pytest.raises(SpeechUnitsError):
        span_mask(1, 10, mask_prob=1.5, mask_length=2)
    with pytest.raises(SpeechUnitsError):
        span_mask(1, 10, mask_prob=0.1, mask_length=0)


# -- head and loss ------------------------------------------------------------------------------

def test_cosine_logits_by_hand():
    head = PredictionHead(3, 2, 4, temperature=0.1)
    with torch.no_grad():
        head.final_proj.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
        head.final_proj.bias.zero_()
        head.unit_embeddings.copy_(torch.tensor([[1.0, 0], [0, 2.0], [1.0, 1.0], [-1.0, 0]]))
    logits = head(torch.tensor([[[3.0, 0.0, 5.0]]]))  # projected: (3, 0) -> unit vector (1, 0)
    expected = torch.tensor([1.0, 0.0, 2 ** -0.5, -1.0]) / 0.1
    assert torch.allclose(logits[0, 0], expected, atol=1e-5)


def test_loss_counts_masked_frames_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    targets[1, 4] = IGNORE
    mask = torch.tensor([[True, False, True, False, False], [False, True, True, False, True]])
    loss, stats = masked_prediction_loss(logits, targets, mask)
    sel = mask & (targets != IGNORE)
    expected = F.cross_entropy(logits[sel], targets[sel], reduction="sum")
    assert torch.allclose(loss, expected)
    assert stats.masked_frames == 4 and stats.unmasked_frames == 5
    assert stats.masked_correct == int((logits.argmax(-1) == targets)[sel].sum())
    weighted, _ = masked_prediction_loss(logits, targets, mask, unmasked_weight=0.5)
    unsel = ~mask & (targets != IGNORE)
    extra = 0.5 * F.cross_entropy(logits[unsel], targets[unsel], reduction="sum")
    assert torch.allclose(weighted, expected + extra)


# -- targets ---------------------------------------------------------------------------------------

def test_frame_ratio_and_alignment():
    assert frame_ratio(100.0, 50.0, "x") == 2
    assert frame_ratio(50.0, 50.0, "x") == 1
    for bad in (75.0, 25.0, 49.0):
        with pytest.raises(SpeechUnitsError, match="neither the model's"):
            frame_ratio(bad, 50.0, "codebook")
    # MFCC 100 Hz frame 2i covers the same samples [320 i, 320 i + 400) as model frame i
    labels = np.arange(9)
    assert align_labels(labels, 2, 5).tolist() == [0, 2, 4, 6, 8]
    assert align_labels(labels, 2, 6).tolist() == [0, 2, 4, 6, 8, IGNORE]


def test_parse_spec_errors(tmp_path):
    assert parse_spec("mfcc:100") == ("mfcc", 100)
    assert parse_spec("random-projection:64") == ("random-projection", 64)
    for bad in ("mfcc:abc", "mfcc:1", "nonexistent/dir"):
        with pytest.raises(SpeechUnitsError, match="--targets"):
            parse_spec(bad)


def test_store_targets_with_wrong_frame_rate(tmp_path, tone_dir):
    from speechunits.pretrain.targets import build_targets
    from speechunits.units.store import write_units
    from speechunits.units.units import Units

    waves = load_waves(__import__("speechunits.corpus", fromlist=["open_corpus"]).open_corpus(tone_dir), 16000, 400)
    meta = {"k": 10, "frame_rate": 75.0, "sample_rate": 16000, "receptive_field": 400, "sha256": "x"}
    items = [(u, Units(np.zeros(conv_frames(len(w)) * 3 // 2, dtype=np.int64), 75.0, 10)) for u, w in waves]
    write_units(tmp_path / "store75", items, meta)
    with pytest.raises(SpeechUnitsError, match="75 Hz is neither the model's 50 Hz"):
        build_targets(str(tmp_path / "store75"), waves, conv_frames, 50.0)
    # a 50 Hz store is read as is
    meta50 = dict(meta, frame_rate=50.0)
    items50 = [(u, Units(np.arange(conv_frames(len(w))) % 10, 50.0, 10)) for u, w in waves]
    write_units(tmp_path / "store50", items50, meta50)
    targets = build_targets(str(tmp_path / "store50"), waves, conv_frames, 50.0)
    assert targets.vocab_size == 10
    first_id, first_wave = waves[0]
    assert targets.labels[first_id].tolist() == (np.arange(conv_frames(len(first_wave))) % 10).tolist()


# -- data ------------------------------------------------------------------------------------------

def test_crop_batches_budget_alignment_determinism():
    hop = 320
    lengths = [16000, 24000, 9000, 40000, 12000, 30000]
    # each sample's value encodes its hop index, so crops can be checked against labels
    waves = [(f"u{i}", (np.arange(n) // hop).astype(np.float32)) for i, n in enumerate(lengths)]
    labels = {u: np.arange(conv_frames(len(w))) for u, w in waves}
    batches = CropBatches(waves, labels, crop_samples=16000, budget_samples=32000, hop=hop,
                          model_frames=conv_frames, seed=5)
    seen = set()
    for index in range(len(batches)):
        batch = batches.batch(index)
        b, length = batch.waves.shape
        assert b * length <= 32000 or b == 1
        assert length <= 16000
        assert batch.labels.shape == (b, conv_frames(length))
        for row in range(b):
            first_hop = int(batch.waves[row, 0])
            assert batch.waves[row, 0] == batch.waves[row, hop - 1]  # offset is a multiple of the hop
            assert batch.labels[row].tolist() == list(range(first_hop, first_hop + conv_frames(length)))
        seen.add(index % len(batches))
        again = batches.batch(index)
        assert torch.equal(again.waves, batch.waves) and torch.equal(again.labels, batch.labels)
    assert len(seen) == len(batches)
    # another epoch: another crop somewhere (random offsets differ)
    epoch0 = [batches.batch(i).waves for i in range(len(batches))]
    epoch1 = [batches.batch(i + len(batches)).waves for i in range(len(batches))]
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(epoch0, epoch1))


def test_no_usable_audio(tmp_path):
    from speechunits.corpus import open_corpus

    root = tmp_path / "bad"
    root.mkdir()
    (root / "broken.wav").write_bytes(b"not a wav")
    write_tone(root / "short.wav", 0.01)
    with pytest.raises(SpeechUnitsError, match="no usable audio"):
        load_waves(open_corpus(root), 16000, 16000)


# -- loop ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frontend", ["cnn", "fbank"])
def test_tiny_config_loss_falls_on_fixed_batch(frontend):
    from speechunits.pretrain.front_end import model_inputs
    from speechunits.pretrain.model import HubertPretrainer
    from speechunits.training.optim import make_optimizer

    torch.manual_seed(0)
    train = PretrainConfig(model="tiny", lr=1e-3, dropout=0.0, frontend=frontend)
    model = HubertPretrainer.build(train, num_units=20).train()
    opt = make_optimizer(model, train.optim())
    inputs = model_inputs(torch.randn(1, 16000) * 0.1, train)
    frames = train.num_frames(16000)
    labels = torch.randint(0, 20, (1, frames))
    mask = span_mask(1, frames, mask_prob=0.08, mask_length=10, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(12):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(inputs, mask)
        loss, stats = masked_prediction_loss(logits, labels, mask)
        (loss / stats.masked_frames).backward()
        opt.step()
        losses.append(float(loss.detach()) / stats.masked_frames)
    assert losses[-1] < 0.7 * losses[0]


def _final_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_checkpoint_resume_equals_uninterrupted(tmp_path, tone_dir):
    from speechunits.pretrain import pretrain
    from speechunits.training.checkpoint import read_state

    full = pretrain(tone_dir, tmp_path / "full", small_config(steps=4), quiet=True)
    part = pretrain(tone_dir, tmp_path / "part", small_config(steps=2), quiet=True)
    assert read_state(tmp_path / "part")["step"] == 2
    resumed = pretrain(tone_dir, tmp_path / "part", small_config(steps=4), resume=True, quiet=True)
    full_losses = [h.loss for h in full.history]
    resumed_losses = [h.loss for h in part.history] + [h.loss for h in resumed.history]
    assert len(resumed_losses) == 4
    np.testing.assert_allclose(resumed_losses, full_losses, rtol=1e-5, atol=1e-6)
    a, b = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    state = read_state(tmp_path / "part")
    assert state["step"] == 4 and state["targets"]["kind"] == "random-projection"
    # an existing checkpoint is not silently overwritten
    with pytest.raises(SpeechUnitsError, match="--resume"):
        pretrain(tone_dir, tmp_path / "full", small_config(steps=4), quiet=True)
    with pytest.raises(SpeechUnitsError, match="no checkpoint"):
        pretrain(tone_dir, tmp_path / "none", small_config(steps=4), resume=True, quiet=True)


def test_loader_workers_build_the_same_augmented_batches(tmp_path, tone_dir):
    """Pitch-shifted crops built by two worker processes: the same run as building them inline."""
    from speechunits.pretrain import pretrain

    config = small_config(steps=3, augment="pitch:-4..4,p=0.5")
    inline = pretrain(tone_dir, tmp_path / "inline", config, quiet=True)
    workers = pretrain(tone_dir, tmp_path / "workers", config, quiet=True, loader_workers=2)
    assert [h.loss for h in workers.history] == [h.loss for h in inline.history]
    a, b = _final_weights(tmp_path / "inline"), _final_weights(tmp_path / "workers")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_checkpoint_round_trip_and_hf_load(tmp_path, tone_dir):
    import transformers

    from speechunits.encoders import load_encoder
    from speechunits.pretrain import pretrain
    from speechunits.pretrain.model import HubertPretrainer
    from speechunits.training.checkpoint import load_weights

    result = pretrain(tone_dir, tmp_path / "m", small_config(steps=2), quiet=True)
    model_dir = tmp_path / "m"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (model_dir / name).is_file()
    # round trip: a fresh model loaded from the checkpoint equals the saved weights exactly
    fresh = HubertPretrainer.build(small_config(), result.targets.vocab_size)
    load_weights(model_dir, fresh)
    saved = _final_weights(model_dir)
    hf = transformers.HubertModel.from_pretrained(str(model_dir)).eval()
    for key, value in hf.state_dict().items():
        torch.testing.assert_close(value, fresh.encoder.state_dict()[key], rtol=0, atol=0)
    # the exported file holds exactly the HubertModel's weights: none left for transformers to
    # initialise at random, no training-only head
    assert set(saved) == set(hf.state_dict())
    # load_encoder(MODEL) gives HF's hidden_states[n] for layer n
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    with torch.no_grad():
        hidden = hf(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states
    encoder = load_encoder(str(model_dir), device="cpu")
    assert encoder.info.num_layers == SMALL_MODEL["num_hidden_layers"]
    assert encoder.info.frame_rate == 50.0
    feats = encoder.extract(wave, [0, 2])
    np.testing.assert_allclose(feats[2], hidden[2][0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(feats[0], hidden[0][0].numpy(), rtol=1e-4, atol=1e-4)
    log_lines = (model_dir / "training" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log_lines] == [1, 2]


def test_100hz_model_trains_on_mfcc_frames_one_to_one(tmp_path, tone_dir):
    from speechunits.encoders import load_encoder
    from speechunits.pretrain import pretrain

    result = pretrain(tone_dir, tmp_path / "m100", small_config(steps=2, frame_rate=100, targets="mfcc:8"),
                      quiet=True)
    assert result.targets.spec["ratio"] == 1
    mfcc = load_encoder("mfcc")
    for utt_id, labels in result.targets.labels.items():
        # every model frame has the MFCC frame over the same 400 samples: none is IGNORE
        assert (labels != IGNORE).all()
    wave = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    encoder = load_encoder(str(tmp_path / "m100"), device="cpu")
    assert (encoder.info.frame_rate, encoder.info.hop_length, encoder.info.receptive_field) == (100.0, 160, 400)
    assert encoder.extract(wave, [1])[1].shape[0] == mfcc.extract(wave, [0])[0].shape[0] == 48


def test_cli_pretrain(tmp_path, tone_dir, capsys, caplog):
    from speechunits.cli.main import main

    out = tmp_path / "cli_model"
    extra = ["--steps", "1", "--max-batch-seconds", "3", "--crop-seconds", "1", "--quiet",
             "--targets", "random-projection:8"]
    # the tiny preset through the CLI
    assert main(["pretrain", str(tone_dir), "-o", str(out), *extra]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == str(out) and summary["targets"]["k"] == 8
    assert (summary["steps_done"], summary["steps_max"], summary["stop_reason"]) == (1, 1, "max_steps")
    # a spent time budget: the summary reports the steps done beside the cap, not the cap
    budget = ["--max-minutes", "1e-6", "--steps", "7"]
    assert main(["pretrain", str(tone_dir), "-o", str(tmp_path / "budget"), *extra, *budget]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["steps_done"], summary["steps_max"], summary["stop_reason"]) == (1, 7, "time_budget")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no usable audio" in cli_error(["pretrain", str(empty), "-o", str(tmp_path / "x"), *extra], caplog)
    assert "'bogus:3' is not" in cli_error(["pretrain", str(tone_dir), "-o", str(tmp_path / "y"), "--targets",
                                            "bogus:3", "--quiet"], caplog)


def test_cli_recipe_sets_run_d_and_options_override_it(tmp_path, tone_dir, capsys, caplog):
    from speechunits.cli.main import main
    from speechunits.training.checkpoint import read_state

    extra = ["--steps", "1", "--crop-seconds", "1", "--quiet", "--targets", "random-projection:8"]
    run_d = {"frame_rate": 100, "lr": 1e-3, "warmup_steps": 100, "max_batch_seconds": 16.0, "mask_length": 20,
             "mask_prob": 0.04, "unmasked_weight": 0.5}  # docs/train.md's run D, written out by hand
    assert main(["pretrain", str(tone_dir), "-o", str(tmp_path / "cpu"), "--recipe", "cpu", *extra]) == 0
    saved = read_state(tmp_path / "cpu")["pretrain"]
    assert {key: saved[key] for key in run_d} == run_d and saved["crop_seconds"] == 1.0  # the option wins
    # an explicit option overrides the recipe; the rest of the recipe stays
    assert main(["pretrain", str(tone_dir), "-o", str(tmp_path / "lr"), "--recipe", "cpu", "--lr", "2e-4",
                 "--frame-rate", "50", *extra]) == 0
    saved = read_state(tmp_path / "lr")["pretrain"]
    assert (saved["lr"], saved["frame_rate"], saved["mask_length"], saved["unmasked_weight"]) == (2e-4, 50, 20, 0.5)
    # no recipe: HuBERT's defaults, unchanged
    assert main(["pretrain", str(tone_dir), "-o", str(tmp_path / "hubert"), *extra]) == 0
    saved = read_state(tmp_path / "hubert")["pretrain"]
    assert (saved["frame_rate"], saved["lr"], saved["mask_length"], saved["unmasked_weight"]) == (50, 5e-4, 10, 0.0)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["pretrain", str(tone_dir), "-o", str(tmp_path / "bad"), "--recipe", "gpu"])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


# -- schedule, codebook targets and iterations --------------------------------------------------------

def test_learning_rate_schedule():
    from speechunits.training.optim import learning_rate

    train = PretrainConfig(steps=10, warmup_steps=2, lr=1.0)
    assert [round(learning_rate(s, train.optim()), 4) for s in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5,
                                                                    0.375, 0.25, 0.125]
    # a spent time budget decays further than the step count says
    assert learning_rate(3, train.optim(), time_fraction=0.5) == pytest.approx(0.5)
    assert learning_rate(3, train.optim(), time_fraction=1.0) == 0.0


def test_time_budget_stops_training(tmp_path, tone_dir):
    from speechunits.pretrain import pretrain
    from speechunits.training.checkpoint import read_state

    result = pretrain(tone_dir, tmp_path / "m", small_config(steps=50, max_minutes=1e-6), quiet=True)
    assert len(result.history) == 1  # the budget is checked before each step after the first
    assert read_state(tmp_path / "m")["step"] == 1
    # the steps done, beside the cap, and why it stopped (issue 12 point 10)
    assert (result.training.steps_done, result.training.steps_max, result.training.stop_reason) == (
        1, 50, "time_budget")
    full = pretrain(tone_dir, tmp_path / "n", small_config(steps=2), quiet=True)
    assert (full.training.steps_done, full.training.steps_max, full.training.stop_reason) == (2, 2, "max_steps")


def _codebook(k: int, dim: int, frame_rate: float, encoder: str, layer: int):
    from speechunits.quantize import Codebook

    meta = {"encoder": encoder, "layer": layer, "frame_rate": frame_rate, "sample_rate": 16000,
            "hop_length": int(16000 / frame_rate), "receptive_field": 400}
    return Codebook(torch.randn(k, dim, generator=torch.Generator().manual_seed(0)), meta)


def test_codebook_targets_frame_rate_mismatch(tmp_path, tone_dir):
    from speechunits.corpus import open_corpus
    from speechunits.pretrain.targets import build_targets

    waves = load_waves(open_corpus(tone_dir), 16000, 400)
    _codebook(8, 39, 75.0, "mfcc", 0).save(tmp_path / "cb75")
    with pytest.raises(SpeechUnitsError, match="75 Hz is neither the model's 50 Hz nor an integer multiple"):
        build_targets(str(tmp_path / "cb75"), waves, conv_frames, 50.0)


def test_codebook_targets_from_mfcc_codebook(tmp_path, tone_dir):
    """A 100 Hz MFCC codebook as targets: model frame i gets the unit of MFCC frame 2 i."""
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.pretrain.targets import build_targets

    waves = load_waves(open_corpus(tone_dir), 16000, 400)
    mfcc = load_encoder("mfcc")
    feats = mfcc.extract(waves[0][1], [0])[0]
    Codebook(torch.from_numpy(feats[:8].copy()), {"encoder": "mfcc", "encoder_identity": mfcc.info.identity,
                                                  "layer": 0, "frame_rate": 100.0, "sample_rate": 16000,
                                                  "hop_length": 160, "receptive_field": 400}).save(tmp_path / "cb")
    targets = build_targets(str(tmp_path / "cb"), waves, conv_frames, 50.0)
    assert targets.spec["ratio"] == 2 and targets.vocab_size == 8
    expected = Codebook.load(tmp_path / "cb").assign(feats)[::2][: conv_frames(len(waves[0][1]))]
    assert targets.labels[waves[0][0]].tolist() == expected.tolist()


def test_two_iterations(tmp_path, tone_dir):
    from speechunits.quantize import Codebook
    from speechunits.pretrain.iterate import pretrain_iterations
    from speechunits.training.checkpoint import read_state

    results = pretrain_iterations(tone_dir, tmp_path / "model", small_config(steps=1), iterations=2, layer=1, k=6,
                                  quiet=True)
    first, second = results
    assert first.model_dir == tmp_path / "model.iter1" and second.model_dir == tmp_path / "model"
    codebook = Codebook.load(tmp_path / "model.iter1" / "codebook-L1-K6")
    assert codebook.k == 6 and codebook.layer == 1 and codebook.frame_rate == 50.0
    state = read_state(tmp_path / "model")
    assert state["targets"]["kind"] == "codebook" and state["targets"]["layer"] == 1
    assert second.targets.vocab_size == 6


def test_mfcc_and_random_projection_targets(tmp_path, tone_dir):
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.pretrain.targets import build_targets, nearest

    waves = load_waves(open_corpus(tone_dir), 16000, 400)
    targets = build_targets("mfcc:4", waves, conv_frames, 50.0, seed=1)
    assert targets.vocab_size == 4 and targets.spec["ratio"] == 2
    mfcc = load_encoder("mfcc")
    for utt, wave in waves:
        feats = torch.from_numpy(mfcc.extract(wave, [0])[0])
        # independent check: nearest centroid by explicit distances, every 2nd MFCC frame
        dist = torch.cdist(feats[::2], targets.tensors["centroids"])
        expected = dist.argmin(1).numpy()[: conv_frames(len(wave))]
        assert targets.labels[utt].tolist() == expected.tolist()
    # resuming reuses the saved centroids: same labels without fitting again
    targets.save(tmp_path / "t")
    again = build_targets("mfcc:4", waves, conv_frames, 50.0, seed=99, saved=tmp_path / "t")
    assert all(np.array_equal(again.labels[u], targets.labels[u]) for u, _ in waves)
    # random projection: deterministic for a seed, K ids, one per model frame
    rp = build_targets("random-projection:8", waves, conv_frames, 50.0, seed=3)
    rp2 = build_targets("random-projection:8", waves, conv_frames, 50.0, seed=3)
    for utt, wave in waves:
        assert len(rp.labels[utt]) == conv_frames(len(wave))
        assert rp.labels[utt].min() >= 0 and rp.labels[utt].max() < 8
        assert np.array_equal(rp.labels[utt], rp2.labels[utt])
    # ... and the seed is used: another seed, another projection
    rp3 = build_targets("random-projection:8", waves, conv_frames, 50.0, seed=4)
    assert any(not np.array_equal(rp.labels[u], rp3.labels[u]) for u, _ in waves)
    assert nearest(torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist() == [1, 0]
