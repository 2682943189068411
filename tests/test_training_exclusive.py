"""One training run per -o directory: a second process is refused while the first runs."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import speechunits.cli.lm as lm_cli
from conftest import leaf_parsers
from speechunits.cli.main import build_parser, main
from speechunits.errors import SpeechUnitsError
from speechunits.training.exclusive import exclusive_output

HOLD = textwrap.dedent("""
    import sys
    from speechunits.training.exclusive import exclusive_output
    with exclusive_output(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()   # until the test closes our stdin
""")


def test_every_training_command_names_its_output_so_it_is_locked():
    trainers = [(words, p) for words, p in leaf_parsers(build_parser()) if p.get_default("trains")]
    assert len(trainers) >= 6
    for words, parser in trainers:
        assert any(a.dest == "output" and "-o" in a.option_strings for a in parser._actions), words


def test_a_second_run_into_the_same_directory_is_refused(tmp_path, monkeypatch, caplog):
    out = tmp_path / "lm"
    calls = []
    monkeypatch.setattr(lm_cli, "run_train", lambda args: calls.append(args.output) or 0)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["lm", "train", str(tmp_path / "store"), "-o", str(out)]) == 2
        assert "another training run is writing this directory" in caplog.text and calls == []
        assert out.is_dir()  # the other run's directory is left alone
        # another -o is free, and the ranks > 0 of a torchrun job share rank 0's directory
        assert main(["lm", "train", str(tmp_path / "store"), "-o", str(tmp_path / "other")]) == 0
        monkeypatch.setenv("RANK", "1")
        with exclusive_output(out):
            pass
        monkeypatch.delenv("RANK")
        with pytest.raises(SpeechUnitsError, match="another training run"):
            with exclusive_output(out):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert main(["lm", "train", str(tmp_path / "store"), "-o", str(out)]) == 0  # free once the first ended
    assert calls == [str(tmp_path / "other"), str(out)]


def test_a_refused_command_leaves_no_empty_directory(tmp_path):
    """The lock creates -o; a command that fails before writing anything removes it again."""
    out = tmp_path / "new" / "lm"
    assert main(["lm", "train", str(tmp_path / "no-such-store"), "-o", str(out)]) == 2
    assert not out.exists()
    out.mkdir(parents=True)
    assert main(["lm", "train", str(tmp_path / "no-such-store"), "-o", str(out)]) == 2
    assert out.is_dir()  # it was there before: kept


def test_a_filesystem_that_cannot_lock_goes_on_unlocked(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from speechunits.locks import ExclusiveLock

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = ExclusiveLock(tmp_path / "x.lock", "busy")
    assert "cannot lock here (No locks available)" in caplog.text
    lock.release()
