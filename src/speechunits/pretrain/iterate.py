"""Chained HuBERT iterations: train, cluster a layer of the result, train again on those units.

Iteration ``i < N`` is written to ``MODEL.iter{i}``, the last one to ``MODEL``. Between
iterations, K-means (``fit_kmeans``) is fitted on layer L of the previous model over the
training corpus and saved as a speechunits codebook in ``MODEL.iter{i}/codebook-L{L}-K{K}``;
the next iteration trains a fresh model with that codebook as ``--targets`` (as HuBERT does).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from speechunits.corpus import open_corpus
from speechunits.device import resolve_device
from speechunits.errors import SpeechUnitsError
from speechunits.pretrain.config import PretrainConfig
from speechunits.pretrain.data import load_waves
from speechunits.pretrain.export import SAMPLE_RATE
from speechunits.pretrain.run import PretrainResult, pretrain
from speechunits.pretrain.targets import KMEANS_ITERS, MAX_KMEANS_FRAMES, parse_spec

log = logging.getLogger(__name__)

#: Audio per feature-extraction batch when clustering a model layer.
EXTRACT_BATCH_SECONDS = 40.0


def layer_features(model_dir: Path, waves: list[tuple[str, np.ndarray]], layers: Sequence[int],
                   device: str = "cpu") -> dict[int, list[np.ndarray]]:
    """Features ``[F_i, D]`` of every wave at each of ``layers``, through ``load_encoder(model_dir)``
    on ``device`` (the pretraining run's: a GPU run's next targets are computed on the GPU)."""
    from speechunits.encoders import load_encoder

    encoder = load_encoder(str(model_dir), device=device)
    layers = encoder.check_layers(list(layers))
    out: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    budget = int(EXTRACT_BATCH_SECONDS * SAMPLE_RATE)
    group: list[np.ndarray] = []

    def flush() -> None:
        for item in encoder.extract_batch(group, layers):
            for layer in layers:
                out[layer].append(item[layer])
        group.clear()

    for _, wave in waves:
        group.append(wave)
        if sum(len(w) for w in group) >= budget:
            flush()
    if group:
        flush()
    return out


def fit_layer_codebook(model_dir: Path, waves: list[tuple[str, np.ndarray]], layer: int, k: int, seed: int,
                       out_dir: Path, device: str = "cpu") -> Path:
    """Fit K-means on layer ``layer`` of ``model_dir`` (features and k-means on ``device``) and save it as a
    codebook directory."""
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.quantize.kmeans import fit_kmeans

    feats = torch.from_numpy(np.concatenate(layer_features(model_dir, waves, [layer], device=device)[layer]))
    if feats.shape[0] > MAX_KMEANS_FRAMES:
        gen = torch.Generator().manual_seed(seed)
        feats = feats[torch.randperm(feats.shape[0], generator=gen)[:MAX_KMEANS_FRAMES]]
    log.info("fitting K=%d on layer %d of %s (%d frames)", k, layer, model_dir, feats.shape[0])
    result = fit_kmeans(feats, k, iters=KMEANS_ITERS, init="k-means++", seed=seed, device=device)
    encoder = load_encoder(str(model_dir), device="cpu")
    codebook = Codebook.from_fit(result, encoder.info, layer, training_frames=int(feats.shape[0]), seed=seed,
                                 iters=KMEANS_ITERS, init="k-means++")
    codebook.save(out_dir)
    return out_dir


def fit_next_targets(model_dir: Path, input_path: str | Path, layer: int, k: int, train: PretrainConfig,
                     device: str = "cpu") -> Path:
    """The next iteration's targets: K-means on ``layer`` of ``model_dir`` over ``input_path`` (utterances of at
    least ``train.min_seconds``, seed ``train.seed``), saved as ``model_dir/codebook-L{layer}-K{k}``."""
    waves = load_waves(open_corpus(input_path), SAMPLE_RATE, int(train.min_seconds * SAMPLE_RATE))
    return fit_layer_codebook(model_dir, waves, layer, k, train.seed, model_dir / f"codebook-L{layer}-K{k}",
                              device=device)


def pretrain_iterations(input_path: str | Path, out_dir: Path, train: PretrainConfig, *, iterations: int = 1,
                        layer: int | None = None, k: int | None = None, resume: bool = False,
                        device: str = "auto", quiet: bool = False, loader_workers: int = 0) -> list[PretrainResult]:
    """Run ``iterations`` HuBERT iterations; returns one result per iteration."""
    if iterations < 1:
        raise SpeechUnitsError(f"--iterate: must be >= 1, got {iterations}")
    results: list[PretrainResult] = []
    current = train
    for i in range(1, iterations + 1):
        target_dir = out_dir if i == iterations else out_dir.with_name(f"{out_dir.name}.iter{i}")
        result = pretrain(input_path, target_dir, current, resume=resume, device=device, quiet=quiet,
                          loader_workers=loader_workers)
        results.append(result)
        if i == iterations:
            break
        num_layers = _num_layers(result.model_dir)
        chosen = layer if layer is not None else max(1, num_layers // 2)
        if not 0 <= chosen <= num_layers:
            raise SpeechUnitsError(f"--iterate-layer: {chosen} out of range 0..{num_layers}")
        next_k = k or result.targets.vocab_size
        codebook_dir = fit_next_targets(result.model_dir, input_path, chosen, next_k, current,
                                        device=str(resolve_device(device)))
        parse_spec(str(codebook_dir))
        current = PretrainConfig.from_dict({**current.to_dict(), "targets": str(codebook_dir)})
    return results


def _num_layers(model_dir: Path) -> int:
    import json

    return int(json.loads((model_dir / "config.json").read_text())["num_hidden_layers"])
