"""Query-by-example spoken term detection (SUPERB's QbE): ``speechunits qbe`` against s3prl's recipe.

Data: a ``speechunits synth qbe`` set (documents = synthetic sentences in 6 voices; dev and eval
queries = isolated words in 4 other voices, dev and eval words disjoint), made here when ``--set`` does
not exist. With ``--ivr DIR`` (``../shared/data/ivr-prompts-en``, not in the package) also a real-speech
set: words cut from 100 of its prompts search the other 408 (one voice: a within-speaker figure).

What is measured, in one run:

1. **Speed and agreement with the baseline.** s3prl's ``quesst14_dtw`` recipe as it ships
   (``dist_method: cosine_exp``, ``minmax_norm``, feature standardisation, dtw-python's ``asymmetric``
   open-begin/end DTW per (query, document) pair, scipy's ``cdist``, a ``ProcessPoolExecutor`` with one
   worker per core) against ``speechunits.search`` with the same settings, on the same MFCC dev
   features: seconds, the ratio, and the largest difference of the per-query normalised scores.
2. **Quality by front end**: MFCC, log-mel, with ``--tiny DIR`` every layer of a tiny model
   (``speechunits pretrain`` on synthetic speech only), and with ``--units-k K`` MFCC units (a K-means
   codebook fitted on the set's own frames, no labels), compared 0/1 and by the distances of their
   centroids (``qbe --codebook``, swept like dense features). For dense features, every
   combination of distance (cosine-exp, cosine, euclidean), min-max rescaling (on/off) and
   standardisation (on/off) is run on **dev** queries: 12 configurations per front end and layer,
   2 for units (min-max on/off). The best by dev MTWV (ties: MAP) is the front end's choice; the eval
   queries are then read once, with that choice and with SUPERB's fixed recipe (cosine-exp, min-max,
   standardised), which is not a choice. The real-speech set is read once with each front end's choice.

``OUT/results.json`` and ``OUT/table.md`` hold the figures::

    python bench/qbe.py --set bench/out/qbe-set --out bench/out/qbe --tiny bench/state/probe3/tiny --units-k 100 \\
        --ivr ../shared/data/ivr-prompts-en
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from speechunits.measure.frame_source import open_frame_source
from speechunits.search.quesst import GroundTruth, Occurrence, file_stem, quesst_ground_truth, write_ground_truth
from speechunits.quantize.codebook import Codebook
from speechunits.search.run import centroid_frames, evaluate, search

DENSE_CONFIGS = [dict(distance=d, minmax=m, standardise=s)
                 for d, m, s in itertools.product(("cosine-exp", "cosine", "euclidean"), (True, False), (True, False))]
UNIT_CONFIGS = [dict(distance="hamming", minmax=False, standardise=False), dict(distance="hamming", minmax=True, standardise=False)]
SUPERB = dict(distance="cosine-exp", minmax=True, standardise=True)


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "speechunits", *args, "--quiet"], check=True)


def frames_of(path: Path, layer: int | None, codebook: Path | None = None) -> tuple[dict[str, np.ndarray], float]:
    """``{file stem: frames}`` (read into memory) and the frame rate; with ``codebook``, a unit store's
    ids as their centroids (``speechunits qbe --codebook``)."""
    source = open_frame_source(path, layer)
    frames = {file_stem(u): np.array(f) for u, f in source.frames}
    if codebook is not None:
        frames = centroid_frames(frames, Codebook.load(codebook).centroids)
    return frames, source.frame_rate


def run(frames: dict[str, np.ndarray], rate: float, truth: GroundTruth, config: dict) -> dict:
    queries = [t for t in truth.terms if t in frames]
    documents = [d for d in truth.documents if d in frames]
    started = time.perf_counter()
    result = search(frames, queries, documents, frame_rate=rate, **config)
    seconds = time.perf_counter() - started
    metrics = evaluate(result, truth)
    return {**config, **{k: metrics[k] for k in ("mtwv", "atwv", "map", "min_cnxe", "cnxe", "queries_scored",
                                                                "documents")},
            "seconds": round(seconds, 2)}


# --- s3prl's recipe, per pair (the baseline) -------------------------------------------------------

def _s3prl_pair(args: tuple[int, int, np.ndarray, np.ndarray]) -> tuple[int, int, float]:
    from dtw import dtw
    from scipy.spatial import distance

    qi, di, query, doc = args
    dist = np.exp(distance.cdist(query, doc, "cosine")) - 1
    low, high = dist.min(1)[:, None], dist.max(1)[:, None]
    dist = (dist - low) / np.clip(high - low, 1e-9, np.inf)
    cost = dtw(x=dist, step_pattern="asymmetric", keep_internals=False, distance_only=False,
               open_begin=True, open_end=True).normalizedDistance
    return qi, di, -cost


def s3prl_scores(frames: dict[str, np.ndarray], queries: list[str], documents: list[str], workers: int) -> np.ndarray:
    feats = np.concatenate([frames[u] for u in (*queries, *documents)])
    mean, std = feats.mean(0), np.clip(feats.std(0), 1e-9, None)
    norm = {u: (frames[u] - mean) / std for u in (*queries, *documents)}
    scores = np.zeros((len(queries), len(documents)))
    jobs = [(qi, di, norm[q], norm[d]) for qi, q in enumerate(queries) if len(frames[q]) >= 5
            for di, d in enumerate(documents)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for qi, di, score in pool.map(_s3prl_pair, jobs, chunksize=64):
            scores[qi, di] = score
    rows = scores.std(1) > 0
    scores[rows] = (scores[rows] - scores[rows].mean(1, keepdims=True)) / np.clip(scores[rows].std(1, keepdims=True), 1e-9, None)
    return scores


# --- the real-speech set -----------------------------------------------------------------------------

def ivr_set(data: Path, out: Path, query_prompts: int = 100, min_seconds: float = 0.35, seed: int = 0) -> Path:
    """Words of ``query_prompts`` prompts (one instance per word, >= ``min_seconds``) as queries; the
    other prompts as documents; ground truth from the word alignments."""
    root = out / "ivr-qbe"
    if (root / "scoring").is_dir():
        return root
    words: dict[str, list[tuple[float, float, str]]] = {}
    for line in (data / "words.tsv").read_text(encoding="utf-8").splitlines():
        utt, start, end, word = line.split("\t")
        if word not in ("sil", "<sil>", "[sil]"):
            words.setdefault(utt, []).append((float(start), float(end), word.lower()))
    utts = sorted(words)
    rng = np.random.default_rng(seed)
    query_utts = set(rng.choice(utts, size=query_prompts, replace=False).tolist())
    documents = [u for u in utts if u not in query_utts]
    (root / "Audio").mkdir(parents=True)
    (root / "dev_queries").mkdir()
    durations = {}
    for u in documents:
        audio, rate = sf.read(data / "flac" / f"{u}.flac", dtype="float32")
        sf.write(root / "Audio" / f"{u}.wav", audio, rate)
        durations[u] = len(audio) / rate
    terms: dict[str, str] = {}
    for u in sorted(query_utts):
        audio, rate = sf.read(data / "flac" / f"{u}.flac", dtype="float32")
        for start, end, word in words[u]:
            if end - start < min_seconds or word in terms.values():
                continue
            query = f"q{len(terms):04d}"
            sf.write(root / "dev_queries" / f"{query}.wav", audio[int(start * rate):int(end * rate)], rate)
            terms[query] = word
    occurrences = [Occurrence(u, q, s, e - s) for q, w in terms.items() for u in documents for s, e, x in words[u] if x == w]
    write_ground_truth(root / "scoring" / "groundtruth_ivr_dev", "ivr_dev", durations, terms, occurrences)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, required=True, help="a `speechunits synth qbe` set (made if missing)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", type=Path, default=None)
    parser.add_argument("--units-k", type=int, default=None)
    parser.add_argument("--ivr", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="baseline processes (default: cores)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.set / "scoring").is_dir():
        cli("synth", "qbe", str(args.set.parent)) if args.set.name == "qbe" else sys.exit(f"{args.set}: not a qbe set")
    dev, test = quesst_ground_truth(args.set, "dev"), quesst_ground_truth(args.set, "eval")
    results: dict = {"set": str(args.set), "dev": {"queries": len(dev.terms), "documents": len(dev.documents)},
                     "eval": {"queries": len(test.terms)}}

    fronts: list[tuple[str, Path, int | None, bool]] = []
    for encoder in ("mfcc", "logmel"):
        feat = args.out / "feat" / encoder
        if not (feat / "features.json").is_file():
            cli("features", str(args.set), "--encoder", encoder, "-o", str(feat))
        fronts.append((encoder, feat, None, False))
    if args.tiny:
        feat = args.out / "feat" / "tiny"
        if not (feat / "features.json").is_file():
            top = json.loads((args.tiny / "config.json").read_text())["num_hidden_layers"]
            cli("features", str(args.set), "--encoder", str(args.tiny), "--layers", f"0-{top}", "-o", str(feat))
        layers = json.loads((feat / "features.json").read_text())["layers"]
        fronts += [(f"tiny layer {layer}", feat, layer, False) for layer in layers]
    if args.units_k:
        codebook, store = args.out / f"mfcc-k{args.units_k}", args.out / f"units-mfcc-k{args.units_k}"
        if not (store / "store.json").is_file() and not any(store.glob("*.parquet")):
            cli("fit", "--from-features", str(args.out / "feat" / "mfcc"), "--k", str(args.units_k), "-o", str(codebook))
            cli("encode", str(args.set), "--codebook", str(codebook), "-o", str(store))
        fronts.append((f"MFCC K={args.units_k} units", store, None, True))
        fronts.append((f"MFCC K={args.units_k} units, centroid distances", store, None, False))

    # 1. speed and agreement against s3prl's recipe (MFCC, dev)
    frames, rate = frames_of(args.out / "feat" / "mfcc", None)
    queries = [t for t in dev.terms if t in frames]
    started = time.perf_counter()
    ours = search(frames, queries, dev.documents, frame_rate=rate, **SUPERB)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = s3prl_scores(frames, queries, dev.documents, args.workers)
    theirs_s = time.perf_counter() - started
    results["speed"] = {"pairs": len(queries) * len(dev.documents), "speechunits_s": round(ours_s, 2),
                        "s3prl_recipe_s": round(theirs_s, 2), "speedup": round(theirs_s / ours_s, 1),
                        "baseline_workers": args.workers, "max_score_difference": float(np.abs(ours.score - theirs).max())}
    print(json.dumps(results["speed"]), flush=True)

    # 2. dev sweep, choice, eval once (and SUPERB's fixed recipe)
    ivr_root = ivr_set(args.ivr, args.out) if args.ivr else None
    ivr_truth = quesst_ground_truth(ivr_root, "dev") if ivr_root else None
    rows = []
    for name, path, layer, units in fronts:
        frames, rate = frames_of(path, layer, codebook if name.endswith("centroid distances") else None)
        sweep = [run(frames, rate, dev, c) for c in (UNIT_CONFIGS if units else DENSE_CONFIGS)]
        best = max(sweep, key=lambda r: (r["mtwv"], r["map"]))
        chosen = {k: best[k] for k in ("distance", "minmax", "standardise")}
        row = {"front_end": name, "dev_sweep": sweep, "chosen": chosen, "dev": best, "eval": run(frames, rate, test, chosen)}
        if not units:
            row["eval_superb_recipe"] = run(frames, rate, test, SUPERB)
        if ivr_truth is not None and name in ("mfcc", "logmel"):
            ivr_dir = args.out / "feat-ivr" / name
            if not (ivr_dir / "features.json").is_file():
                cli("features", str(ivr_root), "--encoder", name, "-o", str(ivr_dir))
            ivr_frames, ivr_rate = frames_of(ivr_dir, None)
            row["ivr"] = run(ivr_frames, ivr_rate, ivr_truth, chosen)
        if ivr_truth is not None and name.startswith("MFCC K="):  # the same codebook on the real voice
            ivr_store = args.out / "units-ivr"
            if not (ivr_store / "store.json").is_file() and not any(ivr_store.glob("*.parquet")):
                cli("encode", str(ivr_root), "--codebook", str(codebook), "-o", str(ivr_store))
            ivr_frames, ivr_rate = frames_of(ivr_store, None, None if units else codebook)
            row["ivr"] = run(ivr_frames, ivr_rate, ivr_truth, chosen)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "dev_sweep"}), flush=True)
    if ivr_truth is not None and args.tiny:
        tiny_rows = [r for r in rows if r["front_end"].startswith("tiny")]
        best_tiny = max(tiny_rows, key=lambda r: (r["dev"]["mtwv"], r["dev"]["map"]))  # layer chosen on dev
        layer = int(best_tiny["front_end"].split()[-1])
        ivr_dir = args.out / "feat-ivr" / "tiny"
        if not (ivr_dir / "features.json").is_file():
            cli("features", str(ivr_root), "--encoder", str(args.tiny), "--layers", str(layer), "-o", str(ivr_dir))
        ivr_frames, ivr_rate = frames_of(ivr_dir, None)
        best_tiny["ivr"] = run(ivr_frames, ivr_rate, ivr_truth, best_tiny["chosen"])
    if ivr_truth is not None:
        results["ivr"] = {"queries": len(ivr_truth.terms), "documents": len(ivr_truth.documents),
                          "queries_with_occurrence": len(ivr_truth.hits)}
    results["rows"] = rows
    (args.out / "results.json").write_text(json.dumps(results, indent=1))

    lines = ["| front end | chosen on dev (distance, min-max, standardised) | dev MTWV | dev MAP | eval MTWV | eval ATWV | eval MAP "
             "| eval minCnxe / Cnxe | eval MTWV / MAP, SUPERB recipe | real speech (ivr) MTWV / MAP / minCnxe |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    def pair(m: dict | None, cnxe: bool = False) -> str:
        return (f"{m['mtwv']:.3f} / {m['map']:.3f}" + (f" / {m['min_cnxe']:.3f}" if cnxe else "")) if m else "-"

    for r in rows:
        c, d, e = r["chosen"], r["dev"], r["eval"]
        lines.append(f"| {r['front_end']} | {c['distance']}, {'on' if c['minmax'] else 'off'}, "
                     f"{'yes' if c['standardise'] else 'no'} | {d['mtwv']:.3f} | {d['map']:.3f} | {e['mtwv']:.3f} "
                     f"| {e['atwv']:.3f} | {e['map']:.3f} | {e['min_cnxe']:.3f} / {e['cnxe']:.2f} "
                     f"| {pair(r.get('eval_superb_recipe'))} | {pair(r.get('ivr'), cnxe=True)} |")
    sp = results["speed"]
    lines.append("")
    lines.append(f"Speed (MFCC, dev, {sp['pairs']} query-document pairs): speechunits {sp['speechunits_s']} s, "
                 f"s3prl's recipe {sp['s3prl_recipe_s']} s ({sp['baseline_workers']} processes): {sp['speedup']}x; "
                 f"largest score difference {sp['max_score_difference']:.2e}.")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
