"""The one training loop: AdamW steps over a :class:`~speechunits.training.task.Task`.

Per optimizer step: ``accumulate`` micro-batches (each ``loss / count / accumulate``
backpropagated, under bf16 autocast when asked), gradient clipping, the scheduled learning
rate, an update (skipped with a warning when the gradient norm is not finite). Under
torchrun, rank ``r`` of ``W`` takes micro-batches ``(step * accumulate + m) * W + r`` and
``DistributedDataParallel`` averages gradients, so ``W`` ranks equal one process with
``W * accumulate`` micro-batches. Rank 0 shows the progress bar, logs and writes the shared
checkpoint files; every rank saves its RNG.

Exact resume: batches come from the task's ``(seed, index)`` function, the torch RNG
(dropout) of every rank is checkpointed, weights and optimizer state are saved exactly and
the learning rate is a function of the step, so stopping after step ``n`` and resuming
repeats the uninterrupted run. A ``max_minutes`` budget stops early (``stop_reason
"time_budget"``) and is measured from the start of this invocation.

Multi-phase tasks (GANs): a task with a ``phases(step) -> Sequence[str]`` method and a
dict of optimizers ``{phase: optimizer}`` (see :func:`~speechunits.training.optim.make_optimizers`)
runs, per optimizer step, each named phase in order: zero that phase's gradients, backpropagate
``task.loss(model, batch, phase)`` over the step's micro-batches (fetched once, shared by the
phases), clip that optimizer's parameters, update them. Which phases run is a function of the
step (e.g. the discriminator only after a warm-up), so resume stays exact. The last phase's
loss is the step's ``loss``; every phase's loss and gradient norm are also logged as
``loss_<phase>`` / ``grad_norm_<phase>``.

On CPU, :meth:`Trainer.run` flushes subnormal floats to zero while it trains
(:func:`cpu_denormals_flushed`): a saturating LSTM makes subnormal activations and gradients,
and x86 arithmetic on them is many times slower (docs/train.md, "The shared training loop").
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from speechunits.errors import SpeechUnitsError
from speechunits.training.checkpoint import (Export, Optimizers, load_optimizer, load_rng, load_weights, read_state,
                                             save_checkpoint, training_dir)
from speechunits.training.config import OptimConfig
from speechunits.training.distributed import Distributed
from speechunits.training.optim import learning_rate, make_optimizer
from speechunits.training.prefetch import BatchPrefetcher
from speechunits.training.task import Task, move_to

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
STOP_MAX_STEPS = "max_steps"
STOP_TIME_BUDGET = "time_budget"
STOP_REQUESTED = "requested"


def subnormals_flushed() -> bool:
    """Whether float32 arithmetic on the calling thread flushes subnormal floats to zero."""
    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)  # 1e-39 < the smallest normal float32


@contextlib.contextmanager
def cpu_denormals_flushed(device: torch.device) -> Iterator[None]:
    """On a CPU ``device``, flush subnormal floats to zero (``torch.set_flush_denormal``) for the block.

    The flag lives in each thread's floating-point state: it covers the calling thread and the
    intra-op threads torch starts later, not those already running (so all of them with one
    thread, ``--threads 1``, or when set before torch's first parallel operation, as the CLI's
    training commands do). Afterwards the calling thread's flag is as before. Elsewhere a no-op.
    """
    if device.type != "cpu":
        yield
        return
    before = subnormals_flushed()
    if before or not torch.set_flush_denormal(True):  # already on, or this CPU cannot flush
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@dataclass
class StepLog:
    """Figures of one optimizer step (summed over its micro-batches and ranks, then divided).

    ``step`` counts steps done (1 after the first). ``metrics`` holds the task's ratios.
    """

    step: int
    loss: float
    lr: float
    grad_norm: float
    wall_seconds: float
    amount: float
    amount_per_second: float
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """One flat ``log.jsonl`` record (metrics beside the loop's figures)."""
        out = asdict(self)
        return {**out.pop("metrics"), **out}


@dataclass
class TrainResult:
    """How a run ended.

    Attributes:
        history: the steps run by this call.
        steps_done: optimizer steps the model has had (including those before a resume).
        steps_max: the cap (``OptimConfig.steps``).
        stop_reason: ``"max_steps"``, ``"time_budget"`` or ``"requested"`` (by ``on_step``).
    """

    history: list[StepLog]
    steps_done: int
    steps_max: int
    stop_reason: str


class Trainer:
    """Trains ``model`` on ``task`` with ``cfg``, checkpointing to ``out_dir`` (None: no files).

    Args:
        state: JSON-able facts stored in every checkpoint's ``state.json`` beside the loop's own
            (``step``, ``world_size``, ``optim``): the trainer's config, ``"consumes"`` (what the
            model reads: e.g. 16 kHz waveforms, features of an encoder, units of a codebook).
        export: called on rank 0 at every checkpoint with ``(model, out_dir)``, to write the
            model in its usable form.
        optimizer: defaults to :func:`~speechunits.training.optim.make_optimizer`; a dict
            ``{phase: optimizer}`` for a multi-phase task (see the module docstring).
        desc, amount_unit: progress bar label and the unit of :attr:`LossOutput.amount`.
        loader_workers: processes that build the micro-batches of :meth:`run` ahead of the steps
            (:class:`~speechunits.training.prefetch.BatchPrefetcher`; 0: built inline). The
            batches, and so the run, are the same either way.
    """

    def __init__(self, model: torch.nn.Module, task: Task, cfg: OptimConfig, out_dir: str | Path | None, *,
                 device: torch.device, dist: Distributed | None = None,
                 optimizer: Optimizers | None = None, state: dict[str, Any] | None = None,
                 export: Export | None = None, desc: str = "train", amount_unit: str = "items",
                 quiet: bool = False, loader_workers: int = 0):
        if loader_workers < 0:
            raise SpeechUnitsError(f"--loader-workers: must be >= 0, got {loader_workers}")
        self.model = model
        self.task = task
        self.cfg = cfg
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.device = device
        self.dist = dist or Distributed()
        self.optimizer: Optimizers = optimizer if optimizer is not None else make_optimizer(model, cfg)
        self.multi_phase = hasattr(task, "phases")
        if self.multi_phase != isinstance(self.optimizer, Mapping):
            raise SpeechUnitsError("a multi-phase task (with phases()) needs a dict of optimizers {phase: optimizer}, "
                                   "and a dict of optimizers needs a multi-phase task")
        self.state = dict(state or {})
        self.export = export
        self.desc = desc
        self.amount_unit = amount_unit
        self.quiet = quiet
        self._log_file: Any = None  # log.jsonl while run() runs (rank 0)
        self.loader_workers = loader_workers
        self._prefetcher: BatchPrefetcher | None = None  # while run() runs with loader_workers
        self.wrapped: torch.nn.Module = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # a phase leaves the other phases' parameters without gradients
            self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                   find_unused_parameters=self.multi_phase)

    # -- checkpoints -------------------------------------------------------------------------------

    def restore(self) -> dict[str, Any]:
        """Load weights, optimizer and this rank's RNG from ``out_dir``; the checkpoint's state."""
        if self.out_dir is None:
            raise SpeechUnitsError("restore: this trainer has no checkpoint directory")
        state = read_state(self.out_dir)
        load_weights(self.out_dir, self.model)
        load_optimizer(self.out_dir, self.optimizer)
        if not load_rng(self.out_dir, self.dist.rank):
            log.warning("%s: no RNG state for rank %d (another world size?): dropout is reseeded",
                        self.out_dir, self.dist.rank)
            torch.manual_seed(self.cfg.seed + self.dist.rank)
        return state

    def checkpoint(self, step: int) -> None:
        """Write a checkpoint of ``step`` steps done (every rank calls this)."""
        if self.out_dir is None:
            return
        state = {**self.state, "step": step, "world_size": self.dist.world, "optim": self.cfg.to_dict()}
        save_checkpoint(self.out_dir, self.model, self.optimizer, state, dist=self.dist, export=self.export)

    # -- steps -------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.cfg.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _phases(self, step: int) -> list[tuple[str | None, torch.optim.Optimizer]]:
        """``(phase, optimizer)`` pairs run at ``step`` (one unnamed phase for a plain task)."""
        if not self.multi_phase:
            return [(None, self.optimizer)]  # type: ignore[list-item]
        names = list(self.task.phases(step))  # type: ignore[attr-defined]
        unknown = [name for name in names if name not in self.optimizer]  # type: ignore[operator]
        if not names or unknown:
            raise SpeechUnitsError(f"step {step + 1}: task phases {names} need optimizers among "
                                   f"{sorted(self.optimizer)}")  # type: ignore[arg-type]
        return [(name, self.optimizer[name]) for name in names]  # type: ignore[index]

    def step(self, step: int, time_fraction: float = 0.0) -> StepLog:
        """Optimizer step ``step`` (0-based) over ``accumulate`` micro-batches (every phase of a multi-phase task)."""
        start = time.perf_counter()
        self.model.train()
        accumulate, world = self.cfg.accumulate, self.dist.world
        phases = self._phases(step)
        lr = learning_rate(step, self.cfg, time_fraction)
        cached: dict[int, Any] = {}

        def micro_batch(micro: int) -> Any:
            if micro in cached:
                return cached[micro]
            index = (step * accumulate + micro) * world + self.dist.rank
            made = self._prefetcher.get(index) if self._prefetcher is not None else self.task.batch(index)
            batch = move_to(made, self.device)
            if len(phases) > 1:
                cached[micro] = batch
            return batch

        names: list[str] | None = None
        totals: list[float] = []
        extra: dict[str, list[float]] = {}
        grad_norm = 0.0
        for phase, optimizer in phases:
            optimizer.zero_grad(set_to_none=True)
            phase_loss = [0.0, 0.0]
            for micro in range(accumulate):
                batch = micro_batch(micro)
                no_sync = self.dist.enabled and micro < accumulate - 1
                with (self.wrapped.no_sync() if no_sync else contextlib.nullcontext()):
                    with self._autocast():
                        out = self.task.loss(self.wrapped, batch) if phase is None else \
                            self.task.loss(self.wrapped, batch, phase)  # type: ignore[call-arg]
                    (out.loss / (out.count if out.count > 0 else 1.0) / accumulate).backward()
                phase_loss = [phase_loss[0] + float(out.loss.detach()), phase_loss[1] + float(out.count)]
                if phase != phases[-1][0]:
                    for name, (num, den) in out.metrics.items():
                        pair = extra.setdefault(name, [0.0, 0.0])
                        pair[0] += float(num)
                        pair[1] += float(den)
                    continue
                if names is None:
                    names = sorted(out.metrics)
                    totals = [0.0] * (3 + 2 * len(names))
                values = [float(out.loss.detach()), float(out.count), float(out.amount)]
                for name in names:
                    values.extend(float(v) for v in out.metrics[name])
                totals = [a + b for a, b in zip(totals, values)]
            params = self.model.parameters() if phase is None else \
                [p for group in optimizer.param_groups for p in group["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if math.isfinite(grad_norm):
                optimizer.step()
            else:
                log.warning("step %d%s: non-finite gradient norm, update skipped", step + 1,
                            "" if phase is None else f" ({phase})")
            if phase is not None:
                extra[f"loss_{phase}"] = phase_loss
                extra[f"grad_norm_{phase}"] = [grad_norm, 1.0]
        extra_names = sorted(name for name in extra if name not in (names or []))
        totals.extend(v for name in extra_names for v in extra[name])
        summed = torch.tensor(totals, dtype=torch.float64)
        if self.dist.enabled:
            torch.distributed.all_reduce(summed)
        loss_sum, count, amount, *pairs = summed.tolist()
        wall = time.perf_counter() - start
        all_names = (names or []) + extra_names
        metrics = {name: pairs[2 * i] / max(pairs[2 * i + 1], 1e-12) for i, name in enumerate(all_names)}
        return StepLog(step=step + 1, loss=loss_sum / max(count, 1e-12), lr=lr, grad_norm=grad_norm,
                       wall_seconds=wall, amount=amount, amount_per_second=amount / max(wall, 1e-9),
                       metrics=metrics)

    # -- the run -----------------------------------------------------------------------------------

    def _open_log(self, start_step: int):
        """``log.jsonl`` for appending, without lines past ``start_step`` (steps redone after a resume)."""
        if not self.dist.is_main or self.out_dir is None:
            return None
        path = training_dir(self.out_dir) / LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")  # torn or damaged lines are dropped below
            kept = [line for line in text.splitlines() if _logged_step(line) <= start_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        return open(path, "a", encoding="utf-8")

    def _shared_fraction(self, started: float) -> float:
        """Elapsed share of the time budget, as rank 0 sees it (every rank stops at the same step)."""
        if self.cfg.max_minutes is None:
            return 0.0
        fraction = (time.perf_counter() - started) / (self.cfg.max_minutes * 60.0)
        if self.dist.enabled:
            shared = torch.tensor([fraction], dtype=torch.float64)
            torch.distributed.broadcast(shared, 0)
            fraction = float(shared[0])
        return fraction

    def _shared_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.dist.enabled:
            return flag
        shared = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
        torch.distributed.broadcast(shared, 0)
        return bool(shared[0] > 0)

    def run(self, start_step: int = 0, on_step: Callable[[StepLog], bool | None] | None = None) -> TrainResult:
        """Train from ``start_step`` (0, or the step :meth:`restore` returned) to ``cfg.steps``.

        A fresh run (``start_step == 0``) seeds the torch RNG with ``seed + rank``. Checkpoints
        every ``checkpoint_every`` steps and at the end (also when the time budget stops it).
        ``on_step(entry)`` runs after every step on every rank (e.g. a dev-set evaluation every
        N steps); when it returns True on rank 0, the run checkpoints and stops
        (``stop_reason "requested"``: early stopping). On CPU, subnormal floats are flushed to zero
        meanwhile (:func:`cpu_denormals_flushed`).
        """
        with cpu_denormals_flushed(self.device):
            return self._run(start_step, on_step)

    def _run(self, start_step: int, on_step: Callable[[StepLog], bool | None] | None) -> TrainResult:
        from tqdm import tqdm

        cfg = self.cfg
        if start_step == 0:
            torch.manual_seed(cfg.seed + self.dist.rank)
        history: list[StepLog] = []
        window: list[StepLog] = []
        done = start_step
        reason = STOP_MAX_STEPS
        log_file = self._log_file = self._open_log(start_step)
        bar = tqdm(total=cfg.steps, initial=min(start_step, cfg.steps), desc=self.desc, unit="step",
                   file=sys.stderr, disable=self.quiet or not self.dist.is_main, dynamic_ncols=True,
                   mininterval=1.0)
        started = time.perf_counter()
        try:
            if self.loader_workers:
                world = self.dist.world
                self._prefetcher = BatchPrefetcher(self.task, start_step * cfg.accumulate * world + self.dist.rank,
                                                   world, self.loader_workers, pin_memory=self.device.type == "cuda")
            for step in range(start_step, cfg.steps):
                fraction = self._shared_fraction(started)
                if fraction >= 1.0 and step > start_step:
                    log.info("time budget of %g min spent after step %d of %d", cfg.max_minutes, step, cfg.steps)
                    reason = STOP_TIME_BUDGET
                    self.checkpoint(step)
                    break
                if (cfg.warmup_fraction is not None and cfg.decay_by_time and step < cfg.warmup_steps
                        and fraction >= cfg.warmup_fraction):
                    log.info("warmup cut to %d steps: %g of the time budget spent", step, cfg.warmup_fraction)
                    cfg.warmup_steps = step
                entry = self.step(step, fraction)
                done = step + 1
                history.append(entry)
                window.append(entry)
                if self.dist.is_main:
                    self._report(bar, log_file, entry, window)
                    if done % cfg.log_every == 0 or done == cfg.steps:
                        window = []
                if on_step is not None and self._shared_flag(bool(on_step(entry))):
                    log.info("stop requested after step %d of %d", done, cfg.steps)
                    reason = STOP_REQUESTED
                    self.checkpoint(done)
                    break
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    self.checkpoint(done)
        finally:
            if self._prefetcher is not None:
                self._prefetcher.close()
                self._prefetcher = None
            bar.close()
            if log_file is not None:
                log_file.close()
            self._log_file = None
        return TrainResult(history=history, steps_done=done, steps_max=cfg.steps, stop_reason=reason)

    def record(self, step: int, **values: Any) -> None:
        """Append ``{"step": step, **values}`` to ``log.jsonl`` (rank 0 of a trainer with an output
        directory; elsewhere nothing): e.g. a dev evaluation, ``record(250, dev={"per": 0.12})``.
        Such lines have no ``loss``; a resume drops those past its step like the step lines."""
        line = json.dumps({"step": int(step), **values}) + "\n"
        if self._log_file is not None:
            self._log_file.write(line)
            self._log_file.flush()
        elif self.dist.is_main and self.out_dir is not None:
            path = training_dir(self.out_dir) / LOG_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line)

    def _report(self, bar: Any, log_file: Any, entry: StepLog, window: list[StepLog]) -> None:
        shown = " ".join(f"{name} {value:.3f}" for name, value in entry.metrics.items())
        bar.update(1)
        bar.set_postfix_str(f"loss {entry.loss:.3f} {shown} {entry.amount_per_second:.1f} {self.amount_unit}/s",
                            refresh=False)
        if log_file is not None:
            log_file.write(json.dumps(entry.to_json()) + "\n")
            log_file.flush()
        if entry.step % self.cfg.log_every == 0 or entry.step == self.cfg.steps:
            n = len(window)
            metrics = " ".join(f"{name} {sum(e.metrics.get(name, 0.0) for e in window) / n:.3f}"
                               for name in entry.metrics)
            amount = sum(e.amount for e in window)
            wall = sum(e.wall_seconds for e in window)
            log.info("step %d/%d loss %.4f %s lr %.2e grad %.2f %.1f %s/s", entry.step, self.cfg.steps,
                     sum(e.loss for e in window) / n, metrics, entry.lr, entry.grad_norm, amount / max(wall, 1e-9),
                     self.amount_unit)


def _log_lines(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a ``log.jsonl``, parsed; none when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def step_records(path: str | Path) -> list[dict[str, Any]]:
    """The optimizer-step lines of a ``log.jsonl``, parsed (a trainer's own :meth:`Trainer.record`
    lines, which have no ``loss``, left out); none when the file does not exist yet."""
    return [record for record in _log_lines(path) if "loss" in record]


def recorded_values(path: str | Path, key: str) -> list[dict[str, Any]]:
    """The :meth:`Trainer.record` lines of a ``log.jsonl`` that carry ``key``, in order, e.g. a probe's
    dev evaluations: ``recorded_values(log, "dev") -> [{"step": 25, "dev": {"per": 0.4}}, ...]``."""
    return [record for record in _log_lines(path) if key in record and "loss" not in record]


def _logged_step(line: str) -> float:
    """The step of a ``log.jsonl`` line; infinity for a blank or torn line (dropped on resume)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf
