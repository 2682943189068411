"""Model presets (tiny | small | base) and the settings of a pretraining run.

The model is a plain Hugging Face ``HubertModel``; a preset is a set of ``HubertConfig``
fields. ``tiny`` is shaped for CPUs: on CPU the raw-waveform CNN dominates the step, so its
convolutions are narrow (and narrowest at the 3200 Hz first layer); the transformer is small.
``tiny`` and ``small`` use pre-LayerNorm transformer blocks (``do_stable_layer_norm``, as
HuBERT-Large), which train stably with short warmups and small batches; ``base`` is
HuBERT-Base (fairseq ``hubert_base_librispeech``, post-LN). All keep the group-norm CNN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from speechunits.augment import RandomAugment
from speechunits.encoders.base import FBANK_HOP, FBANK_WINDOW
from speechunits.errors import SpeechUnitsError
from speechunits.training.config import OptimConfig, config_from_dict, config_to_dict

#: HuBERT's CNN: kernel sizes and strides (receptive field 400 samples, hop 320 at 16 kHz).
CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
#: CNN strides per model frame rate (Hz). 100 Hz keeps HuBERT's kernels and makes the last
#: convolution stride 1: receptive field still 400 samples, hop 160, so model frame ``i`` covers
#: ``[160 i, 160 i + 400)``, exactly MFCC frame ``i`` (HuBERT's first-iteration targets).
CONV_STRIDES = {50: CONV_STRIDE, 100: (5, 2, 2, 2, 2, 2, 1)}

#: ``HubertConfig`` fields per preset (anything not listed keeps transformers' default).
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=256,
        num_hidden_layers=6,
        num_attention_heads=4,
        intermediate_size=1024,
        conv_dim=(32, 64, 128, 128, 128, 128, 128),
        num_conv_pos_embeddings=64,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=True,
    ),
    "small": dict(
        hidden_size=384,
        num_hidden_layers=8,
        num_attention_heads=6,
        intermediate_size=1536,
        conv_dim=(256,) * 7,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=True,
    ),
    "base": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        conv_dim=(512,) * 7,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
    ),
}

#: Front ends: HuBERT's waveform CNN, or log-mel filterbanks read by conformer blocks (w2v-BERT 2.0's
#: layout: the model is a ``Wav2Vec2BertModel``, its input ``SeamlessM4TFeatureExtractor``'s 80 bins
#: every 10 ms, ``stride`` frames stacked to reach the frame rate).
FRONTEND_CNN = "cnn"
FRONTEND_FBANK = "fbank"
FRONTENDS = (FRONTEND_CNN, FRONTEND_FBANK)
#: Filterbank frames stacked into one model frame, per frame rate (Hz).
FBANK_STRIDES = {50: 2, 100: 1}
#: ``Wav2Vec2BertConfig`` fields per preset of the ``fbank`` front end. ``tiny`` matches the CNN
#: preset's width, depth and parameter count (two macaron feed-forwards of 512 instead of one of
#: 1024), rotary positions (relative_key's distance tables cost 2x a step on CPU) and a 15-frame
#: depthwise convolution; ``base`` is w2v-BERT 2.0's block at HuBERT-Base's size.
FBANK_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=512,
                 conv_depthwise_kernel_size=15, position_embeddings_type="rotary"),
    "small": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, intermediate_size=768,
                  conv_depthwise_kernel_size=15, position_embeddings_type="rotary"),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 conv_depthwise_kernel_size=31, position_embeddings_type="relative_key"),
}

#: Embedding dimension of the prediction head (fairseq ``final_dim``) per preset.
HEAD_DIM = {"tiny": 128, "small": 192, "base": 256}


#: Named starting points of a run (``speechunits pretrain --recipe``): overrides of the
#: :class:`PretrainConfig` defaults; options given explicitly override the recipe.
#: ``hubert`` is the defaults (HuBERT-Base's masking and schedule, for GPUs and many hours);
#: ``cpu`` is docs/train.md's run D (100 Hz, 0.2 s spans, lr 1e-3, 16 s batches, half weight on
#: unmasked frames), the best of the runs measured on a 2-core CPU under a 40-minute budget.
RECIPES: dict[str, dict[str, Any]] = {
    "hubert": {},
    "cpu": dict(frame_rate=100, lr=1e-3, warmup_steps=100, max_batch_seconds=16.0, crop_seconds=4.0,
                mask_length=20, mask_prob=0.04, unmasked_weight=0.5),
}


#: The fields of :class:`PretrainConfig` that make its :class:`OptimConfig`.
OPTIM_FIELDS = ("steps", "lr", "warmup_steps", "weight_decay", "betas", "grad_clip", "accumulate", "bf16",
                "max_minutes", "seed", "log_every", "checkpoint_every")


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (saved in the checkpoint's ``state.json``).

    Flat, as the CLI's options are; :meth:`optim` is the part the training loop reads.

    Masking follows HuBERT: every frame starts a masked span with probability ``mask_prob``
    (0.08) and spans are ``mask_length`` (10) frames long, overlaps allowed, so about
    ``1 - (1 - 0.08) ** 10`` = 57 % of frames end up masked.

    ``frame_rate`` (50 or 100 Hz) picks the CNN strides (:data:`CONV_STRIDES`): 50 Hz is
    HuBERT's; 100 Hz doubles the transformer's frames (about twice its cost) and matches the
    frame rate of MFCC and log-mel features.

    ``frontend``: ``cnn`` (a ``HubertModel``, waveform in) or ``fbank`` (a ``Wav2Vec2BertModel``:
    log-mel filterbanks in, conformer blocks; :data:`FBANK_PRESETS`, :data:`FBANK_STRIDES`).
    Either way the model consumes 16 kHz waveforms: the filterbanks are computed by the exported
    model's own feature extractor, in training as at inference.

    ``dropout`` applies to hidden states and the feature projection; ``attention_dropout`` (on
    attention weights, 0.1 in HuBERT-Base) defaults to 0 because any value forces PyTorch's
    unfused attention (measured: a 100 Hz ``tiny`` step takes 1.25x as long with 0.05).

    ``max_minutes`` (optional) is a wall-clock budget: training stops at ``steps`` or when the
    budget is spent, and the learning-rate decay follows whichever is further along. Such a
    run depends on the machine's speed, so it is not reproducible step for step.
    ``bf16`` is autocast (weights and optimizer state stay fp32).

    ``augment`` is a :class:`speechunits.augment.RandomAugment` spec (``none``, or e.g.
    ``pitch:-3..3,noise:5..30,p=0.5``): the model hears perturbed crops and predicts the clean
    crops' targets. It is stored in canonical form (kinds in application order, ``p`` last).
    ``init`` is a ``HubertModel`` directory whose encoder weights replace the random
    initialisation (:mod:`speechunits.pretrain.init`); ``None`` = random.
    """

    model: str = "tiny"
    frame_rate: int = 50
    frontend: str = FRONTEND_CNN
    targets: str = "mfcc:100"
    steps: int = 1000
    max_batch_seconds: float = 64.0
    crop_seconds: float = 4.0
    min_seconds: float = 1.0
    lr: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 10.0
    accumulate: int = 1
    bf16: bool = True
    mask_prob: float = 0.08
    mask_length: int = 10
    min_masks: int = 2
    temperature: float = 0.1
    unmasked_weight: float = 0.0
    head_dim: int | None = None
    dropout: float = 0.05
    attention_dropout: float = 0.0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 250
    max_minutes: float | None = None
    augment: str = "none"
    init: str | None = None
    extra_model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODEL_PRESETS:
            raise SpeechUnitsError(f"--config: unknown preset {self.model!r} (choose from {', '.join(MODEL_PRESETS)})")
        if self.frame_rate not in CONV_STRIDES:
            raise SpeechUnitsError(
                f"--frame-rate: {self.frame_rate!r} Hz is not supported (choose from {', '.join(map(str, CONV_STRIDES))})"
            )
        if self.frontend not in FRONTENDS:
            raise SpeechUnitsError(f"--frontend: unknown front end {self.frontend!r} (choose from {', '.join(FRONTENDS)})")
        checks = [
            ("--max-batch-seconds", self.max_batch_seconds > 0),
            ("--crop-seconds", self.crop_seconds > 0),
            ("--mask-prob", 0.0 < self.mask_prob < 1.0),
            ("--mask-length", self.mask_length >= 1),
            ("--temperature", self.temperature > 0),
            ("--unmasked-weight", self.unmasked_weight >= 0),
            ("--dropout", 0.0 <= self.dropout < 1.0),
            ("--attention-dropout", 0.0 <= self.attention_dropout < 1.0),
        ]
        for option, ok in checks:
            if not ok:
                raise SpeechUnitsError(f"{option}: invalid value in pretraining config {self.to_dict()}")
        self.betas = self.optim().betas  # validates the optimisation fields
        self.augment = self.random_augment.spec  # validates and canonicalises the spec

    @property
    def random_augment(self) -> RandomAugment:
        """The input perturbations of ``augment`` (empty for ``none``)."""
        return RandomAugment.parse(self.augment)

    def optim(self) -> OptimConfig:
        """The training loop's settings (AdamW, linear warmup and decay, eps 1e-6)."""
        return OptimConfig(**{name: getattr(self, name) for name in OPTIM_FIELDS})

    @property
    def conv_kernel(self) -> tuple[int, ...]:
        """Kernel sizes of the CNN layers."""
        return CONV_KERNEL

    @property
    def conv_stride(self) -> tuple[int, ...]:
        """Strides of the CNN layers (set by ``frame_rate``)."""
        return CONV_STRIDES[self.frame_rate]

    @property
    def fbank_stride(self) -> int:
        """Filterbank frames per model frame (``fbank`` front end)."""
        return FBANK_STRIDES[self.frame_rate]

    def num_frames(self, num_samples: int) -> int:
        """Model frames for ``num_samples`` inputs at 16 kHz."""
        if self.frontend == FRONTEND_FBANK:
            if num_samples < self.receptive_field:
                return 0
            return (num_samples - self.receptive_field) // self.hop_length + 1
        return conv_frames(num_samples, self.conv_kernel, self.conv_stride)

    @property
    def hop_length(self) -> int:
        """Input samples per model frame (320 at 50 Hz, 160 at 100 Hz)."""
        if self.frontend == FRONTEND_FBANK:
            return FBANK_HOP * self.fbank_stride
        return hop_length(self.conv_stride)

    @property
    def receptive_field(self) -> int:
        """Input samples behind one model frame (400 for the CNN at both rates and for filterbanks at
        100 Hz; 560 for two stacked filterbank frames at 50 Hz)."""
        if self.frontend == FRONTEND_FBANK:
            return FBANK_WINDOW + FBANK_HOP * (self.fbank_stride - 1)
        return receptive_field(self.conv_kernel, self.conv_stride)

    @property
    def embed_dim(self) -> int:
        return self.head_dim or HEAD_DIM[self.model]

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PretrainConfig":
        return config_from_dict(cls, data, "pretraining config")


def hubert_config(train: PretrainConfig) -> "transformers.HubertConfig":  # noqa: F821
    """The ``HubertConfig`` of a preset, with the run's dropout and masking settings.

    ``mask_time_prob``/``mask_time_length`` are recorded so that ``masked_spec_embed`` exists
    (transformers only creates it when ``mask_time_prob > 0``); the training loop always passes
    its own ``mask_time_indices``, and in eval mode Hugging Face never masks.
    """
    import transformers

    preset = {"do_stable_layer_norm": False, **MODEL_PRESETS[train.model]}
    preset.update(train.extra_model)
    conv_dim = tuple(preset.pop("conv_dim"))
    if len(conv_dim) != len(CONV_KERNEL):
        raise SpeechUnitsError(f"conv_dim needs {len(CONV_KERNEL)} entries, got {len(conv_dim)}")
    fields_ = dict(conv_kernel=train.conv_kernel, conv_stride=train.conv_stride, conv_bias=False,
                   feat_extract_norm="group", **_run_fields(train))
    fields_.update(preset)
    return transformers.HubertConfig(conv_dim=conv_dim, **fields_)


def _run_fields(train: PretrainConfig) -> dict[str, Any]:
    """Config fields set by the run rather than the preset: dropout, and the masking recorded so that
    ``masked_spec_embed`` exists (the loop passes its own ``mask_time_indices``)."""
    return dict(hidden_dropout=train.dropout, attention_dropout=train.attention_dropout, activation_dropout=0.0,
                feat_proj_dropout=train.dropout, final_dropout=0.0, layerdrop=0.0, apply_spec_augment=True,
                mask_time_prob=train.mask_prob, mask_time_length=train.mask_length,
                mask_time_min_masks=train.min_masks, mask_feature_prob=0.0)


def model_config(train: PretrainConfig) -> Any:
    """The transformers config of ``train``'s model: :func:`hubert_config` or :func:`w2v_bert_config`."""
    return w2v_bert_config(train) if train.frontend == FRONTEND_FBANK else hubert_config(train)


def w2v_bert_config(train: PretrainConfig) -> "transformers.Wav2Vec2BertConfig":  # noqa: F821
    """The ``Wav2Vec2BertConfig`` of a preset of the ``fbank`` front end (masking recorded as in
    :func:`hubert_config`; no adapter, no intermediate feed-forward: the blocks' outputs are the layers)."""
    import transformers

    preset = dict(FBANK_PRESETS[train.model])
    preset.update(train.extra_model)
    fields_ = dict(feature_projection_input_dim=80 * train.fbank_stride, conformer_conv_dropout=train.dropout,
                   add_adapter=False, use_intermediate_ffn_before_adapter=False, **_run_fields(train))
    fields_.update(preset)
    return transformers.Wav2Vec2BertConfig(**fields_)


def conv_frames(num_samples: int, kernels: tuple[int, ...] = CONV_KERNEL, strides: tuple[int, ...] = CONV_STRIDE) -> int:
    """Frames out of a stack of unpadded strided convolutions (0 if too short)."""
    frames = num_samples
    for kernel, stride in zip(kernels, strides):
        if frames < kernel:
            return 0
        frames = (frames - kernel) // stride + 1
    return frames


def receptive_field(kernels: tuple[int, ...] = CONV_KERNEL, strides: tuple[int, ...] = CONV_STRIDE) -> int:
    """Input samples behind the first output frame (400 for HuBERT's CNN)."""
    from speechunits.encoders.base import conv_geometry

    return conv_geometry(kernels, strides)[1]


def hop_length(strides: tuple[int, ...] = CONV_STRIDE) -> int:
    """Input samples per output frame (320 for HuBERT's CNN)."""
    return math.prod(strides)
