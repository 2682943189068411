"""``speechunits synthesize``: a unit store (e.g. a unit LM's samples) -> audio through a vocoder."""
from __future__ import annotations

import argparse
import logging

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synthesize", help="voice a unit store with a vocoder",
        description="Synthesise every utterance of STORE (a Parquet unit store; repeat STORE for a vocoder of "
        "several streams, in the vocoder's stream order) into OUT/<utt id>.wav. The stores' codebooks must be "
        "the vocoder's. Units without F0 get the vocoder's predicted F0 (and, for a dedup vocoder, predicted "
        "durations when the store has none).")
    parser.add_argument("store", nargs="+", help="unit store directory (one per stream)")
    parser.add_argument("--vocoder", required=True, metavar="VOC")
    parser.add_argument("-o", "--out", required=True, metavar="OUT")
    parser.add_argument("--speaker", default=None, help="voice: a training speaker of the vocoder")
    parser.add_argument("--reference", metavar="WAV", default=None, help="voice: reference audio (embedding vocoders)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_quiet(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechunits.audio import Audio
    from speechunits.progress import AudioProgress
    from speechunits.units.store import UnitStore
    from speechunits.vocoder import load_vocoder

    vocoder = load_vocoder(args.vocoder, device=args.device)
    stores = [UnitStore.open(path) for path in args.store]
    vocoder.check_codebook([s.meta["codebook_sha256"] for s in stores], source=", ".join(args.store))
    reference = Audio.load(args.reference) if args.reference else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    others = [s.to_dict() for s in stores[1:]]
    count = 0
    with AudioProgress(total_seconds=None, desc="synthesized", quiet=args.quiet) as progress:
        for utt_id, units in stores[0]:
            streams = [units]
            for j, table in enumerate(others, start=1):
                if utt_id not in table:
                    raise SpeechUnitsError(f"{args.store[j]}: no units for {utt_id} (in {args.store[0]})")
                streams.append(table[utt_id])
            audio = vocoder.synthesize(streams, speaker=args.speaker, reference=reference)
            target = out / f"{utt_id}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            audio.save(target)
            count += 1
            progress.update(audio.duration_s)
    if count == 0:
        raise SpeechUnitsError(f"{args.store[0]}: empty unit store")
    log.info("synthesized %d utterances into %s", count, out)
    return 0
