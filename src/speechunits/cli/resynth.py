"""``speechunits resynth``: audio -> units (the vocoder's codebooks) -> audio, F0 from the source."""
from __future__ import annotations

import argparse
import logging

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def add_vocoder_io(parser: argparse.ArgumentParser) -> None:
    """INPUT, --vocoder, -o, --device, --raw-format, --quiet (shared with `convert`)."""
    from speechunits.cli.common import parse_raw_format

    parser.add_argument("input", help="audio file, audio directory or .tsv/.jsonl manifest")
    parser.add_argument("--vocoder", required=True, metavar="VOC", help="a `speechunits vocoder train` directory")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory (OUT/<utt id>.wav)")
    parser.add_argument("--raw-format", type=parse_raw_format, default=None, metavar="ENC:RATE[:CH]",
                        help="how to read headerless .raw/.pcm files")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_quiet(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resynth", help="resynthesise audio through a vocoder's units (audio -> units -> audio)",
        description="Encode every utterance of INPUT with the vocoder's own codebooks, take F0 from the source "
        "and synthesise OUT/<utt id>.wav at the vocoder's sample rate, as long as the source. A table vocoder "
        "needs --speaker; an embedding vocoder uses the source as its reference.")
    add_vocoder_io(parser)
    parser.add_argument("--speaker", default=None,
                        help="voice of a table vocoder (a training speaker; default: each utterance's speaker from "
                        "--speakers or the corpus's speakers.tsv)")
    parser.add_argument("--speakers", metavar="FILE", default=None, help="utt<TAB>speaker for a table vocoder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.corpus import open_corpus_via_manifest, read_speakers
    from speechunits.id_match import rekey
    from speechunits.vocoder.data import find_speakers_file
    from speechunits.vocoder.resynth import resynthesize

    source = args.speakers or (None if args.speaker else find_speakers_file(args.input))
    speakers = rekey(read_speakers(source), (u.id for u in open_corpus_via_manifest(args.input)), str(source)) \
        if source else {}
    return run_over_corpus(args, lambda voc, tok, audio, utt_id: resynthesize(
        voc, tok, audio, speaker=args.speaker or (speakers.get(utt_id) if voc.meta["speaker"] == "table" else None)),
        what="resynthesised")


def run_over_corpus(args: argparse.Namespace, make, what: str) -> int:
    """Apply ``make(vocoder, tokenizer, audio, utt_id) -> Audio`` to every utterance of ``args.input``."""
    from pathlib import Path

    from speechunits.audio import Audio
    from speechunits.corpus import open_corpus_via_manifest, refuse_output_in_input, refuse_overwriting_input
    from speechunits.progress import AudioProgress
    from speechunits.vocoder import load_vocoder

    out = Path(args.out)
    refuse_output_in_input(args.input, out)  # before the vocoder and its encoder are loaded
    vocoder = load_vocoder(args.vocoder, device=args.device)
    tokenizer = vocoder.tokenizer(device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    failed = done = 0
    with AudioProgress(total_seconds=None, desc=what, quiet=args.quiet) as progress:
        for utt in open_corpus_via_manifest(args.input, raw_format=args.raw_format):
            try:
                audio = Audio.load(utt.path, raw_format=utt.raw_format)
            except SpeechUnitsError as exc:
                log.warning("skipping %s: %s", utt.id, exc)
                failed += 1
                continue
            target = out / f"{utt.id}.wav"
            refuse_overwriting_input(target, utt.path)  # a manifest's audio may lie under -o
            result = make(vocoder, tokenizer, audio, utt.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            result.save(target)
            done += 1
            progress.update(audio.duration_s)
    log.info("%s %d utterances into %s (%d unreadable)", what, done, out, failed)
    if done == 0:
        raise SpeechUnitsError(f"{args.input}: no utterance could be read")
    return 0
