"""F0 tracks: known tones, silence, alignment to unit frames, per-speaker statistics."""
import numpy as np
import pytest

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError

pytest.importorskip("pyworld")
pytest.importorskip("parselmouth")

from speechunits.pitch import F0Stats, F0Track, extract_f0, f0_stats  # noqa: E402


def _tone(hz: float, seconds: float = 1.0, rate: int = 16000) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    # a few harmonics so the trackers see a voice-like periodic signal
    x = sum(np.sin(2 * np.pi * hz * k * t) / k for k in (1, 2, 3))
    return Audio((0.3 * x).astype(np.float32), rate)


@pytest.mark.parametrize("method", ["dio", "harvest", "praat"])
def test_known_tone_is_tracked(method):
    track = extract_f0(_tone(180.0), frame_rate=50.0, offset_s=0.01, method=method)
    assert len(track) == 50  # centres 0.01 .. 0.99 s
    inner = track.f0[5:-5]
    assert np.all(inner > 0)
    assert np.median(np.abs(inner - 180.0)) < 2.0


def test_silence_and_short_audio_are_unvoiced():
    silent = extract_f0(Audio(np.zeros(16000, np.float32), 16000), frame_rate=100.0)
    assert len(silent) == 100 and not silent.voiced.any()
    short = extract_f0(Audio(np.ones(40, np.float32) * 0.1, 16000), frame_rate=100.0, num_frames=3)
    assert len(short) == 3 and not short.voiced.any()


def test_noise_is_mostly_unvoiced_and_frames_follow_num_frames():
    rng = np.random.default_rng(0)
    noise = Audio((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    track = extract_f0(noise, frame_rate=100.0, num_frames=120, method="praat")
    assert len(track) == 120
    assert track.voiced[100:].sum() == 0  # beyond the audio
    assert track.voiced.mean() < 0.3


def test_stats_normalise_round_trip_and_hand_values():
    a = F0Track(np.array([100.0, 0.0, 200.0], np.float32), 100.0)
    b = F0Track(np.array([0.0, 400.0], np.float32), 100.0)
    stats = f0_stats([a, b] * 10)  # 30 voiced frames: no pooling
    logs = np.log([100.0, 200.0, 400.0])
    assert stats.mean_log == pytest.approx(logs.mean())
    assert stats.std_log == pytest.approx(logs.std())
    z = stats.normalise(a)
    assert z[1] == 0.0
    back = stats.denormalise(z, a.voiced)
    np.testing.assert_allclose(back, a.f0, rtol=1e-5)
    assert F0Stats.from_dict(stats.to_dict()) == stats


def test_bad_arguments_are_user_errors():
    with pytest.raises(SpeechUnitsError, match="unknown F0 method"):
        extract_f0(_tone(100), method="yin")
    with pytest.raises(SpeechUnitsError, match="floor < ceiling"):
        extract_f0(_tone(100), floor=300, ceiling=100)
    with pytest.raises(SpeechUnitsError, match="no voiced frame"):
        f0_stats([F0Track(np.zeros(5, np.float32), 100.0)])
