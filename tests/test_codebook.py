"""Codebook files, compatibility checks, frame sampling and the fit/codebook CLIs."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load_file

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.quantize.codebook import META_KEYS
from speechunits.quantize.fit import FrameReservoir, sample_stream


def small_codebook(k: int = 6, dim: int = 5, seed: int = 0, **meta: object) -> Codebook:
    rng = np.random.default_rng(seed)
    return Codebook(torch.from_numpy(rng.standard_normal((k, dim)).astype(np.float32)), {"layer": 2, **meta})


# ------------------------------------------------------------------------------ file format

def test_save_load_round_trip_and_reference_format(tmp_path: Path) -> None:
    cb = small_codebook(seed=1, encoder="x", encoder_identity="abc", frame_rate=50.0)
    cb.save(tmp_path / "cb")
    # Read back with the reference libraries only: safetensors (numpy) and json.
    tensors = np_load_file(str(tmp_path / "cb" / "codebook.safetensors"))
    meta = json.loads((tmp_path / "cb" / "codebook.json").read_text())
    assert set(tensors) == {"centroids"} and tensors["centroids"].dtype == np.float32
    np.testing.assert_array_equal(tensors["centroids"], cb.centroids.numpy())
    assert set(META_KEYS) <= set(meta)
    assert meta["sha256"] == hashlib.sha256(tensors["centroids"].astype("<f4").tobytes()).hexdigest()
    assert (meta["k"], meta["dim"], meta["layer"], meta["format_version"]) == (6, 5, 2, 1)
    loaded = Codebook.load(tmp_path / "cb")
    assert torch.equal(loaded.centroids, cb.centroids) and loaded.meta == cb.meta
    assert (loaded.k, loaded.dim, loaded.layer, loaded.encoder_name, loaded.frame_rate) == (6, 5, 2, "x", 50.0)
    assert not list((tmp_path / "cb").glob("*.tmp"))


def test_normalisation_tensors_round_trip_and_apply(tmp_path: Path) -> None:
    c = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    cb = Codebook(c, {"layer": 0}, norm_mean=torch.tensor([10.0, 10.0]), norm_std=torch.tensor([2.0, 2.0]))
    cb.save(tmp_path / "cb")
    loaded = Codebook.load(tmp_path / "cb")
    assert loaded.meta["normalisation"] == "meanstd"
    x = np.array([[10.2, 9.9], [12.0, 12.2]], dtype=np.float32)  # normalised: ~[0, 0] and ~[1, 1.1]
    np.testing.assert_array_equal(loaded.assign(x), [0, 1])


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    small_codebook().save(tmp_path / "cb")
    path = tmp_path / "cb" / "codebook.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(SpeechUnitsError, match="codebook.safetensors.*truncated"):
        Codebook.load(tmp_path / "cb")
    path.write_bytes(b"\x00" * 3)
    with pytest.raises(SpeechUnitsError, match="codebook.safetensors"):
        Codebook.load(tmp_path / "cb")


def test_sha_mismatch_is_refused(tmp_path: Path) -> None:
    small_codebook().save(tmp_path / "cb")
    other = small_codebook(seed=9)
    other.save(tmp_path / "other")
    # Centroids of one codebook with the json of another.
    (tmp_path / "cb" / "codebook.json").write_text((tmp_path / "other" / "codebook.json").read_text())
    with pytest.raises(SpeechUnitsError, match="sha256.*does not match"):
        Codebook.load(tmp_path / "cb")


def test_missing_or_bad_files(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="not found"):
        Codebook.load(tmp_path / "nope")
    small_codebook().save(tmp_path / "cb")
    (tmp_path / "cb" / "codebook.json").write_text("{not json")
    with pytest.raises(SpeechUnitsError, match="codebook.json: not valid JSON"):
        Codebook.load(tmp_path / "cb")
    (tmp_path / "cb" / "codebook.json").unlink()
    with pytest.raises(SpeechUnitsError, match="codebook.json: missing"):
        Codebook.load(tmp_path / "cb")
    with pytest.raises(SpeechUnitsError, match="NaN"):
        Codebook(torch.tensor([[float("nan")]]))


def test_check_compatible(tiny_hubert_dir: Path) -> None:
    encoder = load_encoder(str(tiny_hubert_dir), device="cpu")
    info = encoder.info
    rng = np.random.default_rng(0)
    cb = Codebook(torch.from_numpy(rng.standard_normal((4, info.dim)).astype(np.float32)),
                  {"layer": 2, "encoder": info.name, "encoder_identity": info.identity})
    cb.check_compatible(info, 2)
    cb.check_compatible(info)
    with pytest.raises(SpeechUnitsError, match="trained on layer 2, not layer 3"):
        cb.check_compatible(info, 3)
    wrong_dim = Codebook(torch.zeros(4, info.dim + 1), {"layer": 2})
    with pytest.raises(SpeechUnitsError, match=f"dim {info.dim + 1} does not match encoder .* dim {info.dim}"):
        wrong_dim.check_compatible(info, 2)
    other = Codebook(cb.centroids, {"layer": 2, "encoder": "other", "encoder_identity": "0123"})
    with pytest.raises(SpeechUnitsError, match="identity 0123"):
        other.check_compatible(info, 2)
    with pytest.raises(SpeechUnitsError, match="do not match codebook dim"):
        cb.assign(np.zeros((3, info.dim + 2), np.float32))


# ------------------------------------------------------------------------------ sampling

def test_reservoir_is_a_seeded_uniform_subset_independent_of_blocking() -> None:
    x = np.arange(1000, dtype=np.float32).reshape(500, 2)
    whole, seen = sample_stream([("a", x)], 100, seed=5)
    blocks = [("b", x[i:i + 37]) for i in range(0, 500, 37)]
    split, _ = sample_stream(blocks, 100, seed=5)
    assert seen == 500 and whole.shape == (100, 2)
    np.testing.assert_array_equal(whole, split)
    rows = whole[:, 0] / 2
    assert np.all(np.diff(rows) > 0)  # distinct rows, stream order
    np.testing.assert_array_equal(whole[:, 1], whole[:, 0] + 1)
    other, _ = sample_stream([("a", x)], 100, seed=6)
    assert not np.array_equal(whole, other)
    # Uniformity: inclusion frequency of every row over many seeds is close to 100/500.
    counts = np.zeros(500)
    for seed in range(200):
        s, _ = sample_stream([("b", x[i:i + 61]) for i in range(0, 500, 61)], 100, seed=seed)
        counts[(s[:, 0] / 2).astype(int)] += 1
    freq = counts / 200
    assert abs(freq.mean() - 0.2) < 1e-9
    assert freq[:250].mean() == pytest.approx(0.2, abs=0.02) and freq[250:].mean() == pytest.approx(0.2, abs=0.02)


def test_reservoir_keeps_everything_when_small_and_rejects_bad_blocks() -> None:
    x = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32)
    out, seen = sample_stream([("a", x[:10]), ("b", x[10:])], 100, seed=0)
    np.testing.assert_array_equal(out, x)
    res = FrameReservoir(10, 0)
    res.add(x, "a")
    with pytest.raises(SpeechUnitsError, match="b: feature dim 4"):
        res.add(np.zeros((2, 4), np.float32), "b")
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(SpeechUnitsError, match="c: features contain NaN"):
        FrameReservoir(100, 0).add(bad, "c")
    with pytest.raises(SpeechUnitsError, match="--max-frames"):
        FrameReservoir(0, 0)


# ------------------------------------------------------------------------------ CLIs

def test_fit_cli_mfcc_and_info(tone_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cb"
    assert main(["fit", str(tone_dir), "--encoder", "mfcc", "--k", "8", "-o", str(out), "--max-frames", "300",
                 "--seed", "1", "--iters", "5", "--quiet", "--device", "cpu"]) == 0
    cb = Codebook.load(out)
    info = load_encoder("mfcc").info
    assert (cb.k, cb.dim, cb.layer, cb.encoder_name, cb.encoder_identity) == (8, info.dim, 0, "mfcc", info.identity)
    assert cb.meta["training_frames"] == 300 and cb.meta["seed"] == 1 and cb.meta["init"] == "kmeans++"
    assert cb.meta["frame_rate"] == info.frame_rate and cb.meta["frame_offset_s"] == pytest.approx(0.0125)
    assert cb.meta["inertia"] > 0
    # Same command, same bytes.
    again = tmp_path / "cb2"
    assert main(["fit", str(tone_dir), "--encoder", "mfcc", "--k", "8", "-o", str(again), "--max-frames", "300",
                 "--seed", "1", "--iters", "5", "--quiet", "--device", "cpu"]) == 0
    assert (again / "codebook.safetensors").read_bytes() == (out / "codebook.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["codebook", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mfcc" in text and cb.sha256 in text
    assert main(["codebook", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["k"] == 8


def test_fit_cli_from_features_dir_matches_streaming(tone_dir: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    feats = tmp_path / "feats"
    assert main(["features", str(tone_dir), "--encoder", "mfcc", "-o", str(feats), "--quiet", "--device", "cpu"]) == 0
    common = ["--k", "5", "--max-frames", "200", "--seed", "2", "--iters", "4", "--quiet", "--device", "cpu"]
    assert main(["fit", "--from-features", str(feats), "-o", str(tmp_path / "a"), *common]) == 0
    assert main(["fit", str(tone_dir), "--encoder", "mfcc", "-o", str(tmp_path / "b"), *common]) == 0
    a, b = Codebook.load(tmp_path / "a"), Codebook.load(tmp_path / "b")
    assert a.encoder_identity == b.encoder_identity and a.layer == b.layer == 0
    np.testing.assert_allclose(a.centroids.numpy(), b.centroids.numpy(), rtol=1e-5, atol=1e-4)
    assert "no layer 3" in cli_error(["fit", "--from-features", str(feats), "--layer", "3", "-o", str(tmp_path / "c"),
                                      *common], caplog)


def test_fit_cli_bad_input(tone_dir: Path, tmp_path: Path, tiny_hubert_dir: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    out = str(tmp_path / "cb")
    assert "K must not exceed the number of frames" in cli_error(["fit", str(tone_dir), "--encoder", "mfcc", "--k",
                                                                  "100000", "-o", out, "--quiet"], caplog)
    assert "K must not exceed the number of frames" in caplog.text
    assert "--layer is required" in cli_error(["fit", str(tone_dir), "--encoder", str(tiny_hubert_dir), "--k", "4",
                                               "-o", out, "--quiet"], caplog)
    assert "--layer is required" in caplog.text
    assert "--layer 3: out of range" in cli_error(["fit", str(tone_dir), "--encoder", "mfcc", "--layer", "3", "--k",
                                                   "4", "-o", out, "--quiet"], caplog)
    assert "fit needs INPUT and --encoder" in cli_error(["fit", "--k", "4", "-o", out], caplog)
    assert not (tmp_path / "cb").exists()


def test_fit_cli_hubert_layer(tone_dir: Path, tmp_path: Path, tiny_hubert_dir: Path) -> None:
    out = tmp_path / "cb"
    assert main(["fit", str(tone_dir), "--encoder", str(tiny_hubert_dir), "--layer", "2", "--k", "6", "-o", str(out),
                 "--iters", "3", "--quiet", "--device", "cpu"]) == 0
    cb = Codebook.load(out)
    encoder = load_encoder(str(tiny_hubert_dir), device="cpu")
    cb.check_compatible(encoder.info, 2)
    assert cb.frame_rate == encoder.info.frame_rate
    feats = encoder.extract_batch([np.zeros(16000, np.float32)], [2])[0][2]
    assert cb.assign(feats).shape == (feats.shape[0],)


def test_codebook_of_a_relative_encoder_path_encodes_from_elsewhere(tiny_hubert_dir: Path, tone_dir: Path,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`fit --encoder ./model` records the model's absolute path: `encode` (which has no --encoder and
    loads the codebook's) then works from any working directory."""
    import shutil

    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    shutil.copytree(tiny_hubert_dir, home / "model")
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    assert main(["fit", str(tone_dir), "--encoder", "model", "--layer", "1", "--k", "4", "-o", "cb",
                 "--max-frames", "300", "--device", "cpu", "--quiet"]) == 0
    assert json.loads((home / "cb" / "codebook.json").read_text())["encoder"] == str(home / "model")
    monkeypatch.chdir(elsewhere)
    assert main(["encode", str(tone_dir), "--codebook", str(home / "cb"), "-o", "units", "--device", "cpu",
                 "--quiet"]) == 0
    assert list((elsewhere / "units").glob("*.parquet"))
