"""``speechunits features``: extract encoder features of a corpus into a fairseq-style directory."""
from __future__ import annotations

import argparse
import logging

from speechunits.cli.common import add_corpus_job_options, parse_layers
from speechunits.cli.scale_options import add_part_options, check_part_options, scale_options
from speechunits.corpus import open_corpus
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
        "OUT/manifest.tsv, OUT/errors.jsonl and OUT/features.json (written last). Finished utterances are "
        "kept in OUT/.parts while the run goes on: run the same command again after an interruption and "
        "it extracts only the rest.",
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
    add_part_options(parser, "utterances per part of a run in progress (OUT/.parts)")
    add_corpus_job_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.encoders import BUILTIN_ENCODERS, load_encoder
    from speechunits.scale.jobs import extract_features

    if args.layer is None:
        if args.encoder not in BUILTIN_ENCODERS:
            raise SpeechUnitsError("--layer is required for neural encoders (e.g. --layer 6)")
        layers = [0]
    else:
        layers = parse_layers(args.layer)
    if args.channel is not None and args.channel < 0:
        raise SpeechUnitsError(f"--channel must be >= 0, got {args.channel}")
    check_part_options(args)
    options = scale_options(args)
    corpus = open_corpus(args.input, shard=args.shard, raw_format=args.raw_format).require_utterances()
    encoder = load_encoder(args.encoder, device=args.device, dtype=args.dtype)
    layers = encoder.check_layers(layers)
    report = extract_features(
        encoder, corpus, layers, args.out, options=options, device=args.device,
        rows_per_part=args.rows_per_part, shard_seconds=args.shard_seconds or None,
        max_batch_seconds=args.max_batch_seconds, batch_size=args.batch_size,
        chunk_seconds=args.chunk_seconds, chunk_context_seconds=args.chunk_context_seconds,
        on_error=args.on_error, channel=args.channel, quiet=args.quiet,
        extra_meta={"device": encoder.device, "dtype": encoder.dtype, "input": str(args.input), "shard": args.shard},
    )
    if report.failed and not (report.extracted or report.already_stored):
        log.error("%s: every utterance failed (%d); see %s", args.out, report.failed, report.errors_path)
        return 1
    summary = log.warning if report.failed else log.info
    summary("%s: %d utterances (%.1f s of audio) extracted, %d kept from an earlier run, %d skipped%s", args.out,
            report.extracted, report.audio_seconds, report.already_stored, report.failed,
            f" (see {report.errors_path})" if report.failed else "")
    return 0
