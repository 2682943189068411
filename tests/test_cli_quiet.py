"""``--quiet`` leaves only warnings and errors in the log; ``-v`` adds debug lines."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.cli.main import main


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "corpus"
    root.mkdir()
    for name in ("a", "b"):
        sf.write(root / f"{name}.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    return root


def _fit(corpus: Path, out: Path, *flags: str) -> list[str]:
    return ["fit", str(corpus), "--encoder", "mfcc", "--k", "2", "--iters", "2", "-o", str(out), *flags]


def test_quiet_logs_no_info(corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    package_logger = logging.getLogger("speechunits")
    level_before = package_logger.level
    assert main(_fit(corpus, tmp_path / "cb1")) == 0
    info = [r for r in caplog.records if r.levelno == logging.INFO and r.name.startswith("speechunits")]
    assert info, "without --quiet the fit reports its k-means at INFO"
    caplog.clear()
    assert main(_fit(corpus, tmp_path / "cb2", "--quiet")) == 0
    assert (tmp_path / "cb2" / "codebook.json").is_file()
    assert [r for r in caplog.records if r.levelno < logging.WARNING] == []
    caplog.clear()
    assert main(["-v", *_fit(corpus, tmp_path / "cb3", "--quiet")]) == 0  # -v wins
    assert any(r.levelno == logging.INFO for r in caplog.records)
    assert package_logger.level == level_before  # main() leaves the logger as it found it


def test_quiet_stderr_of_the_real_command(corpus: Path, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "speechunits.cli.main"]
    loud = subprocess.run(run + _fit(corpus, tmp_path / "cb1"), capture_output=True, text=True, timeout=300)
    assert loud.returncode == 0 and "INFO speechunits" in loud.stderr
    quiet = subprocess.run(run + _fit(corpus, tmp_path / "cb2", "--quiet"), capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0
    assert "INFO" not in quiet.stderr and "DEBUG" not in quiet.stderr


def test_every_command_takes_quiet() -> None:
    """Scripts pass --quiet to whatever they call; a command without it stops such a script."""
    from conftest import leaf_parsers
    from speechunits.cli.main import build_parser

    leaves = list(leaf_parsers(build_parser()))
    assert len(leaves) > 40
    missing = [" ".join(name) for name, parser in leaves
               if "--quiet" not in {o for a in parser._actions for o in a.option_strings}]
    assert missing == []
