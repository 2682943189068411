"""dMel (Bai et al. 2024, "dMel: Speech Tokenization made Simple"): discretised log-mel tokens.

A weight-free tokenizer: the ``logmel`` encoder (Kaldi-style 80-channel log-mel, 100 Hz, see
:mod:`speechunits.encoders.spectral`) followed by a scalar quantiser applied to every channel
of every frame. The value range ``[lo, hi]`` is cut into ``2**bits`` bins of width
``w = (hi - lo) / 2**bits``; a value ``x`` becomes

    token(x) = clip(floor((x - lo) / w), 0, 2**bits - 1)        (float64 arithmetic)

and a token ``j`` decodes to its bin centre ``lo + (j + 0.5) w`` (float32). Every value in
``[lo, hi]`` therefore decodes within ``w / 2`` of itself; values outside are clipped to the
first/last bin. (The paper places its codebook values at ``lo + j (hi - lo) / 2**bits``, the
bins' lower edges; centres halve the worst-case error and change nothing else.) A frame gives
one token per channel: 80 parallel streams of vocabulary ``2**bits``.

The paper takes ``[lo, hi]`` as the min/max of log-mel over its training data. Here the range
is either given or that min/max computed on a corpus (:func:`corpus_range`), and it is
recorded: the codebook directory (``kind: "dmel"``) stores ``bits`` and ``range`` in
``codebook.json`` and the bin centres as ``centroids`` float32 ``[2**bits, 80]`` (column ``c`` =
channel ``c``'s levels), whose SHA-256 identifies the tokenizer. :meth:`DMel.from_meta` rebuilds
it from the JSON alone (what a unit store records) and checks that SHA-256, so decoding is exact
and units of another range or bit depth are refused.

Decoding to audio (:meth:`DMel.to_audio`) runs Griffin-Lim on the decoded log-mel
(:mod:`speechunits.encoders.griffin_lim`): a low-quality preview until a unit vocoder exists.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import Codebook, encoder_meta

log = logging.getLogger(__name__)

#: The front end dMel quantises (80 log-mel channels, 16 kHz, 100 Hz frames).
DMEL_ENCODER = "logmel"
#: Bits per channel (the paper's N = 4: 16 levels).
DEFAULT_BITS = 4
#: Default value range: from just below the front end's floor (log of float32 eps = -15.94,
#: digital silence) to 8.0 (the loudest value on 20 LibriSpeech utterances is 7.8).
DEFAULT_RANGE = (-16.0, 8.0)
MAX_BITS = 8


def dmel_levels(bits: int, lo: float, hi: float, channels: int) -> torch.Tensor:
    """Bin centres float32 ``[2**bits, channels]`` (every column the same)."""
    check_params(bits, lo, hi)
    n = 1 << bits
    width = (hi - lo) / n
    centres = lo + (np.arange(n, dtype=np.float64) + 0.5) * width
    return torch.from_numpy(np.repeat(centres.astype(np.float32)[:, None], channels, axis=1))


def check_params(bits: int, lo: float, hi: float, source: str = "dmel") -> None:
    """Refuse a bit depth outside 1..MAX_BITS or an empty or non-finite range (SpeechUnitsError)."""
    if not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise SpeechUnitsError(f"{source}: bits must be an integer in 1..{MAX_BITS}, got {bits!r}")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise SpeechUnitsError(f"{source}: range must be finite with min < max, got [{lo}, {hi}]")


class DMel(Codebook):
    """The dMel tokenizer's quantiser: ``centroids`` are the bin centres ``[2**bits, channels]``.

    :attr:`k` is the vocabulary of one stream (``2**bits``), :attr:`dim` and :attr:`streams` the
    number of channels. :meth:`assign_streams` gives ``[N, channels]`` tokens; :meth:`assign`
    (one id per frame) is refused: dMel units are multi-stream.
    """

    kind = "dmel"

    def __init__(self, centroids: torch.Tensor | np.ndarray, meta: dict[str, Any] | None = None,
                 norm_mean: torch.Tensor | None = None, norm_std: torch.Tensor | None = None):
        if norm_mean is not None or norm_std is not None:
            raise SpeechUnitsError("a dMel codebook has no normalisation")
        super().__init__(centroids, meta)
        bits, value_range = self.meta.get("bits"), self.meta.get("range")
        if not (isinstance(value_range, (list, tuple)) and len(value_range) == 2):
            raise SpeechUnitsError(f"dmel: codebook.json 'range' must be [min, max], got {value_range!r}")
        lo, hi = float(value_range[0]), float(value_range[1])
        check_params(bits, lo, hi)
        expected = dmel_levels(bits, lo, hi, self.dim)
        if self.centroids.shape != expected.shape or not torch.equal(self.centroids, expected):
            raise SpeechUnitsError(f"dmel: the stored levels {tuple(self.centroids.shape)} are not the bin centres "
                                   f"of {bits} bits on [{lo}, {hi}] for {self.dim} channels")
        self.bits, self.lo, self.hi = int(bits), lo, hi
        self.meta["range"] = [lo, hi]
        self.meta["streams"] = self.dim

    @classmethod
    def create(cls, encoder_info: Any, *, bits: int = DEFAULT_BITS,
               value_range: tuple[float, float] = DEFAULT_RANGE, range_source: str = "fixed") -> "DMel":
        """The dMel tokenizer for ``encoder_info`` (a ``logmel`` encoder's), ``bits`` per channel on
        ``value_range``; ``range_source`` is recorded (``"fixed"`` or ``"corpus min/max"``)."""
        lo, hi = float(value_range[0]), float(value_range[1])
        check_params(bits, lo, hi)
        meta = {**encoder_meta(encoder_info), "layer": 0, "bits": int(bits), "range": [lo, hi],
                "range_source": range_source, "init": "dmel"}
        return cls(dmel_levels(bits, lo, hi, int(encoder_info.dim)), meta)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], source: str = "dmel") -> "DMel":
        """Rebuild from a codebook.json dict alone (e.g. the one a unit store records); the rebuilt
        levels must have the recorded SHA-256 (SpeechUnitsError otherwise)."""
        if meta.get("kind") != cls.kind:
            raise SpeechUnitsError(f"{source}: holds units of a {meta.get('kind') or 'kmeans'!r} codebook, not dMel "
                                   "(only dMel units decode without a vocoder)")
        value_range = meta.get("range") or [None, None]
        try:
            levels = dmel_levels(meta.get("bits"), float(value_range[0]), float(value_range[1]), int(meta["dim"]))
        except (TypeError, ValueError, KeyError) as exc:
            raise SpeechUnitsError(f"{source}: incomplete dMel metadata ({exc})") from None
        dmel = cls(levels, dict(meta))
        if dmel.sha256 != meta.get("sha256"):
            raise SpeechUnitsError(f"{source}: the dMel levels rebuilt from bits/range have sha256 "
                                   f"{dmel.sha256[:12]}..., not the recorded {str(meta.get('sha256'))[:12]}...")
        return dmel

    @property
    def streams(self) -> int:  # type: ignore[override]
        return self.dim

    @property
    def bin_width(self) -> float:
        return (self.hi - self.lo) / (1 << self.bits)

    def assign(self, features: np.ndarray | torch.Tensor, **_: Any) -> np.ndarray:
        raise SpeechUnitsError(f"dmel gives {self.streams} tokens per frame, not one id: use assign_streams() "
                               "or a UnitTokenizer (multi-stream units)")

    def assign_streams(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tokens int64 ``[N, channels]`` of log-mel frames ``[N, channels]``."""
        x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SpeechUnitsError(f"features of shape {x.shape} do not match dMel's {self.dim} channels")
        if not np.isfinite(x).all():
            raise SpeechUnitsError("dmel: features contain NaN or Inf")
        scaled = (x.astype(np.float64) - self.lo) / ((self.hi - self.lo) / (1 << self.bits))
        return np.clip(np.floor(scaled), 0, (1 << self.bits) - 1).astype(np.int64)

    def decode(self, tokens: Any) -> np.ndarray:
        """Log-mel float32 ``[T, channels]``: the bin centre of every token.

        Args:
            tokens: int ``[T, channels]`` or :class:`~speechunits.units.multistream.MultiStreamUnits`
                (whose vocabulary must be this codebook's ``2**bits``).
        """
        vocab = getattr(tokens, "vocab_size", None)
        if vocab is not None and int(vocab) != self.k:
            raise SpeechUnitsError(f"dmel: units have a vocabulary of {vocab}, this dMel has {self.k} levels "
                                   f"({self.bits} bits): they come from another dMel")
        ids = np.asarray(getattr(tokens, "ids", tokens))
        if ids.ndim != 2 or ids.shape[1] != self.dim:
            raise SpeechUnitsError(f"dmel: tokens of shape {ids.shape} do not match [T, {self.dim}]")
        if ids.size and (ids.min() < 0 or ids.max() >= self.k):
            raise SpeechUnitsError(f"dmel: tokens must lie in [0, {self.k}), got [{ids.min()}, {ids.max()}]")
        levels = self.centroids.numpy()
        return np.take_along_axis(levels, ids.astype(np.int64), axis=0) if ids.size \
            else np.zeros((0, self.dim), np.float32)

    def to_audio(self, log_mel: np.ndarray, *, iters: int = 32, seed: int = 0) -> np.ndarray:
        """A Griffin-Lim preview float32 ``[(T - 1) * hop + win]`` at the front end's rate."""
        from speechunits.encoders.griffin_lim import griffin_lim
        from speechunits.encoders.spectral import BUILTIN_SPECTRAL

        return griffin_lim(log_mel, BUILTIN_SPECTRAL[DMEL_ENCODER], iters=iters, seed=seed)


def corpus_range(blocks: Iterable[tuple[str, np.ndarray]]) -> tuple[tuple[float, float], int]:
    """``((min, max), frames)`` of log-mel blocks ``(source, [n, channels])`` (the paper's range)."""
    lo, hi, frames = np.inf, -np.inf, 0
    for _, block in blocks:
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
            frames += int(block.shape[0])
    if frames == 0:
        raise SpeechUnitsError("dmel: no frames to compute a value range from")
    return (lo, hi), frames


@dataclass(frozen=True)
class DecodeReport:
    """What :func:`decode_store` wrote: utterances, frames, and whether audio previews were made."""

    utterances: int
    frames: int
    audio: bool
    out_dir: Path


def decode_store(store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, audio: bool = False,
                 iters: int = 32, expected_sha256: str | None = None) -> DecodeReport:
    """Decode a dMel unit store to a features directory of log-mel (``layer0.npy`` etc., readable by
    ``fit --from-features`` and ``abx``) and, with ``audio``, Griffin-Lim previews ``wavs/{id}.wav``.

    Args:
        expected_sha256: refuse a store made by another dMel (other range or bit depth).

    Raises:
        SpeechUnitsError: not a dMel store, another dMel's store, or inconsistent metadata.
    """
    from speechunits.audio import Audio
    from speechunits.encoders import load_encoder
    from speechunits.features.io import FeaturesWriter
    from speechunits.units.store import UnitStore

    store = UnitStore.open(store_path, codebook_sha256=expected_sha256)
    dmel = DMel.from_meta(store.meta.get("codebook") or {}, str(store_path))
    encoder = load_encoder(dmel.encoder_name or DMEL_ENCODER, device="cpu")
    if dmel.encoder_identity and encoder.info.identity != dmel.encoder_identity:
        raise SpeechUnitsError(f"{store_path}: made with {dmel.encoder_name} identity {dmel.encoder_identity}, "
                               f"this installation's is {encoder.info.identity}")
    out = Path(out_dir)
    info = encoder.info
    writer = FeaturesWriter(out, info, [0], root=".")
    utterances = frames = 0
    try:
        for utt_id, units, _ in store.iter_multistream():
            log_mel = dmel.decode(units)
            num_samples = max(0, (log_mel.shape[0] - 1) * info.hop_length + info.receptive_field)
            writer.add(utt_id, utt_id, num_samples, {0: log_mel})
            if audio and log_mel.shape[0]:
                wav = out / "wavs" / f"{utt_id}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                Audio(dmel.to_audio(log_mel, iters=iters), info.sample_rate).save(wav, subtype="FLOAT")
            utterances += 1
            frames += log_mel.shape[0]
    except BaseException:
        writer.abort()
        raise
    writer.close({"decoded_from": str(store_path), "dmel": {key: dmel.meta[key] for key in ("bits", "range", "sha256")}})
    return DecodeReport(utterances, frames, audio, out)
