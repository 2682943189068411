"""encoders/cpu/cnn_chunks.py: the CNN over time in pieces equals transformers' CNN on the whole utterance."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers as tf

from speechunits.encoders.base import conv_geometry
from speechunits.encoders.cpu.cnn_chunks import cnn_in_chunks
from speechunits.encoders.cpu.first_conv import FirstLayerPlan
from speechunits.encoders.cpu.time_major_conv import use_time_major_convs


def _model(norm: str) -> tf.HubertModel:
    torch.manual_seed(0)
    config = tf.HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16,) * 7, feat_extract_norm=norm, conv_bias=norm == "layer")
    return tf.HubertModel(config).eval()


def test_conv_geometry_of_hubert_layers_2_to_7() -> None:
    # hand-computed: hop 2^6 = 64; field 1 + 2 + 4 + 8 + 16 + 16 + 32 = 79 first-layer frames
    assert conv_geometry((3, 3, 3, 3, 2, 2), (2, 2, 2, 2, 2, 2)) == (64, 79)
    assert conv_geometry((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == (320, 400)


@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("samples", [400, 16000, 16000 * 3 + 1234, 16000 * 3 + 319])
@pytest.mark.parametrize("chunk", [1, 7, 50])
@pytest.mark.parametrize("time_major,round_frames", [(False, 1), (True, 1), (True, 8)])
def test_pieces_equal_the_whole(norm: str, samples: int, chunk: int, time_major: bool, round_frames: int) -> None:
    model = _model(norm)
    layers = copy.deepcopy(model.feature_extractor.conv_layers)
    if time_major:  # what a bf16 CPU encoder runs: layers 2.. as channels-last convolutions
        for layer in layers[1:]:
            use_time_major_convs(layer)
    wave = torch.randn(1, samples) * 0.2 + 0.01
    cfg = model.config
    with torch.inference_mode():
        want = model.feature_extractor(wave)  # transformers, whole utterance
        plan = FirstLayerPlan(layers[0], wave, [(samples - 10) // 5 + 1], time_major=time_major)
        got = cnn_in_chunks(plan, layers[1:], wave, cfg.conv_kernel, cfg.conv_stride, chunk_frames=chunk,
                            round_frames=round_frames)
    assert got.shape == want.shape == (1, 16, (samples - 400) // 320 + 1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if time_major and got.shape[2] > chunk:  # joined pieces come back time-major: no copy before the projection
        assert got.transpose(1, 2).is_contiguous()


def test_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk_frames"):
        cnn_in_chunks(lambda w: w, [], torch.zeros(1, 4000), (10,), (5,), chunk_frames=0)
    with pytest.raises(ValueError, match="round_frames"):
        cnn_in_chunks(lambda w: w, [], torch.zeros(1, 4000), (10,), (5,), round_frames=0)


def test_last_piece_is_rounded_up_from_zero_samples() -> None:
    """With round_frames, every piece the layers see has a multiple of that many frames."""
    model = _model("group")
    layers = model.feature_extractor.conv_layers
    wave = torch.randn(1, 16000 * 3 + 1234)  # 153 frames: pieces of 50, 50, 50 and 3 (rounded to 8)
    cfg = model.config
    seen = []
    with torch.inference_mode():
        want = model.feature_extractor(wave)
        layers[-1].register_forward_hook(lambda module, args, out: seen.append(out.shape[2]))
        plan = FirstLayerPlan(layers[0], wave, [(wave.shape[1] - 10) // 5 + 1])
        got = cnn_in_chunks(plan, layers[1:], wave, cfg.conv_kernel, cfg.conv_stride, chunk_frames=50, round_frames=8)
    assert seen == [50, 50, 50, 8] and got.shape[2] == 153
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_encoder_uses_pieces_on_cpu_and_matches_transformers(tmp_path) -> None:
    from speechunits.encoders import load_encoder

    model = _model("group")
    model.save_pretrained(tmp_path)
    encoder = load_encoder(str(tmp_path), device="cpu")
    assert encoder.cpu_kernels is not None and encoder.cpu_kernels.cnn_in_pieces
    wave = np.random.default_rng(0).standard_normal(16000 * 7).astype(np.float32) * 0.1  # 349 frames: 3 pieces
    with torch.inference_mode():
        hidden = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states
    got = encoder.extract(wave, [0, 1])
    np.testing.assert_allclose(got[0], hidden[0][0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1], hidden[1][0].numpy(), rtol=1e-4, atol=1e-4)
