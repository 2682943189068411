"""Foreign k-means files, written by the reference libraries themselves, and the sklearn export."""
from __future__ import annotations

import logging
import pickle
from pathlib import Path

import faiss
import joblib
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.quantize.exporters import export_codebook
from speechunits.quantize.importers import import_codebook

MFCC_DIM = 39  # dim of the built-in mfcc encoder, checked below


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, MFCC_DIM)).astype(np.float32) * 3
    return (centres[rng.integers(0, 8, 600)] + rng.standard_normal((600, MFCC_DIM))).astype(np.float32)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((400, MFCC_DIM)).astype(np.float32) * 3


def test_mfcc_dim() -> None:
    assert load_encoder("mfcc").info.dim == MFCC_DIM


@pytest.mark.parametrize("model_cls", [KMeans, MiniBatchKMeans])
def test_fairseq_km_bin(model_cls: type, data: np.ndarray, queries: np.ndarray, tmp_path: Path,
                        caplog: pytest.LogCaptureFixture) -> None:
    km = model_cls(n_clusters=8, n_init=1, random_state=0, max_iter=5).fit(data)
    joblib.dump(km, tmp_path / "km.bin")
    with caplog.at_level(logging.WARNING):
        cb = import_codebook(tmp_path / "km.bin", encoder_info=load_encoder("mfcc").info, layer=0, allow_pickle=True)
    assert "loading a pickle runs code" in caplog.text
    np.testing.assert_array_equal(cb.centroids.numpy(), km.cluster_centers_.astype(np.float32))
    np.testing.assert_array_equal(cb.assign(queries), km.predict(queries))
    assert cb.meta["encoder"] == "mfcc" and cb.meta["frame_rate"] == 100.0 and cb.meta["init"] == "imported:sklearn"


def test_speechbrain_pt_layer_from_name(data: np.ndarray, queries: np.ndarray, tmp_path: Path) -> None:
    km = MiniBatchKMeans(n_clusters=8, n_init=1, random_state=0, batch_size=100, max_iter=5).fit(data)
    path = tmp_path / "LibriSpeech_hubert_k8_L0.pt"
    joblib.dump(km, path)  # SpeechBrain saves its sklearn model with joblib under a .pt name
    cb = import_codebook(path, encoder_info=load_encoder("mfcc").info, allow_pickle=True)
    assert cb.layer == 0 and cb.meta["init"] == "imported:speechbrain"
    np.testing.assert_array_equal(cb.assign(queries), km.predict(queries))
    with pytest.raises(SpeechUnitsError, match="file name says layer 0, not --layer 3"):
        import_codebook(path, layer=3, allow_pickle=True)
    wrong_k = tmp_path / "x_k9_L0.pt"
    joblib.dump(km, wrong_k)
    with pytest.raises(SpeechUnitsError, match="K=9 but it holds 8"):
        import_codebook(wrong_k, allow_pickle=True)


def test_bshall_torch_dict(data: np.ndarray, queries: np.ndarray, tmp_path: Path) -> None:
    km = KMeans(n_clusters=8, n_init=1, random_state=0).fit(data)
    path = tmp_path / "kmeans.pt"
    torch.save({"n_features_in_": MFCC_DIM, "_n_threads": 1,
                "cluster_centers_": torch.from_numpy(km.cluster_centers_)}, path)
    cb = import_codebook(path, layer=7)
    assert cb.meta["init"] == "imported:bshall" and cb.layer == 7
    np.testing.assert_array_equal(cb.assign(queries), km.predict(queries))


def test_faiss_centroids_npy(data: np.ndarray, queries: np.ndarray, tmp_path: Path) -> None:
    kmeans = faiss.Kmeans(MFCC_DIM, 8, niter=10, seed=1)
    kmeans.train(data)
    np.save(tmp_path / "centroids.npy", kmeans.centroids)
    cb = import_codebook(tmp_path / "centroids.npy", layer=0)
    _, expected = kmeans.index.search(queries, 1)
    np.testing.assert_array_equal(cb.assign(queries), expected[:, 0])


def test_export_sklearn_predicts_like_us(data: np.ndarray, queries: np.ndarray, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cb = Codebook(torch.from_numpy(data[rng.choice(len(data), 16, replace=False)]), {"layer": 0})
    export_codebook(cb, tmp_path / "km.bin", "sklearn")
    km = joblib.load(tmp_path / "km.bin")
    np.testing.assert_array_equal(km.cluster_centers_, cb.centroids.numpy())
    np.testing.assert_array_equal(km.predict(queries), cb.assign(queries))
    back = import_codebook(tmp_path / "km.bin", layer=0, allow_pickle=True)
    assert back.sha256 == cb.sha256
    export_codebook(cb, tmp_path / "c.npy", "faiss")
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), cb.centroids.numpy())


def test_bad_foreign_files(tmp_path: Path) -> None:
    np.save(tmp_path / "vec.npy", np.zeros(5, np.float32))
    with pytest.raises(SpeechUnitsError, match="vec.npy: cluster centres must be a numeric \\[K, D\\]"):
        import_codebook(tmp_path / "vec.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpeechUnitsError, match="obj.npy: not a plain .npy"):
        import_codebook(tmp_path / "obj.npy")
    joblib.dump({"something": 1}, tmp_path / "km.bin")
    with pytest.raises(SpeechUnitsError, match="no cluster_centers_"):
        import_codebook(tmp_path / "km.bin", allow_pickle=True)
    (tmp_path / "junk.bin").write_bytes(b"\x00not a pickle")
    with pytest.raises(SpeechUnitsError, match="junk.bin: cannot load"):
        import_codebook(tmp_path / "junk.bin", allow_pickle=True)
    np.save(tmp_path / "c.npy", np.zeros((4, MFCC_DIM + 1), np.float32))
    with pytest.raises(SpeechUnitsError, match=f"dim {MFCC_DIM + 1} but encoder mfcc has dim {MFCC_DIM}"):
        import_codebook(tmp_path / "c.npy", encoder_info=load_encoder("mfcc").info, layer=0)
    with pytest.raises(SpeechUnitsError, match="not found"):
        import_codebook(tmp_path / "missing.bin")


def test_codebook_cli_import_export(data: np.ndarray, queries: np.ndarray, tmp_path: Path,
                                    tiny_hubert_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    km = MiniBatchKMeans(n_clusters=8, n_init=1, random_state=0, batch_size=100, max_iter=5).fit(data)
    joblib.dump(km, tmp_path / "km.bin")
    out = tmp_path / "cb"
    # Without --allow-pickle the pickle is refused (exit 2, nothing written); with it, imported.
    assert "pass --allow-pickle" in cli_error(["codebook", "import", str(tmp_path / "km.bin"), "--encoder", "mfcc",
                                               "-o", str(out)], caplog)
    assert not out.exists()
    assert main(["codebook", "import", str(tmp_path / "km.bin"), "--encoder", "mfcc", "-o", str(out),
                 "--allow-pickle"]) == 0
    cb = Codebook.load(out)
    assert cb.layer == 0 and cb.encoder_identity == load_encoder("mfcc").info.identity
    assert main(["codebook", "export", str(out), "--format", "sklearn", "-o", str(tmp_path / "again.bin")]) == 0
    np.testing.assert_array_equal(joblib.load(tmp_path / "again.bin").predict(queries), km.predict(queries))
    # Wrong encoder: the dim check names the file.
    assert "dim 39 but encoder" in cli_error(["codebook", "import", str(tmp_path / "km.bin"), "--encoder",
                                              str(tiny_hubert_dir), "--layer", "1", "-o", str(tmp_path / "bad"),
                                              "--allow-pickle"], caplog)
    assert not (tmp_path / "bad").exists()


class _NotAKMeans:
    """A class the safe loader will not call: stands for any pickled object."""

    def __init__(self, centres: np.ndarray) -> None:
        self.cluster_centers_ = centres


def test_torch_dicts_load_without_pickle(data: np.ndarray, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    centres = data[:8]
    torch.save({"cluster_centers_": torch.from_numpy(centres), "_n_threads": 1}, tmp_path / "tensor.pt")
    torch.save({"cluster_centers_": centres.astype(np.float64)}, tmp_path / "numpy.pt")  # numpy arrays, no code
    with caplog.at_level(logging.WARNING):
        for name in ("tensor.pt", "numpy.pt"):
            cb = import_codebook(tmp_path / name, layer=0)
            np.testing.assert_array_equal(cb.centroids.numpy(), centres)
    assert "pickle" not in caplog.text


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_pickled_object_needs_the_flag(data: np.ndarray, queries: np.ndarray, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture, legacy: bool) -> None:
    km = KMeans(n_clusters=8, n_init=1, random_state=0).fit(data)
    path = tmp_path / "kmeans.pt"
    torch.save(km, path, _use_new_zipfile_serialization=not legacy)  # a whole sklearn object: only unpickling reads it
    with pytest.raises(SpeechUnitsError, match=r"kmeans.pt: a torch file that needs a full unpickle .*KMeans.*"
                                               r"refused.*--allow-pickle"):
        import_codebook(path, layer=0, fmt="bshall")
    with caplog.at_level(logging.WARNING):
        cb = import_codebook(path, layer=0, fmt="bshall", allow_pickle=True)
    assert "loading a pickle runs code" in caplog.text
    np.testing.assert_array_equal(cb.assign(queries), km.predict(queries))


def test_pickle_refused_before_any_code_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # A pickle whose loading would create the marker file: refusing it must not run it.
    evil = pickle.dumps(_Touch(str(marker)))
    for name in ("km.bin", "x_k8_L0.pt"):
        (tmp_path / name).write_bytes(evil)
        with pytest.raises(SpeechUnitsError, match=f"{name}: a joblib/pickle file .* refused.*--allow-pickle"):
            import_codebook(tmp_path / name)
    torch.save(_NotAKMeans(np.zeros((2, 3), np.float32)), tmp_path / "obj.pt")
    with pytest.raises(SpeechUnitsError, match="obj.pt: a torch file that needs a full unpickle .*_NotAKMeans"):
        import_codebook(tmp_path / "obj.pt")
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))
