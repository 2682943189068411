"""A trained vocoder directory and what it does: :func:`load_vocoder`, :class:`Vocoder`.

Layout of ``VOC/`` (written by ``speechunits vocoder train``)::

    vocoder.json            what the vocoder consumes and how it was built (below), written last
    vocoder.safetensors     inference weights (conditioning, generator, F0/duration predictors)
    codebooks/stream{j}/    copies of the codebooks (resynthesis encodes audio through them)
    samples/step-N/*.wav    syntheses of a few training utterances at every checkpoint
    training/               the training loop's checkpoint (resume), cache/: units and F0

``vocoder.json``: ``codebook_sha256`` and ``k`` (one per stream), ``layer`` (``layers`` per
stream), ``encoder``/``encoder_identity``, ``frame_rate``, ``frame_offset_s``, ``hop``,
``dedup``, ``sample_rate``, ``f0`` and ``f0_method``, ``speaker`` and ``speakers``, ``arch``,
``f0_stats`` (log-F0 mean/std per speaker, ``"*"`` over all), ``config`` (the full
:class:`~speechunits.vocoder.config.VocoderConfig`) and ``trained`` (steps, audio seconds).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from speechunits.audio import Audio
from speechunits.errors import SpeechUnitsError, some_of
from speechunits.files import read_json_object
from speechunits.pitch import F0Stats, F0Track, extract_f0, f0_stats
from speechunits.units.units import Units
from speechunits.vocoder.config import VocoderConfig
from speechunits.vocoder.data import ALL_SPEAKERS, lead_samples
from speechunits.vocoder.f0 import conditioning_f0

log = logging.getLogger(__name__)

META_FILE = "vocoder.json"
WEIGHTS_FILE = "vocoder.safetensors"
CODEBOOKS_DIR = "codebooks"
SAMPLES_DIR = "samples"
FORMAT_VERSION = 1
KIND = "vocoder"
#: Seed of the noise source at synthesis (the same units give the same audio).
NOISE_SEED = 0


def codebook_dir(root: str | Path, stream: int) -> Path:
    return Path(root) / CODEBOOKS_DIR / f"stream{stream}"


def read_meta(path: str | Path) -> dict[str, Any]:
    """``vocoder.json`` of the vocoder directory ``path``."""
    meta_path = Path(path) / META_FILE
    meta = read_json_object(meta_path, missing=f"{path}: not a vocoder directory ({META_FILE} missing; "
                                               "train one with `speechunits vocoder train`)")
    if meta.get("kind") != KIND or meta.get("format_version") != FORMAT_VERSION:
        raise SpeechUnitsError(f"{meta_path}: not a speechunits vocoder of format {FORMAT_VERSION} "
                               f"(kind {meta.get('kind')!r}, format {meta.get('format_version')!r})")
    return meta


def _short(sha: str | None) -> str:
    return (sha or "?")[:12]


class Vocoder:
    """A loaded vocoder (see :func:`load_vocoder`).

    Attributes:
        meta: the ``vocoder.json`` dict (contract A).
        model: the :class:`~speechunits.vocoder.model.VocoderModel` (no discriminators), in eval mode.
        path: the directory it was loaded from.
    """

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], path: str | Path, device: torch.device):
        self.model = model.eval()
        self.meta = meta
        self.path = Path(path)
        self.device = device
        self.config = VocoderConfig.from_dict(meta["config"])
        self.stats = {name: F0Stats.from_dict(d) for name, d in meta["f0_stats"].items()}

    # -- identity ----------------------------------------------------------------------------------

    @property
    def speakers(self) -> list[str]:
        return list(self.meta.get("speakers") or [])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def frame_rate(self) -> float:
        return float(self.meta["frame_rate"])

    def check_codebook(self, sha256s: str | Sequence[str], *, source: str) -> None:
        """Refuse units of other codebooks, naming both sides (``source``: where the units came from)."""
        given = [sha256s] if isinstance(sha256s, str) else list(sha256s)
        mine = list(self.meta["codebook_sha256"])
        if given != mine:
            paths = ", ".join(str(codebook_dir(self.path, j)) for j in range(len(mine)))
            raise SpeechUnitsError(
                f"{source}: units of codebook(s) {[_short(s) for s in given]}, but vocoder {self.path} was trained on "
                f"codebook(s) {[_short(s) for s in mine]} ({paths}); re-encode the audio with the vocoder's "
                f"codebook or train a vocoder for these units")

    def _check_units(self, streams: Sequence[Units]) -> None:
        ks = list(self.meta["k"])
        if len(streams) != len(ks):
            raise SpeechUnitsError(f"vocoder {self.path} takes {len(ks)} unit stream(s), got {len(streams)}")
        for j, (units, k) in enumerate(zip(streams, ks)):
            if int(units.vocab_size) != int(k):
                raise SpeechUnitsError(f"stream {j}: units with K={units.vocab_size}, but vocoder {self.path} was "
                                       f"trained on codebook {_short(self.meta['codebook_sha256'][j])} with K={k}")
            if abs(float(units.frame_rate) - self.frame_rate) > 1e-6:
                raise SpeechUnitsError(f"stream {j}: units at {units.frame_rate} frames/s, but vocoder {self.path} "
                                       f"runs at {self.frame_rate} frames/s")

    def speaker_stats(self, speaker: str) -> F0Stats:
        """F0 statistics of a known speaker (unknown: :class:`SpeechUnitsError` listing the known ones)."""
        if speaker not in self.speakers:
            known = some_of(self.speakers)
            raise SpeechUnitsError(f"unknown speaker {speaker!r} for vocoder {self.path} (known speakers: {known})")
        return self.stats.get(speaker, self.stats[ALL_SPEAKERS])

    def reference_stats(self, reference: Audio) -> F0Stats:
        """F0 statistics of reference audio (the vocoder's overall ones when it has no voiced frame)."""
        track = extract_f0(reference.resample(self.sample_rate), frame_rate=self.frame_rate,
                           method=self.meta["f0_method"])
        try:
            return f0_stats([track])
        except SpeechUnitsError:
            log.warning("reference audio has no voiced frame: using the vocoder's overall F0 statistics")
            return self.stats[ALL_SPEAKERS]

    # -- synthesis ---------------------------------------------------------------------------------

    def target(self, speaker: str | None = None, reference: Audio | None = None
               ) -> tuple[torch.Tensor | None, F0Stats]:
        """``(speaker vector [1, D] or None, F0 statistics)`` of the voice to synthesise."""
        mode = self.meta["speaker"]
        cond = self.model.conditioner
        if mode == "none":
            if speaker is not None or reference is not None:
                raise SpeechUnitsError(f"vocoder {self.path} has no speaker conditioning (trained with --speaker none)")
            return None, self.stats[ALL_SPEAKERS]
        if mode == "table":
            if reference is not None:
                raise SpeechUnitsError(f"vocoder {self.path} has a speaker table, not a reference encoder "
                                       "(train with --speaker embedding for one-shot conversion)")
            if speaker is None:
                raise SpeechUnitsError(f"vocoder {self.path} needs a speaker (one of: {some_of(self.speakers)})")
            stats = self.speaker_stats(speaker)
            index = torch.tensor([self.speakers.index(speaker)], device=self.device)
            with torch.inference_mode():
                return cond.speaker_vector(index), stats
        if reference is not None:
            wave = torch.from_numpy(reference.resample(self.sample_rate).samples.copy()).to(self.device)[None]
            with torch.inference_mode():
                return cond.speaker_vector(reference=wave), self.reference_stats(reference)
        if speaker is None:
            raise SpeechUnitsError(f"vocoder {self.path} needs reference audio or a known speaker "
                                   f"(known: {some_of(self.speakers)})")
        stats = self.speaker_stats(speaker)
        index = torch.tensor([self.speakers.index(speaker)], device=self.device)
        with torch.inference_mode():
            return cond.speaker_vector(index), stats

    def predicted_durations(self, units: Units, speaker_vec: torch.Tensor | None, scale: float = 1.0) -> Units:
        """``units``' ids with the run lengths this deduplicating vocoder's duration predictor gives them
        (times ``scale`` before rounding; at least one frame each). ``speaker_vec``: from :meth:`target`.

        Raises:
            SpeechUnitsError: the vocoder does not deduplicate (it has no duration predictor).
        """
        if not self.meta["dedup"]:
            raise SpeechUnitsError(f"vocoder {self.path} takes frame-level units: it has no duration predictor")
        frames = np.zeros(0, dtype=np.int64)
        if len(units.ids):
            ids = torch.from_numpy(np.asarray(units.ids, dtype=np.int64))[None, None].to(self.device)
            with torch.inference_mode():
                log_frames = self.model.duration_predictor(ids, speaker_vec)
                frames = self.model.duration_predictor.frames(log_frames, scale)[0].cpu().numpy()
        return Units(units.ids, units.frame_rate, units.vocab_size, frames)

    def expand(self, streams: Sequence[Units], speaker_vec: torch.Tensor | None) -> np.ndarray:
        """Frame-level ids ``[S, T]``: durations applied, predicted for a dedup vocoder's bare ids."""
        if self.meta["dedup"] and all(s.durations is None for s in streams):
            if len(streams[0].ids) == 0:
                return np.zeros((1, 0), dtype=np.int64)
            timed = self.predicted_durations(streams[0], speaker_vec)
            return np.repeat(streams[0].ids, timed.durations)[None]
        expanded = [s.expand().ids for s in streams]
        if len({e.size for e in expanded}) > 1:
            raise SpeechUnitsError(f"unit streams have different frame counts {[e.size for e in expanded]}")
        return np.stack(expanded)

    def synthesize(self, units: Units | Sequence[Units], *, speaker: str | None = None,
                   reference: Audio | None = None, f0: F0Track | None = None) -> Audio:
        """Audio at :attr:`sample_rate` from units (contract A; see the module docstring).

        Deduplicated units with durations are expanded; a dedup vocoder's units without durations
        get predicted ones. ``f0`` (Hz at the unit frames; trimmed or zero-padded to them) is
        normalised with the target voice's statistics; None on an F0-conditioned vocoder: F0
        predicted from the units and de-normalised with them. The output starts at the source's
        time 0 (frame ``i`` lands where its source frame was centred).

        Raises:
            SpeechUnitsError: units of another K or frame rate, unknown speaker, missing speaker
                or reference.
        """
        streams = [units] if isinstance(units, Units) else list(units)
        self._check_units(streams)
        speaker_vec, stats = self.target(speaker, reference)
        ids = self.expand(streams, speaker_vec)
        t = ids.shape[1]
        lead = lead_samples(float(self.meta["frame_offset_s"]), self.sample_rate, int(self.meta["hop"]))
        if t == 0:
            return Audio(np.zeros(max(lead, 0), dtype=np.float32), self.sample_rate)
        unit_tensor = torch.from_numpy(ids)[None].to(self.device)
        with torch.inference_mode():
            if f0 is not None:
                if abs(float(f0.frame_rate) - self.frame_rate) > 1e-6:
                    raise SpeechUnitsError(f"F0 track at {f0.frame_rate} frames/s, but vocoder {self.path} runs at "
                                           f"{self.frame_rate} (extract it with frame_rate=vocoder.frame_rate)")
                hz = np.zeros(t, dtype=np.float32)
                n = min(t, len(f0))
                hz[:n] = f0.f0[:n]
                z, voiced, source = conditioning_f0(hz, stats, self.meta["f0"])
            else:
                z_hat, logits = self.model.f0_predictor(unit_tensor, speaker_vec)
                voiced = (logits[0] > 0).float().cpu().numpy()
                z_pred = z_hat[0].float().cpu().numpy()
                hz = stats.denormalise(z_pred, voiced > 0)
                z, voiced, source = conditioning_f0(hz, stats, self.meta["f0"])
            as_tensor = lambda a: torch.from_numpy(a)[None].to(self.device)  # noqa: E731
            generator = torch.Generator(device=self.device).manual_seed(NOISE_SEED)
            noise = torch.randn(1, t * int(self.meta["hop"]), generator=generator, device=self.device)
            wave = self.model.generate(unit_tensor, as_tensor(z), as_tensor(voiced), as_tensor(source), speaker_vec,
                                       noise=noise)[0]
        samples = wave.float().cpu().numpy()
        samples = np.concatenate([np.zeros(lead, dtype=np.float32), samples]) if lead >= 0 else samples[-lead:]
        return Audio(np.clip(samples, -1.0, 1.0).astype(np.float32), self.sample_rate)

    # -- the codebooks -----------------------------------------------------------------------------

    def tokenizer(self, device: str = "auto", dtype: str = "fp32") -> Any:
        """A :class:`~speechunits.units.tokenizer.UnitTokenizer` over the vocoder's own codebooks
        (frame-level units)."""
        from speechunits.encoders import load_encoder
        from speechunits.quantize import Codebook
        from speechunits.units.tokenizer import UnitTokenizer

        codebooks = [Codebook.load(codebook_dir(self.path, j)) for j in range(len(self.meta["k"]))]
        encoder = load_encoder(self.meta["encoder"], device=device, dtype=dtype)
        return UnitTokenizer(encoder, codebooks)


def load_vocoder(path: str | Path, device: str = "auto") -> Vocoder:
    """Load a directory written by ``speechunits vocoder train`` (contract A)."""
    from speechunits.device import resolve_device
    from speechunits.training.checkpoint import load_safetensors
    from speechunits.vocoder.model import VocoderModel

    meta = read_meta(path)
    dev = resolve_device(device)
    model = VocoderModel(VocoderConfig.from_dict(meta["config"]), discriminators=False)
    load_safetensors(Path(path) / WEIGHTS_FILE, model, f"the model of {META_FILE}")
    return Vocoder(model.to(dev), meta, path, dev)
