"""Ray counterpart of ``fit``: the local backend's exact k-means frame sample, then the fit
(on a cluster GPU when there is one), on :mod:`speechunits.scale.ray_pipeline`.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterable, Iterator

import numpy as np

from speechunits.corpus import Utterance
from speechunits.encoders.base import Encoder
from speechunits.errors import SpeechUnitsError
from speechunits.progress import AudioProgress
from speechunits.scale import ray_workers
from speechunits.scale.ray_pipeline import WORKERS, RayOptions, execute, extract_kwargs
from speechunits.scale.ray_session import cluster_resources, ray_session

log = logging.getLogger(__name__)

#: Frame positions travel through the sampler as float32, exact up to 2**24.
_MAX_EXACT_POSITION = 2 ** 24


def ray_fit_source(encoder: Encoder, corpus: Iterable[Utterance], layer: int | None, *, options: RayOptions,
                   max_frames: int, seed: int = 0, on_error: str = "skip", channel: int | None = None,
                   quiet: bool = False, checkpoint: Any = None, max_batch_seconds: float | None = None) -> Any:
    """Ray counterpart of :func:`speechunits.quantize.fit.corpus_source`: the *same* frame sample.

    Pass 1 (decode tasks only) counts every utterance's frames; the driver then runs the local
    sampler (:class:`~speechunits.quantize.fit.FrameReservoir`, same seed and stream order) on
    frame *positions* ``(utterance, frame, frames of the utterance)``, so it picks exactly the
    frames the local backend would. Pass 2 (encoder actors) returns only those frames. The driver
    receives ``max_frames x D`` floats, never the corpus' features. Fit it with
    :func:`ray_fit_sample` (a cluster GPU) or :func:`~speechunits.quantize.fit.fit_codebook` with
    the same ``max_frames`` and ``seed``. Bad input is logged and listed in the source's ``skipped``.

    ``checkpoint`` (a :class:`~speechunits.quantize.fit_checkpoint.SampleCheckpoint`) makes both
    passes resumable: pass 1's reservoir of positions is snapshotted every ``shard_seconds``,
    and pass 2 keeps the frames of finished utterances in parts (``<checkpoint>/pass2``,
    :class:`~speechunits.features.parts.FeatureParts`); a rerun skips what was kept.
    """
    from speechunits.quantize.fit import FeatureSource, choose_layer, sample_items

    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"--on-error: expected skip or fail, got {on_error!r}")
    info = encoder.info
    chosen = encoder.check_layers([choose_layer(info, layer)])[0]
    utts = list(corpus)
    if len(utts) >= _MAX_EXACT_POSITION:
        raise SpeechUnitsError(f"fit --backend ray: at most {_MAX_EXACT_POSITION - 1} utterances per run")
    common = dict(sample_rate=info.sample_rate, min_samples=info.receptive_field, channel=channel,
                  options=options)
    with ray_session(options.address, num_cpus=options.num_cpus, verbose=options.verbose):
        start = 0
        if checkpoint is not None:
            start = checkpoint.load(max_frames, seed)[1].consumed
        position_items = _frame_positions(utts, start, info, on_error, common)
        picked_rows, seen, progress = sample_items(position_items, 0, max_frames, seed, checkpoint=checkpoint)
        skipped = list(progress.skipped)
        first_pass_skips = len(skipped)
        picked = picked_rows.astype(np.int64)  # [m, 3] (utterance, frame, frames) in stream order
        owners, starts = np.unique(picked[:, 0], return_index=True) if picked.size else (np.empty(0, int), [])
        bounds = list(starts) + [len(picked)]
        subset = [utts[int(i)] for i in owners]
        extra = [{"select": picked[bounds[j]:bounds[j + 1], 1].tobytes(), "frames": int(picked[bounds[j], 2])}
                 for j in range(len(owners))]
        log.info("fit (ray): %d frames picked from %d utterances (%d frames in all)", len(picked), len(subset), seen)
        kwargs = {"encoder_name": info.name, "encoder_identity": info.identity, "dtype": encoder.dtype,
                  "layer": chosen, "extract_kwargs": extract_kwargs(max_batch_seconds, None, None, None)}
        parts = None
        if checkpoint is not None:
            from speechunits.features.parts import FeatureParts

            parts = FeatureParts(checkpoint.directory / "pass2", info, [chosen], encoder.dtype,
                                 settings={"pass1": checkpoint.meta}, shard_seconds=checkpoint.shard_seconds)
        frames = _picked_frames(subset, extra, kwargs, common, info, chosen, on_error, quiet, parts, skipped)
    sample = np.concatenate(frames) if frames else np.empty((0, info.dim), dtype=np.float32)
    used = progress.used - (len(skipped) - first_pass_skips)
    return FeatureSource(iter([("ray frame sample", sample)]), info, chosen, used=used, skipped=skipped)


def _frame_positions(utts: list[Utterance], start: int, info: Any, on_error: str,
                     common: dict[str, Any]) -> Iterator[Any]:
    """Pass 1 as :class:`~speechunits.features.FeatureItem` records of utterances ``start:`` whose
    "features" (layer 0) are their frame positions ``[frames, 3]`` (float32: exact below 2**24)."""
    from speechunits.features import FeatureItem

    for row in execute(utts[start:], None, {}, decoder=ray_workers.count_batch, **common):
        idx = start + int(row["idx"])
        utt, error = utts[idx], str(row["error"])
        if error:
            if on_error == "fail":
                raise SpeechUnitsError(error)
            yield FeatureItem(utt, None, error, 0.0)
            continue
        frames = info.num_frames(int(row["num_samples"]))
        if frames >= _MAX_EXACT_POSITION:
            raise SpeechUnitsError(f"{utt.path}: too long for the Ray sampler ({frames} frames)")
        positions = np.stack([np.full(frames, idx), np.arange(frames), np.full(frames, frames)], axis=1)
        yield FeatureItem(utt, {0: positions.astype(np.float32)}, None, 0.0, int(row["num_samples"]))


def _picked_frames(subset: list[Utterance], extra: list[dict[str, Any]], kwargs: dict[str, Any],
                   common: dict[str, Any], info: Any, layer: int, on_error: str, quiet: bool, parts: Any,
                   skipped: list[tuple[str, str]]) -> list[np.ndarray]:
    """Pass 2: the picked frames of every utterance of ``subset``, in order (kept in ``parts``, if
    given, and taken from there on a rerun); bad ones are appended to ``skipped``."""
    from speechunits.timed_parts import TimedFlusher

    kept = parts.kept(subset) if parts is not None else set()
    todo = [j for j, utt in enumerate(subset) if utt.id not in kept]
    frames: dict[str, np.ndarray] = {}
    flusher: Any = contextlib.nullcontext()
    if parts is not None and parts.shard_seconds:
        flusher = TimedFlusher.for_seconds([parts], parts.shard_seconds)
    with contextlib.ExitStack() as stack:
        if parts is not None:
            stack.callback(parts.close)  # finished utterances are kept, also after an error
        stack.enter_context(flusher)
        progress = stack.enter_context(AudioProgress(None, desc="fit sample (ray)", quiet=quiet))
        rows = execute([subset[j] for j in todo], WORKERS["sample"], kwargs, extra=[extra[j] for j in todo],
                        **common)
        for row in rows:
            utt = subset[todo[int(row["idx"])]]
            error = str(row["error"])
            if error:
                if on_error == "fail":
                    raise SpeechUnitsError(error)
                log.warning("%s; the sample now differs from the local backend's", error)
                skipped.append((utt.path, error))
                continue
            x = ray_workers.float32_frames(row["x"], info.dim)
            if parts is not None:
                parts.add(utt, int(row["num_samples"]), {layer: x})
            else:
                frames[utt.id] = x
            progress.update(float(row["duration_s"]))
    if parts is None:
        return [frames[utt.id] for utt in subset if utt.id in frames]
    parts.finish(subset, [])
    from speechunits.features import read_features_dir

    return [np.array(x) for _, x in read_features_dir(parts.out_dir, layer)]


def _fit_on_worker(sample: np.ndarray, encoder_info: Any, layer: int, k: int, fit_kwargs: dict[str, Any]) -> Any:
    """Ray task body: :func:`~speechunits.quantize.fit.fit_sample` with the caller's options."""
    from speechunits.quantize.fit import fit_sample

    return fit_sample(sample, k, encoder_info, layer, **fit_kwargs)


def ray_fit_sample(sample: np.ndarray, k: int, encoder_info: Any, layer: int, *, options: RayOptions,
                   **fit_kwargs: Any) -> Any:
    """:func:`speechunits.quantize.fit.fit_sample` of a :func:`ray_fit_source` sample: on one GPU
    of the cluster when it has one (and ``options.device`` is not ``cpu``), else on the driver.
    The result is the same codebook either way (up to the device's k-means arithmetic)."""
    from speechunits.quantize.fit import fit_sample

    with ray_session(options.address, num_cpus=options.num_cpus, verbose=options.verbose) as ray:
        gpus = cluster_resources().get("GPU", 0.0)
        if gpus < 1 or options.device == "cpu":
            log.info("k-means on the driver (the Ray cluster has no GPU for it)")
            return fit_sample(sample, k, encoder_info, layer, device=options.device, **fit_kwargs)
        log.info("k-means on one GPU of the Ray cluster (%d x %d frames)", *sample.shape)
        task = ray.remote(num_gpus=1)(_fit_on_worker)
        return ray.get(task.remote(sample, encoder_info, layer, k, {**fit_kwargs, "device": "cuda"}))
