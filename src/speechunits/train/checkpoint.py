"""MODEL directory: a Hugging Face ``HubertModel`` + training state beside it.

Layout::

    MODEL/config.json, model.safetensors, preprocessor_config.json   (HubertModel.from_pretrained)
    MODEL/training/state.json          step, training config, target spec, data summary
    MODEL/training/head.safetensors    final projection + unit embeddings
    MODEL/training/optimizer.pt        AdamW state (tensors only; loaded with weights_only=True)
    MODEL/training/rng-rank{r}.safetensors   torch RNG state of each rank (dropout)
    MODEL/training/targets/            targets.json (+ targets.safetensors: centroids / projection)

``state.json`` is written last: a directory without it is not a resumable checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from speechunits.errors import SpeechUnitsError

STATE_VERSION = 1
TRAINING_DIR = "training"


def save_hf(encoder: torch.nn.Module, out_dir: Path) -> None:
    """Write the HubertModel (fp32 safetensors) and a ``preprocessor_config.json``."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bar per checkpoint
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(out_dir), safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16000,
        padding_value=0.0,
        do_normalize=False,
        return_attention_mask=False,
    ).save_pretrained(str(out_dir))


def save_checkpoint(out_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any], rank: int = 0) -> None:
    """Save everything needed to resume; non-zero ranks only save their RNG state."""
    from safetensors.torch import save_file

    training = out_dir / TRAINING_DIR
    training.mkdir(parents=True, exist_ok=True)
    save_file({"cpu": torch.get_rng_state()}, str(training / f"rng-rank{rank}.safetensors"))
    if rank != 0:
        return
    state_path = training / "state.json"
    if state_path.exists():
        state_path.unlink()
    save_hf(model.encoder, out_dir)
    head = {name: p.detach().contiguous() for name, p in model.head.state_dict().items()}
    save_file(head, str(training / "head.safetensors"))
    if optimizer is not None:
        torch.save(optimizer.state_dict(), training / "optimizer.pt")
    tmp = training / "state.json.tmp"
    tmp.write_text(json.dumps({"format_version": STATE_VERSION, **state}, indent=2, sort_keys=True))
    os.replace(tmp, state_path)


def read_state(out_dir: Path) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint, or a :class:`SpeechUnitsError`."""
    path = out_dir / TRAINING_DIR / "state.json"
    if not path.is_file():
        raise SpeechUnitsError(f"{out_dir}: no checkpoint to resume ({path} missing)")
    state = json.loads(path.read_text())
    if state.get("format_version") != STATE_VERSION:
        raise SpeechUnitsError(f"{path}: unsupported checkpoint format {state.get('format_version')!r}")
    return state


def load_weights(out_dir: Path, model: torch.nn.Module) -> None:
    """Load encoder and head weights of a checkpoint into ``model`` (in place, exactly)."""
    from safetensors.torch import load_file

    import transformers

    try:
        loaded = transformers.HubertModel.from_pretrained(str(out_dir))
    except (OSError, ValueError) as exc:
        raise SpeechUnitsError(f"{out_dir}: cannot load the HubertModel to resume ({exc})") from exc
    missing, unexpected = model.encoder.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise SpeechUnitsError(f"{out_dir}/model.safetensors: does not match the model (missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]})")
    model.head.load_state_dict(load_file(str(out_dir / TRAINING_DIR / "head.safetensors")))


def load_optimizer(out_dir: Path, optimizer: torch.optim.Optimizer) -> None:
    path = out_dir / TRAINING_DIR / "optimizer.pt"
    optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def load_rng(out_dir: Path, rank: int) -> None:
    from safetensors.torch import load_file

    path = out_dir / TRAINING_DIR / f"rng-rank{rank}.safetensors"
    if path.is_file():
        torch.set_rng_state(load_file(str(path))["cpu"])
