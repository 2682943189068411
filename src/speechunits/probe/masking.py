"""The ``enhance`` and ``separate`` probes (SUPERB's SE and SS, as s3prl's ``enhancement_stft2`` and
``separation_stft2``): spectral masks from the features of noisy or mixed speech.

The head reads the features of the noisy audio or the mixture and gives, per input frame, ``r x S``
sigmoid masks over the :data:`BINS` frequency bins of that audio's STFT (:data:`STFT`: 512-point FFT,
25 ms Hann window, 10 ms hop, centred frames): ``S`` = 1 (``enhance``: the clean speech) or the number of
sources (``separate``: each speaker). ``r = 100 / frame_rate`` STFT frames fall in each input frame (1
for MFCC/log-mel at 100 Hz, 2 for SSL models at 50 Hz: s3prl repeats such features twice; here the head
predicts both frames' masks itself). Mask frame ``j`` goes with STFT frame ``j``; an utterance has
``min(r T, N)`` valid ones (``T`` input frames, ``N`` STFT frames). The loss is the L1 distance between
each masked mixture magnitude and its reference's magnitude, counted per valid frame, bin and source,
under the order of the sources that makes it least per utterance (permutation-invariant training; one
order when ``S`` = 1). Sigmoid amplitude masks with L1 are what made s3prl's second versions better.

At inference each mask (its last frame repeated to ``N`` frames where the input is shorter) scales the
mixture's STFT, whose phase is kept, and the inverse STFT gives audio at the mixture's length
(:func:`apply_mask`). ``enhance`` is scored by :func:`enhancement_scores` against the clean reference:
wide-band PESQ (ITU-T P.862.2, the ``pesq`` package), STOI (``pystoi``) and SI-SDR, beside the same
measures of the unprocessed noisy audio (``*_noisy``). ``separate`` is scored by :func:`separation_scores`:
SI-SDR improvement (SUPERB's SS metric) under the best order of the sources.

A label is a :class:`MaskLabel`: where the mixture (the corpus's utterance) and its references are,
and ``r``. References come from ESPnet's ``spk1.scp`` (``spk2.scp`` ... for ``separate``) in the corpus's
data directory (what ``speechunits synth noisy`` and ``synth mix --sources`` write) or ``--labels``: an
scp (its ``spkK.scp`` siblings for ``separate``), or for ``enhance`` a folder of clean files named as
the noisy ones (VoiceBank-DEMAND's ``clean_testset_wav``).
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import re
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
#: The scp of a data directory that names each utterance's first reference (ESPnet's enhancement and
#: separation sets); ``spk2.scp`` ... name the other sources.
FIRST_REFERENCE = "spk1.scp"
#: The most sources a ``separate`` probe may have (PIT tries all ``S!`` orders).
MAX_SOURCES = 4
#: Below this many samples PESQ has no utterance to score (a quarter second).
PESQ_MIN_SAMPLES = SAMPLE_RATE // 4
#: References per utterance of each masking task (None: two or more, as the labels say).
SOURCES = {"enhance": 1, "separate": None}


@dataclass(frozen=True)
class MaskLabel:
    """One utterance's label: its mixture (the noisy audio, read with ``raw_format``), its
    ``references`` (the clean speech, or each source), and ``upsample``, the STFT frames per input frame."""

    mixture: str
    references: tuple[str, ...]
    upsample: int = 1
    raw_format: Any = None

    @property
    def sources(self) -> int:
        return len(self.references)


def upsample_factor(frame_rate: float) -> int:
    """STFT frames per input frame: ``100 / frame_rate``, which must be a whole number.

    Raises:
        SpeechUnitsError: an input whose frame rate does not divide 100 frames per second.
    """
    ratio = STFT.frame_rate / float(frame_rate)
    r = int(round(ratio))
    if r < 1 or abs(ratio - r) > 1e-6:
        raise SpeechUnitsError(f"a masking probe masks a {STFT.frame_rate:g} frames/s STFT; the input's "
                               f"{frame_rate:g} frames/s does not divide it (inputs at 100, 50, 25 ... frames/s)")
    return r


def mask_tokens(upsample: int, sources: int) -> tuple[str, ...]:
    """The names of a head's outputs per input frame, in order: ``t{j}.s{k}.b{bin}`` (STFT frame ``j`` of
    the input frame, source ``k``)."""
    return tuple(f"t{j}.s{k}.b{b}" for j in range(upsample) for k in range(sources) for b in range(BINS))


def mask_layout(tokens: Sequence[str]) -> tuple[int, int]:
    """``(upsample, sources)`` of a head whose outputs are named ``tokens`` (:func:`mask_tokens`)."""
    match = re.fullmatch(r"t(\d+)\.s(\d+)\.b(\d+)", str(tokens[-1])) if tokens else None
    if match is None or int(match.group(3)) != BINS - 1:
        raise SpeechUnitsError(f"not a mask head's outputs (last {tokens[-1] if tokens else None!r})")
    layout = int(match.group(1)) + 1, int(match.group(2)) + 1
    if len(tokens) != layout[0] * layout[1] * BINS:
        raise SpeechUnitsError(f"a mask head with {len(tokens)} outputs: {layout[0]} x {layout[1]} x {BINS} expected")
    return layout


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


def magnitude_targets(label: MaskLabel) -> np.ndarray:
    """float16 ``[N, 1 + S, BINS]``: the STFT magnitudes of the mixture (0) and of each reference.

    Raises:
        SpeechUnitsError: a reference whose length differs from the mixture's by more than one hop.
    """
    mixture = load_audio(label.mixture, label.raw_format)
    references = [load_audio(path) for path in label.references]
    for path, reference in zip(label.references, references):
        if abs(mixture.size - reference.size) > STFT.hop_length:
            raise SpeechUnitsError(f"{path}: {reference.size} samples, its mixture {label.mixture} {mixture.size}; "
                                   "a reference has the length of the noisy audio or mixture")
    n = min([mixture.size] + [r.size for r in references])
    mags = torch.stack([stft(x[:n]).abs() for x in [mixture] + references], dim=1)
    return mags.numpy().astype(np.float16)


# -- model outputs ---------------------------------------------------------------------------------

def masks_of(logits: torch.Tensor, upsample: int, sources: int = 1) -> torch.Tensor:
    """Sigmoid masks ``[B, T * upsample, sources, BINS]`` of head outputs ``[B, T, upsample * sources * BINS]``."""
    b, t, c = logits.shape
    if c != upsample * sources * BINS:
        raise SpeechUnitsError(f"a mask head gives {c} outputs per frame; {upsample} x {sources} x {BINS} expected")
    return torch.sigmoid(logits.reshape(b, t * upsample, sources, BINS))


def pit_mask_l1(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, upsample: int) -> torch.Tensor:
    """Summed ``|mask_k * |mixture| - |reference_pi(k)||`` over the valid frames (``valid`` ``[B]``), bins and
    sources, the order ``pi`` of the references that makes it least chosen per utterance.

    ``targets``: float ``[B, N, 1 + S, BINS]`` (mixture then reference magnitudes, zero padded)."""
    sources = targets.shape[2] - 1
    masks = masks_of(logits.float(), upsample, sources)
    n = min(masks.shape[1], targets.shape[1])
    masks, targets = masks[:, :n], targets[:, :n].float()
    keep = (torch.arange(n, device=valid.device)[None, :] < valid[:, None]).float()[..., None]  # [B, n, 1]
    estimates = masks * targets[:, :, :1]  # [B, n, S, F]
    costs = [sum(((estimates[:, :, k] - targets[:, :, 1 + j]).abs() * keep).sum(dim=(1, 2))
                 for k, j in enumerate(order)) for order in itertools.permutations(range(sources))]
    return torch.stack(costs, dim=1).min(dim=1).values.sum()  # type: ignore[arg-type]


def decode_mask(logits: np.ndarray, tokens: Sequence[str]) -> np.ndarray:
    """float32 ``[T * r, S, BINS]`` masks of one utterance's head outputs ``[T, r * S * BINS]``."""
    upsample, sources = mask_layout(tokens)
    return masks_of(torch.as_tensor(np.asarray(logits, dtype=np.float32))[None], upsample, sources)[0].numpy()


def apply_mask(mixture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mixture`` ``[n]`` with ``mask`` ``[M, BINS]`` applied to its STFT magnitude (mixture phase), ``[n]``;
    the mask is cut, or its last frame repeated, to the STFT's ``N`` frames."""
    spec = stft(mixture)
    m = np.asarray(mask, dtype=np.float32)
    if m.shape[0] == 0:
        m = np.ones((1, BINS), dtype=np.float32)
    if m.shape[0] < spec.shape[0]:
        m = np.concatenate([m, np.repeat(m[-1:], spec.shape[0] - m.shape[0], axis=0)])
    return istft(spec * torch.as_tensor(m[: spec.shape[0]]), len(mixture))


def estimates_of(mixture: np.ndarray, masks: np.ndarray) -> list[np.ndarray]:
    """Each source's estimate ``[n]`` from the masks ``[M, S, BINS]`` of the ``mixture`` ``[n]``."""
    return [apply_mask(mixture, masks[:, k]) for k in range(masks.shape[1])]


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


def check_judges(task: str) -> None:
    """SpeechUnitsError unless ``task``'s metrics can be computed (checked before a probe trains)."""
    if task == "enhance":
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
    return tuple(audio_scores(load_audio(clean), load_audio(noisy, raw_format)).items())


def enhancement_scores(labels: Sequence[MaskLabel], masks: Sequence[np.ndarray]) -> dict[str, float]:
    """Means over utterances of :func:`audio_scores` of the enhanced audio, and ``*_noisy`` of the noisy
    input; PESQ over the utterances it could score (``pesq_unscored`` counts the others)."""
    rows, noisy_rows = [], []
    for label, mask in zip(labels, masks):
        (estimate,) = estimates_of(load_audio(label.mixture, label.raw_format), mask)
        rows.append(audio_scores(load_audio(label.references[0]), estimate))
        noisy_rows.append(dict(_noisy_scores(label.mixture, label.references[0], label.raw_format)))
    if not rows:
        raise SpeechUnitsError("enhance: nothing to score")
    out: dict[str, float] = {}
    for suffix, table in (("", rows), ("_noisy", noisy_rows)):
        for name in ("pesq", "stoi", "si_sdr"):
            values = [r[name] for r in table if not math.isnan(r[name])]
            out[name + suffix] = float(np.mean(values)) if values else math.nan
    out["pesq_unscored"] = float(sum(1 for r in rows if math.isnan(r["pesq"])))
    return out


def best_order_si_sdr(references: Sequence[np.ndarray],
                      estimates: Sequence[np.ndarray]) -> tuple[float, tuple[int, ...]]:
    """The mean SI-SDR over sources under the order of the estimates that makes it largest, and that order
    (``order[k]``: the estimate of reference ``k``)."""
    pairs = [[si_sdr(r, e) for e in estimates] for r in references]  # each pair once, not once per order
    best = max(itertools.permutations(range(len(estimates))),
               key=lambda order: sum(pairs[j][k] for j, k in enumerate(order)))
    return float(np.mean([pairs[j][k] for j, k in enumerate(best)])), best


def separation_scores(labels: Sequence[MaskLabel], masks: Sequence[np.ndarray]) -> dict[str, float]:
    """``si_sdri`` (SUPERB's SS metric: the separated sources' SI-SDR, best order, minus the mixture's
    SI-SDR against each source), ``si_sdr`` and ``si_sdr_mixture``, each the mean over utterances of
    the mean over sources."""
    rows = []
    for label, mask in zip(labels, masks):
        references = [load_audio(path) for path in label.references]
        mixture = load_audio(label.mixture, label.raw_format)
        separated, _ = best_order_si_sdr(references, estimates_of(mixture, mask))
        baseline = float(np.mean([si_sdr(r, mixture) for r in references]))
        rows.append((separated - baseline, separated, baseline))
    if not rows:
        raise SpeechUnitsError("separate: nothing to score")
    values = np.asarray(rows, dtype=np.float64).mean(axis=0)
    return {"si_sdri": float(values[0]), "si_sdr": float(values[1]), "si_sdr_mixture": float(values[2])}


def write_estimates(out_dir: str | os.PathLike[str], labels: Mapping[str, MaskLabel],
                    masks: Mapping[str, np.ndarray]) -> int:
    """Write each scored utterance's estimates (16 kHz, 16-bit): ``OUT/<utt>.wav`` for one source,
    ``OUT/s1/<utt>.wav``, ``OUT/s2/<utt>.wav`` ... (in the order of the head's masks) for several; how many
    utterances."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for utt, mask in masks.items():
        estimates = estimates_of(load_audio(labels[utt].mixture, labels[utt].raw_format), mask)
        for k, audio in enumerate(estimates):
            target = out / f"{utt}.wav" if len(estimates) == 1 else out / f"s{k + 1}" / f"{utt}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, np.clip(audio, -1.0, 32767 / 32768), SAMPLE_RATE, subtype="PCM_16")
    return len(masks)


# -- labels ----------------------------------------------------------------------------------------

@merged_over_sources
def read_references(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{utt: reference audio path}`` from an scp (``utt path``, ESPnet's ``spk1.scp``) or a folder of audio
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
            raise SpeechUnitsError(f"{path}: no audio file under it (references expected)")
        return found
    if not root.is_file():
        raise SpeechUnitsError(f"{path}: no such reference scp or folder")
    return {utt: audio for utt, audio in iter_scp(root)}


def source_references(first: str | os.PathLike[str]) -> list[str]:
    """``first`` (a ``spk1.scp`` or a pattern over several) and its existing ``spk2.scp``, ``spk3.scp`` ... siblings."""
    from speechunits.sources import expand_source

    text = str(first)
    if FIRST_REFERENCE not in text:
        raise SpeechUnitsError(f"task 'separate' reads each source's scp: {FIRST_REFERENCE}, spk2.scp, ... "
                               f"(got {first})")
    found = [text]
    for k in range(2, MAX_SOURCES + 2):
        candidate = text.replace(FIRST_REFERENCE, f"spk{k}.scp")
        if not all(Path(p).is_file() for p in (expand_source(candidate) or [candidate])):
            break
        found.append(candidate)
    return found


def mask_labels(task: str, references: str | os.PathLike[str], corpus_ids: Sequence[str],
                audio: Mapping[str, Any], frame_rate: float) -> tuple[dict[str, MaskLabel], dict[str, str]]:
    """``({utt: MaskLabel}, the first reference table)`` for the utterances of ``audio`` (``{utt: (path,
    raw_format)}``) that every reference table names (tables keyed by the corpus's ids through
    :func:`~speechunits.id_match.rekey`). ``enhance``: ``references`` is one scp or folder; ``separate``:
    a ``spk1.scp`` whose siblings name the other sources (:func:`source_references`).

    Raises:
        SpeechUnitsError: a ``separate`` task with fewer than 2 or more than :data:`MAX_SOURCES` sources.
    """
    from speechunits.id_match import rekey

    r = upsample_factor(frame_rate)
    paths = [str(references)] if SOURCES[task] == 1 else source_references(references)
    if SOURCES[task] is None and not 2 <= len(paths) <= MAX_SOURCES:
        raise SpeechUnitsError(f"task 'separate': {len(paths)} source scp(s) beside {references} "
                               f"({', '.join(paths)}); 2 to {MAX_SOURCES} expected")
    tables = [read_references(p) for p in paths]
    keyed = [rekey(t, corpus_ids, p) for t, p in zip(tables, paths)]
    labels = {utt: MaskLabel(str(audio[utt][0]), tuple(t[utt] for t in keyed), r, audio[utt][1])
              for utt in corpus_ids if utt in audio and all(utt in t for t in keyed)}
    return labels, tables[0]
