"""Every ``speechunits ...`` command in the README's and the docs' shell (and plain) code blocks parses.

Parsing only (nothing runs): an option renamed or removed in the code, or mistyped in the text,
fails here instead of on a user's machine. What the commands do together is checked by running
the README's path by hand (see the closing notes); the end-to-end tests cover the same steps.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from speechunits.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", text, flags=re.S)


def _commands(block: str) -> list[str]:
    """The ``speechunits`` commands of a block: continuation lines joined, comments cut, ``&&`` split."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        for part in line.split("&&"):
            part = part.strip()
            if not part.startswith("speechunits "):
                continue
            part = re.sub(r"\s\|\s[^\[\]]*\]", "]", part)  # a synopsis' "[A | B | C]": keep A
            words = shlex.split(part, comments=True)
            # a pipe ends the command; "a|b|c" in an option's value lists alternatives: take the first
            if "|" in words:
                words = words[:words.index("|")]
            if ">" in words:
                words = words[:words.index(">")]
            # usage synopses write optional parts as "[--seed 0]" and values as metavars ("--layer L"):
            # check them as if given, with 1 for a metavar
            words = [w.strip("[]") for w in words if w != "..."]
            words = [("1" if re.fullmatch(r"[A-Z][A-Z_]*", w) and i and words[i - 1].startswith("--") else w)
                     for i, w in enumerate(words)]
            commands.append(shlex.join(w.split("|")[0] if "|" in w else w for w in words if w))
    return commands


def _cases() -> list[tuple[str, str]]:
    cases = []
    for path in DOCUMENTS:
        for block in _shell_blocks(path.read_text(encoding="utf-8")):
            cases.extend((path.name, command) for command in _commands(block))
    return cases


CASES = _cases()


def test_the_readme_and_docs_have_commands_to_check() -> None:
    readme = [c for name, c in CASES if name == "README.md"]
    assert len(readme) >= 40 and any(c.startswith("speechunits lm sample") for c in readme)


@pytest.mark.parametrize("document,command", CASES, ids=[f"{d}:{c[:60]}" for d, c in CASES])
def test_command_parses(document: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    words = shlex.split(command)[1:]
    try:
        parser.parse_args(words)
    except SystemExit as exc:
        assert exc.code == 0, f"{document}: `{command}` does not parse: {capsys.readouterr().err.strip()}"
