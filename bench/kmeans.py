"""k-means and assignment benchmark: speechunits vs faiss.Kmeans vs sklearn MiniBatchKMeans, same run.

Data (cached under bench/out/kmeans/):
  * ``synthetic``: N x D frames around ``--blobs`` Gaussian blobs (centres N(0, 1), noise N(0, 1)).
  * ``real``: N frames of layer 2 of a random-initialised HuBERT (hidden 768, 2 layers, small conv
    front end) over the synthetic espeak corpus bench/out/synth_train (falls back to noisy tones),
    sampled with speechunits' own seeded reservoir.

Every fit runs in its own subprocess (clean peak RSS). Inertia is the mean squared distance per
frame of every method's centroids, evaluated by the same exact fp32 assignment. Baselines:
faiss.Kmeans(niter=20) and sklearn MiniBatchKMeans with fairseq learn_kmeans.py's settings
(k-means++, batch 10000, max_iter 100, tol 0, max_no_improvement 100, reassignment_ratio 0,
n_init 1; ``--sklearn-ninit 20`` for fairseq's published n_init).

    python bench/kmeans.py                       # both datasets, 200k x 768, K=500
    python bench/kmeans.py --data synthetic --frames 50000   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out" / "kmeans"
METHODS = ("faiss", "speechunits", "sklearn")


# ------------------------------------------------------------------------------ data

def synthetic(path: Path, n: int, dim: int, blobs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim), dtype=np.float32)
    labels = rng.integers(0, blobs, n)
    x = np.empty((n, dim), dtype=np.float32)
    step = 20_000
    for i in range(0, n, step):
        x[i:i + step] = centres[labels[i:i + step]] + rng.standard_normal((min(step, n - i), dim), dtype=np.float32)
    np.save(path, x)


def real_features(path: Path, n: int, dim: int, seed: int = 0) -> str:
    """Layer-2 features of a random-init HuBERT (hidden ``dim``) over the synthetic corpus."""
    import torch
    import transformers as tf

    from speechunits.corpus import open_corpus
    from speechunits.encoders import load_encoder
    from speechunits.features import iter_features
    from speechunits.quantize.fit import FrameReservoir

    model_dir = OUT / f"random_hubert_{dim}"
    if not (model_dir / "config.json").is_file():
        torch.manual_seed(seed)
        config = tf.HubertConfig(hidden_size=dim, num_hidden_layers=2, num_attention_heads=12,
                                 intermediate_size=2 * dim, conv_dim=(32,) * 7, feat_extract_norm="group",
                                 do_stable_layer_norm=False)
        tf.HubertModel(config).eval().save_pretrained(model_dir)
        tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=False,
                                    return_attention_mask=False).save_pretrained(model_dir)
    corpus_dirs = [d for d in (OUT.parent / "synth_train", OUT.parent / "synth_heldout") if d.is_dir()]
    source = "bench/out/synth_train + synth_heldout (espeak synthetic corpus)"
    if not corpus_dirs:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import write_tone  # noqa: E402 - test helper: deterministic noisy tones

        corpus_dirs = [OUT / "tones"]
        for i in range(200):
            write_tone(corpus_dirs[0] / f"t{i:03d}.wav", 25.0, freq=90 + 7 * i, seed=i)
        source = "noisy tones (tests.conftest.write_tone)"
    encoder = load_encoder(str(model_dir), device="cpu")
    reservoir = FrameReservoir(n, seed)
    for corpus_dir in corpus_dirs:
        for item in iter_features(encoder, open_corpus(str(corpus_dir)), [2], quiet=True):
            if item.features is not None:
                reservoir.add(item.features[2], str(item.utt.path))
    x = reservoir.sample()
    if x.shape[0] < n:
        raise SystemExit(f"only {x.shape[0]} frames in {corpus_dirs}, need {n}")
    np.save(path, x)
    return source


# ------------------------------------------------------------------------------ workers

def proc_status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (VmHWM is reset at exec, unlike ru_maxrss,
    which a child inherits from its parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    return proc_status_mb("VmRSS")


def worker(method: str, data: Path, k: int, seed: int, ninit: int) -> dict:
    import torch

    import faiss  # noqa: F401 - import cost outside the measurement
    from sklearn.cluster import MiniBatchKMeans

    from speechunits.quantize.assign import assign
    from speechunits.quantize.kmeans import fit_kmeans

    base = rss_mb()
    x = np.load(data)
    t0 = time.perf_counter()
    extra: dict = {}
    if method == "speechunits":
        result = fit_kmeans(x, k, iters=20, seed=seed, device="cpu")
        centroids = result.centroids.numpy()
        extra = {"iterations": result.iterations, "init_s": round(result.init_seconds, 2),
                 "lloyd_s": round(result.lloyd_seconds, 2)}
    elif method == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, verbose=False)
        km.train(x)
        centroids = km.centroids
    else:
        km = MiniBatchKMeans(n_clusters=k, init="k-means++", batch_size=10000, max_iter=100, tol=0.0,
                             max_no_improvement=100, reassignment_ratio=0.0, n_init=ninit, random_state=seed)
        km.fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
    wall = time.perf_counter() - t0
    peak = proc_status_mb("VmHWM")
    _, dist = assign(x, torch.from_numpy(np.ascontiguousarray(centroids)), return_distances=True)
    return {"method": method, "wall_s": wall, "inertia": float(dist.astype(np.float64).mean()),
            "rss_ratio": (peak - base) / (x.nbytes / 2**20), **extra}


def assign_bench(data: Path, centroids_from: Path | None, k: int) -> dict:
    """Frames/s of speechunits.assign (auto = bf16 + fp32 re-check, and fp32) vs faiss search and torch fp32."""
    import faiss
    import torch
    from sklearn.metrics import pairwise_distances_argmin

    from speechunits.quantize.assign import assign, prepare_centroids
    from speechunits.quantize.kmeans import fit_kmeans

    x = np.load(data)
    c = fit_kmeans(x[:20000], k, iters=3, seed=0, device="cpu").centroids
    n = x.shape[0]
    out: dict = {}

    def timed(fn) -> tuple[float, np.ndarray]:
        fn(x[:4096])
        t = time.perf_counter()
        labels = fn(x)
        return n / (time.perf_counter() - t), labels

    for prec in ("auto", "fp32"):
        pc = prepare_centroids(c, torch.device("cpu"), prec)  # type: ignore[arg-type]
        out[f"speechunits_{prec}"], labels = timed(lambda a: assign(a, pc))
        check = slice(0, 20000)
        out[f"speechunits_{prec}_mismatch_vs_sklearn"] = int(
            (labels[check] != pairwise_distances_argmin(x[check], c.numpy())).sum())
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(c.numpy())
    out["faiss_flat"], _ = timed(lambda a: index.search(a, 1)[1][:, 0])
    ct = c.T.contiguous()
    cn = (c * c).sum(1)

    def torch_fp32(a: np.ndarray) -> np.ndarray:
        res = []
        for i in range(0, a.shape[0], 16384):
            xb = torch.from_numpy(a[i:i + 16384])
            res.append(torch.addmm(cn, xb, ct, alpha=-2.0).argmin(1))
        return torch.cat(res).numpy()

    out["torch_fp32_matmul"], _ = timed(torch_fp32)
    return out


# ------------------------------------------------------------------------------ driver

#: Same for every method: OpenMP threads sleep instead of spinning at barriers. On this
#: shared, oversubscribed 2-core machine spinning makes torch ops ~6x slower.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def run_worker(args: list[str]) -> dict:
    env = {**os.environ, **WORKER_ENV}
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="both", choices=["synthetic", "real", "both"])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--blobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--sklearn-ninit", type=int, default=1)
    parser.add_argument("--no-assign", action="store_true", help="skip the assignment throughput part")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "assign":
            print(json.dumps(assign_bench(Path(args.worker[1]), None, args.k)))
        else:
            print(json.dumps(worker(kind, Path(args.worker[1]), args.k, args.seed, args.sklearn_ninit)))
        return

    OUT.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    print(f"# k-means bench: N={args.frames} D={args.dim} K={args.k}, {os.cpu_count()} CPUs, load avg {load:.1f} "
          "(other jobs share this machine: compare ratios, not seconds); workers run with "
          f"{' '.join(f'{k}={v}' for k, v in WORKER_ENV.items())}")
    datasets = ["synthetic", "real"] if args.data == "both" else [args.data]
    for name in datasets:
        suffix = "" if name == "real" else f"_b{args.blobs}"
        path = OUT / f"{name}_{args.frames}x{args.dim}{suffix}.npy"
        note = ""
        if not path.is_file():
            if name == "synthetic":
                synthetic(path, args.frames, args.dim, args.blobs, args.seed)
            else:
                note = real_features(path, args.frames, args.dim, args.seed)
                (path.with_suffix(".txt")).write_text(note)
        elif path.with_suffix(".txt").is_file():
            note = path.with_suffix(".txt").read_text()
        print(f"\n## {name}: {path.name} {note}")
        rows = {}
        for method in args.methods.split(","):
            extra = ["--k", str(args.k), "--seed", str(args.seed), "--sklearn-ninit", str(args.sklearn_ninit)]
            rows[method] = run_worker([method, str(path), *extra])
            r = rows[method]
            print(f"{method:12s} wall {r['wall_s']:7.2f} s  inertia/frame {r['inertia']:10.3f}  "
                  f"peak RSS {r['rss_ratio']:.2f}x sample  {json.dumps({k: v for k, v in r.items() if k in ('iterations', 'init_s', 'lloyd_s')})}",
                  flush=True)
        ours = rows.get("speechunits")
        if ours and "faiss" in rows:
            print(f"time  speechunits / faiss      = {ours['wall_s'] / rows['faiss']['wall_s']:.2f}  (target <= 1)")
        if ours and "sklearn" in rows:
            print(f"inertia speechunits / sklearn = {ours['inertia'] / rows['sklearn']['inertia']:.4f}  (target <= 1)")
            print(f"time  speechunits / sklearn    = {ours['wall_s'] / rows['sklearn']['wall_s']:.2f}")
        if ours and "faiss" in rows:
            print(f"inertia speechunits / faiss   = {ours['inertia'] / rows['faiss']['inertia']:.4f}")
        if not args.no_assign:
            a = run_worker(["assign", str(path), "--k", str(args.k)])
            print(f"assign frames/s: speechunits auto {a['speechunits_auto']:.0f} (mismatches vs sklearn "
                  f"{a['speechunits_auto_mismatch_vs_sklearn']}), fp32 {a['speechunits_fp32']:.0f} "
                  f"({a['speechunits_fp32_mismatch_vs_sklearn']}), faiss IndexFlatL2 {a['faiss_flat']:.0f}, "
                  f"torch fp32 matmul+argmin {a['torch_fp32_matmul']:.0f}; "
                  f"ratio auto/faiss {a['speechunits_auto'] / a['faiss_flat']:.2f}")


if __name__ == "__main__":
    main()
