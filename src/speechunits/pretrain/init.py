"""``--init MODEL``: start pretraining from the encoder of an existing ``HubertModel`` (or, for
``--frontend fbank``, ``Wav2Vec2BertModel``) directory.

Transfer, e.g. from a model pretrained on a large synthetic corpus to a few hours of real
speech. ``MODEL`` is a directory written by ``speechunits pretrain`` (or any Hugging Face
``HubertModel`` directory with ``model.safetensors``) whose shape (:data:`SHAPE_FIELDS`, which
include the CNN strides, i.e. the frame rate) equals the new run's ``--config``/``--frame-rate``.

* The encoder (the whole model, ``MODEL/model.safetensors``) is loaded.
* The prediction head (final projection and unit embeddings, from ``MODEL/training/``) is
  loaded only when the new targets are the init model's targets: same kind and K and the same
  quantizer (equal centroids / projection tensors, or the same codebook sha256 for a unit
  store). Otherwise (another K, MFCC centroids fitted on another corpus ...) the head keeps its
  fresh random initialisation, since unit ``k`` means something else.
* Dropout and masking settings are the new run's; only weights are taken over.

The new model's ``training/state.json`` records :meth:`InitModel.identity` under ``init``.
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object
from speechunits.pretrain.config import PretrainConfig, model_config
from speechunits.pretrain.model import HubertPretrainer
from speechunits.pretrain.targets import Targets

log = logging.getLogger(__name__)

#: Config fields that fix the shape of the weights (and the frame rate): the model type, then
#: ``HubertConfig``'s and ``Wav2Vec2BertConfig``'s (a field the other type lacks reads as None).
SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm", "num_conv_pos_embeddings",
                "num_conv_pos_embedding_groups", "do_stable_layer_norm", "feature_projection_input_dim",
                "conv_depthwise_kernel_size", "position_embeddings_type")
WEIGHTS_FILE = "model.safetensors"
HEAD_PREFIX = "head."


@dataclass
class InitModel:
    """An init model read from disk: its encoder weights and, when it has them, head and targets."""

    path: Path
    sha256: str
    encoder: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None
    targets_spec: dict[str, Any] | None
    targets_tensors: dict[str, torch.Tensor]
    pretrain: dict[str, Any] | None

    def identity(self) -> dict[str, Any]:
        """What the new model records about where its weights came from."""
        recorded = None
        if self.pretrain is not None:
            recorded = {k: self.pretrain.get(k) for k in ("model", "frame_rate", "targets", "augment", "init")}
        return {"path": str(self.path), "sha256": self.sha256, "targets": self.targets_spec, "pretrain": recorded}


def _shape(config: Any) -> dict[str, Any]:
    out = {}
    for name in SHAPE_FIELDS:
        value = getattr(config, name, None)
        out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _describe(shape: dict[str, Any]) -> str:
    if shape.get("feature_projection_input_dim"):
        rate = 100 * 80 / shape["feature_projection_input_dim"]
        return (f"{shape['model_type']}: hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers, "
                f"filterbanks, {rate:g} Hz")
    rate = 16000 / math.prod(shape["conv_stride"]) if shape.get("conv_stride") else None
    return (f"{shape['model_type']}: hidden {shape['hidden_size']}, {shape['num_hidden_layers']} layers, "
            f"conv {shape['conv_dim']}, {rate:g} Hz" if rate else str(shape))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_init(path: str | Path, train: PretrainConfig) -> InitModel:
    """Read ``path`` and check that its shape is the one ``train`` builds.

    Raises:
        SpeechUnitsError: not a model directory with safetensors weights, or a shape
            other than ``train``'s (the message names both).
    """
    import transformers

    from speechunits.files import read_safetensors

    root = Path(path)
    config_file, weights_file = root / "config.json", root / WEIGHTS_FILE
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise SpeechUnitsError(f"--init {root}: {needed.name} missing (need a HubertModel/Wav2Vec2BertModel directory, e.g. "
                                   f"one written by `speechunits pretrain`, with safetensors weights)")
    try:
        config = transformers.AutoConfig.from_pretrained(str(root))
    except Exception as exc:  # noqa: BLE001 - any unreadable config is the user's file
        raise SpeechUnitsError(f"--init {config_file}: not a transformers model config ({exc})") from exc
    theirs, ours = _shape(config), _shape(model_config(train))
    if theirs != ours:
        diff = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in SHAPE_FIELDS if theirs[k] != ours[k])
        raise SpeechUnitsError(
            f"--init {root}: its model ({_describe(theirs)}) does not match --config {train.model} "
            f"--frame-rate {train.frame_rate} --frontend {train.frontend} ({_describe(ours)}); differing: {diff}")
    encoder = read_safetensors(weights_file)
    head, spec, tensors, recorded = None, None, {}, None
    training = root / "training"
    if (training / WEIGHTS_FILE).is_file():
        full = read_safetensors(training / WEIGHTS_FILE)
        head = {k[len(HEAD_PREFIX):]: v for k, v in full.items() if k.startswith(HEAD_PREFIX)} or None
    if (training / "targets" / "targets.json").is_file():
        spec = read_json_object(training / "targets" / "targets.json")
        if (training / "targets" / "targets.safetensors").is_file():
            tensors = read_safetensors(training / "targets" / "targets.safetensors")
    if (training / "state.json").is_file():
        recorded = read_json_object(training / "state.json").get("pretrain")
    return InitModel(root, file_sha256(weights_file), encoder, head, spec, tensors, recorded)


def same_targets(init: InitModel, targets: Targets) -> str | None:
    """``None`` when ``targets`` are the init model's, else why not (for the log and the record)."""
    spec = init.targets_spec
    if spec is None:
        return "the init model records no targets"
    if spec.get("kind") != targets.spec.get("kind") or int(spec.get("k", -1)) != targets.vocab_size:
        return (f"targets {spec.get('kind')} K={spec.get('k')} became {targets.spec.get('kind')} "
                f"K={targets.vocab_size}")
    if init.targets_tensors or targets.tensors:
        same = init.targets_tensors.keys() == targets.tensors.keys() and all(
            torch.equal(init.targets_tensors[k].cpu(), targets.tensors[k].cpu()) for k in targets.tensors)
        return None if same else f"the {spec.get('kind')} quantizer differs (other centroids/projection)"
    theirs, ours = spec.get("codebook_sha256"), targets.spec.get("codebook_sha256")
    return None if theirs is not None and theirs == ours else "the unit stores' codebooks differ or are unknown"


def apply_init(model: HubertPretrainer, init: InitModel, targets: Targets) -> dict[str, Any]:
    """Load ``init``'s encoder into ``model`` (and its head when the targets are the same).

    Returns:
        :meth:`InitModel.identity` plus ``head``: ``"loaded"`` or ``"reinitialised: <why>"``.
    """
    try:
        model.encoder.load_state_dict(init.encoder, strict=True)
    except RuntimeError as exc:
        raise SpeechUnitsError(f"--init {init.path / WEIGHTS_FILE}: weights do not fit the model "
                               f"({str(exc)[:300]})") from exc
    why = same_targets(init, targets)
    if why is None and init.head is None:
        why = "the init model has no prediction head (no training/ checkpoint)"
    if why is None:
        try:
            model.head.load_state_dict(init.head, strict=True)
        except RuntimeError as exc:
            why = f"its head has another shape ({str(exc)[:120]})"
    head = "loaded" if why is None else f"reinitialised: {why}"
    log.info("--init %s: encoder loaded; prediction head %s", init.path, head)
    return {**init.identity(), "head": head}
