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
