"""Dev study for issue 14's unit rows: how unit probes should embed units, and which BPE vocabulary.

Two settings of bench/probe.py's unit rows were fixed without a dev choice: the unit embedding
tables start from random, and the BPE vocabulary is 4 x K. This script measures, on **dev only**
(its split has no test part), what other choices give:

* ``--embed-init random`` (tables learned from scratch) against ``centroids`` (tables start from the
  codebook's standardised centroids, DASB's initialisation; a BPE token starts from the mean of its
  units' centroids), for raw, deduplicated and BPE units;
* BPE vocabularies ``--bpe-vocab`` (default 150, 200, 400 for K=100) on deduplicated units, with the
  sequence shortening each gives against raw units and the relative PER/WER change;
* ``--text-bpe N``: ``asr`` probes of the deduplicated and dedup+BPE rows again with a BPE of the text
  (N pieces) as CTC targets instead of characters. Characters need ~1.55x the CTC positions of phones,
  and dedup+BPE units leave few (docs/probe.md), so the targets may be what costs their WER.

Units are MFCC K-means units (no pretraining needed, the units of issues 15 and 16 too) on a
synthetic corpus of its own seed (1: not bench/probe.py's seed-0 corpus, whose dev and test speakers
stay unread), split by speaker 80/20 into train/dev. Heads and budgets are those bench/probe.py had when
this study ran (the judge's one-layer BiLSTM of 128, kept here; bench/probe.py now uses two layers of 256;
4000-frame batches, early stopping after 20 evaluations 25 steps apart, 3000 steps at most; raw 100 Hz
units stacked 3 frames at a time, deduplicated units not).

    python bench/probe_units_dev.py --out bench/out/probe-units-dev     # ~45 min here (2 cores)
    python bench/probe_units_dev.py --quick                               # checks the script (~2 min)
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe import Bench, ensure_bpe, ensure_codebook_and_units, input_spec, unit_bitrates  # noqa: E402

from speechunits.corpus import open_corpus, read_speakers  # noqa: E402
from speechunits.probe import EncoderInput, UnitInput  # noqa: E402

log = logging.getLogger("bench.probe_units_dev")

FULL = dict(minutes=30.0, speakers=20, probe_minutes=12.0, max_steps=3000, eval_every=25, patience=20, hidden=128,
            lstm_layers=1, max_frames=200_000)
QUICK = dict(minutes=3.0, speakers=6, probe_minutes=0.3, max_steps=30, eval_every=10, patience=3, hidden=32,
             lstm_layers=1, max_frames=20_000)
TASKS = ("phones", "asr")
SEED = 1  # the corpus; bench/probe.py's is 0


def dev_split(corpus: Path, out: Path) -> dict[str, list[str]]:
    """80 % of the speakers train, the rest dev; no test part. Written as ``split.tsv``."""
    speakers = read_speakers(corpus / "speakers.tsv")
    names = sorted(set(speakers.values()))
    random.Random(0).shuffle(names)
    train_speakers = set(names[:max(1, round(0.8 * len(names)))])
    parts: dict[str, list[str]] = {"train": [], "dev": []}
    for utt in open_corpus(corpus / "manifest.tsv"):
        parts["train" if speakers[utt.id] in train_speakers else "dev"].append(utt.id)
    with open(out / "split.tsv", "w", encoding="utf-8") as handle:
        for name, ids in parts.items():
            handle.writelines(f"{utt}\t{name}\n" for utt in ids)
    return parts


def fit_mfcc_units(out: Path, corpus: Path, k: int, vocabs: list[int], train_ids: list[str],
                   cfg: dict[str, Any]) -> tuple[Path, Path, dict[int, Path]]:
    """MFCC K-means codebook on the training speakers, the unit store of every utterance, one BPE per vocabulary."""
    codebook, store = out / f"codebook-k{k}", out / f"units-k{k}"
    mfcc = EncoderInput("mfcc", corpus=corpus / "manifest.tsv", quiet=True)
    ensure_codebook_and_units(codebook, store, mfcc, 0, k, train_ids, corpus / "manifest.tsv", cfg["max_frames"], "cpu")
    bpes = {vocab: ensure_bpe(out / f"bpe-k{k}-v{vocab}", store, train_ids, vocab) for vocab in vocabs}
    return codebook, store, bpes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out/probe-units-dev")
    parser.add_argument("--quick", action="store_true", help="tiny corpus and budgets: proves the script runs")
    parser.add_argument("--k", type=int, default=100, help="codebook size (default %(default)s)")
    parser.add_argument("--bpe-vocab", default=None, help="BPE vocabularies to try (default 1.5K, 2K, 4K)")
    parser.add_argument("--lr", default="1e-3,1e-2", help="learning rates of every sweep (default %(default)s)")
    parser.add_argument("--probe-minutes", type=float, help="budget of each sweep (default 12)")
    parser.add_argument("--jobs", type=int, default=2, help="sweeps at once, one thread each (default 2)")
    parser.add_argument("--text-bpe", type=int, default=0,
                        help="also train the dedup and dedup+BPE rows' asr probes on a text BPE of this size")
    parser.add_argument("--step-schedule", action="store_true",
                        help="probes' warmup and decay follow steps only; the budget only stops (give a new --out)")
    args = parser.parse_args()
    args.seeds, args.device = 1, "cpu"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("speechunits").setLevel(logging.WARNING)
    cfg = dict(QUICK if args.quick else FULL)
    if args.probe_minutes is not None:
        cfg["probe_minutes"] = args.probe_minutes
    k = args.k
    vocabs = ([int(v) for v in args.bpe_vocab.split(",")] if args.bpe_vocab
              else [k + k // 2, 2 * k, 4 * k])
    lrs = tuple(float(x) for x in args.lr.split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    corpus = out / "corpus"
    if not (corpus / "corpus.json").is_file():
        from speechunits.synth import synthesize_corpus

        synthesize_corpus(corpus, minutes=cfg["minutes"], speakers=cfg["speakers"], seed=SEED, quiet=True)
    parts = dev_split(corpus, out)
    codebook, store, bpes = fit_mfcc_units(out, corpus, k, vocabs, parts["train"], cfg)

    rows: list[tuple[str, str, bool, Path | None, str]] = []  # name, kind, dedup, bpe, init
    for init in ("random", "centroids"):
        rows.append((f"raw {init}", "raw", False, None, init))
        rows.append((f"dedup {init}", "dedup", True, None, init))
    for vocab in vocabs:
        rows.append((f"dedup+BPE{vocab} centroids", "dedup+BPE", True, bpes[vocab], "centroids"))
    rows.append((f"dedup+BPE{vocabs[-1]} random", "dedup+BPE", True, bpes[vocabs[-1]], "random"))

    bench = Bench(args, cfg, out, corpus)
    lengths: dict[str, float] = {}
    bitrates: dict[str, str] = {}
    for name, kind, dedup, bpe, init in rows:
        inputs = UnitInput(store, dedup=dedup, bpe_dir=bpe)
        bitrates[name], lengths[name] = unit_bitrates(inputs, kind, k)
        spec = input_spec("units", store, dedup=dedup, bpe=bpe, codebook=codebook if init != "random" else None)
        for task in TASKS:
            bench.submit(name, task, spec, frame_rate=inputs.frame_rate, lrs=lrs, embed_init=init)
        if args.text_bpe and kind != "raw":
            bench.submit(f"{name} text-BPE{args.text_bpe}", "asr", spec, frame_rate=inputs.frame_rate, lrs=lrs,
                         embed_init=init, tokenizer=args.text_bpe)
    bench.wait()
    bench.pool.shutdown()

    res = bench.results
    lines = [f"## Unit probes on dev: MFCC K={k}, {cfg['minutes']:g}-min synthetic corpus (seed {SEED}), "
             f"{cfg['speakers']} speakers split by speaker (train/dev utterances {len(parts['train'])}/"
             f"{len(parts['dev'])}; no test part)", "",
             "| units | embedding | tokens/utt | shorter than raw | dev PER % | dev WER % | dev CER % | "
             "lr (phones, asr) | bitrate |", "|---|---|---|---|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for name, kind, _, _, init in rows:
        phones, asr = res[name]["phones"], res[name]["asr"]
        dev = {"per": phones["dev"]["per"]["mean"], "wer": asr["dev"]["wer"]["mean"], "cer": asr["dev"]["cer"]["mean"]}
        raw = f"raw {init}"
        shrink = lengths[raw] / lengths[name]
        summary[name] = {"dev": dev, "tokens_per_utterance": lengths[name], "shorter": shrink,
                         "lr": [phones["selection"]["lr"], asr["selection"]["lr"]], "bitrate": bitrates[name]}
        lines.append(f"| {name.split(' ')[0]} | {init} | {lengths[name]:.1f} | {shrink:.2f}x | {100 * dev['per']:.1f} | "
                     f"{100 * dev['wer']:.1f} | {100 * dev['cer']:.1f} | {phones['selection']['lr']:g}, "
                     f"{asr['selection']['lr']:g} | {bitrates[name]} |")
    notes = [""]
    for name, kind, _, _, init in rows:
        if kind == "raw":
            continue
        raw = summary[f"raw {init}"]["dev"]
        change = {m: (summary[name]["dev"][m] - raw[m]) / max(raw[m], 1e-9) for m in ("per", "wer")}
        notes.append(f"{name}: {summary[name]['shorter']:.2f}x shorter than raw {init}; relative dev PER "
                     f"{100 * change['per']:+.1f} %, WER {100 * change['wer']:+.1f} %")
    for name, kind, _, _, init in rows:
        text_row = f"{name} text-BPE{args.text_bpe}"
        if text_row not in res:
            continue
        chars, pieces = res[name]["asr"]["dev"], res[text_row]["asr"]["dev"]
        summary[name]["dev_text_bpe"] = {m: pieces[m]["mean"] for m in ("wer", "cer")}
        notes.append(f"{name}: asr targets characters -> text BPE {args.text_bpe}: dev WER "
                     f"{100 * chars['wer']['mean']:.1f} -> {100 * pieces['wer']['mean']:.1f}, CER "
                     f"{100 * chars['cer']['mean']:.1f} -> {100 * pieces['cer']['mean']:.1f}")
    for kind in ("raw", "dedup"):
        a, b = summary[f"{kind} random"]["dev"], summary[f"{kind} centroids"]["dev"]
        notes.append(f"{kind}: centroid tables vs random: dev PER {100 * a['per']:.1f} -> {100 * b['per']:.1f}, "
                     f"WER {100 * a['wer']:.1f} -> {100 * b['wer']:.1f}")
    bound = [f"{row} {task}" for row in res for task, meta in res[row].items()
             if any(r["stop_reason"] == "time_budget" and r["lr"] == meta["selection"]["lr"] for r in meta["runs"])]
    notes.append("chosen runs stopped by the time budget (still learning): " + (", ".join(bound) or "none"))
    notes.append(f"configurations tried: {bench.configurations} training runs ({len(lrs)} learning rates x "
                 f"{len(rows)} rows x {len(TASKS)} tasks, plus {len(res) - len(rows)} text-BPE asr sweeps); "
                 "the test part does not exist here")
    notes.append(f"total wall time {time.time() - started:.0f} s")
    text = "\n".join(lines + notes) + "\n"
    (out / "table.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"config": cfg, "k": k, "vocabs": vocabs, "lrs": lrs,
                                                  "rows": summary, "budget_bound": bound}, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
