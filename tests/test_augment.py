"""Augmentations: duration, frequency, SNR and reverb checked against what they promise."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits import augment

SR = 16000


def tone(freq: float = 220.0, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(y: np.ndarray) -> float:
    """Dominant frequency with an 8x zero-padded FFT (0.06 Hz bins for 2 s)."""
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n=8 * y.size))
    return float(np.fft.rfftfreq(8 * y.size, 1 / SR)[spec.argmax()])


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(y, dtype=np.float64) ** 2)))


@pytest.mark.parametrize("factor", [0.8, 0.9, 1.1, 1.2])
def test_time_stretch_changes_duration_not_pitch(factor: float) -> None:
    x = tone()
    y = augment.time_stretch(x, SR, factor)
    assert y.dtype == np.float32 and y.size == round(x.size * factor)
    assert peak_hz(y) == pytest.approx(220.0, abs=0.5)
    assert rms(y[2000:-2000]) == pytest.approx(rms(x), rel=0.03)  # steady tone keeps its level


def test_time_stretch_moves_events_by_the_factor() -> None:
    # A click train: clicks at 0.5 s and 1.5 s should land at 0.6 s and 1.8 s for factor 1.2.
    x = np.zeros(2 * SR, dtype=np.float32)
    burst = np.hanning(160) * np.sin(2 * np.pi * 1000 * np.arange(160) / SR)
    for at in (0.5, 1.5):
        x[int(at * SR):int(at * SR) + 160] = burst
    y = augment.time_stretch(x, SR, 1.2)
    env = np.convolve(np.abs(y), np.ones(160) / 160, mode="same")
    first = np.argmax(env[: int(1.2 * SR)]) / SR
    second = (int(1.2 * SR) + np.argmax(env[int(1.2 * SR):])) / SR
    assert first == pytest.approx(0.6, abs=0.02) and second == pytest.approx(1.8, abs=0.02)


@pytest.mark.parametrize("semitones", [-2.0, 2.0])
def test_pitch_shift_moves_frequency_by_the_semitone_ratio(semitones: float) -> None:
    x = tone(220.0)
    y = augment.pitch_shift(x, SR, semitones)
    assert y.size == x.size
    assert peak_hz(y) == pytest.approx(220.0 * 2 ** (semitones / 12), abs=0.5)
    assert rms(y[2000:-2000]) == pytest.approx(rms(x), rel=0.05)


@pytest.mark.parametrize("snr", [20.0, 10.0, 5.0])
def test_noise_hits_the_requested_snr_and_is_deterministic(snr: float) -> None:
    x = tone()
    y = augment.add_noise(x, snr, seed=3)
    noise = y.astype(np.float64) - x
    assert 10 * math.log10(rms(x) ** 2 / rms(noise) ** 2) == pytest.approx(snr, abs=1e-3)
    np.testing.assert_array_equal(y, augment.add_noise(x, snr, seed=3))
    assert not np.array_equal(y, augment.add_noise(x, snr, seed=4))


def test_reverb_keeps_length_and_level_and_adds_a_decaying_tail() -> None:
    x = np.zeros(SR, dtype=np.float32)
    x[1000:1100] = 1.0  # a short pulse
    y = augment.reverb(x, SR, rt60=0.4, seed=0)
    assert y.size == x.size and np.isfinite(y).all()
    assert rms(y) == pytest.approx(rms(x), rel=1e-4)
    tail = y[1200:]
    assert rms(tail) > 0.01 * rms(y)  # energy spread after the pulse
    # The tail decays: 100-200 ms after the pulse is louder than 300-400 ms after it.
    assert rms(y[2600:4200]) > rms(y[5800:7400])
    np.testing.assert_array_equal(y, augment.reverb(x, SR, rt60=0.4, seed=0))


def test_room_impulse_response_decay_matches_rt60() -> None:
    rir = augment.room_impulse_response(SR, rt60=0.5, seed=1)
    assert rir.size == SR // 2 and rir[0] > 0 and np.sum(rir**2) == pytest.approx(1.0)
    # Energy envelope: 60 dB per rt60 -> the 2nd 100 ms window is ~12 dB below the 1st (after the direct path).
    e1 = np.sum(rir[200:1800] ** 2)
    e2 = np.sum(rir[1800:3400] ** 2)
    assert 10 * math.log10(e1 / e2) == pytest.approx(12.0, abs=2.0)


def test_bad_inputs() -> None:
    with pytest.raises(SpeechUnitsError, match="factor"):
        augment.time_stretch(tone(), SR, 0.0)
    with pytest.raises(SpeechUnitsError, match="silent"):
        augment.add_noise(np.zeros(100, dtype=np.float32), 10.0)
    with pytest.raises(SpeechUnitsError, match="mono"):
        augment.add_noise(np.zeros((2, 100), dtype=np.float32), 10.0)
    with pytest.raises(SpeechUnitsError, match="NaN"):
        augment.reverb(np.array([np.nan, 0.0], dtype=np.float32), SR)
    with pytest.raises(SpeechUnitsError, match="rt60"):
        augment.reverb(tone(), SR, rt60=0.0)
    with pytest.raises(SpeechUnitsError, match="unknown augmentation"):
        augment.standard_augmentations(["stretch", "chorus"])


def test_standard_grid() -> None:
    grid = augment.standard_augmentations(["stretch", "pitch", "noise", "reverb"])
    assert [a.label for a in grid] == ["stretch x0.8", "stretch x0.9", "stretch x1.1", "stretch x1.2", "pitch -2 st",
                                       "pitch +2 st", "noise 20 dB", "noise 10 dB", "noise 5 dB", "reverb rt60 0.3 s",
                                       "reverb rt60 0.6 s"]
    x = tone(seconds=0.5)
    for aug in grid:
        y = aug.apply(x, SR, 0)
        assert y.dtype == np.float32 and np.isfinite(y).all()
        np.testing.assert_array_equal(y, aug.apply(x, SR, 0))


# -- random perturbations for training (pretrain --augment) -------------------------------------------

def test_gain_by_hand() -> None:
    x = tone(seconds=0.1)
    np.testing.assert_allclose(augment.gain(x, -6.0), x * 10 ** (-6 / 20), rtol=1e-6)
    np.testing.assert_array_equal(augment.gain(x, 0.0), x)


def test_random_augment_spec_is_canonical() -> None:
    spec = augment.RandomAugment.parse("noise:5..30, pitch:-3..3,reverb:0.2..0.8,gain:2,p=0.25")
    assert spec.spec == "pitch:-3..3,reverb:0.2..0.8,noise:5..30,gain:2..2,p=0.25"  # application order, p last
    assert augment.RandomAugment.parse(spec.spec) == spec  # the canonical form parses to the same thing
    assert augment.RandomAugment.parse("pitch:-1..1").p == augment.DEFAULT_P
    assert augment.RandomAugment.parse("none").spec == "none" and not augment.RandomAugment.parse("none")


@pytest.mark.parametrize("spec, message", [
    ("chorus:1..2", "unknown kind 'chorus'"),
    ("pitch:3..-3", "reversed range"),
    ("pitch:-3..3,p=1.5", r"p must be in \[0, 1\]"),
    ("noise:5..30,p=-0.1", r"p must be in \[0, 1\]"),
    ("pitch:-30..3", r"must lie in \[-12, 12\]"),
    ("reverb:0..0.5", "must lie in"),
    ("pitch:a..3", "'a' in 'pitch:a..3' is not a number"),
    ("pitch", "is not pitch:LOW..HIGH"),
    ("gain:1,gain:2", "'gain' given twice"),
])
def test_random_augment_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(SpeechUnitsError, match=message):
        augment.RandomAugment.parse(spec)


def test_random_augment_keeps_length_and_is_a_function_of_the_generator() -> None:
    x = tone(seconds=0.5)
    every = augment.RandomAugment.parse("pitch:-3..3,reverb:0.2..0.8,noise:5..30,gain:-6..6,p=1")
    y = every(x, SR, np.random.default_rng(7))
    assert y.dtype == np.float32 and y.shape == x.shape and not np.array_equal(x, y)
    np.testing.assert_array_equal(y, every(x, SR, np.random.default_rng(7)))
    assert not np.array_equal(y, every(x, SR, np.random.default_rng(8)))
    # p=0: nothing applies; the generator is still consumed the same way
    never = augment.RandomAugment.parse("pitch:-3..3,noise:5..30,p=0")
    np.testing.assert_array_equal(never(x, SR, np.random.default_rng(7)), x)
    # the drawn strengths: uniform in the range, in application order, three draws per kind
    rng = np.random.default_rng(3)
    drawn = every.draw(np.random.default_rng(3))
    expected = []
    for kind, low, high in [("pitch", -3, 3), ("reverb", 0.2, 0.8), ("noise", 5, 30), ("gain", -6, 6)]:
        rng.random()
        expected.append((kind, rng.uniform(low, high), int(rng.integers(2**31))))
    assert drawn == expected
    # a gain-only draw is exactly that gain (hand check of the applied value)
    only_gain = augment.RandomAugment.parse("gain:-6..6,p=1")
    (_, db, _), = only_gain.draw(np.random.default_rng(5))
    np.testing.assert_allclose(only_gain(x, SR, np.random.default_rng(5)), x * 10 ** (db / 20), rtol=1e-6)


def test_random_noise_leaves_digital_silence_alone() -> None:
    silent = np.zeros(800, dtype=np.float32)
    noisy = augment.RandomAugment.parse("noise:10..20,p=1")
    np.testing.assert_array_equal(noisy(silent, SR, np.random.default_rng(0)), silent)
