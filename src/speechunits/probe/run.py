"""One ``(lr, seed)`` run of a probe sweep: train on the one training loop, evaluate on dev, keep the best.

:func:`train_run` is the body of :func:`speechunits.probe.train.train_probe`'s sweep. The run
evaluates on dev (or a fixed sample of it, then scores its best step on all of dev once) every
``eval_every`` steps (through the loop's ``on_step``), keeps the best weights
(``best-step{S}.safetensors``) and its record in the checkpoint that follows each evaluation, and
stops after ``patience`` evaluations without improvement, at ``max_steps`` or when its share of the
sweep's time budget is spent. With ``resume`` it reuses a run that ended, continues one from its
last evaluation, or starts again where nothing can be continued (:mod:`speechunits.probe.resume`).
Under torchrun every rank trains; rank 0 alone evaluates and gets the result.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from speechunits.probe.evaluate import decode_logits, score_predictions, selection_score
from speechunits.probe.model import ProbeModel, build_model
from speechunits.probe.inputs import ProbeInput, Sample
from speechunits.probe.model_dir import LabelCoder
from speechunits.probe.resume import (RUN_KEY, RUNS_DIR, SWEEP_KEY, check_fingerprint, load_best, prune_best,
                                      read_result, save_best, save_result)
from speechunits.probe.task import ProbeTask, predict_logits
from speechunits.training.checkpoint import has_checkpoint, read_state
from speechunits.training.loop import STOP_MAX_STEPS, STOP_REQUESTED, STOP_TIME_BUDGET

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """One ``(lr, seed)`` run: its best dev metrics and where it stopped."""

    lr: float
    seed: int
    dev: dict[str, float]
    dev_score: float
    best_step: int
    steps_done: int
    stop_reason: str
    train_seconds: float
    audio_seconds: float
    layer_weights: list[float] | None
    state: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    test: dict[str, float] | None = None
    warmup_steps: int = 0
    dev_watched: dict[str, float] | None = None

    def record(self) -> dict[str, Any]:
        record = {"lr": self.lr, "seed": self.seed, "dev": self.dev, "test": self.test, "best_step": self.best_step,
                  "steps_done": self.steps_done, "stop_reason": self.stop_reason, "layer_weights": self.layer_weights,
                  "warmup_steps": self.warmup_steps, "train_seconds": round(self.train_seconds, 3),
                  "x_realtime": self.audio_seconds / max(self.train_seconds, 1e-9)}
        if self.dev_watched is not None:
            record["dev_watched"] = self.dev_watched
        return record

def dev_metrics(task: str, model: ProbeModel, coder: LabelCoder, samples: Mapping[str, Sample],
                labels: Mapping[str, Any], ids: Sequence[str], device: torch.device,
                batch_frames: int, scoring: tuple[Any, Any] | None = None) -> dict[str, float]:
    """The task's metrics of ``model`` on the utterances ``ids`` (dev while training, test once); a
    ``verify`` probe's over every pair of them (:func:`~speechunits.probe.verification.verification_metrics`),
    its scores normalised by ``scoring = (ScoreNorm, cohort)`` when given."""
    if task == "verify":
        from speechunits.probe.verification import verification_metrics

        embeddings = predict_logits(model, samples, ids, device=device, batch_frames=batch_frames, embeddings=True)
        norm, cohort = scoring if scoring is not None else (None, None)
        return verification_metrics({i: labels[i] for i in ids}, embeddings, norm=norm, cohort=cohort)
    logits = predict_logits(model, samples, ids, device=device, batch_frames=batch_frames)
    return score_predictions(task, labels, {i: decode_logits(coder, out) for i, out in logits.items()})


def _minutes_left(per_run_minutes: float | None, elapsed_seconds: float) -> float | None:
    """What remains of a run's time budget (None: no budget; 0.0: spent)."""
    if per_run_minutes is None:
        return None
    return max(0.0, per_run_minutes - elapsed_seconds / 60.0)


def _nothing_left(saved: Mapping[str, Any] | None, max_steps: int, patience: int,
                  budget_left: float | None) -> str | None:
    """Why a resumed run has no step left to train (its stop reason), or None when it goes on."""
    if saved is None:
        return None
    if saved["last"] >= max_steps:
        return STOP_MAX_STEPS
    if saved["bad"] >= patience:
        return STOP_REQUESTED
    return STOP_TIME_BUDGET if budget_left == 0.0 else None


def _ended_run(run_dir: Path, record: Mapping[str, Any]) -> RunResult:
    """The :class:`RunResult` of a run that ended in an earlier (killed) sweep."""
    return RunResult(lr=float(record["lr"]), seed=int(record["seed"]), dev=dict(record["dev"]),
                     dev_score=float(record["dev_score"]), best_step=int(record["best_step"]),
                     steps_done=int(record["steps_done"]), stop_reason=str(record["stop_reason"]),
                     train_seconds=float(record["train_seconds"]), audio_seconds=float(record["audio_seconds"]),
                     layer_weights=record["layer_weights"], state=load_best(run_dir, int(record["best_step"])),
                     warmup_steps=int(record["warmup_steps"]), dev_watched=record.get("dev_watched"))


@dataclass
class SweepRun:
    """What every run of one sweep shares (built once by ``train_probe``).

    ``samples`` holds every part's inputs; ``targets`` the encoded training labels and ``labels`` the
    raw ones (dev scoring). ``statistics``/``centroids``: feature mean/std and unit tables to load into
    each fresh model (None: none). ``per_run_minutes``: a run's share of the budget (None: no budget);
    ``clock_schedule``: the schedule follows that budget, so a run cannot be continued exactly.
    ``class_weights``: the loss weight of each class (utterance tasks; None: all 1). ``watched``: the dev
    utterances evaluated while training (:func:`~speechunits.probe.splits.dev_sample`; None: all of dev),
    after which the best step's weights are scored on all of dev once. ``crop_frames``: training crops
    (:class:`~speechunits.probe.task.ProbeTask`; None: whole utterances).
    """

    out: Path
    task: str
    spec: dict[str, Any]
    inputs: ProbeInput
    samples: Mapping[str, Sample]
    targets: Mapping[str, Any]
    labels: Mapping[str, Any]
    coder: LabelCoder
    split: Any
    fingerprint: dict[str, Any]
    resume: bool
    dist: Any
    device: torch.device
    statistics: tuple[torch.Tensor, torch.Tensor] | None
    centroids: list[torch.Tensor] | None
    per_run_minutes: float | None
    clock_schedule: bool
    max_steps: int
    eval_every: int
    patience: int
    warmup_steps: int
    warmup_fraction: float
    batch_frames: int
    step_schedule: bool
    bf16: bool
    quiet: bool
    class_weights: list[float] | None = None
    watched: Sequence[str] | None = None
    crop_frames: int | None = None

    def run_dir(self, lr: float, seed: int) -> Path:
        return self.out / RUNS_DIR / f"lr{lr:g}-seed{seed}"



def train_run(sweep: SweepRun, lr: float, seed: int) -> RunResult | None:
    """Train (or reuse, or continue) the run ``(lr, seed)`` of ``sweep``; its result on rank 0, None on the
    others. The result holds the best dev step's weights and their metrics on all of dev (with a dev
    sample, the sample's too: ``dev_watched``); ``test`` is left to the caller."""
    from speechunits.training.config import OptimConfig
    from speechunits.training.loop import Trainer

    s, dist = sweep, sweep.dist
    run_dir = s.run_dir(lr, seed)
    ended = read_result(run_dir, s.fingerprint) if s.resume else None
    more = _minutes_left(s.per_run_minutes, ended["elapsed_seconds"] if ended else 0.0)
    if ended is not None and (ended["stop_reason"] != STOP_TIME_BUDGET or s.clock_schedule
                              or not more or more < 0.01 * s.per_run_minutes):
        return _ended_run(run_dir, ended) if dist.is_main else None
    torch.manual_seed(seed)
    model = build_model(s.spec, pretrained=True)
    if s.statistics is not None:
        model.set_input_statistics(*s.statistics)
    if s.centroids is not None:
        model.featurizer.load_centroids(s.centroids)
    model = model.to(s.device)
    saved: dict[str, Any] | None = None
    if s.resume and has_checkpoint(run_dir) and not s.clock_schedule:
        state = read_state(run_dir)
        check_fingerprint(state.get(SWEEP_KEY), s.fingerprint, run_dir)
        # an ended run that continues (a larger budget) keeps its final evaluation too; a
        # checkpoint of a budget stop before the first evaluation has no record
        record = ended["best"] if ended is not None else state.get(RUN_KEY)
        saved = None if record is None else dict(record)
    if s.resume and saved is None:  # nothing to continue (no evaluation yet, or a clock schedule)
        if dist.is_main and run_dir.exists():
            shutil.rmtree(run_dir)
        dist.barrier()  # every rank, whatever it saw on disk: no rank may wait alone
    budget_left = _minutes_left(s.per_run_minutes, saved["elapsed_seconds"] if saved else 0.0)
    left = _nothing_left(saved, s.max_steps, s.patience, budget_left)
    cfg = OptimConfig(steps=s.max_steps, lr=lr, warmup_steps=s.warmup_steps, schedule="linear", bf16=s.bf16,
                      max_minutes=budget_left or None, seed=seed, log_every=s.eval_every,
                      warmup_fraction=None if s.per_run_minutes is None else s.warmup_fraction,
                      decay_by_time=not s.step_schedule, checkpoint_every=s.eval_every)
    probe_task = ProbeTask(s.task, s.samples, s.targets, s.split.train, frame_rate=s.inputs.frame_rate,
                           batch_frames=s.batch_frames, seed=seed, class_weights=s.class_weights,
                           crop_frames=s.crop_frames)
    trainer = Trainer(model, probe_task, cfg, run_dir, device=s.device, dist=dist,
                      state={"probe": {"task": s.task, "spec": s.spec}, "consumes": s.inputs.identity(),
                             SWEEP_KEY: s.fingerprint},
                      desc=f"probe {s.task} lr {lr:g} seed {seed}", amount_unit="audio s", quiet=s.quiet)
    best: dict[str, Any] = {"score": -math.inf, "step": 0, "metrics": {}, "bad": 0, "last": None,
                            "elapsed_seconds": 0.0, "train_seconds": 0.0, "audio_seconds": 0.0}
    start = 0
    if saved is not None:
        start = int(trainer.restore()["step"])
        best.update(saved)
    best["state"] = load_best(run_dir, best["step"]) if best["last"] is not None else {}
    if left is not None:  # it ended before its result was written
        log.info("lr %g seed %d: resumed at step %d, nothing left to train (%s)", lr, seed, start, left)
    elif start:
        log.info("lr %g seed %d: resumed at step %d (best dev step %d)", lr, seed, start, best["step"])
    clock = {"started": time.perf_counter(), "elapsed": best["elapsed_seconds"]}

    def evaluate(step: int) -> bool:
        ids = s.split.dev if s.watched is None else s.watched
        metrics = dev_metrics(s.task, model, s.coder, s.samples, s.labels, ids, s.device, s.batch_frames)
        value = selection_score(s.task, metrics)
        log.info("lr %g seed %d step %d dev %s", lr, seed, step, " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        trainer.record(step, dev=metrics)
        if value > best["score"]:
            previous = best["step"] if best["last"] is not None else None
            best.update(score=value, step=step, metrics=metrics, bad=0,
                        state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            save_best(run_dir, step, best["state"], keep=previous)
        else:
            best["bad"] += 1
        best["last"] = step
        best["elapsed_seconds"] = clock["elapsed"] + time.perf_counter() - clock["started"]
        # the checkpoint that follows this evaluation stores the record
        trainer.state[RUN_KEY] = {k: v for k, v in best.items() if k != "state"}
        return best["bad"] >= s.patience

    def on_step(entry: Any) -> bool:  # rank 0 evaluates; the trainer broadcasts its decision
        best["train_seconds"] += entry.wall_seconds
        best["audio_seconds"] += entry.amount
        if not dist.is_main or (entry.step % s.eval_every and entry.step != s.max_steps):
            return False
        return evaluate(entry.step)

    if left is not None:
        steps_done, stop_reason = start, left
    else:
        result = trainer.run(start, on_step)
        steps_done, stop_reason = result.steps_done, result.stop_reason
    if not dist.is_main:
        return None
    if best.get("last") != steps_done:
        evaluate(steps_done)
    model.load_state_dict(best["state"])
    dev, dev_score, dev_watched = best["metrics"], best["score"], None
    if s.watched is not None:  # the sample chose the step; all of dev scores it (and the lr)
        dev_watched = dev
        dev = dev_metrics(s.task, model, s.coder, s.samples, s.labels, s.split.dev, s.device, s.batch_frames)
        dev_score = selection_score(s.task, dev)
        log.info("lr %g seed %d step %d all of dev %s", lr, seed, best["step"],
                 " ".join(f"{k} {v:.4f}" for k, v in dev.items()))
    run = RunResult(lr=lr, seed=seed, dev=dev, dev_score=dev_score, best_step=best["step"],
                    steps_done=steps_done, stop_reason=stop_reason, train_seconds=best["train_seconds"],
                    audio_seconds=best["audio_seconds"], layer_weights=model.layer_weights(), state=best["state"],
                    warmup_steps=cfg.warmup_steps, dev_watched=dev_watched)
    prune_best(run_dir, {run.best_step})
    save_result(run_dir, {**run.record(), "dev_score": run.dev_score, "audio_seconds": run.audio_seconds,
                          "train_seconds": run.train_seconds, "elapsed_seconds": best["elapsed_seconds"],
                          "best": {k: v for k, v in best.items() if k != "state"}}, s.fingerprint)
    return run
