"""encoders/hf.py read_preprocessor: a missing preprocessor_config.json means the documented defaults
(with a warning); a file that is there but cannot be used is an error naming it."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from conftest import make_tiny_hf_model
from speechunits.encoders import load_encoder
from speechunits.encoders.hf import PREPROCESSOR_FILE, Preprocessor, read_preprocessor
from speechunits.errors import SpeechUnitsError


def _model_dir(tmp_path: Path, settings: object | None = None, raw: bytes | None = None) -> Path:
    """A directory holding only a preprocessor file with ``settings`` as JSON (or ``raw`` bytes)."""
    root = tmp_path / "model"
    root.mkdir(parents=True)
    if raw is not None:
        (root / PREPROCESSOR_FILE).write_bytes(raw)
    elif settings is not None:
        (root / PREPROCESSOR_FILE).write_text(json.dumps(settings))
    return root


def test_settings_are_read(tmp_path: Path) -> None:
    root = _model_dir(tmp_path, {"do_normalize": True, "sampling_rate": 8000, "feature_size": 1})
    assert read_preprocessor(str(root)) == Preprocessor(do_normalize=True, sample_rate=8000)
    other = _model_dir(tmp_path / "b", {"feature_size": 1})  # keys left out: transformers' defaults
    assert read_preprocessor(str(other)) == Preprocessor(do_normalize=False, sample_rate=16000)


def test_missing_file_gives_defaults_with_a_warning(tmp_path: Path, caplog) -> None:
    root = _model_dir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="speechunits.encoders.hf"):
        assert read_preprocessor(str(root)) == Preprocessor(do_normalize=False, sample_rate=16000)
    assert any(str(root) in r.getMessage() and PREPROCESSOR_FILE in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "content,problem",
    [
        (b'{"do_normalize": true,', "cannot read"),  # truncated JSON
        (b"\xff\xfe not utf-8", "cannot read"),
        (b"[1, 2]", "JSON object"),
        (b'{"do_normalize": "yes"}', "do_normalize"),
        (b'{"do_normalize": 1}', "do_normalize"),
        (b'{"sampling_rate": "16000"}', "sampling_rate"),
        (b'{"sampling_rate": 0}', "sampling_rate"),
        (b'{"sampling_rate": 16000.5}', "sampling_rate"),
        (b'{"sampling_rate": true}', "sampling_rate"),
    ],
)
def test_invalid_file_is_an_error_naming_it(tmp_path: Path, content: bytes, problem: str) -> None:
    root = _model_dir(tmp_path, raw=content)
    with pytest.raises(SpeechUnitsError, match=problem) as info:
        read_preprocessor(str(root))
    assert str(root / PREPROCESSOR_FILE) in str(info.value)


def test_unreadable_file_is_an_error(tmp_path: Path, monkeypatch) -> None:
    root = _model_dir(tmp_path)
    (root / PREPROCESSOR_FILE).mkdir()  # there, but not a readable file
    with pytest.raises(SpeechUnitsError, match="cannot read") as info:
        read_preprocessor(str(root))
    assert PREPROCESSOR_FILE in str(info.value)
    other = _model_dir(tmp_path / "b", {"do_normalize": True})

    def denied(self: Path, *args, **kwargs) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # tests run as root here: chmod would not stop them
    with pytest.raises(SpeechUnitsError, match="Permission denied"):
        read_preprocessor(str(other))


def test_hub_ids_go_through_transformers_cache(tmp_path: Path, monkeypatch, caplog) -> None:
    """No network: transformers' file lookup is replaced by its three outcomes."""
    import transformers.utils

    good = _model_dir(tmp_path, {"do_normalize": True}) / PREPROCESSOR_FILE
    monkeypatch.setattr(transformers.utils, "cached_file", lambda name, filename, **kw: str(good))
    assert read_preprocessor("org/model").do_normalize
    monkeypatch.setattr(transformers.utils, "cached_file", lambda name, filename, **kw: None)  # repo without one
    with caplog.at_level(logging.WARNING, logger="speechunits.encoders.hf"):
        assert read_preprocessor("org/model") == Preprocessor()
    assert any("org/model" in r.getMessage() for r in caplog.records)

    def offline(name: str, filename: str, **kwargs) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.utils, "cached_file", offline)
    with pytest.raises(SpeechUnitsError, match=f"org/model/{PREPROCESSOR_FILE}: cannot fetch"):
        read_preprocessor("org/model")


def test_load_encoder_reports_a_broken_preprocessor(tmp_path: Path) -> None:
    root = make_tiny_hf_model(tmp_path / "m", num_layers=1)
    (root / PREPROCESSOR_FILE).write_text("{not json")
    with pytest.raises(SpeechUnitsError, match=PREPROCESSOR_FILE):
        load_encoder(str(root), device="cpu")
    (root / PREPROCESSOR_FILE).unlink()
    encoder = load_encoder(str(root), device="cpu")  # missing: the defaults
    assert not encoder.do_normalize and encoder.info.sample_rate == 16000
