"""Unit targets for masked prediction, computed on the fly (no label dump).

A target spec is one of:

* ``mfcc:K`` — HuBERT's first iteration: 39-d MFCC (100 Hz) clustered into K units with
  ``fit_kmeans`` on the training corpus;
* a ``CODEBOOK`` directory (``Codebook.save``) — its encoder/layer features assigned to its
  centroids (HuBERT's next iteration when fitted on the previous model's layer);
* ``random-projection:K`` — BEST-RQ: stacked, normalised log-mel frames, a fixed random
  projection and a fixed random codebook of K unit vectors (no k-means);
* a unit store (``.parquet`` file or store directory) — labels read as they are.

Targets come at their own frame rate ``r_t``; the model's is ``r_m`` (50 Hz, or 100 Hz with
``--frame-rate 100``). ``r_t`` must equal ``r_m`` or be an integer multiple ``n`` of it: model
frame ``i`` then takes target frame ``n*i`` (fairseq's label rate / feature rate ratio; MFCC's
100 Hz gives ``n = 2`` for a 50 Hz model, and both frames cover the same samples
``[320 i, 320 i + 400)``; at 100 Hz ``n = 1`` and frame ``i`` covers ``[160 i, 160 i + 400)``).
Anything else is a :class:`SpeechUnitsError`.
Model frames past the end of the target sequence get ``IGNORE``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.head import IGNORE

log = logging.getLogger(__name__)

#: Dimensions of BEST-RQ's random projection, and frames stacked per model frame.
RPQ_CODE_DIM = 16
RPQ_FEATURE = "logmel"
#: Frames fed to k-means when fitting MFCC targets (a random subset beyond this).
MAX_KMEANS_FRAMES = 100_000
KMEANS_ITERS = 20


def frame_ratio(target_rate: float, model_rate: float, source: str) -> int:
    """Integer ``n`` with ``target_rate == n * model_rate``, or a :class:`SpeechUnitsError`."""
    ratio = target_rate / model_rate
    n = round(ratio)
    if n < 1 or abs(ratio - n) > 1e-6:
        raise SpeechUnitsError(
            f"{source}: target frame rate {target_rate:g} Hz is neither the model's {model_rate:g} Hz "
            f"nor an integer multiple of it"
        )
    return n


def align_labels(labels: np.ndarray, ratio: int, model_frames: int) -> np.ndarray:
    """Target labels ``[F_t]`` to model frames: ``out[i] = labels[ratio * i]`` (IGNORE past the end)."""
    picked = np.asarray(labels, dtype=np.int64)[::ratio][:model_frames]
    if picked.shape[0] < model_frames:
        picked = np.concatenate([picked, np.full(model_frames - picked.shape[0], IGNORE, dtype=np.int64)])
    return picked


def nearest(features: torch.Tensor, centroids: torch.Tensor, cosine: bool = False) -> np.ndarray:
    """Index of the nearest centroid (squared L2, or cosine) for each row of ``[N, D]``."""
    x = features.float()
    c = centroids.float()
    if cosine:
        x = torch.nn.functional.normalize(x, dim=-1)
        c = torch.nn.functional.normalize(c, dim=-1)
        return (x @ c.t()).argmax(-1).numpy().astype(np.int64)
    dist = (c * c).sum(-1)[None, :] - 2.0 * x @ c.t()
    return dist.argmin(-1).numpy().astype(np.int64)


@dataclass
class Targets:
    """Labels at the model frame rate for every training utterance.

    Attributes:
        labels: utterance id -> int64 ``[F_model]`` (``IGNORE`` where none).
        vocab_size: number of units K.
        spec: JSON-able description (kind, K, frame rate, encoder, layer ...).
        tensors: what is needed to recompute the labels (centroids, projection), saved
            as safetensors beside the model.
    """

    labels: dict[str, np.ndarray]
    vocab_size: int
    spec: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        (directory / "targets.json").write_text(json.dumps(self.spec, indent=2, sort_keys=True))
        if self.tensors:
            save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(directory / "targets.safetensors"))


Waves = Sequence[tuple[str, np.ndarray]]
FramesFn = Callable[[int], int]


def parse_spec(spec: str) -> tuple[str, Any]:
    """``"mfcc:100"`` -> ("mfcc", 100); ``"random-projection:K"``; a path -> ("codebook"|"store", path)."""
    for kind in ("mfcc", "random-projection"):
        if spec.startswith(kind + ":"):
            text = spec[len(kind) + 1 :]
            try:
                k = int(text)
            except ValueError:
                raise SpeechUnitsError(f"--targets: expected {kind}:K with an integer K, got {spec!r}") from None
            if k < 2:
                raise SpeechUnitsError(f"--targets: K must be >= 2, got {spec!r}")
            return kind, k
    path = Path(spec)
    if not path.exists():
        raise SpeechUnitsError(
            f"--targets: {spec!r} is not mfcc:K, random-projection:K, a codebook directory or a unit store"
        )
    if path.is_dir() and (path / "codebook.json").is_file():
        return "codebook", path
    if path.suffix == ".parquet" or path.is_dir():
        return "store", path
    raise SpeechUnitsError(f"--targets: {spec}: not a codebook directory (codebook.json) or a unit store")


def build_targets(
    spec: str,
    waves: Waves,
    model_frames: FramesFn,
    model_rate: float,
    *,
    seed: int = 0,
    saved: Path | None = None,
    device: str = "cpu",
) -> Targets:
    """Compute labels for ``waves`` (id, float32 ``[T]`` at 16 kHz) from a target spec.

    Args:
        model_frames: model frames for a number of samples.
        model_rate: model frames per second.
        saved: a directory written by :meth:`Targets.save` (resume): its centroids/projection
            are reused instead of fitting again.
        device: where a codebook's encoder computes the features it quantises (the run's device).
    """
    kind, arg = parse_spec(spec)
    if kind == "mfcc":
        return _mfcc_targets(arg, waves, model_frames, model_rate, seed, saved)
    if kind == "random-projection":
        return _random_projection_targets(arg, waves, model_frames, model_rate, seed)
    if kind == "codebook":
        return _codebook_targets(arg, waves, model_frames, model_rate, device)
    return _store_targets(arg, waves, model_frames, model_rate)


def _encoder_features(encoder: Any, waves: Waves, layer: int) -> list[torch.Tensor]:
    out = []
    for _, wave in waves:
        out.append(torch.from_numpy(encoder.extract_batch([wave], [layer])[0][layer]))
    return out


def _mfcc_targets(k: int, waves: Waves, model_frames: FramesFn, model_rate: float, seed: int,
                  saved: Path | None) -> Targets:
    from speechunits.encoders import load_encoder

    encoder = load_encoder("mfcc")
    info = encoder.info
    ratio = frame_ratio(info.frame_rate, model_rate, "mfcc targets")
    feats = _encoder_features(encoder, waves, 0)
    if saved is not None and (saved / "targets.safetensors").is_file():
        from speechunits.files import read_safetensors

        centroids = read_safetensors(saved / "targets.safetensors")["centroids"]
        inertia = None
    else:
        from speechunits.quantize.kmeans import fit_kmeans

        allf = torch.cat(feats)
        if allf.shape[0] > MAX_KMEANS_FRAMES:
            gen = torch.Generator().manual_seed(seed)
            allf = allf[torch.randperm(allf.shape[0], generator=gen)[:MAX_KMEANS_FRAMES]]
        if allf.shape[0] < k:
            raise SpeechUnitsError(f"--targets mfcc:{k}: only {allf.shape[0]} MFCC frames in the corpus, fewer than K")
        log.info("fitting MFCC k-means: %d frames x %d dims, K=%d", allf.shape[0], allf.shape[1], k)
        result = fit_kmeans(allf, k, iters=KMEANS_ITERS, init="k-means++", seed=seed, device="cpu")
        centroids = torch.as_tensor(result.centroids).float().cpu()
        inertia = float(result.inertia)
    labels = {}
    for (utt_id, wave), f in zip(waves, feats):
        labels[utt_id] = align_labels(nearest(f, centroids), ratio, model_frames(len(wave)))
    spec = {"kind": "mfcc", "k": k, "encoder": info.name, "encoder_identity": info.identity, "layer": 0,
            "frame_rate": info.frame_rate, "ratio": ratio, "seed": seed, "inertia": inertia}
    return Targets(labels, k, spec, {"centroids": centroids})


def _random_projection_targets(k: int, waves: Waves, model_frames: FramesFn, model_rate: float,
                               seed: int) -> Targets:
    from speechunits.encoders import load_encoder
    from speechunits.quantize.random_projection import project_and_assign, random_projection

    encoder = load_encoder(RPQ_FEATURE)
    info = encoder.info
    stack = frame_ratio(info.frame_rate, model_rate, f"random-projection targets ({RPQ_FEATURE})")
    in_dim = info.dim * stack
    # The quantizer of `speechunits codebook random-projection` (quantize/random_projection.py), over
    # `stack` log-mel frames at a time; features are normalised per utterance here (BEST-RQ's instance
    # normalisation), not with corpus statistics.
    projection, codebook = random_projection(in_dim, RPQ_CODE_DIM, k, seed)
    labels = {}
    for utt_id, wave in waves:
        f = torch.from_numpy(encoder.extract_batch([wave], [0])[0][0])
        f = (f - f.mean(0)) / f.std(0).clamp_min(1e-5)
        usable = (f.shape[0] // stack) * stack
        ids = project_and_assign(f[:usable].reshape(-1, in_dim), projection, codebook)
        labels[utt_id] = align_labels(ids, 1, model_frames(len(wave)))
    spec = {"kind": "random-projection", "k": k, "feature": RPQ_FEATURE, "stack": stack, "code_dim": RPQ_CODE_DIM,
            "frame_rate": info.frame_rate / stack, "seed": seed}
    return Targets(labels, k, spec, {"projection": projection, "codebook": codebook})


def _codebook_targets(path: Path, waves: Waves, model_frames: FramesFn, model_rate: float,
                      device: str = "cpu") -> Targets:
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook

    codebook = Codebook.load(path)
    ratio = frame_ratio(float(codebook.frame_rate), model_rate, f"{path}")
    encoder = load_encoder(codebook.encoder_name, device=device)
    codebook.check_compatible(encoder.info, codebook.layer)
    labels = {}
    for utt_id, wave in waves:
        feats = encoder.extract_batch([wave], [codebook.layer])[0][codebook.layer]
        ids = np.asarray(codebook.assign(feats), dtype=np.int64)
        labels[utt_id] = align_labels(ids, ratio, model_frames(len(wave)))
    spec = {"kind": "codebook", "path": str(path), "k": codebook.k, "encoder": codebook.encoder_name,
            "encoder_identity": codebook.encoder_identity, "layer": codebook.layer,
            "frame_rate": float(codebook.frame_rate), "ratio": ratio, "sha256": codebook.sha256}
    return Targets(labels, codebook.k, spec, {"centroids": torch.as_tensor(codebook.centroids).float()})


def _store_targets(path: Path, waves: Waves, model_frames: FramesFn, model_rate: float) -> Targets:
    from speechunits.units.store import UnitStore

    store = UnitStore.open(path)
    meta = store.meta
    if meta.get("dedup"):
        raise SpeechUnitsError(f"{path}: deduplicated units cannot be frame targets (encode without --dedup)")
    ratio = frame_ratio(float(meta["frame_rate"]), model_rate, str(path))
    wanted = {utt_id: wave for utt_id, wave in waves}
    labels = {}
    for utt_id, units in store:
        if utt_id in wanted:
            labels[utt_id] = align_labels(np.asarray(units.ids), ratio, model_frames(len(wanted[utt_id])))
    missing = [u for u in wanted if u not in labels]
    if len(missing) == len(wanted):
        raise SpeechUnitsError(f"{path}: no unit store entry matches a training utterance id (e.g. {missing[0]!r})")
    if missing:
        log.warning("%s: %d training utterances have no units and are skipped", path, len(missing))
    spec = {"kind": "store", "path": str(path), "k": int(meta["vocab_size"]), "frame_rate": float(meta["frame_rate"]),
            "ratio": ratio, "codebook_sha256": meta.get("codebook_sha256")}
    return Targets(labels, int(meta["vocab_size"]), spec)
