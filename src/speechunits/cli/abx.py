"""``speechunits abx FEATURES_DIR_OR_UNITS_DIR --alignments A``: within/across-speaker ABX error."""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from typing import TYPE_CHECKING

from speechunits.cli.common import add_quiet
from speechunits.corpus import SPEAKERS_FILE, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.id_match import match_ids

if TYPE_CHECKING:
    from speechunits.measure.abx_items import AbxItem

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "abx",
        help="ABX phone discriminability (within/across speaker) of features or units",
        description="Libri-Light/ZeroSpeech triphone ABX with DTW-averaged frame distances: angular for a "
        "features directory, 0/1 for a unit store.",
    )
    parser.add_argument("input", help="features directory (speechunits features) or unit store (speechunits encode)")
    parser.add_argument("--alignments", default=None,
                        help="phone alignments (TSV, TextGrid dir/file, synth corpus dir) to build items from")
    parser.add_argument("--tier", default="phones", help="TextGrid tier name (default: phones)")
    parser.add_argument("--speakers", default=None,
                        help=f"utt_id<TAB>speaker file (default: {SPEAKERS_FILE} next to the alignments, if present)")
    parser.add_argument("--items", default=None, help="read a Libri-Light .item file instead of building items")
    parser.add_argument("--write-items", default=None, help="write the items used to this .item file")
    parser.add_argument("--layer", type=int, default=None, help="layer of a multi-layer features directory")
    parser.add_argument("--mode", default="within,across", help="within, across or both (default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of group subsampling (default 0)")
    parser.add_argument("--max-size-group", type=int, default=None,
                        help="items kept per (context, speaker, phone) group (default: Libri-Light's 10)")
    parser.add_argument("--max-x-across", type=int, default=None,
                        help="X speakers sampled per A/B group for the across score (default: Libri-Light's 5)")
    parser.add_argument("--frame-rate", type=float, default=None, help="override the input's frame rate")
    parser.add_argument("--frame-offset", type=float, default=None,
                        help="override the input's first frame centre time (s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_quiet(parser)
    parser.set_defaults(func=run)


def _speakers_path(args: argparse.Namespace) -> Path | None:
    if args.speakers:
        return Path(args.speakers)
    if args.alignments:
        ali = Path(args.alignments)
        candidate = (ali if ali.is_dir() else ali.parent) / SPEAKERS_FILE
        if candidate.is_file():
            return candidate
    return None


def _items(args: argparse.Namespace) -> list[AbxItem]:
    from speechunits.measure import abx_items

    if args.items:
        return abx_items.read_items(args.items)
    if not args.alignments:
        raise SpeechUnitsError("abx: give --alignments (to build items) or --items FILE")
    from speechunits.measure.alignments import load_alignments

    alignments = load_alignments(args.alignments, tier=args.tier)
    speakers_path = _speakers_path(args)
    speakers = read_speakers(speakers_path) if speakers_path else None
    if speakers is None:
        log.warning("no speakers file: every utterance counts as one speaker (no across-speaker score)")
    items = abx_items.build_items(alignments, speakers)
    if not items:
        raise SpeechUnitsError(f"{args.alignments}: no triphone without silence to build ABX items from")
    return items


def _items_named_as(items: list[AbxItem], ids: list[str]) -> list[AbxItem]:
    """``items`` with their utterances named by ``ids`` (the input's) where the two name them
    differently (:func:`~speechunits.id_match.match_ids`: a store of ``corpus/`` says ``flac/u1``,
    an ``.item`` file or ``phones.tsv`` says ``u1``); items of unmatched utterances keep their name."""
    label_of = match_ids(ids, {item.utt_id for item in items}, "the ABX items")
    ours_of = {label: utt for utt, label in label_of.items() if utt != label}
    if not ours_of:
        return items
    return [replace(item, utt_id=ours_of.get(item.utt_id, item.utt_id)) for item in items]


def run(args: argparse.Namespace) -> int:
    from speechunits.measure import abx
    from speechunits.measure.abx_items import write_items
    from speechunits.measure.frame_source import open_frame_source

    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    items = _items(args)
    if args.write_items:
        write_items(args.write_items, items)
        log.info("wrote %d items to %s", len(items), args.write_items)
    source = open_frame_source(args.input, args.layer, args.frame_rate, args.frame_offset)
    items = _items_named_as(items, source.ids)
    result = abx.compute_abx(items, source.frames, source.frame_rate, source.frame_offset_s, distance=source.distance,
                             max_size_group=abx.DEFAULT_MAX_SIZE_GROUP if args.max_size_group is None else args.max_size_group,
                             max_x_across=abx.DEFAULT_MAX_X_ACROSS if args.max_x_across is None else args.max_x_across,
                             seed=args.seed,
                             modes=modes)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
        return 0
    for name, value in (("ABX within speaker", result.abx_within), ("ABX across speakers", result.abx_across)):
        print(f"{name:<22} {'n/a' if value is None else f'{100 * value:.2f} %'}")
    print(f"{'items used':<22} {result.num_items_used} / {result.num_items} ({result.distance} distance)")
    return 0
