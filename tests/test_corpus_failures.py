"""Corpus jobs skip only bad input: a bug or an out-of-memory stops the run with its traceback,
and a run in which every utterance failed exits 1 (features, encode, fit; invariance in
test_invariance.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_tone
from speechunits.cli.main import main
from speechunits.corpus import open_corpus
from speechunits.encoders import load_encoder
from speechunits.encoders.spectral import SpectralEncoder
from speechunits.errors import SpeechUnitsError
from speechunits.scale.jobs import feature_items
from speechunits.scale.options import ScaleOptions

RATE = 16000
#: Lengths (s) of the tones; the patched encoder chokes on the one of BAD_SECONDS.
SECONDS = (0.6, 0.9, 1.3, 1.1)
BAD_SECONDS = 1.3


@pytest.fixture()
def tones(tmp_path: Path) -> Path:
    for i, secs in enumerate(SECONDS):
        write_tone(tmp_path / "tones" / f"u{i}.wav", secs, freq=150 + 50 * i, seed=i)
    return tmp_path / "tones"


@pytest.fixture()
def corrupt(tmp_path: Path) -> Path:
    for name in ("a.wav", "b.wav"):
        (tmp_path / "corrupt" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "corrupt" / name).write_bytes(b"RIFF not really a wav")
    return tmp_path / "corrupt"


def choke_on_bad_length(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """Make the spectral encoders raise ``exc`` for any batch holding the BAD_SECONDS utterance."""
    original = SpectralEncoder.extract_batch

    def extract_batch(self, waves, layers=(0,), **kwargs):
        if any(len(w) == round(BAD_SECONDS * RATE) for w in waves):
            raise exc
        return original(self, waves, layers, **kwargs)

    monkeypatch.setattr(SpectralEncoder, "extract_batch", extract_batch)


@pytest.mark.parametrize("loader_workers", [0, 2], ids=["serial", "prefetching"])
@pytest.mark.parametrize("exc", [RuntimeError("a bug in the model"), torch.OutOfMemoryError("CUDA out of memory"),
                                 MemoryError(), TypeError("bad call")], ids=lambda e: type(e).__name__)
def test_encoder_bug_or_oom_stops_the_run(monkeypatch: pytest.MonkeyPatch, tones: Path, loader_workers: int,
                                          exc: BaseException) -> None:
    choke_on_bad_length(monkeypatch, exc)
    encoder = load_encoder("mfcc", device="cpu")
    items = feature_items(encoder, open_corpus(tones), [0], options=ScaleOptions(loader_workers=loader_workers),
                          quiet=True)
    with pytest.raises(type(exc)) as raised:
        list(items)
    assert raised.value is exc  # the original exception, with its traceback, not a skip record


@pytest.mark.parametrize("loader_workers", ["0", "2"], ids=["serial", "prefetching"])
def test_encoder_bug_stops_features_and_encode_commands(monkeypatch: pytest.MonkeyPatch, tones: Path, tmp_path: Path,
                                                        loader_workers: str) -> None:
    assert main(["fit", str(tones), "--encoder", "mfcc", "--k", "3", "--iters", "2", "-o", str(tmp_path / "cb"),
                 "--quiet"]) == 0
    choke_on_bad_length(monkeypatch, RuntimeError("a bug in the model"))
    common = ["--quiet", "--loader-workers", loader_workers]
    with pytest.raises(RuntimeError, match="a bug in the model"):
        main(["features", str(tones), "--encoder", "mfcc", "-o", str(tmp_path / "f"), *common])
    assert not (tmp_path / "f" / "features.json").exists()
    with pytest.raises(RuntimeError, match="a bug in the model"):
        main(["encode", str(tones), "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "u"), *common])
    assert not (tmp_path / "u" / ".errors.jsonl").exists()


def test_input_the_encoder_refuses_is_skipped(monkeypatch: pytest.MonkeyPatch, tones: Path) -> None:
    """A SpeechUnitsError raised for one input is bad input: its batch is retried one by one and
    only that utterance is skipped, with the reason."""
    choke_on_bad_length(monkeypatch, SpeechUnitsError("input refused"))
    encoder = load_encoder("mfcc", device="cpu")
    items = list(feature_items(encoder, open_corpus(tones), [0], options=ScaleOptions(loader_workers=0),
                               max_batch_seconds=30.0, quiet=True))
    assert [(i.utt.id, i.features is None) for i in items] == [("u0", False), ("u1", False), ("u2", True),
                                                                 ("u3", False)]
    assert "u2.wav" in items[2].error and "input refused" in items[2].error
    good = items[0].features[0]
    assert good.shape[0] == encoder.info.num_frames(round(SECONDS[0] * RATE))


def test_every_utterance_failed_exits_1(tones: Path, corrupt: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    assert main(["features", str(corrupt), "--encoder", "mfcc", "-o", str(tmp_path / "f"), "--quiet"]) == 1
    assert f"every utterance failed (2); see {tmp_path / 'f' / 'errors.jsonl'}" in caplog.text
    assert len((tmp_path / "f" / "errors.jsonl").read_text().splitlines()) == 2
    caplog.clear()
    assert main(["fit", str(corrupt), "--encoder", "mfcc", "--k", "3", "-o", str(tmp_path / "cb0"), "--quiet"]) == 1
    assert "every utterance failed (2)" in caplog.text and "a.wav" in caplog.text
    assert not (tmp_path / "cb0").exists()
    assert main(["fit", str(tones), "--encoder", "mfcc", "--k", "3", "--iters", "2", "-o", str(tmp_path / "cb"),
                 "--quiet"]) == 0
    caplog.clear()
    assert main(["encode", str(corrupt), "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "u"),
                 "--quiet"]) == 1
    assert f"every utterance failed (2); see {tmp_path / 'u' / '.errors.jsonl'}" in caplog.text


def test_some_failures_exit_0_and_are_recorded(tones: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tones / "zz_broken.wav").write_bytes(b"RIFF not really a wav")
    assert main(["features", str(tones), "--encoder", "mfcc", "-o", str(tmp_path / "f"), "--quiet"]) == 0
    errors = [json.loads(line) for line in (tmp_path / "f" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["zz_broken"]
    assert "4 utterances" in caplog.text and "1 skipped" in caplog.text
    caplog.clear()
    assert main(["fit", str(tones), "--encoder", "mfcc", "--k", "3", "--iters", "2", "-o", str(tmp_path / "cb"),
                 "--quiet"]) == 0
    assert "1 utterance(s) skipped" in caplog.text
    assert main(["encode", str(tones), "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "u"),
                 "--quiet"]) == 0
    errors = [json.loads(line) for line in (tmp_path / "u" / ".errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["zz_broken"]
    # A rerun: the stored utterances count, the bad file fails again, the run still succeeds.
    assert main(["encode", str(tones), "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "u"),
                 "--quiet"]) == 0
    assert np.isfinite(np.load(tmp_path / "f" / "layer0.npy")).all()
