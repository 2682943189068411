"""``speechunits convert``: voice conversion through a vocoder (content from the source, voice from the target)."""
from __future__ import annotations

import argparse

from speechunits.errors import SpeechUnitsError


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.cli.resynth import add_vocoder_io

    parser = subparsers.add_parser(
        "convert", help="voice conversion: the source's units and intonation in a target voice",
        description="Encode INPUT with the vocoder's codebooks and synthesise it in the voice of --speaker (a "
        "training speaker) or --reference (any audio: an embedding vocoder, one-shot). The source's log-F0 is "
        "normalised by its own statistics and de-normalised by the target's.")
    add_vocoder_io(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--speaker", help="target speaker (one the vocoder was trained on)")
    target.add_argument("--reference", metavar="WAV", help="target voice as reference audio (embedding vocoders)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.audio import Audio
    from speechunits.cli.resynth import run_over_corpus
    from speechunits.vocoder.resynth import convert

    reference = Audio.load(args.reference) if args.reference else None
    if reference is not None and reference.num_samples == 0:
        raise SpeechUnitsError(f"{args.reference}: empty reference audio")
    return run_over_corpus(args, lambda voc, tok, audio, _utt: convert(voc, tok, audio, speaker=args.speaker,
                                                                 reference=reference), what="converted")
