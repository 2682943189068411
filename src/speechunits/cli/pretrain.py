"""``speechunits pretrain``: HuBERT-style masked prediction from raw audio (see docs/train.md)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from speechunits.cli.common import add_quiet, add_threads
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    from speechunits.pretrain.config import CONV_STRIDES, FRONTENDS, MODEL_PRESETS, RECIPES, PretrainConfig

    d = PretrainConfig()
    p = subparsers.add_parser(
        "pretrain",
        help="train a HuBERT-style model (HF HubertModel directory) by masked unit prediction",
        description="Masked prediction of unit targets (HuBERT). MODEL is a Hugging Face HubertModel (or "
        "Wav2Vec2BertModel with --frontend fbank) "
        "directory usable by every other command; training state lives in MODEL/training/.",
    )
    p.add_argument("input", help="audio directory, .tsv or .jsonl manifest")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="output model directory")
    p.add_argument("--recipe", default="hubert", choices=sorted(RECIPES),
                   help="starting settings: hubert (HuBERT-Base's masking and schedule; GPUs, many hours) or cpu "
                   "(docs/train.md's run D: 100 Hz, 0.2 s spans, lr 1e-3, 16 s batches, unmasked weight 0.5); "
                   "options given explicitly override the recipe (default %(default)s)")
    p.add_argument("--config", default=d.model, choices=sorted(MODEL_PRESETS), help="model size preset")
    p.add_argument("--frame-rate", type=int, default=None, choices=sorted(CONV_STRIDES),
                   help="model frames per second: 50 (HuBERT's CNN) or 100 (last conv stride 1, MFCC's rate); "
                   "default: the recipe's")
    p.add_argument("--frontend", default=d.frontend, choices=FRONTENDS,
                   help="cnn: HuBERT's waveform CNN (a HubertModel); fbank: log-mel filterbanks read by "
                   "conformer blocks (a Wav2Vec2BertModel, w2v-BERT 2.0's layout) (default %(default)s)")
    p.add_argument("--targets", default=d.targets,
                   help="mfcc:K | random-projection:K | CODEBOOK directory | unit store (default %(default)s)")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--max-batch-seconds", type=float, default=None,
                   help="audio per batch in seconds (default: the recipe's)")
    p.add_argument("--crop-seconds", type=float, default=None, help="longest random crop")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--accumulate", type=int, default=d.accumulate, help="micro-batches per optimizer step")
    p.add_argument("--mask-prob", type=float, default=None, help="probability that a frame starts a span")
    p.add_argument("--mask-length", type=int, default=None, help="masked span length in frames")
    p.add_argument("--unmasked-weight", type=float, default=None,
                   help="weight of the loss on unmasked frames (0 = masked frames only)")
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout on hidden states")
    p.add_argument("--attention-dropout", type=float, default=d.attention_dropout,
                   help="dropout on attention weights (any value > 0 disables fused attention: slower)")
    p.add_argument("--no-bf16", action="store_true", help="train in fp32 instead of bf16 autocast")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget: stop early and let the lr decay follow elapsed time (not reproducible)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in MODEL")
    p.add_argument("--augment", default=None, metavar="SPEC",
                   help="perturb the model's input, keep the clean audio's targets: comma-separated KIND:LOW..HIGH "
                   "(pitch semitones, reverb RT60 s, noise SNR dB, gain dB) and p=P, the probability of each, "
                   "e.g. pitch:-3..3,noise:5..30,reverb:0.2..0.8,p=0.5 (default: none; on --resume: the checkpoint's)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="start from the encoder weights of this HubertModel directory (e.g. an earlier "
                   "`speechunits pretrain` model of the same --config/--frame-rate) instead of random weights")
    p.add_argument("--iterate", type=int, default=1,
                   help="HuBERT iterations to chain: after each, fit K-means on --iterate-layer of the model "
                   "and train the next from scratch on those targets (intermediate models: MODEL.iterN)")
    p.add_argument("--iterate-layer", type=int, default=None,
                   help="layer clustered for the next iteration (default: the middle layer)")
    p.add_argument("--iterate-k", type=int, default=None, help="K of the next iteration (default: same K)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--loader-workers", type=int, default=0, metavar="N",
                   help="processes that build training batches ahead of the steps (the same batches; worth it when "
                        "--augment makes building them as slow as a step, as on a GPU); 0: built inline")
    add_threads(p)
    add_quiet(p)
    p.set_defaults(func=run, trains=True)


def _recipe_settings(args: argparse.Namespace) -> dict:
    """Every field some recipe sets: the chosen recipe's value, or the option's when given
    (those options default to None for this)."""
    from speechunits.pretrain.config import RECIPES, PretrainConfig

    base = PretrainConfig(**RECIPES[args.recipe])
    fields = sorted(set().union(*RECIPES.values()))
    return {name: getattr(base, name) if getattr(args, name, None) is None else getattr(args, name)
            for name in fields}


def run(args: argparse.Namespace) -> int:
    from speechunits.pretrain.config import PretrainConfig
    from speechunits.pretrain.iterate import pretrain_iterations
    from speechunits.pretrain.run import saved_config

    if args.iterate < 1:
        raise SpeechUnitsError(f"--iterate: must be >= 1, got {args.iterate}")
    if args.resume and args.iterate > 1:
        raise SpeechUnitsError("--resume: resume one iteration at a time (without --iterate)")
    augment = args.augment
    if augment is None:  # not given: the checkpoint's on --resume, none otherwise
        augment = saved_config(Path(args.output)).augment if args.resume else "none"
    train = PretrainConfig(
        **_recipe_settings(args), model=args.config, frontend=args.frontend, targets=args.targets, steps=args.steps,
        accumulate=args.accumulate,
        dropout=args.dropout, attention_dropout=args.attention_dropout, bf16=not args.no_bf16, seed=args.seed,
        checkpoint_every=args.checkpoint_every, max_minutes=args.max_minutes, augment=augment, init=args.init,
    )
    results = pretrain_iterations(args.input, Path(args.output), train, iterations=args.iterate,
                                  layer=args.iterate_layer, k=args.iterate_k, resume=args.resume,
                                  device=args.device, quiet=args.quiet, loader_workers=args.loader_workers)
    last = results[-1]
    summary = {
        "model": str(last.model_dir),
        "iterations": [str(r.model_dir) for r in results],
        "targets": last.targets.spec,
        "augment": last.config.augment,
        "init": last.init,
        "steps_done": last.training.steps_done,
        "steps_max": last.training.steps_max,
        "stop_reason": last.training.stop_reason,
    }
    if last.history:
        tail = last.history[-min(len(last.history), train.log_every):]
        summary["final_loss"] = sum(h.loss for h in tail) / len(tail)
        summary["final_masked_acc"] = sum(h.metrics["masked_acc"] for h in tail) / len(tail)
        summary["audio_per_second"] = sum(h.amount for h in last.history) / max(
            sum(h.wall_seconds for h in last.history), 1e-9)
    print(json.dumps(summary, indent=2))
    return 0
