"""Units from a pretrained model's prediction head (``codebook from-head``): the same units as the training
module's own forward, both front ends and both LayerNorm layouts; files, refusals, CLI through ``encode``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.config import PretrainConfig
from speechunits.quantize import Codebook
from speechunits.quantize.prediction_head import PredictionHeadCodebook

CNN = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_depthwise_kernel_size=5)


def config(frontend: str = "cnn", stable: bool = False) -> PretrainConfig:
    extra = dict(BERT) if frontend == "fbank" else {**CNN, "do_stable_layer_norm": stable}
    return PretrainConfig(frontend=frontend, targets="random-projection:16", steps=3, max_batch_seconds=4.0,
                          crop_seconds=1.0, warmup_steps=1, log_every=1, checkpoint_every=100, dropout=0.1,
                          extra_model=extra)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 3-step models: CNN post-LN, CNN pre-LN (a final LayerNorm) and filterbank conformer."""
    from conftest import write_tone
    from speechunits.pretrain import pretrain

    root = tmp_path_factory.mktemp("head")
    audio = root / "audio"
    for i, secs in enumerate([0.8, 1.5, 2.2]):
        write_tone(audio / f"utt{i}.wav", secs, freq=150 + 40 * i, seed=i)
    out = {}
    for name, cfg in (("post-ln", config()), ("pre-ln", config(stable=True)), ("fbank", config("fbank"))):
        pretrain(audio, root / name, cfg, quiet=True)
        out[name] = root / name
    out["audio"] = audio
    return out


def head_forward_units(model_dir: Path, wave: np.ndarray) -> torch.Tensor:
    """The training module's own logits ``[F, K]`` on unmasked input (the second implementation)."""
    from speechunits.pretrain.front_end import model_inputs
    from speechunits.pretrain.model import HubertPretrainer
    from speechunits.pretrain.run import saved_config
    from speechunits.training.checkpoint import load_weights

    train = saved_config(model_dir)
    model = HubertPretrainer.build(train, 16)
    load_weights(model_dir, model)
    model.eval()
    inputs = model_inputs(torch.from_numpy(wave)[None], train)
    frames = train.num_frames(len(wave))
    with torch.no_grad():
        return model(inputs, torch.zeros(1, frames, dtype=torch.bool))[0]


@pytest.mark.parametrize("name", ["post-ln", "pre-ln", "fbank"])
def test_units_are_the_heads_argmax(models: dict[str, Path], name: str) -> None:
    from speechunits.encoders import load_encoder

    head = PredictionHeadCodebook.from_pretrained(models[name])
    encoder = load_encoder(str(models[name]), device="cpu")
    assert head.layer == encoder.info.num_layers == 2 and head.k == 16 and head.dim == 32
    assert (head.final_norm is not None) == (name == "pre-ln")
    assert head.meta["targets"]["kind"] == "random-projection" and head.meta["targets"]["k"] == 16
    wave = np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.1
    units = head.assign(encoder.extract(wave, [head.layer])[head.layer])
    logits = head_forward_units(models[name], wave)
    assert logits.shape == (len(units), 16)
    chosen = logits[torch.arange(len(units)), torch.from_numpy(units)]
    # every unit is the forward's best (up to float noise), and they agree frame by frame
    assert float((logits.max(-1).values - chosen).max()) < 1e-4
    assert np.mean(logits.argmax(-1).numpy() == units) > 0.98
    assert len(np.unique(units)) > 1


def test_pre_ln_needs_its_final_layer_norm(models: dict[str, Path]) -> None:
    """Without the final LayerNorm the pre-LN head reads other features: the test above is not vacuous."""
    from speechunits.encoders import load_encoder

    head = PredictionHeadCodebook.from_pretrained(models["pre-ln"])
    bare = PredictionHeadCodebook(head.centroids, {**head.meta, "final_norm_eps": None}, projection=head.projection,
                                  projection_bias=head.projection_bias)
    encoder = load_encoder(str(models["pre-ln"]), device="cpu")
    wave = np.random.default_rng(2).standard_normal(32000).astype(np.float32) * 0.1
    feats = encoder.extract(wave, [2])[2]
    logits = head_forward_units(models["pre-ln"], wave)
    assert np.mean(logits.argmax(-1).numpy() == bare.assign(feats)) < 0.9
    assert bare.sha256 != head.sha256


def test_save_load_round_trip_and_tampering(models: dict[str, Path], tmp_path: Path) -> None:
    head = PredictionHeadCodebook.from_pretrained(models["pre-ln"])
    head.save(tmp_path / "cb")
    loaded = Codebook.load(tmp_path / "cb")
    assert isinstance(loaded, PredictionHeadCodebook) and loaded.sha256 == head.sha256
    x = np.random.default_rng(0).standard_normal((50, 32)).astype(np.float32)
    np.testing.assert_array_equal(loaded.assign(x), head.assign(x))
    meta = json.loads((tmp_path / "cb" / "codebook.json").read_text())
    assert meta["kind"] == "prediction-head" and meta["final_norm_eps"] > 0
    assert meta["code_dim"] == head.projection.shape[1] == head.centroids.shape[1]
    # a changed bias is a changed quantiser: the stored sha256 no longer matches
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "cb" / "codebook.safetensors"))
    tensors["projection_bias"] = tensors["projection_bias"] + 1.0
    save_file(tensors, str(tmp_path / "cb" / "codebook.safetensors"))
    with pytest.raises(SpeechUnitsError, match="content sha256"):
        Codebook.load(tmp_path / "cb")
    del tensors["final_norm_bias"]
    save_file(tensors, str(tmp_path / "cb" / "codebook.safetensors"))
    with pytest.raises(SpeechUnitsError, match="needs both final_norm_weight and final_norm_bias"):
        Codebook.load(tmp_path / "cb")


def test_bad_heads_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    head = PredictionHeadCodebook.from_pretrained(models["post-ln"])
    with pytest.raises(SpeechUnitsError, match="unit length"):
        PredictionHeadCodebook(2 * head.centroids, head.meta, projection=head.projection,
                               projection_bias=head.projection_bias)
    with pytest.raises(SpeechUnitsError, match="does not map onto unit embeddings"):
        PredictionHeadCodebook(head.centroids, head.meta, projection=head.projection[:, :3],
                               projection_bias=head.projection_bias)
    with pytest.raises(SpeechUnitsError, match="projection_bias has shape"):
        PredictionHeadCodebook(head.centroids, head.meta, projection=head.projection,
                               projection_bias=head.projection_bias[:2])
    with pytest.raises(SpeechUnitsError, match="positive 'final_norm_eps'"):
        PredictionHeadCodebook(head.centroids, head.meta, projection=head.projection,
                               projection_bias=head.projection_bias, final_norm=(torch.ones(32), torch.zeros(32)))
    with pytest.raises(SpeechUnitsError, match="do not match codebook dim 32"):
        head.assign(np.zeros((4, 31), np.float32))
    # an exported encoder that is not the training checkpoint's is refused
    from safetensors.torch import load_file, save_file

    swapped = tmp_path / "swapped"
    shutil.copytree(models["post-ln"], swapped)
    weights = load_file(str(swapped / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-3
    save_file(weights, str(swapped / "model.safetensors"))
    with pytest.raises(SpeechUnitsError, match="exported encoder is not the one in training/"):
        PredictionHeadCodebook.from_pretrained(swapped)
    # an exported model alone (no training/) has no head
    exported = tmp_path / "exported"
    shutil.copytree(models["post-ln"], exported, ignore=shutil.ignore_patterns("training"))
    with pytest.raises(SpeechUnitsError, match="no pretraining checkpoint"):
        PredictionHeadCodebook.from_pretrained(exported)


def test_cli_from_head_then_encode(models: dict[str, Path], tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.pretrain.data import load_waves
    from speechunits.units.store import UnitStore

    cb, store = tmp_path / "cb", tmp_path / "units"
    assert main(["codebook", "from-head", str(models["pre-ln"]), "-o", str(cb), "--quiet"]) == 0
    assert main(["encode", str(models["audio"]), "--codebook", str(cb), "-o", str(store), "--device", "cpu",
                 "--quiet"]) == 0
    head = Codebook.load(cb)
    encoder = load_encoder(str(models["pre-ln"]), device="cpu")
    units = UnitStore.open(store).to_dict()
    waves = dict(load_waves(open_corpus(models["audio"]), 16000, 400))
    assert units.keys() == waves.keys()
    for utt, wave in waves.items():
        np.testing.assert_array_equal(units[utt].ids, head.assign(encoder.extract(wave, [2])[2]))
    # features of another model (same shape) are refused by identity
    from speechunits.units.tokenizer import UnitTokenizer

    with pytest.raises(SpeechUnitsError, match="identity"):
        UnitTokenizer(load_encoder(str(models["post-ln"]), device="cpu"), [head])
    assert "no pretraining checkpoint" in cli_error(["codebook", "from-head", str(models["audio"]), "-o",
                                                     str(tmp_path / "cb2")], caplog)
