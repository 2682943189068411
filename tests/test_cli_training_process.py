"""The CLI's training commands flush subnormal floats on every CPU thread, other commands on none."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import speechunits.cli.probe as probe_cli
from speechunits.cli.main import main

#: In a fresh process with 2 intra-op threads: float32 subnormals that survive ``x * 1.0`` (bit test,
#: no float comparison), counted while the training context is on. ``late``: a parallel operation
#: starts torch's thread pool before the context, whose flag then reaches the calling thread only.
POOL_CHECK = textwrap.dedent("""
    import sys, torch
    from speechunits.cli.main import training_process
    torch.set_num_threads(2)
    x = None
    if sys.argv[1] == "late":
        x = torch.full((1 << 20,), 1e-39)
    with training_process(True):
        x = torch.full((1 << 20,), 1e-39) if x is None else x
        print(int(((x * 1.0).view(torch.int32) != 0).sum()))
""")


def _survivors(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", POOL_CHECK, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_training_commands_flush_subnormals_on_every_thread_they_start():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    late = _survivors("late")
    if late == 0:
        pytest.skip("one thread did all the work: the check cannot tell the threads apart here")
    assert _survivors("early") == 0  # every element, whichever thread computed it


def _flushing() -> bool:
    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)


def test_flag_is_on_during_a_training_command_only(monkeypatch, tmp_path):
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    seen = []
    monkeypatch.setattr(probe_cli, "run_train", lambda args: seen.append(("train", _flushing())) or 0)
    monkeypatch.setattr(probe_cli, "run_eval", lambda args: seen.append(("eval", _flushing())) or 0)
    assert main(["probe", "train", "phones", str(tmp_path), "--features", str(tmp_path), "-o",
                 str(tmp_path / "p")]) == 0
    assert main(["probe", "eval", str(tmp_path / "p"), str(tmp_path)]) == 0
    assert seen == [("train", True), ("eval", False)]
    assert not _flushing()  # restored after the command
