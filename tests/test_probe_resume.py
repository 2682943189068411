"""A killed probe sweep resumes where it stopped and ends exactly where an unbroken one ends (toy data)."""
from __future__ import annotations

import json

import pytest
import torch

from probe_helpers import toy_phone_corpus

from speechunits.errors import SpeechUnitsError
from speechunits.probe.feature_inputs import ArrayInput
from speechunits.probe.model_dir import load_probe
from speechunits.probe.resume import sweep_progress
from speechunits.probe.train import train_probe
from speechunits.training.loop import Trainer, step_records

RUN_STEPS = 40


class Killed(Exception):
    """What the test raises in the middle of a run, as a kill would stop the process."""


def _sweep(out, resume: bool = False, **options):
    inputs, labels, split = toy_phone_corpus()
    settings = dict(interface="single", head="linear", lrs=(3e-3, 3e-2), max_steps=RUN_STEPS, eval_every=10,
                    patience=100, batch_frames=120, step_schedule=True, quiet=True, device="cpu")
    settings.update(options)
    return train_probe("phones", inputs, labels, split, out, resume=resume, **settings)


def _counting_steps(monkeypatch, kill_at: int | None = None) -> list[int]:
    """Counts Trainer.step calls (their step numbers); raises :class:`Killed` at call ``kill_at``."""
    calls: list[int] = []
    original = Trainer.step

    def step(self, index, time_fraction=0.0):
        if kill_at is not None and len(calls) == kill_at:
            raise Killed()
        calls.append(index)
        return original(self, index, time_fraction)

    monkeypatch.setattr(Trainer, "step", step)
    return calls


def _same_result(resumed, unbroken) -> None:
    assert resumed.lr == unbroken.lr and resumed.seed == unbroken.seed
    for a, b in zip(resumed.runs, unbroken.runs):
        assert (a.lr, a.best_step, a.steps_done, a.stop_reason) == (b.lr, b.best_step, b.steps_done, b.stop_reason)
        assert a.dev == pytest.approx(b.dev, abs=1e-6)
        for key in b.state:
            torch.testing.assert_close(a.state[key], b.state[key], rtol=1e-5, atol=1e-6)
    assert resumed.test == unbroken.test


def test_a_sweep_killed_in_its_second_run_resumes_from_the_last_dev_evaluation(tmp_path, monkeypatch):
    unbroken = _sweep(tmp_path / "unbroken")
    # killed during step 36 of the second run (RUN_STEPS + 35 steps trained): its checkpoint is step 30
    _counting_steps(monkeypatch, kill_at=RUN_STEPS + 35)
    with pytest.raises(Killed):
        _sweep(tmp_path / "killed")
    assert not (tmp_path / "killed" / "probe.json").exists()
    assert sweep_progress(tmp_path / "killed") == {"lr0.003-seed0": f"ended at step {RUN_STEPS} (max_steps)",
                                                   "lr0.03-seed0": "at step 30"}
    (tmp_path / "killed" / "runs" / "lr0.03-seed0" / "training" / "state.json").rename(tmp_path / "state.json")
    assert sweep_progress(tmp_path / "killed")["lr0.03-seed0"] == "started, no checkpoint now"  # one being written
    (tmp_path / "state.json").rename(tmp_path / "killed" / "runs" / "lr0.03-seed0" / "training" / "state.json")
    with pytest.raises(SpeechUnitsError, match="unfinished sweep.*--resume"):
        _sweep(tmp_path / "killed")
    monkeypatch.undo()
    calls = _counting_steps(monkeypatch)
    resumed = _sweep(tmp_path / "killed", resume=True)
    assert calls == list(range(30, RUN_STEPS))  # the first run is reused; the second goes on from step 30
    _same_result(resumed, unbroken)
    # the resumed run's log holds each step once, with the unbroken run's losses
    logs = [step_records(tmp_path / d / "runs" / "lr0.03-seed0" / "training" / "log.jsonl")
            for d in ("killed", "unbroken")]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == list(range(1, RUN_STEPS + 1))
    assert [r["loss"] for r in logs[0]] == pytest.approx([r["loss"] for r in logs[1]], rel=1e-5)
    probes = [load_probe(tmp_path / d) for d in ("killed", "unbroken")]
    for key, value in probes[1].model.state_dict().items():
        torch.testing.assert_close(probes[0].model.state_dict()[key], value)
    # one best-weights file per run is left, the chosen step's
    for run in resumed.runs:
        run_dir = tmp_path / "killed" / "runs" / f"lr{run.lr:g}-seed0"
        assert [p.name for p in run_dir.glob("best-step*")] == [f"best-step{run.best_step}.safetensors"]


def test_a_run_that_ended_before_its_result_was_written_is_not_trained_again(tmp_path, monkeypatch):
    """Early stopping (patience 1 on a noisy dev) checkpoints the stop; a kill before result.json
    leaves that checkpoint, and the resumed sweep takes the run as it ended."""
    unbroken = _sweep(tmp_path / "unbroken", patience=1, lrs=(3e-1,))
    assert unbroken.runs[0].stop_reason == "requested"
    _sweep(tmp_path / "killed", patience=1, lrs=(3e-1,))
    (tmp_path / "killed" / "probe.json").unlink()
    (tmp_path / "killed" / "runs" / "lr0.3-seed0" / "result.json").unlink()
    calls = _counting_steps(monkeypatch)
    resumed = _sweep(tmp_path / "killed", patience=1, lrs=(3e-1,), resume=True)
    assert calls == []
    _same_result(resumed, unbroken)


def test_a_run_the_budget_stopped_continues_under_a_larger_budget(tmp_path, monkeypatch):
    """Under step_schedule the budget only stops: a run stopped at step 20 by a (fake) clock and
    resumed with more time ends like a run that had the time from the start."""
    unbroken = _sweep(tmp_path / "unbroken", lrs=(3e-2,))
    calls: list[int] = []

    def fraction(self, started):  # the budget is spent once 20 steps have run
        calls.append(1)
        return 1.0 if len(calls) > 20 else 0.0

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_shared_fraction", fraction)
        short = _sweep(tmp_path / "short", lrs=(3e-2,), max_minutes=30.0)
    assert (short.runs[0].stop_reason, short.runs[0].steps_done) == ("time_budget", 20)
    (tmp_path / "short" / "probe.json").unlink()
    resumed = _sweep(tmp_path / "short", lrs=(3e-2,), max_minutes=60.0, resume=True)
    _same_result(resumed, unbroken)
    record = json.loads((tmp_path / "short" / "runs" / "lr0.03-seed0" / "result.json").read_text())
    assert (record["steps_done"], record["stop_reason"]) == (RUN_STEPS, "max_steps")


def test_a_resume_with_other_settings_is_refused_naming_them(tmp_path, monkeypatch):
    _counting_steps(monkeypatch, kill_at=25)
    with pytest.raises(Killed):
        _sweep(tmp_path / "p")
    monkeypatch.undo()
    with pytest.raises(SpeechUnitsError, match="another sweep.*patience: stored 100, now 7"):
        _sweep(tmp_path / "p", patience=7, resume=True)
    with pytest.raises(SpeechUnitsError, match="another sweep.*consumes"):
        inputs, labels, split = toy_phone_corpus()
        other = ArrayInput(inputs.features, encoder="toy", encoder_identity="enc-b", layers=[0], frame_rate=100.0)
        train_probe("phones", other, labels, split, tmp_path / "p", resume=True, interface="single", head="linear",
                    lrs=(3e-3, 3e-2), max_steps=RUN_STEPS, eval_every=10, patience=100, batch_frames=120,
                    step_schedule=True, quiet=True, device="cpu")
    # the same features under another name or path (another working directory) go on
    inputs, labels, split = toy_phone_corpus()
    moved = ArrayInput(inputs.features, encoder="../elsewhere/toy", encoder_identity="enc-a", layers=[0],
                       frame_rate=100.0)
    assert train_probe("phones", moved, labels, split, tmp_path / "p", resume=True, interface="single",
                       head="linear", lrs=(3e-3, 3e-2), max_steps=RUN_STEPS, eval_every=10, patience=100,
                       batch_frames=120, step_schedule=True, quiet=True, device="cpu").lr in (3e-3, 3e-2)
