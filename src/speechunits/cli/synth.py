"""``speechunits synth``: a phone-aligned, multi-speaker synthetic corpus (espeak-ng, GPL-3 extra)."""
from __future__ import annotations

import argparse

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "synth",
        help="synthesise a phone-aligned multi-speaker corpus with espeak-ng",
        description="Write OUT/wavs/*.wav (16 kHz), manifest.tsv, phones.tsv, words.tsv, textgrids/, "
        "speakers.tsv, speaker_info.tsv, text.tsv. Same arguments, same bytes. Needs the [synth] extra.",
    )
    parser.add_argument("out", help="output directory (must be new or empty)")
    parser.add_argument("--minutes", type=float, default=5.0, help="total audio to synthesise (default 5)")
    parser.add_argument("--speakers", type=int, default=4, help="number of speakers in total (default 4)")
    parser.add_argument("--languages", default="en", help="comma-separated languages, speakers spread round-robin")
    parser.add_argument("--seed", type=int, default=0, help="seed for speakers and sentence order")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.synth import synthesize_corpus

    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    if args.workers is not None and args.workers < 1:
        raise SpeechUnitsError(f"--workers must be >= 1, got {args.workers}")
    if args.speakers < 1:
        raise SpeechUnitsError(f"--speakers must be >= 1, got {args.speakers}")
    synthesize_corpus(args.out, args.minutes, args.speakers, languages, seed=args.seed,
                      workers=args.workers, quiet=args.quiet)
    return 0
