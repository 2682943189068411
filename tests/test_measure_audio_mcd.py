"""Mel-cepstral distortion: the mel-cepstrum against numpy's cepstrum and a known warped series, the
MCD constant against the RMS log-spectral distance in dB, and MCD of real audio."""
from __future__ import annotations

import math

import numpy as np
import pytest

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError
from speechunits.measure.audio.mcd import (MCD_CONSTANT, mcd_dtw, mcd_dtw_cepstra, mcd_frames, mel_cepstrum,
                                           spectrum_to_mel_cepstrum)
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return small_corpus(tmp_path_factory.mktemp("mcd-corpus"))


def test_the_constant_is_10_over_ln10_times_sqrt2():
    assert MCD_CONSTANT == pytest.approx(6.141851, abs=1e-6)


def test_without_warping_the_mel_cepstrum_is_numpys_real_cepstrum():
    rng = np.random.default_rng(0)
    power = np.exp(rng.normal(size=(3, 513)) * 0.2)
    cepstrum = np.fft.irfft(0.5 * np.log(power), axis=1)  # of the log amplitude
    expected = np.concatenate([cepstrum[:, :1], 2.0 * cepstrum[:, 1:13]], axis=1)  # ln|H| = sum c_m cos(m w)
    assert np.allclose(spectrum_to_mel_cepstrum(power, order=12, alpha=0.0), expected, atol=1e-3)


def test_a_cosine_series_on_the_warped_axis_is_recovered():
    alpha, coeffs = 0.42, np.array([0.3, -0.5, 0.2, 0.1, -0.05])
    w = np.linspace(0.0, np.pi, 513)
    warped = w + 2 * np.arctan(alpha * np.sin(w) / (1 - alpha * np.cos(w)))
    log_amplitude = sum(c * np.cos(m * warped) for m, c in enumerate(coeffs))
    got = spectrum_to_mel_cepstrum(np.exp(2 * log_amplitude)[None], order=8, alpha=alpha)[0]
    assert np.allclose(got[:5], coeffs, atol=1e-4) and np.allclose(got[5:], 0.0, atol=1e-4)


def test_mcd_is_the_rms_log_spectral_distance_in_db():
    """Parseval: with c_0 equal and every coefficient kept, MCD = RMS over frequency of the dB difference."""
    w = np.linspace(0.0, np.pi, 4097)
    a = 0.4 * np.cos(w) - 0.2 * np.cos(3 * w)
    b = 0.1 * np.cos(w) + 0.3 * np.cos(2 * w)
    ca = spectrum_to_mel_cepstrum(np.exp(2 * a)[None], order=6, alpha=0.0)
    cb = spectrum_to_mel_cepstrum(np.exp(2 * b)[None], order=6, alpha=0.0)
    db_difference = 20.0 / math.log(10.0) * (a - b)
    rms = math.sqrt(np.trapezoid(db_difference ** 2, w) / np.pi)
    assert mcd_frames(ca, cb)[0, 0] == pytest.approx(rms, rel=1e-3)


def test_dtw_follows_a_time_warp():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(20, 14))
    stretched = np.repeat(ref, 2, axis=0)  # every frame twice: DTW finds a zero-cost path
    assert mcd_dtw_cepstra(ref, stretched) == pytest.approx(0.0, abs=1e-12)
    assert mcd_dtw_cepstra(ref, rng.normal(size=(25, 14))) > 1.0


def test_identical_audio_is_zero_and_other_audio_is_not(corpus):
    wavs = sorted((corpus / "wavs").glob("*.wav"))
    a, b = Audio.load(wavs[0]), Audio.load(wavs[1])
    assert mcd_dtw(a, a) == 0.0
    ab, ba = mcd_dtw(a, b), mcd_dtw(b, a)
    assert ab > 3.0 and ab == pytest.approx(ba, rel=1e-6)
    # Resampling to another rate and back changes the audio only slightly: far below another utterance.
    other_rate = Audio.load(wavs[0], sample_rate=22050)
    assert 0.0 <= mcd_dtw(a, other_rate) < ab / 3


def test_silence_has_no_mel_cepstrum_frames_and_mcd_refuses_it(corpus):
    silent = Audio(np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(SpeechUnitsError, match="no non-silent frame"):
        speech = Audio.load(sorted((corpus / "wavs").glob("*.wav"))[0])
        mcd_dtw(speech, silent)
    assert mel_cepstrum(silent, silence_db=None).shape[1] == 14
