"""``speechunits tts train|say``: text or phones -> units (FastSpeech-like), and speech through a vocoder."""
from __future__ import annotations

import argparse
import json
import sys

from speechunits.cli.common import add_device, add_quiet, add_threads
from speechunits.errors import SpeechUnitsError


def add_optim_options(parser: argparse.ArgumentParser, steps: int, lr: float, warmup: int) -> None:
    """The loop's options of the sequence trainers (tts, s2ut)."""
    group = parser.add_argument_group("training loop")
    group.add_argument("--steps", type=int, default=steps, help="optimizer steps (default %(default)s)")
    group.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops earlier")
    group.add_argument("--lr", type=float, default=lr, help="peak learning rate (default %(default)s)")
    group.add_argument("--warmup-steps", type=int, default=warmup)
    group.add_argument("--accumulate", type=int, default=1, help="micro-batches per step")
    group.add_argument("--no-bf16", action="store_true", help="fp32 instead of bf16 autocast")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--checkpoint-every", type=int, default=250)
    group.add_argument("--resume", action="store_true", help="continue the checkpoint in the output directory")
    add_threads(group)


def optim_config(args: argparse.Namespace):
    from speechunits.training import OptimConfig

    return OptimConfig(steps=args.steps, lr=args.lr, warmup_steps=args.warmup_steps, schedule="cosine",
                       accumulate=args.accumulate, bf16=not args.no_bf16, max_minutes=args.minutes, seed=args.seed,
                       checkpoint_every=args.checkpoint_every)


def model_options(text: str | None) -> dict:
    """``--model dim=128,encoder_layers=2`` into config overrides (ints and floats)."""
    if not text:
        return {}
    out: dict = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SpeechUnitsError(f"--model: expected key=value pairs, got {text!r}")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            raise SpeechUnitsError(f"--model: {key}={value} is not a number") from None
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tts", help="text -> units (non-autoregressive, with durations) -> speech",
                                   description="A FastSpeech-like model from phones (espeak-ng) or characters to "
                                   "deduplicated units with durations; a unit vocoder speaks them.")
    actions = parser.add_subparsers(dest="tts_command", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="train on a corpus with alignments, or with transcripts only")
    train.add_argument("corpus", help="corpus directory (manifest.tsv, phones.tsv/textgrids and/or transcripts, "
                       "speakers.tsv) or its manifest")
    train.add_argument("--codebook", required=True, metavar="CB", help="the codebook whose units the model predicts")
    train.add_argument("-o", "--output", required=True, metavar="TTS", help="model directory")
    train.add_argument("--units", metavar="STORE", help="a unit store of that codebook over the corpus "
                       "(default: encode the corpus with the codebook's encoder)")
    train.add_argument("--input", default="phones", choices=["phones", "chars"])
    train.add_argument("--speaker", default="auto", choices=["auto", "table", "none"],
                       help="table: one embedding per speaker of speakers.tsv; none: one voice; auto (default): "
                       "table when the corpus has a speakers file, else none")
    train.add_argument("--alignments", metavar="PATH", help="phones.tsv or TextGrids (default: the corpus's)")
    train.add_argument("--durations", default="auto", choices=["auto", "alignments", "mas"],
                       help="where symbol durations come from: the alignments, or mas: learned from the transcripts "
                       "by an aligner and monotonic alignment search; auto (default): alignments when the corpus "
                       "has them, else mas")
    train.add_argument("--alignment-weight", type=float, default=1.0,
                       help="weight of the aligner's forward-sum loss (--durations mas; default %(default)s)")
    train.add_argument("--voice", help="espeak-ng voice that phonemises new text, and the transcripts with "
                       "--durations mas (default: the corpus's)")
    train.add_argument("--holdout", type=float, default=0.05,
                       help="share of distinct sentences held out and scored at the end (default %(default)s)")
    train.add_argument("--batch-frames", type=int, default=6000, help="padded unit frames per batch")
    train.add_argument("--model", metavar="K=V,...", help="model shape, e.g. dim=192,encoder_layers=3")
    add_optim_options(train, steps=4000, lr=1e-3, warmup=200)
    add_device(train)
    add_quiet(train)
    train.set_defaults(func=run_train, trains=True)

    say = actions.add_parser("say", help="speak text (or a text file) through a vocoder")
    say.add_argument("text", nargs="?", help="the text (or --text-file)")
    say.add_argument("--text-file", metavar="FILE", help="id<TAB>text or one text per line")
    say.add_argument("--tts", required=True, metavar="TTS")
    say.add_argument("--vocoder", metavar="VOC", help="a unit vocoder of the same codebook")
    say.add_argument("--speaker", help="TTS speaker (a name of its speaker table)")
    say.add_argument("--vocoder-speaker", help="the vocoder's speaker (default: --speaker)")
    say.add_argument("--voice", help="espeak-ng voice for phonemes (default: the model's)")
    say.add_argument("--phones", action="store_true",
                     help="the text is space-separated phones of the model's inventory (a model trained on "
                     "alignments whose phones are not espeak-ng's, e.g. ARPAbet: 'p l iy z')")
    say.add_argument("--duration-scale", type=float, default=1.0, help="slower > 1 > faster")
    say.add_argument("--temperature", type=float, default=0.0,
                     help="draw each frame's unit at this temperature (0: the argmax unit)")
    say.add_argument("--seed", type=int, default=0, help="seed of the draws (--temperature > 0)")
    say.add_argument("-o", "--output", metavar="OUT", help="out.wav, or a directory for --text-file")
    say.add_argument("--units-out", metavar="STORE", help="also write the units to a new unit store")
    add_device(say, dtype=False)
    add_quiet(say)
    say.set_defaults(func=run_say)


def run_train(args: argparse.Namespace) -> int:
    from speechunits.seq2seq.tts_train import train_tts

    result = train_tts(args.corpus, args.codebook, args.output, units=args.units, input_kind=args.input,
                       speaker=args.speaker, alignments=args.alignments, voice=args.voice, holdout=args.holdout,
                       model=model_options(args.model), optim=optim_config(args), batch_frames=args.batch_frames,
                       durations=args.durations, alignment_weight=args.alignment_weight, resume=args.resume, device=args.device, dtype=args.dtype, quiet=args.quiet)
    if result is not None:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


def run_say(args: argparse.Namespace) -> int:
    from speechunits.seq2seq.infer import read_text_file, say

    if (args.text is None) == (args.text_file is None):
        raise SpeechUnitsError("give the text or --text-file (one of them)")
    ids, texts = read_text_file(args.text_file) if args.text_file else (None, [args.text])
    result = say(args.tts, texts, ids=ids, out=args.output, units_out=args.units_out, vocoder=args.vocoder,
                 speaker=args.speaker, vocoder_speaker=args.vocoder_speaker, voice=args.voice, phones=args.phones,
                 duration_scale=args.duration_scale, temperature=args.temperature, seed=args.seed,
                 device=args.device)
    sys.stdout.write(json.dumps({"texts": len(texts), "wavs": [str(p) for p in result["wavs"]],
                                 "units": [len(u) for u in result["units"]]}) + "\n")
    return 0
