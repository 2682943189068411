"""``speechunits translate``: audio -> S2UT units (a unit store) -> speech through a unit vocoder, or
audio -> text with a speech-to-text translation model (``s2ut train --target text``)."""
from __future__ import annotations

import argparse
import json
import sys

from speechunits.cli.common import add_device, add_quiet


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("translate", help="translate speech with an S2UT model and a unit vocoder, or into text")
    parser.add_argument("input", help="audio file, directory or manifest")
    parser.add_argument("--s2ut", required=True, metavar="S2UT")
    parser.add_argument("--vocoder", metavar="VOC", help="a deduplicating unit vocoder of the target codebook")
    parser.add_argument("--speaker", help="the vocoder's speaker")
    parser.add_argument("--beam", type=int, default=None, help="beam size (default: the model's)")
    parser.add_argument("--source-codebook", metavar="CB", help="a unit-source model's codebook")
    parser.add_argument("--encoder", help="the source encoder's name or directory, if it moved since training")
    parser.add_argument("--references", metavar="TSV",
                        help="text-target models: id<TAB>reference translation lines; prints BLEU and CER")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="new directory: units/ and wavs/, or text.tsv for a text-target model")
    add_device(parser, dtype=False)
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.seq2seq.infer import translate

    result = translate(args.input, args.s2ut, args.output, vocoder=args.vocoder, speaker=args.speaker,
                       beam=args.beam, source_codebook=args.source_codebook, encoder=args.encoder,
                       references=args.references, device=args.device, quiet=args.quiet)
    summary = {k: v for k, v in result.items() if k not in ("units", "texts")}
    summary["x_real_time"] = result["audio_seconds"] / max(result["decode_seconds"], 1e-9)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
