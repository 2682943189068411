"""``--raw-format``: headerless PCM through the corpus loaders (serial, overlapped, Ray decode task) and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechunits.audio import RawFormat
from speechunits.cli.main import main
from speechunits.corpus import open_corpus, total_audio_seconds
from speechunits.features.loading import load_audio_items
from speechunits.scale.ray_workers import decode_batch


@pytest.fixture()
def raw_corpus(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    root = tmp_path / "raw"
    root.mkdir()
    written = {}
    for name, n in (("a", 8000), ("b", 4800)):
        pcm = (rng.standard_normal(n) * 3000).astype("<i2")
        (root / f"{name}.pcm").write_bytes(pcm.tobytes())
        written[name] = pcm
    return root, written


def test_loaders_read_raw_with_the_corpus_format(raw_corpus: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, written = raw_corpus
    corpus = open_corpus(root, raw_format="s16le:8000")
    assert total_audio_seconds(corpus) == pytest.approx((8000 + 4800) / 8000)
    items = list(load_audio_items(corpus, sample_rate=8000, min_samples=400))
    assert [i.utt.id for i in items] == ["a", "b"] and all(i.error is None for i in items)
    for item in items:
        np.testing.assert_array_equal(item.audio.samples, (written[item.utt.id] / 32768.0).astype(np.float32))
    # Without the format every file is a clear per-utterance error.
    plain = list(load_audio_items(open_corpus(root), sample_rate=8000, min_samples=400))
    assert all("pass --raw-format" in (i.error or "") for i in plain)
    # The Ray decode task gets the format through the plan's raw_format column.
    batch = {"idx": np.arange(2), "id": np.array(["a", "b"], dtype=object),
             "path": np.array([str(root / "a.pcm"), str(root / "b.pcm")], dtype=object),
             "raw_format": np.array([str(RawFormat("s16le", 8000))] * 2, dtype=object)}
    out = decode_batch(batch, sample_rate=8000, min_samples=400, channel=None)
    assert list(out["error"]) == ["", ""]
    np.testing.assert_array_equal(np.frombuffer(out["samples"][1], np.float32),
                                  (written["b"] / 32768.0).astype(np.float32))


def test_cli_features_with_raw_format(raw_corpus: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    root, _ = raw_corpus
    out = tmp_path / "feats"
    assert main(["features", str(root), "--encoder", "mfcc", "--raw-format", "s16le:8000", "-o", str(out),
                 "--quiet"]) == 0
    lengths = (out / "layer0.len").read_text().split()
    assert len(lengths) == 2  # both utterances extracted (resampled to the encoder's 16 kHz)
    with pytest.raises(SystemExit):
        main(["features", str(root), "--encoder", "mfcc", "--raw-format", "s16:8000", "-o", str(tmp_path / "x")])
    # Without the option nothing is readable: the run reports each file and exits 1, with no features.
    assert main(["features", str(root), "--encoder", "mfcc", "-o", str(tmp_path / "none"), "--quiet"]) == 1
    assert json.loads((tmp_path / "none" / "features.json").read_text())["ids"] == []  # an empty, complete directory
    errors = [json.loads(line) for line in (tmp_path / "none" / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 2 and all("--raw-format" in json.dumps(e) for e in errors)


def test_cli_fit_and_encode_with_raw_format(raw_corpus: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    from speechunits.units.store import UnitStore

    root, _ = raw_corpus
    cb = tmp_path / "cb"
    assert main(["fit", str(root), "--encoder", "mfcc", "--k", "3", "--iters", "2", "--raw-format", "s16le:8000",
                 "-o", str(cb), "--quiet"]) == 0
    units = tmp_path / "units"
    assert main(["encode", str(root), "--codebook", str(cb), "--raw-format", "s16le:8000", "-o", str(units),
                 "--quiet"]) == 0
    assert sorted(UnitStore.open(units).ids()) == ["a", "b"]
