"""The abx command on a features directory and a unit store, item files in and out."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_error
from speechunits.cli.main import main
from speechunits.measure.alignments import Segment, write_segments_tsv

FRAME_RATE = 50.0
SAMPLE_RATE = 16000
RECEPTIVE_FIELD = 400  # offset 0.0125 s
PHONES = ["a", "b", "c", "d"]


def _corpus(tmp_path: Path):
    rng = np.random.default_rng(0)
    alignments, speakers, frame_phones = {}, {}, {}
    for s in range(2):
        for u in range(5):
            utt = f"s{s}u{u}"
            labels = np.cumsum(rng.integers(1, len(PHONES), size=20)) % len(PHONES)
            durs = rng.integers(3, 6, size=20)
            bounds = np.concatenate(([0], np.cumsum(durs))) / FRAME_RATE
            alignments[utt] = [Segment(float(bounds[i]), float(bounds[i + 1]), PHONES[p]) for i, p in enumerate(labels)]
            speakers[utt] = f"spk{s}"
            frame_phones[utt] = np.repeat(labels, durs)
    ali_dir = tmp_path / "ali"
    ali_dir.mkdir()
    write_segments_tsv(ali_dir / "phones.tsv", alignments)
    (ali_dir / "speakers.tsv").write_text("".join(f"{u}\t{s}\n" for u, s in speakers.items()))
    return ali_dir, frame_phones


def _features_dir(tmp_path: Path, frame_phones: dict[str, np.ndarray]) -> Path:
    out = tmp_path / "feats"
    out.mkdir()
    rng = np.random.default_rng(1)
    ids = list(frame_phones)
    data = np.concatenate([np.eye(len(PHONES))[frame_phones[u]] + 0.05 * rng.standard_normal((frame_phones[u].size, 4))
                           for u in ids]).astype(np.float32)
    np.save(out / "layer3.npy", data)
    (out / "layer3.len").write_text("".join(f"{frame_phones[u].size}\n" for u in ids))
    meta = {"encoder": "test", "layers": [3], "dim": 4, "sample_rate": SAMPLE_RATE, "frame_rate": FRAME_RATE,
            "hop_length": 320, "receptive_field": RECEPTIVE_FIELD, "ids": ids}
    (out / "features.json").write_text(json.dumps(meta))
    return out


def test_abx_cli_features_and_items_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ali_dir, frame_phones = _corpus(tmp_path)
    feats = _features_dir(tmp_path, frame_phones)
    items = tmp_path / "built.item"
    assert main(["abx", str(feats), "--alignments", str(ali_dir / "phones.tsv"), "--json",
                 "--write-items", str(items)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["abx_within"] < 0.05 and first["abx_across"] < 0.05 and first["distance"] == "angular"
    assert items.read_text().startswith("#file onset offset #phone prev-phone next-phone speaker")
    assert main(["abx", str(feats), "--items", str(items), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert main(["abx", str(feats), "--items", str(items), "--layer", "3"]) == 0
    assert "ABX within speaker" in capsys.readouterr().out


def test_abx_cli_unit_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from speechunits.units.store import write_units
    from speechunits.units.units import Units

    ali_dir, frame_phones = _corpus(tmp_path)
    meta = {"k": 4, "frame_rate": FRAME_RATE, "frame_offset_s": 0.0125, "sha256": "0" * 64, "layer": 0}
    store = tmp_path / "units"
    write_units(store, [(u, Units(p, FRAME_RATE, 4).dedup()) for u, p in frame_phones.items()], meta)
    assert main(["abx", str(store), "--alignments", str(ali_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["abx_within"] == pytest.approx(0.0) and out["abx_across"] == pytest.approx(0.0)
    assert out["distance"] == "hamming"


def test_abx_cli_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ali_dir, frame_phones = _corpus(tmp_path)
    feats = _features_dir(tmp_path, frame_phones)
    assert "give --alignments" in cli_error(["abx", str(feats)], caplog)  # neither alignments nor items
    assert "nothing: not a directory" in cli_error(["abx", str(tmp_path / "nothing"), "--alignments",
                                                    str(ali_dir)], caplog)
    assert "no.tsv: speakers file not found" in cli_error(["abx", str(feats), "--alignments", str(ali_dir),
                                                           "--speakers", str(tmp_path / "no.tsv")], caplog)
    malformed = tmp_path / "malformed.tsv"
    malformed.write_text("s0u0 spk0\n")  # a space where the tab belongs
    assert "expected utt_id<TAB>speaker" in cli_error(["abx", str(feats), "--alignments", str(ali_dir), "--speakers",
                                                       str(malformed)], caplog)
    other = tmp_path / "other.tsv"
    other.write_text("zz\t0\t0.1\ta\nzz\t0.1\t0.2\tb\nzz\t0.2\t0.3\tc\n")
    assert "share no utterance" in cli_error(["abx", str(feats), "--alignments", str(other)], caplog)
    assert "max_size_group must be >= 2" in cli_error(["abx", str(feats), "--alignments", str(ali_dir),
                                                       "--max-size-group", "1"], caplog)
    assert "got ['sideways']" in cli_error(["abx", str(feats), "--alignments", str(ali_dir), "--mode",
                                            "sideways"], caplog)
    bad_items = tmp_path / "bad.item"
    bad_items.write_text("#file onset offset #phone prev-phone next-phone speaker\ns0u0 0.5 0.2 a b c spk0\n")
    assert "need 0 <= onset < offset" in cli_error(["abx", str(feats), "--items", str(bad_items)], caplog)


def test_frame_source_timing_and_layers(tmp_path: Path) -> None:
    from speechunits.errors import SpeechUnitsError
    from speechunits.measure.frame_source import open_frame_source

    _, frame_phones = _corpus(tmp_path)
    feats = _features_dir(tmp_path, frame_phones)
    src = open_frame_source(feats)
    assert (src.frame_rate, src.frame_offset_s, src.distance) == (FRAME_RATE, RECEPTIVE_FIELD / (2 * SAMPLE_RATE), "angular")
    assert sum(1 for _ in src.frames) == len(frame_phones)
    # Two layers: --layer is required.
    meta = json.loads((feats / "features.json").read_text())
    (feats / "layer5.npy").write_bytes((feats / "layer3.npy").read_bytes())
    (feats / "layer5.len").write_text((feats / "layer3.len").read_text())
    (feats / "features.json").write_text(json.dumps(dict(meta, layers=[3, 5])))
    with pytest.raises(SpeechUnitsError, match="--layer"):
        open_frame_source(feats)
    assert open_frame_source(feats, layer=5).frame_rate == FRAME_RATE
    # A bare fairseq dump (no features.json) needs explicit timing.
    (feats / "features.json").unlink()
    with pytest.raises(SpeechUnitsError, match="--frame-rate"):
        open_frame_source(feats, layer=3)
    assert open_frame_source(feats, layer=3, frame_rate=100.0, frame_offset_s=0.0).frame_rate == 100.0
    with pytest.raises(SpeechUnitsError, match="not a directory"):
        open_frame_source(tmp_path / "missing")
