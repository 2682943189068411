"""``speechunits invariance INPUT --codebook CB --augment stretch,pitch,noise,reverb``: unit edit distance."""
from __future__ import annotations

import argparse
import itertools
import json
import logging
from typing import TYPE_CHECKING, Iterator

from speechunits.cli.common import add_device, add_quiet
from speechunits.errors import SpeechUnitsError

if TYPE_CHECKING:
    import numpy as np

    from speechunits.measure.invariance import InvarianceReport

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "invariance",
        help="unit edit distance (UED) between units of clean and augmented audio",
        description="UED = Levenshtein(dedup clean units, dedup augmented units) / len(dedup clean units), "
        "per augmentation and strength (stretch ±10/20 %%, pitch ±2 semitones, noise 20/10/5 dB SNR, reverb).",
    )
    parser.add_argument("input", help="audio corpus: directory, fairseq .tsv, .jsonl or one file")
    parser.add_argument("--codebook", required=True, help="codebook directory (speechunits fit)")
    parser.add_argument("--encoder", default=None, help="encoder (default: the one named in the codebook)")
    parser.add_argument("--augment", default="stretch,pitch,noise,reverb",
                        help="comma-separated: stretch, pitch, noise, reverb (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random augmentations (default 0)")
    parser.add_argument("--max-utterances", type=int, default=None, help="use only the first N utterances")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_device(parser)
    add_quiet(parser)
    parser.set_defaults(func=run)


def format_table(report: InvarianceReport) -> str:
    width = max(len(row.label) for row in report.rows)
    lines = [f"{'augmentation':<{width}}  UED     UED(mean/utt)",]
    lines += [f"{row.label:<{width}}  {row.ued:.4f}  {row.ued_mean:.4f}" for row in report.rows]
    lines.append(f"{report.utterances} utterances, {report.audio_seconds:.1f} s of audio")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from speechunits.corpus import open_corpus, total_audio_seconds
    from speechunits.encoders import load_encoder
    from speechunits.features import load_audio_items
    from speechunits.augment import standard_augmentations
    from speechunits.measure.invariance import measure_invariance
    from speechunits.progress import AudioProgress
    from speechunits.quantize import Codebook
    from speechunits.units.tokenizer import UnitTokenizer

    kinds = [k.strip() for k in args.augment.split(",") if k.strip()]
    augmentations = standard_augmentations(kinds)
    if args.max_utterances is not None and args.max_utterances < 1:
        raise SpeechUnitsError(f"--max-utterances must be >= 1, got {args.max_utterances}")
    codebook = Codebook.load(args.codebook)
    encoder_name = args.encoder or codebook.encoder_name
    if not encoder_name:
        raise SpeechUnitsError(f"{args.codebook}: codebook names no encoder; pass --encoder")
    encoder = load_encoder(encoder_name, device=args.device, dtype=args.dtype)
    tokenizer = UnitTokenizer(encoder, [codebook])
    rate = encoder.info.sample_rate
    corpus = list(itertools.islice(open_corpus(args.input), args.max_utterances))
    if not corpus:
        raise SpeechUnitsError(f"{args.input}: no audio files")

    unreadable: list[str] = []

    def audio() -> Iterator[tuple[str, np.ndarray]]:
        for item in load_audio_items(corpus, rate, encoder.info.receptive_field):
            if item.audio is None:
                log.warning("%s: skipped (%s)", item.utt.id, item.error)
                unreadable.append(item.error or item.utt.path)
                continue
            yield item.utt.id, item.audio.samples

    total = total_audio_seconds(corpus)
    with AudioProgress(total, desc="invariance", quiet=args.quiet) as progress:
        report = measure_invariance(audio(), rate, lambda x: tokenizer.encode(x).ids, augmentations,
                                    seed=args.seed, on_progress=progress.update)
    if report.utterances == 0:
        log.error("%s: every utterance failed (%d unreadable, %d too short for the encoder)%s", args.input,
                  len(unreadable), len(report.skipped), f"; the first: {unreadable[0]}" if unreadable else "")
        return 1
    if unreadable or report.skipped:
        log.warning("%d utterance(s) skipped (%d unreadable, %d too short for the encoder)",
                    len(unreadable) + len(report.skipped), len(unreadable), len(report.skipped))
    if args.json:
        print(json.dumps(report.to_dict(), sort_keys=True))
    else:
        print(format_table(report))
    return 0
