"""The BEST-RQ random-projection quantizer as a codebook kind: definition, seed, files, CLI end to end."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file as np_load_file

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.encoders import load_encoder
from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.quantize.random_projection import RandomProjectionCodebook, normalisation_stats
from speechunits.units.tokenizer import UnitTokenizer


def info(dim: int = 24, name: str = "feat", identity: str = "id0") -> EncoderInfo:
    return EncoderInfo(name=name, sample_rate=16000, hop_length=320, receptive_field=400, num_layers=3, dim=dim,
                       identity=identity)


def features(n: int = 400, dim: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * rng.uniform(0.5, 4.0, dim) + rng.uniform(-3, 3, dim)).astype(np.float32)


def numpy_assign(x: np.ndarray, projection: np.ndarray, codebook: np.ndarray, mean: np.ndarray | None,
                 std: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The definition in float64 numpy: ids and the margin between the best two cosines."""
    z = x.astype(np.float64)
    if mean is not None:
        z = (z - mean) / std
    z = z @ projection.astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c = codebook.astype(np.float64)
    cos = z @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T
    top2 = np.sort(cos, axis=1)[:, -2:]
    return cos.argmax(1), top2[:, 1] - top2[:, 0]


def test_assignment_equals_a_numpy_reimplementation(tmp_path: Path) -> None:
    x = features()
    stats = normalisation_stats(x)
    cb = RandomProjectionCodebook.create(info(), 2, 40, code_dim=8, seed=5, stats=stats, training_frames=len(x))
    cb.save(tmp_path / "cb")
    tensors = np_load_file(str(tmp_path / "cb" / "codebook.safetensors"))  # read back without our code
    assert set(tensors) == {"centroids", "projection", "norm_mean", "norm_std"}
    np.testing.assert_allclose(tensors["norm_mean"], x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tensors["norm_std"], x.astype(np.float64).std(0), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(tensors["centroids"], axis=1), 1.0, rtol=1e-6)
    probe = features(1000, seed=1)
    expected, margin = numpy_assign(probe, tensors["projection"], tensors["centroids"], tensors["norm_mean"],
                                    tensors["norm_std"])
    got = Codebook.load(tmp_path / "cb").assign(probe)
    clear = margin > 1e-5  # float32 vs float64 may only disagree on near-ties
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(got[clear], expected[clear])
    assert got.dtype == np.int64 and len(np.unique(got)) > 20


def test_projection_is_xavier_normal() -> None:
    cb = RandomProjectionCodebook.create(info(dim=496), 0, 8, code_dim=16, seed=0)
    p = cb.projection.numpy().astype(np.float64)
    assert abs(p.mean()) < 0.01 * math.sqrt(2 / 512)
    assert p.std() == pytest.approx(math.sqrt(2.0 / (496 + 16)), rel=0.03)  # 7936 draws: ~0.8 % standard error
    assert cb.meta["normalisation"] == "none"


def test_determinism_by_seed(tmp_path: Path) -> None:
    stats = normalisation_stats(features())
    a = RandomProjectionCodebook.create(info(), 1, 30, seed=7, stats=stats)
    b = RandomProjectionCodebook.create(info(), 1, 30, seed=7, stats=stats)
    c = RandomProjectionCodebook.create(info(), 1, 30, seed=8, stats=stats)
    assert a.sha256 == b.sha256 != c.sha256
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    for name in ("codebook.safetensors", "codebook.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    x = features(seed=2)
    np.testing.assert_array_equal(a.assign(x), b.assign(x))
    assert (a.assign(x) != c.assign(x)).mean() > 0.5


def test_save_load_round_trip_and_tampering(tmp_path: Path) -> None:
    cb = RandomProjectionCodebook.create(info(), 3, 12, code_dim=4, seed=1, stats=normalisation_stats(features()))
    cb.save(tmp_path / "cb")
    meta = json.loads((tmp_path / "cb" / "codebook.json").read_text())
    assert (meta["kind"], meta["k"], meta["dim"], meta["code_dim"], meta["layer"], meta["seed"]) == \
        ("random-projection", 12, 24, 4, 3, 1)
    loaded = Codebook.load(tmp_path / "cb")
    assert isinstance(loaded, RandomProjectionCodebook) and loaded.meta == cb.meta
    for name in ("centroids", "projection", "norm_mean", "norm_std"):
        assert np.array_equal(loaded.tensors()[name].numpy(), cb.tensors()[name].numpy())
    x = features(seed=3)
    np.testing.assert_array_equal(loaded.assign(x), cb.assign(x))
    # The sha256 covers the projection and the statistics too.
    other = RandomProjectionCodebook(cb.centroids, dict(cb.meta), cb.norm_mean, cb.norm_std * 2,
                                     projection=cb.projection)
    assert other.sha256 != cb.sha256
    from safetensors.torch import save_file

    tensors = cb.tensors()
    tensors["projection"] = tensors["projection"] * 1.5
    save_file(tensors, str(tmp_path / "cb" / "codebook.safetensors"), metadata={"format": "speechunits-codebook"})
    with pytest.raises(SpeechUnitsError, match="sha256.*does not match"):
        Codebook.load(tmp_path / "cb")
    del tensors["projection"]
    save_file(tensors, str(tmp_path / "cb" / "codebook.safetensors"))
    with pytest.raises(SpeechUnitsError, match="no 'projection'"):
        Codebook.load(tmp_path / "cb")


def test_unknown_kind_and_old_files_without_kind(tmp_path: Path) -> None:
    km = Codebook(np.eye(3, dtype=np.float32), {"layer": 0})
    km.save(tmp_path / "km")
    meta_path = tmp_path / "km" / "codebook.json"
    meta = json.loads(meta_path.read_text())
    assert meta["kind"] == "kmeans"
    del meta["kind"]  # written before kinds existed
    meta_path.write_text(json.dumps(meta))
    assert type(Codebook.load(tmp_path / "km")) is Codebook
    meta["kind"] = "product-quantizer"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SpeechUnitsError, match="unknown codebook kind 'product-quantizer'"):
        Codebook.load(tmp_path / "km")


def test_mismatched_encoder_or_layer_is_refused(tiny_hubert_dir: Path) -> None:
    mfcc = load_encoder("mfcc", device="cpu")
    cb = RandomProjectionCodebook.create(mfcc.info, 0, 10, seed=0)
    with pytest.raises(SpeechUnitsError, match="dim 39 does not match encoder logmel dim 80"):
        UnitTokenizer(load_encoder("logmel", device="cpu"), [cb])
    impostor = RandomProjectionCodebook.create(info(39, "mfcc", "0123"), 0, 10, seed=0)
    with pytest.raises(SpeechUnitsError, match="identity 0123"):
        UnitTokenizer(mfcc, [impostor])
    hubert = load_encoder(str(tiny_hubert_dir), device="cpu")
    layered = RandomProjectionCodebook.create(hubert.info, 2, 10, seed=0)
    with pytest.raises(SpeechUnitsError, match="trained on layer 2, not layer 3"):
        UnitTokenizer(hubert, [layered], layers=[3])
    with pytest.raises(SpeechUnitsError, match="do not match codebook dim"):
        cb.assign(np.zeros((4, 80), np.float32))


def test_cli_errors(tmp_path: Path, tone_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = str(tmp_path / "cb")
    assert "give INPUT and --encoder" in cli_error(["codebook", "random-projection", "--encoder", "mfcc", "--k", "8",
                                                    "-o", out], caplog)  # no stats source
    assert "--k must be >= 1" in cli_error(["codebook", "random-projection", str(tone_dir), "--encoder", "mfcc", "--k",
                                            "0", "-o", out], caplog)
    assert "--no-normalise reads no corpus" in cli_error(["codebook", "random-projection", str(tone_dir), "--encoder",
                                                          "mfcc", "--k", "8", "--no-normalise", "-o", out], caplog)
    assert main(["codebook", "random-projection", "--encoder", "mfcc", "--k", "8", "--no-normalise", "-o", out]) == 0
    assert Codebook.load(out).meta["normalisation"] == "none"
    assert "has no k-means equivalent" in cli_error(["codebook", "export", out, "-o", str(tmp_path / "km.bin")], caplog)


def test_encode_evaluate_abx_on_a_tiny_corpus(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader")
    from speechunits.measure.alignments import load_alignments
    from speechunits.measure.evaluate import evaluate_units
    from speechunits.synth.testing import small_corpus
    from speechunits.units.store import UnitStore
    from speechunits.units.units import Units

    root = small_corpus(tmp_path, minutes=0.5, speakers=3)
    cb, store = tmp_path / "rpq", tmp_path / "units"
    assert main(["codebook", "random-projection", str(root / "manifest.tsv"), "--encoder", "mfcc", "--k", "100",
                 "--seed", "0", "-o", str(cb), "--quiet"]) == 0
    assert Codebook.load(cb).meta["training_frames"] > 1000
    assert main(["encode", str(root / "manifest.tsv"), "--codebook", str(cb), "-o", str(store), "--quiet"]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["evaluate", str(store), "--alignments", str(root), "--json"]) == 0
        assert main(["abx", str(store), "--alignments", str(root), "--json"]) == 0
    evaluation, abx = (json.loads(line) for line in out.getvalue().splitlines())
    assert evaluation["vocab_size"] == 100 and evaluation["utterances"] >= 10
    assert abx["num_items_used"] > 0 and abx["distance"] == "hamming"
    # The units carry phone information: PNMI well above that of the same units shuffled in time.
    units = UnitStore.open(store).to_dict()
    rng = np.random.default_rng(0)
    shuffled = {u: Units(rng.permutation(x.ids), x.frame_rate, x.vocab_size) for u, x in units.items()}
    baseline = evaluate_units(shuffled.items(), load_alignments(root), frame_rate=100.0, frame_offset_s=0.0125,
                              vocab_size=100)
    assert evaluation["pnmi"] > 0.25 and evaluation["pnmi"] > 1.8 * baseline.pnmi  # measured 0.38 vs 0.15


def test_statistics_from_a_features_directory(tmp_path: Path, tone_dir: Path) -> None:
    from speechunits.features import read_features_dir

    feats, out = tmp_path / "feats", tmp_path / "cb"
    assert main(["features", str(tone_dir), "--encoder", "mfcc", "-o", str(feats), "--quiet"]) == 0
    assert main(["codebook", "random-projection", "--from-features", str(feats), "--k", "8", "--dim", "4",
                 "-o", str(out), "--quiet"]) == 0
    every = np.concatenate([x for _, x in read_features_dir(feats, 0)]).astype(np.float64)  # all frames < max
    cb = Codebook.load(out)
    assert (cb.meta["encoder"], cb.meta["code_dim"], cb.meta["training_frames"]) == ("mfcc", 4, len(every))
    np.testing.assert_allclose(cb.norm_mean.numpy(), every.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(cb.norm_std.numpy(), every.std(0), rtol=1e-5)
