"""What a vocoder is built from: :class:`VocoderConfig` (stored in ``vocoder.json``).

Two architecture tiers share the conditioning (unit embeddings of every stream, F0 and a
speaker vector at the unit frame rate):

* ``cpu``: a harmonic-plus-noise source-filter model (:mod:`speechunits.vocoder.source_filter`);
* ``hifigan``: HiFi-GAN V1's generator (:mod:`speechunits.vocoder.hifigan`) with multi-period
  and multi-scale discriminators, in speech-resynthesis's configuration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from speechunits.errors import SpeechUnitsError
from speechunits.training.config import config_from_dict, config_to_dict

ARCHS = ("cpu", "hifigan")
F0_MODES = ("none", "continuous", "quantized")
SPEAKER_MODES = ("none", "table", "embedding")
#: How the unit embedding tables start: learned from random, or from the codebooks' centroids.
EMBED_INITS = ("random", "centroids")
#: Quantised F0: normalised log-F0 in [-F0_RANGE, F0_RANGE] cut into this many bins (+1 id for unvoiced).
F0_BINS = 32
F0_RANGE = 3.0
#: ``--perturb-units`` without a list: pitch and formants shifted by these semitones.
DEFAULT_PERTURB_SEMITONES = (-4.0, -2.0, 2.0, 4.0)
#: Larger shifts (an octave) no longer sound like a voice of the same kind.
PERTURB_MAX_SEMITONES = 12.0


def perturb_semitones(values: Any) -> list[float]:
    """``values`` as the list of ``--perturb-units`` shifts, checked: each finite, non-zero, at most
    :data:`PERTURB_MAX_SEMITONES` either way, no repeats."""
    try:
        shifts = [float(x) for x in values]
    except (TypeError, ValueError) as exc:
        raise SpeechUnitsError(f"--perturb-units: semitone shifts must be numbers, got {values!r}") from exc
    bad = [x for x in shifts if not math.isfinite(x) or x == 0 or abs(x) > PERTURB_MAX_SEMITONES]
    if bad or len(set(shifts)) != len(shifts):
        raise SpeechUnitsError(f"--perturb-units: shifts must be distinct, non-zero and within "
                               f"+-{PERTURB_MAX_SEMITONES:g} semitones, got {shifts}")
    return shifts


def upsample_plan(hop: int) -> tuple[list[int], list[int]]:
    """HiFi-GAN upsampling ``(rates, kernels)`` whose rates multiply to ``hop``.

    hop 320 gives speech-resynthesis's ``[5, 4, 4, 2, 2]`` with kernels ``[11, 8, 8, 4, 4]``;
    in general: every factor 5, then up to two factors 4, then 3s, 2s and any larger prime,
    largest first, each with kernel ``2 r`` (11 for 5).
    """
    if hop < 1:
        raise SpeechUnitsError(f"hop must be >= 1, got {hop}")
    rates: list[int] = []
    rest = hop
    for factor, cap in ((5, None), (4, 2), (3, None), (2, None)):
        while rest % factor == 0 and (cap is None or rates.count(factor) < cap):
            rates.append(factor)
            rest //= factor
    while rest > 1:
        factor = next(f for f in range(7, rest + 1) if rest % f == 0)
        rates.append(factor)
        rest //= factor
    rates.sort(key=lambda r: -r)
    kernels = [11 if r == 5 else 2 * r for r in rates]
    return rates, kernels


@dataclass
class VocoderConfig:
    """Architecture and conditioning of one vocoder.

    Attributes:
        arch: ``"cpu"`` or ``"hifigan"``.
        sample_rate, hop: output rate and samples per unit frame (the codebook's encoder hop).
        vocab_sizes: K of every unit stream.
        dedup: the vocoder consumes deduplicated units (a duration predictor is trained).
        f0: ``"none"``, ``"continuous"`` (normalised log-F0 + voicing) or ``"quantized"``.
        speaker: ``"none"``, ``"table"`` (one vector per training speaker) or ``"embedding"``
            (a reference encoder on log-mel, trained jointly).
        num_speakers: rows of the speaker table (table mode; embedding mode: known speakers).
        unit_dim, f0_dim, speaker_dim: conditioning widths.
        embed_init: ``"random"`` (tables of ``unit_dim`` learned from scratch) or ``"centroids"``:
            each stream's table has its codebook's dimension (``unit_table_dims``), starts from the
            standardised centroids and is followed by a learned linear map to ``unit_dim``.
        unit_table_dims: with ``"centroids"``, the codebook dimension D of every stream.
        channels, blocks, kernel: width, ConvNeXt blocks and kernel of the ``cpu`` tier's
            frame-rate network; ``fft_factor``: its STFT filter length is ``fft_factor * hop``.
        hifigan_channels, resblock_kernels, resblock_dilations: HiFi-GAN V1.
        predictor_channels: F0 and duration predictors.
        perturb_semitones: information perturbation of the training units (ContentVec, NANSY):
            units are also computed on copies of every training utterance with pitch and
            formants shifted by these semitones (:func:`speechunits.augment.pitch_shift`), and
            each training crop takes its units from the original or one copy, uniformly, while
            its target audio, F0 and speaker stay the original's. Units then say less about who
            speaks, so the voice comes from the speaker conditioning: what conversion needs.
        segment_frames, batch_size: random training crops (frames) per item, items per batch.
        reference_seconds: reference-audio crop of the speaker encoder in training.
        mel_weight, stft_weight, feature_weight: loss weights (HiFi-GAN: 45 and 2 on mel and
            feature matching); ``gan_start``: first step with discriminator updates (``cpu``:
            ``None`` = never); ``disc_width``: discriminator width scale (1 = HiFi-GAN's).
    """

    arch: str = "cpu"
    sample_rate: int = 16000
    hop: int = 160
    vocab_sizes: list[int] = field(default_factory=lambda: [100])
    dedup: bool = False
    f0: str = "continuous"
    speaker: str = "none"
    num_speakers: int = 0
    unit_dim: int = 128
    f0_dim: int = 32
    speaker_dim: int = 64
    channels: int = 128
    blocks: int = 8
    kernel: int = 7
    fft_factor: int = 4
    hifigan_channels: int = 512
    resblock_kernels: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    predictor_channels: int = 128
    segment_frames: int = 64
    batch_size: int = 8
    reference_seconds: float = 2.0
    mel_weight: float = 45.0
    stft_weight: float = 1.0
    feature_weight: float = 2.0
    gan_start: int | None = None
    disc_width: float = 1.0
    perturb_semitones: list[float] = field(default_factory=list)
    embed_init: str = "random"
    unit_table_dims: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        checks = [
            ("--arch", self.arch in ARCHS, f"one of {ARCHS}"),
            ("--f0", self.f0 in F0_MODES, f"one of {F0_MODES}"),
            ("--speaker", self.speaker in SPEAKER_MODES, f"one of {SPEAKER_MODES}"),
            ("hop", self.hop >= 1, ">= 1"),
            ("vocab sizes", len(self.vocab_sizes) >= 1 and all(k >= 1 for k in self.vocab_sizes), "each >= 1"),
            ("--dedup", not (self.dedup and len(self.vocab_sizes) > 1), "one unit stream (streams dedup differently)"),
            ("--segment-frames", self.segment_frames >= 2, ">= 2"),
            ("--batch-size", self.batch_size >= 1, ">= 1"),
            ("--kernel", self.kernel >= 1 and self.kernel % 2 == 1, "odd and >= 1 (the frames stay centred)"),
            ("speakers", self.speaker != "table" or self.num_speakers >= 1, "a speaker table needs speakers"),
            ("--embed-init", self.embed_init in EMBED_INITS, f"one of {EMBED_INITS}"),
            ("unit table dims", (len(self.unit_table_dims) == len(self.vocab_sizes)
                                 and all(int(d) >= 1 for d in self.unit_table_dims)) if self.embed_init == "centroids"
             else not self.unit_table_dims, "one codebook dimension per stream, with --embed-init centroids only"),
        ]
        for what, ok, need in checks:
            if not ok:
                raise SpeechUnitsError(f"vocoder config: {what} must be {need} (config {config_to_dict(self)})")
        self.vocab_sizes = [int(k) for k in self.vocab_sizes]
        self.unit_table_dims = [int(d) for d in self.unit_table_dims]
        self.perturb_semitones = perturb_semitones(self.perturb_semitones)

    @property
    def gan(self) -> bool:
        """Whether discriminators are trained."""
        return self.arch == "hifigan" or self.gan_start is not None

    @property
    def discriminator_start(self) -> int:
        return 0 if self.gan_start is None else int(self.gan_start)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VocoderConfig":
        return config_from_dict(cls, data, "vocoder config")


#: A tiny model for tests and smoke runs (``--size tiny``).
TINY: dict[str, Any] = {"unit_dim": 16, "f0_dim": 8, "speaker_dim": 8, "channels": 32, "blocks": 1,
                        "hifigan_channels": 16, "resblock_kernels": [3], "resblock_dilations": [[1, 3]],
                        "predictor_channels": 16, "segment_frames": 16, "batch_size": 2, "disc_width": 0.125}
