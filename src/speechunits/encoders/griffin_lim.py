"""Audio from Kaldi-style log-mel (:mod:`speechunits.encoders.spectral`) by Griffin-Lim: a preview.

This is a low-quality stand-in until a unit vocoder exists: the mel filterbank discards most
spectral detail and Griffin-Lim invents the phase. Steps, for log-mel ``[F, B]`` of the front end
``config`` (frame ``i`` = samples ``[i*hop, i*hop + win)``, snip_edges):

1. mel energies ``exp(log_mel)`` back to a power spectrum ``[F, n_fft/2 + 1]``: least squares
   through the filterbank's pseudo-inverse, negative values set to 0;
2. the pre-emphasis the front end applied is divided out of the magnitude
   (``|1 - a e^{-iw}|``), so the result is the signal itself, not its pre-emphasised version;
3. fast Griffin-Lim (Perraudin et al. 2013, momentum 0.99) on exactly the front end's frames:
   analysis = Povey window on frame ``i``, zero-padded ``rfft`` to ``n_fft`` (``torch.fft``, as
   the front end does); synthesis = least-squares overlap-add (``irfft``, window, ``fold``,
   divided by the summed squared window).

``torch.istft`` cannot do step 3's synthesis: without centring it refuses windows whose
overlap-added square is zero at the edges, and the Povey window is zero at both ends.
The output has ``(F - 1) * hop + win`` samples: the shortest signal with ``F`` frames.
"""
from __future__ import annotations

import numpy as np
import torch

from speechunits.encoders.spectral import SpectralConfig, mel_filterbank
from speechunits.errors import SpeechUnitsError

#: Momentum of fast Griffin-Lim.
MOMENTUM = 0.99


def povey_window(config: SpectralConfig) -> torch.Tensor:
    """The front end's analysis window float32 ``[win]`` (``hann(periodic=False) ** window_power``)."""
    return torch.hann_window(config.win_length, periodic=False, dtype=torch.float64).pow(config.window_power).float()


def mel_to_power(log_mel: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    """Least-squares non-negative power spectrum ``[F, n_fft/2 + 1]`` of log-mel ``[F, B]``."""
    banks = mel_filterbank(config.num_mel_bins, config.n_fft, config.sample_rate, config.low_freq_hz,
                           config.sample_rate / 2)  # [B, n_fft/2 + 1]
    inverse = torch.from_numpy(np.linalg.pinv(banks.T).astype(np.float32))  # [B, n_fft/2 + 1]
    return (log_mel.exp() @ inverse).clamp_min(0.0)


def _frames_spectrum(signal: torch.Tensor, window: torch.Tensor, config: SpectralConfig) -> torch.Tensor:
    frames = signal.unfold(0, config.win_length, config.hop_length) * window
    return torch.fft.rfft(frames, n=config.n_fft)


def _overlap_add(spectrum: torch.Tensor, window: torch.Tensor, envelope: torch.Tensor,
                 config: SpectralConfig, length: int) -> torch.Tensor:
    frames = torch.fft.irfft(spectrum, n=config.n_fft)[:, : config.win_length] * window  # [F, win]
    summed = torch.nn.functional.fold(frames.T.unsqueeze(0), (1, length), (1, config.win_length),
                                      stride=(1, config.hop_length)).reshape(length)
    return torch.where(envelope > 1e-8, summed / envelope.clamp_min(1e-8), torch.zeros_like(summed))


def griffin_lim(log_mel: np.ndarray | torch.Tensor, config: SpectralConfig, *, iters: int = 32,
                seed: int = 0) -> np.ndarray:
    """A waveform float32 ``[(F - 1) * hop + win]`` whose log-mel approximates ``log_mel`` ``[F, B]``.

    Deterministic for ``seed`` (the initial random phase).

    Raises:
        SpeechUnitsError: not ``[F, num_mel_bins]``, no frame, non-finite values or ``iters < 0``.
    """
    mel = torch.as_tensor(np.asarray(log_mel, dtype=np.float32))
    if mel.dim() != 2 or mel.shape[1] != config.num_mel_bins or mel.shape[0] < 1:
        raise SpeechUnitsError(f"griffin_lim: expected log-mel [frames >= 1, {config.num_mel_bins}], "
                               f"got {tuple(mel.shape)}")
    if not torch.isfinite(mel).all():
        raise SpeechUnitsError("griffin_lim: log-mel contains NaN or Inf")
    if iters < 0:
        raise SpeechUnitsError(f"griffin_lim: iters must be >= 0, got {iters}")
    num_frames = mel.shape[0]
    length = (num_frames - 1) * config.hop_length + config.win_length
    window = povey_window(config)
    bins = torch.arange(config.n_fft // 2 + 1, dtype=torch.float64)
    emphasis = (1 - config.preemphasis * torch.exp(-2j * torch.pi * bins / config.n_fft)).abs().float()
    magnitude = mel_to_power(mel, config).sqrt() / emphasis  # [F, n_fft/2 + 1]
    envelope = torch.nn.functional.fold(
        window.pow(2).expand(num_frames, -1).T.unsqueeze(0), (1, length), (1, config.win_length),
        stride=(1, config.hop_length)).reshape(length)
    gen = torch.Generator().manual_seed(int(seed))
    phase = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=gen, dtype=torch.float64)).to(torch.complex64)
    with torch.inference_mode():
        signal = _overlap_add(magnitude * phase, window, envelope, config, length)
        previous = torch.zeros_like(magnitude, dtype=torch.complex64)
        for _ in range(iters):
            spectrum = _frames_spectrum(signal, window, config)
            accelerated = spectrum + MOMENTUM * (spectrum - previous)
            previous = spectrum
            angle = accelerated / accelerated.abs().clamp_min(1e-12)
            signal = _overlap_add(magnitude * angle, window, envelope, config, length)
    return signal.numpy().astype(np.float32, copy=False)
