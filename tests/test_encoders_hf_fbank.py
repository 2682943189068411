"""w2v-BERT 2.0-style encoders (filterbank input): layers equal transformers' own forward on its own
feature extractor's output, exact batching, frame geometry, identity and refusals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_conformer
from speechunits.encoders import load_encoder
from speechunits.encoders.hf_fbank import HFFbankEncoder
from speechunits.errors import SpeechUnitsError

# the receptive field (1 frame), an odd and an even number of filterbank frames, a long input
LENGTHS = (560, 4321, 9000, 24000)


def _waves(lengths=LENGTHS, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n) + 0.01).astype(np.float32) for n in lengths]


def _save_tiny_w2v_bert(out: Path, position: str = "relative_key", seed: int = 0, stride: int = 2) -> Path:
    return make_tiny_conformer(out, "w2v-bert", position, seed=seed, stride=stride)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny_w2v_bert(tmp_path_factory.mktemp("w2v-bert"))


def _reference(model_dir: Path, wave: np.ndarray) -> tuple[tuple[torch.Tensor, ...], int]:
    """transformers' hidden states for its own feature extractor's output, and the valid frames.

    At stride 1 transformers' attention mask comes out empty, so that input goes unpadded and unmasked."""
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    extractor = AutoFeatureExtractor.from_pretrained(str(model_dir))
    if extractor.stride == 1:
        inputs = extractor(wave, sampling_rate=16000, return_tensors="pt", pad_to_multiple_of=None)
        inputs.pop("attention_mask")
        valid = inputs["input_features"].shape[1]
    else:
        inputs = extractor(wave, sampling_rate=16000, return_tensors="pt")
        valid = int(inputs["attention_mask"].sum())
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    return hidden, valid


@pytest.mark.parametrize("position,stride", [("relative_key", 2), ("rotary", 2), ("relative", 2), ("rotary", 1)])
def test_layers_equal_transformers_and_batch_exactly(tmp_path: Path, position: str, stride: int) -> None:
    torch.set_num_threads(1)
    model_dir = _save_tiny_w2v_bert(tmp_path / position, position, stride=stride)
    enc = load_encoder(str(model_dir), device="cpu")
    assert isinstance(enc, HFFbankEncoder)
    layers = [0, 1, 2, 3]
    waves = _waves()
    batched = enc.extract_batch(waves, layers)
    for wave, got in zip(waves, batched):
        reference, valid = _reference(model_dir, wave)
        assert len(reference) == 4
        alone = enc.extract(wave, layers)
        for layer in layers:
            expected = reference[layer][0, :valid].numpy()
            assert alone[layer].shape == expected.shape == (enc.info.num_frames(len(wave)), 32)
            assert enc.info.num_frames(len(wave)) == ((len(wave) - 400) // 160 + 1) // stride
            np.testing.assert_allclose(alone[layer], expected, atol=1e-5)
            scale = np.abs(expected).max()
            assert np.abs(got[layer] - expected).max() <= 1e-4 * scale, (len(wave), layer)


# one filterbank frame (559 samples): the extractor's per-bin variance (ddof=1) warns; its mask is still right
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_geometry_is_the_extractors(bert_dir: Path) -> None:
    """hop 320 and a 560-sample first frame (two stacked 25 ms windows); frame counts match the extractor's
    valid frames for every length around the boundaries."""
    from transformers import AutoFeatureExtractor

    enc = load_encoder(str(bert_dir), device="cpu")
    assert (enc.info.hop_length, enc.info.receptive_field, enc.info.frame_rate) == (320, 560, 50.0)
    extractor = AutoFeatureExtractor.from_pretrained(str(bert_dir))
    rng = np.random.default_rng(1)
    for n in (559, 560, 719, 720, 879, 880, 881, 1199, 1200, 16000):
        mask = extractor(rng.standard_normal(n).astype(np.float32), sampling_rate=16000,
                         return_tensors="np")["attention_mask"]
        assert enc.info.num_frames(n) == int(mask.sum()), n


def test_truncation_and_bf16(bert_dir: Path) -> None:
    """Blocks past the deepest layer asked for never run; bf16 stays close to fp32."""
    enc = load_encoder(str(bert_dir), device="cpu")
    wave = _waves((9000,))[0]
    full = enc.extract(wave, [0, 1, 2, 3])
    calls = []
    handle = enc.model.encoder.layers[2].register_forward_hook(lambda *a: calls.append(1))
    try:
        shallow = enc.extract(wave, [1])
    finally:
        handle.remove()
    assert not calls
    np.testing.assert_array_equal(shallow[1], full[1])
    low = load_encoder(str(bert_dir), device="cpu", dtype="bf16").extract(wave, [3])[3]
    rel = np.linalg.norm(low - full[3]) / np.linalg.norm(full[3])
    assert 0 < rel < 0.05


def test_identity_is_that_of_the_weights(tmp_path: Path, bert_dir: Path) -> None:
    """As for waveform models: config and weights (what a fine-tuning probe checks its base against)."""
    from speechunits.encoders.hf import model_identity
    from transformers import AutoModel

    same = load_encoder(str(bert_dir), device="cpu").info.identity
    other_seed = load_encoder(str(_save_tiny_w2v_bert(tmp_path / "seed1", seed=1)), device="cpu").info.identity
    model = AutoModel.from_pretrained(str(bert_dir))
    assert same == model_identity(model, model.config.to_json_string()) != other_seed


def test_short_input_and_mismatched_extractor_are_refused(tmp_path: Path, bert_dir: Path) -> None:
    import transformers as tf

    enc = load_encoder(str(bert_dir), device="cpu")
    with pytest.raises(SpeechUnitsError, match="shorter than the receptive field"):
        enc.extract(np.zeros(559, dtype=np.float32), [1])
    model = tf.AutoModel.from_pretrained(str(bert_dir))
    with pytest.raises(SpeechUnitsError, match="3 x 80 = 240"):
        HFFbankEncoder(model, "x", tf.SeamlessM4TFeatureExtractor(stride=3), device="cpu")
    with pytest.raises(SpeechUnitsError, match="16000 Hz"):
        HFFbankEncoder(model, "x", tf.SeamlessM4TFeatureExtractor(sampling_rate=8000), device="cpu")
    with pytest.raises(SpeechUnitsError, match="not a filterbank one"):
        HFFbankEncoder(model, "x", tf.Wav2Vec2FeatureExtractor(), device="cpu")
    bare = tmp_path / "no-preprocessor"
    model.save_pretrained(bare)
    with pytest.raises(SpeechUnitsError, match="preprocessor_config.json"):
        load_encoder(str(bare), device="cpu")
