"""The ``enhance`` probe (SUPERB's SE, as s3prl's ``enhancement_stft2``): a spectral mask from noisy speech's features.

The head reads the features of the noisy audio and gives, per input frame, ``r`` sigmoid masks over the
:data:`BINS` frequency bins of the noisy audio's STFT (:data:`STFT`: 512-point FFT, 25 ms Hann window,
10 ms hop, centred frames). ``r = 100 / frame_rate`` STFT frames fall in each input frame (1 for
MFCC/log-mel at 100 Hz, 2 for SSL models at 50 Hz: s3prl repeats such features twice; here the head
predicts both masks of the pair itself). Mask frame ``j`` goes with STFT frame ``j``; an utterance has
``min(r T, N)`` valid ones (``T`` input frames, ``N`` STFT frames). The loss is the L1 distance between
the masked noisy magnitude and the clean magnitude, counted per valid frame and bin (amplitude mask,
sigmoid, L1: what made ``enhancement_stft2`` better than the first version).

At inference the mask (its last frame repeated to ``N`` frames where the input is shorter) scales the
noisy STFT, whose phase is kept, and the inverse STFT gives the enhanced waveform at the noisy
audio's length (:func:`enhance_waveform`). :func:`enhancement_scores` compares it with the clean
reference: wide-band PESQ (ITU-T P.862.2, the ``pesq`` package), STOI (``pystoi``) and SI-SDR, each
the mean over utterances, beside the same measures of the unprocessed noisy audio (``*_noisy``).

A label is an :class:`EnhancementPair`: where the noisy audio (the corpus's utterance) and its clean
reference are, and ``r``. References come from ESPnet's ``spk1.scp`` in the corpus's data directory
(what ``speechunits synth noisy`` writes) or ``--labels``: an scp, or a folder of clean files named as
the noisy ones (VoiceBank-DEMAND's ``clean_testset_wav``).
"""
from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.sources import merged_over_sources

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class StftConfig:
    """The STFT the masks apply to (torch.stft's arguments; Hann window of ``win_length`` zero-padded to ``n_fft``)."""

    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop_length

    def record(self) -> dict[str, Any]:
        return {"n_fft": self.n_fft, "win_length": self.win_length, "hop_length": self.hop_length,
                "window": "hann", "center": True, "sample_rate": SAMPLE_RATE}


STFT = StftConfig()
BINS = STFT.bins
#: The file of a corpus's data directory that names each utterance's clean reference (ESPnet's enhancement sets).
CLEAN_SCP = "spk1.scp"
#: Below this many samples PESQ has no utterance to score (a quarter second).
PESQ_MIN_SAMPLES = SAMPLE_RATE // 4


@dataclass(frozen=True)
class EnhancementPair:
    """One utterance's label: its noisy audio (``noisy``, read with ``raw_format``), its clean reference
    (``clean``), and ``upsample``, the STFT frames per input frame."""

    noisy: str
    clean: str
    upsample: int = 1
    raw_format: Any = None


def upsample_factor(frame_rate: float) -> int:
    """STFT frames per input frame: ``100 / frame_rate``, which must be a whole number.

    Raises:
        SpeechUnitsError: an input whose frame rate does not divide 100 frames per second.
    """
    ratio = STFT.frame_rate / float(frame_rate)
    r = int(round(ratio))
    if r < 1 or abs(ratio - r) > 1e-6:
        raise SpeechUnitsError(f"task 'enhance' masks a {STFT.frame_rate:g} frames/s STFT; the input's "
                               f"{frame_rate:g} frames/s does not divide it (inputs at 100, 50, 25 ... frames/s)")
    return r


def mask_tokens(upsample: int) -> tuple[str, ...]:
    """The names of a head's outputs: ``bin0..bin256``, or ``s0.bin0 ... s1.bin256`` for ``upsample`` > 1."""
    if upsample == 1:
        return tuple(f"bin{k}" for k in range(BINS))
    return tuple(f"s{j}.bin{k}" for j in range(upsample) for k in range(BINS))


# -- audio and STFT --------------------------------------------------------------------------------

def load_audio(path: str, raw_format: Any = None) -> np.ndarray:
    """float32 ``[n]`` samples at 16 kHz."""
    from speechunits.audio import Audio

    return Audio.load(path, sample_rate=SAMPLE_RATE, raw_format=raw_format).samples


def stft(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """complex64 ``[N, BINS]`` of :data:`STFT`; ``N = 1 + n // hop``."""
    x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    window = torch.hann_window(STFT.win_length)
    spec = torch.stft(x, STFT.n_fft, STFT.hop_length, STFT.win_length, window, center=True, return_complex=True)
    return spec.transpose(0, 1)


def istft(spec: torch.Tensor, length: int) -> np.ndarray:
    """float32 ``[length]`` from complex ``[N, BINS]`` (the inverse of :func:`stft`)."""
    window = torch.hann_window(STFT.win_length)
    out = torch.istft(spec.transpose(0, 1), STFT.n_fft, STFT.hop_length, STFT.win_length, window, center=True,
                      length=length)
    return out.numpy().astype(np.float32)


def magnitude_targets(pair: EnhancementPair) -> np.ndarray:
    """float16 ``[N, 2, BINS]``: the noisy (0) and clean (1) STFT magnitudes of ``pair``.

    Raises:
        SpeechUnitsError: noisy and clean differ in length by more than one hop.
    """
    noisy, clean = load_audio(pair.noisy, pair.raw_format), load_audio(pair.clean)
    if abs(noisy.size - clean.size) > STFT.hop_length:
        raise SpeechUnitsError(f"{pair.clean}: {clean.size} samples, its noisy audio {pair.noisy} {noisy.size}; "
                               "a clean reference has the noisy audio's length")
    n = min(noisy.size, clean.size)
    mags = torch.stack([stft(noisy[:n]).abs(), stft(clean[:n]).abs()], dim=1)
    return mags.numpy().astype(np.float16)


# -- model outputs ---------------------------------------------------------------------------------

def masks_of(logits: torch.Tensor, upsample: int) -> torch.Tensor:
    """Sigmoid masks ``[B, T * upsample, BINS]`` of head outputs ``[B, T, upsample * BINS]``."""
    b, t, c = logits.shape
    if c != upsample * BINS:
        raise SpeechUnitsError(f"an enhance head gives {c} outputs per frame; {upsample} x {BINS} expected")
    return torch.sigmoid(logits.reshape(b, t * upsample, BINS))


def mask_l1(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, upsample: int) -> torch.Tensor:
    """Summed ``|mask * |noisy| - |clean||`` over the valid frames (``valid`` ``[B]``) and bins.

    ``targets``: float ``[B, N, 2, BINS]`` (noisy, clean magnitudes, zero padded)."""
    masks = masks_of(logits.float(), upsample)
    n = min(masks.shape[1], targets.shape[1])
    masks, targets = masks[:, :n], targets[:, :n].float()
    keep = (torch.arange(n, device=valid.device)[None, :] < valid[:, None]).float()[..., None]
    return ((masks * targets[:, :, 0] - targets[:, :, 1]).abs() * keep).sum()


def decode_mask(logits: np.ndarray, num_outputs: int) -> np.ndarray:
    """float32 ``[T * r, BINS]`` masks of one utterance's head outputs ``[T, r * BINS]``."""
    upsample = num_outputs // BINS
    return masks_of(torch.as_tensor(np.asarray(logits, dtype=np.float32))[None], upsample)[0].numpy()


def enhance_waveform(noisy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The noisy waveform ``[n]`` with ``mask`` ``[M, BINS]`` applied to its STFT magnitude (noisy phase),
    ``[n]``; the mask is cut, or its last frame repeated, to the STFT's ``N`` frames."""
    spec = stft(noisy)
    m = np.asarray(mask, dtype=np.float32)
    if m.shape[0] == 0:
        m = np.ones((1, BINS), dtype=np.float32)
    if m.shape[0] < spec.shape[0]:
        m = np.concatenate([m, np.repeat(m[-1:], spec.shape[0] - m.shape[0], axis=0)])
    return istft(spec * torch.as_tensor(m[: spec.shape[0]]), len(noisy))


# -- metrics ---------------------------------------------------------------------------------------

def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB) of ``estimate`` against ``reference``, both zero-meaned
    (Le Roux et al. 2019): ``10 log10(|a s|^2 / |a s - e|^2)`` with ``a = <e, s> / |s|^2``."""
    s = np.asarray(reference, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    n = min(s.size, e.size)
    s, e = s[:n] - s[:n].mean(), e[:n] - e[:n].mean()
    energy = float(np.dot(s, s))
    if energy == 0.0:
        raise SpeechUnitsError("SI-SDR: the reference is silent")
    target = float(np.dot(e, s)) / energy * s
    error = float(np.sum((target - e) ** 2))
    return math.inf if error == 0.0 else 10.0 * math.log10(float(np.sum(target ** 2)) / error)


def _judges() -> tuple[Any, Any]:
    try:
        from pesq import pesq
        from pystoi import stoi
    except ImportError as error:
        raise SpeechUnitsError("task 'enhance' scores with PESQ and STOI: pip install 'speechunits[eval]' "
                               f"(the pesq and pystoi packages; {error})") from None
    return pesq, stoi


def check_judges() -> None:
    """SpeechUnitsError unless PESQ and STOI can be computed (checked before a probe trains)."""
    _judges()


def audio_scores(clean: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """``pesq`` (wide band; NaN where PESQ finds no utterance), ``stoi`` and ``si_sdr`` of ``estimate``."""
    pesq, stoi = _judges()
    n = min(clean.size, estimate.size)
    clean, estimate = clean[:n].astype(np.float64), estimate[:n].astype(np.float64)
    quality = math.nan
    if n >= PESQ_MIN_SAMPLES:
        try:
            quality = float(pesq(SAMPLE_RATE, clean, estimate, "wb"))
        except Exception as error:  # pesq raises its own errors for clips without speech
            log.debug("PESQ failed: %s", error)
    return {"pesq": quality, "stoi": float(stoi(clean, estimate, SAMPLE_RATE, extended=False)),
            "si_sdr": si_sdr(clean, estimate)}


@functools.lru_cache(maxsize=4096)
def _noisy_scores(noisy: str, clean: str, raw_format: Any) -> tuple[tuple[str, float], ...]:
    """The measures of the unprocessed noisy audio (cached: dev is scored at every evaluation)."""
    reference, mixture = load_audio(clean), load_audio(noisy, raw_format)
    return tuple(audio_scores(reference, mixture).items())


def enhancement_scores(pairs: Sequence[EnhancementPair], masks: Sequence[np.ndarray]) -> dict[str, float]:
    """Means over utterances of :func:`audio_scores` of the enhanced audio, and ``*_noisy`` of the noisy
    input; PESQ over the utterances it could score (``pesq_unscored`` counts the others)."""
    rows, noisy_rows = [], []
    for pair, mask in zip(pairs, masks):
        reference, mixture = load_audio(pair.clean), load_audio(pair.noisy, pair.raw_format)
        rows.append(audio_scores(reference, enhance_waveform(mixture, mask)))
        noisy_rows.append(dict(_noisy_scores(pair.noisy, pair.clean, pair.raw_format)))
    if not rows:
        raise SpeechUnitsError("enhance: nothing to score")
    out: dict[str, float] = {}
    for suffix, table in (("", rows), ("_noisy", noisy_rows)):
        for name in ("pesq", "stoi", "si_sdr"):
            values = [r[name] for r in table if not math.isnan(r[name])]
            out[name + suffix] = float(np.mean(values)) if values else math.nan
    out["pesq_unscored"] = float(sum(1 for r in rows if math.isnan(r["pesq"])))
    return out


def write_enhanced(out_dir: str | os.PathLike[str], pairs: Mapping[str, EnhancementPair],
                   masks: Mapping[str, np.ndarray]) -> int:
    """Write ``OUT/<utt>.wav`` (16 kHz, 16-bit) of each enhanced utterance; how many."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for utt, mask in masks.items():
        pair = pairs[utt]
        audio = enhance_waveform(load_audio(pair.noisy, pair.raw_format), mask)
        target = out / f"{utt}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(target, np.clip(audio, -1.0, 32767 / 32768), SAMPLE_RATE, subtype="PCM_16")
        written += 1
    return written


# -- labels ----------------------------------------------------------------------------------------

@merged_over_sources
def read_clean_references(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt: clean audio path}`` from an scp (``utt path``, ESPnet's ``spk1.scp``) or a folder of audio
    files (ids: paths under it without extension, as a corpus folder's).

    Raises:
        SpeechUnitsError: neither an scp nor a folder with audio.
    """
    from speechunits.audio import AUDIO_EXTENSIONS
    from speechunits.layouts.kaldi import iter_scp

    root = Path(path)
    if root.is_dir():
        found = {str(p.relative_to(root).with_suffix("")): str(p) for p in sorted(root.rglob("*"))
                 if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS}
        if not found:
            raise SpeechUnitsError(f"{path}: no audio file under it (clean references expected)")
        return found
    if not root.is_file():
        raise SpeechUnitsError(f"{path}: no such clean-reference scp or folder")
    return {utt: audio for utt, audio in iter_scp(root)}


def enhancement_pairs(clean: Mapping[str, str], audio: Mapping[str, Any],
                      frame_rate: float) -> dict[str, EnhancementPair]:
    """The label of every utterance of ``audio`` (``{utt: (path, raw_format)}``) that ``clean`` names."""
    r = upsample_factor(frame_rate)
    return {utt: EnhancementPair(str(audio[utt][0]), str(path), r, audio[utt][1]) for utt, path in clean.items()
            if utt in audio}
