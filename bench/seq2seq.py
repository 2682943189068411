"""Must-show of issue 17: unit TTS and speech-to-unit translation, measured before and after the vocoder.

Headline command (CPU, hours; ``--quick`` checks that every step runs, in minutes)::

    python bench/seq2seq.py --out bench/out/seq2seq --tts-minutes 60 --tts-speakers 6 \\
        --parallel-minutes 60 --parallel-speakers 4 --train-minutes 45 --vocoder-minutes 45

The trainings are cached in OUT, so ``--stage vocoder|tts|s2ut|mt|judge-phones|judge-asr`` runs one
of them alone (e.g. two at a time, ``--threads 1`` each, on a 2-core machine) and a last run without
``--stage`` measures. Start ``--stage vocoder`` first and alone until ``OUT/codebook_mfcc_k100``
exists, and make the parallel corpus before ``s2ut``/``mt``/``judge-asr`` run side by side (each
would otherwise write it). ``--corpus DIR`` reuses a synthetic corpus made with the same settings
(e.g. bench/vocoder.py's).

What it does (every setting fixed here; the TTS's head and decoding were chosen on dev sentences by
bench/tts_dev.py, and the test never chooses anything):

1. **Data.** ``synthesize_corpus`` (English, ``--tts-minutes``, ``--tts-speakers``) for TTS, and
   ``synthesize_parallel(source="es", target="en")`` (contract C) for S2UT. One MFCC K=100 codebook
   (``speechunits fit``) fitted on the TTS corpus without its held-out sentences (``OUT/voc_train``):
   the TTS predicts its units, S2UT its units of the English side, so one vocoder speaks both.
2. **Vocoder.** ``--vocoder DIR`` (a deduplicating vocoder of that codebook), else docs/vocoder.md's
   recipe with a duration predictor: ``speechunits vocoder train OUT/voc_train --codebook CB --dedup
   --speaker table --perturb-units=-1,1 --minutes M`` (contract A), so neither the codebook nor the
   vocoder has heard a held-out sentence. Without a vocoder the after-vocoder figures are skipped.
3. **Judges** trained on original audio only (MFCC features, BiLSTM head): a ``phones`` probe on the
   TTS corpus's training utterances (PER of synthesised vs resynthesised held-out speech); an ``asr``
   probe on the training pairs' English side (ASR-BLEU of translated speech) and one on their
   Spanish side (the cascade's source ASR).
4. **TTS** (``train_tts``, phones, speaker table, the autoregressive unit head of width
   ``--tts-ar-hidden``, argmax unless ``--tts-temperature``, ``--train-minutes``; 10 % of the
   sentences held out): unit error rate / unit BLEU / diversity of the held-out units; with a vocoder, the judge's
   PER on held-out sentences spoken by their own speaker, against resynthesis of the reference units
   (the must-show: ratio <= 2); inference x real time (units only, and units + vocoder).
5. **S2UT** (``train_s2ut``: MFCC features -> English units, auxiliary CTC, ``--train-minutes``):
   unit BLEU / UER / diversity (>= 0.9 wanted) on the test pairs, beam 5; ASR-BLEU of the vocoded
   output; decoding x real time.
6. **Cascade** in the same run: Spanish ASR probe -> text translator (``train_s2ut`` on
   characters, ``--train-minutes``) -> the TTS of step 4 (in the reference's voice where the TTS
   knows it, else its first speaker): text BLEU of the
   translation, unit BLEU / UER of its units against the reference English units, and ASR-BLEU.
   ASR-BLEU is also given for the reference English speech and for its units resynthesised by the
   vocoder (the ceiling that the judge and the vocoder leave to any unit predictor).

Results: ``OUT/results.json`` and a markdown table (``OUT/table.md``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from su import fit_codebook, su  # noqa: E402  (bench/su.py)

log = logging.getLogger("bench.seq2seq")

#: Share of the TTS corpus's sentences held out (all their utterances), seed 0.
TTS_HOLDOUT = 0.1
#: ``--stage`` values: one training each (to run them side by side in separate processes), or all.
STAGES = ("all", "vocoder", "tts", "s2ut", "mt", "judge-phones", "judge-asr")


def write_split(path: Path, parts: dict[str, list[str]]) -> Path:
    path.write_text("".join(f"{u}\t{part}\n" for part, ids in parts.items() for u in ids), encoding="utf-8")
    return path


def train_judge(task: str, corpus: Path, split: Path, out: Path, minutes: float, quick: bool) -> Path:
    """The fast phone-probe judge of docs/probe.md (``JUDGE_PHONES_ARGS``); an ``asr`` (characters) judge
    stacks 2 frames instead of 3 (~18 characters per second of speech: 33 Hz frames would leave CTC
    under 2 frames per character)."""
    from speechunits.probe.defaults import JUDGE_PHONES_ARGS

    if not (out / "probe.json").is_file():
        su("probe", "train", task, corpus / "manifest.tsv", "-o", out, "--encoder", "mfcc", "--layers", "0",
            "--interface", "single", *JUDGE_PHONES_ARGS, *(["--stack", "2"] if task == "asr" else []),
            "--hidden", "64" if quick else "128", "--split-file", split,
            "--max-minutes", minutes, "--max-steps", "30" if quick else "100000", "--quiet")
    return out


def texts_of(corpus: Path) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text(encoding="utf-8").splitlines())


def speakers_of(corpus: Path) -> dict[str, str]:
    from speechunits.corpus import read_speakers

    return read_speakers(corpus / "speakers.tsv")


def tts_heldout(corpus: Path) -> set[str]:
    """The utterances ``train_tts`` (holdout ``TTS_HOLDOUT``, seed 0) will hold out: the vocoder and the
    codebook never see them, so resynthesis and TTS of held-out sentences are both unseen audio."""
    from speechunits.seq2seq.tts_train import sentence_holdout

    texts = texts_of(corpus)
    return set(sentence_holdout(sorted(texts), texts, TTS_HOLDOUT, 0)[1])


def vocoder_corpus(args: argparse.Namespace, corpus: Path) -> Path:
    """``OUT/voc_train``: the TTS corpus without the held-out sentences (codebook and vocoder fit here)."""
    from vocoder import write_subset  # bench/vocoder.py

    out = args.out / "voc_train"
    if not (out / "manifest.tsv").is_file():
        held = tts_heldout(corpus)
        write_subset(corpus, out, set(texts_of(corpus)) - held)
    return out


def get_vocoder(args: argparse.Namespace, corpus: Path, codebook: Path, *, load: bool = True) -> Any:
    """A loaded vocoder (contract A) or None, with the reason logged. A trained one uses docs/vocoder.md's
    recipe (cpu tier, ``--perturb-units=-1,1`` as chosen by bench/vocoder_dev.py) plus ``--dedup``, on
    :func:`vocoder_corpus`."""
    try:
        from speechunits.vocoder import load_vocoder
    except ImportError:
        log.warning("speechunits.vocoder is not installed here: after-vocoder figures are skipped")
        return None
    path = Path(args.vocoder) if args.vocoder else args.out / "vocoder"
    if not args.vocoder and not (path / "vocoder.json").exists():
        try:
            su("vocoder", "train", vocoder_corpus(args, corpus), "--codebook", codebook, "-o", path, "--dedup",
                "--speaker", "table", "--perturb-units=-1,1", "--minutes", args.vocoder_minutes,
                *(["--size", "tiny", "--steps", "20"] if args.quick else []))
        except Exception as exc:  # noqa: BLE001 - report and go on without the after-vocoder figures
            log.warning("vocoder training failed (%s): after-vocoder figures are skipped", exc)
            return None
    if not load:
        return None
    try:
        return load_vocoder(path, device=args.device)
    except Exception as exc:  # noqa: BLE001
        log.warning("cannot load the vocoder at %s (%s): after-vocoder figures are skipped", path, exc)
        return None


def speak(vocoder: Any, units: list[Any], speakers: list[str | None], out: Path) -> tuple[list[Path], float]:
    """Vocoded wavs of ``units`` into ``out`` and the seconds the vocoder took (a speaker the vocoder does
    not know, e.g. a voice of the parallel corpus, is spoken by its first speaker)."""
    out.mkdir(parents=True, exist_ok=True)
    paths, spent = [], 0.0
    for i, (unit, speaker) in enumerate(zip(units, speakers)):
        started = time.perf_counter()
        known = vocoder.speakers
        audio = vocoder.synthesize(unit, speaker=speaker if speaker in known else (known[0] if known else None))
        spent += time.perf_counter() - started
        paths.append(out / f"{i:05d}.wav")
        audio.save(paths[-1])
    return paths, spent


# -- TTS -------------------------------------------------------------------------------------------

def tts_dir(out: Path, ar_hidden: int, name: str = "tts") -> Path:
    """``OUT/tts`` (parallel head) or ``OUT/tts_ar<N>`` (autoregressive head of width N)."""
    return out / (f"{name}_ar{ar_hidden}" if ar_hidden else name)


def train_tts_recipe(corpus: Path, codebook: Path, out: Path, *, ar_hidden: int, minutes: float, device: str,
                     quiet: bool) -> Path:
    """``out`` trained with the bench's TTS recipe (phones, speaker table, ``TTS_HOLDOUT`` of the sentences
    held out, the given head and budget), unless a finished model is there (bench/tts_dev.py uses it too)."""
    from speechunits.seq2seq.tts_train import train_tts
    from speechunits.training import OptimConfig

    if not (out / "tts.json").is_file() or "heldout" not in json.loads((out / "tts.json").read_text()):
        summary = train_tts(corpus, codebook, out, input_kind="phones", speaker="table", holdout=TTS_HOLDOUT,
                            model={"ar_hidden": ar_hidden},
                            optim=OptimConfig(steps=200_000, lr=1e-3, warmup_steps=200, schedule="cosine",
                                              max_minutes=minutes, log_every=100, checkpoint_every=1000),
                            device=device, quiet=quiet)
        log.info("TTS: %s", json.dumps(summary))
    return out


def train_tts_model(args: argparse.Namespace, corpus: Path, codebook: Path) -> Path:
    """:func:`tts_dir` trained by :func:`train_tts_recipe` (``--tts-ar-hidden``, ``--train-minutes``)."""
    return train_tts_recipe(corpus, codebook, tts_dir(args.out, args.tts_ar_hidden), ar_hidden=args.tts_ar_hidden,
                            minutes=args.train_minutes, device=args.device, quiet=args.quiet)


def tts_judge_split(args: argparse.Namespace, corpus: Path) -> Path:
    """The phones judge's split of the TTS corpus: test = the held-out sentences, dev = every tenth other
    utterance (the judge never trains on held-out audio)."""
    held = tts_heldout(corpus)
    rest = [u for u in texts_of(corpus) if u not in held]
    return write_split(args.out / "tts_split.tsv", {"train": [u for i, u in enumerate(rest) if i % 10],
                                                     "dev": rest[::10], "test": sorted(held)})


def bench_tts(args: argparse.Namespace, corpus: Path, codebook: Path, vocoder: Any) -> tuple[dict, Path]:
    from speechunits.device import resolve_device
    from speechunits.probe.metrics import error_rate
    from speechunits.seq2seq.model_dir import load_tts

    out = train_tts_model(args, corpus, codebook)
    bundle = load_tts(out, device=resolve_device(args.device))
    meta = bundle.meta
    result: dict[str, Any] = {"training": meta["result"], "data": {k: v for k, v in meta["data"].items()
                                                                   if k != "heldout_ids"},
                              "heldout_units": meta["heldout"]}
    held = meta["data"]["heldout_ids"]
    unseen = tts_heldout(corpus)
    # the share of held-out utterances that the bench's own vocoder never trained on (unknown for a --vocoder)
    result["heldout_unseen_by_vocoder"] = (None if args.vocoder else
                                           sum(u in unseen for u in held) / max(len(held), 1))
    texts, speakers = texts_of(corpus), speakers_of(corpus)
    started = time.perf_counter()
    units = [bundle.units_of([texts[u]], speakers[u], temperature=args.tts_temperature)[0] for u in held]
    spent = time.perf_counter() - started
    seconds = sum(u.duration_s for u in units)
    result["units_x_real_time"] = seconds / max(spent, 1e-9)
    result["units_x_real_time_note"] = "espeak-ng phonemisation included"
    if vocoder is None:
        return result, out
    split = tts_judge_split(args, corpus)
    judge = train_judge("phones", corpus, split, args.out / "judge_phones_en", args.judge_minutes, args.quick)
    from speechunits.probe.evaluate import corpus_labels, reference, transcribe

    refs_units = store_units_for(corpus, codebook, held, args)
    resynth_paths, _ = speak(vocoder, [refs_units[u] for u in held], [speakers[u] for u in held],
                             args.out / "tts_resynth")
    tts_paths, voc_spent = speak(vocoder, units, [speakers[u] for u in held], args.out / "tts_wavs")
    labels = corpus_labels("phones", corpus / "manifest.tsv", held).labels
    refs = [reference("phones", labels[u]) for u in held]
    hyp_tts = [p.split() for p in transcribe(judge, tts_paths, device=args.device, quiet=True)]
    hyp_resynth = [p.split() for p in transcribe(judge, resynth_paths, device=args.device, quiet=True)]
    originals = [str(corpus / "wavs" / f"{u}.wav") for u in held]
    hyp_orig = [p.split() for p in transcribe(judge, originals, device=args.device, quiet=True)]
    result["per"] = {"tts": error_rate(refs, hyp_tts), "resynthesis": error_rate(refs, hyp_resynth),
                     "original": error_rate(refs, hyp_orig)}
    result["per"]["ratio_tts_to_resynthesis"] = result["per"]["tts"] / max(result["per"]["resynthesis"], 1e-9)
    result["tts_plus_vocoder_x_real_time"] = seconds / max(spent + voc_spent, 1e-9)
    return result, out


def store_units_for(corpus: Path, codebook: Path, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Reference deduplicated units (with durations) of ``ids``."""
    from speechunits.corpus import open_corpus_via_manifest
    from speechunits.seq2seq.data import corpus_units, load_codebook

    chosen = set(ids)
    units, _ = corpus_units(open_corpus_via_manifest(corpus).filter(lambda u: u.id in chosen), load_codebook(codebook),
                            device=args.device, quiet=True)
    return {u: x.dedup() for u, x in units.items()}


# -- S2UT and the cascade --------------------------------------------------------------------------

def parallel_corpus(args: argparse.Namespace) -> Path:
    out = args.out / "parallel"
    if (out / "pairs.tsv").is_file():
        return out / "pairs.tsv"
    try:
        from speechunits.synth.parallel import synthesize_parallel
    except ImportError:
        if not args.quick:
            raise SystemExit("speechunits.synth.parallel (the parallel corpus generator) is not installed here")
        from speechunits.seq2seq.testing import tiny_pairs

        log.warning("no synthesize_parallel here: --quick uses the test fixture (unrelated sentence pairs)")
        return tiny_pairs(out, minutes=args.parallel_minutes, speakers=args.parallel_speakers, dev_every=5)
    synthesize_parallel(out, source="es", target="en", minutes=args.parallel_minutes,
                        speakers=args.parallel_speakers, seed=0, quiet=args.quiet)
    return out / "pairs.tsv"


def s2ut_optim(args: argparse.Namespace) -> Any:
    from speechunits.training import OptimConfig

    return OptimConfig(steps=200_000, lr=1e-3, warmup_steps=300, schedule="cosine", max_minutes=args.train_minutes,
                       log_every=100, checkpoint_every=1000)


def trained(path: Path) -> bool:
    return (path / "s2ut.json").is_file() and "scores" in json.loads((path / "s2ut.json").read_text())


def train_direct(args: argparse.Namespace, pairs_path: Path, codebook: Path) -> Path:
    """``OUT/s2ut``: MFCC features of Spanish speech -> English units, auxiliary CTC on the English text."""
    from speechunits.seq2seq.s2ut_train import train_s2ut

    out = args.out / "s2ut"
    if not trained(out):
        train_s2ut(pairs_path, out, source_input="features", encoder="mfcc", layer=0, target="units",
                   target_codebook=codebook, ctc_weight=0.3, optim=s2ut_optim(args), device=args.device,
                   batch_frames=args.s2ut_batch_frames, quiet=args.quiet, evaluate=("dev",))
    return out


def train_mt(args: argparse.Namespace, pairs_path: Path) -> Path:
    """``OUT/mt``: the cascade's character translator (Spanish text -> English text) on the same pairs."""
    from speechunits.seq2seq.s2ut_train import train_s2ut

    out = args.out / "mt"
    if not trained(out):
        train_s2ut(pairs_path, out, source_input="text", target="text", model={"dim": 192, "encoder_layers": 3},
                   optim=s2ut_optim(args), batch_frames=args.mt_batch_frames, device=args.device, quiet=args.quiet,
                   evaluate=("dev",))
    return out


def asr_judge(args: argparse.Namespace, pairs_path: Path, side: str) -> Path:
    """An ``asr`` judge of the parallel corpus's ``side`` ("source": Spanish, "target": English), trained on
    the training pairs' audio, early-stopped on the dev pairs'."""
    from speechunits.seq2seq.data import find_pair_corpora, read_parallel_pairs

    pairs = read_parallel_pairs(pairs_path)
    corpus = find_pair_corpora(pairs_path, pairs)[0 if side == "source" else 1]
    name = "es" if side == "source" else "en"
    split = write_split(args.out / f"asr_{name}_split.tsv", {part: [getattr(p, side) for p in pairs if p.split == part]
                                                             for part in ("train", "dev", "test")})
    return train_judge("asr", corpus, split, args.out / f"judge_asr_{name}", args.judge_minutes, args.quick)


def bench_s2ut(args: argparse.Namespace, pairs_path: Path, codebook: Path, vocoder: Any, tts_dir: Path) -> dict:
    from speechunits.device import resolve_device
    from speechunits.measure.sequences import asr_bleu, sequence_scores
    from speechunits.probe.evaluate import transcribe
    from speechunits.seq2seq.data import find_pair_corpora, read_parallel_pairs
    from speechunits.seq2seq.infer import source_inputs, translate_texts
    from speechunits.seq2seq.model_dir import load_s2ut, load_tts
    from speechunits.seq2seq.symbols import ids_to_units
    from speechunits.units.units import Units

    dev = resolve_device(args.device)
    pairs = read_parallel_pairs(pairs_path)
    src_dir, tgt_dir = find_pair_corpora(pairs_path, pairs)
    test = [p for p in pairs if p.split == "test"] or [p for p in pairs if p.split == "dev"]
    direct, mt = train_direct(args, pairs_path, codebook), train_mt(args, pairs_path)
    s2ut = load_s2ut(direct, device=dev)
    result: dict[str, Any] = {"pairs": {part: sum(p.split == part for p in pairs) for part in ("train", "dev", "test")},
                              "training": s2ut.meta["result"]}
    # direct: test sources -> units
    src_ids = {p.source for p in test}
    from speechunits.corpus import open_corpus_via_manifest

    sources, _, source_seconds = source_inputs(s2ut, open_corpus_via_manifest(src_dir).filter(lambda u: u.id in src_ids),
                                               device=str(dev), quiet=True)
    refs = store_units_for(tgt_dir, codebook, [p.target for p in test], args)
    kept = [p for p in test if p.source in sources and p.target in refs]
    started = time.perf_counter()
    decoded = s2ut.decode([sources[p.source] for p in kept], beam=5, device=dev)
    spent = time.perf_counter() - started
    rate, k = float(s2ut.target["frame_rate"]), int(s2ut.target["k"])
    hyps = [Units(ids_to_units(h), rate, k) for h in decoded]
    result["direct"] = {**sequence_scores([refs[p.target].ids for p in kept], [h.ids for h in hyps]),
                        "x_real_time": source_seconds / max(spent, 1e-9), "test_pairs": len(kept)}
    # cascade: Spanish ASR probe -> character translator -> TTS
    texts = {p.id: p.source_text for p in pairs}
    asr_es = asr_judge(args, pairs_path, "source")
    heard = transcribe(asr_es, [str(src_dir / "wavs" / f"{p.source}.wav") for p in kept], device=args.device,
                       quiet=True)
    translated = translate_texts(load_s2ut(mt, device=dev), heard, beam=5, device=str(dev))
    tts = load_tts(tts_dir, device=dev)
    target_speakers = speakers_of(tgt_dir)
    voices = [target_speakers.get(p.target) for p in kept]  # the reference's voice, where the TTS knows it
    cascade_units = []
    for text, voice in zip(translated, voices):
        speaker = voice if voice in tts.speakers else (tts.speakers[0] if tts.speakers else None)
        try:
            cascade_units.append(tts.units_of([text or "a"], speaker, temperature=args.tts_temperature)[0])
        except Exception as exc:  # noqa: BLE001 - a phone the TTS never saw: an empty output
            log.warning("cascade TTS failed on %r (%s)", text, exc)
            cascade_units.append(Units([], rate, k))
    result["cascade"] = {**sequence_scores([refs[p.target].ids for p in kept], [u.ids for u in cascade_units]),
                         "asr_es_wer": _wer([normalise(texts[p.id]) for p in kept], heard),
                         "text_bleu": asr_bleu([p.target_text for p in kept], translated),
                         "oracle_text_bleu": asr_bleu([p.target_text for p in kept],
                                                      translate_texts(load_s2ut(mt, device=dev),
                                                                      [p.source_text for p in kept], beam=5,
                                                                      device=str(dev)))}
    if vocoder is not None:
        asr_en = asr_judge(args, pairs_path, "target")
        direct_paths, _ = speak(vocoder, hyps, voices, args.out / "s2ut_wavs")
        cascade_paths, _ = speak(vocoder, cascade_units, voices, args.out / "cascade_wavs")
        resynth_paths, _ = speak(vocoder, [refs[p.target] for p in kept], voices, args.out / "s2ut_resynth_wavs")
        reference_paths = [str(tgt_dir / "wavs" / f"{p.target}.wav") for p in kept]
        gold = [p.target_text for p in kept]
        result["asr_bleu"] = {
            "direct": asr_bleu(gold, transcribe(asr_en, direct_paths, device=args.device, quiet=True)),
            "cascade": asr_bleu(gold, transcribe(asr_en, cascade_paths, device=args.device, quiet=True)),
            "resynthesis": asr_bleu(gold, transcribe(asr_en, resynth_paths, device=args.device, quiet=True)),
            "reference_speech": asr_bleu(gold, transcribe(asr_en, reference_paths, device=args.device, quiet=True))}
    return result


def normalise(text: str) -> str:
    from speechunits.probe.vocab import normalize_text

    return normalize_text(text)


def _wer(refs: list[str], hyps: list[str]) -> float:
    from speechunits.probe.metrics import wer

    return wer(refs, [normalise(h) for h in hyps])


# -- report ----------------------------------------------------------------------------------------

def table(results: dict[str, Any]) -> str:
    """Markdown tables of ``results``: TTS (units, then the phones judge's PER after the vocoder) and S2UT."""
    tts, s2 = results.get("tts", {}), results.get("s2ut", {})

    def f(value: Any, digits: int = 3) -> str:
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"

    held, per = tts.get("heldout_units", {}), tts.get("per", {})
    rows = ["| TTS, held-out sentences | unit BLEU | UER | diversity | judge PER | x real time |",
            "|---|---|---|---|---|---|",
            f"| original speech | | | | {f(per.get('original'))} | |",
            f"| reference units -> vocoder | 100 | 0 | | {f(per.get('resynthesis'))} | |",
            f"| TTS -> vocoder | {f(held.get('unit_bleu'), 1)} | {f(held.get('uer'))} | {f(held.get('diversity'))} | "
            f"{f(per.get('tts'))} (x{f(per.get('ratio_tts_to_resynthesis'), 2)}) | "
            f"{f(tts.get('units_x_real_time'), 1)} units, {f(tts.get('tts_plus_vocoder_x_real_time'), 1)} audio |",
            ""]
    bleu = s2.get("asr_bleu", {})
    rows += ["| S2UT es -> en, test pairs | unit BLEU | UER | diversity | ASR-BLEU | x real time |",
             "|---|---|---|---|---|---|",
             f"| English reference speech | | | | {f(bleu.get('reference_speech'), 1)} | |",
             f"| reference English units -> vocoder | 100 | 0 | | {f(bleu.get('resynthesis'), 1)} | |"]
    for name in ("direct", "cascade"):
        part = s2.get(name, {})
        rows.append(f"| {name} | {f(part.get('unit_bleu'), 1)} | {f(part.get('uer'))} | {f(part.get('diversity'))} | "
                    f"{f(bleu.get(name), 1)} | {f(part.get('x_real_time'), 1)} |")
    cascade = s2.get("cascade", {})
    if cascade:
        rows += ["", f"Cascade parts: Spanish ASR WER {f(cascade.get('asr_es_wer'))}, text BLEU of its translations "
                 f"{f(cascade.get('text_bleu'), 1)} (from the gold Spanish text: {f(cascade.get('oracle_text_bleu'), 1)})."]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/seq2seq"))
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that every step runs")
    parser.add_argument("--corpus", type=Path, help="an existing synthetic corpus for the TTS (else one is made: "
                        "--tts-minutes, --tts-speakers, seed 0)")
    parser.add_argument("--stage", choices=STAGES, default="all",
                        help="train only this (the vocoder, tts, s2ut, mt, the phones judge or the two asr judges) and stop; 'all' trains what is "
                             "missing and measures")
    parser.add_argument("--tts-minutes", type=float, default=60.0)
    parser.add_argument("--tts-speakers", type=int, default=6)
    parser.add_argument("--parallel-minutes", type=float, default=60.0)
    parser.add_argument("--parallel-speakers", type=int, default=4)
    parser.add_argument("--train-minutes", type=float, default=45.0, help="budget of each trained model")
    parser.add_argument("--s2ut-batch-frames", type=int, default=5000,
                        help="source frames per S2UT batch (20000, train_s2ut's default, gave ~900 steps in 45 min "
                             "and outputs twice too long on dev)")
    parser.add_argument("--mt-batch-frames", type=int, default=2000,
                        help="source characters per batch of the cascade's translator (20000 gave ~530 steps and "
                             "a dev CER of 0.77)")
    parser.add_argument("--tts-ar-hidden", type=int, default=256,
                        help="width of the TTS's autoregressive unit head (0: units from its parallel head; 256 was "
                             "chosen by bench/tts_dev.py on dev sentences)")
    parser.add_argument("--tts-temperature", type=float, default=0.0,
                        help="the TTS's (and the cascade's) frame units drawn at this temperature, seed 0 (0: argmax, "
                             "the best of 0 / 0.5 / 0.7 / 1.0 on dev)")
    parser.add_argument("--judge-minutes", type=float, default=10.0, help="budget of each probe judge")
    parser.add_argument("--vocoder", help="a deduplicating vocoder of the bench's codebook (else one is trained)")
    parser.add_argument("--vocoder-minutes", type=float, default=45.0)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-s2ut", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quick:
        args.tts_minutes, args.tts_speakers = min(args.tts_minutes, 2.0), min(args.tts_speakers, 3)
        args.parallel_minutes, args.parallel_speakers = min(args.parallel_minutes, 1.0), 2
        args.train_minutes, args.judge_minutes = min(args.train_minutes, 0.5), min(args.judge_minutes, 0.3)
        args.vocoder_minutes, args.k = min(args.vocoder_minutes, 0.5), min(args.k, 32)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    from speechunits.synth import synthesize_corpus

    corpus = args.corpus or args.out / "tts_corpus"
    if not (corpus / "corpus.json").is_file():
        if args.corpus:
            raise SystemExit(f"--corpus {corpus}: not a synthetic corpus (no corpus.json)")
        synthesize_corpus(corpus, args.tts_minutes, args.tts_speakers, seed=0, quiet=args.quiet)
    codebook = fit_codebook(vocoder_corpus(args, corpus) / "manifest.tsv", args.out / f"codebook_mfcc_k{args.k}",
                            "mfcc", args.k, 0)
    if args.stage != "all":  # one training, to run the stages side by side in separate processes
        if args.stage == "vocoder":
            get_vocoder(args, corpus, codebook, load=False)
        elif args.stage == "tts":
            train_tts_model(args, corpus, codebook)
        elif args.stage == "s2ut":
            train_direct(args, parallel_corpus(args), codebook)
        elif args.stage == "mt":
            train_mt(args, parallel_corpus(args))
        elif args.stage == "judge-phones":
            train_judge("phones", corpus, tts_judge_split(args, corpus), args.out / "judge_phones_en",
                        args.judge_minutes, args.quick)
        else:
            for side in ("source", "target"):
                asr_judge(args, parallel_corpus(args), side)
        return 0
    vocoder = get_vocoder(args, corpus, codebook)
    results: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    started = time.perf_counter()
    results["tts"], tts_dir = bench_tts(args, corpus, codebook, vocoder)
    if not args.skip_s2ut:
        results["s2ut"] = bench_s2ut(args, parallel_corpus(args), codebook, vocoder, tts_dir)
    results["minutes"] = (time.perf_counter() - started) / 60.0
    checks = {}
    per = results["tts"].get("per")
    if per:
        checks["tts PER <= 2x resynthesis"] = per["ratio_tts_to_resynthesis"] <= 2.0
    if "s2ut" in results:
        checks["s2ut diversity >= 0.9"] = results["s2ut"]["direct"]["diversity"] >= 0.9
    results["checks"] = checks
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    text = table(results)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text + "".join(f"{'PASS' if ok else 'FAIL'}: {name}\n" for name, ok in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
