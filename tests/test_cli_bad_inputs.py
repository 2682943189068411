"""Every subcommand, given a missing, empty, garbage or audio-less input, exits with a message, not a traceback.

Exit 2 is a user error; 1 a corpus run in which every utterance failed (docs/architecture.md).

The parser is walked, so a new subcommand is covered without listing it here. Required options
get the same bad path (choices: their first), outputs a fresh directory. An exit of 0 is a failure
too: a command that runs on nothing hides a wrong path. About 15 s for ~250 calls.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from conftest import leaf_parsers
from speechunits.cli.main import build_parser, main

#: commands that take no input to be wrong about (the demo builds its own corpus)
SKIPPED = {("demo",)}
#: commands that accept the "bad" input kind (a text file is a sentence file for `lm text-ngram`)
ACCEPTS = {(("lm", "text-ngram"), "text_as_wav")}


COMMANDS = [cmd for cmd, _ in leaf_parsers(build_parser()) if cmd and cmd not in SKIPPED]


def bad_inputs(root: Path) -> dict[str, str]:
    (root / "empty_dir").mkdir()
    (root / "text_as_wav.wav").write_text("this is not audio\n")
    (root / "empty.tsv").write_text("")
    (root / "garbage.json").write_text("{nope")
    (root / "dir_of_garbage").mkdir()
    (root / "dir_of_garbage" / "a.wav").write_bytes(b"RIFF\x00\x00garbage")
    (root / "binary.tsv").write_bytes(b"\x9f\xff\x00RIFF\t\x80\n")  # not UTF-8: where a text file is read
    return {"missing": str(root / "does-not-exist"), "empty_dir": str(root / "empty_dir"),
            "text_as_wav": str(root / "text_as_wav.wav"), "empty_tsv": str(root / "empty.tsv"),
            "garbage_json": str(root / "garbage.json"), "dir_of_garbage": str(root / "dir_of_garbage"),
            "binary_tsv": str(root / "binary.tsv")}


@pytest.mark.parametrize("command", COMMANDS, ids=["-".join(c) for c in COMMANDS])
def test_bad_inputs_are_refused_without_a_traceback(command: tuple[str, ...], tmp_path: Path, caplog):
    parser = dict(leaf_parsers(build_parser()))[command]
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    required = [a for a in parser._actions if a.option_strings and a.required]
    for number, (kind, bad) in enumerate(bad_inputs(tmp_path).items()):
        argv = list(command)
        for action in positionals:
            argv += [bad] * (action.nargs if isinstance(action.nargs, int) else 1)
        for action in required:
            flag = action.option_strings[-1]
            if action.choices:
                argv += [flag, str(next(iter(action.choices)))]
            elif flag in ("-o", "--output", "--out"):
                argv += [flag, str(tmp_path / f"out{number}")]
            else:
                argv += [flag, bad]
        options = parser._option_string_actions
        argv += ["--quiet"] if "--quiet" in options else []
        argv += ["--device", "cpu"] if "--device" in options else []
        caplog.clear()
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse refusing the values: a message and exit 2 as well
            status = exc.code
        if (command, kind) in ACCEPTS:
            continue
        assert status in (1, 2), f"{' '.join(argv)}: exit {status}"


def test_no_option_takes_nan_or_infinity(capsys):
    """Every float option parses through finite_float: NaN reached int() or a model before."""
    from speechunits.cli.main import finite_float

    floats = [(command, action.option_strings[-1]) for command, parser in leaf_parsers(build_parser())
              for action in parser._actions if action.type in (float, finite_float)]
    assert floats and all(action_type is finite_float for action_type in
                          (a.type for _, p in leaf_parsers(build_parser()) for a in p._actions
                           if a.type in (float, finite_float)))
    for text in ("nan", "inf", "-inf"):
        with pytest.raises(SystemExit) as exit_info:
            main(["lm", "sample", "lm", "--prompt", "x", f"--seconds={text}", "-o", "out"])
        assert exit_info.value.code == 2 and "expected a finite number" in capsys.readouterr().err
    assert finite_float("1e-3") == 1e-3
    with pytest.raises(SystemExit):
        main(["lm", "sample", "lm", "--prompt", "x", "--seconds", "abc", "-o", "out"])
    assert "--seconds: expected a number, got 'abc'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["synth", "{tmp}/new", "--seed", "-1"], "--seed must be >= 0"),
    (["probe", "train", "phones", "{tmp}/c", "--encoder", "mfcc", "--hidden", "0", "-o", "{tmp}/p"], "--hidden must be"),
])
def test_out_of_range_values_are_refused(argv: list[str], message: str, tmp_path: Path, caplog):
    from speechunits.synth.testing import small_corpus

    corpus = small_corpus(tmp_path / "corpus", minutes=0.3, speakers=2) / "manifest.tsv"
    argv = [a.replace("{tmp}/c", str(corpus)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv + ["--quiet"]) == 2
    assert message in caplog.text


def test_an_output_that_is_a_file_is_one_line_not_a_traceback(tmp_path, caplog):
    """-o naming an existing file: the filesystem's refusal is reported as a user error (exit 2)."""
    from lm_helpers import cyclic, toy_store

    toy_store(tmp_path / "store", [cyclic(0, 40), cyclic(3, 40)])
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    for argv in (["lm", "train", str(tmp_path / "store"), "-o", str(taken), "--steps", "2", "--config", "tiny"],
                 ["lm", "ngram", str(tmp_path / "store"), "-o", str(taken)],
                 ["bpe", "train", str(tmp_path / "store"), "--vocab", "12", "-o", str(taken)],
                 ["units", "export", str(tmp_path / "store"), "--format", "fairseq", "-o", str(taken)]):
        caplog.clear()
        assert main(argv + ["--quiet"]) == 2, argv
        assert f"{taken}: File exists" in caplog.text, argv
    assert taken.read_text() == "keep me\n"


def test_filesystem_conditions_are_user_errors_and_other_os_errors_stay_bugs(monkeypatch, caplog):
    import errno
    import os

    import speechunits.cli.units as units_cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(units_cli, "run_info", full_disk)
    assert main(["units", "info", "x"]) == 2 and "No space left on device" in caplog.text

    def io_error(args):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/dev/sdz")

    monkeypatch.setattr(units_cli, "run_info", io_error)
    with pytest.raises(OSError):
        main(["units", "info", "x"])
