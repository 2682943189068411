"""dMel: hand-computed bins, round-trip bound, multi-stream stores, refusals, Griffin-Lim preview."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import cli_error
from speechunits.audio import Audio
from speechunits.cli.main import main
from speechunits.encoders import load_encoder
from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.quantize.dmel import DEFAULT_RANGE, DMel, decode_store
from speechunits.units.multistream import MultiStreamUnits
from speechunits.units.store import UnitStore, UnitWriter, store_meta, write_units
from speechunits.units.tokenizer import UnitTokenizer


def small_info(dim: int = 3) -> EncoderInfo:
    return EncoderInfo(name="logmel", sample_rate=16000, hop_length=160, receptive_field=400, num_layers=0,
                       dim=dim, identity="test")


@pytest.fixture(scope="module")
def logmel():
    return load_encoder("logmel", device="cpu")


def speechlike(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding 120-180 Hz pitch under a slow envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 150 + 30 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum(np.sin(h * phase) / h for h in range(1, 25))
    wave = 0.2 * wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


# ------------------------------------------------------------------------------ the quantiser

def test_bins_of_known_values_by_hand() -> None:
    dmel = DMel.create(small_info(3), bits=2, value_range=(0.0, 4.0))  # width 1, centres .5 1.5 2.5 3.5
    assert dmel.k == 4 and dmel.streams == 3 and dmel.bin_width == 1.0
    np.testing.assert_array_equal(dmel.centroids[:, 0].numpy(), [0.5, 1.5, 2.5, 3.5])
    x = np.array([[-1.0, 0.0, 0.99], [1.0, 2.2, 3.99], [4.0, 10.0, 2.5]], dtype=np.float32)
    tokens = dmel.assign_streams(x)
    np.testing.assert_array_equal(tokens, [[0, 0, 0], [1, 2, 3], [3, 3, 2]])  # edges go up; outside: clipped
    np.testing.assert_array_equal(dmel.decode(tokens), [[0.5, 0.5, 0.5], [1.5, 2.5, 3.5], [3.5, 3.5, 2.5]])


def test_default_paper_setting_by_hand(logmel) -> None:
    dmel = DMel.create(logmel.info)  # 4 bits on [-16, 8]: width 24 / 16 = 1.5
    assert (dmel.k, dmel.streams, dmel.bits, (dmel.lo, dmel.hi)) == (16, 80, 4, DEFAULT_RANGE)
    x = np.full((1, 80), -6.9, dtype=np.float32)  # (-6.9 + 16) / 1.5 = 6.07 -> bin 6, centre -16 + 6.5 * 1.5
    assert dmel.assign_streams(x)[0, 0] == 6
    assert dmel.decode(dmel.assign_streams(x))[0, 0] == pytest.approx(-6.25)


def test_round_trip_error_is_at_most_half_a_bin(logmel) -> None:
    dmel = DMel.create(logmel.info)
    rng = np.random.default_rng(0)
    x = rng.uniform(-16.0, 8.0, size=(500, 80)).astype(np.float32)
    err = np.abs(dmel.decode(dmel.assign_streams(x)) - x)
    assert err.max() <= 0.75 + 1e-5 and err.max() > 0.7  # the bound is reached, never exceeded
    real = logmel.extract(speechlike(), [0])[0]
    assert real.min() >= -16 and real.max() <= 8
    assert np.abs(dmel.decode(dmel.assign_streams(real)) - real).max() <= 0.75 + 1e-5


def test_bad_parameters_and_tokens_are_refused(logmel) -> None:
    for bits, value_range in ((0, (0, 1)), (9, (0, 1)), (4, (1, 1)), (4, (0, float("nan")))):
        with pytest.raises(SpeechUnitsError):
            DMel.create(logmel.info, bits=bits, value_range=value_range)
    dmel = DMel.create(logmel.info)
    with pytest.raises(SpeechUnitsError, match="assign_streams"):
        dmel.assign(np.zeros((2, 80), np.float32))
    with pytest.raises(SpeechUnitsError, match="do not match"):
        dmel.assign_streams(np.zeros((2, 40), np.float32))
    with pytest.raises(SpeechUnitsError, match=r"\[0, 16\)"):
        dmel.decode(np.full((2, 80), 16))
    with pytest.raises(SpeechUnitsError, match="another dMel"):  # units of a 3-bit dMel
        dmel.decode(MultiStreamUnits(np.zeros((2, 80), np.int64), 100.0, 8))


# ------------------------------------------------------------------------------ files

def test_codebook_dir_round_trip_and_tampering(tmp_path: Path, logmel) -> None:
    dmel = DMel.create(logmel.info, bits=3, value_range=(-12.0, 4.0))
    dmel.save(tmp_path / "cb")
    loaded = Codebook.load(tmp_path / "cb")
    assert isinstance(loaded, DMel) and loaded.meta == dmel.meta and loaded.sha256 == dmel.sha256
    assert (loaded.bits, loaded.lo, loaded.hi) == (3, -12.0, 4.0)
    assert DMel.from_meta(json.loads((tmp_path / "cb" / "codebook.json").read_text())).sha256 == dmel.sha256
    meta = json.loads((tmp_path / "cb" / "codebook.json").read_text())
    meta["range"] = [-12.0, 5.0]
    (tmp_path / "cb" / "codebook.json").write_text(json.dumps(meta))
    with pytest.raises(SpeechUnitsError, match="not the bin centres"):
        Codebook.load(tmp_path / "cb")
    with pytest.raises(SpeechUnitsError, match="sha256"):
        DMel.from_meta(meta)


def test_store_written_and_read_back_equals(tmp_path: Path, logmel) -> None:
    dmel = DMel.create(logmel.info)
    rng = np.random.default_rng(1)
    items = [(f"u{i}", MultiStreamUnits(rng.integers(0, 16, size=(n, 80)), 100.0, 16)) for i, n in enumerate((5, 1, 9))]
    store = write_units(tmp_path / "store", items, dmel.meta, rows_per_file=2)
    assert store.streams == 80 and store.vocab_size == 16 and not store.dedup and len(store) == 3
    back = {u: x for u, x, _ in UnitStore.open(tmp_path / "store").iter_multistream()}
    assert back == dict(items)
    with pytest.raises(SpeechUnitsError, match="80 parallel unit streams"):
        list(store)
    # Single-stream stores are written as before (no 'streams' key) and read as one stream.
    from speechunits.units.units import Units

    single = write_units(tmp_path / "single", [("a", Units(np.array([1, 2]), 50.0, 4))],
                         {"k": 4, "frame_rate": 50.0, "sha256": "x"})
    assert "streams" not in single.meta and single.streams == 1
    assert [x.ids.tolist() for _, x, _ in single.iter_multistream()] == [[[1], [2]]]


def test_writer_refuses_units_of_another_dmel_or_stream_count(tmp_path: Path, logmel) -> None:
    four, three = DMel.create(logmel.info, bits=4), DMel.create(logmel.info, bits=3)
    with UnitWriter(tmp_path / "s", store_meta(four.meta, False)) as writer:
        writer.add("a", MultiStreamUnits(np.zeros((2, 80), np.int64), 100.0, 16))
        with pytest.raises(SpeechUnitsError, match="K=8"):
            writer.add("b", MultiStreamUnits(np.zeros((2, 80), np.int64), 100.0, 8))
        with pytest.raises(SpeechUnitsError, match="stream"):
            writer.add("c", MultiStreamUnits(np.zeros((2, 40), np.int64), 100.0, 16))
    with pytest.raises(SpeechUnitsError, match="different settings"):
        UnitWriter(tmp_path / "s", store_meta(three.meta, False))
    with pytest.raises(SpeechUnitsError, match="dedup"):
        store_meta(four.meta, True)


def test_tokenizer_gives_multistream_units_and_refuses_dedup(logmel) -> None:
    dmel = DMel.create(logmel.info)
    wave = speechlike(0.5)
    tok = UnitTokenizer(logmel, [dmel])
    (units,) = tok.encode_streams(wave)
    feats = logmel.extract(wave, [0])[0]
    expected = np.clip(np.floor((feats.astype(np.float64) + 16.0) / 1.5), 0, 15)  # the definition, in numpy
    np.testing.assert_array_equal(units.ids, expected)
    assert units.num_streams == 80 and units.vocab_size == 16 and units.frame_rate == 100.0
    with pytest.raises(SpeechUnitsError, match="encode_streams"):
        tok.encode(wave)
    with pytest.raises(SpeechUnitsError, match="dedup"):
        UnitTokenizer(logmel, [dmel], dedup=True)
    mfcc = load_encoder("mfcc", device="cpu")
    with pytest.raises(SpeechUnitsError, match="dim"):
        UnitTokenizer(mfcc, [dmel])


# ------------------------------------------------------------------------------ CLI end to end

def test_cli_make_encode_decode(tmp_path: Path, tone_dir: Path, logmel, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["codebook", "dmel", "-o", str(tmp_path / "dmel"), "--quiet"]) == 0
    assert main(["codebook", "dmel", str(tone_dir), "--bits", "3", "-o", str(tmp_path / "dmel3"), "--quiet"]) == 0
    corpus_meta = json.loads((tmp_path / "dmel3" / "codebook.json").read_text())
    feats = {p.relative_to(tone_dir).with_suffix("").as_posix(): logmel.extract(Audio.load(p), [0])[0]
             for p in sorted(tone_dir.rglob("*.wav"))}
    every = np.concatenate(list(feats.values()))
    assert corpus_meta["range"] == [float(every.min()), float(every.max())] and corpus_meta["bits"] == 3

    store, out = tmp_path / "store", tmp_path / "decoded"
    assert main(["encode", str(tone_dir), "--codebook", str(tmp_path / "dmel"), "-o", str(store), "--quiet"]) == 0
    assert main(["units", "decode", str(store), "-o", str(out), "--audio", "--iters", "4"]) == 0
    meta = json.loads((out / "features.json").read_text())
    lengths = [int(x) for x in (out / "layer0.len").read_text().split()]
    decoded = np.load(out / "layer0.npy")
    dmel = Codebook.load(tmp_path / "dmel")
    start = 0
    for utt_id, n in zip(meta["ids"], lengths):
        np.testing.assert_array_equal(decoded[start:start + n], dmel.decode(dmel.assign_streams(feats[utt_id])))
        assert np.abs(decoded[start:start + n] - feats[utt_id]).max() <= 0.75 + 1e-5
        wav, rate = sf.read(out / "wavs" / f"{utt_id}.wav", dtype="float32")
        assert rate == 16000 and wav.shape == ((n - 1) * 160 + 400,)
        start += n
    # Units of another dMel (other range or bit depth) are refused.
    assert "not of the expected codebook" in cli_error(["units", "decode", str(store), "-o", str(tmp_path / "d2"),
                                                        "--codebook", str(tmp_path / "dmel3")], caplog)
    with pytest.raises(SpeechUnitsError, match="expected codebook"):
        decode_store(store, tmp_path / "d3", expected_sha256=Codebook.load(tmp_path / "dmel3").sha256)
    # dMel stores refuse single-stream readers.
    assert "80 parallel unit streams" in cli_error(["units", "export", str(store), "--format", "kaldi", "-o",
                                                    str(tmp_path / "x")], caplog)


def test_decode_refuses_a_kmeans_store(tmp_path: Path) -> None:
    from speechunits.units.units import Units

    write_units(tmp_path / "km", [("a", Units(np.array([1, 2]), 50.0, 4))], {"k": 4, "frame_rate": 50.0, "sha256": "x"})
    with pytest.raises(SpeechUnitsError, match="not dMel"):
        decode_store(tmp_path / "km", tmp_path / "out")


# ------------------------------------------------------------------------------ Griffin-Lim preview

def test_griffin_lim_length_and_log_mel_close(logmel) -> None:
    dmel = DMel.create(logmel.info)
    features = logmel.extract(speechlike(1.0), [0])[0]  # [98, 80]
    target = dmel.decode(dmel.assign_streams(features))  # the decoded (stepped) log-mel
    preview = dmel.to_audio(target, iters=32, seed=0)
    assert preview.shape == ((target.shape[0] - 1) * 160 + 400,) and preview.dtype == np.float32
    np.testing.assert_array_equal(preview, dmel.to_audio(target, iters=32, seed=0))
    again = logmel.extract(preview, [0])[0]
    assert again.shape == target.shape
    random_phase = logmel.extract(dmel.to_audio(target, iters=0, seed=0), [0])[0]
    err, err0 = np.abs(again - target).mean(), np.abs(random_phase - target).mean()
    # Measured: mean |error| 0.28 nats after 32 iterations (0.17 on the unquantised log-mel) against
    # about 1.3 with random phase; a bin is 1.5 nats wide. Bound loosely.
    assert err < 0.45 and err < 0.5 * err0
