"""Kaldi-style mfcc/logmel against kaldi-native-fbank (an independent C++ port of Kaldi) and a slow
float64 numpy/scipy reference written from Kaldi's formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft

from speechunits.encoders import load_encoder
from speechunits.encoders.spectral import deltas
from speechunits.errors import SpeechUnitsError

SR = 16000


def kaldi_reference(wave: np.ndarray, num_bins: int, num_ceps: int | None) -> np.ndarray:
    """Frame-by-frame Kaldi feature computation (feature-window.cc, mel-computations.cc, feature-mfcc.cc)."""
    win, hop, nfft = 400, 160, 512
    n_frames = 1 + (len(wave) - win) // hop
    # Povey window: (0.5 - 0.5 cos(2 pi n / (N - 1))) ** 0.85
    n = np.arange(win)
    window = (0.5 - 0.5 * np.cos(2 * math.pi * n / (win - 1))) ** 0.85

    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(SR / 2)
    step = (hi - lo) / (num_bins + 1)
    banks = np.zeros((num_bins, nfft // 2 + 1))
    for b in range(num_bins):
        left, centre, right = lo + b * step, lo + (b + 1) * step, lo + (b + 2) * step
        for k in range(nfft // 2):  # Kaldi ignores the Nyquist bin
            m = mel(k * SR / nfft)
            if left < m < right:
                banks[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    out = []
    for i in range(n_frames):
        frame = wave[i * hop: i * hop + win].astype(np.float64)
        frame = frame - frame.mean()
        emphasised = frame.copy()
        for j in range(win - 1, 0, -1):
            emphasised[j] -= 0.97 * frame[j - 1]
        emphasised[0] -= 0.97 * frame[0]
        spectrum = np.abs(np.fft.rfft(emphasised * window, nfft)) ** 2
        logmel = np.log(np.maximum(banks @ spectrum, np.finfo(np.float32).eps))
        if num_ceps is None:
            out.append(logmel)
            continue
        ceps = scipy.fft.dct(logmel, type=2, norm="ortho")[:num_ceps]
        lifter = 1 + 11 * np.sin(math.pi * np.arange(num_ceps) / 22)
        out.append(ceps * lifter)
    feats = np.array(out)
    if num_ceps is None:
        return feats
    d1 = _ref_deltas(feats)
    return np.concatenate([feats, d1, _ref_deltas(d1)], axis=1)


def _ref_deltas(x: np.ndarray) -> np.ndarray:
    """d_t = sum_{k=1..2} k (x_{t+k} - x_{t-k}) / (2 (1 + 4)), edges replicated."""
    total = len(x)
    out = np.zeros_like(x)
    for t in range(total):
        for k in (1, 2):
            out[t] += k * (x[min(t + k, total - 1)] - x[max(t - k, 0)])
    return out / 10.0


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    rng = np.random.default_rng(3)
    t = np.arange(int(0.37 * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 310 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def test_mfcc_matches_kaldi_reference(wave: np.ndarray) -> None:
    enc = load_encoder("mfcc")
    assert (enc.info.dim, enc.info.hop_length, enc.info.receptive_field, enc.info.frame_rate) == (39, 160, 400, 100.0)
    ours = enc.extract(wave)[0]
    ref = kaldi_reference(wave, num_bins=23, num_ceps=13)
    assert ours.shape == ref.shape == (enc.num_frames(len(wave)), 39)
    assert ours.dtype == np.float32
    scale = np.abs(ref).max(axis=0)
    assert np.all(np.abs(ours - ref) <= 1e-4 * scale + 1e-4)


def test_logmel_matches_kaldi_reference(wave: np.ndarray) -> None:
    enc = load_encoder("logmel")
    assert enc.info.dim == 80
    ours = enc.extract(wave)[0]
    ref = kaldi_reference(wave, num_bins=80, num_ceps=None)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-4)


def _kaldi_native(options, wave: np.ndarray) -> np.ndarray:
    """Features from kaldi-native-fbank (k2-fsa's C++ port of Kaldi's feature code): not our code."""
    import kaldi_native_fbank as knf

    computer = knf.OnlineMfcc(options) if isinstance(options, knf.MfccOptions) else knf.OnlineFbank(options)
    computer.accept_waveform(SR, wave.tolist())
    computer.input_finished()
    return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], dtype=np.float64)


def test_mfcc_and_logmel_match_kaldi_native_fbank(wave: np.ndarray) -> None:
    """An independent implementation: Kaldi's settings (snip_edges, Povey window, no dither,
    use_energy=False as in fairseq's dump_mfcc_feature.py)."""
    import kaldi_native_fbank as knf
    import torch

    mfcc_options = knf.MfccOptions()
    mfcc_options.frame_opts.dither = 0.0
    mfcc_options.use_energy = False
    mfcc_options.mel_opts.num_bins = 23
    mfcc_options.num_ceps = 13
    ref = _kaldi_native(mfcc_options, wave)
    ours = load_encoder("mfcc").extract(wave)[0]
    assert ref.shape == (ours.shape[0], 13)
    np.testing.assert_allclose(ours[:, :13], ref, atol=2e-4 * np.abs(ref).max(), rtol=0)
    np.testing.assert_allclose(ours[:, 13:26], deltas(torch.from_numpy(ref).float(), 2).numpy(),
                               atol=2e-4 * np.abs(ref).max(), rtol=0)

    fbank_options = knf.FbankOptions()
    fbank_options.frame_opts.dither = 0.0
    fbank_options.use_energy = False
    fbank_options.mel_opts.num_bins = 80
    ref = _kaldi_native(fbank_options, wave)
    ours = load_encoder("logmel").extract(wave)[0]
    assert ref.shape == ours.shape
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=1e-4)


def test_deltas_hand_computed() -> None:
    import torch

    x = torch.tensor([[0.0], [1.0], [4.0], [9.0], [16.0]])
    # t=0: 1*(1-0)+2*(4-0)=9 -> 0.9; t=2: 1*(9-1)+2*(16-0)=40 -> 4.0; t=3: 1*(16-4)+2*(16-1)=42 -> 4.2
    np.testing.assert_allclose(deltas(x, 2)[:, 0].numpy(), [0.9, 2.2, 4.0, 4.2, 3.1], atol=1e-6)


@pytest.mark.parametrize("name", ["mfcc", "logmel"])
def test_frame_count_formula(name: str) -> None:
    enc = load_encoder(name)
    for n in [400, 401, 559, 560, 561, 1600, 16000, 16001]:
        feats = enc.extract(np.zeros(n, dtype=np.float32) + 0.01)[0]
        assert feats.shape[0] == (n - 400) // 160 + 1 == enc.num_frames(n)
    assert enc.num_frames(399) == 0


def test_spectral_rejects_short_input_and_bad_layer() -> None:
    enc = load_encoder("mfcc")
    with pytest.raises(SpeechUnitsError, match="at least 400"):
        enc.extract(np.zeros(399, dtype=np.float32))
    with pytest.raises(SpeechUnitsError, match="out of range"):
        enc.extract(np.zeros(800, dtype=np.float32), layers=[1])


def test_batch_equals_single(wave: np.ndarray) -> None:
    enc = load_encoder("mfcc")
    waves = [wave, wave[:1000], wave[:5000]]
    batched = enc.extract_batch(waves, [0])
    for w, b in zip(waves, batched):
        np.testing.assert_array_equal(enc.extract(w)[0], b[0])
