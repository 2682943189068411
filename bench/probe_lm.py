"""Issue 14's optional n-gram LM for asr probes: greedy CTC against the prefix beam search with a word n-gram.

Headline command (what docs/probe.md's table comes from)::

    python bench/probe_lm.py --out bench/out/probe-lm

Quick check that everything runs::

    python bench/probe_lm.py --out /tmp/probe-lm-quick --quick

What it does, every setting fixed here:

1. ``speechunits synth`` (``--minutes``, ``--speakers``, ``--text grammar``: sentences sampled from a
   grammar, so that test sentences are almost never training sentences and the LM cannot recite
   them; seed 5), unless OUT/corpus exists.
2. ``speechunits probe train asr`` on MFCC (BiLSTM of 128, 3 frames stacked, standardised, characters
   and, with ``--targets`` including ``bpe``, also a 64-token BPE of the text,
   split by speaker: dev and test speakers unseen, lr 1e-3, one seed, at most ``--max-steps``), the
   settings of bench/probe.py's judge, unless OUT/asr-mfcc exists.
   The same on units: MFCC K=100 fitted on the training part, deduplicated, embedding tables from the
   centroids, not stacked (bench/probe.py's unit rows), on the MFCC probe's split; at most
   ``units_minutes`` (a step reads about 2.5x the audio of an MFCC step: the batch counts positions,
   and deduplicated units have 2.5x fewer per second than 3-frame stacks), the weights best on dev kept.
3. ``speechunits lm text-ngram`` of the corpus's transcripts without the probe's dev and test
   utterances, orders 2, 3 and 4 (Kneser-Ney).
4. Per probe: its logits of dev and test, computed once; greedy CTC; our beam search over a grid of
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
from su import fit_codebook, su  # noqa: E402  (bench/su.py)

log = logging.getLogger("bench.probe_lm")

FULL = dict(minutes=60.0, speakers=20, max_steps=2000, units_minutes=32.0, orders=(2, 3, 4),
            alphas=(0.25, 0.5, 1.0, 1.5), betas=(0.0, 1.0, 2.0), beam=32, text_bpe=64)
QUICK = dict(minutes=2.0, speakers=4, max_steps=30, units_minutes=0.5, orders=(2, 3), alphas=(0.5, 1.0),
             betas=(0.0, 1.0), beam=8, text_bpe=40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--targets", default="chars,bpe",
                        help="which probes' rows: chars, bpe (text BPE of FULL['text_bpe'] tokens), or both")
    parser.add_argument("--pyctcdecode-python", type=Path, default=Path(".venv-pyctcdecode/bin/python"),
                        help="the interpreter of the pyctcdecode venv (`make bench-pyctcdecode`)")
    args = parser.parse_args()
    cfg = dict(QUICK if args.quick else FULL)
    args.targets = {t.strip() for t in args.targets.split(",") if t.strip()}
    if not args.targets or not args.targets <= {"chars", "bpe"}:
        parser.error("--targets: chars, bpe or both")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    from speechunits.lm.arpa import read_arpa
    from speechunits.probe.labels import read_transcripts
    from speechunits.probe.model_dir import read_split
    from speechunits.probe.vocab import normalize_text

    corpus = out / "corpus"
    if not (corpus / "manifest.tsv").is_file():
        su("synth", str(corpus), "--minutes", cfg["minutes"], "--speakers", cfg["speakers"], "--text", "grammar",
           "--seed", 5, "--quiet")
    probe_dir = out / "asr-mfcc"
    if not (probe_dir / "probe.json").is_file():
        train_mfcc_probe(corpus, probe_dir, "chars", cfg)
    arpas = {}
    for order in cfg["orders"]:
        arpas[order] = out / f"words-{order}gram.arpa"
        if not arpas[order].is_file():
            su("lm", "text-ngram", str(corpus / "text.tsv"), "-o", str(arpas[order]), "--order", order,
               "--exclude", str(probe_dir), "--quiet")

    # the same probes on units: MFCC K=100 fitted on the training part, deduplicated, tables from the centroids
    split = read_split(probe_dir)
    split_file = out / "split.tsv"
    split_file.write_text("".join(f"{u}\t{part}\n" for part in ("train", "dev", "test") for u in split.part(part)))
    codebook, store = out / "codebook-k100", out / "units-k100"
    if not (store / ".speechunits.json").is_file():
        from speechunits.corpus import write_tsv_subset

        write_tsv_subset(corpus / "manifest.tsv", set(split.part("train")), out / "train-manifest.tsv")
        if not (codebook / "codebook.json").is_file():
            fit_codebook(out / "train-manifest.tsv", codebook, "mfcc", 100)
        su("encode", str(corpus / "manifest.tsv"), "--codebook", str(codebook), "-o", str(store), "--quiet")
    bpe = str(cfg["text_bpe"])
    rows = []
    for target, tokenizer, suffix, label in (("chars", "chars", "", "characters"),
                                             ("bpe", bpe, f"-bpe{bpe}", f"BPE {bpe}")):
        if target not in args.targets:
            continue
        mfcc_probe, units_probe = out / f"asr-mfcc{suffix}", out / f"asr-units{suffix}"
        if not (mfcc_probe / "probe.json").is_file():
            train_mfcc_probe(corpus, mfcc_probe, tokenizer, cfg, split_file)
        if not (units_probe / "probe.json").is_file():
            su("probe", "train", "asr", str(corpus / "manifest.tsv"), "--units", str(store), "--dedup",
               "--codebook", str(codebook), "--embed-init", "centroids", "--head", "bilstm", "--hidden", 128,
               "--tokenizer", tokenizer, "--split-file", str(split_file), "--lr", "1e-3", "--seeds", 1,
               "--max-steps", cfg["max_steps"], "--eval-every", 25, "--patience", 20, "--step-schedule",
               "--max-minutes", cfg["units_minutes"], "--threads", 1, "-o", str(units_probe), "--quiet")
        rows += [(f"MFCC features, {label}", mfcc_probe, {}),
                 (f"MFCC K=100 units, dedup, {label}", units_probe, {"units": str(store)})]

    texts = read_transcripts(corpus / "text.tsv")
    results: dict[str, Any] = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                               "probes": {}}
    for name, directory, inputs in rows:
        results["probes"][name] = measure(name, directory, inputs, corpus, arpas, cfg, args.pyctcdecode_python,
                                          out / directory.name)
    test_ids = split.part("test")
    lm_words = read_arpa(arpas[max(arpas)]).vocabulary
    test_words = [w for u in test_ids for w in normalize_text(texts[u]).split()]
    train_sentences = {normalize_text(texts[u]) for u in split.part("train")}
    results["oov_rate"] = sum(w not in lm_words for w in test_words) / max(len(test_words), 1)
    results["test_sentences_in_lm_text"] = sum(normalize_text(texts[u]) in train_sentences
                                               for u in test_ids) / max(len(test_ids), 1)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    print(f"\nasr probes (BiLSTM; characters or a BPE of the text), test speakers unseen; settings chosen on dev "
          f"({len(cfg['orders']) * len(cfg['alphas']) * len(cfg['betas'])} per decoder and probe), test read once\n")
    print("| input | decoding | dev WER % | test WER % | test CER % | utterances/s | x real time |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["probes"].items():
        rows = [("greedy CTC", r["dev"]["greedy"], r["test"]["greedy"])]
        b = r["test"]["lm"]
        rows.append((f"beam {cfg['beam']} + word {b['order']}-gram (alpha {b['alpha']}, beta {b['beta']})",
                     r["dev"]["best"], b))
        if "pyctcdecode" in r:
            p = r["pyctcdecode"]["test"]
            rows.append((f"pyctcdecode + kenlm, beam {cfg['beam']}, word {p['order']}-gram (alpha {p['alpha']}, "
                         f"beta {p['beta']})", r["pyctcdecode"]["dev_best"], p))
        else:
            rows.append(("pyctcdecode + kenlm: not run (make bench-pyctcdecode)", None, None))
        for label, dev, test in rows:
            if test is None:
                print(f"| {name} | {label} | | | | | |")
                continue
            print(f"| {name} | {label} | {100 * dev['wer']:.1f} | {100 * test['wer']:.1f} | {100 * test['cer']:.1f} | "
                  f"{test['utts_per_s']:.1f} | {test['x_realtime']:.1f} |")
    print(f"\ntest words outside the LM: {100 * results['oov_rate']:.1f} %; test sentences in the LM's text: "
          f"{100 * results['test_sentences_in_lm_text']:.1f} %")
    return 0


def train_mfcc_probe(corpus: Path, out: Path, tokenizer: str, cfg: dict[str, Any],
                     split_file: Path | None = None) -> None:
    """The MFCC asr probe (bench/probe.py's judge settings); split by speaker, or by ``split_file``."""
    split = ["--split-file", str(split_file)] if split_file is not None else ["--split-by", "speaker"]
    su("probe", "train", "asr", str(corpus / "manifest.tsv"), "--encoder", "mfcc", "--head", "bilstm",
       "--hidden", 128, "--stack", 3, "--standardize", "--tokenizer", tokenizer, *split,
       "--lr", "1e-3", "--seeds", 1, "--max-steps", cfg["max_steps"], "--eval-every", 25, "--patience", 20,
       "--step-schedule", "--threads", 1, "-o", str(out), "--quiet")


def measure(name: str, probe_dir: Path, inputs: dict[str, Any], corpus: Path, arpas: dict[int, Path],
            cfg: dict[str, Any], pyctcdecode_python: Path, work: Path) -> dict[str, Any]:
    """Greedy, our beam search and pyctcdecode on one probe's dev (grid) and test (once) logits."""
    import soundfile as sf

    from speechunits.corpus import open_corpus
    from speechunits.probe.evaluate import corpus_labels, decode_logits, probe_input, score_predictions
    from speechunits.probe.inputs import as_corpus
    from speechunits.lm.arpa import read_arpa
    from speechunits.probe.lm_decode import BeamOptions, word_lm_decoder
    from speechunits.probe.model_dir import load_probe, read_split

    probe = load_probe(probe_dir)
    split = read_split(probe_dir)
    made = probe_input(probe.identity, as_corpus(str(corpus / "manifest.tsv")), quiet=True, **inputs)
    logits: dict[str, dict[str, Any]] = {}
    labels: dict[str, dict[str, str]] = {}
    for part in ("dev", "test"):
        labels[part] = corpus_labels("asr", str(corpus / "manifest.tsv"), split.part(part)).labels
        loaded = made.load(list(labels[part]))
        logits[part] = probe.logits(loaded.samples, list(loaded.samples))
    audio_s = sum(sf.info(u.path).duration for u in open_corpus(corpus / "manifest.tsv") if u.id in logits["test"])

    def score_hyps(part: str, hyps: dict[str, str]) -> dict[str, float]:
        return score_predictions("asr", labels[part], hyps)

    def decode(part: str, decoder: Any) -> tuple[dict[str, float], float]:
        t0 = time.perf_counter()
        predictions = {u: decode_logits(probe.coder, x, decoder) for u, x in logits[part].items()}
        wall = time.perf_counter() - t0
        return score_predictions("asr", labels[part], predictions), wall

    def timed(metrics: dict[str, float], wall: float) -> dict[str, float]:
        return {**metrics, "utts_per_s": len(logits["test"]) / wall, "x_realtime": audio_s / wall}

    greedy_dev, _ = decode("dev", None)
    word_lms = {order: read_arpa(path) for order, path in arpas.items()}  # read once, searched 12 times each
    grid = []
    for order, alpha, beta in itertools.product(cfg["orders"], cfg["alphas"], cfg["betas"]):
        options = BeamOptions(alpha=alpha, beta=beta, beam=cfg["beam"])
        metrics, wall = decode("dev", word_lm_decoder(probe, word_lms[order], options))
        grid.append({"order": order, "alpha": alpha, "beta": beta, **metrics, "seconds": wall})
        log.info("%s, dev, order %d alpha %.2f beta %.1f: WER %.4f CER %.4f (%.1f s)", name, order, alpha, beta,
                 metrics["wer"], metrics["cer"], wall)
    best = min(grid, key=lambda g: (g["wer"], g["cer"]))
    # test, read once: greedy and the dev-chosen search
    greedy_test = timed(*decode("test", None))
    chosen = BeamOptions(alpha=best["alpha"], beta=best["beta"], beam=cfg["beam"])
    lm_test = timed(*decode("test", word_lm_decoder(probe, word_lms[best["order"]], chosen)))
    result: dict[str, Any] = {
        "probe": str(probe_dir), "utterances": {p: len(logits[p]) for p in logits},
        "dev": {"greedy": greedy_dev, "grid": grid, "best": best},
        "test": {"greedy": greedy_test, "lm": {**lm_test, "order": best["order"], "alpha": best["alpha"],
                                                "beta": best["beta"], "beam": cfg["beam"]}}}
    work.mkdir(parents=True, exist_ok=True)
    baseline = pyctcdecode_rows(pyctcdecode_python, work, probe, logits, arpas, cfg, decode_hyps=score_hyps,
                                audio_s=audio_s)
    if baseline is not None:
        result["pyctcdecode"] = baseline
    return result


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
