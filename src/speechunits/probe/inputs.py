"""What a probe reads: frozen encoder features, a features directory, or units.

Every input gives, per utterance id, a :class:`Sample` (continuous features ``[L, T, D]`` or
unit ids ``[T, S]`` with optional durations) and an *identity*: a JSON record of what the
samples are (encoder identity and layers, or codebook sha256s, dedup and BPE). A probe stores
the identity of what it was trained on; :meth:`ProbeInput.check` refuses any other input
with a :class:`SpeechUnitsError` that names both.

Features and the same features read from a ``speechunits features`` directory have the same
identity (``kind`` "features"), so a probe trained on the fly can be evaluated on a dump and
back. Units are compared by codebook sha256 (one per stream), dedup and BPE sha256.

The inputs themselves: :mod:`speechunits.probe.feature_inputs` (:class:`ArrayInput`,
:class:`EncoderInput`, :class:`FeaturesDirInput`) and :mod:`speechunits.probe.unit_inputs`
(:class:`UnitInput`).

Memory: inputs cache every utterance they load for the life of the object (a probe trains many
epochs over the same features and the encoder runs once per utterance). Features are cached as
``cache_dtype`` (float16 by default): ``frames x layers x dim x 2`` bytes, e.g. one hour at
50 Hz of 13 layers x 768 = 3.6 GB, of MFCC (100 Hz, 1 x 39) 28 MB. For more, select fewer
layers or read a features directory (memory-mapped on disk, cached only once loaded).
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from speechunits.corpus import Corpus, Utterance, open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.id_match import match_ids

log = logging.getLogger(__name__)

FEATURES = "features"
UNITS = "units"
#: Durations above this share one embedding (frames per deduplicated unit or BPE token).
MAX_DURATION = 32


@dataclass(frozen=True)
class Sample:
    """What a probe reads of one utterance.

    Exactly one of ``features`` (``[L, T, D]`` floating, the requested layers stacked in
    order) and ``units`` (int64 ``[T, S]``: S parallel streams) is set; ``durations`` (int64
    ``[T]``) is set for deduplicated units and BPE tokens (frames per element).
    """

    features: torch.Tensor | None = None
    units: torch.Tensor | None = None
    durations: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        """Sequence length T the probe sees."""
        data = self.features if self.features is not None else self.units
        assert data is not None
        return int(data.shape[-2] if self.features is not None else data.shape[0])

    @property
    def input_frames(self) -> int:
        """Frames before deduplication (what the audio duration is, at the input's frame rate)."""
        return int(self.durations.sum()) if self.durations is not None else self.num_frames


@dataclass
class LoadResult:
    """Samples loaded for the requested ids, and why others could not be (``{id: reason}``)."""

    samples: dict[str, Sample]
    errors: dict[str, str]

    def warn_errors(self) -> None:
        """Log, as one warning, how many ids have no input, with the first three reasons."""
        if self.errors:
            log.warning("%d utterances have no input and are skipped (first: %s)", len(self.errors),
                        "; ".join(f"{k}: {v}" for k, v in list(self.errors.items())[:3]))


class ProbeInput(ABC):
    """A source of :class:`Sample` records with an identity (see the module docstring)."""

    #: :data:`FEATURES` or :data:`UNITS`.
    kind: str
    #: Frames per second of the samples before deduplication, and the centre time of frame 0.
    frame_rate: float
    frame_offset_s: float = 0.0

    def __init__(self) -> None:
        self._cache: dict[str, Sample] = {}
        self._errors: dict[str, str] = {}
        #: Wall-clock seconds spent computing or reading samples so far (extraction throughput).
        self.load_seconds = 0.0

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """JSON record of what the samples are (stored in ``probe.json``)."""

    @abstractmethod
    def model_spec(self) -> dict[str, Any]:
        """What a model needs to read these samples: ``{"kind", "num_layers", "dim"}`` or
        ``{"kind", "vocab_sizes", "durations"}``."""

    @abstractmethod
    def _load(self, ids: set[str] | None) -> Iterable[tuple[str, Sample | None, str | None]]:
        """``(id, sample, error)`` for the ids not cached yet (None: every id the input has)."""

    @abstractmethod
    def available_ids(self) -> list[str]:
        """Every utterance id this input can give."""

    def cached_seconds(self) -> float:
        """Audio seconds of the samples cached so far."""
        return sum(sample.input_frames for sample in self._cache.values()) / self.frame_rate

    def check(self, other: dict[str, Any]) -> None:
        """Refuse to stand in for an input of identity ``other`` (SpeechUnitsError) unless equal
        in what matters (see :func:`check_identity`)."""
        check_identity(other, self.identity())

    def load(self, ids: Sequence[str] | None = None) -> LoadResult:
        """Samples of ``ids`` (default: all), each computed once and cached for this object's life.

        ``ids`` are the caller's (a corpus's): when none of them is an id of this input, they are
        matched to its ids by their file path endings (:func:`~speechunits.id_match.match_ids`;
        a store encoded from ``corpus/`` says ``wavs/u1`` where the corpus's manifest says ``u1``).
        Results are keyed by the caller's ids. ``load_seconds`` grows by the time spent;
        ``cached_seconds()`` is the audio cached so far."""
        if ids is None:
            own_of = None
        else:
            names = list(dict.fromkeys(ids))
            available = self.available_ids()  # (none listed: the input says what it lacks when asked)
            own_of = match_ids(names, available, "the probe's input") if available else {i: i for i in names}
        todo = None if own_of is None else set(own_of.values()) - set(self._cache) - set(self._errors)
        if todo is None or todo:
            started = time.perf_counter()
            for utt_id, sample, error in self._load(todo):
                if sample is None:
                    self._errors[utt_id] = error or "no sample"
                else:
                    self._cache[utt_id] = sample
            self.load_seconds += time.perf_counter() - started
        if own_of is None:
            keys = self.available_ids()
            own_of = {i: i for i in keys}
        else:
            keys = names
        samples = {i: self._cache[own_of[i]] for i in keys if own_of.get(i) in self._cache}
        errors = {i: self._errors.get(own_of.get(i, ""), "not in this input") for i in keys if i not in samples}
        return LoadResult(samples, errors)


def feature_statistics(samples: Mapping[str, Sample], ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation ``[L, D]`` (float32) of every layer's dimensions over all frames of
    the features of ``ids`` (accumulated in float64; a standard deviation under 1e-5 counts as 1e-5)."""
    from speechunits.features.moments import frame_moments

    def features_of(utt: str) -> torch.Tensor:
        features = samples[utt].features
        if features is None:
            raise SpeechUnitsError(f"{utt}: units have no feature statistics (standardize applies to features)")
        return features

    mean, std = frame_moments((features_of(utt) for utt in ids), frame_axis=1, floor=1e-5)
    return mean.float(), std.float()


# -- identity checks -------------------------------------------------------------------------------

#: Keys of an identity that must agree, per kind.
_MATCH = {FEATURES: ("encoder_identity", "layers", "dim"),
          UNITS: ("codebook_sha256", "dedup", "bpe_sha256", "streams")}


def describe_identity(identity: dict[str, Any]) -> str:
    """A short human form of an identity, for error messages."""
    if identity.get("kind") == FEATURES:
        return (f"features of {identity.get('encoder')} (identity {identity.get('encoder_identity')}) "
                f"layers {identity.get('layers')}")
    if identity.get("kind") == UNITS:
        shas = ", ".join(str(s)[:12] for s in identity.get("codebook_sha256") or [])
        bpe = f" + BPE {str(identity.get('bpe_sha256'))[:12]}" if identity.get("bpe_sha256") else ""
        return f"units of codebook(s) {shas}{' deduplicated' if identity.get('dedup') else ''}{bpe}"
    return repr(identity)


def identity_facts(identity: dict[str, Any]) -> dict[str, Any]:
    """The part of an identity that :func:`check_identity` compares (its kind and :data:`_MATCH` keys):
    no names or paths, so the same input read from another folder or working directory agrees."""
    return {"kind": identity.get("kind"),
            **{key: identity.get(key) for key in _MATCH.get(str(identity.get("kind")), ())}}


def check_identity(expected: dict[str, Any], got: dict[str, Any]) -> None:
    """Raise SpeechUnitsError unless ``got`` gives what ``expected`` describes."""
    if expected.get("kind") != got.get("kind"):
        raise SpeechUnitsError(f"this probe reads {describe_identity(expected)}, not {describe_identity(got)}")
    for key in _MATCH.get(str(expected.get("kind")), ()):
        if expected.get(key) != got.get(key):
            raise SpeechUnitsError(f"this probe reads {describe_identity(expected)}; the input gives "
                                   f"{describe_identity(got)} ({key} {got.get(key)!r} != {expected.get(key)!r})")


def as_corpus(source: str | Path | Corpus | Iterable[Utterance]) -> Corpus:
    """A corpus from a path (:func:`open_corpus`), a corpus, or utterance records."""
    if isinstance(source, Corpus):
        return source
    if isinstance(source, (str, Path)):
        return open_corpus(source).require_utterances()
    utts = list(source)
    return Corpus("<utterances>", lambda: iter(utts))


def audio_corpus(paths: Sequence[str | Path]) -> Corpus:
    """A corpus of audio files (ids: file names without extension; duplicates are refused)."""
    return as_corpus([Utterance(Path(p).stem, str(p)) for p in paths])
