"""Ray Data backend for ``features``, ``encode`` and ``fit`` (frame sampling and k-means).

Pipeline (one Ray Data dataset per run)::

    driver: corpus -> plan rows (idx, id, path), skipping what the output already holds
      -> map_batches(decode_batch)        CPU tasks: read + downmix + resample (--loader-workers)
      -> map_batches(<Worker> actor pool) encoder (+ codebooks) per actor (--num-workers,
                                          --gpus-per-worker); Ray Data restarts a dead actor
                                          and retries its calls (max_restarts=-1,
                                          max_task_retries=-1 are its defaults); the run's
                                          AttemptLedger actor bounds the retries per file
                                          (ray_workers.guarded, --max-retries)
      -> driver: results put back in corpus order (keyed by idx; a retried task's duplicate
         output is dropped) and written by the same writers as the local backend.

Why the driver writes: units are ~1000x smaller than audio, so one writer keeps up with a
large cluster, and writing in corpus order through the local backend's own resumable writer
gives the same shard layout, metadata and content, and the same resume guarantee (kill the
driver, run the command again: finished shards are kept, their utterances are not sent to
the cluster again). Output URIs are staged through :mod:`speechunits.scale.remote`.

The functions here mirror the local ones (:func:`speechunits.features.iter_features`,
:func:`speechunits.units.encode_corpus.encode_corpus`) and take the same arguments plus
:class:`RayOptions`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from speechunits.corpus import Utterance
from speechunits.encoders.base import Encoder
from speechunits.errors import SpeechUnitsError
from speechunits.progress import AudioProgress
from speechunits.scale import ray_workers
from speechunits.scale.ray_session import cluster_resources, ray_session
from speechunits.units.parquet_dir import DEFAULT_SHARD_SECONDS

log = logging.getLogger(__name__)

#: Utterances per decode task and per encoder-actor call (small: keeps every actor busy and
#: bounds what a killed actor loses; the encoder still batches inside a call).
DEFAULT_ROWS_PER_CALL = 8
#: Plan rows are sorted by file size within windows of this many calls, so each actor call
#: holds utterances of similar length (the encoder pads a call's batch to its longest one).
SORT_WINDOW_CALLS = 8
#: Actor classes per job (a table, so tests can substitute a worker that misbehaves).
WORKERS: dict[str, type] = {"features": ray_workers.FeaturesWorker, "units": ray_workers.UnitsWorker,
                             "sample": ray_workers.SampleWorker}


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray.

    Attributes:
        address: existing cluster (``auto``, ``ray://host:10001``, ``host:6379``); ``None`` starts
            a local Ray with this machine's cores (``num_cpus`` to override).
        num_workers: encoder actors (default: cluster GPUs / ``gpus_per_worker``, else
            cluster CPUs / ``cpus_per_worker``).
        gpus_per_worker: GPUs per encoder actor (``None``: 1 when the cluster has GPUs and
            ``device`` is not ``cpu``, else 0; fractions share a GPU).
        device: the requested device (``auto``/``cpu``/``cuda``, as ``--device``); actors run on
            ``cuda`` when they hold a GPU, else on ``cpu``. (The driver's own encoder may sit on a
            CPU-only head node; it only names the model.)
        cpus_per_worker: CPUs per encoder actor (its torch threads).
        loader_workers: decode tasks in flight (default: CPUs left by GPU actors, else one per
            actor). On CPU-only runs decode tasks reserve no CPU: decoding costs ~1 % of an SSL
            encoder and rides along with the actors.
        rows_per_call: utterances per decode task and per actor call.
        num_cpus: size of an embedded Ray (ignored with ``address``).
        max_retries: retries of a file whose processing ended its worker process (a native
            crash, an out-of-memory kill, a timeout); then it is recorded as failed and the run
            goes on (see :func:`~speechunits.scale.ray_workers.guarded`).
        utterance_timeout_s: seconds a worker may spend on one file before it is ended and the
            file retried (``None``: no limit; a batch of n files gets n times this).
        verbose: let Ray's logs through.
    """

    address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    loader_workers: int | None = None
    rows_per_call: int = DEFAULT_ROWS_PER_CALL
    num_cpus: int | None = None
    device: str = "auto"
    max_retries: int = ray_workers.DEFAULT_MAX_RETRIES
    utterance_timeout_s: float | None = None
    verbose: bool = False

    def check(self) -> None:
        """Raise :class:`SpeechUnitsError` naming the bad option."""
        if self.num_workers is not None and self.num_workers < 1:
            raise SpeechUnitsError(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise SpeechUnitsError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker <= 0:
            raise SpeechUnitsError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if self.loader_workers is not None and self.loader_workers < 1:
            raise SpeechUnitsError(f"--loader-workers must be >= 1 with --backend ray, got {self.loader_workers}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise SpeechUnitsError(f"--device: expected auto, cpu or cuda, got {self.device!r}")
        if self.rows_per_call < 1:
            raise SpeechUnitsError(f"rows per call must be >= 1, got {self.rows_per_call}")
        if self.max_retries < 0:
            raise SpeechUnitsError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.utterance_timeout_s is not None and not self.utterance_timeout_s > 0:
            raise SpeechUnitsError(f"--utterance-timeout must be > 0, got {self.utterance_timeout_s}")


@dataclass
class RunStats:
    """What the last Ray run of this process did (for logs and tests)."""

    planned: int = 0
    results: int = 0
    duplicates_dropped: int = 0
    workers: int = 0
    gpus_per_worker: float = 0.0
    loader_workers: int = 0
    startup_s: float = 0.0
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


#: Statistics of the most recent run (read by tests and bench/scale.py).
LAST_RUN = RunStats()


@dataclass(frozen=True)
class _Resolved:
    workers: int
    gpus: float
    loaders: int
    decode_cpus: float
    device: str


def _resolve(options: RayOptions) -> _Resolved:
    """Worker counts and resources from the options and the connected cluster."""
    device = options.device
    resources = cluster_resources()
    cpus, gpus_total = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if gpus_total > 0 and device != "cpu" else 0.0
    if gpus > 0 and gpus_total < gpus:
        raise SpeechUnitsError(f"--gpus-per-worker {gpus}: the Ray cluster has {gpus_total:g} GPU(s)")
    if device == "cuda" and gpus_total == 0:
        raise SpeechUnitsError("--device cuda: the Ray cluster has no GPU")
    if gpus == 0 and device == "cuda":
        raise SpeechUnitsError("--device cuda with --backend ray needs --gpus-per-worker > 0")
    if options.num_workers is not None:
        workers = options.num_workers
    elif gpus > 0:
        workers = max(1, int(gpus_total // gpus))
    else:
        workers = max(1, int(cpus // options.cpus_per_worker))
    if gpus > 0:
        loaders = options.loader_workers or max(1, int(cpus - workers * options.cpus_per_worker))
        decode_cpus = 1.0
    else:
        loaders = options.loader_workers or workers
        decode_cpus = 0.0
    return _Resolved(workers, gpus, loaders, decode_cpus, "cuda" if gpus > 0 else "cpu")


def _build(ray: Any, rows: list[dict[str, Any]], worker_cls: type | None, worker_kwargs: dict[str, Any], *,
           decoder: Any, sample_rate: int, min_samples: int, channel: int | None, options: RayOptions,
           resolved: _Resolved, guard: dict[str, Any]) -> Any:
    """The Ray Data dataset: plan rows -> decode tasks -> encoder actor pool (if ``worker_cls``);
    both stages run under :func:`~speechunits.scale.ray_workers.guarded` with ``guard``."""
    import ray.data

    per_call = options.rows_per_call
    ds = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / per_call)))
    ds = ds.map_batches(
        ray_workers.guarded_task,
        fn_kwargs={"fn": decoder, "guard": guard,
                   "fn_kwargs": {"sample_rate": sample_rate, "min_samples": min_samples, "channel": channel}},
        batch_size=per_call, batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(size=resolved.loaders), num_cpus=resolved.decode_cpus,
    )
    if worker_cls is None:
        return ds
    return ds.map_batches(
        worker_cls, fn_constructor_kwargs={**worker_kwargs, "guard": guard},
        batch_size=per_call, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=resolved.workers),
        num_cpus=options.cpus_per_worker, num_gpus=resolved.gpus or None,
    )


def length_sorted(rows: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """``rows`` sorted by file size (a proxy for duration: no header is read) within
    consecutive windows of ``window`` rows.

    Without it an actor call of 8 utterances in corpus order padded its batch to the longest
    one: on 1.8-4.2 s utterances ~25 % of an actor's time went to padding (bench/scale.py).
    Windows bound how far a result can arrive ahead of its corpus position, so the driver's
    reorder buffer stays at about one window of results.
    """
    def size(row: dict[str, Any]) -> int:
        try:
            return os.path.getsize(row["path"])
        except OSError:  # decoding reports it; where it sits in the window does not matter
            return 0

    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), max(1, window)):
        out.extend(sorted(rows[start:start + window], key=size))
    return out


def _rows(batch: dict[str, np.ndarray]) -> Iterator[dict[str, Any]]:
    names = list(batch)
    for values in zip(*(batch[name] for name in names)):
        yield dict(zip(names, values))


def _in_order(batches: Iterable[dict[str, np.ndarray]], count: int, stats: RunStats) -> Iterator[dict[str, Any]]:
    """Rows with ``idx`` 0..count-1 in order; duplicates (a retried task's output) are dropped."""
    buffer: dict[int, dict[str, Any]] = {}
    next_idx = 0
    for batch in batches:
        for row in _rows(batch):
            idx = int(row["idx"])
            if idx < next_idx or idx in buffer:
                stats.duplicates_dropped += 1
                log.debug("dropping a duplicate result for row %d", idx)
                continue
            buffer[idx] = row
            while next_idx in buffer:
                stats.results += 1
                yield buffer.pop(next_idx)
                next_idx += 1
    if next_idx != count:
        raise SpeechUnitsError(f"the Ray pipeline returned {next_idx} of {count} utterances in order "
                               f"({len(buffer)} out of order); run the command again to finish")


def _execute(utts: Sequence[Utterance], worker_cls: type | None, worker_kwargs: dict[str, Any], *,
             sample_rate: int, min_samples: int, channel: int | None, options: RayOptions,
             decoder: Any = ray_workers.decode_batch,
             extra: Sequence[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Start/join Ray, run the pipeline, yield result rows in plan order.

    ``extra``: additional plan columns per utterance (passed through decoding to the workers).
    ``worker_cls=None`` runs the decode stage only (``decoder`` decides what it returns).
    """
    global LAST_RUN
    options.check()
    stats = RunStats(planned=len(utts))
    LAST_RUN = stats
    started = time.perf_counter()
    with ray_session(options.address, num_cpus=options.num_cpus, verbose=options.verbose) as ray:
        resolved = _resolve(options)
        stats.workers, stats.gpus_per_worker, stats.loader_workers = resolved.workers, resolved.gpus, resolved.loaders
        stats.startup_s = time.perf_counter() - started
        log.info("Ray: %d encoder worker(s) (%g GPU, %g CPU each), %d loader task(s), %d utterance(s)",
                 resolved.workers if worker_cls else 0, resolved.gpus, options.cpus_per_worker, resolved.loaders,
                 len(utts))
        if not utts:
            return
        worker_kwargs = {**worker_kwargs, "device": resolved.device,
                         "threads": max(1, int(round(options.cpus_per_worker)))}
        rows = [{"idx": i, "id": u.id, "path": u.path, **({"raw_format": str(u.raw_format)} if u.raw_format else {}),
                 **(extra[i] if extra is not None else {})} for i, u in enumerate(utts)]
        rows = length_sorted(rows, options.rows_per_call * SORT_WINDOW_CALLS)
        ledger = ray.remote(num_cpus=0)(ray_workers.AttemptLedger).remote()
        guard = {"ledger": ledger, "max_retries": options.max_retries, "timeout_s": options.utterance_timeout_s}
        ds = _build(ray, rows, worker_cls, worker_kwargs, decoder=decoder, sample_rate=sample_rate,
                    min_samples=min_samples, channel=channel, options=options, resolved=resolved, guard=guard)
        try:
            yield from _in_order(ds.iter_batches(batch_size=None, batch_format="numpy"), len(utts), stats)
            _report_retries(ray, ledger, stats)
        finally:
            stats.wall_s = time.perf_counter() - started
            with contextlib.suppress(Exception):  # Ray may already be going down (an interrupt)
                ray.kill(ledger)


def _report_retries(ray: Any, ledger: Any, stats: RunStats) -> None:
    """Tell the user once, in our words, that worker processes died and what it cost."""
    summary = ray.get(ledger.summary.remote())
    stats.extra.update(summary)
    if summary["retried_calls"]:
        log.warning("Ray: %d call(s) were run again because their worker process ended (a native crash, out of "
                    "memory, a timeout or a lost node); %d file(s) given up after --max-retries (listed with the "
                    "errors)", summary["retried_calls"], summary["given_up"])


def _extract_kwargs(max_batch_seconds: float | None, batch_size: int | None, chunk_seconds: float | None,
                    chunk_context_seconds: float | None) -> dict[str, Any]:
    kwargs = {"max_batch_seconds": max_batch_seconds, "batch_size": batch_size, "chunk_seconds": chunk_seconds,
              "chunk_context_seconds": chunk_context_seconds}
    return {key: value for key, value in kwargs.items() if value is not None}


# -- features ------------------------------------------------------------------------------------
def ray_iter_features(encoder: Encoder, corpus: Iterable[Utterance], layers: Sequence[int], *,
                      options: RayOptions, max_batch_seconds: float | None = None, batch_size: int | None = None,
                      chunk_seconds: float | None = None, chunk_context_seconds: float | None = None,
                      on_error: str = "skip", channel: int | None = None, quiet: bool = False,
                      total_seconds: float | None = None) -> Iterator[Any]:
    """Ray counterpart of :func:`speechunits.features.iter_features`: the same
    :class:`~speechunits.features.FeatureItem` stream, in corpus order, computed by actors.

    ``encoder`` (loaded on the driver) names the model the actors load; they refuse a model
    with a different identity.
    """
    from speechunits.features import FeatureItem

    if on_error not in ("skip", "fail"):
        raise SpeechUnitsError(f"--on-error: expected skip or fail, got {on_error!r}")
    info = encoder.info
    layers = encoder.check_layers(layers)
    utts = list(corpus)
    kwargs = {"encoder_name": info.name, "encoder_identity": info.identity, "dtype": encoder.dtype,
              "layers": layers,
              "extract_kwargs": _extract_kwargs(max_batch_seconds, batch_size, chunk_seconds, chunk_context_seconds)}
    rows = _execute(utts, WORKERS["features"], kwargs, sample_rate=info.sample_rate,
                    min_samples=info.receptive_field, channel=channel, options=options)
    with AudioProgress(total_seconds, desc="features (ray)", quiet=quiet) as progress:
        for row in rows:
            utt = utts[int(row["idx"])]
            error = str(row["error"]) or None
            if error is not None:
                if on_error == "fail":
                    raise SpeechUnitsError(error)
                yield FeatureItem(utt, None, error, float(row["duration_s"]), int(row["num_samples"]))
                continue
            features = {layer: ray_workers.float32_frames(row[f"f{layer}"], info.dim) for layer in layers}
            progress.update(float(row["duration_s"]))
            yield FeatureItem(utt, features, None, float(row["duration_s"]), int(row["num_samples"]))


# -- encode --------------------------------------------------------------------------------------
def ray_results(tokenizer: Any, *, options: RayOptions, max_batch_seconds: float | None = None,
                channel: int | None = None) -> Any:
    """A :data:`~speechunits.scale.encode_job.ResultsFn` whose units come from Ray actors.

    ``tokenizer`` (a :class:`~speechunits.units.tokenizer.UnitTokenizer` on the driver) supplies
    the encoder the actors load (checked by identity), the codebooks (shipped to them) and the
    dedup flag; the actors run the same :meth:`UnitTokenizer.units_from_features`.
    """
    from speechunits.units.encode_corpus import UnitResult
    from speechunits.units.units import Units

    encoder: Encoder = tokenizer.encoder
    codebooks = list(tokenizer.codebooks)
    kwargs = {"encoder_name": encoder.info.name, "encoder_identity": encoder.info.identity,
              "dtype": encoder.dtype, "codebooks": codebooks, "stream_layers": list(tokenizer.stream_layers),
              "dedup": tokenizer.dedup,
              "extract_kwargs": _extract_kwargs(max_batch_seconds, None, None, None)}

    def results(todo: Iterable[Utterance]) -> Iterator[Any]:
        todo = list(todo)
        rows = _execute(todo, WORKERS["units"], kwargs, sample_rate=encoder.info.sample_rate,
                        min_samples=encoder.info.receptive_field, channel=channel, options=options)
        for row in rows:
            utt = todo[int(row["idx"])]
            error = str(row["error"]) or None
            duration = float(row["duration_s"])
            if error is not None:
                yield UnitResult(utt, None, error, duration)
                continue
            streams = [Units(ray_workers.int32s(row[f"u{j}"]), tokenizer.frame_rate, int(cb.k),
                             ray_workers.int32s(row[f"d{j}"]) if tokenizer.dedup else None)
                       for j, cb in enumerate(codebooks)]
            yield UnitResult(utt, streams, None, duration)

    return results


def ray_encode_corpus(corpus: Iterable[Utterance], tokenizer: Any, out_dir: str | os.PathLike[str], *,
                      options: RayOptions, job: tuple[int, int] = (0, 1), rows_per_file: int | None = None,
                      shard_seconds: float | None = DEFAULT_SHARD_SECONDS, max_batch_seconds: float | None = None, on_error: str = "skip", channel: int | None = None,
                      quiet: bool = False, total_seconds: float | None = None) -> Any:
    """Ray counterpart of :func:`speechunits.units.encode_corpus.encode_corpus`: the same stores
    and report; ``out_dir`` may also be a filesystem URI (``s3://...``, ``file://...``)."""
    from speechunits.scale.encode_job import run_encode

    results = ray_results(tokenizer, options=options, max_batch_seconds=max_batch_seconds, channel=channel)
    return run_encode(results, corpus, tokenizer, out_dir, job=job, rows_per_file=rows_per_file,
                      shard_seconds=shard_seconds, on_error=on_error, quiet=quiet, total_seconds=total_seconds, desc="encode (ray)")


# -- fit -----------------------------------------------------------------------------------------
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
                  "layer": chosen, "extract_kwargs": _extract_kwargs(max_batch_seconds, None, None, None)}
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

    for row in _execute(utts[start:], None, {}, decoder=ray_workers.count_batch, **common):
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
    import contextlib as _contextlib

    from speechunits.timed_parts import TimedFlusher

    kept = parts.kept(subset) if parts is not None else set()
    todo = [j for j, utt in enumerate(subset) if utt.id not in kept]
    frames: dict[str, np.ndarray] = {}
    flusher: Any = _contextlib.nullcontext()
    if parts is not None and parts.shard_seconds:
        flusher = TimedFlusher.for_seconds([parts], parts.shard_seconds)
    with _contextlib.ExitStack() as stack:
        if parts is not None:
            stack.callback(parts.close)  # finished utterances are kept, also after an error
        stack.enter_context(flusher)
        progress = stack.enter_context(AudioProgress(None, desc="fit sample (ray)", quiet=quiet))
        rows = _execute([subset[j] for j in todo], WORKERS["sample"], kwargs, extra=[extra[j] for j in todo],
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
