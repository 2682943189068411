"""SUPERB's ST (speech-to-text translation) on synthetic Spanish -> English pairs: a direct model
(``s2ut train --target text``) against the cascade a user would otherwise build (a Spanish ``asr``
probe, then a character translator), in one run, with the same total training time.

Data: ``speechunits synth parallel OUT/parallel --source es --target en`` (its train/dev/test pairs;
test sentences are never trained on). Every setting is fixed here, the S2UT recipe of
``bench/seq2seq.py`` (no choice is made on test):

1. **Direct**: MFCC features of the Spanish speech -> English characters, transformer encoder-decoder,
   auxiliary CTC on the English text (0.3), 5,000 source frames per batch, ``--minutes`` of training,
   beam 5. Test: ``speechunits
   translate TEST --s2ut ST --references REFS`` (the command users run).
2. **Cascade**: the ``asr`` judge recipe of bench/seq2seq.py (MFCC, BiLSTM, 2-frame stacking, early
   stopped on the dev pairs) on the training pairs' Spanish audio, at most ``--minutes / 2``; a character
   translator (``s2ut train --source-input text --target text``, dim 192, 3 encoder blocks, 2,000
   characters per batch) on the training pairs' text, for what the ASR's wall time leaves of ``--minutes``
   (at least half); test Spanish audio -> transcript -> translation, beam 5.
   Also the translator on the gold Spanish text (the cascade's ceiling: a perfect ASR).

Both are scored on the same test pairs by corpus BLEU (sacrebleu, lower-cased, no punctuation) and CER.
``OUT/results.json`` and ``OUT/table.md`` hold the figures::

    python bench/st.py --out bench/out/st --parallel-minutes 30 --parallel-speakers 4 --minutes 20
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from su import su  # noqa: E402  (bench/su.py)


def write_manifest(path: Path, wavs: Path, ids: list[str]) -> Path:
    """A manifest of the ``ids`` among ``wavs/<id>.wav`` (root line, then relative paths)."""
    import soundfile as sf

    lines = [str(wavs.resolve())] + [f"{i}.wav\t{sf.info(str(wavs / f'{i}.wav')).frames}" for i in ids]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/out/st"))
    parser.add_argument("--parallel-minutes", type=float, default=30.0)
    parser.add_argument("--parallel-speakers", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="training minutes of the direct model; the cascade's two models get half each")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    parallel = out / "parallel"
    if not (parallel / "pairs.tsv").is_file():
        su("synth", "parallel", parallel, "--source", "es", "--target", "en", "--minutes", args.parallel_minutes,
           "--speakers", args.parallel_speakers, "--seed", "0", "--quiet")
    pairs_path = parallel / "pairs.tsv"
    from speechunits.seq2seq.data import find_pair_corpora, read_parallel_pairs

    pairs = read_parallel_pairs(pairs_path)
    src_dir, _ = find_pair_corpora(pairs_path, pairs, need_target=False)
    test = [p for p in pairs if p.split == "test"]
    results: dict = {"pairs": {part: sum(p.split == part for p in pairs) for part in ("train", "dev", "test")},
                     "minutes": args.minutes}

    # 1. direct
    direct = out / "st"
    if not (direct / "s2ut.json").is_file() or "scores" not in json.loads((direct / "s2ut.json").read_text()):
        started = time.perf_counter()
        su("s2ut", "train", pairs_path, "-o", direct, "--encoder", "mfcc", "--layer", "0", "--target", "text",
           "--ctc-text", "--batch-frames", "5000", "--steps", "200000", "--minutes", args.minutes, "--quiet")
        results["direct_train_seconds"] = round(time.perf_counter() - started, 1)
    test_manifest = write_manifest(out / "test_sources.tsv", src_dir / "wavs", [p.source for p in test])
    refs = out / "test_refs.tsv"
    refs.write_text("".join(f"{p.source}\t{p.target_text}\n" for p in test), encoding="utf-8")
    translated = out / "direct_translations"
    if translated.exists():
        import shutil

        shutil.rmtree(translated)
    direct_result = su("translate", test_manifest, "--s2ut", direct, "--references", refs, "--beam", "5",
                       "-o", translated, "--quiet")
    results["direct"] = {k: direct_result[k] for k in ("bleu", "cer", "scored", "x_real_time")}

    # 2. cascade
    from speechunits.probe.defaults import JUDGE_PHONES_ARGS
    from speechunits.probe.evaluate import transcribe
    from speechunits.seq2seq.infer import score_translations, translate_texts
    from speechunits.seq2seq.model_dir import load_s2ut

    asr = out / "asr_es"
    asr_clock = out / "asr_es_seconds.txt"
    if not (asr / "probe.json").is_file():
        split = out / "asr_es_split.tsv"
        split.write_text("".join(f"{p.source}\t{p.split}\n" for p in pairs), encoding="utf-8")
        started = time.perf_counter()
        su("probe", "train", "asr", src_dir / "manifest.tsv", "-o", asr, "--encoder", "mfcc", "--layers", "0",
           "--interface", "single", *JUDGE_PHONES_ARGS, "--stack", "2", "--hidden", "128", "--split-file", split,
           "--max-minutes", args.minutes / 2, "--max-steps", "100000", "--quiet")
        asr_clock.write_text(f"{time.perf_counter() - started:.1f}\n")
    asr_minutes = float(asr_clock.read_text()) / 60
    mt = out / "mt"
    mt_minutes = max(args.minutes - asr_minutes, args.minutes / 2)  # what the ASR (early-stopped) leaves
    if not (mt / "s2ut.json").is_file() or "scores" not in json.loads((mt / "s2ut.json").read_text()):
        su("s2ut", "train", pairs_path, "-o", mt, "--source-input", "text", "--target", "text",
           "--model", "dim=192,encoder_layers=3", "--batch-frames", "2000", "--steps", "200000",
           "--minutes", f"{mt_minutes:.2f}", "--quiet")
    results["cascade_minutes"] = {"asr_wall": round(asr_minutes, 2), "mt": round(mt_minutes, 2)}
    heard = transcribe(asr, [str(src_dir / "wavs" / f"{p.source}.wav") for p in test], device="cpu", quiet=True)
    translator = load_s2ut(mt, device="cpu")
    gold = {p.source: p.target_text for p in test}
    cascade = dict(zip([p.source for p in test], translate_texts(translator, heard, beam=5, device="cpu")))
    ceiling = dict(zip([p.source for p in test],
                       translate_texts(translator, [p.source_text for p in test], beam=5, device="cpu")))
    results["cascade"] = score_translations(gold, cascade, "test pairs")
    results["cascade_with_gold_transcripts"] = score_translations(gold, ceiling, "test pairs")
    asr_meta = json.loads((asr / "probe.json").read_text())
    results["cascade"]["asr_es_test_wer"] = asr_meta["test"]["wer"]["mean"]
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| system | test BLEU | test CER | note |", "|---|---|---|---|",
             f"| direct ST (`s2ut train --target text`, {args.minutes:g} min) | {results['direct']['bleu']:.1f} | "
             f"{results['direct']['cer']:.3f} | decoding {results['direct']['x_real_time']:.1f}x real time |",
             f"| cascade: Spanish asr probe ({asr_minutes:.1f} min, early-stopped) -> character translator "
             f"({mt_minutes:.1f} min) "
             f"| {results['cascade']['bleu']:.1f} | {results['cascade']['cer']:.3f} | "
             f"Spanish WER {100 * results['cascade']['asr_es_test_wer']:.1f} % |",
             f"| the translator on gold Spanish text (a perfect ASR) | "
             f"{results['cascade_with_gold_transcripts']['bleu']:.1f} | "
             f"{results['cascade_with_gold_transcripts']['cer']:.3f} | ceiling of the cascade |"]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
