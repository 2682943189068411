"""Feature extraction speed: speechunits vs what a knowledgeable transformers user runs, same run, same corpora.

Baselines (all on the same fresh corpora, all stopping at the requested layer, as fairseq's
``dump_hubert_feature.py`` does with ``output_layer`` and textlesslib does):

* ``HF fp32 1-by-1``: ``transformers.HubertModel`` with ``model.encoder.layers`` cut to the first
  ``layer`` blocks, fp32, one utterance at a time; the output is ``last_hidden_state`` (for a
  post-LN model such as HuBERT-base this equals the full model's ``hidden_states[layer]``;
  checked at start-up). This is fairseq's real behaviour.
* ``HF bf16 1-by-1``: the same truncated model under ``torch.autocast("cpu", torch.bfloat16)``.
* ``HF fp32 batched`` / ``HF bf16 batched``: the truncated model on length-sorted, zero-padded
  batches with an ``attention_mask``, batches filled up to the same padded-audio budget as ours
  (``--max-batch-seconds``); each output cut to its utterance's frame count.
  Caveat, printed with the results: HuBERT-base's first convolution ends in a GroupNorm over
  time, which the padding's zeros enter, so padded utterances' features differ from the
  unpadded ones (transformers' own docs advise not to batch such models with a mask). We
  still run it on the same model, because a user who batches does exactly this, and timing
  a different (layer-norm) model would not compare like with like; its feature deviation is
  printed so that the reader sees what the speed buys.
* extra row, labelled, never the headline: ``HF fp32 1-by-1, all 12 blocks``
  (``output_hidden_states=True``, ``hidden_states[layer]``), what the previous version of this
  bench compared against.

Ours: :func:`speechunits.features.iter_features` (length-sorted batches, blocks past the layer
never run) in fp32 and bf16. Printed: a table with seconds, x real time and achieved GFLOP/s
of every system (the FLOPs of the blocks it runs on the unpadded utterances, counted
analytically) as a share of a large matmul's GFLOP/s measured in the same run and dtype; then
the ratio of each of ours to each baseline (median of per-round ratios), like-for-like pairs
marked; each system's features against the HF fp32 1-by-1 reference; bf16's effect on k-means
units; peak RSS of a features run over 50 vs 500 utterances (subprocesses, small model).

Each system first runs once, untimed, on other utterances (thread pools, oneDNN kernels of
fixed shapes: one-off costs a real corpus amortises). Every round uses a fresh corpus (new
lengths) and runs the systems in a rotated order; medians over rounds are reported. The model
is HuBERT-base sized with random weights (``HubertConfig()`` defaults, nothing downloaded);
layer 6 and the corpus settings are fixed defaults, not chosen on the results.

Headline command (on an otherwise idle machine; about 10-15 minutes on 2 cores: ~2.5 min per round, RSS runs ~2 min)::

    python bench/extract.py --num-utts 40 --repeats 3

Quick check that everything runs (a couple of minutes)::

    python bench/extract.py --num-utts 3 --max-seconds 4 --rss-counts ''

Ours with transformers' own modules instead of the CPU kernels (docs/performance.md)::

    python bench/extract.py --num-utts 40 --repeats 3 --no-cpu-kernels
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
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


def truncated_model(model, layer: int):
    """A copy of ``model`` holding only its first ``layer`` transformer blocks (fairseq's ``output_layer``)."""
    trunc = copy.deepcopy(model).eval()
    trunc.encoder.layers = trunc.encoder.layers[:layer]
    return trunc


def read_wave(path: Path) -> torch.Tensor:
    return torch.from_numpy(sf.read(str(path), dtype="float32")[0])


def autocast(dtype: str):
    """bf16: ``torch.autocast`` on CPU (what a torch user adds); fp32: nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()


def run_hf_single(model, paths: list[Path], dtype: str) -> tuple[float, list[np.ndarray]]:
    """One utterance at a time through a truncated model; its ``last_hidden_state`` is the layer."""
    outs = []
    start = time.perf_counter()
    with torch.inference_mode(), autocast(dtype):
        for path in paths:
            outs.append(model(read_wave(path)[None]).last_hidden_state[0].float().numpy())
    return time.perf_counter() - start, outs


def run_hf_full_depth(model, paths: list[Path], layer: int) -> tuple[float, list[np.ndarray]]:
    """The extra row: all blocks run, ``hidden_states[layer]`` taken."""
    outs = []
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            outs.append(model(read_wave(path)[None], output_hidden_states=True).hidden_states[layer][0].numpy())
    return time.perf_counter() - start, outs


def run_hf_batched(model, paths: list[Path], dtype: str, max_batch_seconds: float,
                   sample_rate: int = 16000) -> tuple[float, list[np.ndarray]]:
    """Length-sorted, zero-padded batches with an attention mask, at most ``max_batch_seconds`` of
    padded audio each (the same budget as ours); outputs cut to each utterance's frame count."""
    budget = max_batch_seconds * sample_rate
    outs: list[np.ndarray | None] = [None] * len(paths)
    start = time.perf_counter()
    waves = [read_wave(p) for p in paths]
    order = sorted(range(len(waves)), key=lambda i: -waves[i].numel())
    batches, current = [], []
    for i in order:  # descending lengths: the first member of a batch is its longest
        if current and (len(current) + 1) * waves[current[0]].numel() > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    with torch.inference_mode(), autocast(dtype):
        for batch in batches:
            longest = waves[batch[0]].numel()
            x = torch.zeros(len(batch), longest)
            mask = torch.zeros(len(batch), longest, dtype=torch.long)
            for row, i in enumerate(batch):
                x[row, : waves[i].numel()] = waves[i]
                mask[row, : waves[i].numel()] = 1
            hidden = model(x, attention_mask=mask).last_hidden_state.float()
            frames = model._get_feat_extract_output_lengths(mask.sum(1))
            for row, i in enumerate(batch):
                outs[i] = hidden[row, : int(frames[row])].numpy()
    return time.perf_counter() - start, outs  # type: ignore[return-value]


def load_ours(model_dir: str, dtype: str, cpu_kernels: bool = True):
    from speechunits.encoders import load_encoder

    plain = {} if cpu_kernels else {"cpu_kernels": False}  # the keyword is new: older versions run too
    return load_encoder(model_dir, device="cpu", dtype=dtype, **plain)


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

    bench_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    torch.manual_seed(0)
    config = tf.HubertConfig()
    model = tf.HubertModel(config).eval()
    model.save_pretrained(work / "model")
    trunc = truncated_model(model, args.layer)
    rounds = []  # per round: corpus dir, seconds, FLOPs of blocks 1..layer, FLOPs of all blocks
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
    warm = sorted((work / "warmup").glob("*.wav"))
    with torch.inference_mode():  # the truncated model's last_hidden_state is the full model's layer
        x = read_wave(warm[0])[None]
        check = float((trunc(x).last_hidden_state - model(x, output_hidden_states=True).hidden_states[args.layer])
                      .abs().max())
    print(f"truncated model check: max |last_hidden_state - full model's hidden_states[{args.layer}]| = {check:.1e}")
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    encoders = {d: load_ours(str(work / "model"), d, cpu_kernels=not args.no_cpu_kernels) for d in ("fp32", "bf16")}

    # name -> (dtype, blocks it runs, run(corpus dir) -> (seconds, per-utterance features))
    def files(corpus: Path) -> list[Path]:
        return sorted(corpus.glob("*.wav"))

    systems: dict[str, tuple[str, str, object]] = {}
    if not args.skip_baseline:
        for d in ("fp32", "bf16"):
            systems[f"HF {d} 1-by-1, blocks 1-{args.layer}"] = (
                d, "layer", lambda c, d=d: run_hf_single(trunc, files(c), d))
        for d in ("fp32", "bf16"):
            systems[f"HF {d} batched+mask, blocks 1-{args.layer}"] = (
                d, "layer", lambda c, d=d: run_hf_batched(trunc, files(c), d, mbs))
        systems[f"extra: HF fp32 1-by-1, all {config.num_hidden_layers} blocks"] = (
            "fp32", "all", lambda c: run_hf_full_depth(model, files(c), args.layer))
    for d in ("fp32", "bf16"):
        systems[f"speechunits {d}, batched, blocks 1-{args.layer}{', no CPU kernels' if args.no_cpu_kernels else ''}"] = (
            d, "layer", lambda c, d=d: run_ours(encoders[d], c, args.layer, mbs))
    names = list(systems)
    ours_names = [n for n in names if n.startswith("speechunits")]
    baseline_names = [n for n in names if n not in ours_names]
    reference = baseline_names[0] if baseline_names else None
    if args.warmup_utts:
        for name in names:
            systems[name][2](work / "warmup")
    times: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[np.ndarray]] = {}
    for r, (corpus, total_s, _, _) in enumerate(rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate: no system always runs first
        for name in order:
            elapsed, outs = systems[name][2](corpus)
            times[name].append(elapsed)
            if r == 0:
                outputs[name] = outs
        print(f"round {r + 1} ({total_s:.0f} s of audio), x real time: "
              + ", ".join(f"{name} {total_s / times[name][-1]:.2f}" for name in names), flush=True)
    peak_after = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    peak = {k: (peak[k] + peak_after[k]) / 2 for k in peak}
    print(f"\nlarge matmul (2048^3, best of 3 trials, mean of before/after): fp32 {peak['fp32']:.0f} GFLOP/s, "
          f"bf16 {peak['bf16']:.0f} GFLOP/s")
    print(f"medians over {args.repeats} round(s). GFLOP/s counts the FLOPs of the blocks a system runs, on the "
          f"unpadded utterances (a batched system's padding is not counted as useful work)")
    width = max(len(n) for n in names) + 2
    print(f"{'system':{width}s} {'seconds':>8s} {'x real time':>12s} {'GFLOP/s':>8s} {'% matmul':>9s}")
    for name in names:
        dtype, blocks = systems[name][0], systems[name][1]
        speeds = [total_s / t for (_, total_s, _, _), t in zip(rounds, times[name])]
        rates = [(useful if blocks == "layer" else full) / t / 1e9
                 for (_, _, useful, full), t in zip(rounds, times[name])]
        gflops = float(np.median(rates))
        print(f"{name:{width}s} {float(np.median(times[name])):8.1f} {float(np.median(speeds)):12.2f} "
              f"{gflops:8.1f} {100 * gflops / peak[dtype]:8.0f}%")
    if baseline_names:
        print("\nours faster by (median over rounds of baseline seconds / ours seconds); * = same dtype, "
              "the like-for-like comparison")
        print(f"{'baseline':{width}s} " + " ".join(f"{n.split(',')[0]:>18s}" for n in ours_names))
        for base in baseline_names:
            cells = []
            for ours in ours_names:
                ratio = float(np.median([b / t for b, t in zip(times[base], times[ours])]))
                mark = "*" if systems[base][0] == systems[ours][0] else " "
                cells.append(f"{ratio:17.2f}x" + mark)
            print(f"{base:{width}s} " + " ".join(f"{c:>18s}" for c in cells))
        ref = outputs[reference]
        print(f"\nfeatures of round 1 against {reference} (the reference): relative L2 error over all frames, "
              "worst utterance's max |diff| / max |feature|")
        for name in names:
            if name == reference:
                continue
            out = outputs[name]
            a, b = np.concatenate(ref), np.concatenate(out)
            rel = float(np.linalg.norm(b - a) / np.linalg.norm(a))
            worst = max(float(np.abs(x - y).max() / np.abs(x).max()) for x, y in zip(ref, out))
            print(f"  {name:{width}s} rel L2 {rel:.2e}   worst max-diff {worst:.2e}")
        print("  (the batched HF rows differ from 1-by-1 because HuBERT-base's front-end GroupNorm normalises "
              "over the zero padding too; layer-norm front ends, e.g. HuBERT-large, batch exactly)")
    fp32 = np.concatenate(outputs[ours_names[0]])
    bf16 = np.concatenate(outputs[ours_names[1]])
    rel = np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32)
    cos = float(np.mean(np.sum(fp32 * bf16, 1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))))
    agree = kmeans_agreement(fp32, bf16)
    print(f"ours bf16 vs ours fp32 features: relative L2 error {rel:.2e}, mean frame cosine {cos:.5f}; "
          f"same k-means (K=100) unit for {100 * agree:.1f}% of {len(fp32)} frames")
    if args.rss_counts:
        counts = [int(c) for c in args.rss_counts.split(",")]
        rss = measure_rss(work / "rss", counts, args.rss_max_batch_seconds)
        print(f"peak RSS of `speechunits features` (small HuBERT, 2 layers, 1-3 s utterances, "
              f"max_batch_seconds {args.rss_max_batch_seconds}): "
              + ", ".join(f"{c} utts {m:.0f} MiB" for c, m in rss.items()))
    print(f"bench wall time: {time.perf_counter() - bench_start:.0f} s")


if __name__ == "__main__":
    main()
