"""Issue 14's optional n-gram LM for asr probes: greedy CTC against the prefix beam search with a word n-gram.

Headline command (what docs/probe.md's table comes from)::

    python bench/probe_lm.py --out bench/out/probe-lm

Quick check that everything runs::

    python bench/probe_lm.py --out /tmp/probe-lm-quick --quick

What it does, every setting fixed here:

1. ``speechunits synth`` (``--minutes``, ``--speakers``, ``--text grammar``: sentences sampled from a
   grammar, so that test sentences are almost never training sentences and the LM cannot recite
   them; seed 5), unless OUT/corpus exists.
2. ``speechunits probe train asr`` on MFCC (BiLSTM of 128, 3 frames stacked, standardised, characters,
   split by speaker: dev and test speakers unseen, lr 1e-3, one seed, at most ``--max-steps``), the
   settings of bench/probe.py's judge, unless OUT/asr-mfcc exists.
3. ``speechunits lm text-ngram`` of the corpus's transcripts without the probe's dev and test
   utterances, orders 2, 3 and 4 (Kneser-Ney).
4. The probe's logits of dev and test, computed once; greedy CTC; our beam search over a grid of
   order x alpha x beta on **dev**, the best by dev WER; **test read once** for greedy and that best.
   Also: decoding speed (utterances/s and x real time, decoding alone), the test words outside the
   LM's vocabulary, the test sentences the LM was trained on.
5. The baseline, pyctcdecode 0.5.0 + kenlm (the decoder Hugging Face's wav2vec2-with-LM uses), on the
   same log-probabilities, ARPA files, beam width and grid, chosen on dev the same way, test read
   once; run in its own venv (``make bench-pyctcdecode``; it pins numpy < 2) by
   bench/pyctcdecode_run.py. Skipped, and said so, when that venv is missing.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from su import su  # noqa: E402  (bench/su.py)

log = logging.getLogger("bench.probe_lm")

FULL = dict(minutes=60.0, speakers=20, max_steps=2000, orders=(2, 3, 4), alphas=(0.25, 0.5, 1.0, 1.5),
            betas=(0.0, 1.0, 2.0), beam=32)
QUICK = dict(minutes=2.0, speakers=4, max_steps=30, orders=(2, 3), alphas=(0.5, 1.0), betas=(0.0, 1.0), beam=8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pyctcdecode-python", type=Path, default=Path(".venv-pyctcdecode/bin/python"),
                        help="the interpreter of the pyctcdecode venv (`make bench-pyctcdecode`)")
    args = parser.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    from speechunits.corpus import open_corpus
    from speechunits.lm.arpa import read_arpa
    from speechunits.probe.evaluate import corpus_labels, decode_logits, probe_input, score_predictions
    from speechunits.probe.inputs import as_corpus
    from speechunits.probe.labels import read_transcripts
    from speechunits.probe.lm_decode import BeamOptions, word_lm_decoder
    from speechunits.probe.model_dir import load_probe, read_split
    from speechunits.probe.vocab import normalize_text

    corpus = out / "corpus"
    if not (corpus / "manifest.tsv").is_file():
        su("synth", str(corpus), "--minutes", cfg["minutes"], "--speakers", cfg["speakers"], "--text", "grammar",
           "--seed", 5, "--quiet")
    probe_dir = out / "asr-mfcc"
    if not (probe_dir / "probe.json").is_file():
        su("probe", "train", "asr", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--head", "bilstm",
           "--hidden", 128, "--stack", 3, "--standardize", "--tokenizer", "chars", "--split-by", "speaker",
           "--lr", "1e-3", "--seeds", 1, "--max-steps", cfg["max_steps"], "--eval-every", 25, "--patience", 20,
           "--step-schedule", "--threads", 1, "-o", str(probe_dir), "--quiet")
    arpas = {}
    for order in cfg["orders"]:
        arpas[order] = out / f"words-{order}gram.arpa"
        if not arpas[order].is_file():
            su("lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(arpas[order]), "--order", order,
               "--exclude", str(probe_dir), "--quiet")

    probe = load_probe(probe_dir)
    split = read_split(probe_dir)
    made = probe_input(probe.identity, as_corpus(str(corpus / "manifest.tsv")), quiet=True)
    texts = read_transcripts(corpus / "text.tsv")
    logits: dict[str, dict[str, Any]] = {}
    labels: dict[str, dict[str, str]] = {}
    for part in ("dev", "test"):
        ids = split.part(part)
        labels[part] = corpus_labels("asr", str(corpus / "manifest.tsv"), ids).labels
        loaded = made.load(list(labels[part]))
        logits[part] = probe.logits(loaded.samples, list(loaded.samples))

    def score_hyps(part: str, hyps: dict[str, str]) -> dict[str, float]:
        return score_predictions("asr", labels[part], hyps)

    def decode(part: str, decoder: Any) -> tuple[dict[str, float], float]:
        t0 = time.perf_counter()
        predictions = {u: decode_logits(probe.coder, x, decoder) for u, x in logits[part].items()}
        wall = time.perf_counter() - t0
        return score_predictions("asr", labels[part], predictions), wall

    results: dict[str, Any] = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                               "probe": str(probe_dir), "utterances": {p: len(logits[p]) for p in logits}}
    greedy_dev, _ = decode("dev", None)
    grid = []
    for order, alpha, beta in itertools.product(cfg["orders"], cfg["alphas"], cfg["betas"]):
        options = BeamOptions(alpha=alpha, beta=beta, beam=cfg["beam"])
        metrics, wall = decode("dev", word_lm_decoder(probe, str(arpas[order]), options))
        grid.append({"order": order, "alpha": alpha, "beta": beta, **metrics, "seconds": wall})
        log.info("dev order %d alpha %.2f beta %.1f: WER %.4f CER %.4f (%.1f s)", order, alpha, beta,
                 metrics["wer"], metrics["cer"], wall)
    best = min(grid, key=lambda g: (g["wer"], g["cer"]))
    results["dev"] = {"greedy": greedy_dev, "grid": grid, "best": best}

    # test, read once: greedy and the dev-chosen search
    greedy_test, greedy_wall = decode("test", None)
    chosen = BeamOptions(alpha=best["alpha"], beta=best["beta"], beam=cfg["beam"])
    lm_test, lm_wall = decode("test", word_lm_decoder(probe, str(arpas[best["order"]]), chosen))
    import soundfile as sf

    audio_s = sum(sf.info(u.path).duration for u in open_corpus(corpus / "manifest.tsv") if u.id in logits["test"])
    lm_words = {g[0] for g in read_arpa(arpas[best["order"]]).prob if len(g) == 1}
    test_words = [w for u in logits["test"] for w in normalize_text(texts[u]).split()]
    train_sentences = {normalize_text(texts[u]) for u in split.part("train")}
    results["test"] = {
        "greedy": {**greedy_test, "utts_per_s": len(logits["test"]) / greedy_wall,
                   "x_realtime": audio_s / greedy_wall},
        "lm": {**lm_test, "utts_per_s": len(logits["test"]) / lm_wall, "x_realtime": audio_s / lm_wall,
               "order": best["order"], "alpha": best["alpha"], "beta": best["beta"], "beam": cfg["beam"]},
        "oov_rate": sum(w not in lm_words for w in test_words) / max(len(test_words), 1),
        "sentences_in_lm_text": sum(normalize_text(texts[u]) in train_sentences for u in logits["test"])
        / max(len(logits["test"]), 1),
    }
    baseline = pyctcdecode_rows(args.pyctcdecode_python, out, probe, logits, arpas, cfg, decode_hyps=score_hyps,
                                audio_s=audio_s)
    if baseline is not None:
        results["pyctcdecode"] = baseline
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    g, b = results["test"]["greedy"], results["test"]["lm"]
    print(f"\nasr probe (MFCC, BiLSTM, characters), {results['utterances']['test']} test utterances of unseen "
          f"speakers; {len(grid)} decoder settings tried on dev\n")
    print("| decoding | dev WER % | test WER % | test CER % | utterances/s | x real time |")
    print("|---|---|---|---|---|---|")
    print(f"| greedy CTC | {100 * greedy_dev['wer']:.1f} | {100 * g['wer']:.1f} | {100 * g['cer']:.1f} | "
          f"{g['utts_per_s']:.0f} | {g['x_realtime']:.0f} |")
    print(f"| beam {cfg['beam']} + word {b['order']}-gram (alpha {b['alpha']}, beta {b['beta']}) | "
          f"{100 * best['wer']:.1f} | {100 * b['wer']:.1f} | {100 * b['cer']:.1f} | {b['utts_per_s']:.1f} | "
          f"{b['x_realtime']:.1f} |")
    if baseline is not None:
        p = baseline["test"]
        print(f"| pyctcdecode + kenlm, beam {cfg['beam']}, word {p['order']}-gram (alpha {p['alpha']}, beta {p['beta']}) | "
              f"{100 * baseline['dev_best']['wer']:.1f} | {100 * p['wer']:.1f} | {100 * p['cer']:.1f} | "
              f"{p['utts_per_s']:.1f} | {p['x_realtime']:.1f} |")
    else:
        print("| pyctcdecode + kenlm | not run: no venv (make bench-pyctcdecode) | | | | |")
    print(f"\nrelative test WER change: {100 * (b['wer'] - g['wer']) / g['wer']:+.1f} %; test words outside the LM: "
          f"{100 * results['test']['oov_rate']:.1f} %; test sentences in the LM's text: "
          f"{100 * results['test']['sentences_in_lm_text']:.1f} %")
    return 0


def pyctcdecode_rows(python: Path, out: Path, probe: Any, logits: dict[str, dict[str, Any]], arpas: dict[int, Path],
                     cfg: dict[str, Any], *, decode_hyps: Any, audio_s: float) -> dict[str, Any] | None:
    """pyctcdecode's grid on dev (best by WER), then test once; None when its venv is missing."""
    import subprocess

    import numpy as np

    if not python.is_file():
        log.warning("%s missing: the pyctcdecode baseline is skipped (make bench-pyctcdecode)", python)
        return None

    def run(part: str, arpa: Path, settings: list[dict[str, float]]) -> list[dict[str, Any]]:
        npz = out / f"logprobs-{part}.npz"
        if not npz.is_file():
            np.savez(npz, **{u: x - np.logaddexp.reduce(x, axis=1, keepdims=True) for u, x in logits[part].items()})
        job = {"logits": str(npz), "tokens": probe.coder.tokenizer.tokens, "arpa": str(arpa), "beam": cfg["beam"],
               "settings": settings}
        (out / "pyctcdecode-job.json").write_text(json.dumps(job))
        subprocess.run([str(python), str(Path(__file__).resolve().parent / "pyctcdecode_run.py"), "--job",
                        str(out / "pyctcdecode-job.json"), "--out", str(out / "pyctcdecode-out.json")], check=True)
        return json.loads((out / "pyctcdecode-out.json").read_text())

    grid = []
    for order in cfg["orders"]:
        settings = [{"alpha": a, "beta": b} for a, b in itertools.product(cfg["alphas"], cfg["betas"])]
        for r in run("dev", arpas[order], settings):
            metrics = decode_hyps("dev", r["hypotheses"])
            grid.append({"order": order, "alpha": r["alpha"], "beta": r["beta"], **metrics, "seconds": r["seconds"]})
            log.info("pyctcdecode dev order %d alpha %.2f beta %.1f: WER %.4f CER %.4f (%.1f s)", order, r["alpha"],
                     r["beta"], metrics["wer"], metrics["cer"], r["seconds"])
    best = min(grid, key=lambda g: (g["wer"], g["cer"]))
    (test,) = run("test", arpas[best["order"]], [{"alpha": best["alpha"], "beta": best["beta"]}])
    metrics = decode_hyps("test", test["hypotheses"])
    return {"grid": grid, "dev_best": best,
            "test": {**metrics, "order": best["order"], "alpha": best["alpha"], "beta": best["beta"],
                     "utts_per_s": len(test["hypotheses"]) / test["seconds"], "x_realtime": audio_s / test["seconds"]}}


if __name__ == "__main__":
    raise SystemExit(main())
