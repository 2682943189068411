"""``speechunits encode``: audio corpus to a resumable Parquet unit store."""
from __future__ import annotations

import argparse
import logging

from speechunits.cli.common import add_corpus_job_options, parse_int_list
from speechunits.cli.scale_options import scale_options
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.units.parquet_dir import DEFAULT_ROWS_PER_FILE, DEFAULT_SHARD_SECONDS

    parser = subparsers.add_parser(
        "encode",
        help="encode a corpus into units (resumable Parquet unit store)",
        description="Encode every utterance of INPUT with the codebook's encoder and layer and write a "
        "Parquet unit store to OUT. Run the same command again after an interruption to finish the job. "
        "Several --codebook options give one store per codebook under OUT/stream{j}-layer{L}-k{K}, "
        "from one encoder pass.",
    )
    parser.add_argument("input", help="audio directory, fairseq .tsv, .jsonl manifest or one audio file")
    parser.add_argument("--codebook", action="append", required=True, metavar="CB",
                        help="codebook directory (repeat for several streams of the same encoder)")
    parser.add_argument("--dedup", action="store_true", help="merge repeated units, keeping durations")
    parser.add_argument("--layer", "--layers", dest="layer", default=None,
                        help="expected layer of each codebook, e.g. 6 or 6,9 (refuses codebooks of other "
                        "layers; gives the layer of imported codebooks that lack one)")
    parser.add_argument("-o", "--out", required=True, help="unit store directory")
    parser.add_argument("--max-batch-seconds", type=float, default=None,
                        help="padded audio seconds per encoder call (default: as for `features`)")
    parser.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE,
                        help="utterances per Parquet shard at most (default %(default)s)")
    parser.add_argument("--shard-seconds", type=float, default=DEFAULT_SHARD_SECONDS, metavar="T",
                        help="also write a shard when T seconds passed since the last one, so an interruption "
                        "loses at most about T seconds of finished work (default %(default)g; 0: by rows only)")
    add_corpus_job_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.corpus import open_corpus, parse_shard
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.scale.jobs import encode_corpus
    from speechunits.units.tokenizer import UnitTokenizer

    if args.max_batch_seconds is not None and args.max_batch_seconds <= 0:
        raise SpeechUnitsError(f"--max-batch-seconds must be positive, got {args.max_batch_seconds}")
    if args.channel is not None and args.channel < 0:
        raise SpeechUnitsError(f"--channel must be >= 0, got {args.channel}")
    if args.shard_seconds < 0:
        raise SpeechUnitsError(f"--shard-seconds must be >= 0, got {args.shard_seconds}")
    job = parse_shard(args.shard)
    options = scale_options(args)
    layers = None
    if args.layer is not None:
        layers = parse_int_list(args.layer, "--layer")
        if len(layers) == 1:
            layers = layers * len(args.codebook)
        if len(layers) != len(args.codebook):
            raise SpeechUnitsError(f"--layer: {len(layers)} layers for {len(args.codebook)} codebooks")
    codebooks = [Codebook.load(path) for path in args.codebook]
    first = codebooks[0]
    for path, codebook in zip(args.codebook[1:], codebooks[1:]):
        if codebook.encoder_identity != first.encoder_identity:
            raise SpeechUnitsError(f"--codebook {path}: made for encoder {codebook.encoder_name} "
                                   f"({codebook.encoder_identity}), but {args.codebook[0]} for "
                                   f"{first.encoder_name} ({first.encoder_identity}); one encoder per run")
    if not first.encoder_name:
        raise SpeechUnitsError(f"--codebook {args.codebook[0]}: the codebook does not name its encoder; "
                               "re-import it with `speechunits codebook import ... --encoder E`")
    corpus = open_corpus(args.input, shard=args.shard, raw_format=args.raw_format).require_utterances()
    encoder = load_encoder(first.encoder_name, device=args.device, dtype=args.dtype)
    tokenizer = UnitTokenizer(encoder, codebooks, dedup=args.dedup, layers=layers)
    report = encode_corpus(corpus, tokenizer, args.out, options=options, device=args.device, job=job,
                           rows_per_file=args.rows_per_file, shard_seconds=args.shard_seconds or None,
                           max_batch_seconds=args.max_batch_seconds,
                           on_error=args.on_error, channel=args.channel, quiet=args.quiet)
    if report.failed and not (report.encoded or report.already_stored):
        log.error("%s: every utterance failed (%d); see %s", args.out, report.failed, report.errors_path)
        return 1
    summary = log.warning if report.failed else log.info
    summary("%s: %d utterances encoded (%.1f s of audio, %.1fx real time), %d already stored, %d failed%s",
            args.out, report.encoded, report.audio_seconds, report.realtime_factor, report.already_stored,
            report.failed, f" (see {report.errors_path})" if report.failed else "")
    return 0
