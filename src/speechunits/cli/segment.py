"""``speechunits segment``: cut long recordings into speech segments with silero-vad."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechunits.cli.common import add_on_error, add_quiet, add_shard
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="cut long recordings into speech segments (silero-vad; needs the [vad] extra)",
        description="Find speech in every file of INPUT with silero-vad and write each segment as "
        "OUT/<utt_id>/<name>_<start_ms>-<end_ms>.flac, with OUT/manifest.tsv (for `encode`, `features` ...) "
        "and OUT/segments.tsv (segment_id, source_utt, start_s, end_s). Files are read in blocks, so "
        "hour-long recordings need little memory. Run the same command again after an interruption "
        "to finish the job. See docs/segment.md.",
    )
    parser.add_argument("input", help="audio directory, fairseq .tsv, .jsonl manifest or one audio file")
    parser.add_argument("-o", "--out", required=True, help="output directory")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="speech starts where its probability reaches this (default %(default)s)")
    parser.add_argument("--neg-threshold", type=float, default=None,
                        help="speech ends where its probability falls below this (default: threshold - 0.15)")
    parser.add_argument("--min-speech", type=float, default=0.25, metavar="SECONDS",
                        help="drop shorter speech (default %(default)s)")
    parser.add_argument("--min-silence", type=float, default=0.3, metavar="SECONDS",
                        help="bridge shorter pauses inside speech (default %(default)s)")
    parser.add_argument("--pad", type=float, default=0.1, metavar="SECONDS",
                        help="silence kept around each segment (default %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="cut longer speech at its least speech-like window; 0: no limit (default %(default)s)")
    parser.add_argument("--no-audio", action="store_true",
                        help="no segment files: OUT/segments.tsv, and OUT/manifest.jsonl listing the segments as "
                        "time ranges of the sources (read by seeking in them)")
    parser.add_argument("--channel", type=int, default=None,
                        help="use channel N (0-based) instead of the downmix, and write only it")
    add_shard(parser)
    add_on_error(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.corpus import open_corpus
    from speechunits.segment.run import segment_corpus
    from speechunits.segment.segments import SegmentOptions
    from speechunits.segment.vad import SileroVAD

    if args.channel is not None and args.channel < 0:
        raise SpeechUnitsError(f"--channel must be >= 0, got {args.channel}")
    if args.max_seconds < 0:
        raise SpeechUnitsError(f"--max-seconds must be >= 0, got {args.max_seconds}")
    options = SegmentOptions(
        threshold=args.threshold,
        neg_threshold=args.neg_threshold,
        min_speech_s=args.min_speech,
        min_silence_s=args.min_silence,
        pad_s=args.pad,
        max_seconds=args.max_seconds or None,
    )
    corpus = open_corpus(args.input, shard=args.shard).require_utterances()
    report = segment_corpus(
        corpus, args.out, SileroVAD.load(), options,
        write_audio=not args.no_audio, channel=args.channel, on_error=args.on_error, quiet=args.quiet,
        input_name=str(Path(args.input).resolve()),
    )
    log.info("%s: %d files (%.1f s of audio) into %d segments (%.1f s), %d already done, %d skipped "
             "(%.0fx real time)", args.out, report.segmented, report.audio_seconds, report.segments,
             report.speech_seconds, report.already_done, report.failed,
             report.audio_seconds / max(report.wall_seconds, 1e-9))
    if report.failed and not (report.segmented or report.already_done):
        log.error("every file failed (see %s)", Path(args.out) / "errors.jsonl")
        return 1
    return 0
