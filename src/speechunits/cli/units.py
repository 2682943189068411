"""``speechunits units export|import|info|decode|correct``: unit stores to and from the field's text formats;
dMel stores back to log-mel (and a Griffin-Lim audio preview); correction by a masked unit LM."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from speechunits.cli.common import add_quiet
from speechunits.files import read_json_object

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.units.formats import FORMATS

    parser = subparsers.add_parser("units", help="export/import unit text formats, store info",
                                   description="Convert unit stores to and from fairseq .km, GSLM, textless "
                                   ".units/.durations and Kaldi text; round trips are exact.")
    commands = parser.add_subparsers(dest="units_command", metavar="ACTION", required=True)

    export = commands.add_parser("export", help="unit store to text files",
                                 description="Write UNITS_DIR as text into the directory OUT.")
    export.add_argument("store", metavar="UNITS_DIR")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("-o", "--out", required=True, help="output directory")
    export.add_argument("--name", default=None, help="file name stem (default: the --order file's stem or 'units')")
    export.add_argument("--order", default=None, metavar="FILE",
                        help="write lines in this order: a fairseq .tsv / .jsonl manifest or a list of ids")
    add_quiet(export)
    export.set_defaults(func=run_export)

    imp = commands.add_parser("import", help="text files to a unit store",
                              description="Read text written by `units export` (or another tool, with "
                              "--codebook) from the directory SRC into a new unit store.")
    imp.add_argument("src", metavar="SRC", help="directory holding the text files")
    imp.add_argument("--format", required=True, choices=FORMATS)
    imp.add_argument("-o", "--out", required=True, help="new unit store directory")
    imp.add_argument("--name", default=None, help="file name stem (default: the only file of the format)")
    imp.add_argument("--codebook", default=None, metavar="CB",
                     help="codebook the units come from (needed when SRC has no speechunits.json)")
    imp.add_argument("--dedup", default=None, action=argparse.BooleanOptionalAction,
                     help="deduplicate (default: as exported, or when durations are present)")
    add_quiet(imp)
    imp.set_defaults(func=run_import)

    info = commands.add_parser("info", help="print a unit store's summary as JSON")
    info.add_argument("store", metavar="UNITS_DIR")
    add_quiet(info)
    info.set_defaults(func=run_info)

    decode = commands.add_parser(
        "decode", help="dMel unit store to log-mel (a features directory) and optionally audio",
        description="Write the log-mel that UNITS_DIR's dMel tokens stand for (bin centres) as a features "
        "directory OUT (layer0.npy/.len, features.json: usable by `abx` and `fit --from-features`); with "
        "--audio also OUT/wavs/{id}.wav by Griffin-Lim, a low-quality preview until a unit vocoder exists.")
    decode.add_argument("store", metavar="UNITS_DIR")
    decode.add_argument("-o", "--out", required=True, help="output directory")
    decode.add_argument("--audio", action="store_true", help="also write Griffin-Lim audio previews")
    decode.add_argument("--iters", type=int, default=32, help="Griffin-Lim iterations (default %(default)s)")
    decode.add_argument("--codebook", default=None, metavar="CB",
                        help="refuse the store unless its units come from this dMel codebook directory")
    add_quiet(decode)
    decode.set_defaults(func=run_decode)

    correct = commands.add_parser(
        "correct", help="correct improbable units with a masked unit LM",
        description="Iterative mask-and-repredict: units whose probability given the rest (under a masked LM "
        "of `speechunits lm train --objective masked`) is below --threshold are masked and replaced by the LM's "
        "most probable unit, at most --max-fraction of each utterance. Writes a store of the same codebook.")
    correct.add_argument("store", metavar="UNITS_DIR")
    correct.add_argument("--lm", required=True, metavar="MLM", help="masked unit LM directory")
    correct.add_argument("-o", "--out", required=True, help="new unit store directory")
    correct.add_argument("--threshold", type=float, default=0.05, help="default %(default)s")
    correct.add_argument("--iterations", type=int, default=3, help="default %(default)s")
    correct.add_argument("--max-fraction", type=float, default=0.2,
                         help="most units changed per utterance (default %(default)s)")
    correct.add_argument("--stride", type=int, default=8,
                         help="positions masked together when estimating probabilities: every STRIDE-th "
                         "(1 = exact, one at a time; default %(default)s)")
    correct.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_quiet(correct)
    correct.set_defaults(func=run_correct)


def read_codebook_meta(path: str) -> dict[str, Any]:
    """``codebook.json`` of a codebook directory (or the file itself)."""
    file = Path(path)
    if file.is_dir():
        file = file / "codebook.json"
    return read_json_object(file, missing=f"--codebook {path}: no codebook.json")


def run_export(args: argparse.Namespace) -> int:
    from speechunits.units.formats import export_units, read_order
    from speechunits.units.store import UnitStore

    store = UnitStore.open(args.store)
    order = read_order(args.order) if args.order else None
    name = args.name or (Path(args.order).stem if args.order else "units")
    files = export_units(store, args.format, args.out, name=name, order=order)
    log.info("%s: wrote %s", args.out, ", ".join(f.name for f in files))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from speechunits.units.formats import import_units

    meta = read_codebook_meta(args.codebook) if args.codebook else None
    store = import_units(args.format, args.src, args.out, name=args.name, codebook_meta=meta, dedup=args.dedup)
    log.info("%s: %d utterances imported", args.out, len(store))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from speechunits.units.store import UnitStore

    store = UnitStore.open(args.store)
    utterances = units = frames = 0
    seconds = 0.0
    rows = store.iter_rows() if store.streams == 1 else store.iter_multistream()
    for _, unit_seq, secs in rows:
        utterances += 1
        units += unit_seq.ids.size
        frames += unit_seq.num_frames
        seconds += secs
    summary = {"path": str(store.path), "utterances": utterances, "units": units, "frames": frames,
               "audio_seconds": round(seconds, 3), "shards": len(store.shards), "dedup": store.dedup,
               "vocab_size": store.vocab_size, "frame_rate": store.frame_rate, "streams": store.streams,
               "codebook_sha256": store.meta.get("codebook_sha256"),
               "encoder": store.meta.get("codebook", {}).get("encoder"),
               "layer": store.meta.get("codebook", {}).get("layer")}
    print(json.dumps(summary, indent=2))
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from speechunits.quantize.dmel import decode_store

    expected = None
    if args.codebook:
        from speechunits.quantize import Codebook

        expected = Codebook.load(args.codebook).sha256
    report = decode_store(args.store, args.out, audio=args.audio, iters=args.iters, expected_sha256=expected)
    log.info("%s: %d utterances, %d frames decoded%s", args.out, report.utterances, report.frames,
             " (with Griffin-Lim audio previews)" if report.audio else "")
    return 0


def run_correct(args: argparse.Namespace) -> int:
    from speechunits.lm.correct import CorrectOptions, correct_store
    from speechunits.lm.model_dir import load_lm

    options = CorrectOptions(threshold=args.threshold, iterations=args.iterations, max_fraction=args.max_fraction,
                             stride=args.stride)
    report = correct_store(load_lm(args.lm, args.device, objective="masked"), args.store, args.out, options)
    log.info("%s: %d utterances, %d of %d positions changed", args.out, report.utterances, report.changed,
             report.positions)
    return 0
