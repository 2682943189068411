"""Model sizes and training settings of unit LMs, and the transformers models they build.

Causal LMs are ``LlamaForCausalLM``: rotary positions (a word's units score alike wherever it
starts, and no learned position table caps the length), a KV cache for ``generate``, SDPA
attention. Masked LMs are ``ModernBertForMaskedLM`` (``AutoModelForMaskedLM``): the same
pre-norm + rotary recipe, every layer global attention. BERT's post-norm, learned-position
``BertForMaskedLM`` sat at the unigram plateau for 300 steps on the tests' toy language
where ModernBERT reached ~100 % masked accuracy (1 layer, dim 32), and it caps the length.
Sizes are for CPU: ``tiny`` learns a 100-unit vocabulary's local structure in minutes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from speechunits.errors import SpeechUnitsError
from speechunits.lm.vocab import BOS_ID, EOS_ID, PAD_ID
from speechunits.training.config import OptimConfig, config_from_dict, config_to_dict

OBJECTIVES = ("causal", "masked")


@dataclass
class LMConfig:
    """Architecture and training settings of one unit LM (stored in ``lm.json``).

    ``batch_tokens``: padded tokens per micro-batch (length-bucketed); ``max_tokens``: longer
    utterances are cut into pieces of this many tokens for training; ``mask_prob``: share of
    tokens a masked LM predicts (BERT's 80 % ``<mask>`` / 10 % random / 10 % kept);
    ``crop_prob``: share of training sequences replaced by a random span of themselves (see
    :class:`speechunits.lm.data.LMTask`), so that the LM also scores a word spoken alone.
    """

    name: str = "tiny"
    objective: str = "causal"
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    dropout: float = 0.1
    max_positions: int = 2048
    batch_tokens: int = 8192
    max_tokens: int = 1024
    mask_prob: float = 0.15
    crop_prob: float = 0.0
    steps: int = 2000
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    bf16: bool = True
    seed: int = 0
    max_minutes: float | None = None
    checkpoint_every: int = 250
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise SpeechUnitsError(f"--objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.hidden % self.heads:
            raise SpeechUnitsError(f"hidden size {self.hidden} is not a multiple of {self.heads} heads")
        if not 0.0 < self.mask_prob < 1.0:
            raise SpeechUnitsError(f"mask_prob must lie in (0, 1), got {self.mask_prob}")
        if not 0.0 <= self.crop_prob <= 1.0:
            raise SpeechUnitsError(f"crop_prob must lie in [0, 1], got {self.crop_prob}")
        if self.max_tokens < 2 or self.batch_tokens < self.max_tokens:
            raise SpeechUnitsError(f"need 2 <= max_tokens ({self.max_tokens}) <= batch_tokens ({self.batch_tokens})")

    def optim(self) -> OptimConfig:
        return OptimConfig(steps=self.steps, lr=self.lr, warmup_steps=min(self.warmup_steps, self.steps - 1),
                           schedule="cosine", weight_decay=self.weight_decay, bf16=self.bf16,
                           max_minutes=self.max_minutes, seed=self.seed, log_every=self.log_every,
                           checkpoint_every=self.checkpoint_every)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LMConfig":
        return config_from_dict(cls, data, "LM config")


#: Named sizes (``--config``).
PRESETS: dict[str, LMConfig] = {
    "tiny": LMConfig(name="tiny", hidden=128, layers=2, heads=4, intermediate=512, lr=1e-3, batch_tokens=8192),
    "small": LMConfig(name="small", hidden=256, layers=4, heads=4, intermediate=1024, lr=5e-4, batch_tokens=16384),
    "base": LMConfig(name="base", hidden=512, layers=8, heads=8, intermediate=2048, lr=3e-4, batch_tokens=32768,
                     steps=20000, warmup_steps=1000),
}


def preset(name: str, **overrides: Any) -> LMConfig:
    """A named size with some fields replaced (``None`` values are ignored)."""
    if name not in PRESETS:
        raise SpeechUnitsError(f"--config must be one of {sorted(PRESETS)}, got {name!r}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def build_model(cfg: LMConfig, vocab_size: int) -> Any:
    """A random-initialised ``LlamaForCausalLM`` or ``BertForMaskedLM`` (eager-safe SDPA attention)."""
    import transformers as tf

    if cfg.objective == "causal":
        config = tf.LlamaConfig(vocab_size=vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
                                num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                                num_key_value_heads=cfg.heads, max_position_embeddings=cfg.max_positions,
                                attention_dropout=cfg.dropout, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                                eos_token_id=EOS_ID, tie_word_embeddings=True)
        return tf.LlamaForCausalLM(config)
    config = tf.ModernBertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
                                 num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                                 max_position_embeddings=cfg.max_positions, global_attn_every_n_layers=1,
                                 local_attention=2 * cfg.max_positions, embedding_dropout=cfg.dropout,
                                 mlp_dropout=cfg.dropout, attention_dropout=cfg.dropout, pad_token_id=PAD_ID,
                                 bos_token_id=BOS_ID, eos_token_id=EOS_ID, cls_token_id=BOS_ID, sep_token_id=EOS_ID)
    return tf.ModernBertForMaskedLM(config)
