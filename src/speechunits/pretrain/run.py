"""``pretrain``: corpus + target spec -> a trained Hugging Face model directory (library entry point)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from speechunits.corpus import open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.config import PretrainConfig
from speechunits.pretrain.data import CropBatches, load_waves
from speechunits.pretrain.export import SAMPLE_RATE, exporter
from speechunits.pretrain.init import apply_init, read_init
from speechunits.pretrain.model import HubertPretrainer
from speechunits.pretrain.targets import Targets, build_targets
from speechunits.pretrain.task import MaskedPrediction
from speechunits.training.checkpoint import has_checkpoint, read_state, training_dir
from speechunits.training.distributed import init_distributed
from speechunits.training.loop import StepLog, Trainer, TrainResult

log = logging.getLogger(__name__)

#: Where a pretraining checkpoint keeps its targets (``Targets.save``), under ``MODEL/training/``.
TARGETS_DIR = "targets"


@dataclass
class PretrainResult:
    """What a run produced: the model directory, its targets and how training went."""

    model_dir: Path
    targets: Targets
    training: TrainResult
    config: PretrainConfig | None = None
    init: dict | None = None  # where the initial weights came from (``--init``), as recorded

    @property
    def history(self) -> list[StepLog]:
        """Every step's log of this call."""
        return self.training.history


def saved_config(out: Path) -> PretrainConfig:
    """The config of the pretraining checkpoint in ``out`` (a :class:`SpeechUnitsError` if none)."""
    return _saved(out)[0]


def _saved(out: Path) -> tuple[PretrainConfig, dict]:
    """The checkpoint's config and its whole ``state.json``."""
    state = read_state(out)
    if "pretrain" not in state:
        raise SpeechUnitsError(f"{training_dir(out)}/state.json: not a pretraining checkpoint")
    return PretrainConfig.from_dict(state["pretrain"]), state


#: Settings a resumed run must repeat exactly (the rest is taken from the checkpoint).
RESUME_MUST_MATCH = {"augment": "--augment", "init": "--init"}


def _resumed_config(out: Path, train: PretrainConfig) -> tuple[PretrainConfig, dict]:
    """The checkpoint's config (with the new ``steps``, which may grow) and its ``state.json``.

    Every other setting comes from the checkpoint, except those of :data:`RESUME_MUST_MATCH`:
    a value other than the checkpoint's is refused (``init=None`` means "as the checkpoint").
    """
    saved, state = _saved(out)
    for name, option in RESUME_MUST_MATCH.items():
        given, recorded = getattr(train, name), getattr(saved, name)
        if name == "init":
            if given is None:
                continue
            given = str(Path(given).resolve())
            recorded = "none (random weights)" if recorded is None else str(Path(recorded).resolve())
        if given != recorded:
            raise SpeechUnitsError(f"{training_dir(out)}/state.json: the checkpoint was trained with {option} "
                                   f"{recorded}, this run asks for {option} {given}; resume with the same "
                                   f"{option} or train into another -o")
    saved.steps = train.steps
    saved.optim()  # validates the new step count against the saved warmup
    return saved, state


def pretrain(input_path: str | Path, out_dir: str | Path, train: PretrainConfig, *, resume: bool = False,
             device: str = "auto", quiet: bool = False, loader_workers: int = 0) -> PretrainResult:
    """Train (or resume) one HuBERT iteration on ``input_path`` into ``out_dir``.

    With ``resume``, the checkpoint's config is used except ``steps`` (which may grow) and its
    target centroids/projection are reused; a different ``augment`` or ``init`` is refused.
    With ``train.init``, a fresh run starts from that model's encoder (:mod:`.init`); with
    ``train.augment``, the model hears perturbed crops (:class:`CropBatches`). Training runs on
    :class:`speechunits.training.Trainer` (``loader_workers`` processes build the batches ahead of it: the
    same batches, for when building them is as slow as the step, e.g. augmented crops on a GPU); every
    checkpoint also exports the model (``HubertModel``, or ``Wav2Vec2BertModel`` for the ``fbank`` front
    end) into ``out_dir`` (:func:`exporter`).
    """
    out = Path(out_dir)
    init = None
    resumed: dict = {}
    if resume:
        train, resumed = _resumed_config(out, train)
        if int(resumed["step"]) >= train.steps:
            log.info("%s: already at step %d of %d", out, int(resumed["step"]), train.steps)
    elif has_checkpoint(out):
        raise SpeechUnitsError(f"{out}: already holds a checkpoint; pass --resume to continue it or pick another -o")
    elif train.init is not None:
        init = read_init(train.init, train)  # before the corpus is read: a wrong shape fails fast
    dist, dev = init_distributed(device)

    corpus = open_corpus(input_path)
    min_samples = max(train.receptive_field, int(train.min_seconds * SAMPLE_RATE))
    waves = load_waves(corpus, SAMPLE_RATE, min_samples)
    seconds = sum(len(w) for _, w in waves) / SAMPLE_RATE
    log.info("%s: %d utterances, %.1f min of audio", input_path, len(waves), seconds / 60)
    targets_dir = training_dir(out) / TARGETS_DIR
    targets = build_targets(train.targets, waves, train.num_frames, SAMPLE_RATE / train.hop_length, seed=train.seed,
                            saved=targets_dir if resume else None, device=str(dev))
    batches = CropBatches(waves, targets.labels, int(train.crop_seconds * SAMPLE_RATE),
                          int(train.max_batch_seconds * SAMPLE_RATE), train.hop_length, train.num_frames, train.seed,
                          augment=train.random_augment, sample_rate=SAMPLE_RATE)
    log.info("targets %s (K=%d); %d batches per epoch", targets.spec.get("kind"), targets.vocab_size, len(batches))

    torch.manual_seed(train.seed)
    model = HubertPretrainer.build(train, targets.vocab_size)
    # a fresh --init run records its source; a resumed run carries the checkpoint's record over
    init_record = apply_init(model, init, targets) if init is not None else resumed.get("init")
    model = model.to(dev)
    state = {
        "pretrain": train.to_dict(),
        "targets": targets.spec,
        "data": {"source": str(input_path), "utterances": len(waves), "seconds": seconds},
        "consumes": {"kind": "waveform", "sample_rate": SAMPLE_RATE, "channels": 1},
        "init": init_record,
    }
    trainer = Trainer(model, MaskedPrediction(batches, train, SAMPLE_RATE), train.optim(), out, device=dev,
                      dist=dist, state=state, export=exporter(train), desc="pretrain", amount_unit="audio s",
                      quiet=quiet, loader_workers=loader_workers)
    start_step = int(trainer.restore()["step"]) if resume else 0
    if dist.is_main:
        targets.save(targets_dir)
    result = trainer.run(start_step)
    return PretrainResult(out, targets, result, train, init_record)
