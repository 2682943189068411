"""k-means: greedy k-means++ or random init, then exact Lloyd iterations.

* **Init.** Greedy k-means++ (sklearn's algorithm: several candidates per step, the one
  that lowers the potential most wins), run on a random subsample of ``max(30 K, 10000)``
  frames (sklearn's MiniBatchKMeans seeds on ``3 * batch_size`` frames too). The subsample
  is held in bf16 (where fast) so each of the K sequential steps is one ``[L, D] x [D, m]``
  matmul. That matmul is memory-bound (it streams the whole subsample for a handful of
  rows), so a few more candidates are nearly free: we try ``2 (2 + int(ln K))``, twice
  sklearn's count, which on 500 blobs lowered the final inertia from 796-808 to 785-793 per
  frame (bench/kmeans.py, 4 seeds; 3x: 782-783 but 0.5 s slower, as the step turns
  compute-bound) and let the subsample shrink from 40 K to 30 K frames.
* **Lloyd.** Assignment through :mod:`speechunits.quantize.nearest` (bf16 matmuls with an
  fp32 re-check of near ties, so labels are exact), centroid sums with ``index_add_``,
  empty clusters moved to the frames farthest from their centroid. Every iteration's labels
  are exact (unchecked bf16 labels flip on near ties and stall convergence on trained SSL
  features). Inertia per iteration is logged. Stops after
  ``iters`` iterations, when no label changes, or when an assignment or a centroid update
  improves the inertia by less than ``tol`` (relative, default 1e-3).
* Deterministic for the seed on CPU (one torch generator; no atomics).

Inertia here is always the *mean* squared distance per frame (sklearn's ``inertia_`` / N).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.nearest import (
    DEFAULT_CHUNK,
    Precision,
    _assign_chunk,
    as_tensor,
    bf16_supported,
    prepare_centroids,
)
from speechunits.device import resolve_device

log = logging.getLogger(__name__)

Init = Literal["kmeans++", "random"]
#: Frames per cluster used to seed k-means++ when ``init_sample`` is not given.
INIT_FRAMES_PER_CLUSTER = 30
#: Stop when a Lloyd iteration lowers the inertia by less than this fraction.
DEFAULT_TOL = 1e-3
#: Lower bound on the k-means++ subsample (when the data has that many frames).
INIT_MIN_FRAMES = 10_000


@dataclass
class KMeansResult:
    """Outcome of :func:`fit_kmeans`.

    Attributes:
        centroids: float32 ``[K, D]`` on the CPU.
        inertia: final mean squared distance per frame (exact fp32 distances).
        history: mean squared distance per frame after each Lloyd iteration's assignment.
        iterations: Lloyd iterations run.
        counts: int64 ``[K]`` frames per cluster in the final assignment.
        init_seconds / lloyd_seconds: wall time of the two phases.
    """

    centroids: torch.Tensor
    inertia: float
    history: list[float] = field(default_factory=list)
    iterations: int = 0
    counts: torch.Tensor | None = None
    init_seconds: float = 0.0
    lloyd_seconds: float = 0.0


def _generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def default_init_sample(n: int, k: int) -> int:
    """Frames used to seed k-means++: ``max(30 K, 10000)``, at most ``n``."""
    return min(n, max(INIT_FRAMES_PER_CLUSTER * k, INIT_MIN_FRAMES))


def kmeans_plus_plus(
    x: torch.Tensor,
    k: int,
    *,
    gen: torch.Generator,
    n_local_trials: int | None = None,
    low_precision: bool = True,
) -> torch.Tensor:
    """Greedy k-means++ seeds (sklearn's algorithm) chosen among the rows of ``x``.

    Args:
        x: float32 ``[m, D]`` frames (any device); should be roughly centred.
        k: number of seeds (``<= m``).
        gen: CPU generator (all random draws come from it, in a fixed order).
        n_local_trials: candidates per step (default ``2 (2 + int(ln k))``, module docstring).
        low_precision: compute candidate distances with bf16 matmuls.

    Returns:
        float32 ``[k, D]`` seeds (rows of ``x``).
    """
    m = x.shape[0]
    trials = n_local_trials or 2 * (2 + int(math.log(k)))
    dev = x.device
    xm = x.to(torch.bfloat16) if low_precision else x
    sq = (x * x).sum(1)  # [m]
    chosen = torch.empty(k, dtype=torch.int64)
    first = int(torch.randint(m, (1,), generator=gen))
    chosen[0] = first

    def dist_to(idx: torch.Tensor) -> torch.Tensor:
        """Squared distances ``[len(idx), m]`` from rows ``idx`` to every row."""
        dots = torch.mm(xm.index_select(0, idx), xm.T).float()
        return dots.mul_(-2.0).add_(sq.unsqueeze(0)).add_(sq[idx].unsqueeze(1)).clamp_min_(0.0)

    closest = dist_to(torch.tensor([first], device=dev))[0]
    potential = float(closest.double().sum())
    for c in range(1, k):
        cum = torch.cumsum(closest.double(), 0).cpu()
        draws = torch.rand(trials, generator=gen, dtype=torch.float64) * cum[-1]
        cand = torch.searchsorted(cum, draws).clamp_(max=m - 1)
        d = dist_to(cand.to(dev))
        torch.minimum(d, closest.unsqueeze(0), out=d)
        pots = d.sum(1)
        best = int(torch.argmin(pots))
        closest = d[best]
        potential = float(pots[best])
        chosen[c] = cand[best]
    log.debug("k-means++: %d seeds, potential per frame %.4g", k, potential / m)
    return x[chosen.to(dev)].float()


def _lloyd_step(
    x: torch.Tensor,
    centroids: torch.Tensor,
    precision: Precision,
    chunk_size: int,
    exact: bool,
    recheck: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    """One assignment pass: labels ``[N]``, distances ``[N]``, centred sums ``[K, D]``,
    counts ``[K]``, the centroid mean used for centring, the mean squared distance, and
    the mean squared distance of the same labels to their cluster means."""
    dev = centroids.device
    pc = prepare_centroids(centroids, dev, precision)
    k, dim = centroids.shape
    n = x.shape[0]
    labels = torch.empty(n, dtype=torch.int64, device=dev)
    dist = torch.empty(n, dtype=torch.float32, device=dev)
    sums = torch.zeros(k, dim, dtype=torch.float32, device=dev)
    sq_total = torch.zeros((), dtype=torch.float64, device=dev)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        xc = x[start:stop].to(dev, non_blocking=True) - pc.mean
        lab, d, _ = _assign_chunk(xc, pc, recheck=recheck, exact=exact)
        labels[start:stop] = lab
        dist[start:stop] = d
        sums.index_add_(0, lab, xc)
        # Per-row fp32 norms, summed in float64 (one fp32 sum over the chunk loses ~1e-4).
        sq_total += torch.linalg.vector_norm(xc, dim=1).double().square().sum()
    counts = torch.bincount(labels, minlength=k)
    # Inertia of these labels from sufficient statistics (exact up to fp32 sums, whatever
    # the precision of the distances): sum |x|^2 - 2 sum_k c_k.S_k + sum_k n_k |c_k|^2.
    c64 = pc.centred.double()
    s64 = sums.double()
    inertia = float(sq_total - 2.0 * (c64 * s64).sum() + (counts.double() * (c64 * c64).sum(1)).sum()) / max(n, 1)
    # Inertia of the same labels once each centroid moves to its cluster mean.
    moved = float(sq_total - ((s64 * s64).sum(1) / counts.clamp_min(1).double()).sum()) / max(n, 1)
    return labels, dist, sums, counts, pc.mean, inertia, moved


def _repair_empty(
    x: torch.Tensor, labels: torch.Tensor, dist: torch.Tensor, sums: torch.Tensor,
    counts: torch.Tensor, mean: torch.Tensor,
) -> int:
    """Move empty clusters to the frames farthest from their centroid (in place).

    Each chosen frame leaves its old cluster (sums/counts updated) and becomes the only
    member of the empty one. Returns the number of repaired clusters.
    """
    empty = torch.nonzero(counts == 0).squeeze(1)
    if empty.numel() == 0:
        return 0
    far = torch.topk(dist, min(int(empty.numel()), dist.numel())).indices
    for e, i in zip(empty.tolist(), far.tolist()):
        old = int(labels[i])
        if counts[old] <= 1:
            continue
        row = x[i].to(sums.device) - mean
        sums[old] -= row
        counts[old] -= 1
        sums[e] = row
        counts[e] = 1
        labels[i] = e
        dist[i] = 0.0
    return int(empty.numel())


def fit_kmeans(
    x: torch.Tensor | np.ndarray,
    k: int,
    *,
    iters: int = 20,
    init: Init = "kmeans++",
    seed: int = 0,
    device: str | torch.device | None = "auto",
    tol: float = DEFAULT_TOL,
    init_sample: int | None = None,
    precision: Precision = "auto",
    chunk_size: int = DEFAULT_CHUNK,
) -> KMeansResult:
    """k-means on the rows of ``x``.

    Args:
        x: float32 ``[N, D]`` frames (CPU numpy/tensor; moved to ``device`` chunk by chunk).
        k: number of clusters (``1 <= k <= N``).
        iters: maximum Lloyd iterations (0: init only).
        init: ``"kmeans++"`` (alias ``"k-means++"``; greedy, on a subsample) or ``"random"``
            (k distinct frames).
        seed: all random choices derive from it; same seed, same result on CPU.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tol: stop when an iteration lowers the inertia by less than this fraction (0: only
            when no label changes).
        init_sample: frames used to seed k-means++ (default :func:`default_init_sample`).
        precision: assignment matmul precision (labels are exact either way).
        chunk_size: frames per assignment matmul.

    Returns:
        :class:`KMeansResult` (inertia = mean squared distance per frame).
    """
    xt = as_tensor(x)
    n = xt.shape[0]
    if k < 1:
        raise SpeechUnitsError(f"k must be >= 1, got {k}")
    if n < k:
        raise SpeechUnitsError(f"k-means: K={k} clusters need at least {k} frames, got {n}")
    if init == "k-means++":
        init = "kmeans++"
    if init not in ("kmeans++", "random"):
        raise SpeechUnitsError(f"--init must be 'kmeans++' or 'random', got {init!r}")
    if iters < 0:
        raise SpeechUnitsError(f"--iters must be >= 0, got {iters}")
    for start in range(0, n, chunk_size):  # chunked: a full-size bool mask would cost 1/4 of x
        if not torch.isfinite(xt[start:start + chunk_size]).all():
            raise SpeechUnitsError("k-means: features contain NaN or Inf")
    dev = resolve_device(device)
    gen = _generator(seed)
    low = precision == "bf16" or (precision == "auto" and bf16_supported(dev))
    prec: Precision = "bf16" if low else "fp32"

    t0 = time.perf_counter()
    if init == "random":
        idx = torch.randperm(n, generator=gen)[:k].sort().values
        centroids = xt[idx].to(dev)
    else:
        m = min(n, init_sample or default_init_sample(n, k))
        if m < k:
            raise SpeechUnitsError(f"init_sample={m} must be >= K={k}")
        idx = torch.randperm(n, generator=gen)[:m].sort().values if m < n else torch.arange(n)
        sample = xt[idx].to(dev)
        centre = sample.mean(0)
        sample -= centre
        centroids = kmeans_plus_plus(sample, k, gen=gen, low_precision=low)
        if m < n and iters > 0:
            # Coarse-to-fine: converge on the seeding sample first (m/N of the cost per
            # iteration), so the full-data iterations start close to a minimum.
            centroids = lloyd(sample, centroids, iters=iters, tol=tol, precision=prec, device=dev,
                              chunk_size=chunk_size, final_pass=False,
                              name="k-means (seeding sample)").centroids.to(dev)
        centroids = centroids + centre
        del sample
    init_seconds = time.perf_counter() - t0
    log.info("k-means init (%s, K=%d, N=%d, D=%d): %.2f s", init, k, n, xt.shape[1], init_seconds)

    result = lloyd(xt, centroids, iters=iters, tol=tol, precision=prec, device=dev, chunk_size=chunk_size)
    result.init_seconds = init_seconds
    return result


def lloyd(
    x: torch.Tensor,
    centroids: torch.Tensor,
    *,
    iters: int = 20,
    tol: float = DEFAULT_TOL,
    precision: Precision = "auto",
    device: str | torch.device | None = "auto",
    chunk_size: int = DEFAULT_CHUNK,
    final_pass: bool = True,
    name: str = "k-means",
) -> KMeansResult:
    """Lloyd iterations from ``centroids`` ``[K, D]`` on frames ``x`` ``[N, D]`` (float32).

    Each iteration assigns every frame (bf16 matmuls with the fp32 re-check of near ties,
    so labels are exact), logs the inertia of that assignment (from sufficient statistics,
    so exact up to fp32 sums), repairs empty clusters and moves each centroid to the mean
    of its frames. Stops after ``iters``, when no label changed, or when the assignment or
    the centroid update lowered the inertia by less than ``tol`` (relative); the returned
    inertia is then that of the last labels with the returned centroids (their means).
    Stopped by ``iters``, a final pass measures exact fp32 distances to the returned centroids.
    A final assignment gives the returned inertia and counts (``final_pass=False``: the
    returned inertia/counts are those of the last iteration's assignment).
    """
    xt = as_tensor(x)
    dev = resolve_device(device)
    prec: Precision = precision
    if prec == "auto":
        prec = "bf16" if bf16_supported(dev) else "fp32"
    centroids = centroids.to(dev, torch.float32)
    n = xt.shape[0]
    history: list[float] = []
    prev_labels: torch.Tensor | None = None
    t1 = time.perf_counter()
    it = 0
    converged = False
    moved = float("nan")
    for it in range(1, iters + 1):
        # Inner iterations: bf16 matmuls with the fp32 re-check of near ties, so labels are
        # exact and the inertia cannot rise between iterations. Without the re-check, features
        # whose norms are large next to the cluster gaps (trained SSL layers) flipped thousands
        # of labels per iteration, never converged and ended ~6 % above the exact optimum.
        labels, dist, sums, counts, mean, inertia, moved = _lloyd_step(xt, centroids, prec, chunk_size,
                                                                       exact=False, recheck=True)
        history.append(inertia)
        changed = n if prev_labels is None else int((labels != prev_labels).sum())
        repaired = _repair_empty(xt, labels, dist, sums, counts, mean)
        centroids = sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype) + mean
        log.log(logging.INFO if final_pass else logging.DEBUG, "%s iter %d: inertia %.6g per frame, %d labels changed%s", name, it, inertia, changed,
                 f", {repaired} empty clusters repaired" if repaired else "")
        prev_labels = labels
        if repaired:
            continue
        # Converged when the labels settled, when this assignment gained less than tol over
        # the last one, or when moving the centroids to their means gains less than tol (the
        # next assignment can then only polish: it saves the pass that would confirm it).
        if (changed == 0 or inertia - moved < tol * inertia
                or (len(history) > 1 and history[-2] - inertia < tol * history[-2])):
            converged = True
            break
    if converged:
        # Labels settled: the returned centroids are the means of the last assignment,
        # whose inertia the sufficient statistics give without another pass.
        inertia = moved
    elif final_pass or not history:
        # Final E-step: exact fp32 distances for the returned centroids (labels from the
        # bf16 stage: a near tie going the other way changes the inertia by < 1e-6).
        _, dist, _, counts, _, _, _ = _lloyd_step(xt, centroids, prec, chunk_size, exact=True, recheck=False)
        inertia = float(dist.double().sum()) / n
    lloyd_seconds = time.perf_counter() - t1
    log.log(logging.INFO if final_pass else logging.DEBUG, "%s done: %d iterations, inertia %.6g per frame, %.2f s", name, it, inertia, lloyd_seconds)
    return KMeansResult(
        centroids=centroids.float().cpu().contiguous(),
        inertia=inertia,
        history=history,
        iterations=it if iters else 0,
        counts=counts.cpu(),
        lloyd_seconds=lloyd_seconds,
    )
