"""The one speakers.tsv reader (corpus.read_speakers): what it accepts and the errors it gives."""
from __future__ import annotations

from pathlib import Path

import pytest

from speechunits.corpus import read_speakers
from speechunits.errors import SpeechUnitsError


def test_reads_tab_separated_pairs(tmp_path: Path) -> None:
    path = tmp_path / "speakers.tsv"
    path.write_bytes(b"spk1/u1\tspk1\r\nspk2/u7\tAnna Lee \n\nu3\t7\n")
    assert read_speakers(path) == {"spk1/u1": "spk1", "spk2/u7": "Anna Lee", "u3": "7"}


@pytest.mark.parametrize("text, line, match", [
    ("a\tspk1\nb spk2\n", 2, "expected utt_id<TAB>speaker, got 'b spk2'"),  # spaces, not a tab
    ("a\tspk1\tx\n", 1, "expected utt_id<TAB>speaker"),  # three fields
    ("a\t\n", 1, "expected utt_id<TAB>speaker"),  # no speaker
    ("a\tspk1\nb\tspk2\na\tspk3\n", 3, "'a' listed twice"),
])
def test_bad_lines_name_the_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    path = tmp_path / "speakers.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match=match) as raised:
        read_speakers(path)
    assert str(raised.value).startswith(f"{path}:{line}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="speakers file not found"):
        read_speakers(tmp_path / "nope.tsv")
