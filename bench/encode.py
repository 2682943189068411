"""End-to-end ``encode`` speed: speechunits vs the fairseq two-pass recipe, same run, same corpus.

Baseline (the headline; fairseq ``examples/hubert/simple_kmeans``, re-expressed with
transformers): pass 1 runs the model one utterance at a time with the blocks past the layer
removed (``model.encoder.layers[:layer]``, what fairseq's ``output_layer`` does in
``dump_hubert_feature.py``) and saves the layer's output to a ``.npy`` + ``.len`` pair;
pass 2 loads them and assigns nearest centroids by ``|x|^2 - 2 x C^T + |C|^2`` argmin,
writing a ``.km`` text file (``dump_km_label.py``'s ApplyKmeans).
Extra row, labelled: the same recipe running all 12 blocks (``output_hidden_states=True``),
what a user who does not truncate gets; it is never the headline.
Ours: :func:`speechunits.units.encode_corpus.encode_corpus` (length-sorted batches, model run
only up to the layer, exact fp32 assignment, resumable Parquet store), frame-level and
``--dedup``.

The model is HuBERT-base sized with random weights (``HubertConfig()``; nothing downloaded);
the codebook has K centroids picked from features of the corpus. Layer (6) and K (500) are
fixed defaults, not chosen on the results. Printed: x real time of each, speed-up of ours over
the truncated baseline (headline) and over the full-depth one (extra), agreement of the units
(must be 1.0), store bytes vs ``.km`` bytes.

Headline command (about 2-3 minutes on 2 idle cores)::

    python bench/encode.py --num-utts 40 --threads 2
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from chirp_corpus import make_corpus  # bench/ is on sys.path when run as a script


def baseline(model_dir: Path, corpus: Path, layer: int, centroids: np.ndarray, work: Path,
             truncate: bool) -> tuple[float, dict]:
    """fairseq two-pass recipe; returns (seconds, {utt_id: labels}).

    ``truncate``: drop the blocks past ``layer`` first, as fairseq's ``output_layer`` does.
    """
    import transformers as tf

    model = tf.HubertModel.from_pretrained(str(model_dir)).eval()
    if truncate:
        model.encoder.layers = model.encoder.layers[:layer]
    files = sorted(corpus.glob("*.wav"))
    start = time.perf_counter()
    feats, lengths = [], []
    with torch.inference_mode():
        for path in files:  # pass 1: dump features
            wave, _ = sf.read(str(path), dtype="float32")
            hidden = model(torch.from_numpy(wave)[None], output_hidden_states=True).hidden_states[layer][0]
            feats.append(hidden.numpy())
            lengths.append(hidden.shape[0])
    np.save(work / "train_0_1.npy", np.concatenate(feats))
    (work / "train_0_1.len").write_text("".join(f"{n}\n" for n in lengths))
    # pass 2: ApplyKmeans over the dumped features
    x_all = np.load(work / "train_0_1.npy", mmap_mode="r")
    c = torch.from_numpy(centroids.T.copy())
    c_norm = (c ** 2).sum(0, keepdim=True)
    labels, offset = {}, 0
    with open(work / "train_0_1.km", "w") as out:
        for path, n in zip(files, lengths):
            x = torch.from_numpy(np.array(x_all[offset: offset + n]))
            offset += n
            dist = (x ** 2).sum(1, keepdim=True) - 2 * x @ c + c_norm
            lab = dist.argmin(1).numpy()
            out.write(" ".join(map(str, lab.tolist())) + "\n")
            labels[path.stem] = lab
    return time.perf_counter() - start, labels


def ours(model_dir: Path, corpus: Path, codebook_dir: Path, out: Path, dedup: bool) -> tuple[float, dict]:
    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.units.encode_corpus import encode_corpus
    from speechunits.units.store import UnitStore
    from speechunits.units.tokenizer import UnitTokenizer

    start = time.perf_counter()
    encoder = load_encoder(str(model_dir), device="cpu")
    tokenizer = UnitTokenizer(encoder, [Codebook.load(codebook_dir)], dedup=dedup)
    encode_corpus(open_corpus(corpus), tokenizer, out, quiet=True)
    seconds = time.perf_counter() - start
    return seconds, {utt: units.expand().ids for utt, units in UnitStore.open(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=int, default=40)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers as tf

    from speechunits.encoders import load_encoder
    from speechunits.quantize import Codebook
    from speechunits.quantize.codebook import encoder_meta

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        model_dir = work / "hubert-base-random"
        tf.HubertModel(tf.HubertConfig()).eval().save_pretrained(model_dir)
        tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=False,
                                    return_attention_mask=False).save_pretrained(model_dir)
        total = make_corpus(work / "audio", args.num_utts, args.min_seconds, args.max_seconds, seed=0)
        encoder = load_encoder(str(model_dir), device="cpu")
        feats = np.concatenate([encoder.extract(sf.read(str(path), dtype="float32")[0], [args.layer])[args.layer]
                                for path in sorted((work / "audio").glob("*.wav"))[:3]])
        rng = np.random.default_rng(0)
        picks = feats[rng.choice(len(feats), size=min(args.k, len(feats)), replace=False)]
        centroids = picks + 0.01 * rng.standard_normal(picks.shape).astype(np.float32)
        Codebook(centroids, dict(encoder_meta(encoder.info), layer=args.layer)).save(work / "cb")
        del encoder

        print(f"corpus: {args.num_utts} utterances, {total:.1f} s of audio; HuBERT-base random weights, "
              f"layer {args.layer}, K={len(centroids)}, torch threads {torch.get_num_threads()}")
        base_s, base_labels = baseline(model_dir, work / "audio", args.layer, centroids, work, truncate=False)
        trunc_s, trunc_labels = baseline(model_dir, work / "audio", args.layer, centroids, work, truncate=True)
        ours_s, ours_labels = ours(model_dir, work / "audio", work / "cb", work / "units", dedup=False)
        dedup_s, dedup_labels = ours(model_dir, work / "audio", work / "cb", work / "units_dedup", dedup=True)
        agree = min(np.mean([np.mean(ref[u] == ours_labels[u]) for u in ref]) for ref in (base_labels, trunc_labels))
        agree_dedup = np.mean([np.array_equal(ours_labels[u], dedup_labels[u]) for u in ours_labels])
        store_bytes = sum(p.stat().st_size for p in (work / "units").glob("*.parquet"))
        dedup_bytes = sum(p.stat().st_size for p in (work / "units_dedup").glob("*.parquet"))
        km_bytes = (work / "train_0_1.km").stat().st_size
        print(f"{'pipeline':<52}{'seconds':>9}{'x real time':>13}{'ours faster by':>16}")
        print(f"{'baseline: fairseq two-pass, blocks 1-' + str(args.layer) + ' only':<52}{trunc_s:9.2f}"
              f"{total / trunc_s:13.1f}{'-':>16}")
        print(f"{'extra: same, all 12 blocks (no output_layer)':<52}{base_s:9.2f}{total / base_s:13.1f}{'-':>16}")
        for name, secs in (("speechunits encode", ours_s), ("speechunits encode --dedup", dedup_s)):
            print(f"{name:<52}{secs:9.2f}{total / secs:13.1f}{trunc_s / secs:15.2f}x")
        print(f"speed-up of `speechunits encode` over the truncated baseline (headline): {trunc_s / ours_s:.2f}x; "
              f"over the full-depth extra row: {base_s / ours_s:.2f}x")
        print(f"units agreement with the baseline: {agree:.4f} (frame share); dedup expands back: {agree_dedup:.4f}")
        print(f"bytes: .km text {km_bytes}, Parquet store {store_bytes} ({store_bytes / km_bytes:.2f}x), "
              f"deduped store {dedup_bytes} ({dedup_bytes / km_bytes:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
