"""``speechunits codebook import|export|info|random-projection|dmel|from-head``: foreign k-means files, codebook
summaries, and the codebooks that are made rather than fitted (BEST-RQ random projection, dMel, a pretrained
model's prediction head)."""
from __future__ import annotations

import argparse
import json
import logging

from speechunits.cli.common import add_quiet
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.quantize.options import EXPORT_FORMATS, IMPORT_FORMATS as FORMATS

    parser = subparsers.add_parser("codebook", help="import/export foreign k-means files; show a codebook; "
                                   "make a random-projection, dMel or prediction-head codebook")
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
    add_quiet(imp)
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="write a codebook as sklearn km.bin (fairseq) or faiss centroids.npy")
    exp.add_argument("codebook", metavar="CODEBOOK")
    exp.add_argument("--format", default="sklearn", choices=list(EXPORT_FORMATS))
    exp.add_argument("-o", "--out", required=True, help="output file (e.g. km.bin)")
    add_quiet(exp)
    exp.set_defaults(func=run_export)

    info = sub.add_parser("info", help="print a codebook's metadata")
    info.add_argument("codebook", metavar="CODEBOOK")
    info.add_argument("--json", action="store_true", help="print codebook.json as JSON")
    add_quiet(info)
    info.set_defaults(func=run_info)

    register_made(sub)


def register_made(sub: argparse._SubParsersAction) -> None:
    """The ``random-projection``, ``dmel`` and ``from-head`` actions: codebooks drawn, defined or read from a
    model, not fitted."""
    from speechunits.cli.common import add_device, add_on_error, add_shard
    from speechunits.quantize.options import DEFAULT_MAX_FRAMES

    rpq = sub.add_parser(
        "random-projection",
        help="make a frozen BEST-RQ random-projection quantizer for one encoder layer",
        description="Draw a Xavier-normal projection [D, d] and an l2-normalised random codebook [K, d] from "
        "--seed; features are normalised per dimension with mean/std of up to --max-frames frames sampled "
        "from INPUT (or --from-features DIR) unless --no-normalise. Units: nearest codeword by cosine.",
    )
    rpq.add_argument("input", nargs="?", default=None,
                     help="audio directory, .tsv, .jsonl or audio file for the normalisation statistics")
    rpq.add_argument("--encoder", default=None, help="mfcc, logmel, a local model directory or a hub id")
    rpq.add_argument("--layer", type=int, default=None, help="layer to quantise (default: the only one of mfcc/logmel)")
    rpq.add_argument("--k", type=int, required=True, help="codebook size K")
    rpq.add_argument("--dim", type=int, default=None, help="codeword dimension d (default 16, as BEST-RQ)")
    rpq.add_argument("--seed", type=int, default=0, help="seed of the projection and codebook (and of the sampling)")
    rpq.add_argument("--no-normalise", dest="normalise", action="store_false",
                     help="project raw features (no corpus statistics; INPUT is then not needed)")
    rpq.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                     help="frames sampled for the statistics (default %(default)s)")
    rpq.add_argument("--from-features", default=None, metavar="DIR",
                     help="take the statistics from a `speechunits features` directory instead of INPUT")
    rpq.add_argument("-o", "--out", required=True, metavar="CODEBOOK", help="output codebook directory")
    add_device(rpq)
    add_shard(rpq)
    add_on_error(rpq)
    add_quiet(rpq)
    rpq.set_defaults(func=run_random_projection)

    dmel = sub.add_parser(
        "dmel",
        help="make a dMel tokenizer (discretised 80-channel log-mel; weight-free, decodable)",
        description="dMel: every log-mel channel of every frame becomes one of 2**BITS bins on [MIN, MAX]. "
        "The range is --range, or the min/max of log-mel over INPUT (the paper's choice), or the documented "
        "default. Encode with `speechunits encode INPUT --codebook DIR`, decode with `speechunits units decode`.",
    )
    dmel.add_argument("input", nargs="?", default=None, help="corpus whose log-mel min/max gives the range")
    dmel.add_argument("--bits", type=int, default=None, help="bits per channel (default 4: 16 bins)")
    dmel.add_argument("--range", dest="value_range", default=None, metavar="MIN,MAX",
                      help="log-mel value range (default -16,8 unless INPUT is given)")
    dmel.add_argument("-o", "--out", required=True, metavar="CODEBOOK", help="output codebook directory")
    add_on_error(dmel)
    add_quiet(dmel)
    dmel.set_defaults(func=run_dmel)

    head = sub.add_parser(
        "from-head",
        help="units from a `speechunits pretrain` model's own prediction head (no k-means)",
        description="Read the prediction head of MODEL's pretraining checkpoint (MODEL/training/): a frame of the "
        "last layer gets the unit the model predicts for it, argmax of cos(W LN(h) + b, e_k). Encode with "
        "`speechunits encode INPUT --codebook DIR`. An exported model without training/ has no head.",
    )
    head.add_argument("model", metavar="MODEL", help="a `speechunits pretrain` output directory")
    head.add_argument("-o", "--out", required=True, metavar="CODEBOOK", help="output codebook directory")
    add_quiet(head)
    head.set_defaults(func=run_from_head)


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

    codebook = Codebook.load(args.codebook)
    if codebook.kind != "kmeans":
        raise SpeechUnitsError(f"{args.codebook}: a {codebook.kind} codebook has no k-means equivalent to export")
    export_codebook(codebook, args.out, args.format)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from speechunits.quantize.codebook import Codebook

    codebook = Codebook.load(args.codebook)
    print(json.dumps(codebook.meta, indent=2, sort_keys=True) if args.json else codebook.info_text())
    return 0


def run_random_projection(args: argparse.Namespace) -> int:
    from speechunits.encoders import load_encoder
    from speechunits.quantize.fit import corpus_source, features_dir_source, sample_stream
    from speechunits.quantize.random_projection import DEFAULT_CODE_DIM, RandomProjectionCodebook, normalisation_stats

    if args.k < 1:
        raise SpeechUnitsError(f"--k must be >= 1, got {args.k}")
    code_dim = DEFAULT_CODE_DIM if args.dim is None else args.dim
    if code_dim < 1:
        raise SpeechUnitsError(f"--dim must be >= 1, got {code_dim}")
    if args.input is not None and args.from_features is not None:
        raise SpeechUnitsError("give either INPUT or --from-features DIR, not both")
    stats, frames = None, None
    if args.normalise:
        if args.from_features is not None:
            source = features_dir_source(args.from_features, args.layer, args.encoder)
        elif args.input is not None and args.encoder is not None:
            encoder = load_encoder(args.encoder, device=args.device, dtype=args.dtype)
            source = corpus_source(args.input, encoder, args.layer, on_error=args.on_error, quiet=args.quiet,
                                   shard=args.shard)
        else:
            raise SpeechUnitsError("random-projection normalises features with corpus statistics: give INPUT and "
                                   "--encoder (or --from-features DIR), or pass --no-normalise")
        sample, seen = sample_stream(source.blocks, args.max_frames, args.seed)
        stats, frames = normalisation_stats(sample), int(sample.shape[0])
        log.info("normalisation statistics from %d of %d frames", frames, seen)
        info, layer = source.encoder_info, source.layer
    else:
        if args.input is not None or args.from_features is not None:
            raise SpeechUnitsError("--no-normalise reads no corpus: drop INPUT / --from-features")
        if args.encoder is None:
            raise SpeechUnitsError("random-projection needs --encoder")
        from speechunits.quantize.fit import choose_layer  # the layer rule of `fit`

        info = load_encoder(args.encoder, device="cpu").info
        layer = choose_layer(info, args.layer)
    codebook = RandomProjectionCodebook.create(info, layer, args.k, code_dim=code_dim, seed=args.seed, stats=stats,
                                               training_frames=frames)
    codebook.save(args.out)
    log.info("%s: random projection K=%d, d=%d for %s layer %d (%s)", args.out, codebook.k, code_dim, info.name, layer,
             codebook.meta["normalisation"])
    return 0


def run_dmel(args: argparse.Namespace) -> int:
    from speechunits.encoders import load_encoder
    from speechunits.quantize.dmel import DEFAULT_BITS, DEFAULT_RANGE, DMEL_ENCODER, DMel, corpus_range
    from speechunits.quantize.fit import corpus_source

    bits = DEFAULT_BITS if args.bits is None else args.bits
    encoder = load_encoder(DMEL_ENCODER, device="cpu")
    if args.value_range is not None:
        if args.input is not None:
            raise SpeechUnitsError("give either --range MIN,MAX or INPUT (whose min/max is the range), not both")
        try:
            lo, hi = (float(x) for x in args.value_range.split(","))
        except ValueError:
            raise SpeechUnitsError(f"--range: expected MIN,MAX, got {args.value_range!r}") from None
        value_range, how = (lo, hi), "fixed"
    elif args.input is not None:
        source = corpus_source(args.input, encoder, 0, on_error=args.on_error, quiet=args.quiet)
        value_range, frames = corpus_range(source.blocks)
        how = f"corpus min/max ({frames} frames of {args.input})"
    else:
        value_range, how = DEFAULT_RANGE, "fixed (default)"
    dmel = DMel.create(encoder.info, bits=bits, value_range=value_range, range_source=how)
    dmel.save(args.out)
    log.info("%s: dMel %d bits on [%g, %g] (%s), %d streams", args.out, bits, dmel.lo, dmel.hi, how, dmel.streams)
    return 0


def run_from_head(args: argparse.Namespace) -> int:
    from speechunits.quantize.prediction_head import PredictionHeadCodebook

    codebook = PredictionHeadCodebook.from_pretrained(args.model)
    codebook.save(args.out)
    log.info("%s: the prediction head of %s (K=%d, layer %d; targets: %s)", args.out, args.model, codebook.k,
             codebook.layer, (codebook.meta.get("targets") or {}).get("kind"))
    return 0
