"""Encoding a corpus into unit stores: content, streams, sharded jobs, crash recovery, bad files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from speechunits.audio import Audio
from speechunits.corpus import open_corpus
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError
from speechunits.units.encode_corpus import ERRORS_FILE, encode_corpus
from speechunits.units.store import UnitStore
from speechunits.units.tokenizer import UnitTokenizer
from speechunits.quantize import Codebook
from test_tokenizer import make_codebook


@pytest.fixture(scope="module")
def encoder(tiny_hubert_dir: Path):
    torch.set_num_threads(1)
    return load_encoder(str(tiny_hubert_dir), device="cpu")


@pytest.fixture(scope="module")
def codebooks(encoder) -> list[Codebook]:
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(32000) / 9.0) + 0.05 * rng.standard_normal(32000)).astype(np.float32)
    out = []
    for layer, k in ((2, 6), (4, 9)):
        feats = encoder.extract(wave, [layer])[layer]
        out.append(make_codebook(feats[rng.choice(len(feats), k, replace=False)], layer, encoder.info))
    return out


def stored(path: Path) -> dict[str, tuple[list[int], list[int] | None, float]]:
    return {u: (x.ids.tolist(), None if x.durations is None else x.durations.tolist(), s)
            for u, x, s in UnitStore.open(path).iter_rows()}


def test_store_holds_the_tokenizer_units(tmp_path: Path, tone_dir: Path, encoder, codebooks) -> None:
    tok = UnitTokenizer(encoder, codebooks, dedup=True)
    report = encode_corpus(open_corpus(tone_dir), tok, tmp_path / "u", rows_per_file=2, quiet=True)
    assert report.encoded == 5 and report.failed == 0 and report.already_stored == 0
    assert report.audio_seconds == pytest.approx(0.5 + 1.2 + 3.0 + 0.8 + 2.1)
    assert [p.name for p in report.stores] == ["stream0-layer2-k6", "stream1-layer4-k9"]
    for j, store_dir in enumerate(report.stores):
        store = UnitStore.open(store_dir)
        assert store.meta["codebook"] == codebooks[j].meta and store.dedup
        assert store.ids() == [u.id for u in open_corpus(tone_dir)]
        for utt in open_corpus(tone_dir):
            expected = tok.encode_streams(Audio.load(utt.path))[j]
            ids, durations, seconds = stored(store_dir)[utt.id]
            assert ids == expected.ids.tolist() and durations == expected.durations.tolist()
            assert seconds == pytest.approx(Audio.load(utt.path).duration_s)


def test_rerun_after_crash_equals_uninterrupted_run(tmp_path: Path, tone_dir: Path, encoder, codebooks) -> None:
    tok = UnitTokenizer(encoder, codebooks[:1])
    encode_corpus(open_corpus(tone_dir), tok, tmp_path / "ref", rows_per_file=2, quiet=True)
    reference = stored(tmp_path / "ref")
    # A run killed while writing its third shard: two shards complete, one temp file, and
    # (worse) a complete-looking shard that is truncated.
    crashed = tmp_path / "crashed"
    encode_corpus(open_corpus(tone_dir).filter(lambda u: u.id in ("utt0", "utt1", "utt2", "sub/utt3")),
                  tok, crashed, rows_per_file=2, quiet=True)
    shards = sorted(crashed.glob("*.parquet"))
    shards[-1].write_bytes(shards[-1].read_bytes()[:50])
    (crashed / ".units-00000of00001-000002.parquet.99999999.tmp").write_bytes(b"partial")
    report = encode_corpus(open_corpus(tone_dir), tok, crashed, rows_per_file=2, quiet=True)
    assert report.already_stored == 2 and report.encoded == 3
    assert stored(crashed) == reference
    assert not list(crashed.glob(".*.tmp"))
    again = encode_corpus(open_corpus(tone_dir), tok, crashed, rows_per_file=2, quiet=True)
    assert again.encoded == 0 and again.already_stored == 5


def test_sharded_jobs_fill_one_store(tmp_path: Path, tone_dir: Path, encoder, codebooks) -> None:
    tok = UnitTokenizer(encoder, codebooks[:1])
    encode_corpus(open_corpus(tone_dir), tok, tmp_path / "ref", quiet=True)
    for i in range(3):
        encode_corpus(open_corpus(tone_dir, shard=f"{i}/3"), tok, tmp_path / "sharded", job=(i, 3), quiet=True)
    assert stored(tmp_path / "sharded") == stored(tmp_path / "ref")
    assert len(UnitStore.open(tmp_path / "sharded").shards) == 3


def test_bad_files_and_other_codebook(tmp_path: Path, tone_dir: Path, encoder, codebooks) -> None:
    (tone_dir / "zz_broken.wav").write_bytes(b"RIFF not really a wav")
    tok = UnitTokenizer(encoder, codebooks[:1])
    report = encode_corpus(open_corpus(tone_dir), tok, tmp_path / "u", quiet=True)
    assert report.encoded == 5 and report.failed == 1
    errors = [json.loads(line) for line in (tmp_path / "u" / ERRORS_FILE).read_text().splitlines()]
    assert [e["id"] for e in errors] == ["zz_broken"]
    with pytest.raises(SpeechUnitsError, match="zz_broken"):
        encode_corpus(open_corpus(tone_dir), tok, tmp_path / "u", on_error="fail", quiet=True)
    # After a failed run, whatever was stored is right and a skip run completes the store.
    encode_corpus(open_corpus(tone_dir).filter(lambda u: u.id != "zz_broken"), tok, tmp_path / "v", quiet=True)
    with pytest.raises(SpeechUnitsError):
        encode_corpus(open_corpus(tone_dir), tok, tmp_path / "w", on_error="fail", rows_per_file=1, quiet=True)
    partial = stored(tmp_path / "w")
    assert partial.items() <= stored(tmp_path / "v").items()
    encode_corpus(open_corpus(tone_dir), tok, tmp_path / "w", quiet=True)
    assert stored(tmp_path / "w") == stored(tmp_path / "v")
    with pytest.raises(SpeechUnitsError, match="codebook_sha256|dedup"):
        encode_corpus(open_corpus(tone_dir), UnitTokenizer(encoder, codebooks[:1], dedup=True), tmp_path / "u",
                      quiet=True)


def test_streams_out_of_step_after_crash(tmp_path: Path, tone_dir: Path, encoder, codebooks) -> None:
    tok = UnitTokenizer(encoder, codebooks)
    encode_corpus(open_corpus(tone_dir), tok, tmp_path / "ref", rows_per_file=2, quiet=True)
    out = tmp_path / "u"
    encode_corpus(open_corpus(tone_dir), tok, out, rows_per_file=2, quiet=True)
    # Killed between the two streams' renames: stream 1 lost its last shard, stream 0 did not.
    last = sorted((out / "stream1-layer4-k9").glob("*.parquet"))[-1]
    lost = set(UnitStore.open(out / "stream1-layer4-k9").ids())
    last.unlink()
    missing = lost - set(UnitStore.open(out / "stream1-layer4-k9").ids())
    report = encode_corpus(open_corpus(tone_dir), tok, out, rows_per_file=2, quiet=True)
    assert report.encoded == len(missing) == 1
    for name in ("stream0-layer2-k6", "stream1-layer4-k9"):
        assert stored(out / name) == stored(tmp_path / "ref" / name)
