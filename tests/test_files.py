"""One reader of artefact JSON files: every failure is a SpeechUnitsError naming the file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object, read_safetensors


def test_reads_an_object(tmp_path: Path):
    (tmp_path / "a.json").write_text(json.dumps({"k": [1, 2], "s": "é"}), encoding="utf-8")
    assert read_json_object(tmp_path / "a.json") == {"k": [1, 2], "s": "é"}


@pytest.mark.parametrize("content, message", [
    (b"{not json", "a.json: not valid JSON"),
    (b"", "a.json: not valid JSON"),
    (b"\xff\xfe{}", "a.json: unreadable"),
    (b"[1, 2]", "a.json: expected a JSON object, got list"),
    (b"null", "a.json: expected a JSON object, got NoneType"),
])
def test_bad_files_are_clear_errors(tmp_path: Path, content: bytes, message: str):
    (tmp_path / "a.json").write_bytes(content)
    with pytest.raises(SpeechUnitsError, match=message):
        read_json_object(tmp_path / "a.json")


def test_missing_file_message(tmp_path: Path):
    with pytest.raises(SpeechUnitsError, match="b.json: not found"):
        read_json_object(tmp_path / "b.json")
    (tmp_path / "d.json").mkdir()  # there, but not a file
    with pytest.raises(SpeechUnitsError, match="^no model here$"):
        read_json_object(tmp_path / "d.json", missing="no model here")


def test_artefact_readers_that_used_to_raise_bare_errors(tmp_path: Path):
    """features.json and a pretraining checkpoint's files were read without any check before."""
    from speechunits.features.io import read_features_meta

    (tmp_path / "features.json").write_text("{truncated", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="features.json: not valid JSON"):
        read_features_meta(tmp_path)
    (tmp_path / "features.json").write_text("[]", encoding="utf-8")
    with pytest.raises(SpeechUnitsError, match="features.json: expected a JSON object"):
        read_features_meta(tmp_path)


def test_safetensors_round_trip_and_damaged_files(tmp_path: Path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.arange(6.0).reshape(2, 3)}, str(tmp_path / "t.safetensors"))
    assert torch.equal(read_safetensors(tmp_path / "t.safetensors")["w"], torch.arange(6.0).reshape(2, 3))
    data = (tmp_path / "t.safetensors").read_bytes()
    for damaged in (data[: len(data) - 5], b"", b"\x00garbage\xff" * 4):
        (tmp_path / "t.safetensors").write_bytes(damaged)
        with pytest.raises(SpeechUnitsError, match="t.safetensors: unreadable safetensors file"):
            read_safetensors(tmp_path / "t.safetensors")
    with pytest.raises(SpeechUnitsError, match="u.safetensors: missing"):
        read_safetensors(tmp_path / "u.safetensors")
