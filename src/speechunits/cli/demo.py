"""``speechunits demo [-o DIR]``: the offline end-to-end demo (synth corpus, MFCC + tiny random HuBERT units)."""
from __future__ import annotations

import argparse

from speechunits.cli.common import add_quiet


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "demo",
        help="offline demo: synthesise a corpus, fit MFCC units, encode, evaluate, ABX, tiny HuBERT sweep",
        description="No network. Writes the corpus, codebook, unit store, a tiny random-weight HuBERT, its "
        "sweep, report.md and demo.png to the output directory and prints a table.",
    )
    parser.add_argument("-o", "--output", default="speechunits-demo", help="output directory (default ./speechunits-demo)")
    parser.add_argument("--minutes", type=float, default=None, help="corpus size (default 2.5)")
    parser.add_argument("--speakers", type=int, default=None, help="speakers (default 4)")
    parser.add_argument("--k", type=int, default=None, help="codebook size (default 50)")
    parser.add_argument("--no-hf", action="store_true", help="skip the tiny HuBERT part")
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from speechunits.recipes import demo

    if not args.verbose:
        # The demo's table is the result; k-means' per-iteration inertia lines would bury it.
        logging.getLogger("speechunits.quantize").setLevel(logging.WARNING)
    result = demo.run_demo(
        args.output,
        minutes=demo.DEFAULT_MINUTES if args.minutes is None else args.minutes,
        speakers=demo.DEFAULT_SPEAKERS if args.speakers is None else args.speakers,
        k=demo.DEFAULT_K if args.k is None else args.k,
        hf=not args.no_hf,
        quiet=args.quiet,
    )
    demo.check_rows(result.rows)
    print(f"{result.corpus_minutes:.1f} min of synthetic speech, {result.speakers} speakers "
          f"(tiny HuBERT rows: random weights, shown to exercise the HF path)")
    print(demo.format_table(result.rows))
    print(f"report: {result.out_dir / 'report.md'}  plot: {result.out_dir / 'demo.png'}  "
          f"time: {sum(result.seconds.values()):.0f} s")
    return 0
