"""``speechunits sweep INPUT --encoder E --layers 0-12 --k 50,100,500 --alignments A -o REPORT``."""
from __future__ import annotations

import argparse

from speechunits.cli.common import add_device, add_quiet, parse_int_list, parse_layers
from speechunits.errors import SpeechUnitsError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "sweep",
        help="fit and evaluate k-means units for every (layer, K): results.csv, plots, report.md",
        description="Features are extracted once per layer; each K is fitted on at most --max-frames frames, "
        "all frames are assigned and scored against the alignments. Rerunning with the same settings "
        "skips finished cells.",
    )
    parser.add_argument("input", help="corpus: audio dir, fairseq .tsv, .jsonl or a synth corpus manifest")
    parser.add_argument("--encoder", required=True, help="'mfcc', 'logmel', a local model dir or a hub id")
    parser.add_argument("--layers", default="0", help="layers, e.g. '0-12' or '6,9' (default 0)")
    parser.add_argument("--k", default="50,100,500", help="codebook sizes (default 50,100,500)")
    parser.add_argument("--alignments", required=True,
                        help="phone alignments: TSV, TextGrid dir/file, synth corpus dir or fairseq frame labels")
    parser.add_argument("--tier", default="phones", help="TextGrid tier (default phones)")
    parser.add_argument("--frame-rate", type=float, default=None, help="frame rate of fairseq frame-level labels")
    parser.add_argument("-o", "--output", required=True, help="report directory (resumable)")
    parser.add_argument("--abx", action="store_true", help="also ABX of units and features (slower)")
    parser.add_argument("--speakers", default=None, help="utt_id<TAB>speaker file for ABX (default: speakers.tsv "
                        "next to the input or the alignments)")
    parser.add_argument("--max-frames", type=int, default=None, help="frames per k-means fit (default 100000)")
    parser.add_argument("--iters", type=int, default=None, help="k-means iterations (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    add_device(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.measure.sweep import DEFAULT_KMEANS_ITERS, DEFAULT_MAX_FRAMES, SweepSettings, run_sweep, \
        results_table

    max_frames = DEFAULT_MAX_FRAMES if args.max_frames is None else args.max_frames
    iters = DEFAULT_KMEANS_ITERS if args.iters is None else args.iters
    if max_frames < 1:
        raise SpeechUnitsError(f"--max-frames must be >= 1, got {max_frames}")
    if iters < 1:
        raise SpeechUnitsError(f"--iters must be >= 1, got {iters}")
    settings = SweepSettings(
        input=args.input, encoder=args.encoder, alignments=args.alignments,
        layers=parse_layers(args.layers), ks=sorted(set(parse_int_list(args.k, "--k"))),
        tier=args.tier, max_frames=max_frames, seed=args.seed, iters=iters, abx=args.abx,
        frame_rate=args.frame_rate, speakers=args.speakers, device=args.device, dtype=args.dtype,
    )
    rows = run_sweep(settings, args.output, quiet=args.quiet)
    print(results_table(rows))
    return 0
