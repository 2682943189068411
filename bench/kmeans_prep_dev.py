"""Does reshaping the features before k-means give better units? Dev only (issue 14's units vs features).

``speechunits fit`` runs k-means on a layer's raw features, as fairseq's HuBERT recipe does. Some
pipelines standardise each dimension, reduce with PCA, whiten, or cluster directions (cosine) first.
This script fits each of these on one layer of a model over the training part of
``bench/pretrain_probe.py``'s joint corpus (200k frames, seed 0, k-means++, 30 Lloyd iterations;
the same transform is applied to the dev frames before assignment) and scores the units on the dev
part's unseen voices: PNMI against the phone alignments and ABX within/across speakers (Hamming).

    python bench/kmeans_prep_dev.py --model bench/out/pretrain-aug/iter2 --layer 3   # ~2 min here

Prints a markdown table and writes ``OUT/kmeans-prep-L<layer>.json``. No test part exists in this split.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from speechunits.corpus import SPEAKERS_FILE, open_corpus, read_speakers
from speechunits.encoders import load_encoder
from speechunits.measure.abx_items import build_items
from speechunits.measure.alignments import load_alignments
from speechunits.pretrain.data import load_waves
from speechunits.pretrain.iterate import layer_features
from speechunits.pretrain.targets import nearest
from speechunits.quantize.kmeans import fit_kmeans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain import evaluate_units  # noqa: E402  (bench/pretrain.py)

SR = 16000
MAX_FRAMES = 200_000
Transform = Callable[[torch.Tensor], torch.Tensor]


def transforms(x: torch.Tensor) -> dict[str, Transform]:
    """Feature maps fitted on the training sample ``x`` ``[N, D]``: name -> map of ``[n, D]`` frames."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-5)
    torch.manual_seed(0)  # pca_lowrank is randomised: the same seed, the same axes
    _, s, v = torch.pca_lowrank(x - mean, q=min(128, x.shape[1]), center=False)
    scale = s / len(x) ** 0.5  # the standard deviation along each principal direction

    def pca(q: int, whiten: bool = False) -> Transform:
        return lambda f: ((f - mean) @ v[:, :q]) / (scale[:q] if whiten else 1.0)

    return {"raw (speechunits fit)": lambda f: f, "standardised": lambda f: (f - mean) / std,
            "centred, unit length (cosine)": lambda f: torch.nn.functional.normalize(f - mean, dim=-1),
            "PCA 16": pca(16), "PCA 32": pca(32), "PCA 64": pca(64), "PCA 32, whitened": pca(32, True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a pretrained model directory")
    parser.add_argument("--layer", type=int, required=True)
    parser.add_argument("--corpus", type=Path, default=Path("bench/out/pretrain-probe-25/corpus"),
                        help="bench/pretrain_probe.py's joint corpus (split.tsv: train / dev)")
    parser.add_argument("--k", default="100,500", help="cluster counts (default %(default)s; PCA rows at the first)")
    parser.add_argument("--out", type=Path, default=None, help="default: the corpus's parent")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ks = [int(k) for k in args.k.split(",")]
    split = dict(line.split("\t") for line in (args.corpus / "split.tsv").read_text().splitlines() if line)
    waves = load_waves(open_corpus(args.corpus / "manifest.tsv"), SR, 400)
    train = [w for w in waves if split[w[0]] == "train"]
    dev = [w for w in waves if split[w[0]] == "dev"]
    alignments = load_alignments(args.corpus / "phones.tsv")
    speakers = read_speakers(args.corpus / SPEAKERS_FILE)
    items = build_items({u: alignments[u] for u, _ in dev}, {u: speakers[u] for u, _ in dev})
    info = load_encoder(str(args.model), device="cpu").info
    offset = info.receptive_field / (2 * SR)
    feats = layer_features(args.model, train + dev, [args.layer])[args.layer]  # one encoder load, in that order
    train_feats, dev_feats = np.concatenate(feats[:len(train)]), feats[len(train):]
    pick = np.random.default_rng(0).choice(len(train_feats), min(MAX_FRAMES, len(train_feats)), replace=False)
    x = torch.from_numpy(train_feats[pick])
    rows = []
    for name, transform in transforms(x).items():
        for k in ks if name.startswith(("raw", "standardised")) else ks[:1]:
            centroids = fit_kmeans(transform(x), k, iters=30, init="kmeans++", seed=0, device="cpu").centroids
            units = {u: nearest(transform(torch.from_numpy(f)), centroids) for (u, _), f in zip(dev, dev_feats)}
            row = evaluate_units(f"{name} K={k}", units, info.frame_rate, offset, k, alignments, items)
            rows.append({"features": name, "k": k, **row})
    out = args.out or args.corpus.parent
    result = {"model": str(args.model), "layer": args.layer, "train_frames": len(x), "dev_utterances": len(dev),
              "rows": rows}
    (out / f"kmeans-prep-L{args.layer}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"| features before k-means ({args.model} layer {args.layer}) | K | PNMI | ABX within % | ABX across % |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['features']} | {row['k']} | {row['pnmi']:.3f} | {100 * row['abx_within']:.2f} "
              f"| {100 * row['abx_across']:.2f} |")
    print(f"\n{len(rows)} codebooks on {len(x)} training frames; dev only ({len(dev)} utterances, unseen voices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
