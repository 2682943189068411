"""``speechunits probe train|eval``: SUPERB-style probes on features or units (see docs/probe.md)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from speechunits.cli.common import add_device, add_quiet, add_threads, parse_layers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.defaults import (DEFAULT_BATCH_FRAMES, DEFAULT_HEAD, DEFAULT_LSTM_LAYERS, DEFAULT_VERIFICATION,
                                        DEFAULT_WARMUP_FRACTION, TASK_HEAD_DEFAULTS)

log = logging.getLogger(__name__)

TASK_CHOICES = ("phones", "asr", "speaker", "classify", "frames", "verify", "slots", "diarize", "enhance", "separate")


def _add_input_options(parser: argparse.ArgumentParser, training: bool) -> None:
    group = parser.add_argument_group("what the probe reads" if training else "where its input comes from")
    if training:
        group.add_argument("--encoder", help="frozen features computed on the fly: a model directory, hub id, "
                           "mfcc or logmel")
        group.add_argument("--layers", default="all", help="all | 6 | 0-12 | 3,6,9 (default %(default)s)")
        group.add_argument("--finetune", metavar="top:N|lora[:R]|adapters[:R]", default=None,
                           help="top:N: also train the top N transformer blocks of --encoder (the frozen part's "
                           "output is cached); lora / adapters: rank-R (default 8) peft LoRA updates of the "
                           "attention / feed-forward of blocks 1..max(--layers), the encoder frozen (needs peft)")
        group.add_argument("--interface", default="weighted-sum",
                           choices=["weighted-sum", "hierarchical-conv", "single"],
                           help="how layers are combined (single: the one layer of --layers)")
    else:
        group.add_argument("--encoder", help="the encoder's name or directory, if it moved since training")
    group.add_argument("--features", metavar="DIR", help="a `speechunits features` directory")
    group.add_argument("--units", metavar="STORE", action="append",
                       help="a unit store (repeat for several streams, one embedding table each)")
    group.add_argument("--bpe", metavar="DIR", help="BPE tokens of the deduplicated units (`speechunits bpe train`)")
    if training:
        group.add_argument("--dedup", action="store_true", help="deduplicate the units, keeping durations")
        group.add_argument("--combine", default="sum", choices=["sum", "attention"],
                           help="how the streams' embeddings are combined (default %(default)s)")
        group.add_argument("--embed-init", default="random", choices=["random", "centroids", "centroids-frozen"],
                           help="unit embedding tables: learned from random, started from the codebook's "
                           "standardised centroids (DASB), or fixed to them (default %(default)s)")
        group.add_argument("--codebook", metavar="DIR", action="append",
                           help="the codebook of each --units store, in order (checked by sha256; needed by "
                           "--embed-init centroids*)")


def _add_label_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("labels (default: the files the corpus carries)")
    group.add_argument("--labels", metavar="FILE", help="utt<TAB>label (classify; or a directory: the folder of "
                       "each file, or a Hugging Face table's column as TABLE::COLUMN), transcripts (asr), "
                       "phone transcripts utt<TAB>p1 p2 ... (phones), speakers (speaker, verify), a SNIPS "
                       "all.iob.snips.txt or utt<TAB>text with B-TYPE ... E-TYPE around slots (slots; its intents "
                       "for classify), an RTTM of speaker turns (diarize; default: the corpus's 'rttm'), clean "
                       "references (enhance: an scp 'utt path' or a folder of clean files named as the noisy ones; "
                       "separate: the first source's scp, its spk2.scp ... siblings read too; default: the "
                       "corpus's 'spk1.scp')")
    group.add_argument("--alignments", metavar="PATH", help="phones.tsv or TextGrids (phones, frames)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="train and evaluate SUPERB-style probes on features or units",
                                   description="Small models (linear, BiLSTM) trained on frozen features or "
                                   "units: phones (PER), asr (WER/CER), speaker, classify (accuracy), frames, "
                                   "verify (speaker verification EER on unseen speakers), slots (slot filling: "
                                   "slot-type F1, slot-value CER), diarize (speaker diarization: DER), enhance (speech "
                                   "enhancement by a spectral mask: PESQ, STOI, SI-SDR), separate (speech separation "
                                   "by masks: SI-SDR improvement).")
    actions = parser.add_subparsers(dest="probe_command", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="train a probe (lr x seed sweep, best by dev, test once)")
    train.add_argument("task", choices=TASK_CHOICES)
    train.add_argument("input", help="the corpus: audio directory, .tsv or .jsonl manifest (labels are found "
                       "beside it: phones.tsv, text.tsv, speakers.tsv ...)")
    train.add_argument("-o", "--output", required=True, metavar="PROBE", help="probe directory")
    _add_input_options(train, training=True)
    _add_label_options(train)
    train.add_argument("--speakers", metavar="FILE", help="utt<TAB>speaker (default: the corpus's speakers.tsv)")
    train.add_argument("--head", default=None, choices=["linear", "bilstm", "xvector"],
                       help="linear, bilstm (SUPERB's two), or xvector (speaker, classify, verify: SUPERB's "
                       f"speaker-verification network); default {DEFAULT_HEAD}{_by_task('head')}")
    train.add_argument("--hidden", type=int, default=256,
                       help="BiLSTM units per direction, or x-vector channels (default %(default)s)")
    train.add_argument("--lstm-layers", type=int, default=None,
                       help=f"BiLSTM layers (default {DEFAULT_LSTM_LAYERS}{_by_task('lstm_layers')})")
    train.add_argument("--dropout", type=float, default=0.0, metavar="P",
                       help="the head's dropout while training: on the input of every BiLSTM layer and on its "
                       "output (linear head: on its input); default %(default)s")
    train.add_argument("--time-mask", metavar="N:R",
                       help="SpecAugment time masks while training: N masks per utterance on the embedded units or "
                       "the weighted features, each up to a share R of the utterance (ESPnet-style, e.g. 5:0.05); "
                       "default none")
    train.add_argument("--unit-noise", metavar="P[:N]",
                       help="units with --embed-init centroids: while training, replace each unit with probability P "
                       "by one of its N nearest units by centroid distance (default N 5); default none")
    train.add_argument("--stack", type=int, default=1, metavar="N",
                       help="concatenate every N adjacent input frames before the head (100 Hz MFCC, N=3: 33 Hz; "
                       "phones, asr, speaker, classify; default %(default)s)")
    train.add_argument("--standardize", action="store_true",
                       help="remove the training part's mean and std of every feature dimension (stored in the "
                       "probe; features only)")
    train.add_argument("--classes", metavar="SPEC",
                       help="classify: the classes to learn: NAME keeps one, FROM=TO renames or merges, *=TO maps the "
                       "rest (else dropped); presets superb-ks (ten keywords, _silence_, *=_unknown_) and superb-er "
                       "(neu,hap,ang,sad,exc=hap)")
    train.add_argument("--balance", action="store_true",
                       help="speaker, classify: weigh each class alike in the loss (n / (classes x n_class)), for "
                       "skewed classes such as keyword spotting's _unknown_")
    verify = train.add_argument_group("verify (speaker embeddings trained with AM-softmax, scored by cosine on "
                                      "speakers never seen in training; always split by speaker)")
    verify.add_argument("--speaker-dim", type=int, default=None, metavar="E",
                        help=f"embedding size (default {DEFAULT_VERIFICATION['embedding_dim']})")
    verify.add_argument("--margin", type=float, default=None, metavar="M",
                        help=f"AM-softmax margin (default {DEFAULT_VERIFICATION['margin']:g})")
    verify.add_argument("--scale", type=float, default=None, metavar="S",
                        help=f"AM-softmax scale (default {DEFAULT_VERIFICATION['scale']:g})")
    train.add_argument("--speakers-per-recording", type=int, default=None, metavar="N",
                       help="diarize: speaker slots of the probe (default: the most speakers of a training recording; "
                       "at most 4)")
    train.add_argument("--tokenizer", default="chars", help="asr targets: chars, or a BPE vocabulary size")
    train.add_argument("--split-by", default=None, choices=["utterance", "speaker"],
                       help="default utterance (verify: always speaker)")
    train.add_argument("--split-file", metavar="FILE", help="your own split: utt<TAB>train|dev|test, VoxCeleb1's iden_split.txt, or a "
                       "directory with validation_list.txt and testing_list.txt (Speech Commands; used unasked when "
                       "INPUT has them); verify: also a trial file (VoxCeleb's veri_test2.txt), whose utterances are "
                       "the test part")
    train.add_argument("--fold", type=int, metavar="K", help="cross-validation: test on fold K (an IEMOCAP release's "
                       "session K, SUPERB's emotion folds; else a manifest's or table's 'fold' column), train on the "
                       "others with a random fifth of them as dev")
    train.add_argument("--lr", default="1e-3", help="learning rates to sweep, e.g. 1e-4,1e-3,1e-2")
    train.add_argument("--seeds", type=int, default=1, help="seeds per learning rate (0..N-1)")
    train.add_argument("--max-steps", type=int, default=2000, help="steps per run (default %(default)s)")
    train.add_argument("--max-minutes", type=float, default=None, help="time budget of the whole sweep")
    train.add_argument("--eval-every", type=int, default=50, help="steps between dev evaluations")
    train.add_argument("--patience", type=int, default=5, help="dev evaluations without improvement before stopping")
    train.add_argument("--crop-seconds", type=float, default=None, metavar="S",
                       help="train on random crops of at most S seconds (frames, diarize, enhance, separate: "
                       "long mixtures then fill a batch; --batch-frames bounds crops x length); dev and test "
                       "read whole utterances")
    train.add_argument("--dev-sample", type=int, default=None, metavar="N",
                       help="evaluate only N dev utterances while training (a fixed seeded sample), then score "
                       "each run's best step on all of dev, which picks the lr: for a dev part that would eat a "
                       "short --max-minutes (not verify)")
    train.add_argument("--batch-frames", type=int, default=None,
                       help=f"padded input frames per batch (default {DEFAULT_BATCH_FRAMES}{_by_task('batch_frames')})")
    train.add_argument("--warmup-steps", type=int, default=None,
                       help="learning-rate warmup steps (default min(100, max-steps / 10))")
    train.add_argument("--warmup-fraction", type=float, default=DEFAULT_WARMUP_FRACTION,
                       help="with --max-minutes: the warmup ends at the latest once this share of a run's "
                       "budget is spent (default %(default)s)")
    train.add_argument("--step-schedule", action="store_true",
                       help="warmup and learning-rate decay follow the steps alone; --max-minutes only stops a "
                       "run (runs that end before the budget repeat step for step whatever the machine's load)")
    train.add_argument("--resume", action="store_true",
                       help="continue the unfinished sweep in PROBE with the same input, labels, split and "
                       "settings: ended runs are reused, the others go on from their last dev evaluation")
    add_device(train)
    add_threads(train)
    add_quiet(train)
    train.set_defaults(func=run_train, trains=True)

    evaluate = actions.add_parser("eval", help="score a probe on a labelled corpus")
    evaluate.add_argument("probe", metavar="PROBE")
    evaluate.add_argument("input", help="the corpus (audio directory, .tsv or .jsonl manifest)")
    _add_input_options(evaluate, training=False)
    _add_label_options(evaluate)
    evaluate.add_argument("--split", choices=["train", "dev", "test"], default=None,
                          help="only the utterances of this part of the probe's split")
    evaluate.add_argument("--trials", metavar="FILE",
                          help="verify probes: score these trials instead of every pair of INPUT's utterances "
                          "(VoxCeleb's 'LABEL UTT1 UTT2' or Kaldi's 'UTT1 UTT2 target|nontarget')")
    evaluate.add_argument("--score-norm", metavar="NORM", default=None,
                          help="verify probes: none, s-norm, as-norm or as-norm:N (cohort size) instead of the "
                               "normalisation the probe chose on dev, against its training speakers")
    evaluate.add_argument("--rttm-out", metavar="FILE",
                          help="diarize probes: write the predicted speaker turns as RTTM (speakers slot0, slot1, ...)")
    evaluate.add_argument("--threshold", type=float, metavar="P",
                          help="diarize probes: a slot talks where its sigmoid exceeds P, instead of the threshold "
                          "the probe chose on dev (for a corpus whose overlap or noise differs from its training)")
    evaluate.add_argument("--median-frames", type=int, metavar="N",
                          help="diarize probes: median-filter each slot's activity over N frames (odd; 1: no "
                          "filter; s3prl's 11 at 100 frames/s) instead of the probe's dev choice")
    evaluate.add_argument("--audio-out", metavar="DIR",
                          help="enhance / separate probes: write the enhanced audio there (<utt>.wav, 16 kHz) / "
                          "the separated sources (s1/<utt>.wav, s2/<utt>.wav, ...)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_beam_options(evaluate)
    add_device(evaluate)
    add_quiet(evaluate)
    evaluate.set_defaults(func=run_eval)


def _by_task(option: str) -> str:
    """``"; enhance, separate: 3"``: the tasks whose own default of ``option`` differs, for a help text."""
    tasks: dict[Any, list[str]] = {}
    for task, own in sorted(TASK_HEAD_DEFAULTS.items()):
        if option in own:
            tasks.setdefault(own[option], []).append(task)
    return "".join(f"; {', '.join(names)}: {value} (SUPERB's)" for value, names in tasks.items())


def _parse_lrs(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechUnitsError(f"--lr: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise SpeechUnitsError(f"--lr: expected positive learning rates, got {text!r}")
    return values


def _make_input(args: argparse.Namespace):
    from speechunits.probe.feature_inputs import EncoderInput, FeaturesDirInput
    from speechunits.probe.unit_inputs import UnitInput

    chosen = [name for name in ("encoder", "features", "units") if getattr(args, name)]
    if len(chosen) != 1:
        raise SpeechUnitsError("give exactly one of --encoder, --features and --units")
    layers = None if args.layers == "all" else parse_layers(args.layers)
    if args.units:
        if args.finetune:
            raise SpeechUnitsError("--finetune needs --encoder (the blocks to train come from the model)")
        return UnitInput(args.units, dedup=args.dedup, bpe_dir=args.bpe, codebooks=args.codebook)
    if args.bpe or args.dedup or args.codebook or args.embed_init != "random":
        raise SpeechUnitsError("--dedup, --bpe, --codebook and --embed-init apply to --units")
    if args.features:
        if args.finetune:
            raise SpeechUnitsError("--finetune needs --encoder (the blocks to train come from the model)")
        return FeaturesDirInput(args.features, layers)
    if args.finetune:
        from speechunits.probe.train import finetune_input

        if args.layers != "all" and args.finetune.startswith("top"):
            raise SpeechUnitsError("--finetune top:N reads layer K-N and weighs layers K-N..K; drop --layers")
        return finetune_input(args.encoder, args.finetune, corpus=args.input, device=args.device, dtype=args.dtype,
                              quiet=args.quiet)
    return EncoderInput(args.encoder, layers, corpus=args.input, device=args.device, dtype=args.dtype,
                        quiet=args.quiet)


def run_train(args: argparse.Namespace) -> int:
    from speechunits.probe.train import train_probe_on_corpus
    from speechunits.probe.classes import ClassMap

    if args.seeds < 1:
        raise SpeechUnitsError(f"--seeds: must be >= 1, got {args.seeds}")
    tokenizer: str | int = args.tokenizer
    if tokenizer != "chars":
        if not str(tokenizer).isdigit():
            raise SpeechUnitsError(f"--tokenizer: chars or a BPE vocabulary size, got {tokenizer!r}")
        tokenizer = int(tokenizer)
    from speechunits.probe.heads import check_dropout
    from speechunits.probe.augment import parse_time_mask, parse_unit_noise

    # bad values fail before the corpus and input are read
    check_dropout(args.dropout), parse_time_mask(args.time_mask), parse_unit_noise(args.unit_noise)
    if args.classes:
        ClassMap.parse(args.classes)  # a bad spec fails before the input is read
    verification = {key: value for key, value in (("embedding_dim", args.speaker_dim), ("margin", args.margin),
                                                  ("scale", args.scale)) if value is not None}
    if verification and args.task != "verify":
        raise SpeechUnitsError(f"--speaker-dim, --margin and --scale apply to task 'verify', not {args.task!r}")
    if args.task == "verify":
        from speechunits.probe.model import check_verification

        check_verification({**DEFAULT_VERIFICATION, **verification})
    from speechunits.training.distributed import init_distributed

    _, rank_device = init_distributed(args.device)  # under torchrun: this rank's device, for the encoder too
    args.device = str(rank_device)
    inputs = _make_input(args)
    result = train_probe_on_corpus(
        args.task, args.input, inputs, args.output, labels=args.labels, alignments=args.alignments,
        speakers=args.speakers, split_by=args.split_by or ("speaker" if args.task == "verify" else "utterance"),
        split_file=args.split_file,
        classes=args.classes, balance=args.balance, fold=args.fold,
        interface=args.interface, head=args.head, combine=args.combine, hidden=args.hidden, tokenizer=tokenizer,
        lrs=_parse_lrs(args.lr), seeds=list(range(args.seeds)), max_steps=args.max_steps,
        max_minutes=args.max_minutes, eval_every=args.eval_every, patience=args.patience,
        dev_sample=args.dev_sample, crop_seconds=args.crop_seconds, batch_frames=args.batch_frames,
        warmup_steps=args.warmup_steps, warmup_fraction=args.warmup_fraction,
        step_schedule=args.step_schedule,
        standardize=args.standardize, stack=args.stack, lstm_layers=args.lstm_layers, embed_init=args.embed_init,
        dropout=args.dropout, time_mask=args.time_mask, unit_noise=args.unit_noise,
        finetune=args.finetune,
        finetune_layers=None if args.layers == "all" or not args.finetune else parse_layers(args.layers),
        verification=verification or None, speaker_slots=args.speakers_per_recording, resume=args.resume,
        device=args.device, quiet=args.quiet)
    if result is None:  # a torchrun rank other than 0: rank 0 wrote the probe and reports
        return 0
    summary = {"probe": str(result.probe_dir), "task": result.task, "lr": result.lr, "seed": result.seed,
               "dev": {k: v["mean"] for k, v in result.dev.items()},
               "test": {k: {"mean": v["mean"], "std": v["std"]} for k, v in result.test.items()},
               "layer_weights": result.layer_weights, "missing_labels": len(result.missing_labels),
               "input_errors": len(result.input_errors)}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def add_beam_options(parser: argparse.ArgumentParser) -> None:
    """``--lm`` and its search settings (asr probes over characters or BPE)."""
    parser.add_argument("--lm", default=None, metavar="ARPA",
                        help="asr probes (characters or BPE): a word n-gram (`speechunits lm text-ngram`, kenlm) for a "
                        "CTC prefix beam search instead of greedy decoding")
    parser.add_argument("--alpha", type=float, default=0.5, help="--lm: LM weight (choose on dev; default %(default)s)")
    parser.add_argument("--beta", type=float, default=1.0,
                        help="--lm: bonus per word (choose on dev; default %(default)s)")
    parser.add_argument("--beam", type=int, default=32, help="--lm: beam width (default %(default)s)")
    parser.add_argument("--unk-offset", type=float, default=-10.0,
                        help="--lm: natural-log penalty of a word outside the LM (and of a partial word that begins "
                        "none of its words), beside the LM's <unk> probability (default %(default)s)")


def beam_options(args: argparse.Namespace) -> Any:
    from speechunits.probe.lm_decode import BeamOptions

    if args.lm is None:
        return None
    return BeamOptions(alpha=args.alpha, beta=args.beta, beam=args.beam, unk_offset=args.unk_offset)


def run_eval(args: argparse.Namespace) -> int:
    from speechunits.probe.evaluate import evaluate_probe

    result = evaluate_probe(args.probe, args.input, features=args.features, units=args.units, bpe=args.bpe,
                            labels=args.labels, alignments=args.alignments, subset=args.split,
                            encoder=args.encoder, device=args.device, lm=args.lm, beam=beam_options(args),
                            trials=args.trials, rttm_out=args.rttm_out, score_norm=args.score_norm,
                            threshold=args.threshold, median_frames=args.median_frames, audio_out=args.audio_out, quiet=args.quiet)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            sys.stdout.write(f"{key:<{width}}  {shown}\n")
    return 0
