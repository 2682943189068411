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
