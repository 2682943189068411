"""Units from the pretraining head instead of k-means on a layer? Dev only (issues 14-16: the units).

A HuBERT-style model is trained to predict its targets' unit from context, through a prediction head
(``logits[t, k] = cos(W h_t, e_k) / temperature`` over the last layer). Reading that head on
unmasked audio gives a unit per frame with no k-means at all: the model's own guess of its target
cluster, from a model trained on perturbed voices. This script compares those "head units" with
K-means units of each layer (fitted on a training slice, as bench/pretrain.py does) and with the
targets themselves, on the dev corpus's unseen voices: PNMI against the phone alignments, ABX
within and across speakers (Hamming), the number of distinct units used, and the mean run length.

    python bench/head_units_dev.py --model bench/out/pretrain-aug/iter1 --model bench/out/pretrain-aug/iter2

Prints a markdown table and writes ``OUT/head-units.json``. Dev only: the test corpus is not read.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from speechunits.corpus import SPEAKERS_FILE, open_corpus, read_speakers
from speechunits.encoders import load_encoder
from speechunits.measure.abx_items import build_items
from speechunits.measure.alignments import load_alignments
from speechunits.pretrain.data import load_waves
from speechunits.pretrain.iterate import layer_features
from speechunits.pretrain.targets import nearest
from speechunits.quantize.prediction_head import PredictionHeadCodebook
from speechunits.quantize.kmeans import fit_kmeans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain import evaluate_units, subset  # noqa: E402  (bench/pretrain.py)

SR = 16000


def run_stats(units: dict[str, np.ndarray]) -> dict:
    """Distinct units used and mean run length (frames per deduplicated token)."""
    used = len(np.unique(np.concatenate(list(units.values()))))
    frames = sum(len(u) for u in units.values())
    runs = sum(int(1 + np.count_nonzero(np.diff(u))) for u in units.values() if len(u))
    return {"units_used": used, "mean_run": frames / runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, action="append", required=True, help="a pretrain OUT directory")
    parser.add_argument("--train-corpus", type=Path, default=Path("bench/out/synth_train"))
    parser.add_argument("--dev-corpus", type=Path, default=Path("bench/out/synth_heldout"))
    parser.add_argument("--layers", default="all", help="k-means rows for these layers (default: all)")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--fit-minutes", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/head-units"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    train = subset(load_waves(open_corpus(args.train_corpus / "manifest.tsv"), SR, 400), args.fit_minutes)
    dev = load_waves(open_corpus(args.dev_corpus / "manifest.tsv"), SR, 400)
    alignments = load_alignments(args.dev_corpus / "phones.tsv")
    items = build_items(alignments, read_speakers(args.dev_corpus / SPEAKERS_FILE))
    rows = []
    for model_dir in args.model:
        info = load_encoder(str(model_dir), device="cpu").info
        offset = info.receptive_field / (2 * SR)
        last = info.num_layers
        layers = list(range(last + 1)) if args.layers == "all" else [int(x) for x in args.layers.split(",")]
        feats = layer_features(model_dir, train + dev, sorted(set(layers) | {last}))
        head = PredictionHeadCodebook.from_pretrained(model_dir)
        units = {u: head.assign(f) for (u, _), f in zip(dev, feats[last][len(train):])}
        k_head = head.k
        row = evaluate_units(f"{model_dir} head (K={k_head})", units, info.frame_rate, offset, k_head,
                             alignments, items)
        rows.append({**row, "model": str(model_dir), "layer": "head", "k": k_head, **run_stats(units)})
        for layer in layers:
            x = np.concatenate(feats[layer][:len(train)])
            pick = np.random.default_rng(0).choice(len(x), min(200_000, len(x)), replace=False)
            centroids = fit_kmeans(torch.from_numpy(x[pick]), args.k, iters=30, init="k-means++", seed=0,
                                   device="cpu").centroids
            units = {u: nearest(torch.from_numpy(f), centroids) for (u, _), f in zip(dev, feats[layer][len(train):])}
            row = evaluate_units(f"{model_dir} layer {layer} K={args.k}", units, info.frame_rate, offset, args.k,
                                 alignments, items)
            rows.append({**row, "model": str(model_dir), "layer": layer, "k": args.k, **run_stats(units)})
    (args.out / "head-units.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print("| units (dev, unseen voices) | K | used | PNMI | ABX within % | ABX across % | frames per run |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['k']} | {r['units_used']} | {r['pnmi']:.3f} | {100 * r['abx_within']:.2f} "
              f"| {100 * r['abx_across']:.2f} | {r['mean_run']:.2f} |")
    print(f"\ndev only ({len(dev)} utterances); k-means on {args.fit_minutes:g} min of training audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
