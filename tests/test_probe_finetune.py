"""``--finetune lora|adapters``: peft LoRA updates of frozen encoder blocks, trained with the probe.

Checked: the parsed option; only the updates, featurizer and head train; a LoRA probe's loss goes
down on a tiny HuBERT; the probe directory holds only the updates (no encoder weights) and loads
with identical predictions against the same base, and is refused against another base.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("peft")

from conftest import make_tiny_conformer, make_tiny_hf_model  # noqa: E402
from speechunits.errors import SpeechUnitsError  # noqa: E402
from speechunits.probe.finetune import (ADAPTER_TARGETS, CONFORMER_ADAPTER_TARGETS, CONFORMER_LORA_TARGETS,  # noqa: E402
                                        LORA_TARGETS, Finetune, TopBlocks, parse_finetune)
from speechunits.probe.model_dir import load_probe  # noqa: E402
from speechunits.probe.train import finetune_input, train_probe_on_corpus  # noqa: E402
from speechunits.synth.testing import small_corpus  # noqa: E402
from speechunits.training.loop import recorded_values, step_records  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("ft-corpus"), minutes=0.5, speakers=2)


def test_parse_finetune():
    assert parse_finetune("lora") == Finetune("lora", rank=8)
    assert parse_finetune("adapters:4") == Finetune("adapters", rank=4)
    assert parse_finetune("top:2") == Finetune("top", blocks=2)
    assert parse_finetune(None) is None
    for bad in ("lora:0", "lora:x", "adapter", "top"):
        with pytest.raises(SpeechUnitsError, match="--finetune"):
            parse_finetune(bad)


@pytest.mark.parametrize("model,kind,targets", [("hubert", "lora", LORA_TARGETS), ("hubert", "adapters", ADAPTER_TARGETS),
                                                ("w2v-bert", "lora", CONFORMER_LORA_TARGETS),
                                                ("w2v-bert", "adapters", CONFORMER_ADAPTER_TARGETS)])
def test_only_the_low_rank_updates_train_and_they_start_at_zero(tiny_hubert_dir, tmp_path, model, kind, targets):
    """Blocks 1-3 with rank-4 updates on exactly the target layers; the output equals the plain blocks'."""
    base = str(tiny_hubert_dir) if model == "hubert" else str(make_tiny_conformer(tmp_path / model, model))
    adapted = TopBlocks(base, 3, first=0, low_rank=(kind, 4)).eval()
    plain = TopBlocks(base, 3, first=0).eval()
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    wrapped = {n.rsplit(".lora_A", 1)[0] for n in trainable if ".lora_A" in n}
    expected = {f"layers.{i}.{t}" for i in range(3) for t in targets}
    assert wrapped == expected
    assert all(p.shape[0] == 4 for n, p in adapted.named_parameters() if "lora_A" in n)
    x, lengths = torch.randn(2, 7, 32), torch.tensor([7, 4])
    with torch.no_grad():
        torch.testing.assert_close(adapted(x, lengths), plain(x, lengths))


def test_lora_probe_trains_saves_only_updates_and_checks_its_base(corpus, tiny_hubert_dir, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_hubert_dir, base)
    inputs = finetune_input(str(base), "lora:4", corpus=corpus / "manifest.tsv", device="cpu", quiet=True)
    assert inputs.layers == [0]
    out = tmp_path / "probe"
    train_probe_on_corpus("frames", corpus / "manifest.tsv", inputs, out, finetune="lora:4",
                                   finetune_layers=[2, 3], lrs=(3e-3,), max_steps=12, eval_every=4, patience=10,
                                   batch_frames=3000, device="cpu", quiet=True)
    meta = json.loads((out / "probe.json").read_text())
    record = meta["finetune"]
    assert record["kind"] == "lora" and record["blocks"] == 3 and record["select"] == [2, 3]
    assert record["encoder_identity"] == meta["input"]["encoder_identity"] and meta["input"]["layers"] == [0]
    assert meta["layers"] == [2, 3] and len(meta["layer_weights"]) == 2
    losses = [record["loss"] for record in step_records(out / "training" / "log.jsonl")]
    assert recorded_values(out / "training" / "log.jsonl", "dev")  # the dev evaluations are logged too
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    from safetensors import safe_open

    with safe_open(str(out / "head.safetensors"), "pt") as handle:
        names = list(handle.keys())
    top = [n for n in names if n.startswith("top.")]
    assert top and all("lora_" in n for n in top)  # no frozen encoder weight is stored
    assert len(top) == 3 * len(LORA_TARGETS) * 2
    assert any(not n.startswith("top.") for n in names)

    probe = load_probe(out)
    probe.model.train(False)
    samples = dict(list(inputs.load().samples.items())[:3])
    first = probe.logits(samples)
    again = load_probe(out).logits(samples)
    assert all(np.array_equal(first[k], again[k]) for k in samples)
    loaded = load_probe(out).model
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("top.")} == set(top)  # encoder: only the updates train
    assert {n for n in names if not n.startswith("top.")} <= trainable  # featurizer and head train
    trained = loaded.top.layers[0].attention.q_proj.lora_B["default"].weight
    assert trained.abs().sum() > 0  # the updates moved from their zero start

    other = make_tiny_hf_model(tmp_path / "other", "hubert", "group", seed=1)
    shutil.rmtree(base)
    shutil.copytree(other, base)  # same name, other weights
    with pytest.raises(SpeechUnitsError, match="identity"):
        load_probe(out)
    with pytest.raises(SpeechUnitsError, match="identity"):
        load_probe(out, base=str(other))
    assert load_probe(out, base=str(tiny_hubert_dir)).logits(samples).keys() == first.keys()
    moved = load_probe(out, base=str(tiny_hubert_dir)).logits(samples)
    assert all(np.array_equal(first[k], moved[k]) for k in samples)


def test_lora_needs_a_layer_above_zero(corpus, tiny_hubert_dir, tmp_path):
    inputs = finetune_input(str(tiny_hubert_dir), "adapters", corpus=corpus / "manifest.tsv", device="cpu",
                            quiet=True)
    with pytest.raises(SpeechUnitsError, match="deepest >= 1"):
        train_probe_on_corpus("frames", corpus / "manifest.tsv", inputs, tmp_path / "p", finetune="adapters",
                              finetune_layers=[0], max_steps=2, device="cpu", quiet=True)


def test_cli_lora_probe_trains_and_evaluates_against_a_moved_base(corpus, tiny_hubert_dir, tmp_path, capsys):
    from speechunits.cli.main import main

    manifest = str(corpus / "manifest.tsv")
    base = tmp_path / "base"
    shutil.copytree(tiny_hubert_dir, base)
    out = tmp_path / "lora"
    assert main(["probe", "train", "frames", manifest, "--encoder", str(base), "--layers", "1-2", "--finetune",
                 "adapters:2", "-o", str(out), "--max-steps", "4", "--eval-every", "2", "--batch-frames", "3000",
                 "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["finetune"]["kind"] == "adapters" and meta["finetune"]["select"] == [1, 2]
    assert meta["finetune"]["targets"] == list(ADAPTER_TARGETS) and meta["finetune"]["blocks"] == 2
    moved = tmp_path / "moved"
    base.rename(moved)
    capsys.readouterr()
    assert main(["probe", "eval", str(out), manifest, "--split", "dev", "--json", "--encoder", str(moved),
                 "--device", "cpu", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frame_accuracy"] == pytest.approx(meta["dev"]["frame_accuracy"]["mean"], abs=0.02)


@pytest.mark.parametrize("family,norm", [("wav2vec2", "layer"), ("wavlm", "group"), ("w2v-bert", "relative_key"),
                                         ("w2v-bert", "rotary"), ("wav2vec2-conformer", "relative")])
def test_adapted_and_top_blocks_reproduce_the_encoders_layers(family, norm, tmp_path):
    """Before training (updates at zero) blocks 1-4 on layer 0, and blocks 3-4 on layer 2, give the
    encoder's own layers inside a padded batch; WavLM's relative position bias is carried along, and
    conformer blocks get their position embeddings and padded frames zeroed before their convolutions."""
    from speechunits.encoders import load_encoder

    if family in ("w2v-bert", "wav2vec2-conformer"):
        model_dir = make_tiny_conformer(tmp_path / family, family, norm, num_layers=4)
    else:
        model_dir = make_tiny_hf_model(tmp_path / family, family, norm)
    encoder = load_encoder(str(model_dir), device="cpu")
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (8000, 12000)]
    feats = encoder.extract_batch(waves, [0, 1, 2, 3, 4])
    for first, low_rank in ((0, ("adapters", 4)), (2, None)):
        blocks = TopBlocks(str(model_dir), 4 - first, first=first, low_rank=low_rank).eval()
        lengths = torch.tensor([f[first].shape[0] for f in feats])
        x = torch.zeros(2, int(lengths.max()), 32)
        for i, f in enumerate(feats):
            x[i, : f[first].shape[0]] = torch.from_numpy(f[first])
        with torch.no_grad():
            out = blocks(x, lengths)
        for i, f in enumerate(feats):
            for j in range(5 - first):
                np.testing.assert_allclose(out[i, j, : lengths[i]].numpy(), f[first + j], rtol=1e-4, atol=1e-4)
    if family == "wavlm":  # its attention reads the projection weights directly: LoRA would do nothing
        with pytest.raises(SpeechUnitsError, match="adapters"):
            TopBlocks(str(model_dir), 4, first=0, low_rank=("lora", 4))
