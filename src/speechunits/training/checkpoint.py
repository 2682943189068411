"""The one checkpoint format of every trainer: ``DIR/training/``.

Layout::

    DIR/training/state.json                 format_version, step, world_size, optim (OptimConfig),
                                            and the trainer's own facts: its config, what the model
                                            consumes ("consumes"), data summary ... (written last)
    DIR/training/model.safetensors          state_dict of the trained module (shared tensors once)
    DIR/training/optimizer.pt               optimizer state (tensors and numbers; loaded weights_only); for a
                                            multi-phase (GAN) run {"phases": {phase: state}}
    DIR/training/rng-rank{r}.safetensors    torch CPU (and CUDA) RNG state of rank r
    DIR/training/log.jsonl                  one line per optimizer step (written by the loop), and
                                            the lines a trainer adds (Trainer.record: dev scores)

Every file is written to a temporary name first; once all are written, ``state.json`` is
removed, the files are renamed into place and ``state.json`` is written last: a directory
without it is not a resumable checkpoint, and a crash while writing leaves the previous one. How the model is exported for use (for pretraining,
a Hugging Face model in ``DIR`` itself) is the trainer's business, through the ``export`` hook.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch

from speechunits.errors import SpeechUnitsError
from speechunits.files import UNREADABLE_SAFETENSORS, read_json_object, read_safetensors
from speechunits.training.distributed import Distributed

FORMAT_VERSION = 2
TRAINING_DIR = "training"
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"

Export = Callable[[torch.nn.Module, Path], None]
#: One optimizer, or one per phase of a multi-phase task (``{"generator": ..., "discriminator": ...}``).
Optimizers = Union[torch.optim.Optimizer, Mapping[str, torch.optim.Optimizer]]
PHASES_KEY = "phases"


def optimizer_state(optimizer: Optimizers) -> dict[str, Any]:
    """What ``optimizer.pt`` holds: the state dict, or ``{"phases": {phase: state dict}}``."""
    if isinstance(optimizer, Mapping):
        return {PHASES_KEY: {name: opt.state_dict() for name, opt in optimizer.items()}}
    return optimizer.state_dict()


def training_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / TRAINING_DIR


def has_checkpoint(out_dir: str | Path) -> bool:
    return (training_dir(out_dir) / STATE_FILE).is_file()


def _write_tmp(path: Path, write: Callable[[Path], None]) -> Path:
    """``write`` to ``path`` + ``.tmp``; that temporary path."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    return tmp


def _replace_into(path: Path, write: Callable[[Path], None]) -> None:
    os.replace(_write_tmp(path, write), path)


def _rng_path(out_dir: Path, rank: int) -> Path:
    return training_dir(out_dir) / f"rng-rank{rank}.safetensors"


def save_checkpoint(out_dir: str | Path, model: torch.nn.Module, optimizer: Optimizers | None,
                    state: dict[str, Any], *, dist: Distributed | None = None, export: Export | None = None) -> None:
    """Write a resumable checkpoint of ``model`` (unwrapped, not the DDP wrapper) to ``out_dir``.

    Every rank calls this (it synchronises them). First everything is written under temporary
    names (each rank its RNG state; rank 0 the weights, the optimizer state and
    ``export(model, out_dir)``); then ``state.json`` is removed, the files are renamed into
    place, and ``state.json`` (``state`` plus ``format_version``) is written last. The previous
    checkpoint stays resumable until the renames, which take no time.
    """
    from safetensors.torch import save_file, save_model

    dist = dist or Distributed()
    out = Path(out_dir)
    training = training_dir(out)
    training.mkdir(parents=True, exist_ok=True)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    written = [_write_tmp(_rng_path(out, dist.rank), lambda p: save_file(rng, str(p)))]
    if dist.is_main:
        written.append(_write_tmp(training / MODEL_FILE, lambda p: save_model(model, str(p))))
        if optimizer is not None:
            written.append(_write_tmp(training / OPTIMIZER_FILE, lambda p: torch.save(optimizer_state(optimizer), p)))
        if export is not None:
            export(model, out)
    dist.barrier()
    if dist.is_main:
        (training / STATE_FILE).unlink(missing_ok=True)
    dist.barrier()
    for tmp in written:
        os.replace(tmp, tmp.with_suffix(""))
    dist.barrier()
    if dist.is_main:
        text = json.dumps({**state, "format_version": FORMAT_VERSION}, indent=2, sort_keys=True)
        _replace_into(training / STATE_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    dist.barrier()


def read_state(out_dir: str | Path) -> dict[str, Any]:
    """The ``state.json`` of a checkpoint, or a :class:`SpeechUnitsError` naming the problem."""
    path = training_dir(out_dir) / STATE_FILE
    state = read_json_object(path, missing=f"{out_dir}: no checkpoint to resume ({path} missing)")
    if state.get("format_version") != FORMAT_VERSION:
        raise SpeechUnitsError(f"{path}: checkpoint format {state.get('format_version')!r} is not this version's "
                               f"{FORMAT_VERSION} (written by another speechunits version; cannot resume it)")
    return state


def load_safetensors(path: str | Path, model: torch.nn.Module, what: str = "the model") -> None:
    """Load a safetensors file into ``model`` in place, exactly (every key and shape must match).

    The one strict weight loader of every trained model (checkpoints, probes, vocoders, seq2seq).

    Raises:
        SpeechUnitsError: the file is missing, unreadable, or does not match ``what``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: missing")
    try:
        load_model(model, str(path), strict=True)
    except SafetensorError as exc:
        raise SpeechUnitsError(f"{path}: {UNREADABLE_SAFETENSORS} ({exc})") from None
    except (OSError, RuntimeError) as exc:
        raise SpeechUnitsError(f"{path}: does not match {what} ({str(exc)[:300]})") from exc


def load_weights(out_dir: str | Path, model: torch.nn.Module) -> None:
    """Load the checkpoint's weights into ``model`` in place, exactly (every key must match)."""
    path = training_dir(out_dir) / MODEL_FILE
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: missing (not a complete checkpoint)")
    load_safetensors(path, model)


def load_optimizer(out_dir: str | Path, optimizer: Optimizers) -> None:
    """Load the optimizer state (``weights_only=True``: tensors and plain values only); a dict of
    optimizers needs a checkpoint with the same phases."""
    path = training_dir(out_dir) / OPTIMIZER_FILE
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: missing (not a complete checkpoint)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError ... on a bad file
        raise SpeechUnitsError(f"{path}: unreadable optimizer state, truncated or not torch.save's "
                               f"({type(exc).__name__}: {str(exc)[:200]}); resume from another checkpoint or start "
                               "a new run") from None
    phased = isinstance(saved, dict) and set(saved) == {PHASES_KEY}
    if not isinstance(optimizer, Mapping):
        if phased:
            raise SpeechUnitsError(f"{path}: holds optimizers of phases {sorted(saved[PHASES_KEY])}, "
                                   "but this run has a single optimizer")
        optimizer.load_state_dict(saved)
        return
    if not phased or set(saved[PHASES_KEY]) != set(optimizer):
        have = sorted(saved[PHASES_KEY]) if phased else "a single optimizer"
        raise SpeechUnitsError(f"{path}: holds {have}, but this run has phases {sorted(optimizer)}")
    for name, opt in optimizer.items():
        opt.load_state_dict(saved[PHASES_KEY][name])


def load_rng(out_dir: str | Path, rank: int) -> bool:
    """Restore rank ``rank``'s torch RNG state; False when the checkpoint has none for it."""
    path = _rng_path(Path(out_dir), rank)
    if not path.is_file():
        return False
    saved = read_safetensors(path)
    torch.set_rng_state(saved["cpu"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["cuda"])
    return True
