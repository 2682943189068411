"""Ray counterparts of the local ``features`` and ``encode`` jobs, on :mod:`speechunits.scale.ray_pipeline`.

They mirror :func:`speechunits.features.iter_features` and
:func:`speechunits.units.encode_corpus.encode_corpus`, take the same arguments plus
:class:`~speechunits.scale.ray_pipeline.RayOptions`, and give the same items and stores.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Sequence

from speechunits.corpus import Utterance
from speechunits.encoders.base import Encoder
from speechunits.errors import SpeechUnitsError
from speechunits.progress import AudioProgress
from speechunits.scale import ray_workers
from speechunits.scale.ray_pipeline import WORKERS, RayOptions, execute, extract_kwargs
from speechunits.units.parquet_dir import DEFAULT_SHARD_SECONDS


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
              "extract_kwargs": extract_kwargs(max_batch_seconds, batch_size, chunk_seconds, chunk_context_seconds)}
    rows = execute(utts, WORKERS["features"], kwargs, sample_rate=info.sample_rate,
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
              "extract_kwargs": extract_kwargs(max_batch_seconds, None, None, None)}

    def results(todo: Iterable[Utterance]) -> Iterator[Any]:
        todo = list(todo)
        rows = execute(todo, WORKERS["units"], kwargs, sample_rate=encoder.info.sample_rate,
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


