"""The probe model: a featurizer (or unit embedding), optionally fine-tuned encoder blocks, and a head.

A :class:`ProbeModel` is built from a JSON *spec* (:func:`build_model`), stored in ``probe.json``;
its parts live in :mod:`~speechunits.probe.featurizers`, :mod:`~speechunits.probe.heads` and
:mod:`~speechunits.probe.finetune`.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from speechunits.errors import SpeechUnitsError
from speechunits.probe.augment import apply_time_mask, time_mask_from_spec, unit_noise_from_spec
from speechunits.probe.featurizers import (EMBED_FROZEN, EMBED_INITS, EMBED_RANDOM, INTERFACES, HierarchicalConv,
                                           Single, UnitEmbedding, WeightedSum)
from speechunits.probe.finetune import LOW_RANK_MARK, Finetune, TopBlocks
from speechunits.probe.heads import (HEADS, LEVELS, BiLSTMHead, LinearHead, XVectorHead, stack_frames,
                                     stacked_lengths)
from speechunits.probe.inputs import FEATURES, UNITS


class ProbeModel(nn.Module):
    """Featurizer (or unit embedding) + head; what a probe trains and saves.

    ``forward(x, lengths, durations=None)``: ``x`` float ``[B, L, T, D]`` or int64 ``[B, T, S]``,
    ``lengths [B]`` -> logits ``[B, T', C]`` (frame level) or ``[B, C]`` (utterance level), with
    ``T' = ceil(T / stack)`` and :meth:`output_lengths` the valid ones.

    Spec options for speed on CPU (see docs/probe.md, "A judge that learns in minutes"):
    ``standardize`` (features: every layer's dimensions shifted and scaled by the training part's
    mean and standard deviation, kept as buffers ``input_mean``/``input_std [L, D]`` and set with
    :meth:`set_input_statistics`), ``stack`` (the featurizer's frames concatenated ``stack`` at a
    time before the head: :func:`stack_frames`) and ``lstm_layers`` (BiLSTM depth, default 2).
    ``dropout`` (default 0): the head's dropout while training (:class:`LinearHead`, :class:`BiLSTMHead`).
    ``time_mask`` (default none): SpecAugment time masks on the featurizer's output while training;
    ``unit_noise`` (units): substitution of units by their nearest ones while training
    (:mod:`speechunits.probe.augment`).

    ``verification`` (``verify`` probes: ``{"embedding_dim": E, "scale": s, "margin": m}``): the head
    gives an ``E``-dimensional utterance embedding (:meth:`embed`, unit length), and ``forward`` the
    logits ``s cos(theta)`` between it and each of the ``num_classes`` training speakers' weight
    vectors (``speaker_weights [C, E]``); the loss lowers the target's by ``s m`` (:attr:`margin_shift`).
    """

    def __init__(self, spec: dict[str, Any], pretrained: bool = False, base: str | None = None):
        super().__init__()
        self.spec = spec
        source = spec["input"]
        finetune = spec.get("finetune")
        self.top = None
        self.select: list[int] | None = None
        if finetune is not None:
            if source["kind"] != FEATURES or source["num_layers"] != 1:
                raise SpeechUnitsError("--finetune reads one layer of encoder features (the input of the blocks)")
            low_rank = Finetune(finetune["kind"]).low_rank
            self.top = TopBlocks(base or finetune["encoder"], int(finetune["blocks"]), pretrained or low_rank,
                                 first=finetune.get("first"),
                                 low_rank=(finetune["kind"], int(finetune["rank"])) if low_rank else None)
            recorded = finetune.get("encoder_identity")
            if low_rank and recorded and self.top.identity != recorded:
                raise SpeechUnitsError(f"{base or finetune['encoder']}: base encoder identity {self.top.identity} is "
                                       f"not the {recorded} this probe's adapters were trained on")
            self.select = finetune.get("select")
        if source["kind"] == FEATURES:
            interface = spec.get("interface", "weighted-sum")
            if finetune is None:
                num_layers = source["num_layers"]
            else:
                num_layers = len(self.select) if self.select is not None else int(finetune["blocks"]) + 1
            if interface == "weighted-sum":
                self.featurizer: nn.Module = WeightedSum(num_layers, bool(spec.get("normalize", False)))
                dim = source["dim"]
            elif interface == "hierarchical-conv":
                self.featurizer = HierarchicalConv(num_layers, source["dim"], spec.get("conv_hidden"))
                dim = self.featurizer.out_dim
            elif interface == "single":
                index = int(spec.get("layer_index", 0))
                if not 0 <= index < num_layers:
                    raise SpeechUnitsError(f"--interface single: layer index {index} outside the "
                                           f"{num_layers} layers read")
                self.featurizer, dim = Single(index), source["dim"]
            else:
                raise SpeechUnitsError(f"--interface: expected one of {INTERFACES}, got {interface!r}")
        elif source["kind"] == UNITS:
            init = spec.get("embed_init", EMBED_RANDOM)
            if init not in EMBED_INITS:
                raise SpeechUnitsError(f"--embed-init: expected one of {EMBED_INITS}, got {init!r}")
            self.featurizer = UnitEmbedding(source["vocab_sizes"], int(spec.get("embed_dim", 256)),
                                            spec.get("combine", "sum"), bool(source.get("durations")),
                                            table_dims=None if init == EMBED_RANDOM else list(spec["table_dims"]),
                                            frozen=init == EMBED_FROZEN,
                                            noise=unit_noise_from_spec(spec.get("unit_noise")))
            dim = self.featurizer.out_dim
        else:
            raise SpeechUnitsError(f"probe input kind {source['kind']!r} is not features or units")
        level, head, classes = spec["level"], spec.get("head", "linear"), int(spec["num_classes"])
        self.verification = spec.get("verification")
        if self.verification is not None:  # the head's output is the embedding; speakers are scored by cosine
            if level != "utterance":
                raise SpeechUnitsError("a verification probe pools utterances (level 'utterance')")
            speakers, classes = classes, int(self.verification["embedding_dim"])
            self.speaker_weights = nn.Parameter(torch.randn(speakers, classes) / classes ** 0.5)
        if level not in LEVELS:
            raise SpeechUnitsError(f"probe level {level!r} is not one of {LEVELS}")
        self.stack = int(spec.get("stack", 1))
        if self.stack < 1:
            raise SpeechUnitsError(f"--stack: must be >= 1, got {self.stack}")
        dim *= self.stack
        self.standardize = bool(spec.get("standardize", False))
        if self.standardize:
            if source["kind"] != FEATURES or finetune is not None:
                raise SpeechUnitsError("--standardize applies to features read by the probe's own featurizer "
                                       "(not units, not --finetune)")
            self.register_buffer("input_mean", torch.zeros(int(source["num_layers"]), int(source["dim"])))
            self.register_buffer("input_std", torch.ones(int(source["num_layers"]), int(source["dim"])))
        self.time_mask = time_mask_from_spec(spec.get("time_mask"))
        dropout = float(spec.get("dropout", 0.0))
        if head == "linear":
            self.head: nn.Module = LinearHead(dim, classes, level, dropout)
        elif head == "bilstm":
            self.head = BiLSTMHead(dim, classes, level, int(spec.get("hidden", 256)), int(spec.get("lstm_layers", 2)),
                                   dropout)
        elif head == "xvector":
            self.head = XVectorHead(dim, classes, level, int(spec.get("hidden", 512)), dropout)
        else:
            raise SpeechUnitsError(f"--head: expected one of {HEADS}, got {head!r}")

    def features(self, x: torch.Tensor, durations: torch.Tensor | None = None) -> torch.Tensor:
        """The featurizer's ``[B, T, D']``."""
        if isinstance(self.featurizer, UnitEmbedding):
            return self.featurizer(x, durations)
        return self.featurizer(x if torch.is_floating_point(x) else x.float())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None) -> torch.Tensor:
        out = self.head_output(x, lengths, durations)
        if self.verification is None:
            return out
        weights = nn.functional.normalize(self.speaker_weights, dim=-1)
        return float(self.verification["scale"]) * nn.functional.normalize(out, dim=-1) @ weights.T

    def head_output(self, x: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """The head's output: the logits, except for a verification probe (its embeddings, not normalised)."""
        if torch.is_floating_point(x):
            x = x.float()  # features may arrive as float16 (the input cache)
        if self.standardize:
            x = (x - self.input_mean[:, None]) / self.input_std[:, None]
        if self.top is not None:
            x = self.top(x[:, 0], lengths)
            if self.select is not None:
                x = x[:, self.select]
        features = self.features(x, durations)
        if self.training and self.time_mask is not None:
            features = apply_time_mask(features, lengths, self.time_mask)
        features, lengths = stack_frames(features, lengths, self.stack)
        return self.head(features, lengths)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor, durations: torch.Tensor | None = None) -> torch.Tensor:
        """``verify`` probes: the unit-length utterance embeddings ``[B, E]``."""
        if self.verification is None:
            raise SpeechUnitsError("only a verification probe (task 'verify') gives speaker embeddings")
        return nn.functional.normalize(self.head_output(x, lengths, durations), dim=-1)

    @property
    def margin_shift(self) -> float:
        """``s m``: what AM-softmax takes off the target speaker's logit while training."""
        if self.verification is None:
            raise SpeechUnitsError("only a verification probe (task 'verify') has a margin")
        return float(self.verification["scale"]) * float(self.verification["margin"])

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid output frames of inputs of ``lengths`` frames (``ceil(n / stack)``)."""
        return stacked_lengths(lengths, self.stack)

    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The ``[L, D]`` mean and standard deviation that ``standardize`` removes (training part's)."""
        if not self.standardize:
            raise SpeechUnitsError("set_input_statistics: this probe does not standardize its input")
        if tuple(mean.shape) != tuple(self.input_mean.shape) or tuple(std.shape) != tuple(self.input_std.shape):
            raise SpeechUnitsError(f"input statistics of shape {tuple(mean.shape)}, expected "
                                   f"{tuple(self.input_mean.shape)}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def layer_weights(self) -> list[float] | None:
        """The learned layer weights (weighted sum only)."""
        if isinstance(self.featurizer, WeightedSum):
            return [float(w) for w in self.featurizer.weights()]
        return None

    @property
    def low_rank(self) -> bool:
        """LoRA or adapters: the encoder blocks are frozen and not saved, only their updates."""
        return self.top is not None and Finetune(self.spec["finetune"]["kind"]).low_rank

    def saved_state(self) -> dict[str, torch.Tensor]:
        """What ``head.safetensors`` holds: every weight, except the frozen encoder weights of a
        LoRA/adapters probe (those come from the base encoder, checked by identity)."""
        state = self.state_dict()
        if self.low_rank:
            state = {k: v for k, v in state.items() if not k.startswith("top.") or LOW_RANK_MARK in k}
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_saved(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`saved_state` exactly (RuntimeError naming missing or unexpected weights)."""
        if not self.low_rank:
            self.load_state_dict(state, strict=True)
            return
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("top.") or LOW_RANK_MARK in k]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing weights {missing[:5]}, unexpected weights {result.unexpected_keys[:5]}")


def check_verification(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"embedding_dim", "scale", "margin"}`` of a ``verify`` probe, checked: a positive size and scale,
    a margin in [0, 1) (SpeechUnitsError otherwise)."""
    unknown = sorted(set(settings) - {"embedding_dim", "scale", "margin"})
    if unknown:
        raise SpeechUnitsError(f"verification settings: unknown {unknown}")
    dim, scale, margin = int(settings["embedding_dim"]), float(settings["scale"]), float(settings["margin"])
    if dim < 1 or not scale > 0 or not 0.0 <= margin < 1.0:
        raise SpeechUnitsError(f"--speaker-dim must be >= 1, --scale > 0 and --margin in [0, 1); got {dim}, "
                               f"{scale:g} and {margin:g}")
    return {"embedding_dim": dim, "scale": scale, "margin": margin}


def build_model(spec: dict[str, Any], pretrained: bool = False, base: str | None = None) -> ProbeModel:
    """A fresh :class:`ProbeModel` from its JSON spec (see :class:`ProbeModel`); ``pretrained``: fine-tuned
    blocks start from the model's weights (training) rather than from its config (loading a probe).
    LoRA/adapters probes always load their base encoder (``base``: from another place than the one
    recorded; its identity must be the recorded one)."""
    return ProbeModel(spec, pretrained, base)
