"""encoders/cpu/onednn.py: packed linears and fused GELUs equal the plain ops (to bf16 rounding), and fall back."""
from __future__ import annotations

import copy

import pytest
import torch
import transformers as tf

from speechunits.encoders.cpu import onednn
from speechunits.encoders.cpu.first_conv import FirstLayerPlan
from speechunits.encoders.cpu.onednn import PackedLinear, is_exact_gelu, use_packed_linears
from speechunits.encoders.cpu.time_major_conv import TimeMajorConv1d, use_time_major_cnn_layer

needs_onednn = pytest.mark.skipif(not onednn.available(), reason="torch built without oneDNN")
BF16 = dict(rtol=2e-2, atol=2e-2)
#: bf16 module against its plain bf16 twin (relative L2): a rounding or two apart, measured 0.07-0.37 %
#: (bf16's unit is 2^-8 = 0.39 %); the bound is ~2.5x that (was 2e-2).
BF16_MODULE_REL_L2 = 1e-2


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


@needs_onednn
@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_linear_equals_linear(gelu: bool, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80).to(dtype)
    packed = PackedLinear(linear, gelu=gelu)
    assert (packed._packed is not None) == onednn.supports(dtype)  # bf16 needs AVX512-BF16/AMX: else F.linear
    hidden = torch.randn(3, 17, 48, dtype=dtype)  # [B, T, D]: rows are flattened and restored
    with torch.inference_mode():
        want = linear(hidden.float() if dtype == torch.float32 else hidden)
        want = torch.nn.functional.gelu(want) if gelu else want
        got = packed(hidden)
    assert got.shape == (3, 17, 80) and got.dtype == dtype
    torch.testing.assert_close(got, want, **(dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else BF16))


def test_packed_linear_falls_back_under_autograd_and_keeps_parameters() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 4)
    packed = PackedLinear(linear, gelu=True)
    assert packed.weight is linear.weight and set(dict(packed.named_parameters())) == {"weight", "bias"}
    x = torch.randn(5, 8)
    packed(x).sum().backward()
    plain = copy.deepcopy(linear)
    plain.weight.grad = None
    torch.nn.functional.gelu(plain(x)).sum().backward()
    torch.testing.assert_close(linear.weight.grad, plain.weight.grad)  # the GELU's gradient too
    torch.testing.assert_close(packed(x), torch.nn.functional.gelu(linear(x)))


@needs_onednn
def test_packed_linear_repacks_when_moved() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 16)
    packed = PackedLinear(copy.deepcopy(linear)).to(torch.bfloat16)
    x = torch.randn(6, 32)
    with torch.inference_mode():
        got = packed(x.bfloat16())
    torch.testing.assert_close(got.float(), linear(x).detach(), **BF16)


def test_exact_gelu_detection() -> None:
    from transformers.activations import ACT2FN

    assert is_exact_gelu(torch.nn.GELU()) and is_exact_gelu(ACT2FN["gelu"])
    assert not is_exact_gelu(torch.nn.GELU(approximate="tanh"))
    assert not is_exact_gelu(ACT2FN["gelu_new"]) and not is_exact_gelu(torch.nn.ReLU())


@needs_onednn
def test_use_packed_linears_on_a_hubert_encoder() -> None:
    torch.manual_seed(0)
    config = tf.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    model = tf.HubertModel(config).eval().to(torch.bfloat16)
    reference = copy.deepcopy(model)
    assert use_packed_linears(model.encoder) == 2 * 6  # q, k, v, out, two feed-forward linears per block
    block = model.encoder.layers[0].feed_forward
    assert block.intermediate_dense.gelu and isinstance(block.intermediate_act_fn, torch.nn.Identity)
    assert not block.output_dense.gelu
    hidden = torch.randn(2, 40, 32, dtype=torch.bfloat16)
    with torch.inference_mode():
        got = model.encoder(hidden).last_hidden_state
        want = reference.encoder(hidden).last_hidden_state
    assert _relative(got, want) < BF16_MODULE_REL_L2


@needs_onednn
def test_conv_layer_gelu_fused_only_without_norm() -> None:
    torch.manual_seed(0)
    plain = tf.HubertModel(tf.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=32, conv_dim=(16,) * 7)).feature_extractor.conv_layers[1]
    normed = tf.HubertModel(tf.HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=32, conv_dim=(16,) * 7, feat_extract_norm="layer",
                                            conv_bias=True)).feature_extractor.conv_layers[1]
    for layer, fused in ((plain, True), (normed, False)):
        layer = layer.eval().to(torch.bfloat16)
        reference = copy.deepcopy(layer)
        use_time_major_cnn_layer(layer, fuse_gelu=True)
        assert isinstance(layer.conv, TimeMajorConv1d) and layer.conv.gelu is fused
        assert isinstance(layer.activation, torch.nn.Identity) is fused
        hidden = torch.randn(2, 90, 16, dtype=torch.bfloat16).transpose(1, 2)
        with torch.inference_mode():
            assert _relative(layer(hidden), reference(hidden)) < BF16_MODULE_REL_L2


@needs_onednn
@pytest.mark.parametrize("norm", ["group", None])
def test_first_layer_with_fused_gelu(norm: str | None) -> None:
    torch.manual_seed(0)
    config = tf.Wav2Vec2Config(conv_dim=(32, 32), conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=norm is None,
                               feat_extract_norm="group", hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64)
    layer = tf.Wav2Vec2Model(config).feature_extractor.conv_layers[0 if norm else 1]
    if norm is None:  # a norm-free first layer: wav2vec2's second layer, given one input channel
        layer.conv = torch.nn.Conv1d(1, 32, 10, 5, bias=True)
    layer = layer.eval().to(torch.bfloat16)
    waves = torch.zeros(2, 4003, dtype=torch.bfloat16)
    waves[0], waves[1, :3001] = torch.randn(4003), torch.randn(3001) * 2
    valid = [(4003 - 10) // 5 + 1, (3001 - 10) // 5 + 1]
    with torch.inference_mode():
        fused = FirstLayerPlan(layer, waves, valid, time_major=True, fuse_gelu=True)
        assert fused.fuse_gelu == onednn.supports(torch.bfloat16)  # plain matmul + GELU on CPUs without bf16
        want = FirstLayerPlan(layer, waves, valid)(waves)
        got = fused(waves)
    assert got.shape == want.shape and got.transpose(1, 2).is_contiguous()
    for b, count in enumerate(valid):
        assert _relative(got[b, :, :count], want[b, :, :count]) < BF16_MODULE_REL_L2
