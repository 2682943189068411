"""``speechunits codebook import|export|info``: foreign k-means files and codebook summaries."""
from __future__ import annotations

import argparse
import json
import logging

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.quantize.options import EXPORT_FORMATS, IMPORT_FORMATS as FORMATS

    parser = subparsers.add_parser("codebook", help="import/export foreign k-means files; show a codebook")
    sub = parser.add_subparsers(dest="codebook_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import",
        help="convert fairseq km.bin / SpeechBrain .pt / bshall .pt / faiss centroids.npy to a codebook",
        description="Convert a foreign k-means file into CODEBOOK (safetensors + json). sklearn/SpeechBrain "
        "files are pickles: loading one runs code stored in it, so it is refused unless --allow-pickle is given; "
        "only import files you trust.",
    )
    imp.add_argument("file", help="km.bin, *_k{K}_L{L}.pt, bshall k-means .pt or centroids.npy")
    imp.add_argument("--encoder", required=True, help="the encoder the centroids belong to (fills identity/frame rate)")
    imp.add_argument("--layer", type=int, default=None, help="feature layer (SpeechBrain: from the file name)")
    imp.add_argument("--format", default="auto", choices=list(FORMATS), help="foreign format (default: by name)")
    imp.add_argument("-o", "--out", required=True, metavar="CODEBOOK", help="output codebook directory")
    imp.add_argument("--allow-pickle", action="store_true",
                     help="permit a full unpickle (sklearn km.bin, SpeechBrain .pt, torch files the safe load refuses): "
                     "this runs code stored in the file")
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="write a codebook as sklearn km.bin (fairseq) or faiss centroids.npy")
    exp.add_argument("codebook", metavar="CODEBOOK")
    exp.add_argument("--format", default="sklearn", choices=list(EXPORT_FORMATS))
    exp.add_argument("-o", "--out", required=True, help="output file (e.g. km.bin)")
    exp.set_defaults(func=run_export)

    info = sub.add_parser("info", help="print a codebook's metadata")
    info.add_argument("codebook", metavar="CODEBOOK")
    info.add_argument("--json", action="store_true", help="print codebook.json as JSON")
    info.set_defaults(func=run_info)


def run_import(args: argparse.Namespace) -> int:
    from speechunits.encoders import load_encoder
    from speechunits.quantize.importers import import_codebook

    encoder = load_encoder(args.encoder, device="cpu")
    codebook = import_codebook(args.file, encoder_info=encoder.info, layer=args.layer, fmt=args.format,
                               allow_pickle=args.allow_pickle)
    if codebook.layer is None:
        if encoder.info.num_layers != 0:
            raise SpeechUnitsError(f"{args.file}: pass --layer (encoder {encoder.info.name} has layers 0..{encoder.info.num_layers})")
        codebook.meta["layer"] = 0
    codebook.save(args.out)
    log.info("%s: imported K=%d, D=%d for %s layer %s", args.out, codebook.k, codebook.dim, codebook.encoder_name,
             codebook.layer)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from speechunits.quantize.codebook import Codebook
    from speechunits.quantize.exporters import export_codebook

    export_codebook(Codebook.load(args.codebook), args.out, args.format)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from speechunits.quantize.codebook import Codebook

    codebook = Codebook.load(args.codebook)
    print(json.dumps(codebook.meta, indent=2, sort_keys=True) if args.json else codebook.info_text())
    return 0
