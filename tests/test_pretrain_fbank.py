"""``pretrain --frontend fbank``: a Wav2Vec2BertModel trained on the filterbanks its exported feature
extractor makes; frame geometry at 50 and 100 Hz, inputs equal to the encoder's at inference, export,
resume, iteration 2, --init and its refusals (the loss falling: test_pretrain.py, both front ends)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.config import PretrainConfig, model_config
from speechunits.pretrain.front_end import model_inputs

#: Conformer blocks small enough for CI.
SMALL_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  conv_depthwise_kernel_size=5)


def fbank_config(**overrides) -> PretrainConfig:
    base = dict(frontend="fbank", targets="random-projection:16", steps=4, max_batch_seconds=4.0, crop_seconds=1.0,
                warmup_steps=1, log_every=1, checkpoint_every=100, dropout=0.1, extra_model=SMALL_BERT)
    base.update(overrides)
    return PretrainConfig(**base)


@pytest.mark.parametrize("rate,hop,field", [(100, 160, 400), (50, 320, 560)])
def test_geometry_and_model_output_length(rate, hop, field):
    """Hand-computed: filterbank frames (T - 400) // 160 + 1, stacked by 2 at 50 Hz; the model gives one
    output per frame of ``model_inputs``."""
    import transformers

    train = fbank_config(frame_rate=rate)
    assert (train.hop_length, train.receptive_field) == (hop, field)
    for samples in (field - 1, field, field + hop - 1, field + hop, 16000):
        fbank = 0 if samples < 400 else (samples - 400) // 160 + 1
        assert train.num_frames(samples) == fbank // (rate == 50 and 2 or 1)
    inputs = model_inputs(torch.randn(2, 16000) * 0.1, train)
    assert inputs.shape == (2, train.num_frames(16000), 80 * (100 // rate))
    model = transformers.Wav2Vec2BertModel(model_config(train)).eval()
    with torch.no_grad():
        assert model(inputs).last_hidden_state.shape[1] == train.num_frames(16000)


def test_tiny_preset_is_the_cnn_presets_size():
    """The fbank ``tiny`` preset: same width and depth as the CNN one and within 15 % of its parameters."""
    import transformers

    from speechunits.pretrain.config import hubert_config

    cnn = transformers.HubertModel(hubert_config(PretrainConfig(model="tiny", frame_rate=100)))
    bert = transformers.Wav2Vec2BertModel(model_config(PretrainConfig(model="tiny", frame_rate=100, frontend="fbank")))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (bert.config.hidden_size, bert.config.num_hidden_layers) == (256, 6)
    assert abs(count(bert) / count(cnn) - 1) < 0.15


@pytest.mark.parametrize("rate", [100, 50])
def test_export_loads_and_reads_what_training_read(tmp_path, tone_dir, rate):
    """The exported directory is a Wav2Vec2BertModel with its feature extractor; load_encoder gives the
    filterbank encoder, whose input for a crop is exactly what training fed the model, and whose frames
    are the targets' frames."""
    import transformers

    from speechunits.encoders import load_encoder
    from speechunits.encoders.hf_fbank import HFFbankEncoder
    from speechunits.corpus import open_corpus
    from speechunits.pretrain import pretrain
    from speechunits.pretrain.data import load_waves

    train = fbank_config(steps=2, frame_rate=rate)
    result = pretrain(tone_dir, tmp_path / "m", train, quiet=True)
    model = transformers.AutoModel.from_pretrained(str(tmp_path / "m"))
    assert type(model).__name__ == "Wav2Vec2BertModel"
    encoder = load_encoder(str(tmp_path / "m"), device="cpu")
    assert isinstance(encoder, HFFbankEncoder) and encoder.info.frame_rate == rate
    crop = np.random.default_rng(0).standard_normal(12345).astype(np.float32) * 0.1
    trained_on = model_inputs(torch.from_numpy(crop)[None], train)[0].numpy()
    np.testing.assert_array_equal(encoder.filterbanks(crop), trained_on)
    waves = dict(load_waves(open_corpus(tone_dir), 16000, train.receptive_field))
    assert result.targets.labels and waves.keys() >= result.targets.labels.keys()
    for utt_id, labels in result.targets.labels.items():
        assert len(labels) == encoder.info.num_frames(len(waves[utt_id])) == len(encoder.extract(waves[utt_id], [1])[1])


def test_resume_iterate_and_init(tmp_path, tone_dir):
    from speechunits.pretrain import pretrain
    from speechunits.pretrain.iterate import pretrain_iterations
    from speechunits.training.checkpoint import read_state

    full = pretrain(tone_dir, tmp_path / "full", fbank_config(steps=4), quiet=True)
    pretrain(tone_dir, tmp_path / "part", fbank_config(steps=2), quiet=True)
    resumed = pretrain(tone_dir, tmp_path / "part", fbank_config(steps=4), resume=True, quiet=True)
    assert read_state(tmp_path / "part")["pretrain"]["frontend"] == "fbank"
    np.testing.assert_allclose([h.loss for h in resumed.history], [h.loss for h in full.history[2:]], rtol=1e-5)
    # iteration 2 on k-means of iteration 1's layer 1, read through the filterbank encoder
    results = pretrain_iterations(tone_dir, tmp_path / "it", fbank_config(steps=2, targets="mfcc:8"), iterations=2,
                                  layer=1, k=8, quiet=True)
    assert results[-1].targets.spec["kind"] == "codebook" and results[-1].targets.spec["layer"] == 1
    # --init from an fbank model of the same shape; a CNN model or another shape is refused
    init = pretrain(tone_dir, tmp_path / "init", fbank_config(steps=1, init=str(tmp_path / "full")), quiet=True)
    assert init.init["path"] == str(tmp_path / "full")
    with pytest.raises(SpeechUnitsError, match="--frontend cnn"):
        pretrain(tone_dir, tmp_path / "bad", PretrainConfig(targets="random-projection:16", steps=1,
                                                            init=str(tmp_path / "full")), quiet=True)
    with pytest.raises(SpeechUnitsError, match="frontend"):
        PretrainConfig(frontend="spectrogram")
