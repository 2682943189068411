"""Fine-tuning blocks of the encoder with a probe: ``--finetune top:N|lora[:R]|adapters[:R]``.

``top:N`` (:class:`TopBlocks`): the input caches layer ``K - N`` of a transformers model and the
probe trains a copy of its top N blocks with the featurizer and head. ``lora`` and ``adapters``:
the input caches layer 0 (the transformer's input), blocks ``1..deepest read layer`` run in the
training step with frozen weights plus trained peft LoRA updates on their attention projections
(``lora``) or feed-forward (``adapters``); see docs/probe.md.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.probe.heads import valid_mask


FINETUNE_TOP = "top"
FINETUNE_LORA = "lora"
FINETUNE_ADAPTERS = "adapters"
FINETUNE_KINDS = (FINETUNE_TOP, FINETUNE_LORA, FINETUNE_ADAPTERS)
#: Default rank of the low-rank updates of ``lora`` and ``adapters``.
DEFAULT_RANK = 8
#: Parameter names of the low-rank updates (what a LoRA/adapters probe saves of the encoder).
LOW_RANK_MARK = "lora_"
#: Linear layers of a wav2vec 2.0-style block (HuBERT, wav2vec 2.0, WavLM) that ``lora`` adapts ...
LORA_TARGETS = ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.out_proj")
#: ... and that ``adapters`` adapts (the feed-forward; see docs/probe.md).
ADAPTER_TARGETS = ("feed_forward.intermediate_dense", "feed_forward.output_dense")
#: The same two sets in a conformer block (wav2vec 2.0-conformer, w2v-BERT 2.0): attention and both
#: macaron feed-forwards.
CONFORMER_LORA_TARGETS = ("self_attn.linear_q", "self_attn.linear_k", "self_attn.linear_v", "self_attn.linear_out")
CONFORMER_ADAPTER_TARGETS = ("ffn1.intermediate_dense", "ffn1.output_dense", "ffn2.intermediate_dense",
                             "ffn2.output_dense")


def is_conformer_block(layer: nn.Module) -> bool:
    """Whether ``layer`` is a conformer block (has a convolution module between attention and feed-forward)."""
    return hasattr(layer, "conv_module")


@dataclass(frozen=True)
class Finetune:
    """A parsed ``--finetune``: ``top:N`` (``blocks``) or ``lora[:R]`` / ``adapters[:R]`` (``rank``)."""

    kind: str
    blocks: int = 0
    rank: int = DEFAULT_RANK

    @property
    def low_rank(self) -> bool:
        """LoRA or adapters: the encoder's weights stay frozen; only low-rank updates train."""
        return self.kind in (FINETUNE_LORA, FINETUNE_ADAPTERS)

    def targets(self, conformer: bool = False) -> tuple[str, ...]:
        """The linear layers adapted in each block (conformer blocks name them differently)."""
        if conformer:
            return CONFORMER_LORA_TARGETS if self.kind == FINETUNE_LORA else CONFORMER_ADAPTER_TARGETS
        return LORA_TARGETS if self.kind == FINETUNE_LORA else ADAPTER_TARGETS


def parse_finetune(text: str | None) -> Finetune | None:
    """``"top:N"``, ``"lora"``, ``"lora:R"``, ``"adapters"``, ``"adapters:R"`` (None: no fine-tuning)."""
    if text is None:
        return None
    kind, colon, count = text.partition(":")
    if kind in (FINETUNE_LORA, FINETUNE_ADAPTERS):
        if colon and (not count.isdigit() or int(count) < 1):
            raise SpeechUnitsError(f"--finetune: expected {kind} or {kind}:RANK with RANK >= 1, got {text!r}")
        return Finetune(kind, rank=int(count) if colon else DEFAULT_RANK)
    if kind != FINETUNE_TOP or not count.isdigit() or int(count) < 1:
        raise SpeechUnitsError(f"--finetune: expected top:N with N >= 1, lora[:RANK] or adapters[:RANK], got {text!r}")
    return Finetune(FINETUNE_TOP, blocks=int(count))


def add_low_rank(layers: nn.Module, kind: str, rank: int) -> None:
    """Wrap the :data:`LORA_TARGETS` (``lora``) or :data:`ADAPTER_TARGETS` (``adapters``) linear layers
    of ``layers`` (the ``CONFORMER_`` ones in conformer blocks) with peft LoRA modules of ``rank`` (alpha ``2 * rank``, no dropout; the update
    starts at zero, so the blocks start as the encoder's). Only the ``lora_`` parameters train."""
    from speechunits.extras import require_extra

    peft = require_extra("peft", "finetune", f"--finetune {kind}")
    LoraConfig, inject_adapter_in_model = peft.LoraConfig, peft.inject_adapter_in_model
    if kind == FINETUNE_LORA and any(hasattr(getattr(layer, "attention", None), "gru_rel_pos_linear")
                                     for layer in layers):
        raise SpeechUnitsError("--finetune lora: this model's attention (WavLM's gated relative position "
                               "attention) reads its projection weights directly, so LoRA there would have no "
                               "effect; use --finetune adapters (feed-forward) or top:N")
    targets = Finetune(kind).targets(conformer=any(is_conformer_block(layer) for layer in layers))
    pattern = r".*\.(" + "|".join(t.replace(".", r"\.") for t in targets) + ")"
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=pattern),
                            layers)
    for name, param in layers.named_parameters():
        param.requires_grad = LOW_RANK_MARK in name


class TopBlocks(nn.Module):
    """Transformer blocks ``first + 1 .. first + blocks`` of a transformers SSL model, trained with the probe.

    Reads layer ``first`` of the model (default ``num_layers - blocks``: the top blocks; what the
    input caches: the frozen part runs once per utterance) and returns layers
    ``first..first + blocks`` stacked, ``[B, blocks + 1, T, D]``, as the encoder defines them
    (block outputs, no final norm). Padded frames are masked in attention. ``pretrained=False``
    builds the blocks from the model's config only (their weights then come from the probe's
    ``head.safetensors``). ``low_rank=(kind, rank)`` freezes the blocks and adds LoRA updates
    (:func:`add_low_rank`). :attr:`identity` is the base model's identity (pretrained only).
    """

    def __init__(self, encoder: str, blocks: int, pretrained: bool = True, *, first: int | None = None,
                 low_rank: tuple[str, int] | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        try:
            model = AutoModel.from_pretrained(encoder) if pretrained else AutoModel.from_config(
                AutoConfig.from_pretrained(encoder))
        except (OSError, ValueError) as exc:
            raise SpeechUnitsError(f"--finetune: cannot load the transformers model {encoder!r} ({exc})") from None
        layers = getattr(getattr(model, "encoder", None), "layers", None)
        if layers is None:
            raise SpeechUnitsError(f"--finetune: {encoder!r} has no encoder.layers to fine-tune")
        first = len(layers) - blocks if first is None else first
        if not 1 <= blocks or not 0 <= first or first + blocks > len(layers):
            raise SpeechUnitsError(f"--finetune: blocks {first + 1}..{first + blocks} of {encoder!r}, which has "
                                   f"{len(layers)} blocks")
        self.identity: str | None = None
        if pretrained:
            from speechunits.encoders.hf import model_identity

            self.identity = model_identity(model, model.config.to_json_string())
        self.config = model.config
        self.layers = nn.ModuleList(layers[first:first + blocks])
        # WavLM: block 1 computes a relative position bias that the later blocks take along; a
        # copy that starts higher borrows block 1's (frozen) bias table, and attention takes the
        # [B, T] mask of valid frames.
        self.relative = hasattr(getattr(layers[0], "attention", None), "rel_attn_embed")
        if self.relative and first > 0:
            table = layers[0].attention.rel_attn_embed
            table.weight.requires_grad = False
            self.layers[0].attention.rel_attn_embed = table
        # Conformer blocks: relative (sinusoidal) or rotary position embeddings come from the encoder
        # (no parameters), and padded frames must be zeroed before each depthwise convolution:
        # w2v-BERT's blocks take the mask (``conv_attention_mask``), wav2vec 2.0-conformer's get it
        # through a hook on their zero-padded convolutions.
        self.conformer = is_conformer_block(layers[0])
        self.embed_positions = getattr(model.encoder, "embed_positions", None) if self.conformer else None
        self._takes_conv_mask = self.conformer and "conv_attention_mask" in inspect.signature(
            layers[0].forward).parameters
        self._conv_mask: torch.Tensor | None = None
        if self.conformer and not self._takes_conv_mask:
            from speechunits.encoders.hf import zero_padded_frames_in_convs

            zero_padded_frames_in_convs(self.layers, lambda: self._conv_mask)
        if low_rank is not None:
            add_low_rank(self.layers, *low_rank)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask = valid_mask(lengths, x.shape[1])
        states, hidden = [x], x
        if self.relative:
            bias = None
            for layer in self.layers:
                hidden, bias = layer(hidden, attention_mask=mask, position_bias=bias)
                states.append(hidden)
            return torch.stack(states, dim=1)
        attention = create_bidirectional_mask(config=self.config, inputs_embeds=x, attention_mask=mask)
        extra: dict[str, torch.Tensor] = {}
        if self.embed_positions is not None:
            extra["relative_position_embeddings"] = self.embed_positions(x)
        if self._takes_conv_mask:
            extra["conv_attention_mask"] = mask
        self._conv_mask = mask if self.conformer else None
        try:
            for layer in self.layers:
                out = layer(hidden, attention_mask=attention, **extra)
                hidden = out[0] if isinstance(out, tuple) else out
                states.append(hidden)
        finally:
            self._conv_mask = None
        return torch.stack(states, dim=1)
