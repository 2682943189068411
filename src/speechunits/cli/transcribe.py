"""``speechunits transcribe``: audio -> text or phones through an ``asr``/``phones`` probe."""
from __future__ import annotations

import argparse
import json
import sys

from speechunits.cli.common import add_device, add_quiet
from speechunits.cli.probe import add_beam_options, beam_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transcribe", help="audio to text or phones with an asr/phones probe",
                                   description="Runs the probe's encoder (or encoder + codebooks for a unit "
                                   "probe) and its head on the audio; greedy CTC decoding. Prints "
                                   "id<TAB>text lines (or JSON lines with --json).")
    parser.add_argument("input", help="an audio file, audio directory, .tsv or .jsonl manifest")
    parser.add_argument("--probe", required=True, metavar="PROBE", help="probe directory (`speechunits probe train`)")
    parser.add_argument("--codebook", action="append", metavar="DIR",
                        help="unit probes: the codebook of each stream (as the unit store was encoded)")
    parser.add_argument("--bpe", metavar="DIR", help="unit probes on BPE tokens: the BPE directory (default: "
                        "the one recorded at training)")
    parser.add_argument("--encoder", help="the encoder's name or directory, if it moved since training")
    parser.add_argument("--json", action="store_true", help="JSON lines {id, text}")
    add_beam_options(parser)
    add_device(parser, dtype=False)
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.corpus import open_corpus
    from speechunits.probe.evaluate import transcribe

    utts = list(open_corpus(args.input).require_utterances())
    texts = transcribe(args.probe, [u.path for u in utts], codebooks=args.codebook, bpe=args.bpe,
                       encoder=args.encoder, device=args.device, lm=args.lm, beam=beam_options(args),
                       quiet=args.quiet)
    for utt, text in zip(utts, texts):
        line = json.dumps({"id": utt.id, "text": text}, ensure_ascii=False) if args.json else f"{utt.id}\t{text}"
        sys.stdout.write(line + "\n")
    return 0
