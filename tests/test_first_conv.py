"""The first CNN layer as a matmul with folded GroupNorm, checked against transformers' own layer."""
from __future__ import annotations

import pytest
import torch
import transformers as tf

from speechunits.encoders.cpu.first_conv import FirstLayerPlan, is_plain_first_conv


def first_conv_layer(layer, batch, valid):
    """The plan run on the whole batch it was made from."""
    return FirstLayerPlan(layer, batch, valid)(batch)


def first_layer(norm: str, conv_bias: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    config = tf.Wav2Vec2Config(conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=conv_bias,
                               feat_extract_norm=norm, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64)
    layer = tf.Wav2Vec2Model(config).feature_extractor.conv_layers[0].eval()
    norm_module = getattr(layer, "layer_norm", None)
    if norm_module is not None:  # non-trivial affine parameters
        with torch.no_grad():
            norm_module.weight.uniform_(0.5, 1.5)
            norm_module.bias.uniform_(-0.5, 0.5)
    return layer


@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_equals_transformers_layer_one_utterance(norm: str, conv_bias: bool) -> None:
    layer = first_layer(norm, conv_bias)
    assert is_plain_first_conv(layer)
    wave = torch.randn(1, 4003) * 0.3 + 0.05  # a DC offset too
    with torch.inference_mode():
        expected = layer(wave[:, None])
        got = first_conv_layer(layer, wave, [(4003 - 10) // 5 + 1])
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_group_norm_statistics_use_each_utterances_valid_frames() -> None:
    layer = first_layer("group", conv_bias=False)
    long, short = torch.randn(4000), torch.randn(2500) * 3.0
    batch = torch.zeros(2, 4000)
    batch[0], batch[1, :2500] = long, short
    valid = [(4000 - 10) // 5 + 1, (2500 - 10) // 5 + 1]
    with torch.inference_mode():
        got = first_conv_layer(layer, batch, valid)
        alone = layer(short[None, None])
    torch.testing.assert_close(got[1, :, : valid[1]], alone[0], rtol=1e-4, atol=1e-5)
    assert torch.isfinite(got).all()


def test_bf16_close_to_fp32() -> None:
    layer = first_layer("group", conv_bias=False)
    wave = torch.randn(1, 8000)
    with torch.inference_mode():
        expected = layer(wave[:, None])
        got = first_conv_layer(layer.to(torch.bfloat16), wave.to(torch.bfloat16), [(8000 - 10) // 5 + 1])
    assert got.dtype == torch.bfloat16
    rel = (got.float() - expected).norm() / expected.norm()
    assert 1e-3 < rel < 1e-2  # measured 0.37-0.45 % (bf16's unit: 2^-8 = 0.39 %); was < 2e-2


def test_unusual_first_layers_are_not_claimed() -> None:
    layer = first_layer("group", conv_bias=False)
    layer.conv = torch.nn.Conv1d(1, 32, 10, 5, padding=2)
    assert not is_plain_first_conv(layer)
    layer = first_layer("group", conv_bias=False)
    layer.layer_norm = torch.nn.GroupNorm(4, 32)  # groups spanning channels: statistics do not fold per channel
    assert not is_plain_first_conv(layer)
