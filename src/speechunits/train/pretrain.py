"""``pretrain``: corpus + target spec -> a trained HubertModel directory (library entry point)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from speechunits.corpus import open_corpus
from speechunits.device import resolve_device
from speechunits.errors import SpeechUnitsError
from speechunits.train.checkpoint import TRAINING_DIR, load_optimizer, load_rng, load_weights, read_state
from speechunits.train.config import TrainConfig
from speechunits.train.data import CropBatches, load_waves
from speechunits.train.loop import Distributed, StepLog, Trainer, make_optimizer
from speechunits.train.model import HubertPretrainer
from speechunits.train.targets import Targets, build_targets

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass
class PretrainResult:
    """What a run produced: the model directory, its targets and every step's log."""

    model_dir: Path
    targets: Targets
    history: list[StepLog]


def _distributed(device: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank=rank, world=world), dev


def pretrain(input_path: str | Path, out_dir: str | Path, train: TrainConfig, *, resume: bool = False,
             device: str = "auto", quiet: bool = False) -> PretrainResult:
    """Train (or resume) one HuBERT iteration on ``input_path`` into ``out_dir``.

    With ``resume``, the checkpoint's training config is used except ``steps`` (which may grow)
    and the checkpoint's target centroids/projection are reused.
    """
    out = Path(out_dir)
    start_step = 0
    if resume:
        state = read_state(out)
        saved = TrainConfig.from_dict(state["train"])
        saved.steps = train.steps
        train = saved
        start_step = int(state["step"])
        if start_step >= train.steps:
            log.info("%s: already at step %d of %d", out, start_step, train.steps)
    elif (out / TRAINING_DIR / "state.json").exists():
        raise SpeechUnitsError(f"{out}: already holds a checkpoint; pass --resume to continue it or pick another -o")
    dist, dev = _distributed(device)

    corpus = open_corpus(input_path)
    min_samples = max(train.receptive_field, int(train.min_seconds * SAMPLE_RATE))
    waves = load_waves(corpus, SAMPLE_RATE, min_samples)
    seconds = sum(len(w) for _, w in waves) / SAMPLE_RATE
    log.info("%s: %d utterances, %.1f min of audio", input_path, len(waves), seconds / 60)
    targets = build_targets(train.targets, waves, train.num_frames, SAMPLE_RATE / train.hop_length, seed=train.seed,
                            saved=out / TRAINING_DIR / "targets" if resume else None)
    batches = CropBatches(waves, targets.labels, int(train.crop_seconds * SAMPLE_RATE),
                          int(train.max_batch_seconds * SAMPLE_RATE), train.hop_length, train.num_frames, train.seed)
    log.info("targets %s (K=%d); %d batches per epoch", targets.spec.get("kind"), targets.vocab_size, len(batches))

    torch.manual_seed(train.seed)
    model = HubertPretrainer.build(train, targets.vocab_size)
    if resume:
        load_weights(out, model)
    model.to(dev)
    optimizer = make_optimizer(model, train)
    if resume:
        load_optimizer(out, optimizer)
    torch.manual_seed(train.seed + dist.rank)
    if resume:
        load_rng(out, dist.rank)
    if dist.rank == 0:
        targets.save(out / TRAINING_DIR / "targets")
    extra = {"targets": targets.spec, "data": {"source": str(input_path), "utterances": len(waves),
                                               "seconds": seconds}}
    trainer = Trainer(model, optimizer, batches, train, out, device=dev, dist=dist, state_extra=extra, quiet=quiet)
    history = trainer.run(start_step)
    return PretrainResult(out, targets, history)
