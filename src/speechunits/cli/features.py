"""``speechunits features``: extract encoder features of a corpus into a fairseq-style directory."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechunits.cli.common import add_corpus_job_options, parse_layers
from speechunits.cli.scale_options import scale_options
from speechunits.corpus import open_corpus, total_audio_seconds
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.features.defaults import (
        DEFAULT_CHUNK_CONTEXT_SECONDS,
        DEFAULT_CHUNK_SECONDS,
        DEFAULT_MAX_BATCH_SECONDS,
    )

    parser = subparsers.add_parser(
        "features",
        help="extract encoder features (fairseq .npy/.len per layer)",
        description="Extract per-layer features of every utterance of INPUT into OUT/layer{L}.npy + .len, "
        "OUT/manifest.tsv, OUT/errors.jsonl and OUT/features.json (written last).",
    )
    parser.add_argument("input", help="audio directory, fairseq .tsv, .jsonl manifest or one audio file")
    parser.add_argument("--encoder", required=True, help="mfcc, logmel, a local model directory or a hub id")
    parser.add_argument("--layer", "--layers", dest="layer", default=None,
                        help="layer(s), e.g. 6 or 6,9 or 0-12 (default: 0 for mfcc/logmel, required otherwise)")
    parser.add_argument("-o", "--out", required=True, help="output directory")
    parser.add_argument("--batch-size", type=int, default=None, help="at most N utterances (pieces) per batch")
    parser.add_argument("--max-batch-seconds", type=float, default=DEFAULT_MAX_BATCH_SECONDS,
                        help="padded audio seconds per batch (default %(default)s)")
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                        help="split files longer than this (default %(default)s)")
    parser.add_argument("--chunk-context-seconds", type=float, default=DEFAULT_CHUNK_CONTEXT_SECONDS,
                        help="context encoded around each chunk and dropped (default %(default)s)")
    add_corpus_job_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.encoders import BUILTIN_ENCODERS, load_encoder
    from speechunits.features import FeaturesWriter
    from speechunits.scale.jobs import feature_items

    if args.layer is None:
        if args.encoder not in BUILTIN_ENCODERS:
            raise SpeechUnitsError("--layer is required for neural encoders (e.g. --layer 6)")
        layers = [0]
    else:
        layers = parse_layers(args.layer)
    if args.channel is not None and args.channel < 0:
        raise SpeechUnitsError(f"--channel must be >= 0, got {args.channel}")
    options = scale_options(args)
    corpus = open_corpus(args.input, shard=args.shard, raw_format=args.raw_format)
    encoder = load_encoder(args.encoder, device=args.device, dtype=args.dtype)
    layers = encoder.check_layers(layers)
    total = None if args.quiet else total_audio_seconds(corpus)
    writer = FeaturesWriter(args.out, encoder.info, layers)
    done = skipped = 0
    seconds = 0.0
    try:
        for item in feature_items(
            encoder, corpus, layers, options=options, device=args.device,
            max_batch_seconds=args.max_batch_seconds, batch_size=args.batch_size,
            chunk_seconds=args.chunk_seconds, chunk_context_seconds=args.chunk_context_seconds,
            on_error=args.on_error, channel=args.channel, quiet=args.quiet, total_seconds=total,
        ):
            if item.features is None:
                log.warning("skipped %s", item.error)
                writer.add_error(item.utt.id, item.utt.path, item.error or "unknown error")
                skipped += 1
                continue
            writer.add(item.utt.id, item.utt.path, item.num_samples, item.features)
            done += 1
            seconds += item.duration_s
    except BaseException:
        writer.abort()
        raise
    writer.close({"device": encoder.device, "dtype": encoder.dtype, "input": str(args.input),
                  "shard": args.shard})
    errors_path = Path(args.out) / "errors.jsonl"
    if skipped and not done:
        log.error("%s: every utterance failed (%d); see %s", args.out, skipped, errors_path)
        return 1
    summary = log.warning if skipped else log.info
    summary("%s: %d utterances (%.1f s of audio) extracted, %d skipped%s", args.out, done, seconds, skipped,
            f" (see {errors_path})" if skipped else "")
    return 0
