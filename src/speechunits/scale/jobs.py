"""The corpus jobs on the chosen backend: what ``features``, ``encode`` and ``fit`` run.

Each entry point takes typed parameters and a :class:`~speechunits.scale.options.ScaleOptions`:

* ``backend="local"`` (default): the local loop, with audio decoded ahead of the encoder by
  ``loader_workers`` threads (``0``: the plain serial loop). Ray is never imported.
* ``backend="ray"``: :mod:`speechunits.scale.ray_encode` / :mod:`~speechunits.scale.ray_fit` on
  ``ray_address`` or an embedded local Ray.

``device`` is the *requested* encoder device (``auto``/``cpu``/``cuda``): Ray actors resolve it
on their own node (the driver's encoder may sit on a CPU-only head node).
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from speechunits.corpus import Utterance
from speechunits.features.defaults import (
    DEFAULT_CHUNK_CONTEXT_SECONDS,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_MAX_BATCH_SECONDS,
)
from speechunits.quantize.options import DEFAULT_MAX_FRAMES
from speechunits.scale.options import ScaleOptions
from speechunits.units.parquet_dir import DEFAULT_SHARD_SECONDS

if TYPE_CHECKING:
    from speechunits.audio import RawFormat
    from speechunits.encoders.base import Encoder, EncoderInfo
    from speechunits.features import FeatureItem
    from speechunits.features.write import FeaturesReport
    from speechunits.quantize.codebook import Codebook
    from speechunits.quantize.fit import FeatureSource
    from speechunits.units.encode_corpus import EncodeReport
    from speechunits.units.tokenizer import UnitTokenizer

log = logging.getLogger(__name__)

LOCAL = ScaleOptions()


def feature_items(encoder: Encoder, corpus: Iterable[Utterance], layers: Sequence[int], *,
                  options: ScaleOptions = LOCAL, device: str = "auto",
                  max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS, batch_size: int | None = None,
                  chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                  chunk_context_seconds: float = DEFAULT_CHUNK_CONTEXT_SECONDS, on_error: str = "skip",
                  channel: int | None = None, quiet: bool = False,
                  total_seconds: float | None = None) -> Iterator[FeatureItem]:
    """:func:`speechunits.features.iter_features` on the chosen backend: the same items in corpus order."""
    from speechunits.features import iter_features

    extract = dict(max_batch_seconds=max_batch_seconds, batch_size=batch_size, chunk_seconds=chunk_seconds,
                   chunk_context_seconds=chunk_context_seconds, on_error=on_error, channel=channel, quiet=quiet,
                   total_seconds=total_seconds)
    if options.is_ray:
        from speechunits.scale.ray_encode import ray_iter_features

        return ray_iter_features(encoder, corpus, layers, options=options.ray_options(device),
                                 **extract)  # type: ignore[arg-type]
    workers = options.local_loader_workers()
    if workers == 0:
        return iter_features(encoder, corpus, layers, **extract)  # type: ignore[arg-type]
    from speechunits.scale.prefetch import prefetch_audio_items

    info = encoder.info
    items = prefetch_audio_items(corpus, info.sample_rate, info.receptive_field, channel=channel, workers=workers)
    return iter_features(encoder, corpus, layers, audio_items=items, **extract)  # type: ignore[arg-type]


def extract_features(encoder: Encoder, corpus: Iterable[Utterance], layers: Sequence[int],
                     out_dir: str | os.PathLike[str], *, options: ScaleOptions = LOCAL, device: str = "auto",
                     rows_per_part: int | None = None, shard_seconds: float | None = DEFAULT_SHARD_SECONDS,
                     max_batch_seconds: float = DEFAULT_MAX_BATCH_SECONDS, batch_size: int | None = None,
                     chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                     chunk_context_seconds: float = DEFAULT_CHUNK_CONTEXT_SECONDS, on_error: str = "skip",
                     channel: int | None = None, quiet: bool = False,
                     extra_meta: dict | None = None) -> FeaturesReport:
    """``speechunits features`` on the chosen backend: the features directory ``out_dir`` of
    ``corpus`` (fairseq layout), resumable (:func:`speechunits.features.write.write_features`):
    finished utterances are kept in parts closed at ``rows_per_part`` utterances or
    ``shard_seconds``, a rerun skips them, and the directory equals an uninterrupted run's."""
    from speechunits.corpus import total_audio_seconds
    from speechunits.features.write import write_features

    layers = encoder.check_layers(layers)

    def items(todo: Iterable[Utterance]) -> Iterator[FeatureItem]:
        total = None if quiet else total_audio_seconds(todo)
        return feature_items(encoder, todo, layers, options=options, device=device,
                             max_batch_seconds=max_batch_seconds, batch_size=batch_size, chunk_seconds=chunk_seconds,
                             chunk_context_seconds=chunk_context_seconds, on_error=on_error, channel=channel,
                             quiet=quiet, total_seconds=total)

    settings = {"channel": channel, "chunk_seconds": None if encoder.supports_long_input else chunk_seconds,
                "chunk_context_seconds": None if encoder.supports_long_input else chunk_context_seconds}
    return write_features(items, corpus, out_dir, encoder.info, layers, dtype=encoder.dtype, settings=settings,
                          rows_per_part=rows_per_part, shard_seconds=shard_seconds, on_error=on_error,
                          extra_meta=extra_meta)


def encode_corpus(corpus: Iterable[Utterance], tokenizer: UnitTokenizer, out_dir: str | os.PathLike[str], *,
                  options: ScaleOptions = LOCAL, device: str = "auto", job: tuple[int, int] = (0, 1),
                  rows_per_file: int | None = None, shard_seconds: float | None = DEFAULT_SHARD_SECONDS,
                  max_batch_seconds: float | None = None, on_error: str = "skip",
                  channel: int | None = None, quiet: bool = False,
                  total_seconds: float | None = None) -> EncodeReport:
    """:func:`speechunits.units.encode_corpus.encode_corpus` on the chosen backend (``out_dir`` may be
    a filesystem URI except with the plain serial loop). With a URI, the report's paths are URIs.
    Every backend writes a shard per ``rows_per_file`` utterances or ``shard_seconds`` seconds,
    whichever comes first (``None``: rows only)."""
    from speechunits.scale.encode_job import local_results, run_encode
    from speechunits.scale.remote import is_uri

    common = dict(job=job, rows_per_file=rows_per_file, shard_seconds=shard_seconds, on_error=on_error, quiet=quiet,
                  total_seconds=total_seconds)
    if options.is_ray:
        from speechunits.scale.ray_encode import ray_encode_corpus

        return ray_encode_corpus(corpus, tokenizer, out_dir, options=options.ray_options(device),
                                 max_batch_seconds=max_batch_seconds, channel=channel, **common)  # type: ignore[arg-type]
    workers = options.local_loader_workers()
    if workers == 0 and not is_uri(out_dir):
        from speechunits.units.encode_corpus import DEFAULT_ROWS_PER_FILE
        from speechunits.units.encode_corpus import encode_corpus as serial_encode_corpus

        return serial_encode_corpus(corpus, tokenizer, out_dir, job=job,  # type: ignore[arg-type]
                                    rows_per_file=rows_per_file or DEFAULT_ROWS_PER_FILE, shard_seconds=shard_seconds,
                                    max_batch_seconds=max_batch_seconds, on_error=on_error, channel=channel,
                                    quiet=quiet, total_seconds=total_seconds)
    results = local_results(tokenizer, loader_workers=workers, max_batch_seconds=max_batch_seconds,
                            on_error=on_error, channel=channel)
    return run_encode(results, corpus, tokenizer, out_dir, **common)  # type: ignore[arg-type]


def fit_source(input_path: str | os.PathLike[str], encoder: Encoder, layer: int | None, *,
               options: ScaleOptions = LOCAL, device: str = "auto", max_frames: int = DEFAULT_MAX_FRAMES,
               seed: int = 0, on_error: str = "skip", quiet: bool = False, shard: str | None = None,
               raw_format: RawFormat | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
               shard_seconds: float | None = DEFAULT_SHARD_SECONDS,
               max_batch_seconds: float | None = None) -> FeatureSource:
    """:func:`speechunits.quantize.fit.corpus_source` on the chosen backend: the same frames for
    the same ``seed`` and ``max_frames`` whichever backend runs (Ray returns only the sample).
    ``raw_format``: how to read headerless PCM (see :func:`speechunits.corpus.open_corpus`).

    With ``checkpoint_dir`` the sampling pass is resumable
    (:mod:`speechunits.quantize.fit_checkpoint`): its state is written there every
    ``shard_seconds``, and a rerun with the same settings continues from the last snapshot to
    the same sample; the returned source then holds the finished sample as one block.
    Remove the snapshots (:func:`remove_fit_checkpoint`) once the codebook is saved.
    ``max_batch_seconds``: padded audio per encoder call (default: the features default)."""
    from speechunits.corpus import open_corpus
    from speechunits.quantize.fit import FeatureSource, choose_layer, corpus_source, items_source, sample_items

    batching = {} if max_batch_seconds is None else {"max_batch_seconds": max_batch_seconds}
    if checkpoint_dir is None and not options.is_ray and options.local_loader_workers() == 0 and not batching:
        return corpus_source(input_path, encoder, layer, on_error=on_error, quiet=quiet, shard=shard,
                             raw_format=raw_format)
    corpus = open_corpus(str(input_path), shard=shard, raw_format=raw_format)
    checkpoint = None
    chosen = encoder.check_layers([choose_layer(encoder.info, layer)])[0]
    if checkpoint_dir is not None:
        from speechunits.quantize.fit_checkpoint import SampleCheckpoint, ids_digest

        corpus = list(corpus)
        meta = {"kind": "fit-sample-ray" if options.is_ray else "fit-sample", "encoder": encoder.info.name,
                "encoder_identity": encoder.info.identity, "layer": chosen, "dtype": encoder.dtype,
                "max_frames": int(max_frames), "seed": int(seed), "corpus": ids_digest(u.id for u in corpus)}
        checkpoint = SampleCheckpoint(checkpoint_dir, meta, shard_seconds=shard_seconds)
    if options.is_ray:
        from speechunits.scale.ray_fit import ray_fit_source

        return ray_fit_source(encoder, corpus, chosen, options=options.ray_options(device), max_frames=max_frames,
                              seed=seed, on_error=on_error, quiet=quiet, checkpoint=checkpoint,
                              max_batch_seconds=max_batch_seconds)
    if checkpoint is None:
        items = feature_items(encoder, corpus, [chosen], options=options, on_error=on_error, quiet=quiet,
                              **batching)  # type: ignore[arg-type]
        return items_source(items, encoder.info, chosen)
    _, progress = checkpoint.load(max_frames, seed)
    todo = corpus[progress.consumed:]  # type: ignore[index]
    items = feature_items(encoder, todo, [chosen], options=options, on_error=on_error, quiet=quiet,
                          **batching)  # type: ignore[arg-type]
    sample, seen, progress = sample_items(items, chosen, max_frames, seed, checkpoint=checkpoint)
    log.info("sampled %d of %d frames (layer %d) from %d utterance(s)", sample.shape[0], seen, chosen, progress.used)
    return FeatureSource(iter([("frame sample", sample)]), encoder.info, chosen, used=progress.used,
                         skipped=list(progress.skipped))


def remove_fit_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> None:
    """Delete the sampling snapshots of a finished ``fit`` (see :func:`fit_source`)."""
    import shutil

    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def fit_sample(sample: np.ndarray, k: int, encoder_info: EncoderInfo, layer: int, *, options: ScaleOptions = LOCAL,
               device: str = "auto", seed: int = 0, init: str = "kmeans++", iters: int = 20) -> Codebook:
    """:func:`speechunits.quantize.fit.fit_sample`; with the Ray backend the k-means runs on one GPU
    of the cluster when it has one (else here, as locally)."""
    if options.is_ray:
        from speechunits.scale.ray_fit import ray_fit_sample

        return ray_fit_sample(sample, k, encoder_info, layer, options=options.ray_options(device), seed=seed,
                              init=init, iters=iters)
    from speechunits.quantize.fit import fit_sample as local_fit_sample

    return local_fit_sample(sample, k, encoder_info, layer, seed=seed, init=init, iters=iters, device=device)
