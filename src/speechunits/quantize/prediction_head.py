"""Units read from a pretrained model's own prediction head, as a codebook kind.

A HuBERT-style model (``speechunits pretrain``) learns a head that predicts its targets' unit of
every frame from context: ``logits[t, k] = cos(W h_t + b, e_k) / temperature`` over the encoder's
last hidden state ``h_t``. Reading that head on unmasked audio gives a unit per frame without
k-means: the model's own guess of the target cluster. :class:`PredictionHeadCodebook` stores the
head so every consumer of codebooks (``encode``, ``invariance``, the tokenizer ...) reads it:

    unit(x) = argmax_k  <C_k, z / |z|>,   z = LN(x) P + b

with ``x [D]`` a frame of the encoder's last layer as :mod:`speechunits.encoders` gives it,
``LN`` the encoder's final LayerNorm where the model has one (pre-LayerNorm ``HubertModel``s apply
it to the last hidden state only; absent otherwise), ``P = W^T [D, d]``, ``b [d]`` and ``C [K, d]``
the l2-normalised unit embeddings (ties: lowest k). The temperature does not change the argmax.

Files: the :class:`~speechunits.quantize.codebook.Codebook` directory with ``kind:
"prediction-head"``; ``codebook.safetensors`` holds ``centroids`` (= ``C``), ``projection``
(= ``P``), ``projection_bias`` (= ``b``) and, with a final LayerNorm, ``final_norm_weight`` /
``final_norm_bias`` ``[D]`` (``final_norm_eps`` in ``codebook.json``). ``codebook.json`` records the
encoder, ``layer`` = its last layer, and ``targets``: the checkpoint's description of what the head was
trained to predict (kind, K, encoder and layer or codebook sha256). ``sha256`` covers every tensor
(:func:`head_sha256`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import Codebook, encoder_meta, require_tensor
from speechunits.quantize.random_projection import cpu_frames, project_and_assign

KIND = "prediction-head"
#: Optional tensors, in the order :func:`head_sha256` hashes them after ``centroids`` and ``projection``.
VECTOR_TENSORS = ("projection_bias", "final_norm_weight", "final_norm_bias")


def head_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hex SHA-256 of ``centroids``, ``projection`` and then the present :data:`VECTOR_TENSORS`, each as
    C-ordered little-endian float32 bytes."""
    digest = hashlib.sha256()
    for name in ("centroids", "projection", *VECTOR_TENSORS):
        if tensors.get(name) is not None:
            digest.update(np.ascontiguousarray(tensors[name].detach().cpu().numpy(), dtype="<f4").tobytes())
    return digest.hexdigest()


def _float_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    tensor = tensor.detach().to(torch.float32).cpu().contiguous()
    if not torch.isfinite(tensor).all():
        raise SpeechUnitsError(f"prediction head: {name} contains NaN or Inf")
    return tensor


class PredictionHeadCodebook(Codebook):
    """A pretrained model's prediction head: ``centroids`` are the unit embeddings ``C [K, d]`` (unit
    length), :attr:`projection` ``P [D, d]`` and :attr:`projection_bias` ``b [d]``; :attr:`final_norm`
    ``(weight [D], bias [D])`` or None; :attr:`dim` is ``D`` (the encoder's hidden size)."""

    kind = KIND

    def __init__(self, centroids: torch.Tensor | np.ndarray, meta: dict[str, Any] | None = None,
                 norm_mean: torch.Tensor | None = None, norm_std: torch.Tensor | None = None, *,
                 projection: torch.Tensor | np.ndarray, projection_bias: torch.Tensor | np.ndarray,
                 final_norm: tuple[torch.Tensor, torch.Tensor] | None = None):
        if norm_mean is not None or norm_std is not None:
            raise SpeechUnitsError("a prediction-head codebook has no feature normalisation "
                                   "(it has the final LayerNorm)")
        super().__init__(_float_tensor(centroids, "centroids"), meta)
        if not torch.allclose(self.centroids.norm(dim=1), torch.ones(self.k), atol=1e-4):
            raise SpeechUnitsError("prediction head: the unit embeddings (centroids) must have unit length")
        p = _float_tensor(projection, "projection")
        b = _float_tensor(projection_bias, "projection_bias")
        if p.dim() != 2 or p.shape[1] != self.centroids.shape[1]:
            raise SpeechUnitsError(f"prediction head: projection {tuple(p.shape)} does not map onto unit embeddings "
                                   f"of dim {self.centroids.shape[1]}")
        if tuple(b.shape) != (p.shape[1],):
            raise SpeechUnitsError(f"prediction head: projection_bias has shape {tuple(b.shape)}, "
                                   f"expected ({p.shape[1]},)")
        self.projection, self.projection_bias = p, b
        self.final_norm: tuple[torch.Tensor, torch.Tensor] | None = None
        if final_norm is not None:
            weight, bias = (_float_tensor(t, name) for t, name in zip(final_norm, VECTOR_TENSORS[1:]))
            if tuple(weight.shape) != (p.shape[0],) or tuple(bias.shape) != (p.shape[0],):
                raise SpeechUnitsError(f"prediction head: final LayerNorm of shapes {tuple(weight.shape)}, "
                                       f"{tuple(bias.shape)} for features of dim {p.shape[0]}")
            if not isinstance(self.meta.get("final_norm_eps"), (int, float)) or self.meta["final_norm_eps"] <= 0:
                raise SpeechUnitsError("prediction head: a final LayerNorm needs a positive 'final_norm_eps'")
            self.final_norm = (weight, bias)
        self.meta["dim"] = int(p.shape[0])
        self.meta["code_dim"] = int(p.shape[1])
        self.meta["sha256"] = head_sha256(self.tensors())

    @classmethod
    def from_pretrained(cls, model_dir: str | Path) -> "PredictionHeadCodebook":
        """The head of a ``speechunits pretrain`` output directory ``MODEL`` (its training checkpoint in
        ``MODEL/training/``; an exported model alone has no head). Raises SpeechUnitsError when absent."""
        from speechunits.encoders import load_encoder
        from speechunits.pretrain.model import HubertPretrainer
        from speechunits.pretrain.run import saved_config
        from speechunits.training.checkpoint import MODEL_FILE, load_weights, read_state, training_dir

        root = Path(model_dir)
        checkpoint = training_dir(root) / MODEL_FILE
        if not checkpoint.is_file():
            raise SpeechUnitsError(f"{root}: no pretraining checkpoint ({checkpoint} is missing): the head is a "
                                   "training-only part that exported models do not carry")
        train, state = saved_config(root), read_state(root)
        units = (state.get("targets") or {}).get("k")
        if not isinstance(units, int) or units < 1:
            raise SpeechUnitsError(f"{training_dir(root)}/state.json: no targets size 'k' (not a speechunits pretrain "
                                   "checkpoint)")
        model = HubertPretrainer.build(train, units)
        load_weights(root, model)  # every key must match: a head of another size is refused here
        _check_export(root, model.encoder)
        info = load_encoder(str(root), device="cpu").info
        config = model.encoder.config
        final_norm, eps = None, None
        if getattr(config, "do_stable_layer_norm", False):  # pre-LN HubertModel: last_hidden_state = LN(last layer)
            norm = model.encoder.encoder.layer_norm
            final_norm, eps = (norm.weight.detach(), norm.bias.detach()), float(norm.eps)
        meta = {**encoder_meta(info), "layer": int(info.num_layers), "final_norm_eps": eps,
                "targets": state.get("targets"), "init": f"prediction head at step {state.get('step')}"}
        head = model.head
        unit_embeddings = torch.nn.functional.normalize(head.unit_embeddings.detach().float(), dim=1)
        return cls(unit_embeddings, meta, projection=head.final_proj.weight.detach().t(),
                   projection_bias=head.final_proj.bias.detach(), final_norm=final_norm)

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                     source: str) -> "PredictionHeadCodebook":
        vectors = {name: require_tensor(tensors, name, source, ndim=1) for name in VECTOR_TENSORS
                   if name in tensors or name == "projection_bias"}
        has_norm = [name in vectors for name in VECTOR_TENSORS[1:]]
        if any(has_norm) and not all(has_norm):
            raise SpeechUnitsError(f"{source}: a final LayerNorm needs both final_norm_weight and final_norm_bias")
        final_norm = (vectors["final_norm_weight"], vectors["final_norm_bias"]) if all(has_norm) else None
        return cls(require_tensor(tensors, "centroids", source), meta,
                   projection=require_tensor(tensors, "projection", source),
                   projection_bias=vectors["projection_bias"], final_norm=final_norm)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"centroids": self.centroids, "projection": self.projection, "projection_bias": self.projection_bias}
        if self.final_norm is not None:
            out["final_norm_weight"], out["final_norm_bias"] = self.final_norm
        return out

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    def assign(self, features: np.ndarray | torch.Tensor, *, device: str | torch.device | None = "auto",
               precision: str = "auto") -> np.ndarray:
        """Unit ids, int64 ``[N]``, of last-layer features ``[N, D]`` (fp32 on CPU; ``device`` and
        ``precision`` are accepted for the :class:`Codebook` interface and not used)."""
        x = cpu_frames(features, self.dim)
        with torch.inference_mode():
            if self.final_norm is not None:
                x = torch.nn.functional.layer_norm(x, (self.dim,), *self.final_norm, eps=self.meta["final_norm_eps"])
            return project_and_assign(x, self.projection, self.centroids, bias=self.projection_bias)


def _check_export(root: Path, encoder: torch.nn.Module) -> None:
    """Refuse a model directory whose exported encoder (``MODEL/model.safetensors``, what ``encode`` reads)
    is not the training checkpoint's: the head would then read another model's last layer."""
    from speechunits.files import read_safetensors

    path = root / "model.safetensors"
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: missing (a `speechunits pretrain` directory holds its exported encoder)")
    exported, trained = read_safetensors(path), encoder.state_dict()
    differ = sorted(set(exported) ^ set(trained)) or [key for key in sorted(trained)
                                                       if not torch.equal(exported[key], trained[key])]
    if differ:
        raise SpeechUnitsError(f"{root}: the exported encoder is not the one in training/ ({len(differ)} tensors "
                               f"differ, e.g. {differ[0]!r}); export the checkpoint again or use the model it came "
                               "with")
