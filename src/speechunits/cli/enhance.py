"""``speechunits enhance``: audio -> enhanced audio (``enhance`` probes) or separated sources (``separate`` probes)."""
from __future__ import annotations

import argparse
import logging

from speechunits.cli.common import add_device, add_quiet

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("enhance", help="enhance or separate audio with an enhance/separate probe",
                                   description="Runs the probe's encoder (or encoder + codebooks for a unit probe) "
                                   "and its head on the audio, applies the masks to its spectrogram and writes "
                                   "OUT/<id>.wav (enhance probes) or OUT/s1/<id>.wav, OUT/s2/<id>.wav ... (separate "
                                   "probes), 16 kHz, 16-bit. No reference is needed (`probe eval` scores against "
                                   "one). Files that cannot be read are skipped with a warning (exit 1 if all are).")
    parser.add_argument("input", help="an audio file, audio directory, .tsv or .jsonl manifest")
    parser.add_argument("--probe", required=True, metavar="PROBE", help="an enhance or separate probe directory")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory")
    parser.add_argument("--codebook", action="append", metavar="DIR",
                        help="unit probes: the codebook of each stream (as the unit store was encoded)")
    parser.add_argument("--bpe", metavar="DIR", help="unit probes on BPE tokens: the BPE directory")
    parser.add_argument("--encoder", help="the encoder's name or directory, if it moved since training")
    add_device(parser, dtype=False)
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.corpus import open_corpus, refuse_output_in_input
    from speechunits.probe.evaluate import enhance_files

    refuse_output_in_input(args.input, args.out)
    utts = list(open_corpus(args.input).require_utterances())
    errors: dict[str, str] = {}
    written = enhance_files(args.probe, [u.path for u in utts], [u.id for u in utts], args.out,
                            codebooks=args.codebook, bpe=args.bpe, encoder=args.encoder, device=args.device,
                            quiet=args.quiet, errors=errors)
    for path, reason in errors.items():
        log.warning("%s: skipped (%s)", path, reason)
    if errors and not written:
        log.error("%s: every file failed (%d); the first: %s", args.input, len(errors), next(iter(errors.values())))
        return 1
    log.info("enhance: %d file(s) written to %s", written, args.out)
    return 0
