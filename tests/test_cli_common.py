"""Shared CLI option parsing and the dispatcher."""
from __future__ import annotations

import subprocess
import sys

import pytest

from speechunits.cli.common import parse_int_list, parse_layers
from speechunits.errors import SpeechUnitsError


@pytest.mark.parametrize("text,expected", [("6", [6]), ("9,6", [6, 9]), ("0-3", [0, 1, 2, 3]), ("1-2,5,2", [1, 2, 5])])
def test_parse_layers(text: str, expected: list[int]) -> None:
    assert parse_layers(text) == expected


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-"])
def test_parse_layers_rejects(text: str) -> None:
    with pytest.raises(SpeechUnitsError, match="--layer"):
        parse_layers(text)


def test_parse_int_list() -> None:
    assert parse_int_list("50,100,500", "--k") == [50, 100, 500]
    with pytest.raises(SpeechUnitsError, match="--k"):
        parse_int_list("50,x", "--k")


def test_console_script_help_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "speechunits.cli.main", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("speechunits ")
    out = subprocess.run([sys.executable, "-m", "speechunits.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMMAND" in out.stdout
    # python -m speechunits: the same command line, the same exit statuses
    out = subprocess.run([sys.executable, "-m", "speechunits", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("speechunits ")
    out = subprocess.run([sys.executable, "-m", "speechunits", "codebook", "info", "/does/not/exist"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "codebook directory not found" in out.stderr


def test_a_reader_that_closes_stdout_ends_the_command_without_a_traceback(tmp_path) -> None:
    """`speechunits ... | head`: once head has read enough, writing fails with EPIPE; the command exits with
    SIGPIPE's 141 and no traceback (stdout closed before anything is written makes that deterministic)."""
    command = [sys.executable, "-m", "speechunits.cli.main"]
    assert subprocess.run(command + ["codebook", "dmel", "-o", str(tmp_path / "dmel")], capture_output=True).returncode == 0
    proc = subprocess.Popen(command + ["codebook", "info", str(tmp_path / "dmel"), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_a_broken_pipe_that_is_not_stdout_is_a_bug_with_its_traceback(monkeypatch, capsys) -> None:
    """Only a closed stdout is the reader going away; any other broken pipe (a worker's) propagates."""
    import speechunits.cli.codebook as codebook_cli
    from speechunits.cli.main import main

    def broken(args):
        raise BrokenPipeError("a worker's pipe")

    monkeypatch.setattr(codebook_cli, "run_info", broken)
    with pytest.raises(BrokenPipeError, match="worker"):
        main(["codebook", "info", "anything"])


#: Every training command takes --threads (cli.common.add_threads), set once by cli.main.
TRAINING_COMMANDS = [("pretrain", "run"), ("vocoder train", "run_train"), ("tts train", "run_train"),
                     ("s2ut train", "run_train"), ("lm train", "run_train"), ("probe train", "run_train")]


@pytest.mark.parametrize("command,handler", TRAINING_COMMANDS)
def test_threads_hold_for_the_command_and_are_restored(command: str, handler: str, monkeypatch) -> None:
    import importlib

    import torch

    from speechunits.cli.main import main

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    seen: list[int] = []
    module = importlib.import_module(f"speechunits.cli.{command.split()[0]}")
    monkeypatch.setattr(module, handler, lambda args: seen.append(torch.get_num_threads()) or 0)
    assert main(_minimal_argv(command, wanted)) == 0
    assert seen == [wanted]
    assert torch.get_num_threads() == before


def _minimal_argv(command: str, threads: int) -> list[str]:
    """The fewest arguments each command's parser accepts (the handler is replaced, nothing runs)."""
    required = {"pretrain": ["in.tsv", "-o", "out"], "vocoder train": ["in", "--codebook", "cb", "-o", "voc"],
                "tts train": ["corpus", "--codebook", "cb", "-o", "tts"], "s2ut train": ["pairs.tsv", "-o", "s2ut"],
                "lm train": ["store", "-o", "lm"], "probe train": ["phones", "in.tsv", "-o", "probe", "--encoder", "mfcc"]}
    return [*command.split(), *required[command], "--threads", str(threads)]


def test_threads_below_one_are_refused(caplog) -> None:
    import torch

    from speechunits.cli.main import main

    before = torch.get_num_threads()
    assert main(["lm", "train", "store", "-o", "lm", "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in caplog.text
    assert torch.get_num_threads() == before
