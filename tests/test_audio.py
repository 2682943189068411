"""Audio loading, downmix, resampling and validation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError


def _write(path: Path, data: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(str(path), data, rate, **kwargs)
    return path


@pytest.mark.parametrize("ext,subtype", [(".wav", "FLOAT"), (".flac", "PCM_24"), (".ogg", "VORBIS"), (".mp3", None)])
def test_load_formats_roundtrip_duration(tmp_path: Path, ext: str, subtype: str | None) -> None:
    rate = 16000
    t = np.arange(rate) / rate
    data = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    kwargs = {"subtype": subtype} if subtype else {}
    path = _write(tmp_path / f"a{ext}", data, rate, **kwargs)
    audio = Audio.load(path)
    assert audio.sample_rate == rate
    assert audio.samples.dtype == np.float32
    # Lossy codecs add encoder delay/padding; lossless ones are exact in length.
    if ext in (".wav", ".flac"):
        assert audio.num_samples == rate
        np.testing.assert_allclose(audio.samples, data, atol=1e-6 if ext == ".wav" else 1e-6 * 2**4)
    else:
        assert abs(audio.duration_s - 1.0) < 0.1
        # The dominant frequency survives the codec.
        spectrum = np.abs(np.fft.rfft(audio.samples[:rate]))
        assert abs(np.argmax(spectrum) * rate / rate - 440) < 3


def test_stereo_downmix_is_channel_mean_and_channel_pick(tmp_path: Path) -> None:
    left = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    right = np.full(1000, 0.25, dtype=np.float32)
    path = _write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(Audio.load(path).samples, (left + right) / 2, atol=1e-7)
    np.testing.assert_allclose(Audio.load(path, channel=1).samples, right)
    with pytest.raises(SpeechUnitsError, match="channel 2"):
        Audio.load(path, channel=2)


def test_resample_44k1_to_16k_keeps_tone_and_length(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(2 * rate) / rate
    path = _write(tmp_path / "hi.flac", 0.3 * np.sin(2 * np.pi * 1000 * t), rate)
    audio = Audio.load(path, sample_rate=16000)
    assert audio.sample_rate == 16000
    assert audio.num_samples == 32000
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert abs(np.argmax(spectrum) * 16000 / audio.num_samples - 1000) < 1.0
    # Deterministic: same bytes twice.
    assert np.array_equal(audio.samples, Audio.load(path, sample_rate=16000).samples)


def test_bad_files_raise_naming_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(SpeechUnitsError, match="corrupt.wav: unreadable or corrupt"):
        Audio.load(corrupt)

    empty = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(SpeechUnitsError, match="empty.wav: empty audio"):
        Audio.load(empty)

    data = np.zeros(100, dtype=np.float32)
    data[10] = np.nan
    nan = _write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    with pytest.raises(SpeechUnitsError, match="nan.wav: contains 1 NaN/Inf"):
        Audio.load(nan)

    with pytest.raises(SpeechUnitsError, match="unsupported audio extension '.txt'"):
        Audio.load(tmp_path / "x.txt")
    with pytest.raises(SpeechUnitsError, match="no such file"):
        Audio.load(tmp_path / "missing.wav")


def test_require_min_samples_message() -> None:
    audio = Audio(np.zeros(160, dtype=np.float32), 16000, "short.wav")
    audio.require_min_samples(160)
    with pytest.raises(SpeechUnitsError, match=r"short.wav: too short \(160 samples = 10.0 ms\)"):
        audio.require_min_samples(400)


def test_audio_is_immutable_and_validates_shape() -> None:
    audio = Audio(np.zeros(10), 16000)
    assert audio.samples.dtype == np.float32
    with pytest.raises(AttributeError):
        audio.sample_rate = 8000  # type: ignore[misc]
    with pytest.raises(SpeechUnitsError, match="mono"):
        Audio(np.zeros((2, 10)), 16000)


def test_audio_equality_compares_values_and_rate_and_is_unhashable() -> None:
    x = np.linspace(-1, 1, 160, dtype=np.float32)
    a = Audio(x, 16000, path="a.wav")
    assert a == Audio(x.copy(), 16000, path="elsewhere.wav")  # path is not compared
    assert not (a != Audio(x.copy(), 16000))
    assert Audio(x.astype(np.float64), 16000) == a  # stored as float32 either way
    assert a != Audio(x, 8000)
    assert a != Audio(x[:-1], 16000)  # another length: no broadcasting error
    changed = x.copy()
    changed[3] += 1e-3
    assert a != Audio(changed, 16000)
    assert a != x and a != "a.wav" and a != None  # noqa: E711 - another type is never equal
    nan = np.array([0.0, np.nan], np.float32)
    assert Audio(nan, 16000) == Audio(nan.copy(), 16000)  # equality is reflexive even for NaN samples
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)
    with pytest.raises(TypeError):
        _ = {a}


# -- NIST SPHERE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "ULAW"])
def test_sphere_written_by_libsndfile_loads_and_is_scanned(tmp_path: Path, subtype: str) -> None:
    assert "NIST" in sf.available_formats()
    rng = np.random.default_rng(0)
    pcm = rng.integers(-2**15, 2**15, 1600).astype(np.int16)
    path = tmp_path / "spk" / "utt1.sph"
    path.parent.mkdir()
    sf.write(path, pcm, 16000, format="NIST", subtype=subtype)
    assert path.read_bytes().startswith(b"NIST_1A")
    audio = Audio.load(path)
    assert audio.sample_rate == 16000 and audio.num_samples == 1600
    if subtype == "ULAW":  # lossy: within a mu-law step of the input
        np.testing.assert_allclose(audio.samples, pcm / 32768.0, atol=0.04)
    else:
        np.testing.assert_array_equal(audio.samples, (pcm / 32768.0).astype(np.float32))
    from speechunits.audio import sphere_header
    from speechunits.corpus import open_corpus
    assert sphere_header(path)["sample_rate"] == "16000"
    assert [u.id for u in open_corpus(tmp_path)] == ["spk/utt1"]
    # TIMIT names its SPHERE files .WAV: libsndfile goes by the header.
    timit = tmp_path / "SA1.WAV"
    sf.write(timit, pcm, 16000, format="NIST", subtype="PCM_16")
    np.testing.assert_array_equal(Audio.load(timit).samples, (pcm / 32768.0).astype(np.float32))


def _sphere_bytes(fields: list[str], payload: bytes) -> bytes:
    header = ("\n".join(["NIST_1A", "   1024", *fields, "end_head"]) + "\n").encode("ascii")
    return header + b" " * (1024 - len(header)) + payload


def test_shorten_sphere_is_refused_with_the_conversion(tmp_path: Path) -> None:
    for coding in ("pcm,embedded-shorten-v2.00", "ulaw,embedded-shorten-v2.00"):  # TIMIT-style, Switchboard-style
        path = tmp_path / "sw02001.sph"
        path.write_bytes(_sphere_bytes(
            ["database_id -s11 Switchboard", "channel_count -i 2", "sample_rate -i 8000", "sample_n_bytes -i 1",
             f"sample_coding -s{len(coding)} {coding}", "sample_count -i 4000"], bytes(range(256)) * 4))
        with pytest.raises(SpeechUnitsError, match=r"sw02001.sph: NIST SPHERE with shorten-compressed samples.*"
                                                   r"sph2pipe -f wav sw02001.sph sw02001.wav"):
            Audio.load(path)
    # A hand-written uncompressed header (the byte layout TIMIT ships) reads through libsndfile.
    pcm = np.arange(-400, 400, 3, dtype="<i2")
    plain = tmp_path / "plain.sph"
    plain.write_bytes(_sphere_bytes(
        ["channel_count -i 1", "sample_rate -i 16000", "sample_n_bytes -i 2", "sample_byte_format -s2 01",
         "sample_coding -s3 pcm", f"sample_count -i {pcm.size}"], pcm.tobytes()))
    np.testing.assert_array_equal(Audio.load(plain).samples, (pcm / 32768.0).astype(np.float32))


# -- headerless PCM --------------------------------------------------------------------------------

def _mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law to 16-bit PCM, written out from the standard (an implementation that is not libsndfile's)."""
    b = ~codes.astype(np.uint8)
    exponent = (b >> 4) & 7
    mantissa = (b & 0x0F).astype(np.int32)
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(b & 0x80, -magnitude, magnitude).astype(np.int16)


@pytest.mark.parametrize(("encoding", "dtype", "scale"), [
    ("s16le", "<i2", 2.0**15), ("s16be", ">i2", 2.0**15), ("s32le", "<i4", 2.0**31), ("f32le", "<f4", 1.0),
    ("f64le", "<f8", 1.0), ("s8", "i1", 2.0**7),
])
def test_raw_pcm_round_trip(tmp_path: Path, encoding: str, dtype: str, scale: float) -> None:
    rng = np.random.default_rng(1)
    if scale == 1.0:
        values = rng.uniform(-1, 1, 800).astype(dtype)
    else:
        info = np.iinfo(np.dtype(dtype))
        values = rng.integers(info.min, info.max, 800, endpoint=True).astype(dtype)
    path = tmp_path / "x.raw"
    path.write_bytes(values.tobytes())
    audio = Audio.load(path, raw_format=f"{encoding}:8000")
    assert audio.sample_rate == 8000 and audio.num_samples == 800
    np.testing.assert_array_equal(audio.samples, (values.astype(np.float64) / scale).astype(np.float32))


def test_raw_u8_s24_mulaw_and_channels(tmp_path: Path) -> None:
    from speechunits.audio import RawFormat

    codes = np.arange(256, dtype=np.uint8)
    (tmp_path / "u.pcm").write_bytes(codes.tobytes())
    np.testing.assert_array_equal(Audio.load(tmp_path / "u.pcm", raw_format="u8:8000").samples,
                                  ((codes.astype(np.float32) - 128) / 128))
    np.testing.assert_array_equal(Audio.load(tmp_path / "u.pcm", raw_format="mulaw:8000").samples,
                                  _mulaw_decode(codes) / np.float32(32768))
    # 24-bit little-endian: three bytes per sample, built by hand.
    ints = np.array([0, 1, -1, 2**23 - 1, -2**23, 12345], dtype=np.int64)
    packed = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in ints)
    (tmp_path / "s24.raw").write_bytes(packed)
    np.testing.assert_array_equal(Audio.load(tmp_path / "s24.raw", raw_format="s24le:16000").samples,
                                  (ints / 2.0**23).astype(np.float32))
    # Two interleaved channels: downmix is the mean, channel=1 picks the second.
    stereo = np.stack([np.full(100, 1000, np.int16), np.full(100, -3000, np.int16)], 1)
    (tmp_path / "st.raw").write_bytes(stereo.astype("<i2").tobytes())
    fmt = RawFormat.parse("s16le:16000:2")
    assert fmt == RawFormat("s16le", 16000, 2) and str(fmt) == "s16le:16000:2" and fmt.frame_bytes == 4
    np.testing.assert_array_equal(Audio.load(tmp_path / "st.raw", raw_format=fmt).samples,
                                  np.full(100, -1000 / 32768, np.float32))
    np.testing.assert_array_equal(Audio.load(tmp_path / "st.raw", raw_format=fmt, channel=1).samples,
                                  np.full(100, -3000 / 32768, np.float32))
    # A raw format does not change how files with a header are read.
    wav = _write(tmp_path / "w.wav", np.full(50, 0.5, np.float32), 16000)
    assert Audio.load(wav, raw_format="s8:8000") == Audio.load(wav)


def test_raw_pcm_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.raw"
    path.write_bytes(np.zeros(7, np.uint8).tobytes())
    with pytest.raises(SpeechUnitsError, match=r"x.raw: headerless PCM .* pass --raw-format ENCODING:RATE"):
        Audio.load(path)
    with pytest.raises(SpeechUnitsError, match=r"x.raw: 7 bytes is not a whole number of s16le:16000 frames"):
        Audio.load(path, raw_format="s16le:16000")
    for bad in ("s16le", "s16le:abc", "s16le:0", "s16le:16000:2:9"):
        with pytest.raises(SpeechUnitsError, match="raw format"):
            Audio.load(path, raw_format=bad)
    with pytest.raises(SpeechUnitsError, match="unknown encoding 'pcm16' \\(one of s8, u8, s16le"):
        Audio.load(path, raw_format="pcm16:16000")
    (tmp_path / "e.pcm").write_bytes(b"")
    with pytest.raises(SpeechUnitsError, match="e.pcm: empty audio"):
        Audio.load(tmp_path / "e.pcm", raw_format="s16le:16000")


def test_stream_in_blocks_equals_load_for_raw_pcm_and_channels(tmp_path) -> None:
    """Audio.stream concatenated equals Audio.load: headerless PCM (written by numpy), one channel."""
    rng = np.random.default_rng(5)
    stereo = (rng.uniform(-0.9, 0.9, size=(8000 * 3 + 17, 2)) * 32767).astype("<i2")
    raw = tmp_path / "x.raw"
    raw.write_bytes(stereo.tobytes())
    for channel in (None, 1):
        whole = Audio.load(raw, channel=channel, raw_format="s16le:8000:2")
        blocks = list(Audio.stream(raw, 8000, channel=channel, block_seconds=0.7, raw_format="s16le:8000:2"))
        assert len(blocks) == 5 and sum(b.source_frames for b in blocks) == stereo.shape[0]
        np.testing.assert_array_equal(np.concatenate([b.samples for b in blocks]), whole.samples)
    with pytest.raises(SpeechUnitsError, match="channel 2 requested"):
        next(Audio.stream(raw, 8000, channel=2, raw_format="s16le:8000:2"))
    with pytest.raises(SpeechUnitsError, match="--raw-format"):
        next(Audio.stream(raw, 8000))


def test_running_out_of_memory_while_decoding_is_not_bad_input(tmp_path, monkeypatch) -> None:
    """Only decoder errors become SpeechUnitsError (a skip in a corpus run); MemoryError propagates."""
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)

    class Exhausted:
        def __init__(self, *args, **kwargs):
            raise MemoryError("no memory left")

    monkeypatch.setattr(sf, "SoundFile", Exhausted)
    with pytest.raises(MemoryError):
        Audio.load(path)
    with pytest.raises(MemoryError):
        next(Audio.stream(path, 16000))
