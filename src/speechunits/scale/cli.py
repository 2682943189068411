"""The ``--backend`` option family, and the three entry points the ``features``, ``encode`` and
``fit`` commands call instead of their local loops.

Each entry point takes the parsed ``args`` (read with defaults, so a command that has not
registered the options still works) and dispatches:

* ``--backend local`` (default): the local loop, with audio decoded ahead of the encoder by
  ``--loader-workers`` threads (``0``: the plain serial loop). Ray is never imported.
* ``--backend ray``: :mod:`speechunits.scale.ray_backend` on ``--ray-address`` or an embedded
  local Ray.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Iterable, Iterator, Sequence

from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
#: Options that only mean something with ``--backend ray``.
RAY_ONLY = ("ray_address", "num_workers", "gpus_per_worker", "cpus_per_worker")


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend``, ``--ray-address``, ``--num-workers``, ``--gpus-per-worker``,
    ``--cpus-per-worker`` and ``--loader-workers`` (see docs/scaling.md)."""
    group = parser.add_argument_group("scale-out (docs/scaling.md)")
    group.add_argument("--backend", choices=BACKENDS, default="local",
                       help="local: this process; ray: a Ray cluster (needs the [ray] extra)")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="Ray cluster to join (auto, ray://head:10001, head:6379); default: the RAY_ADDRESS "
                       "cluster if set, else a local Ray with this machine's cores")
    group.add_argument("--num-workers", type=int, default=None, metavar="N",
                       help="ray: encoder actors (default: GPUs / --gpus-per-worker, else CPUs / --cpus-per-worker)")
    group.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                       help="ray: GPUs per encoder actor (default 1 when the cluster has GPUs, else 0)")
    group.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                       help="ray: CPUs (torch threads) per encoder actor (default 1)")
    group.add_argument("--loader-workers", type=int, default=None, metavar="N",
                       help="local: threads decoding ahead of the encoder (default min(4, cores); 0 = serial); "
                       "ray: decode tasks in flight")


def backend(args: argparse.Namespace) -> str:
    """The chosen backend, after checking that Ray-only options come with ``--backend ray``."""
    chosen = getattr(args, "backend", "local") or "local"
    if chosen not in BACKENDS:
        raise SpeechUnitsError(f"--backend: expected one of {', '.join(BACKENDS)}, got {chosen!r}")
    if chosen == "local":
        given = [name for name in RAY_ONLY if getattr(args, name, None) is not None]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise SpeechUnitsError(f"{flags}: only with --backend ray")
    loaders = getattr(args, "loader_workers", None)
    if loaders is not None and loaders < 0:
        raise SpeechUnitsError(f"--loader-workers must be >= 0, got {loaders}")
    return chosen


def ray_options(args: argparse.Namespace) -> Any:
    """:class:`~speechunits.scale.ray_backend.RayOptions` from the parsed options."""
    from speechunits.scale.ray_backend import DEFAULT_ROWS_PER_CALL, RayOptions

    cpus = getattr(args, "cpus_per_worker", None)
    options = RayOptions(address=getattr(args, "ray_address", None), num_workers=getattr(args, "num_workers", None),
                         gpus_per_worker=getattr(args, "gpus_per_worker", None),
                         cpus_per_worker=1.0 if cpus is None else cpus,
                         loader_workers=getattr(args, "loader_workers", None) or None,
                         rows_per_call=getattr(args, "rows_per_call", None) or DEFAULT_ROWS_PER_CALL,
                         device=getattr(args, "device", None) or "auto",
                         verbose=bool(getattr(args, "verbose", False)))
    options.check()
    return options


def _loader_workers(args: argparse.Namespace) -> int:
    from speechunits.scale.prefetch import default_loader_workers

    value = getattr(args, "loader_workers", None)
    return default_loader_workers() if value is None else int(value)


def feature_items(args: argparse.Namespace, encoder: Any, corpus: Iterable[Utterance], layers: Sequence[int],
                  **kwargs: Any) -> Iterator[Any]:
    """``iter_features(encoder, corpus, layers, **kwargs)`` on the chosen backend."""
    from speechunits.features import iter_features

    if backend(args) == "ray":
        from speechunits.scale.ray_backend import ray_iter_features

        kwargs.pop("window_seconds", None)
        kwargs.pop("window_utterances", None)
        return ray_iter_features(encoder, corpus, layers, options=ray_options(args), **kwargs)
    workers = _loader_workers(args)
    if workers == 0:
        return iter_features(encoder, corpus, layers, **kwargs)
    from speechunits.scale.prefetch import prefetch_audio_items

    info = encoder.info
    items = prefetch_audio_items(corpus, info.sample_rate, info.receptive_field, channel=kwargs.get("channel"),
                                 workers=workers)
    return iter_features(encoder, corpus, layers, audio_items=items, **kwargs)


def encode_corpus(args: argparse.Namespace, corpus: Iterable[Utterance], tokenizer: Any, out_dir: str,
                  **kwargs: Any) -> Any:
    """``speechunits.units.encode_corpus.encode_corpus(corpus, tokenizer, out_dir, **kwargs)`` on the
    chosen backend (``out_dir`` may be a filesystem URI except with the plain serial loop)."""
    from speechunits.scale.encode_job import local_results, run_encode
    from speechunits.scale.remote import is_uri

    if backend(args) == "ray":
        from speechunits.scale.ray_backend import ray_encode_corpus

        return ray_encode_corpus(corpus, tokenizer, out_dir, options=ray_options(args), **kwargs)
    workers = _loader_workers(args)
    if workers == 0 and not is_uri(out_dir):
        from speechunits.units.encode_corpus import encode_corpus as serial_encode_corpus

        return serial_encode_corpus(corpus, tokenizer, out_dir, **kwargs)  # type: ignore[arg-type]
    results = local_results(tokenizer, loader_workers=workers, max_batch_seconds=kwargs.pop("max_batch_seconds", None),
                            on_error=kwargs.get("on_error", "skip"), channel=kwargs.pop("channel", None))
    return run_encode(results, corpus, tokenizer, out_dir, **kwargs)


def fit_source(args: argparse.Namespace, input_path: str, encoder: Any, layer: int | None, *,
               on_error: str = "skip", quiet: bool = False, shard: str | None = None) -> Any:
    """``speechunits.quantize.fit.corpus_source(...)`` on the chosen backend: the same frames
    for the same ``--seed`` and ``--max-frames`` whichever backend runs."""
    from speechunits.quantize.fit import FeatureSource, corpus_source

    chosen = backend(args)
    raw_format = getattr(args, "raw_format", None)
    if chosen == "local" and _loader_workers(args) == 0:
        return corpus_source(input_path, encoder, layer, on_error=on_error, quiet=quiet, shard=shard,
                             raw_format=raw_format)
    from speechunits.corpus import open_corpus
    from speechunits.quantize.fit import DEFAULT_MAX_FRAMES

    corpus = open_corpus(str(input_path), shard=shard, raw_format=raw_format)
    if chosen == "ray":
        from speechunits.scale.ray_backend import ray_fit_source

        return ray_fit_source(encoder, corpus, layer, options=ray_options(args),
                              max_frames=getattr(args, "max_frames", DEFAULT_MAX_FRAMES),
                              seed=getattr(args, "seed", 0), on_error=on_error, quiet=quiet)
    # Local, overlapped: what corpus_source streams, with audio decoded ahead.
    probe = corpus_source(input_path, encoder, layer, on_error=on_error, quiet=quiet, shard=shard,
                          raw_format=raw_format)
    chosen_layer = probe.layer

    def blocks() -> Iterator[tuple[str, Any]]:
        for item in feature_items(args, encoder, corpus, [chosen_layer], on_error=on_error, quiet=quiet):
            if item.features is None:
                log.warning("%s: skipped (%s)", item.utt.path, item.error)
                continue
            yield str(item.utt.path), item.features[chosen_layer]

    return FeatureSource(blocks(), probe.encoder_info, chosen_layer)


def fit_codebook(args: argparse.Namespace, source: Any, k: int, **kwargs: Any) -> Any:
    """``speechunits.quantize.fit.fit_codebook(source, k, **kwargs)``; with ``--backend ray`` the
    k-means runs on one GPU of the cluster when it has one (else on the driver, as locally)."""
    if getattr(args, "backend", "local") == "ray" and getattr(args, "input", None) is not None \
            and getattr(args, "from_features", None) is None:
        from speechunits.scale.ray_backend import ray_fit_codebook

        return ray_fit_codebook(source, k, options=ray_options(args), **kwargs)
    from speechunits.quantize.fit import fit_codebook as local_fit_codebook

    return local_fit_codebook(source, k, **kwargs)
