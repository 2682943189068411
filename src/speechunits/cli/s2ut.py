"""``speechunits s2ut train``: speech (features or units) -> target units, on parallel pairs."""
from __future__ import annotations

import argparse
import json
import sys

from speechunits.cli.common import add_device, add_quiet
from speechunits.cli.tts import add_optim_options, model_options, optim_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("s2ut", help="speech-to-unit translation (transformer encoder-decoder)",
                                   description="Source speech (an encoder layer's features, or source units) to "
                                   "deduplicated target units, with beam search and optional auxiliary CTC.")
    actions = parser.add_subparsers(dest="s2ut_command", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train on pairs.tsv (speechunits synth parallel)")
    train.add_argument("pairs", metavar="PAIRS", help="pairs.tsv: id source target source_text target_text split")
    train.add_argument("-o", "--output", required=True, metavar="S2UT")
    train.add_argument("--source-input", default="features", choices=["features", "units", "text"],
                       help="what the model reads (text: a text translator, for cascades)")
    train.add_argument("--encoder", help="features: model directory, hub id, mfcc or logmel")
    train.add_argument("--layer", type=int, help="features: the encoder layer")
    train.add_argument("--source-codebook", metavar="CB", help="units: the source codebook")
    train.add_argument("--target-codebook", metavar="CB", help="the codebook whose units the model predicts")
    train.add_argument("--target", default="units", choices=["units", "text"])
    train.add_argument("--source-corpus", metavar="DIR", help="default: the directory beside PAIRS holding its ids")
    train.add_argument("--target-corpus", metavar="DIR")
    train.add_argument("--ctc-text", action="store_true", help="auxiliary CTC on the target text (characters)")
    train.add_argument("--ctc-weight", type=float, default=0.3, help="with --ctc-text (default %(default)s)")
    train.add_argument("--batch-frames", type=int, default=20000, help="padded source frames per batch")
    train.add_argument("--label-smoothing", type=float, default=0.1)
    train.add_argument("--beam", type=int, default=5, help="beam size of the dev/test decoding and translate")
    train.add_argument("--model", metavar="K=V,...", help="model shape, e.g. dim=256,subsample=2")
    add_optim_options(train, steps=6000, lr=1e-3, warmup=300)
    add_device(train)
    add_quiet(train)
    train.set_defaults(func=run_train, trains=True)


def run_train(args: argparse.Namespace) -> int:
    from speechunits.seq2seq.s2ut_train import train_s2ut

    result = train_s2ut(args.pairs, args.output, source_input=args.source_input, encoder=args.encoder,
                        layer=args.layer, source_codebook=args.source_codebook, target=args.target,
                        target_codebook=args.target_codebook, source_corpus=args.source_corpus,
                        target_corpus=args.target_corpus, ctc_weight=args.ctc_weight if args.ctc_text else 0.0,
                        model=model_options(args.model), optim=optim_config(args), batch_frames=args.batch_frames,
                        label_smoothing=args.label_smoothing, beam=args.beam, resume=args.resume,
                        device=args.device, dtype=args.dtype, quiet=args.quiet)
    if result is not None:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0
