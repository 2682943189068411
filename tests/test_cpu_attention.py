"""encoders/cpu/attention.py: the matmul-softmax-matmul attention against transformers' SDPA path."""
from __future__ import annotations

import torch
import transformers as tf

from speechunits.encoders.cpu.attention import NAME, use_cpu_attention

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _models(dtype: torch.dtype, config_cls=tf.HubertConfig):
    torch.manual_seed(0)
    reference = tf.AutoModel.from_config(config_cls(**SMALL)).eval()
    ours = tf.AutoModel.from_config(config_cls(**SMALL)).eval()
    ours.load_state_dict(reference.state_dict())
    return reference.to(dtype), ours.to(dtype)


def _encode(model, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.encoder(hidden.clone(), attention_mask=mask).last_hidden_state.float()


def test_bf16_padded_batch_matches_sdpa_and_fp32() -> None:
    reference, ours = _models(torch.bfloat16)
    assert use_cpu_attention(ours) and ours.config._attn_implementation == NAME
    lengths = [120, 77]
    hidden = torch.randn(2, 120, SMALL["hidden_size"])
    mask = torch.arange(120)[None] < torch.tensor(lengths)[:, None]
    exact = tf.AutoModel.from_config(tf.HubertConfig(**SMALL)).eval()
    exact.load_state_dict({k: v.float() for k, v in reference.state_dict().items()})
    want = _encode(exact, hidden, mask)  # fp32 SDPA, the exact answer
    sdpa = _encode(reference, hidden.bfloat16(), mask)
    got = _encode(ours, hidden.bfloat16(), mask)
    for b, n in enumerate(lengths):
        err_ours = (got[b, :n] - want[b, :n]).norm() / want[b, :n].norm()
        err_sdpa = (sdpa[b, :n] - want[b, :n]).norm() / want[b, :n].norm()
        # bf16 rounding only: padded keys are masked (unmasked, the short row's error is ~3x)
        assert err_ours < 1.5 * err_sdpa + 1e-3, (b, float(err_ours), float(err_sdpa))
    # the short utterance alone, without padding or mask, gives the same frames: measured 0 (its rows
    # are computed alone); the bound leaves room for other kernels' summation order, far below what
    # attending to the padded keys does (4.6-5.5 %; the bound was 2e-2)
    alone = _encode(ours, hidden[1:, :77].bfloat16(), torch.ones(1, 77, dtype=torch.bool))
    assert ((alone[0] - got[1, :77]).norm() / alone[0].norm()) < 2e-3


def test_fp32_keeps_sdpa_exactly() -> None:
    reference, ours = _models(torch.float32)
    use_cpu_attention(ours)
    hidden = torch.randn(2, 50, SMALL["hidden_size"])
    mask = torch.arange(50)[None] < torch.tensor([50, 31])[:, None]
    torch.testing.assert_close(_encode(ours, hidden, mask), _encode(reference, hidden, mask), rtol=0, atol=0)


def test_models_without_sdpa_are_left_alone() -> None:
    _, wavlm = _models(torch.float32, tf.WavLMConfig)
    before = wavlm.config._attn_implementation
    assert before != "sdpa"
    assert not use_cpu_attention(wavlm)
    assert wavlm.config._attn_implementation == before


def test_cpu_encoder_in_bf16_uses_it(tmp_path) -> None:
    from speechunits.encoders.hf import HFEncoder

    _, model = _models(torch.float32)
    fp32 = HFEncoder(model, "m", do_normalize=False, sample_rate=16000, device="cpu", dtype="fp32", identity="x")
    assert fp32.model.config._attn_implementation == "sdpa"
    _, model = _models(torch.float32)
    bf16 = HFEncoder(model, "m", do_normalize=False, sample_rate=16000, device="cpu", dtype="bf16", identity="x")
    assert bf16.model.config._attn_implementation == NAME


def test_key_padding_masks_are_recognised_and_others_are_not() -> None:
    from speechunits.encoders.cpu.attention import key_lengths

    lengths = torch.tensor([5, 3])
    keys = torch.arange(5)[None] < lengths[:, None]  # [B, T]
    padding = keys[:, None, None, :].expand(2, 1, 5, 5).clone()
    assert key_lengths(padding, 5) == [5, 3]
    assert key_lengths(None, 5) is None
    causal = torch.ones(5, 5, dtype=torch.bool).tril()[None, None].expand(2, 1, 5, 5).clone()
    assert key_lengths(causal, 5) is None
    holes = padding.clone()
    holes[0, 0, :, 1] = False  # a masked key in the middle is not padding
    assert key_lengths(holes, 5) is None
    assert key_lengths(padding.float(), 5) is None


def test_general_masks_match_sdpa() -> None:
    from speechunits.encoders.cpu.attention import cpu_math_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 8, dtype=torch.bfloat16) for _ in range(3))
    module = torch.nn.Module().eval()
    for mask in (torch.ones(6, 6, dtype=torch.bool).tril()[None, None].expand(2, 1, 6, 6),  # causal: fallback
                 (torch.arange(6)[None] < torch.tensor([6, 4])[:, None])[:, None, None, :].expand(2, 1, 6, 6)):
        want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
        got, _ = cpu_math_attention(module, q, k, v, mask.contiguous())
        # rows whose keys are all valid; bf16 inputs, one bf16 rounding per matmul
        torch.testing.assert_close(got.float().transpose(1, 2)[0], want[0], rtol=3e-2, atol=3e-2)
        torch.testing.assert_close(got.float().transpose(1, 2)[1, :, :4], want[1, :, :4], rtol=3e-2, atol=3e-2)


def test_mask_is_examined_once_per_forward_pass(monkeypatch) -> None:
    import speechunits.encoders.cpu.attention as ca

    calls = []
    real = ca._padding_lengths
    monkeypatch.setattr(ca, "_padding_lengths", lambda mask, frames: calls.append(1) or real(mask, frames))
    _, ours = _models(torch.bfloat16)
    memo = use_cpu_attention(ours)
    hidden = torch.randn(2, 30, SMALL["hidden_size"]).bfloat16()
    for lengths in ([30, 12], [30, 20]):  # a new mask per forward: examined again, with its own answer
        mask = torch.arange(30)[None] < torch.tensor(lengths)[:, None]
        short = _encode(ours, hidden, mask)[1, : lengths[1]]
        alone = _encode(ours, hidden[1:, : lengths[1]], torch.ones(1, lengths[1], dtype=torch.bool))[0]
        torch.testing.assert_close(short, alone, rtol=3e-2, atol=3e-2)
    assert len(calls) == 2  # two blocks, two forward passes
    # the memo belongs to the model: shared by its two attention modules, not by another model
    holders = [m for m in ours.modules() if getattr(m, ca.MEMO_ATTRIBUTE, None) is not None]
    assert len(holders) == 2 and all(getattr(m, ca.MEMO_ATTRIBUTE) is memo for m in holders)
    _, other = _models(torch.bfloat16)
    assert use_cpu_attention(other) is not memo
