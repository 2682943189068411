"""encoders/cpu/time_major_conv.py: channels-last conv2d equals conv1d, keeps time-major layout, swaps modules."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers as tf

from conftest import BF16_MAX_REL_L2, BF16_MIN_REL_L2
from speechunits.encoders.cpu import onednn
from speechunits.encoders.cpu.time_major_conv import TimeMajorConv1d, is_temporal_padded, use_time_major_convs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=32, out_channels=32, kernel_size=16, padding=8, groups=4),  # HuBERT's positional conv
        dict(in_channels=24, out_channels=24, kernel_size=7, padding=3, groups=24),  # depthwise (conformer)
        dict(in_channels=16, out_channels=8, kernel_size=3, stride=2, bias=False),  # CNN layers 2..
        dict(in_channels=16, out_channels=16, kernel_size=5, padding="same", dilation=2),
    ],
)
def test_equals_conv1d(kwargs: dict, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(**kwargs).to(dtype)
    hidden = torch.randn(3, 41, kwargs["in_channels"], dtype=dtype).transpose(1, 2)  # [B, C, T] view, time-major
    module = TimeMajorConv1d(conv)
    with torch.inference_mode():
        want = conv(hidden)
        got = module(hidden)
        from_channel_major = module(hidden.contiguous())
    assert got.shape == want.shape
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(from_channel_major, want, **tol)
    if module._packed is not None:  # oneDNN's path (a CPU without bf16 support falls back to conv1d, any layout)
        assert got.transpose(1, 2).is_contiguous()  # output stored [B, T', C]: the encoder's layout
    else:
        assert dtype == torch.bfloat16 and not onednn.supports(torch.bfloat16)


needs_onednn = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN: no packed path")


@needs_onednn
@pytest.mark.parametrize("tiles", [(256, 32), (8, 3)])
def test_tiles_over_time_equal_conv1d(monkeypatch, tiles: tuple[int, int]) -> None:
    """Stride-1 padded convolutions run in fixed-size time tiles: many tiles, a short tail, a batch."""
    import speechunits.encoders.cpu.time_major_conv as tmc

    monkeypatch.setattr(tmc, "TILE_FRAMES", tiles[0])
    monkeypatch.setattr(tmc, "TAIL_FRAMES", tiles[1])
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(32, 32, 16, padding=8, groups=4)  # even kernel: T + 1 output frames, as HuBERT's
    module = TimeMajorConv1d(conv)
    assert module._packed is not None  # the packed, tiled path is the one under test (tiles exist only there)
    hidden = torch.randn(3, 53, 32).transpose(1, 2)
    with torch.inference_mode():
        got, want = module(hidden), conv(hidden)
    assert got.shape == want.shape == (3, 32, 54)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_moves_with_the_module_and_keeps_autograd() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(16, 16, 5, padding=2, groups=2)
    module = TimeMajorConv1d(conv).to(torch.bfloat16)  # packed again for the new dtype
    hidden = torch.randn(2, 16, 40)
    with torch.inference_mode():
        got = module(hidden.bfloat16())
    torch.testing.assert_close(got.float(), conv(hidden).detach(), rtol=2e-2, atol=2e-2)
    module = TimeMajorConv1d(conv)
    leaf = hidden.clone().requires_grad_()
    module(leaf).sum().backward()  # grad mode: plain conv2d, differentiable
    expected = hidden.clone().requires_grad_()
    conv(expected).sum().backward()
    torch.testing.assert_close(leaf.grad, expected.grad, rtol=1e-5, atol=1e-5)


def test_other_padding_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="reflect"):
        TimeMajorConv1d(torch.nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"))


def test_replaces_padded_convolutions_only_when_asked() -> None:
    block = torch.nn.Sequential(torch.nn.Conv1d(4, 4, 3, padding=1), torch.nn.Sequential(torch.nn.Conv1d(4, 4, 3)),
                                torch.nn.Conv1d(4, 4, 3, padding=1, padding_mode="circular"))
    assert use_time_major_convs(copy.deepcopy(block), padded_only=True) == 1
    swapped = copy.deepcopy(block)
    assert use_time_major_convs(swapped) == 2  # circular padding is not a zero-padded convolution: kept
    assert isinstance(swapped[0], TimeMajorConv1d) and is_temporal_padded(swapped[0])
    assert isinstance(swapped[1][0], TimeMajorConv1d) and not is_temporal_padded(swapped[1][0])
    assert isinstance(swapped[2], torch.nn.Conv1d)


def _tiny_hubert(tmp_path, norm: str = "group"):
    torch.manual_seed(0)
    config = tf.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16,) * 7, feat_extract_norm=norm, conv_bias=norm == "layer",
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    model = tf.HubertModel(config).eval()
    model.save_pretrained(tmp_path)
    return model


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_cpu_encoder_swaps_and_still_matches_transformers(tmp_path, norm: str) -> None:
    from speechunits.encoders import load_encoder

    model = _tiny_hubert(tmp_path, norm)
    wave = np.random.default_rng(0).standard_normal(16000 * 6).astype(np.float32) * 0.1  # several CNN pieces
    with torch.inference_mode():
        want = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states
    fp32 = load_encoder(str(tmp_path), device="cpu", dtype="fp32")
    assert isinstance(fp32.model.encoder.pos_conv_embed.conv, TimeMajorConv1d)
    assert isinstance(fp32.model.feature_extractor.conv_layers[1].conv, torch.nn.Conv1d)  # fp32 CNN: channel-major
    got = fp32.extract(wave, [0, 2])
    np.testing.assert_allclose(got[2], want[2][0].numpy(), rtol=1e-4, atol=1e-4)

    bf16 = load_encoder(str(tmp_path), device="cpu", dtype="bf16")
    assert isinstance(bf16.model.feature_extractor.conv_layers[1].conv, TimeMajorConv1d)
    assert isinstance(bf16.model.feature_extractor.conv_layers[0].conv, torch.nn.Conv1d)  # the first layer: a matmul
    low = bf16.extract(wave, [0, 2])
    for layer in (0, 2):
        rel = np.linalg.norm(low[layer] - want[layer][0].numpy()) / np.linalg.norm(want[layer][0].numpy())
        assert BF16_MIN_REL_L2 < rel < BF16_MAX_REL_L2, (layer, rel)


@pytest.mark.skipif(not onednn.supports(torch.bfloat16),
                    reason="this CPU has no oneDNN bf16 (AVX512-BF16, AMX or AVX-NE-CONVERT)")
@pytest.mark.parametrize("norm", ["group", "layer"])
def test_cpu_encoder_bf16_packs_linears_and_fuses_gelus(tmp_path, norm: str) -> None:
    """bf16 on CPU with oneDNN: packed linears and packed CNN convolutions, GELUs fused where nothing sits between."""
    from speechunits.encoders import load_encoder

    _tiny_hubert(tmp_path, norm)
    bf16 = load_encoder(str(tmp_path), device="cpu", dtype="bf16")
    assert isinstance(bf16.model.encoder.layers[0].feed_forward.intermediate_dense, onednn.PackedLinear)
    conv = bf16.model.feature_extractor.conv_layers[1].conv
    assert conv._packed is not None
    assert conv.gelu is (norm == "group")  # layer-norm CNN layers: the norm sits between conv and GELU


def test_cpu_encoder_bf16_without_onednn_bf16_keeps_plain_linears(tmp_path, monkeypatch) -> None:
    """A CPU without bf16 instructions (plain AVX2): no packed linears or fused GELUs, and bf16 still encodes."""
    from speechunits.encoders import load_encoder

    monkeypatch.setattr(onednn, "supports", lambda dtype: False)
    model = _tiny_hubert(tmp_path, "group")
    wave = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    with torch.inference_mode():
        want = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states
    bf16 = load_encoder(str(tmp_path), device="cpu", dtype="bf16")
    assert isinstance(bf16.model.encoder.layers[0].feed_forward.intermediate_dense, torch.nn.Linear)
    assert not isinstance(bf16.model.encoder.layers[0].feed_forward.intermediate_dense, onednn.PackedLinear)
    assert bf16.model.feature_extractor.conv_layers[1].conv.gelu is False
    low = bf16.extract(wave, [2])
    rel = np.linalg.norm(low[2] - want[2][0].numpy()) / np.linalg.norm(want[2][0].numpy())
    assert rel < BF16_MAX_REL_L2


def test_fragile_grouped_convs_stay_fp32_under_bf16() -> None:
    """Grouped convolutions with < 16 channels per group (torch's CPU bf16 kernel is wrong for them on
    some CPUs) run in fp32 on bf16-rounded weights; others, and fp32 models, are left alone."""
    from speechunits.encoders.cpu.grouped_conv import Fp32Conv1d, is_fragile_grouped_conv
    from speechunits.encoders.hf import prepare_model

    assert is_fragile_grouped_conv(torch.nn.Conv1d(32, 32, 16, groups=4))
    assert not is_fragile_grouped_conv(torch.nn.Conv1d(64, 64, 16, groups=4))  # 16 per group
    assert not is_fragile_grouped_conv(torch.nn.Conv1d(32, 32, 16, groups=32))  # depthwise
    assert not is_fragile_grouped_conv(torch.nn.Conv1d(32, 32, 16))

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(32, 32, 16, padding=8, groups=4)
    weight, bias = conv.weight.detach().clone(), conv.bias.detach().clone()
    wrapped = Fp32Conv1d(conv).to(torch.bfloat16)  # the model's .to(bf16) rounds, but does not lower, it
    assert wrapped.conv.weight.dtype == torch.float32
    x = torch.randn(1, 32, 200).to(torch.bfloat16)
    with torch.inference_mode():
        out = wrapped(x)
    assert out.dtype == torch.bfloat16
    rounded = torch.nn.functional.conv1d(x.double(), weight.bfloat16().double(), bias.bfloat16().double(),
                                         padding=8, groups=4)
    assert torch.allclose(out.double(), rounded, rtol=1e-2, atol=1e-2)

    for dtype, wraps in ((torch.bfloat16, True), (torch.float32, False)):
        config = tf.HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                 conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
        model = prepare_model(tf.HubertModel(config), torch.device("cpu"), dtype)
        assert isinstance(model.encoder.pos_conv_embed.conv, Fp32Conv1d) == wraps
