"""``speechunits lm train|score|sample|benchmark``: unit language models (see docs/lm.md)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from speechunits.cli.common import add_quiet, add_threads
from speechunits.errors import SpeechUnitsError, some_of

log = logging.getLogger(__name__)


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="compute device (auto: cuda if available)")


def _add_audio_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codebook", default=None, metavar="CB",
                        help="codebook for audio input (default: the copy inside the LM, from `lm train --codebook`)")
    parser.add_argument("--encoder", default=None, help="the codebook's encoder, if it moved since")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lm", help="train, score, sample unit language models; lexical/syntactic benchmarks",
                                   description="Transformer LMs over units (Hugging Face model directories with "
                                   "their tokenizer): causal (Llama) or masked (ModernBERT).")
    actions = parser.add_subparsers(dest="lm_command", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="train a unit LM on a unit store")
    train.add_argument("store", metavar="STORE", help="unit store (`speechunits encode`)")
    train.add_argument("-o", "--output", required=True, metavar="LM", help="LM directory")
    train.add_argument("--tokens", default="units", metavar="units|dedup|bpe:DIR",
                       help="one token per frame, per run of equal units, or per BPE token of `speechunits bpe "
                       "train` (default %(default)s)")
    train.add_argument("--objective", default="causal", choices=["causal", "masked"])
    train.add_argument("--config", default="tiny", choices=["tiny", "small", "base"], help="model size")
    train.add_argument("--codebook", default=None, metavar="CB",
                       help="the store's codebook: copied into the LM so that it can read audio")
    train.add_argument("--interleave", default=None, metavar="WORDS",
                       help="word alignments (words.tsv, TextGrids): interleaved unit-text training")
    train.add_argument("--interleave-prob", type=float, default=0.3,
                       help="probability that a word is shown as text (default %(default)s)")
    train.add_argument("--crop-prob", type=float, default=None,
                       help="share of training utterances replaced at each batch by a random span of themselves, so "
                       "that a word spoken alone (the lexical benchmark) is not out of distribution (default: the "
                       "config's, 0)")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the config's)")
    train.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--batch-tokens", type=int, default=None, help="padded tokens per batch")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--fp32", action="store_true", help="train in fp32 (default: bf16 autocast)")
    train.add_argument("--dev", default=None, metavar="STORE",
                       help="held-out unit store (same codebook): its loss every --eval-every steps; the LM keeps "
                       "the weights with the lowest one")
    train.add_argument("--eval-every", type=int, default=250, help="steps between held-out evaluations (--dev)")
    train.add_argument("--patience", type=int, default=None,
                       help="with --dev: stop after this many evaluations without improvement (default: never)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in LM (its config and tokens; --steps / --minutes may extend the budget)")
    _add_device(train)
    add_threads(train)
    add_quiet(train)
    train.set_defaults(func=run_train, trains=True)

    ngram = actions.add_parser("ngram", help="count an n-gram unit LM (the baseline; written as ARPA for kenlm)")
    ngram.add_argument("store", metavar="STORE", help="unit store (`speechunits encode`)")
    ngram.add_argument("-o", "--output", required=True, metavar="LM", help="LM directory (lm.arpa + lm.json)")
    ngram.add_argument("--tokens", default="units", metavar="units|dedup|bpe:DIR",
                       help="as for `lm train` (default %(default)s)")
    ngram.add_argument("--order", type=int, default=5, help="n (default %(default)s)")
    ngram.add_argument("--smoothing", default="kneser-ney", choices=["kneser-ney", "witten-bell"],
                       help="interpolated modified Kneser-Ney (kenlm's lmplz) or Witten-Bell (default %(default)s)")
    ngram.add_argument("--codebook", default=None, metavar="CB",
                       help="the store's codebook: copied into the LM so that it can read audio")
    add_quiet(ngram)
    ngram.set_defaults(func=run_ngram)

    words = actions.add_parser("text-ngram", help="count a word n-gram of transcripts (ARPA) for the CTC beam search "
                               "of asr probes (`probe eval --lm`)")
    words.add_argument("text", metavar="TEXT", help="transcripts: text.tsv, Kaldi text, a JSONL manifest with text "
                       "fields, or a .txt file with one sentence per line")
    words.add_argument("-o", "--output", required=True, metavar="ARPA", help="the ARPA file to write")
    words.add_argument("--order", type=int, default=3, help="n (default %(default)s)")
    words.add_argument("--smoothing", default="kneser-ney", choices=["kneser-ney", "witten-bell"])
    words.add_argument("--exclude", default=None, metavar="PROBE",
                       help="leave out the utterances of this probe's dev and test parts (the sentences it is "
                       "scored on)")
    add_quiet(words)
    words.set_defaults(func=run_text_ngram)

    score = actions.add_parser("score", help="log-probability of every utterance of a unit store or audio")
    score.add_argument("lm", metavar="LM")
    score.add_argument("input", metavar="INPUT", help="unit store, audio file/directory or .tsv/.jsonl manifest")
    score.add_argument("--json", action="store_true", help="print JSON (default: TSV id, logprob, tokens, normalised)")
    score.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per forward")
    score.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    _add_audio_options(score)
    _add_device(score)
    add_quiet(score)
    score.set_defaults(func=run_score)

    sample = actions.add_parser("sample", help="continue prompts (GSLM-style) into a unit store")
    sample.add_argument("lm", metavar="LM")
    sample.add_argument("--prompt", default=None, metavar="AUDIO|STORE", help="prompts (default: unconditional)")
    sample.add_argument("--prompt-seconds", type=float, default=None, help="cut every prompt to this length")
    sample.add_argument("--seconds", type=float, required=True, help="seconds of speech to generate")
    sample.add_argument("--num-samples", type=int, default=1, help="samples per prompt (or in all, unconditional)")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int, default=None)
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--stop-at-eos", action="store_true", help="let samples end early at </s>")
    sample.add_argument("--keep-prompt", action="store_true", help="write prompt + continuation")
    sample.add_argument("-o", "--output", required=True, metavar="STORE", help="new unit store")
    sample.add_argument("--vocoder", default=None, metavar="VOC", help="also write OUTPUT/wavs/<id>.wav")
    sample.add_argument("--speaker", default=None, help="vocoder speaker")
    _add_audio_options(sample)
    _add_device(sample)
    add_quiet(sample)
    sample.set_defaults(func=run_sample)

    bench = actions.add_parser("benchmark", help="ZeroSpeech 2021 lexical/syntactic accuracy (sWUGGY/sBLIMP)")
    bench.add_argument("lm", metavar="LM")
    bench.add_argument("dir", metavar="DIR", help="directory with lexical/<set>/ and/or syntactic/<set>/ + gold.csv")
    bench.add_argument("--set", default="dev", choices=["dev", "test"])
    bench.add_argument("--json", action="store_true", help="print the full JSON (default: a summary)")
    bench.add_argument("--submission", default=None, metavar="OUT",
                       help="write OUT/{sum,normalised}/{lexical,syntactic}/<set>.txt score files")
    bench.add_argument("--batch-tokens", type=int, default=16384)
    bench.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    _add_audio_options(bench)
    _add_device(bench)
    add_quiet(bench)
    bench.set_defaults(func=run_benchmark)


def run_train(args: argparse.Namespace) -> int:
    from speechunits.lm.config import preset
    from speechunits.lm.train import train_lm
    from speechunits.lm.vocab import parse_tokens_option

    tokens, bpe_dir = parse_tokens_option(args.tokens)
    if not 0.0 < args.interleave_prob <= 1.0:
        raise SpeechUnitsError(f"--interleave-prob must lie in (0, 1], got {args.interleave_prob}")
    if args.resume:  # the checkpoint's config; only the budget may change
        from speechunits.lm.config import LMConfig
        from speechunits.lm.model_dir import read_meta

        saved = LMConfig.from_dict(read_meta(args.output)["config"])
        from dataclasses import replace

        cfg = replace(saved, steps=args.steps or saved.steps,
                      max_minutes=args.minutes if args.minutes is not None else saved.max_minutes)
    else:
        cfg = preset(args.config, objective=args.objective, steps=args.steps, max_minutes=args.minutes, lr=args.lr,
                     batch_tokens=args.batch_tokens, seed=args.seed, bf16=False if args.fp32 else None,
                     crop_prob=args.crop_prob)
        if args.minutes is not None and args.steps is None:
            cfg.steps = 10 ** 7  # the budget decides
    result = train_lm(args.store, args.output, cfg, tokens=tokens, bpe_dir=bpe_dir, codebook_dir=args.codebook,
                      interleave=args.interleave, interleave_prob=args.interleave_prob, resume=args.resume,
                      dev_store=args.dev, eval_every=args.eval_every, patience=args.patience,
                      device=args.device, quiet=args.quiet)
    last = result.training.history[-1] if result.training.history else None
    log.info("%s: %d steps (%s)%s", args.output, result.training.steps_done, result.training.stop_reason,
             f", loss {last.loss:.3f}, acc {last.metrics.get('acc', float('nan')):.3f}" if last else "")
    return 0


def run_ngram(args: argparse.Namespace) -> int:
    from speechunits.lm.ngram_dir import train_ngram_lm
    from speechunits.lm.vocab import parse_tokens_option

    tokens, bpe_dir = parse_tokens_option(args.tokens)
    meta = train_ngram_lm(args.store, args.output, order=args.order, smoothing=args.smoothing, tokens=tokens,
                          bpe_dir=bpe_dir, codebook_dir=args.codebook)
    log.info("%s: n-grams per order %s", args.output, meta["ngram"]["ngrams"])
    return 0


def run_text_ngram(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechunits.lm.ngram_dir import train_word_ngram

    path = Path(args.text)
    if path.suffix.lower() == ".txt":
        from speechunits.files import read_text_file

        text = read_text_file(path, missing=f"{path}: no such file")
        texts = {str(i): line for i, line in enumerate(text.splitlines())}
        if args.exclude:
            raise SpeechUnitsError("--exclude needs utterance ids: give text.tsv, Kaldi text or JSONL, not .txt")
    else:
        from speechunits.probe.labels import read_transcripts

        texts = read_transcripts(path)
    if args.exclude:
        from speechunits.probe.model_dir import read_split

        split = read_split(args.exclude)
        held = set(split.part("dev")) | set(split.part("test"))
        texts = {u: t for u, t in texts.items() if u not in held}
        log.info("%s: %d utterances of the probe's dev and test parts left out", args.text, len(held))
    stats = train_word_ngram(list(texts.values()), args.output, order=args.order, smoothing=args.smoothing)
    log.info("%s: %d-gram (%s) on %d sentences, %d words, vocabulary %d", args.output, args.order, args.smoothing,
             stats["sentences"], stats["words"], stats["vocabulary"])
    return 0


def run_score(args: argparse.Namespace) -> int:
    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.score import is_unit_store, score_corpus, score_store

    lm = load_lm(args.lm, args.device)
    errors: dict[str, str] = {}
    if is_unit_store(args.input):
        scores = score_store(lm, args.input, batch_tokens=args.batch_tokens, dtype=args.dtype)
    else:
        scores, errors = score_corpus(lm, args.input, codebook=args.codebook, encoder=args.encoder,
                                      batch_tokens=args.batch_tokens, dtype=args.dtype, quiet=args.quiet)
        for utt, error in errors.items():
            log.warning("%s: skipped (%s)", utt, error)
    if args.json:
        print(json.dumps({"lm": str(lm.path), "objective": lm.objective, "utterances": [s.to_dict() for s in scores],
                          "errors": errors}, indent=1))
    else:
        for s in scores:
            sys.stdout.write(f"{s.id}\t{s.logprob:.6f}\t{s.tokens}\t"
                             f"{'' if s.normalised is None else format(s.normalised, '.6f')}\n")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from speechunits.lm.model_dir import load_lm
    from speechunits.lm.sample import SampleOptions, prompts_from, sample_units, synthesize, vocoder_for
    from speechunits.units.store import write_units

    options = SampleOptions(seconds=args.seconds, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            seed=args.seed, stop_at_eos=args.stop_at_eos, keep_prompt=args.keep_prompt)
    if args.num_samples < 1:
        raise SpeechUnitsError(f"--num-samples must be >= 1, got {args.num_samples}")
    lm = load_lm(args.lm, args.device, objective="causal")
    vocoder = vocoder_for(args.vocoder, lm, args.device) if args.vocoder else None
    if vocoder is not None and vocoder.meta.get("speaker") == "table" and args.speaker not in vocoder.speakers:
        # refused before any sampling or writing (contract A: table vocoders need a known voice)
        raise SpeechUnitsError(f"vocoder {args.vocoder} has a speaker table: give --speaker, one of "
                               f"{some_of(vocoder.speakers)} (got {args.speaker!r})")
    prompts = prompts_from(lm, args.prompt, num_samples=args.num_samples, prompt_seconds=args.prompt_seconds,
                           codebook=args.codebook, encoder=args.encoder)
    samples = sample_units(lm, prompts, options)
    write_units(args.output, [(s.id, s.units) for s in samples], lm.consumes["codebook"],
                dedup=not lm.vocab.frame_level)
    if vocoder is not None:
        wavs = Path(args.output) / "wavs"
        for s in samples:
            target = wavs / f"{s.id}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            synthesize(vocoder, s, args.speaker).save(target)
    log.info("%s: %d samples, %d new tokens", args.output, len(samples), sum(s.new_tokens for s in samples))
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    from speechunits.lm.benchmark import run_benchmark as benchmark
    from speechunits.lm.model_dir import load_lm

    lm = load_lm(args.lm, args.device)
    result = benchmark(lm, args.dir, set_name=args.set, codebook=args.codebook, encoder=args.encoder,
                       submission=args.submission, batch_tokens=args.batch_tokens, dtype=args.dtype,
                       quiet=args.quiet)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for task in ("lexical", "syntactic"):
            if task in result:
                r = result[task]
                print(f"{task}\t{args.set}\tsum {r['sum']['accuracy']:.4f}\tnormalised "
                      f"{r['normalised']['accuracy']:.4f}\t({r['sum']['ids']} ids, {r['sum']['pairs']} pairs)")
    return 0
