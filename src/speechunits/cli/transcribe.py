"""``speechunits transcribe``: audio -> text or phones through an ``asr``/``phones`` probe."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from speechunits.cli.common import add_device, add_quiet
from speechunits.cli.probe import add_beam_options, beam_options

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("transcribe", help="audio to text or phones with an asr/phones probe",
                                   description="Runs the probe's encoder (or encoder + codebooks for a unit "
                                   "probe) and its head on the audio; greedy CTC decoding, or a beam search with "
                                   "--lm. Prints id<TAB>text lines (or JSON lines with --json); files that cannot "
                                   "be read or are too short are skipped with a warning (exit 1 if all are).")
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
    errors: dict[str, str] = {}
    texts = transcribe(args.probe, [u.path for u in utts], codebooks=args.codebook, bpe=args.bpe,
                       encoder=args.encoder, device=args.device, lm=args.lm, beam=beam_options(args),
                       quiet=args.quiet, errors=errors)
    for utt, text in zip(utts, texts):
        if text is None:
            log.warning("%s: skipped (%s)", utt.id, errors.get(utt.path, "unreadable"))
            continue
        line = json.dumps({"id": utt.id, "text": text}, ensure_ascii=False) if args.json else f"{utt.id}\t{text}"
        sys.stdout.write(line + "\n")
    if errors and len(errors) == len(utts):
        log.error("%s: every file failed (%d); the first: %s", args.input, len(errors), next(iter(errors.values())))
        return 1
    return 0
