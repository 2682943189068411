"""What a probe sweep keeps on disk so that a killed sweep resumes where it stopped.

Every ``(lr, seed)`` run of :func:`speechunits.probe.train.train_probe` lives in
``PROBE/runs/lr{lr}-seed{seed}/``::

    training/                   the one checkpoint format (speechunits.training.checkpoint), written
                                after every dev evaluation; its state.json holds the sweep's
                                fingerprint ("sweep") and the run's best-so-far record ("probe_run")
    best-step{S}.safetensors    the weights of the best dev evaluation so far (step S)
    result.json                 written once the run has ended: its RunResult record (test excepted)

A resumed sweep reuses every run with a ``result.json`` and continues every run with a
checkpoint from its last dev evaluation; the fingerprint (input identity, model spec, labels,
split, step and evaluation settings) must match, or it refuses with the differing facts.
At most two best files exist at a time: the one the last checkpoint names and, after a new best,
the newer one (the older goes at the next evaluation, once the checkpoint names the newer).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object, read_safetensors, write_json_atomic

RUNS_DIR = "runs"
RESULT_FILE = "result.json"
BEST_PREFIX = "best-step"
#: keys of a checkpoint's state.json written by a sweep
SWEEP_KEY = "sweep"
RUN_KEY = "probe_run"


def split_digest(train: Sequence[str], dev: Sequence[str], test: Sequence[str]) -> str:
    """sha256 of the split's three ordered id lists."""
    text = json.dumps([list(train), list(dev), list(test)], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_fingerprint(stored: Mapping[str, Any] | None, current: Mapping[str, Any], where: Path) -> None:
    """Raise unless ``stored`` (a run's saved fingerprint) equals ``current``.

    Raises:
        SpeechUnitsError: naming the facts that differ (or saying the run predates resumable sweeps).
    """
    if stored is None:
        raise SpeechUnitsError(f"{where}: has no sweep fingerprint (written by a speechunits without resumable "
                               "sweeps); delete it or pick another -o")
    current = json.loads(json.dumps(current))  # tuples -> lists, as stored
    differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if differ:
        shown = "; ".join(f"{k}: stored {_short(stored.get(k))}, now {_short(current.get(k))}" for k in differ)
        raise SpeechUnitsError(f"{where}: this run belongs to another sweep ({shown}); resume it with the same "
                               "input, labels, split and settings, or pick another -o")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def best_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / f"{BEST_PREFIX}{int(step)}.safetensors"


def save_best(run_dir: Path, step: int, state: Mapping[str, torch.Tensor], keep: int | None) -> None:
    """Write the best weights of ``step`` (atomically) and delete best files of steps other than
    ``step`` and ``keep`` (the step the last checkpoint names)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = best_path(run_dir, step)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
    prune_best(run_dir, {int(step)} | ({int(keep)} if keep is not None else set()))


def prune_best(run_dir: Path, keep: set[int]) -> None:
    """Delete the best files of steps not in ``keep``."""
    for path in Path(run_dir).glob(f"{BEST_PREFIX}*.safetensors"):
        step = path.name[len(BEST_PREFIX):-len(".safetensors")]
        if not step.isdigit() or int(step) not in keep:
            path.unlink(missing_ok=True)


def load_best(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The best weights of ``step``.

    Raises:
        SpeechUnitsError: the file is missing or unreadable.
    """
    path = best_path(run_dir, step)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: missing (the run's best weights); delete {run_dir} to train it again")
    return dict(read_safetensors(path))


def save_result(run_dir: Path, record: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> None:
    """Write ``result.json`` (the ended run's record beside the sweep fingerprint), atomically."""
    write_json_atomic(Path(run_dir) / RESULT_FILE, {**record, SWEEP_KEY: fingerprint})


def read_result(run_dir: Path, fingerprint: Mapping[str, Any]) -> dict[str, Any] | None:
    """An ended run's record (fingerprint checked), or None when the run has not ended."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    record = read_json_object(path, missing=f"{path}: missing")
    check_fingerprint(record.pop(SWEEP_KEY, None), fingerprint, Path(run_dir))
    return record


def sweep_progress(out_dir: Path) -> dict[str, str]:
    """``{run name: "ended at step N (reason)" | "at step N" | "started, no checkpoint now" | "not started"}``
    of the runs under ``out_dir/runs/`` (:data:`RUNS_DIR`), for reports beside a running or killed sweep
    (reads, never writes)."""
    from speechunits.training.checkpoint import STATE_FILE, training_dir

    progress: dict[str, str] = {}
    runs = Path(out_dir) / RUNS_DIR
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        try:
            if (run_dir / RESULT_FILE).is_file():
                record = read_json_object(run_dir / RESULT_FILE)
                progress[run_dir.name] = f"ended at step {record['steps_done']} ({record['stop_reason']})"
            elif (training_dir(run_dir) / STATE_FILE).is_file():
                step = read_json_object(training_dir(run_dir) / STATE_FILE).get("step")
                progress[run_dir.name] = f"at step {step}"
            elif training_dir(run_dir).is_dir():  # before its first checkpoint, or while one is written
                progress[run_dir.name] = "started, no checkpoint now"
            else:
                progress[run_dir.name] = "not started"
        except (SpeechUnitsError, KeyError):  # a file being replaced as we read: say so, do not fail
            progress[run_dir.name] = "unreadable now"
    return progress
