"""``speechunits vocoder train``: a unit vocoder for any codebook on any corpus (see docs/vocoder.md)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from speechunits.cli.common import add_quiet, add_threads
from speechunits.errors import SpeechUnitsError
from speechunits.vocoder.config import DEFAULT_PERTURB_SEMITONES

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("vocoder", help="train unit vocoders (units + F0 + speaker -> audio)",
                                   description="Train a vocoder for the units of a codebook (see docs/vocoder.md). "
                                   "Use it with `resynth`, `synthesize` and `convert`.")
    actions = parser.add_subparsers(dest="vocoder_command", metavar="ACTION", required=True)
    train = actions.add_parser(
        "train", help="train a vocoder on a corpus",
        description="Compute the units of INPUT with --codebook (and F0 with --f0-method) once, then train. "
        "VOC holds vocoder.json + vocoder.safetensors (usable at every checkpoint), the codebooks, samples/step-N/ "
        "and training/ (resume with --resume). Under torchrun each process takes a share of every step.")
    train.add_argument("input", help="corpus: audio directory, synth corpus directory, .tsv or .jsonl manifest")
    train.add_argument("--codebook", action="append", required=True, metavar="CB",
                       help="codebook directory (repeat for several unit streams of one encoder)")
    train.add_argument("-o", "--out", dest="output", required=True, metavar="VOC", help="vocoder directory")
    train.add_argument("--arch", default="cpu", choices=["cpu", "hifigan"],
                       help="cpu: harmonic-plus-noise source-filter (trains in minutes on a CPU); hifigan: "
                       "HiFi-GAN V1 generator with multi-period/multi-scale discriminators (default %(default)s)")
    train.add_argument("--dedup", action="store_true",
                       help="consume deduplicated units; a duration predictor voices units without durations")
    train.add_argument("--f0", default="continuous", choices=["none", "continuous", "quantized"],
                       help="F0 conditioning: per-speaker normalised log-F0 + voicing, its %d-bin quantisation, "
                       "or none (default %%(default)s)" % 32)
    train.add_argument("--f0-method", default="dio", choices=["dio", "harvest", "praat"],
                       help="pitch tracker (pyworld DIO/Harvest, Praat; default %(default)s)")
    train.add_argument("--speaker", default="none", choices=["none", "table", "embedding"],
                       help="table: one vector per corpus speaker (speakers.tsv); embedding: a reference encoder "
                       "trained jointly, for unseen voices (default %(default)s)")
    train.add_argument("--speakers", metavar="FILE", help="utt<TAB>speaker (default: the corpus's speakers.tsv)")
    train.add_argument("--minutes", type=float, default=None, help="wall-clock training budget")
    train.add_argument("--steps", type=int, default=100000, help="step cap (default %(default)s)")
    train.add_argument("--batch-size", type=int, default=None, help="crops per step (cpu 8, hifigan 16)")
    train.add_argument("--segment-frames", type=int, default=None,
                       help="frames per crop (default: 10240 samples for cpu, 8960 for hifigan)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (cpu 1e-3, hifigan 2e-4)")
    train.add_argument("--gan-start", type=int, default=None,
                       help="cpu tier: add the discriminators from this step on (default: never)")
    train.add_argument("--channels", type=int, default=None, help="cpu tier: network width (default 128)")
    train.add_argument("--blocks", type=int, default=None, help="cpu tier: ConvNeXt blocks (default 8)")
    train.add_argument("--kernel", type=int, default=None,
                       help="cpu tier: convolution kernel in frames, odd (default 7; each block widens the context by "
                       "kernel - 1 frames)")
    train.add_argument("--perturb-units", nargs="?", const=",".join(f"{x:g}" for x in DEFAULT_PERTURB_SEMITONES),
                       default=None, metavar="SEMITONES",
                       help="information perturbation for voice conversion: also train on the units of copies "
                       "shifted in pitch and formants by these semitones (comma-separated; without a list: "
                       "%(const)s); target audio, F0 and speaker stay the original's (docs/vocoder.md)")
    train.add_argument("--embed-init", default="random", choices=["random", "centroids"],
                       help="unit embedding tables: learned from random (default) or started from the codebooks' "
                            "centroids, standardised, with a learned map to the embedding width (as probes do)")
    train.add_argument("--size", default="default", choices=["default", "tiny"],
                       help="tiny: a toy model for smoke tests")
    train.add_argument("--bf16", action="store_true", help="bf16 autocast (losses and STFTs stay in fp32)")
    add_threads(train)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints and samples")
    train.add_argument("--log-every", type=int, default=50)
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in VOC")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_quiet(train)
    train.set_defaults(func=run_train, trains=True)


def run_train(args: argparse.Namespace) -> int:
    from speechunits.vocoder.config import TINY
    from speechunits.vocoder.train import TrainOptions, train_vocoder

    if args.minutes is not None and args.minutes <= 0:
        raise SpeechUnitsError(f"--minutes must be positive, got {args.minutes}")
    config = dict(TINY) if args.size == "tiny" else {}
    for key in ("batch_size", "segment_frames", "gan_start", "channels", "blocks", "kernel"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    if args.embed_init != "random":
        config["embed_init"] = args.embed_init
    if args.perturb_units is not None:
        config["perturb_semitones"] = [x for x in args.perturb_units.split(",") if x.strip()]  # checked by train_vocoder
    options = TrainOptions(steps=args.steps, minutes=args.minutes, lr=args.lr, bf16=args.bf16, seed=args.seed,
                           checkpoint_every=args.checkpoint_every, log_every=args.log_every)
    summary = train_vocoder(args.input, args.codebook, args.output, arch=args.arch, dedup=args.dedup, f0=args.f0,
                            f0_method=args.f0_method, speaker=args.speaker, speakers_file=args.speakers,
                            config=config, options=options, resume=args.resume, device=args.device, quiet=args.quiet)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        log.warning("vocoder %s: %d/%d steps (%s), %.0f audio s trained at %.1f audio s/s", summary["vocoder"],
                    summary["steps_done"], summary["steps_max"], summary["stop_reason"],
                    summary["audio_seconds_trained"], summary["audio_seconds_per_second"])
    return 0
