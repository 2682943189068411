"""k-means benchmark: speechunits against every k-means a user of this field would run, same run, same data.

Methods (each fit in its own subprocess, same frames, same K, same seed):

* ``speechunits``: :func:`speechunits.quantize.kmeans.fit_kmeans` with the library defaults of
  ``speechunits fit`` (k-means++ on a subsample, at most 20 Lloyd iterations, default tol).
* ``fairseq``: sklearn ``MiniBatchKMeans`` with fairseq ``examples/hubert/simple_kmeans/
  learn_kmeans.py``'s settings exactly: ``n_clusters=K, init="k-means++", max_iter=100,
  batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20, reassignment_ratio=0.0,
  compute_labels=False, init_size=None, verbose=0`` (plus ``random_state=seed``).
  ``n_init=20`` repeats the k-means++ initialisation 20 times and keeps the best.
* ``fairseq-ninit1`` (extra, labelled): the same with ``n_init=1``.
* ``sklearn-kmeans``: sklearn ``KMeans(n_clusters=K, init="k-means++", n_init=1,
  algorithm="lloyd")`` with its defaults otherwise (``max_iter=300``, ``tol=1e-4``): full
  Lloyd to convergence. ``n_init=1`` is what ``n_init="auto"`` means for k-means++ init.
* ``faiss-niter25``: ``faiss.Kmeans(D, K, seed=seed)`` with faiss's defaults (``niter=25``,
  at most 256 training points per centroid: a larger sample is subsampled, as a user gets it).
* ``faiss-niter100``: the same with ``niter=100``.

Inertia: the mean squared Euclidean distance of each frame to its nearest centroid, computed
for every method by the same code (torch float64, exact, not our assignment code) on the same
frames the methods were fitted on. Printed: one table, rows = methods, columns = wall seconds,
inertia per frame, and ours / that row for both; then assignment throughput (speechunits' exact
assignment vs faiss ``IndexFlatL2`` and a plain torch matmul + argmin).

Data (fixed in this script, not chosen on the results; cached under bench/out/kmeans/):

* ``blobs``: N x D Gaussian frames around ``--blobs`` centres (centres N(0, 1), noise N(0, 1)).
* ``hubert-random``: random-init HuBERT layer 2 features on espeak speech: N frames of layer 2
  of a randomly initialised HuBERT (hidden D, 2 blocks, 32-channel conv front end; no trained
  weights exist on this machine) over the espeak-ng synthetic corpora given by ``--corpus``
  (default bench/out/synth_train and bench/out/synth_heldout, which ``bench/pretrain.py`` or
  ``speechunits synth`` writes), sampled with speechunits' seeded reservoir. A missing corpus
  is an error; nothing else is substituted.

Headline command (about 20-30 minutes on 2 idle cores; the fairseq row with n_init=20 and
sklearn's full Lloyd dominate)::

    speechunits synth bench/out/synth_train --minutes 62 --speakers 8 --seed 0      # once, if missing
    speechunits synth bench/out/synth_heldout --minutes 12 --speakers 6 --seed 1    # once, if missing
    python bench/kmeans.py

Quick check that everything runs (a minute or two)::

    python bench/kmeans.py --data blobs --frames 20000 --dim 64 --k 50 --no-assign
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
DEFAULT_CORPORA = (OUT.parent / "synth_train", OUT.parent / "synth_heldout")
#: Every method, in the order of the table; ours first.
METHODS = ("speechunits", "fairseq", "fairseq-ninit1", "sklearn-kmeans", "faiss-niter25", "faiss-niter100")
LABELS = {
    "speechunits": "speechunits fit_kmeans (defaults: k-means++, <= 20 Lloyd iters)",
    "fairseq": "fairseq learn_kmeans.py: MiniBatchKMeans, n_init=20",
    "fairseq-ninit1": "extra: the same MiniBatchKMeans with n_init=1",
    "sklearn-kmeans": "sklearn KMeans, Lloyd to convergence (tol 1e-4, n_init=1)",
    "faiss-niter25": "faiss.Kmeans defaults (niter=25, <= 256 pts/centroid)",
    "faiss-niter100": "faiss.Kmeans niter=100 (<= 256 pts/centroid)",
}
HUBERT_LAYER = 2


# ------------------------------------------------------------------------------ data

def blobs(path: Path, n: int, dim: int, centres_count: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((centres_count, dim), dtype=np.float32)
    labels = rng.integers(0, centres_count, n)
    x = np.empty((n, dim), dtype=np.float32)
    step = 20_000
    for i in range(0, n, step):
        x[i:i + step] = centres[labels[i:i + step]] + rng.standard_normal((min(step, n - i), dim), dtype=np.float32)
    np.save(path, x)
    return f"Gaussian blobs: {centres_count} centres N(0, 1), noise N(0, 1), seed {seed}"


def hubert_random_features(path: Path, n: int, dim: int, corpora: list[Path], seed: int = 0) -> str:
    """Layer-2 features of a random-init HuBERT (hidden ``dim``) over the espeak corpora ``corpora``."""
    missing = [str(c) for c in corpora if not (c / "manifest.tsv").is_file()]
    if missing:
        raise SystemExit(f"bench/kmeans.py: corpus not found: {', '.join(missing)} (no manifest.tsv). Write it with "
                         "`speechunits synth DIR --minutes M --speakers S --seed N` (see this script's docstring) "
                         "or pass --corpus; this bench substitutes no other data.")
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
    encoder = load_encoder(str(model_dir), device="cpu")
    reservoir = FrameReservoir(n, seed)
    for corpus_dir in corpora:
        for item in iter_features(encoder, open_corpus(str(corpus_dir)), [HUBERT_LAYER], quiet=True):
            if item.features is not None:
                reservoir.add(item.features[HUBERT_LAYER], str(item.utt.path))
    x = reservoir.sample()
    if x.shape[0] < n:
        raise SystemExit(f"bench/kmeans.py: only {x.shape[0]} frames in {', '.join(map(str, corpora))}, need {n}: "
                         "give more audio (--corpus) or fewer --frames")
    np.save(path, x)
    return (f"random-init HuBERT layer {HUBERT_LAYER} features (hidden {dim}, 2 blocks, no trained weights) "
            f"on espeak-ng speech from {', '.join(str(c) for c in corpora)}")


# ------------------------------------------------------------------------------ workers

def proc_status_mb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (VmHWM is reset at exec, unlike ru_maxrss,
    which a child inherits from its parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def inertia(x: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> float:
    """Mean over frames of the squared distance to the nearest centroid, exactly, in float64."""
    import torch

    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float64))
    c_sq = (c * c).sum(1)
    total = 0.0
    for i in range(0, x.shape[0], chunk):
        xb = torch.from_numpy(x[i:i + chunk].astype(np.float64))
        d = (xb * xb).sum(1, keepdim=True) - 2.0 * xb @ c.T + c_sq
        total += float(d.min(1).values.clamp_min(0).sum())
    return total / x.shape[0]


def fit(method: str, x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, dict]:
    """Fit ``method`` on ``x``; returns (centroids [K, D], extra facts)."""
    if method == "speechunits":
        from speechunits.quantize.kmeans import fit_kmeans

        result = fit_kmeans(x, k, seed=seed, device="cpu")
        return result.centroids.numpy(), {"iterations": result.iterations, "init_s": round(result.init_seconds, 2),
                                          "lloyd_s": round(result.lloyd_seconds, 2)}
    if method.startswith("fairseq"):
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(n_clusters=k, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                             max_no_improvement=100, n_init=1 if method == "fairseq-ninit1" else 20,
                             reassignment_ratio=0.0, compute_labels=False, init_size=None, verbose=0,
                             random_state=seed)
        km.fit(x)
        return km.cluster_centers_.astype(np.float32), {"steps": int(km.n_steps_)}
    if method == "sklearn-kmeans":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, init="k-means++", n_init=1, algorithm="lloyd", random_state=seed)
        km.fit(x)
        return km.cluster_centers_.astype(np.float32), {"iterations": int(km.n_iter_)}
    if method.startswith("faiss"):
        import faiss

        kwargs = {"niter": 100} if method == "faiss-niter100" else {}
        km = faiss.Kmeans(x.shape[1], k, seed=seed, verbose=False, **kwargs)
        km.train(x)
        return np.asarray(km.centroids), {"niter": km.cp.niter}
    raise SystemExit(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def worker(method: str, data: Path, k: int, seed: int) -> dict:
    import faiss  # noqa: F401 - import costs outside the measurement
    import sklearn.cluster  # noqa: F401
    import torch  # noqa: F401

    import speechunits.quantize.kmeans  # noqa: F401

    base = proc_status_mb("VmRSS")
    x = np.load(data)
    t0 = time.perf_counter()
    centroids, extra = fit(method, x, k, seed)
    wall = time.perf_counter() - t0
    peak = proc_status_mb("VmHWM")
    return {"method": method, "wall_s": wall, "inertia": inertia(x, centroids),
            "rss_ratio": (peak - base) / (x.nbytes / 2**20), **extra}


def assign_bench(data: Path, k: int) -> dict:
    """Frames/s of speechunits.assign (auto = bf16 + fp32 re-check, and fp32) vs faiss search and torch fp32."""
    import faiss
    import torch
    from sklearn.metrics import pairwise_distances_argmin

    from speechunits.quantize.nearest import assign, prepare_centroids
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

#: Same for every method: OpenMP threads sleep instead of spinning at barriers. On a shared,
#: oversubscribed machine spinning makes torch ops ~6x slower.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def run_worker(args: list[str]) -> dict:
    env = {**os.environ, **WORKER_ENV}
    proc = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def dataset(name: str, args: argparse.Namespace) -> tuple[Path, str]:
    """The cached frames file of ``name`` (made if missing) and its description."""
    if name == "blobs":
        path = OUT / f"blobs_{args.frames}x{args.dim}_c{args.blobs}_s{args.seed}.npy"
    else:
        tag = "_".join(c.name for c in args.corpus)
        path = OUT / f"hubert-random-l{HUBERT_LAYER}_{args.frames}x{args.dim}_s{args.seed}_{tag}.npy"
    note_path = path.with_suffix(".txt")
    if path.is_file() and note_path.is_file():
        return path, note_path.read_text()
    if name == "blobs":
        note = blobs(path, args.frames, args.dim, args.blobs, args.seed)
    else:
        note = hubert_random_features(path, args.frames, args.dim, list(args.corpus), args.seed)
    note_path.write_text(note)
    return path, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="both", choices=["blobs", "hubert-random", "both"])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--blobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, action="append", default=None,
                        help="espeak corpus for hubert-random (repeatable; default bench/out/synth_train and "
                        "bench/out/synth_heldout)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--no-assign", action="store_true", help="skip the assignment throughput part")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "assign":
            print(json.dumps(assign_bench(Path(args.worker[1]), args.k)))
        else:
            print(json.dumps(worker(kind, Path(args.worker[1]), args.k, args.seed)))
        return
    args.corpus = [c.resolve() for c in (args.corpus or DEFAULT_CORPORA)]
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")

    OUT.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"# k-means bench: N={args.frames} D={args.dim} K={args.k} seed {args.seed}, {os.cpu_count()} CPUs, "
          f"load avg {os.getloadavg()[0]:.1f}; each fit in its own subprocess with "
          f"{' '.join(f'{k}={v}' for k, v in WORKER_ENV.items())}; inertia = mean squared distance to the nearest "
          "centroid, float64, same code for every method")
    for name in (["blobs", "hubert-random"] if args.data == "both" else [args.data]):
        path, note = dataset(name, args)
        print(f"\n## {name}: {note} ({path.name})")
        rows = {}
        for method in methods:
            rows[method] = run_worker([method, str(path), "--k", str(args.k), "--seed", str(args.seed)])
            r = rows[method]
            facts = {k: v for k, v in r.items() if k not in ("method", "wall_s", "inertia", "rss_ratio")}
            print(f"  done {method:15s} {r['wall_s']:8.2f} s  inertia {r['inertia']:.4f}  "
                  f"peak RSS {r['rss_ratio']:.2f}x the data  {json.dumps(facts)}", flush=True)
        ours = rows.get("speechunits")
        width = max(len(LABELS[m]) for m in methods) + 2
        print(f"\n{'method':{width}s} {'seconds':>9s} {'inertia/frame':>14s} {'ours/row time':>14s} "
              f"{'ours/row inertia':>17s}")
        for method in methods:
            r = rows[method]
            t_ratio = f"{ours['wall_s'] / r['wall_s']:.3f}" if ours else "-"
            i_ratio = f"{ours['inertia'] / r['inertia']:.4f}" if ours else "-"
            print(f"{LABELS[method]:{width}s} {r['wall_s']:9.2f} {r['inertia']:14.4f} {t_ratio:>14s} {i_ratio:>17s}")
        print("(ours/row < 1: ours is faster / reaches a lower inertia than that row)")
        if not args.no_assign:
            a = run_worker(["assign", str(path), "--k", str(args.k)])
            print(f"assign frames/s: speechunits auto {a['speechunits_auto']:.0f} (mismatches vs sklearn "
                  f"{a['speechunits_auto_mismatch_vs_sklearn']}), fp32 {a['speechunits_fp32']:.0f} "
                  f"({a['speechunits_fp32_mismatch_vs_sklearn']}), faiss IndexFlatL2 {a['faiss_flat']:.0f}, "
                  f"torch fp32 matmul+argmin {a['torch_fp32_matmul']:.0f}; "
                  f"ratio auto/faiss {a['speechunits_auto'] / a['faiss_flat']:.2f}")
    print(f"\nbench wall time {time.perf_counter() - start:.0f} s; load avg now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
