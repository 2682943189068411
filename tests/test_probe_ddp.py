"""Probe training under torchrun: 2 CPU processes (gloo) train one probe; early stopping stops both."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
from speechunits.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_ranks_write_one_probe_and_stop_together(tmp_path: Path):
    from conftest import free_port
    from speechunits.synth.testing import small_corpus
    from speechunits.training.checkpoint import read_state, training_dir

    corpus = small_corpus(tmp_path / "corpus", minutes=0.5, speakers=2)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "probe"
    # patience 1 and a high learning rate: dev stops improving long before 400 steps; a rank that
    # missed the decision would wait in its next step's all-reduce until the timeout
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(script), "probe", "train", "frames", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "-o", str(out),
           "--lr", "0.5", "--max-steps", "400", "--eval-every", "2", "--patience", "1", "--batch-frames", "2000",
           "--device", "cpu", "--quiet"]
    done = subprocess.run(cmd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["probe"] == str(out)  # rank 0 alone reports
    meta = json.loads((out / "probe.json").read_text())
    assert meta["training"]["world_size"] == 2
    run = meta["runs"][0]
    assert run["stop_reason"] == "requested" and run["steps_done"] < 400
    assert read_state(out)["world_size"] == 2 and training_dir(out).is_dir()
    assert [p.name for p in (out / "runs").iterdir()] == ["lr0.5-seed0"]


@pytest.mark.slow
def test_two_ranks_resume_a_sweep_the_budget_stopped(tmp_path: Path):
    """A 2-rank sweep that a tiny budget stopped mid-run continues on both ranks under a larger
    one (restore, the rmtree of a run without a checkpoint and its barrier: no rank waits alone)."""
    from conftest import free_port
    from speechunits.synth.testing import small_corpus

    corpus = small_corpus(tmp_path / "corpus", minutes=0.5, speakers=2)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "probe"

    def sweep(*extra: str) -> dict:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(script), "probe", "train", "frames", str(corpus / "manifest.tsv"), "--encoder",
               "mfcc", "-o", str(out), "--lr", "1e-3,1e-2", "--max-steps", "300", "--eval-every", "10",
               "--patience", "1000", "--batch-frames", "2000", "--step-schedule", "--device", "cpu", "--quiet",
               *extra]
        done = subprocess.run(cmd, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((out / "probe.json").read_text())

    short = sweep("--max-minutes", "0.02")  # 0.6 s a run: stopped by the budget well before step 300
    assert [r["stop_reason"] for r in short["runs"]] == ["time_budget", "time_budget"]
    stopped = [r["steps_done"] for r in short["runs"]]
    (out / "probe.json").unlink()
    (out / "runs" / "lr0.01-seed0" / "training" / "state.json").unlink()  # as if killed before its first checkpoint
    (out / "runs" / "lr0.01-seed0" / "result.json").unlink()
    meta = sweep("--max-minutes", "60", "--resume")
    assert [(r["stop_reason"], r["steps_done"]) for r in meta["runs"]] == [("max_steps", 300)] * 2
    log = [json.loads(line) for line in (out / "runs" / "lr0.001-seed0" / "training" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(1, 301)) and stopped[0] < 300  # continued: each step once
