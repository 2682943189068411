"""The Ray Data pipeline under every Ray job (``features``, ``encode``, ``fit``): options, resources, in-order results.

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

The jobs built on it: :mod:`speechunits.scale.ray_encode` (features, units) and
:mod:`speechunits.scale.ray_fit` (the k-means frame sample and fit).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from speechunits.audio import size_hint
from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError
from speechunits.scale import ray_workers
from speechunits.scale.ray_session import cluster_resources, ray_session

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
class ResolvedResources:
    """What a run gets on the connected cluster: encoder actors, GPUs per actor, decode tasks in
    flight, CPUs per decode task and the actors' device."""

    workers: int
    gpus: float
    loaders: int
    decode_cpus: float
    device: str


def resolve_resources(options: RayOptions) -> ResolvedResources:
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
    return ResolvedResources(workers, gpus, loaders, decode_cpus, "cuda" if gpus > 0 else "cpu")


def _build(ray: Any, rows: list[dict[str, Any]], worker_cls: type | None, worker_kwargs: dict[str, Any], *,
           decoder: Any, sample_rate: int, min_samples: int, channel: int | None, options: RayOptions,
           resolved: ResolvedResources, guard: dict[str, Any]) -> Any:
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
    """``rows`` sorted by stored size (:func:`speechunits.audio.size_hint`, a proxy for duration: no
    header is read) within
    consecutive windows of ``window`` rows.

    Without it an actor call of 8 utterances in corpus order padded its batch to the longest
    one: on 1.8-4.2 s utterances ~25 % of an actor's time went to padding (bench/scale.py).
    Windows bound how far a result can arrive ahead of its corpus position, so the driver's
    reorder buffer stays at about one window of results.
    """
    def size(row: dict[str, Any]) -> int:
        return size_hint(row["path"])

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


def execute(utts: Sequence[Utterance], worker_cls: type | None, worker_kwargs: dict[str, Any], *,
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
        resolved = resolve_resources(options)
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


def extract_kwargs(max_batch_seconds: float | None, batch_size: int | None, chunk_seconds: float | None,
                   chunk_context_seconds: float | None) -> dict[str, Any]:
    """The encoder's ``extract_batch`` options the caller set (``None`` ones are left to its defaults)."""
    kwargs = {"max_batch_seconds": max_batch_seconds, "batch_size": batch_size, "chunk_seconds": chunk_seconds,
              "chunk_context_seconds": chunk_context_seconds}
    return {key: value for key, value in kwargs.items() if value is not None}


