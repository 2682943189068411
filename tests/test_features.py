"""Feature extraction over corpora: chunking, batching, order, the features directory and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import write_tone, cli_error
from speechunits.cli.main import main
from speechunits.corpus import Utterance, open_corpus
from speechunits.encoders import load_encoder
from speechunits.encoders.base import EncoderInfo
from speechunits.errors import SpeechUnitsError
from speechunits.features import LoadedAudio, iter_features, load_audio_items, read_features_dir, read_features_meta
from speechunits.features.batching import plan_batches
from speechunits.features.chunking import plan_pieces

HUBERT_GEOMETRY = EncoderInfo("x", 16000, 320, 400, 12, 768, "id")


# -- planning ----------------------------------------------------------------------------------
@pytest.mark.parametrize("context", [0, 3000, 10**9])
def test_pieces_cover_every_frame_once(context: int) -> None:
    info = HUBERT_GEOMETRY
    chunk = 16000
    for n in [400, 15999, 16000, 16001, 16005, 16400, 16720, 32000, 1_600_001, 47_123]:
        pieces = plan_pieces(n, info, chunk, context)
        kept = 0
        for piece in pieces:
            assert 0 <= piece.start < piece.end <= n
            frames = info.num_frames(piece.end - piece.start)
            assert piece.keep >= 1 and piece.keep_from + piece.keep <= frames
            # the first kept frame of this piece is global frame `kept`
            assert piece.start + piece.keep_from * info.hop_length == kept * info.hop_length
            kept += piece.keep
        assert kept == info.num_frames(n)
        if n <= chunk:
            assert len(pieces) == 1


def test_fairseq_edge_case_1600001_samples_is_one_piece() -> None:
    pieces = plan_pieces(1_600_001, HUBERT_GEOMETRY, 1_600_000)
    assert sum(p.keep for p in pieces) == (1_600_001 - 400) // 320 + 1


def test_plan_batches_budget_order_and_cap() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(1, 100, size=57)]
    batches = plan_batches(lengths, max_batch_samples=250, max_count=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(57))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 250
    assert plan_batches([500, 10], 100) == [[0], [1]]  # oversize item alone
    assert plan_batches([], 100) == []


# -- extraction ----------------------------------------------------------------------------------
def _corpus_dir(root: Path, seconds: list[float]) -> Path:
    for i, secs in enumerate(seconds):
        write_tone(root / f"u{i:02d}.wav", secs, freq=120 + 30 * i, seed=i)
    return root


def test_iter_features_order_and_exactness(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    audio = _corpus_dir(tmp_path / "a", [0.3, 2.5, 0.02, 1.1, 0.6, 3.0, 0.9])  # 0.02 s: too short
    enc = load_encoder(str(tiny_hubert_dir), device="cpu")
    corpus = open_corpus(audio)
    items = list(iter_features(enc, corpus, [1, 3], max_batch_seconds=4.0, batch_size=3,
                               window_utterances=4, quiet=True))
    assert [it.utt.id for it in items] == [u.id for u in corpus]
    bad = items[2]
    assert bad.features is None and "too short" in bad.error and "u02.wav" in bad.error
    for item in items:
        if item.features is None:
            continue
        wave = sf.read(item.utt.path, dtype="float32")[0]
        single = enc.extract(wave, [1, 3])
        assert item.duration_s == pytest.approx(len(wave) / 16000)
        for layer in (1, 3):
            assert item.features[layer].shape == (enc.num_frames(len(wave)), 32)
            assert np.abs(item.features[layer] - single[layer]).max() <= 1e-4 * np.abs(single[layer]).max()
    with pytest.raises(SpeechUnitsError, match="u02.wav"):
        list(iter_features(enc, corpus, [1], on_error="fail", quiet=True))


def test_chunking_with_full_context_equals_single_pass(tmp_path: Path, tiny_wav2vec2_layernorm_dir: Path) -> None:
    """Layer-norm CNN (no per-utterance statistics) + context covering the file: chunks change nothing."""
    path = write_tone(tmp_path / "long.wav", 2.03, seed=5)
    enc = load_encoder(str(tiny_wav2vec2_layernorm_dir), device="cpu")
    corpus = open_corpus(path)
    whole = next(iter_features(enc, corpus, [2], quiet=True)).features[2]
    chunked = next(iter_features(enc, corpus, [2], chunk_seconds=0.3, chunk_context_seconds=10.0,
                                 quiet=True)).features[2]
    assert chunked.shape == whole.shape == (enc.num_frames(len(sf.read(path)[0])), 32)
    assert np.abs(chunked - whole).max() <= 1e-4 * np.abs(whole).max()
    # Without context the frame count is still exact, and every chunk is what transformers gives
    # for that chunk's samples alone (do_normalize over the whole file, as the single pass does).
    bare = next(iter_features(enc, corpus, [2], chunk_seconds=0.3, chunk_context_seconds=0.0, quiet=True)).features[2]
    assert bare.shape == whole.shape
    wave = sf.read(path, dtype="float32")[0]
    reference = _transformers_chunks(tiny_wav2vec2_layernorm_dir, wave, chunk_samples=4800, layer=2)
    assert reference.shape == whole.shape
    assert np.abs(bare - reference).max() <= 1e-4 * np.abs(reference).max()
    # ... which is not the single pass (so the context above did real work), yet close to it: the
    # transformer sees 0.3 s instead of 2 s. Measured relative L2 on this random model: 0.145 (mean
    # frame cosine 0.990); another file's features are 0.86 away.
    assert 0.05 < np.linalg.norm(bare - whole) / np.linalg.norm(whole) < 0.25


def _transformers_chunks(model_dir: Path, wave: np.ndarray, chunk_samples: int, layer: int) -> np.ndarray:
    """Layer ``layer`` of consecutive chunks of ``wave`` by transformers alone, hop 320 / field 400 by hand."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    normalised = AutoFeatureExtractor.from_pretrained(str(model_dir))(wave, sampling_rate=16000).input_values[0]
    total = (len(wave) - 400) // 320 + 1
    per_chunk = (chunk_samples - 400) // 320 + 1
    parts = []
    for first in range(0, total, per_chunk):
        last = min(first + per_chunk, total)
        piece = torch.from_numpy(np.asarray(normalised[first * 320: (last - 1) * 320 + 400], dtype=np.float32))
        with torch.no_grad():
            parts.append(model(piece[None], output_hidden_states=True).hidden_states[layer][0].numpy())
    return np.concatenate(parts)


def test_long_file_with_tiny_last_chunk(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    enc = load_encoder(str(tiny_hubert_dir), device="cpu")
    for n in (1_600_001, 8000 + 5):
        wave = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
        items = [LoadedAudio(Utterance("x", "x.wav"), __import__("speechunits.audio", fromlist=["Audio"]).Audio(wave, 16000))]
        chunk = 100.0 if n > 100_000 else 0.5
        out = next(iter_features(enc, None, [1], audio_items=items, chunk_seconds=chunk,
                                 chunk_context_seconds=0.0, quiet=True))
        frames = (n - 400) // 320 + 1
        assert out.features[1].shape[0] == frames
        # The samples after the last full frame make no piece of their own: one piece, ending at the
        # last frame's last sample, whose features are the encoder's on exactly those samples.
        single = enc.extract(wave[: (frames - 1) * 320 + 400], [1])[1]
        assert np.abs(out.features[1] - single).max() <= 1e-4 * np.abs(single).max()


def test_audio_items_and_serial_loader(tmp_path: Path) -> None:
    audio = _corpus_dir(tmp_path / "a", [0.5, 0.7])
    write_tone(tmp_path / "a" / "st.flac", 0.4, sample_rate=44100, channels=2)
    loaded = list(load_audio_items(open_corpus(audio), 16000, 400))
    assert [x.utt.id for x in loaded] == ["st", "u00", "u01"]
    assert loaded[0].audio.sample_rate == 16000 and loaded[0].audio.num_samples == 6400
    enc = load_encoder("mfcc")
    a = [it.features[0] for it in iter_features(enc, open_corpus(audio), [0], quiet=True)]
    b = [it.features[0] for it in iter_features(enc, None, [0], audio_items=iter(loaded), quiet=True)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_bad_options(tiny_hubert_dir: Path) -> None:
    enc = load_encoder("mfcc")
    for kwargs, match in [({"on_error": "ignore"}, "on-error"), ({"max_batch_seconds": 0}, "max-batch-seconds"),
                          ({"batch_size": 0}, "batch-size"), ({"chunk_seconds": 0.001}, "chunk-seconds")]:
        with pytest.raises(SpeechUnitsError, match=match):
            next(iter_features(enc, [], [0], **kwargs))


# -- features directory + CLI ----------------------------------------------------------------------
def _bad_corpus(root: Path) -> Path:
    write_tone(root / "good1.wav", 0.8, seed=1)
    write_tone(root / "good2.wav", 1.3, seed=2)
    write_tone(root / "stereo.flac", 0.9, sample_rate=44100, channels=2, seed=3)
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    sf.write(str(root / "empty.wav"), np.zeros(0, dtype=np.float32), 16000)
    write_tone(root / "tiny.wav", 0.01, seed=4)
    nan = np.full(8000, 0.1, dtype=np.float32)
    nan[100] = np.nan
    sf.write(str(root / "nan.wav"), nan, 16000, subtype="FLOAT")
    return root


def test_cli_bad_inputs_skip(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    corpus = _bad_corpus(tmp_path / "audio")
    out = tmp_path / "out"
    code = main(["features", str(corpus), "--encoder", str(tiny_hubert_dir), "--layer", "2,4", "-o", str(out),
                 "--on-error", "skip", "--quiet", "--device", "cpu", "--max-batch-seconds", "2"])
    assert code == 0
    meta = read_features_meta(out)
    assert meta["ids"] == ["good1", "good2", "stereo"]
    assert meta["layers"] == [2, 4] and meta["dim"] == 32 and meta["frame_rate"] == 50.0
    errors = {e["id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert set(errors) == {"corrupt", "empty", "tiny", "nan"}
    assert "corrupt" in errors["corrupt"] and "empty" in errors["empty"]
    assert "too short" in errors["tiny"] and "NaN" in errors["nan"]
    # fairseq files: np.load-able npy, .len, manifest
    lens = [int(x) for x in (out / "layer4.len").read_text().split()]
    stereo_samples = round(0.9 * 16000)
    assert lens == [(n - 400) // 320 + 1 for n in (12800, 20800, stereo_samples)]
    assert np.load(out / "layer4.npy").shape == (sum(lens), 32)
    manifest = (out / "manifest.tsv").read_text().splitlines()
    assert Path(manifest[0]) == corpus and manifest[1:] == ["good1.wav\t12800", "good2.wav\t20800",
                                                            f"stereo.flac\t{stereo_samples}"]
    enc = load_encoder(str(tiny_hubert_dir), device="cpu")
    from speechunits.audio import Audio

    stereo = Audio.load(corpus / "stereo.flac", sample_rate=16000)
    read = dict(read_features_dir(out, 4))
    ref = enc.extract(stereo, [4])[4]
    assert np.abs(read["stereo"] - ref).max() <= 1e-4 * np.abs(ref).max()
    assert not list(out.glob("*.partial"))


def test_cli_bad_inputs_fail(tmp_path: Path, tiny_hubert_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = _bad_corpus(tmp_path / "audio")
    out = tmp_path / "out"
    code = main(["features", str(corpus), "--encoder", str(tiny_hubert_dir), "--layer", "2", "-o", str(out),
                 "--on-error", "fail", "--quiet", "--device", "cpu"])
    assert code != 0
    assert "corrupt.wav" in caplog.text  # the first bad file in corpus order
    assert not (out / "features.json").exists() and not list(out.glob("layer*"))
    with pytest.raises(SpeechUnitsError, match="no features.json"):
        read_features_meta(out)


def test_cli_mfcc_shard_and_reader(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = _corpus_dir(tmp_path / "a", [0.5, 0.6, 0.7, 0.8])
    out = tmp_path / "o"
    assert main(["features", str(corpus), "--encoder", "mfcc", "-o", str(out), "--shard", "1/2", "--quiet"]) == 0
    meta = read_features_meta(out)
    assert meta["ids"] == ["u01", "u03"] and meta["layers"] == [0] and meta["dim"] == 39
    got = dict(read_features_dir(out))  # single layer: no layer argument needed
    enc = load_encoder("mfcc")
    np.testing.assert_array_equal(got["u03"], enc.extract(sf.read(corpus / "u03.wav", dtype="float32")[0])[0])
    with pytest.raises(SpeechUnitsError, match="layer 3"):
        list(read_features_dir(out, 3))
    assert "layer(s) [1] out of range" in cli_error(["features", str(corpus), "--encoder", "mfcc", "--layer", "1", "-o",
                                                     str(out), "--quiet"], caplog)
    assert "--layer is required" in cli_error(["features", str(corpus), "--encoder", str(tmp_path), "-o", str(out),
                                               "--quiet"], caplog)


def test_reads_plain_fairseq_dump(tmp_path: Path) -> None:
    feats = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.save(tmp_path / "layer6.npy", feats)
    (tmp_path / "layer6.len").write_text("4\n6\n")
    (tmp_path / "manifest.tsv").write_text("/data\nspk/a.flac\t100\nb.wav\t200\n")
    got = list(read_features_dir(tmp_path, 6))
    assert [k for k, _ in got] == ["spk/a", "b"]
    np.testing.assert_array_equal(got[1][1], feats[4:])
    (tmp_path / "layer6.len").write_text("4\n7\n")
    with pytest.raises(SpeechUnitsError, match="does not match"):
        list(read_features_dir(tmp_path, 6))
    (tmp_path / "layer6.len").write_text("4\nsix\n")
    with pytest.raises(SpeechUnitsError, match=r"layer6\.len: expected one frame count"):
        list(read_features_dir(tmp_path, 6))
    (tmp_path / "layer6.len").write_text("4\n6\n")
    (tmp_path / "layer6.npy").write_bytes(b"\x93NUMPY not really")
    with pytest.raises(SpeechUnitsError, match=r"layer6\.npy: unreadable"):
        list(read_features_dir(tmp_path, 6))


def test_reads_lazily_within_a_bounded_window(tiny_hubert_dir: Path) -> None:
    """Memory stays flat: results come out before the whole corpus has been read."""
    from speechunits.audio import Audio

    pulled = []

    def items():
        for i in range(40):
            pulled.append(i)
            wave = (0.1 * np.random.default_rng(i).standard_normal(4000 + 100 * i)).astype(np.float32)
            yield LoadedAudio(Utterance(f"u{i}", f"u{i}.wav"), Audio(wave, 16000))

    enc = load_encoder(str(tiny_hubert_dir), device="cpu")
    stream = iter_features(enc, None, [1], audio_items=items(), max_batch_seconds=1.0, window_utterances=6, quiet=True)
    first = next(stream)
    assert first.utt.id == "u0" and len(pulled) <= 6
    rest = list(stream)
    assert [x.utt.id for x in rest] == [f"u{i}" for i in range(1, 40)]
    # window by audio: 8 batches of 0.5 s = 4 s of audio, i.e. at most 16 of these 0.25 s+ utterances
    pulled.clear()
    next(iter_features(enc, None, [1], audio_items=items(), max_batch_seconds=0.5, quiet=True))
    assert len(pulled) <= 16


def test_cli_channel_and_dtype(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stereo = write_tone(tmp_path / "a" / "st.wav", 0.5, channels=2, seed=7)
    out = tmp_path / "o"
    assert main(["features", str(stereo.parent), "--encoder", "logmel", "-o", str(out), "--channel", "1",
                 "--quiet", "--dtype", "bf16"]) == 0
    data = sf.read(stereo, dtype="float32")[0]
    got = dict(read_features_dir(out, 0))["st"]
    np.testing.assert_array_equal(got, load_encoder("logmel").extract(data[:, 1])[0])
    assert read_features_meta(out)["dtype"] == "fp32"  # spectral features are always computed in fp32
    assert "channel 2 requested but the file has channels 0..1" in cli_error(["features", str(stereo.parent),
                                                                              "--encoder", "logmel", "-o", str(out),
                                                                              "--channel", "2", "--quiet", "--on-error",
                                                                              "fail"], caplog)
