"""``--quiet`` is quiet for transformers too: no "Loading weights" bar when an HF encoder loads,
through transformers' own switches, which are restored after the command."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from speechunits.cli.main import main


def test_quiet_features_with_an_hf_encoder_prints_nothing(tiny_hubert_dir: Path, tone_dir: Path,
                                                          tmp_path: Path) -> None:
    command = [sys.executable, "-m", "speechunits.cli.main", "features", str(tone_dir), "--encoder",
               str(tiny_hubert_dir), "--layer", "1", "--device", "cpu"]
    quiet = subprocess.run(command + ["-o", str(tmp_path / "q"), "--quiet"], capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    loud = subprocess.run(command + ["-o", str(tmp_path / "l")], capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and "Loading weights" in loud.stderr  # the switch, not a lost stream


def test_transformers_switches_are_restored(tiny_hubert_dir: Path, tone_dir: Path, tmp_path: Path) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    try:
        assert main(["features", str(tone_dir), "--encoder", str(tiny_hubert_dir), "--layer", "1", "--quiet",
                     "-o", str(tmp_path / "q"), "--device", "cpu"]) == 0
        assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity_warning()
