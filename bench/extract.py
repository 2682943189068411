"""Feature extraction speed: speechunits vs the fairseq/textlesslib-style baseline, same run, same corpus.

Baseline: the transformers model in fp32, one utterance at a time, all layers computed
(``model(x, output_hidden_states=True)``), taking ``hidden_states[layer]``.
Ours: :func:`speechunits.features.iter_features` (length-sorted batches, blocks past the
layer never run) in fp32 and bf16.

Each system first runs once, untimed, on a couple of other utterances (thread pools, oneDNN
kernels of fixed shapes: one-off costs a real corpus amortises). Every round then uses a fresh
corpus, so no system sees an utterance length it has already run; with ``--repeats`` the
medians over rounds are reported (this machine's timings wander by ~5-10 % between runs).

The model is HuBERT-base sized with random weights (``HubertConfig()`` defaults; nothing is
downloaded). Printed: x real time, speed-up over the baseline, achieved GFLOP/s (useful
FLOPs of the unpadded utterances, counted analytically) as a share of a large matmul's
GFLOP/s measured in the same run and dtype, bf16's effect on features and on k-means units,
and peak RSS of a features run over 50 vs 500 utterances (in subprocesses, with a small
model and short utterances so that it is quick; the point is that memory does not grow).

    python bench/extract.py --num-utts 40                # a few minutes on 2 cores
    python bench/extract.py --num-utts 40 --repeats 3    # three fresh corpora, medians: steadier on a noisy machine
    python bench/extract.py --num-utts 200 --threads 2
    python bench/extract.py --num-utts 40 --no-cpu-kernels   # speechunits with transformers' own modules
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from chirp_corpus import make_corpus  # bench/ is on sys.path when run as a script


def model_flops(config, num_samples: int, num_layers: int) -> float:
    """Multiply-add FLOPs (x2) of the CNN, projection, positional conv and ``num_layers`` blocks."""
    flops, length, c_in = 0.0, num_samples, 1
    for c_out, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
        flops += 2.0 * length * c_out * c_in * kernel
        c_in = c_out
    frames, dim = length, config.hidden_size
    flops += 2.0 * frames * c_in * dim
    flops += 2.0 * frames * dim * (dim // config.num_conv_pos_embedding_groups) * config.num_conv_pos_embeddings
    per_layer = 2.0 * frames * (4 * dim * dim + 2 * dim * config.intermediate_size) + 4.0 * frames * frames * dim
    return flops + num_layers * per_layer


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5, trials: int = 3) -> float:
    """The machine's large-matmul speed: the best of ``trials`` timings of ``repeats`` products (GFLOP/s)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 * repeats / best / 1e9


def run_baseline(model, paths: list[Path], layer: int) -> tuple[float, list[np.ndarray]]:
    outs = []
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            wave = torch.from_numpy(sf.read(str(path), dtype="float32")[0])[None]
            outs.append(model(wave, output_hidden_states=True).hidden_states[layer][0].numpy())
    return time.perf_counter() - start, outs


def load_ours(model_dir: str, dtype: str, cpu_kernels: bool = True):
    from speechunits.encoders import load_encoder

    return load_encoder(model_dir, device="cpu", dtype=dtype, cpu_kernels=cpu_kernels)


def run_ours(encoder, corpus_dir: Path, layer: int, max_batch_seconds: float) -> tuple[float, list[np.ndarray]]:
    from speechunits.corpus import open_corpus
    from speechunits.features import iter_features

    start = time.perf_counter()
    outs = [item.features[layer] for item in iter_features(encoder, open_corpus(corpus_dir), [layer],
                                                           max_batch_seconds=max_batch_seconds, quiet=True)]
    return time.perf_counter() - start, outs


def kmeans_agreement(reference: np.ndarray, other: np.ndarray, k: int = 100, iters: int = 15, seed: int = 0) -> float:
    """Share of frames whose nearest centroid (k-means fit on ``reference``) is the same for ``other``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(reference)
    centroids = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(1)
        for j in range(k):
            members = x[assign == j]
            if len(members):
                centroids[j] = members.mean(0)
    a = torch.cdist(x, centroids).argmin(1)
    b = torch.cdist(torch.from_numpy(other), centroids).argmin(1)
    return float((a == b).float().mean())


def rss_child(count: int, workdir: Path, max_batch_seconds: float) -> None:
    """Subprocess body: a features run over ``count`` short utterances; prints peak RSS (MiB)."""
    from speechunits.cli.main import main

    code = main(["features", str(workdir / f"corpus{count}"), "--encoder", str(workdir / "small_model"), "--layer", "2",
                 "-o", str(workdir / f"out{count}"), "--quiet", "--device", "cpu",
                 "--max-batch-seconds", str(max_batch_seconds)])
    print(json.dumps({"code": code, "peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (reset at exec, unlike ru_maxrss, which a child inherits)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_rss(workdir: Path, counts: list[int], max_batch_seconds: float) -> dict[int, float]:
    import transformers as tf

    torch.manual_seed(0)
    config = tf.HubertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024,
                             conv_dim=(128,) * 7)
    tf.HubertModel(config).save_pretrained(workdir / "small_model")
    result = {}
    for count in counts:
        make_corpus(workdir / f"corpus{count}", count, 1.0, 3.0, seed=count)
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(count), "--workdir", str(workdir),
                              "--max-batch-seconds", str(max_batch_seconds)],
                             capture_output=True, text=True, check=True)
        result[count] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mib"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=int, default=40)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds, each on a fresh corpus (new lengths); medians are reported")
    parser.add_argument("--warmup-utts", type=int, default=2,
                        help="utterances of a separate corpus each system runs once, untimed, before round 1")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--max-batch-seconds", type=float, default=None, help="default: the library default")
    parser.add_argument("--rss-counts", default="50,500", help="utterance counts for the peak-RSS check ('' to skip)")
    parser.add_argument("--rss-max-batch-seconds", type=float, default=5.0,
                        help="batch budget of the RSS runs (small, so that both corpora exceed one window)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--no-cpu-kernels", action="store_true",
                        help="run speechunits with transformers' own modules (docs/performance.md)")
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from speechunits.features.extract import DEFAULT_MAX_BATCH_SECONDS

    mbs = args.max_batch_seconds or DEFAULT_MAX_BATCH_SECONDS
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child is not None:
        rss_child(args.rss_child, Path(args.workdir), mbs)
        return

    import transformers as tf

    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    torch.manual_seed(0)
    config = tf.HubertConfig()
    model = tf.HubertModel(config).eval()
    model.save_pretrained(work / "model")
    rounds = []  # per round: corpus dir, seconds, useful FLOPs, baseline FLOPs
    for r in range(args.repeats):
        corpus = work / f"corpus{r}"
        total_s = make_corpus(corpus, args.num_utts, args.min_seconds, args.max_seconds, seed=r)
        lengths = [sf.info(str(p)).frames for p in sorted(corpus.glob("*.wav"))]
        rounds.append((corpus, total_s, sum(model_flops(config, n, args.layer) for n in lengths),
                       sum(model_flops(config, n, config.num_hidden_layers) for n in lengths)))
    make_corpus(work / "warmup", max(args.warmup_utts, 1), args.min_seconds, args.max_seconds, seed=1000)
    print(f"corpus: {args.repeats} round(s) of {args.num_utts} utterances ({args.min_seconds}-{args.max_seconds} s), "
          f"{rounds[0][1]:.0f} s of audio in round 1, each round a fresh corpus; HuBERT-base size, random init; "
          f"layer {args.layer}; torch threads {torch.get_num_threads()}; max_batch_seconds {mbs}; "
          f"each system warmed up on {args.warmup_utts} other utterances")
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    systems = [] if args.skip_baseline else [("baseline HF fp32, 1 at a time, all layers", "fp32", None)]
    short = {None: "baseline", "fp32": "ours fp32", "bf16": "ours bf16"}
    plain = ", no CPU kernels" if args.no_cpu_kernels else ""
    systems += [(f"speechunits {d}, batched, layers 1-{args.layer}{plain}", d, d) for d in ("fp32", "bf16")]
    encoders = {d: load_ours(str(work / "model"), d, cpu_kernels=not args.no_cpu_kernels) for d in ("fp32", "bf16")}
    if args.warmup_utts:
        warm = sorted((work / "warmup").glob("*.wav"))
        if not args.skip_baseline:
            run_baseline(model, warm, args.layer)
        for d in ("fp32", "bf16"):
            run_ours(encoders[d], work / "warmup", args.layer, mbs)
    times: dict[str, list[float]] = {name: [] for name, _, _ in systems}
    outputs: dict[str, list[np.ndarray]] = {}
    for r, (corpus, total_s, _, _) in enumerate(rounds):
        line = []
        for name, _, ours in systems:
            if ours is None:
                elapsed, outs = run_baseline(model, sorted(corpus.glob("*.wav")), args.layer)
            else:
                elapsed, outs = run_ours(encoders[ours], corpus, args.layer, mbs)
            times[name].append(elapsed)
            if r == 0:
                outputs[ours or "baseline"] = outs
            line.append(f"{short[ours]} {total_s / elapsed:.2f}")
        print(f"round {r + 1} ({total_s:.0f} s of audio), x real time: " + ", ".join(line), flush=True)
    peak_after = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    peak = {k: (peak[k] + peak_after[k]) / 2 for k in peak}
    print(f"large matmul (2048^3, best of 3 trials, mean of before/after): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    print(f"medians over {args.repeats} round(s); 'vs baseline' = median of the per-round ratios")
    print(f"{'run':56s} {'seconds':>8s} {'x real time':>12s} {'vs baseline':>12s} {'GFLOP/s':>8s} {'% matmul':>9s}")
    base_name = None if args.skip_baseline else systems[0][0]
    for name, dtype, ours in systems:
        speeds = [total_s / t for (_, total_s, _, _), t in zip(rounds, times[name])]
        rates = [(useful if ours else full) / t / 1e9 for (_, _, useful, full), t in zip(rounds, times[name])]
        ratio = "-"
        if base_name:
            ratio = f"{float(np.median([b / t for b, t in zip(times[base_name], times[name])])):.2f}x"
        gflops = float(np.median(rates))
        print(f"{name:56s} {float(np.median(times[name])):8.1f} {float(np.median(speeds)):12.2f} {ratio:>12s} "
              f"{gflops:8.1f} {100 * gflops / peak[dtype]:8.0f}%")
    fp32, bf16 = np.concatenate(outputs["fp32"]), np.concatenate(outputs["bf16"])
    if "baseline" in outputs:
        diff = max(np.abs(a - b).max() / np.abs(a).max() for a, b in zip(outputs["baseline"], outputs["fp32"]))
        print(f"ours fp32 vs baseline: max |diff| / max |feature| = {diff:.1e}")
    rel = np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32)
    cos = float(np.mean(np.sum(fp32 * bf16, 1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))))
    agree = kmeans_agreement(fp32, bf16)
    print(f"bf16 vs fp32 features: relative L2 error {rel:.2e}, mean frame cosine {cos:.5f}; "
          f"same k-means (K=100) unit for {100 * agree:.1f}% of {len(fp32)} frames")
    if args.rss_counts:
        counts = [int(c) for c in args.rss_counts.split(",")]
        rss = measure_rss(work / "rss", counts, args.rss_max_batch_seconds)
        print(f"peak RSS of `speechunits features` (small HuBERT, 2 layers, 1-3 s utterances, "
              f"max_batch_seconds {args.rss_max_batch_seconds}): "
              + ", ".join(f"{c} utts {m:.0f} MiB" for c, m in rss.items()))


if __name__ == "__main__":
    main()
