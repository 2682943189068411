"""``speechunits fit``: learn a k-means codebook from a corpus or a features directory."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from speechunits.cli.common import add_corpus_job_options
from speechunits.cli.scale_options import add_part_options, check_part_options, scale_options
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.quantize.options import DEFAULT_MAX_FRAMES

    parser = subparsers.add_parser(
        "fit",
        help="fit a k-means codebook (CODEBOOK/codebook.safetensors + codebook.json)",
        description="Sample up to --max-frames frames of one layer (uniformly, seeded) from the features of "
        "INPUT, streamed through the encoder, or from a features directory (--from-features), and fit k-means. "
        "The sampling pass over INPUT keeps its state in CODEBOOK/.fit-sample every --shard-seconds: run the "
        "same command again after an interruption and it continues to the same codebook.",
    )
    parser.add_argument("input", nargs="?", default=None,
                        help="audio directory, fairseq .tsv, .jsonl manifest or audio file (omit with --from-features)")
    parser.add_argument("--encoder", default=None,
                        help="mfcc, logmel, a local model directory or a hub id (optional with --from-features)")
    parser.add_argument("--layer", type=int, default=None,
                        help="layer to quantise (default: the only layer of mfcc/logmel or of the features dir)")
    parser.add_argument("--k", type=int, required=True, help="number of clusters")
    parser.add_argument("-o", "--out", required=True, metavar="CODEBOOK", help="output codebook directory")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                        help="frames sampled for k-means; bounds memory (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (sampling and init)")
    parser.add_argument("--init", default="kmeans++", choices=["kmeans++", "random"], help="centroid init")
    parser.add_argument("--iters", type=int, default=20, help="maximum Lloyd iterations (default %(default)s)")
    parser.add_argument("--max-batch-seconds", type=float, default=None,
                        help="padded audio seconds per encoder call (default: as for `features`)")
    parser.add_argument("--from-features", default=None, metavar="DIR",
                        help="read frames from a `speechunits features` directory instead of INPUT")
    add_part_options(parser)
    add_corpus_job_options(parser, channel=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from speechunits.quantize.fit import check_fit_options, features_dir_source
    from speechunits.quantize.fit_checkpoint import CHECKPOINT_DIR
    from speechunits.scale.jobs import LOCAL, fit_source, remove_fit_checkpoint

    check_fit_options(args.k, args.max_frames)
    check_part_options(args)
    if args.max_batch_seconds is not None and args.max_batch_seconds <= 0:
        raise SpeechUnitsError(f"--max-batch-seconds must be positive, got {args.max_batch_seconds}")
    options = scale_options(args)
    if args.from_features is not None:
        if args.input is not None:
            raise SpeechUnitsError("give either INPUT or --from-features DIR, not both")
        source = features_dir_source(args.from_features, args.layer, args.encoder)
        return _fit(args, source, LOCAL)  # the frames are here: k-means runs here
    if args.input is None or args.encoder is None:
        raise SpeechUnitsError("fit needs INPUT and --encoder (or --from-features DIR)")
    from speechunits.encoders import load_encoder

    encoder = load_encoder(args.encoder, device=args.device, dtype=args.dtype)
    out = Path(args.out)
    created = not out.exists()
    checkpoint = out / CHECKPOINT_DIR

    def done() -> None:
        """The sampling snapshots are dropped once the command has its answer (a codebook, a user
        error); an interrupt or a crash keeps them, so that the rerun resumes."""
        remove_fit_checkpoint(checkpoint)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()

    try:
        source = fit_source(args.input, encoder, args.layer, options=options, device=args.device,
                            max_frames=args.max_frames, seed=args.seed, on_error=args.on_error, quiet=args.quiet,
                            shard=args.shard, raw_format=args.raw_format, checkpoint_dir=checkpoint,
                            shard_seconds=args.shard_seconds or None, max_batch_seconds=args.max_batch_seconds)
        status = _fit(args, source, options)
    except SpeechUnitsError:
        done()
        raise
    done()
    return status


def _fit(args: argparse.Namespace, source: Any, options: Any) -> int:
    """k-means on the sample of ``source``; the exit status."""
    from speechunits.quantize.fit import sample_source
    from speechunits.scale.jobs import fit_sample

    sample = sample_source(source, args.max_frames, args.seed)
    if source.all_failed:
        log.error("%s: every utterance failed (%d); the first: %s", args.input, len(source.skipped),
                  source.skipped[0][1])
        return 1
    codebook = fit_sample(sample, args.k, source.encoder_info, source.layer, options=options, device=args.device,
                          seed=args.seed, init=args.init, iters=args.iters)
    codebook.save(args.out)
    log.info("%s: K=%d, D=%d, layer %s, inertia %.6g per frame on %s frames%s", args.out, codebook.k, codebook.dim,
             codebook.layer, codebook.meta["inertia"], codebook.meta["training_frames"],
             f"; {len(source.skipped)} utterance(s) skipped" if source.skipped else "")
    return 0
