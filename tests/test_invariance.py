"""Invariance: edit distance by hand and vs a second implementation, UED on a toy encoder."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import cli_error
from speechunits.errors import SpeechUnitsError
from speechunits.measure import invariance as inv
from speechunits.augment import Augmentation, standard_augmentations

SR = 16000
HOP = 320


def _levenshtein_by_dp(a: list[int], b: list[int]) -> int:
    """The textbook dynamic programme (a second implementation, not the one under test)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def test_edit_distance_by_hand() -> None:
    kitten = [ord(c) for c in "kitten"]
    sitting = [ord(c) for c in "sitting"]
    fn = inv.edit_distance
    assert fn(np.array(kitten), np.array(sitting)) == 3
    assert fn(np.array([1, 2, 3]), np.array([], dtype=np.int64)) == 3
    assert fn(np.array([], dtype=np.int64), np.array([4, 5])) == 2
    assert fn(np.array([7, 8]), np.array([7, 8])) == 0
    assert fn(np.array([1, 2, 3, 4]), np.array([2, 3, 4, 1])) == 2


def test_edit_distance_matches_a_textbook_dp() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.integers(0, 4, size=rng.integers(0, 30))
        b = rng.integers(0, 4, size=rng.integers(0, 30))
        assert inv.edit_distance(a, b) == _levenshtein_by_dp(a.tolist(), b.tolist())


def test_unit_edit_distance_dedups_first() -> None:
    assert inv.unit_edit_distance(np.array([1, 1, 2, 2, 3]), np.array([1, 2, 2, 2, 3, 3])) == (0, 3)
    assert inv.unit_edit_distance(np.array([1, 1, 2, 3]), np.array([1, 4, 3])) == (1, 3)


def toy_encode(samples: np.ndarray) -> np.ndarray:
    """Frame-level 'units': the loudest of 16 frequency bands per 20 ms frame."""
    n = samples.size // HOP
    frames = samples[: n * HOP].reshape(n, HOP) * np.hanning(HOP)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    bands = power[:, 1:161].reshape(n, 16, 10).sum(axis=2)
    return bands.argmax(axis=1)


def melody(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Tones changing every 100 ms (a stand-in for phones); every other one quiet (a stand-in for silence)."""
    rng = np.random.default_rng(seed)
    step = int(0.1 * SR)
    freqs = rng.choice([300.0, 700.0, 1200.0, 1900.0, 2800.0, 3700.0], size=int(seconds / 0.1))
    t = np.arange(step) / SR
    levels = np.where(np.arange(freqs.size) % 2, 0.03, 0.4)
    return np.concatenate([a * np.sin(2 * np.pi * f * t) for a, f in zip(levels, freqs)]).astype(np.float32)


def test_ued_on_toy_encoder_orders_noise_levels_and_is_deterministic() -> None:
    audio = [(f"u{i}", melody(seed=i)) for i in range(3)]
    identity = Augmentation("none", 0.0, "identity", lambda x, sr, seed: x)
    grid = [identity] + standard_augmentations(["noise", "stretch"])
    report = inv.measure_invariance(audio, SR, toy_encode, grid, seed=1)
    by_label = {row.label: row for row in report.rows}
    assert by_label["identity"].ued == 0.0 and by_label["identity"].edits == 0
    assert by_label["noise 20 dB"].ued <= by_label["noise 5 dB"].ued
    assert by_label["noise 5 dB"].ued > 0.0
    assert report.utterances == 3 and report.audio_seconds == pytest.approx(6.0)
    # Per-utterance lengths: UED is the ratio of sums.
    row = by_label["stretch x1.2"]
    assert row.ued == pytest.approx(row.edits / row.reference_length)
    assert report == inv.measure_invariance(audio, SR, toy_encode, grid, seed=1)


def test_too_short_utterances_are_skipped_and_nothing_encoded_is_reported() -> None:
    grid = standard_augmentations(["noise"])
    report = inv.measure_invariance([("short", np.ones(10, dtype=np.float32)), ("ok", melody(0.5))], SR, toy_encode, grid)
    assert report.skipped == ["short"] and report.utterances == 1
    empty = inv.measure_invariance([("short", np.ones(10, dtype=np.float32))], SR, toy_encode, grid)
    assert empty.utterances == 0 and empty.skipped == ["short"] and len(empty.rows) == len(grid)
    assert all(np.isnan(row.ued) and row.reference_length == 0 for row in empty.rows)
    with pytest.raises(SpeechUnitsError, match="no augmentation"):
        inv.measure_invariance([], SR, toy_encode, [])


def test_a_silent_utterance_is_skipped_not_fatal() -> None:
    """Noise at an SNR of digital silence is undefined: that utterance is left out of every row (so all
    rows average the same utterances), and the others are measured as if it were not there."""
    grid = standard_augmentations(["noise", "stretch"])
    alone = inv.measure_invariance([("ok", melody(0.5))], SR, toy_encode, grid, seed=3)
    mixed = inv.measure_invariance([("quiet", np.zeros(SR, dtype=np.float32)), ("ok", melody(0.5))], SR, toy_encode,
                                   grid, seed=3)
    assert mixed.skipped == ["quiet"] and mixed.utterances == 1
    assert mixed.rows == alone.rows


def test_utterance_seed_depends_on_id_not_order() -> None:
    # the same in another process with another string-hash seed: a rerun augments identically
    code = "from speechunits.measure.invariance import utterance_seed as s; print(s(0, 'a'), s(3, 'spk/utt-7'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert [int(x) for x in other.stdout.split()] == [inv.utterance_seed(0, "a"), inv.utterance_seed(3, "spk/utt-7")]
    assert inv.utterance_seed(0, "a") != inv.utterance_seed(0, "b")
    assert inv.utterance_seed(0, "a") != inv.utterance_seed(1, "a")


def _mfcc_codebook(tmp_path, tone_dir):
    from speechunits.audio import Audio
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.quantize.codebook import encoder_meta

    encoder = load_encoder("mfcc", device="cpu")
    feats = np.concatenate([encoder.extract(Audio.load(p), [0])[0] for p in sorted(tone_dir.rglob("*.wav"))])
    rng = np.random.default_rng(0)
    meta = dict(encoder_meta(encoder.info), layer=None)
    out = tmp_path / "cb"
    Codebook(feats[rng.choice(len(feats), size=8, replace=False)], meta).save(out)
    return out


@pytest.fixture()
def short_dir(tmp_path):
    """Three 0.6 s tones: the CLI runs the encoder 1 + 7 times per utterance."""
    from conftest import write_tone

    for i in range(3):
        write_tone(tmp_path / "short" / f"s{i}.wav", 0.6, freq=180 + 70 * i, seed=i)
    return tmp_path / "short"


def test_invariance_cli_json(tmp_path, short_dir, capsys) -> None:
    import json

    from speechunits.cli.main import main

    tone_dir = short_dir
    cb = _mfcc_codebook(tmp_path, tone_dir)
    args = ["invariance", str(tone_dir), "--codebook", str(cb), "--augment", "noise,stretch", "--quiet", "--json",
            "--device", "cpu", "--max-utterances", "2"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in out["rows"]] == ["noise 20 dB", "noise 10 dB", "noise 5 dB", "stretch x0.8",
                                                 "stretch x0.9", "stretch x1.1", "stretch x1.2"]
    assert out["utterances"] == 2 and all(r["ued"] >= 0 for r in out["rows"])
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == out  # deterministic
    assert main(["invariance", str(tone_dir), "--codebook", str(cb), "--quiet", "--max-utterances", "1",
                 "--augment", "reverb"]) == 0
    assert "reverb rt60 0.3 s" in capsys.readouterr().out


def test_invariance_cli_errors(tmp_path, short_dir, caplog: pytest.LogCaptureFixture) -> None:
    tone_dir = short_dir
    cb = _mfcc_codebook(tmp_path, tone_dir)
    assert "unknown augmentation(s) ['chorus']" in cli_error(["invariance", str(tone_dir), "--codebook", str(cb),
                                                              "--augment", "chorus", "--quiet"], caplog)
    assert "nope: codebook directory not found" in cli_error(["invariance", str(tone_dir), "--codebook",
                                                              str(tmp_path / "nope"), "--quiet"], caplog)
    assert "no_audio: no such file or directory" in cli_error(["invariance", str(tmp_path / "no_audio"), "--codebook",
                                                               str(cb), "--quiet"], caplog)


def test_encoder_bug_propagates() -> None:
    """A failing encode is a bug, not a skipped utterance: the exception reaches the caller."""
    def broken(samples):
        raise RuntimeError("model bug")

    with pytest.raises(RuntimeError, match="model bug"):
        inv.measure_invariance([("ok", melody(0.5))], SR, broken, standard_augmentations(["noise"]))


def test_invariance_cli_all_corrupt_exits_1_some_corrupt_exits_0(tmp_path, short_dir, caplog) -> None:
    from speechunits.cli.main import main

    cb = _mfcc_codebook(tmp_path, short_dir)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.wav", "b.wav"):
        (bad / name).write_bytes(b"RIFF broken")
    args = ["--codebook", str(cb), "--augment", "noise", "--quiet", "--json", "--device", "cpu"]
    assert main(["invariance", str(bad), *args]) == 1
    assert "every utterance failed (2 unreadable" in caplog.text
    (short_dir / "zz.wav").write_bytes(b"RIFF broken")
    caplog.clear()
    assert main(["invariance", str(short_dir), *args, "--max-utterances", "4"]) == 0
    assert "1 utterance(s) skipped (1 unreadable" in caplog.text
