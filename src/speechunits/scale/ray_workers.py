"""What runs inside Ray: the decode task and the encoder actors.

Everything here is plain Python on numpy batches (Ray Data's ``batch_format="numpy"``:
``{column: ndarray}``), imported by Ray workers by module path; this module itself never
imports ray, so it is also exercised without a cluster.

Row columns between stages (one row per utterance, ``idx`` = position in the job's plan):

* plan: ``idx`` int64, ``id`` str, ``path`` str (+ ``raw_format`` str with ``--raw-format``)
* decoded: plan + ``samples`` (float32 bytes at the encoder rate, empty on error),
  ``error`` str (empty when fine)
* results: ``idx``, ``error``, ``duration_s``, ``num_samples`` + the worker's payload columns
  (see :class:`FeaturesWorker`, :class:`UnitsWorker`, :class:`SampleWorker`)

Finite retries (:func:`guarded`): Ray retries a call whose worker process died without limit
(the right thing for a lost node), so a file that crashes or hangs the process would stall the
run forever. Every decode task and actor call therefore first asks the driver's
:class:`AttemptLedger` whether this call was attempted before. A first attempt runs the batch as
usual; a retried one runs its files one at a time, each recorded in the ledger before it starts
and cleared when it ends. A file whose own attempt was left open ``max_retries`` times (the
process died during it) is not run again: it becomes an error row naming the reason, and the run
goes on. A watchdog turns a hang (``timeout_s`` per file) into a process exit, hence into the
same path.
"""
from __future__ import annotations

import contextlib
import faulthandler
import functools
import logging
import os
import threading
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from speechunits.audio import Audio
from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def _objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object array (bytes/str values must not become a fixed-width numpy dtype)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def decode_batch(batch: Batch, *, sample_rate: int, min_samples: int, channel: int | None) -> Batch:
    """Ray task: load + resample every utterance of ``batch`` (same rules as the local loader).

    A row that arrives with a non-empty ``error`` (a file :func:`guarded` gave up on) is not read.
    """
    from speechunits.audio import RawFormat
    from speechunits.features.loading import load_one

    samples, errors = [], []
    raw_formats = batch.get("raw_format")  # present when the corpus was opened with --raw-format
    preset = batch.get("error")
    for i, (utt_id, path) in enumerate(zip(batch["id"], batch["path"])):
        if preset is not None and preset[i]:
            samples.append(b"")
            errors.append(str(preset[i]))
            continue
        raw_format = RawFormat.parse(str(raw_formats[i])) if raw_formats is not None else None
        item = load_one(Utterance(str(utt_id), str(path), raw_format=raw_format), sample_rate, min_samples, channel)
        samples.append(b"" if item.audio is None else item.audio.samples.tobytes())
        errors.append(item.error or "")
    out = dict(batch)  # extra plan columns (e.g. the frames a sampler wants) pass through
    out.update({"idx": np.asarray(batch["idx"], dtype=np.int64), "samples": _objects(samples),
                "error": _objects(errors)})
    return out


def count_batch(batch: Batch, *, sample_rate: int, min_samples: int, channel: int | None) -> Batch:
    """Ray task: samples at the encoder rate of every utterance (0 and ``error`` when unusable)."""
    decoded = decode_batch(batch, sample_rate=sample_rate, min_samples=min_samples, channel=channel)
    return {"idx": decoded["idx"], "error": decoded["error"],
            "num_samples": np.asarray([len(raw) // 4 for raw in decoded["samples"]], dtype=np.int64)}


# -- finite retries ------------------------------------------------------------------------------
#: Retries of a file whose processing ended the worker process (``--max-retries``).
DEFAULT_MAX_RETRIES = 2
#: Seconds after a watchdog's deadline before faulthandler's C watchdog (which needs no GIL, so
#: it also fires when native code hangs holding it) ends the process.
WATCHDOG_GRACE_S = 30.0
#: Exit status of a worker process ended by its watchdog.
EXIT_TIMED_OUT = 124
#: What the ledger records for an attempt still open when its process died.
DIED = "ended the worker process (a native crash, out of memory, or killed)"


class AttemptLedger:
    """Attempts of calls and files in one run; a Ray actor owned by the driver (plain object in tests).

    Keys: ``(stage, idx, ...)`` for calls, ``(stage, idx)`` for files (``idx`` = plan position).
    Only open attempts and failures are kept, so memory follows the calls in flight, not the corpus.
    """

    def __init__(self) -> None:
        self._open_calls: dict[tuple[Any, ...], int] = {}
        self._retried_calls = 0
        self._open: dict[tuple[Any, ...], str] = {}
        self._failures: dict[tuple[Any, ...], list[str]] = {}
        self._given_up: list[tuple[Any, ...]] = []

    def begin_call(self, key: tuple[Any, ...]) -> int:
        """Open an attempt of a call; returns how many earlier attempts of it never ended (their
        process died)."""
        before = self._open_calls.get(key, 0)
        self._open_calls[key] = before + 1
        self._retried_calls += bool(before)
        return before

    def end_call(self, key: tuple[Any, ...]) -> None:
        self._open_calls.pop(key, None)

    def begin(self, key: tuple[Any, ...]) -> list[str]:
        """Open an attempt of one file; returns the reasons its earlier attempts ended the process."""
        if key in self._open:
            self._failures.setdefault(key, []).append(self._open.pop(key))
        self._open[key] = DIED
        return list(self._failures.get(key, []))

    def note(self, key: tuple[Any, ...], reason: str) -> None:
        """Why the open attempt of ``key`` is about to end its process (e.g. a timeout)."""
        self._open[key] = reason

    def end(self, key: tuple[Any, ...]) -> None:
        self._open.pop(key, None)

    def give_up(self, key: tuple[Any, ...]) -> None:
        self._open.pop(key, None)
        self._given_up.append(key)

    def summary(self) -> dict[str, int]:
        """``retried_calls`` (calls run again after their process ended), ``failures`` (file
        attempts that ended a process) and ``given_up`` (files recorded as errors)."""
        return {"retried_calls": self._retried_calls,
                "failures": sum(len(v) for v in self._failures.values()), "given_up": len(self._given_up)}


def _ask(ledger: Any, method: str, *args: Any) -> Any:
    """Call ``ledger.method(*args)``: through Ray for an actor handle, directly otherwise."""
    bound = getattr(ledger, method)
    remote = getattr(bound, "remote", None)
    if remote is None:
        return bound(*args)
    import ray

    return ray.get(remote(*args))


def _tell(ledger: Any, method: str, *args: Any) -> None:
    """Like :func:`_ask`, without waiting for the answer (calls from one worker stay in order)."""
    bound = getattr(ledger, method)
    remote = getattr(bound, "remote", None)
    if remote is None:
        bound(*args)
    else:
        remote(*args)


@contextlib.contextmanager
def watchdog(seconds: float | None, ledger: Any = None, key: tuple[Any, ...] | None = None,
             exit_process: Callable[[int], Any] = os._exit) -> Iterator[None]:
    """End this process if the block runs longer than ``seconds`` (``None``: no limit), after
    telling the ledger why (so the retry records a timeout, not a crash). Ray then restarts the
    worker and retries the call, and :func:`guarded` isolates the file."""
    if seconds is None:
        yield
        return

    def expire() -> None:
        reason = f"timed out after {seconds:g} s (--utterance-timeout)"
        if ledger is not None and key is not None:
            with contextlib.suppress(Exception):
                _ask(ledger, "note", key, reason)
        log.error("%s: ending this worker process so that Ray restarts it", reason)
        exit_process(EXIT_TIMED_OUT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(seconds + WATCHDOG_GRACE_S, exit=True)
    try:
        yield
    finally:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


def _concat(parts: list[Batch]) -> Batch:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def guarded(batch: Batch, process: Callable[[Batch], Batch], *, ledger: Any = None, stage: str = "encode",
            max_retries: int = DEFAULT_MAX_RETRIES, timeout_s: float | None = None) -> Batch:
    """``process(batch)`` with a bounded number of retries per file (see the module docstring).

    Args:
        ledger: the run's :class:`AttemptLedger` (``None``: just ``process(batch)``).
        stage: names the pipeline stage in ledger keys (decode and encode count separately).
        max_retries: attempts of a file after the first that may end the process; a file
            whose process died ``1 + max_retries`` times (counting its first, batched, attempt)
            becomes an error row. ``0``: every file of a call whose process died is given up.
        timeout_s: seconds per file before the watchdog ends the process (``None``: none).
    """
    if ledger is None:
        with watchdog(None if timeout_s is None else timeout_s * len(batch["idx"])):
            return process(batch)
    idxs = [int(i) for i in batch["idx"]]
    call = (stage, *idxs)
    if _ask(ledger, "begin_call", call) == 0:
        with watchdog(None if timeout_s is None else timeout_s * len(idxs)):
            out = process(batch)
        _tell(ledger, "end_call", call)
        return out
    parts = []
    for i, idx in enumerate(idxs):
        one = {name: column[i:i + 1] for name, column in batch.items()}
        key = (stage, idx)
        failures = _ask(ledger, "begin", key)
        if len(failures) >= max_retries:
            path = str(one["path"][0]) if "path" in one else f"row {idx}"
            reason = failures[-1] if failures else f"was in a call that {DIED}"
            one["error"] = _objects([f"{path}: {reason} ({1 + len(failures)} attempt(s), "
                                     f"--max-retries {max_retries}); given up"])
            _ask(ledger, "give_up", key)
            log.error("%s", one["error"][0])
            parts.append(process(one))
            continue
        with watchdog(timeout_s, ledger, key):
            parts.append(process(one))
        _ask(ledger, "end", key)
    _tell(ledger, "end_call", call)
    return _concat(parts)


def guarded_task(batch: Batch, *, fn: Callable[..., Batch], fn_kwargs: dict[str, Any],
                 guard: dict[str, Any] | None = None) -> Batch:
    """Ray task body: ``fn(batch, **fn_kwargs)`` under :func:`guarded` (``guard``: its options)."""
    return guarded(batch, functools.partial(fn, **fn_kwargs), stage=getattr(fn, "__name__", "task"), **(guard or {}))


class EncoderWorker:
    """Base of the actors: loads the encoder once, turns decoded rows into feature items.

    Args:
        encoder_name: what :func:`speechunits.encoders.load_encoder` takes.
        encoder_identity: the identity the driver expects (refuses a different model, e.g.
            a hub model that changed between the driver's and the worker's download); ``None``
            skips the check.
        device, dtype: encoder placement and precision.
        layers: layers to extract.
        threads: torch intra-op threads (the actor's CPU share).
        extract_kwargs: passed to :func:`speechunits.features.iter_features`
            (``max_batch_seconds``, ``chunk_seconds`` ...).
        guard: options of :func:`guarded` (``ledger``, ``max_retries``, ``timeout_s``).

    Subclasses implement :meth:`process`; calling the actor runs it under :func:`guarded`.
    """

    def __init__(self, encoder_name: str, encoder_identity: str | None, device: str, dtype: str,
                 layers: Sequence[int], threads: int = 1, extract_kwargs: dict[str, Any] | None = None,
                 guard: dict[str, Any] | None = None):
        import torch

        from speechunits.encoders import load_encoder

        torch.set_num_threads(max(1, int(threads)))
        self.encoder = load_encoder(encoder_name, device=device, dtype=dtype)
        if encoder_identity is not None and self.encoder.info.identity != encoder_identity:
            raise SpeechUnitsError(f"{encoder_name}: the worker loaded a model with identity "
                                   f"{self.encoder.info.identity}, the driver expects {encoder_identity}")
        self.layers = self.encoder.check_layers(layers)
        self.extract_kwargs = dict(extract_kwargs or {})
        self.guard = dict(guard or {})

    def __call__(self, batch: Batch) -> Batch:
        return guarded(batch, self.process, stage="encode", **self.guard)

    def process(self, batch: Batch) -> Batch:
        """Result columns of every row of ``batch`` (rows with an ``error`` are not encoded)."""
        raise NotImplementedError

    def feature_items(self, batch: Batch) -> list[Any]:
        """:class:`~speechunits.features.FeatureItem` of every row, in row order (errors kept)."""
        from speechunits.features import LoadedAudio, iter_features

        rate = self.encoder.info.sample_rate
        items = []
        for utt_id, path, raw, error in zip(batch["id"], batch["path"], batch["samples"], batch["error"]):
            utt = Utterance(str(utt_id), str(path))
            if error:
                items.append(LoadedAudio(utt, None, str(error)))
            else:
                audio = Audio(np.frombuffer(raw, dtype=np.float32).copy(), rate, str(path))
                items.append(LoadedAudio(utt, audio, None))
        return list(iter_features(self.encoder, [i.utt for i in items], self.layers, audio_items=items,
                                  on_error="skip", quiet=True, **self.extract_kwargs))

    @staticmethod
    def common_columns(batch: Batch, items: list[Any]) -> Batch:
        return {
            "idx": np.asarray(batch["idx"], dtype=np.int64),
            "error": _objects([item.error or "" for item in items]),
            "duration_s": np.asarray([item.duration_s for item in items], dtype=np.float64),
            "num_samples": np.asarray([item.num_samples for item in items], dtype=np.int64),
        }


class FeaturesWorker(EncoderWorker):
    """Actor for ``features``: columns ``f{L}`` (float32 ``[frames, dim]`` bytes) per layer."""

    def process(self, batch: Batch) -> Batch:
        items = self.feature_items(batch)
        out = self.common_columns(batch, items)
        for layer in self.layers:
            out[f"f{layer}"] = _objects([b"" if it.features is None else
                                         np.ascontiguousarray(it.features[layer], dtype=np.float32).tobytes()
                                         for it in items])
        return out


class UnitsWorker(EncoderWorker):
    """Actor for ``encode``: columns ``u{j}`` (int32 ids bytes) and ``d{j}`` (int32 durations
    bytes, empty without dedup) per codebook stream ``j``; units come from the same
    :meth:`UnitTokenizer.units_from_features` the local ``encode`` uses.

    ``codebooks`` are the loaded :class:`~speechunits.quantize.Codebook` objects (shipped by
    Ray from the driver, so workers need no access to the driver's codebook directories) and
    ``stream_layers`` the driver tokenizer's layer per stream."""

    def __init__(self, encoder_name: str, encoder_identity: str | None, device: str, dtype: str,
                 codebooks: Sequence[Any], stream_layers: Sequence[int], dedup: bool, threads: int = 1,
                 extract_kwargs: dict[str, Any] | None = None, guard: dict[str, Any] | None = None):
        from speechunits.units.tokenizer import UnitTokenizer

        super().__init__(encoder_name, encoder_identity, device, dtype, sorted(set(stream_layers)),
                         threads, extract_kwargs, guard)
        self.tokenizer = UnitTokenizer(self.encoder, codebooks, dedup=dedup, layers=list(stream_layers))
        self.layers = self.tokenizer.layers

    def process(self, batch: Batch) -> Batch:
        items = self.feature_items(batch)
        out = self.common_columns(batch, items)
        streams = [self.tokenizer.units_from_features(it.features) if it.features is not None else None
                   for it in items]
        for j in range(len(self.tokenizer.codebooks)):
            out[f"u{j}"] = _objects([b"" if s is None else s[j].ids.astype(np.int32).tobytes() for s in streams])
            out[f"d{j}"] = _objects([b"" if s is None or s[j].durations is None else
                                     s[j].durations.astype(np.int32).tobytes() for s in streams])
        return out


def int32s(raw: bytes) -> np.ndarray:
    """int64 array from int32 bytes."""
    return np.frombuffer(raw, dtype=np.int32).astype(np.int64)


def float32_frames(raw: bytes, dim: int) -> np.ndarray:
    """float32 ``[frames, dim]`` from bytes (a writable copy)."""
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, dim).copy()


class SampleWorker(EncoderWorker):
    """Actor for ``fit``: returns only the frames the driver selected.

    Plan columns ``select`` (int64 frame indices, bytes) and ``frames`` (the frame count the
    driver expects); output column ``x`` (float32 ``[len(select), dim]`` bytes). A frame count
    that differs from the expectation becomes an error row.
    """

    def __init__(self, encoder_name: str, encoder_identity: str | None, device: str, dtype: str, layer: int,
                 threads: int = 1, extract_kwargs: dict[str, Any] | None = None,
                 guard: dict[str, Any] | None = None):
        super().__init__(encoder_name, encoder_identity, device, dtype, [layer], threads, extract_kwargs, guard)
        self.layer = int(layer)

    def process(self, batch: Batch) -> Batch:
        items = self.feature_items(batch)
        errors, frames = [], []
        for item, raw, expected in zip(items, batch["select"], batch["frames"]):
            if item.features is None:
                errors.append(item.error or "unknown error")
                frames.append(b"")
                continue
            feats = item.features[self.layer]
            if feats.shape[0] != int(expected):
                errors.append(f"{item.utt.path}: {feats.shape[0]} frames, expected {int(expected)}")
                frames.append(b"")
                continue
            errors.append("")
            frames.append(np.ascontiguousarray(feats[np.frombuffer(raw, dtype=np.int64)], dtype=np.float32).tobytes())
        out = self.common_columns(batch, items)
        out["error"] = _objects(errors)
        out["x"] = _objects(frames)
        return out
