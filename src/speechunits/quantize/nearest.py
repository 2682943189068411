"""Nearest-centroid assignment by squared L2 through chunked matmuls (CPU or GPU).

``||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2``: one matmul per chunk of frames. In ``"bf16"``
mode the matmul runs in bfloat16 (about 3.5x faster than fp32 on AVX512-BF16 CPUs and on
GPUs) and every row whose winner is not certain under a rigorous bound on the bf16 error
is re-checked in fp32 against the centroids that could still win, so the labels equal
an fp32 nearest-centroid search (and sklearn's ``predict``) up to exact fp32 ties.

**Whole distances from one matmul.** Rows and centroids are centred on the centroid mean
and augmented with a few columns so that the bf16 matmul (fp32 accumulation inside)
returns the full squared distance, not just ``x.c``::

    [x~, 1, 1, 1, s1(x), s2(x), s3(x)] . [-2 c~, s1(c), s2(c), s3(c), 1, 1, 1]
        = ||x||^2 + ||c||^2 - 2 x~.c~

where ``x~ = bf16(x)`` and ``s1 + s2 + s3`` splits an fp32 squared norm into three bf16
numbers (exact to ~2^-24). The matmul's single bf16 rounding of its output then costs
``u |d|`` of the *distance* (small for the winners that matter) instead of ``u |x.c|`` of
a dot product, which on trained-SSL-like features (large norms, small gaps) made the
error bound ~30 % looser and needed an extra pass over ``[n, K]`` to evaluate.

Error bound (per row; ``dx = x - x~``, ``dc = c - c~``, ``u = 2^-8``, ``e = 2^-23``)::

    |d~ - d| <= 2 (|x| |dc| + |dx| |c~|)                       # bf16 inputs (Cauchy-Schwarz)
              + (D + 8) e (2 |x~| |c~| + |x|^2 + |c|^2)          # fp32 accumulation
              + 2^-24 (|x|^2 + |c|^2)                             # the norm splits
              + u (1 + 4u) |d~|                                   # bf16 output rounding

with ``|dx| <= u |x|`` and the centroid terms maximised over the codebook. A row is
certain when the runner-up's approximate distance exceeds the winner's by more than the
two entries' bounds together; otherwise every centroid within that window is re-checked
with direct fp32 differences.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import torch

from speechunits.device import resolve_device
from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16"]

#: bf16 unit roundoff: 8 significant bits, round to nearest -> relative error <= 2^-8.
_BF16_U = 2.0**-8
#: Relative slack for fp32 accumulation over the feature dimension (per element).
_FP32_EPS = 2.0**-23
#: Frames per chunk: keeps the [chunk, K] distance block small (8 MB at K=500, cache friendly).
DEFAULT_CHUNK = 4096


def as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float32 torch view of ``x`` ``[N, D]`` (no copy for float32 C-contiguous arrays)."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    elif isinstance(x, torch.Tensor):
        t = x if x.dtype == torch.float32 else x.float()
    else:
        raise SpeechUnitsError(f"features must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.dim() != 2:
        raise SpeechUnitsError(f"features must be 2-D [frames, dim], got shape {tuple(t.shape)}")
    return t


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matmuls are fast here (CUDA with bf16, or a CPU with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        caps = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # pragma: no cover - old torch
        return False
    if caps not in ("AVX512", "AMX"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            flags = f.read(1 << 16)
    except OSError:  # pragma: no cover - non-Linux
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class PreparedCentroids:
    """Centroids laid out for fast repeated assignment.

    Attributes:
        centroids: float32 ``[K, D]`` on ``device``.
        mean: float32 ``[D]``; rows and centroids are centred on it (distances unchanged).
        centred: float32 ``[K, D]`` centred centroids.
        sq_norms: float32 ``[K]`` squared norms of ``centred``.
        augmented: bf16 ``[D + 8, K]`` (bf16 mode): ``[-2 c~, s1, s2, s3, 1, 1, 1, 0]`` per
            centroid, transposed for the matmul (module docstring); None in fp32 mode.
        max_norm: largest ``|c|`` or ``|c~|`` over the codebook (bf16 mode).
        max_round_err: largest ``|c - c~|`` over the codebook (bf16 mode).
    """

    centroids: torch.Tensor
    mean: torch.Tensor
    centred: torch.Tensor
    sq_norms: torch.Tensor
    augmented: torch.Tensor | None = None
    max_norm: float = 0.0
    max_round_err: float = 0.0

    @property
    def device(self) -> torch.device:
        return self.centroids.device


#: Extra columns of the augmented matmul (3 ones, 3 norm parts, 2 zeros of padding).
_AUG = 8


def _split3(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three bf16 tensors whose fp32 sum equals float32 ``v`` to ~2^-24 relative."""
    hi = v.to(torch.bfloat16)
    rest = v - hi.float()
    mid = rest.to(torch.bfloat16)
    lo = (rest - mid.float()).to(torch.bfloat16)
    return hi, mid, lo


def prepare_centroids(centroids: torch.Tensor, device: torch.device, precision: Precision = "auto") -> PreparedCentroids:
    """Centre, take norms and (bf16 mode) build the augmented bf16 matrix once. ``centroids``: ``[K, D]``."""
    c = centroids.detach().to(device=device, dtype=torch.float32).contiguous()
    if c.dim() != 2 or c.shape[0] == 0:
        raise SpeechUnitsError(f"centroids must be a non-empty [K, D] matrix, got shape {tuple(c.shape)}")
    mean = c.mean(0)
    centred = c - mean
    sq_norms = (centred * centred).sum(1)
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    if not use_bf16:
        return PreparedCentroids(c, mean, centred, sq_norms)
    k, dim = c.shape
    low = centred.to(torch.bfloat16)
    aug = torch.zeros(k, dim + _AUG, dtype=torch.bfloat16, device=device)
    aug[:, :dim] = low * -2  # exact: a power of two
    for j, part in enumerate(_split3(sq_norms)):
        aug[:, dim + j] = part
    aug[:, dim + 3:dim + 6] = 1
    low_f = low.float()
    max_norm = float(torch.maximum(low_f.norm(dim=1), centred.norm(dim=1)).max())
    max_round_err = float((centred - low_f).norm(dim=1).max())
    return PreparedCentroids(c, mean, centred, sq_norms, aug.T.contiguous(), max_norm, max_round_err)


def _assign_chunk(xc: torch.Tensor, pc: PreparedCentroids, recheck: bool = True,
                  exact: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Labels ``[n]`` int64, squared distances ``[n]`` float32 and the re-checked row count.

    ``xc``: float32 ``[n, D]`` rows already centred on ``pc.mean``, on ``pc.device``.
    ``recheck`` (bf16 mode): re-check uncertain rows in fp32 so labels are exact; without
    it labels may differ from fp32 on near ties.
    ``exact``: fp32 distances to the chosen centroid (otherwise bf16-mode distances carry
    the bf16 error, relative ~4e-3).
    """
    x_sq = torch.linalg.vector_norm(xc, dim=1).square_()
    if pc.augmented is None:
        dist = torch.addmm(pc.sq_norms.unsqueeze(0), xc, pc.centred.T, beta=1.0, alpha=-2.0)
        best, labels = dist.min(1)
        return labels, best.add_(x_sq).clamp_min_(0.0), 0

    n = xc.shape[0]
    ones = torch.ones((), dtype=torch.bfloat16, device=xc.device).expand(n)
    zeros = torch.zeros((), dtype=torch.bfloat16, device=xc.device).expand(n)
    extra = torch.stack([ones, ones, ones, *_split3(x_sq), zeros, zeros], 1)
    with _fp32_accumulation(xc.device):
        approx = torch.cat([xc.to(torch.bfloat16), extra], 1) @ pc.augmented  # bf16 [n, K] distances
    unsure_count = 0
    if not recheck or approx.shape[1] == 1:  # one centroid: nothing to re-check, every row is label 0
        best, labels = approx.min(1)
        dist = best.float()
    else:
        top2, top2_idx = torch.topk(approx, 2, dim=1, largest=False, sorted=True)
        top2 = top2.float()
        labels = top2_idx[:, 0].clone()
        dist = top2[:, 0].clone()
        window = _certainty_window(x_sq, dist, pc)
        unsure = torch.nonzero(top2[:, 1] - dist <= window).squeeze(1)
        unsure_count = int(unsure.numel())
        if unsure_count:
            sub = approx.index_select(0, unsure).float() <= (dist[unsure] + window[unsure]).unsqueeze(1)
            rows, cols = torch.nonzero(sub, as_tuple=True)
            # Direct differences: accurate however far the rows are from the origin.
            pair = torch.index_select(xc, 0, unsure[rows]).sub_(torch.index_select(pc.centred, 0, cols))
            exact_block = torch.full(sub.shape, float("inf"), device=xc.device)
            exact_block[rows, cols] = torch.linalg.vector_norm(pair, dim=1).square_()
            best, arg = exact_block.min(1)
            labels[unsure] = arg
            dist[unsure] = best
    if exact:
        dist = exact_distances(xc, pc.centred, labels)
    return labels, dist.clamp_min_(0.0), unsure_count


@contextmanager
def _fp32_accumulation(device: torch.device) -> Iterator[None]:
    """On CUDA, forbid cuBLAS's reduced-precision (bf16) split-K reductions for the enclosed
    bf16 matmuls: the error bound assumes fp32 accumulation. (CPU kernels accumulate in fp32.)"""
    if device.type != "cuda":
        yield
        return
    flags = torch.backends.cuda.matmul
    saved = flags.allow_bf16_reduced_precision_reduction
    flags.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        flags.allow_bf16_reduced_precision_reduction = saved


def _certainty_window(x_sq: torch.Tensor, best: torch.Tensor, pc: PreparedCentroids) -> torch.Tensor:
    """Per row, how far above the best approximate distance ``best`` ``[n]`` another
    centroid's approximate distance must lie to be certainly farther (module docstring).

    With ``E = A + u' |d~|`` per entry (``A`` the row's input/accumulation terms) and
    ``|d~_j| <= |best| + (d~_j - best)``, a competitor can win only if
    ``d~_j - best <= (2 A + 2 u' |best|) / (1 - u')``.
    """
    dim = pc.centred.shape[1]
    x_norm = x_sq.sqrt()
    cmax, cmax_sq = pc.max_norm, pc.max_norm * pc.max_norm
    inputs = 2.0 * x_norm * (pc.max_round_err + _BF16_U * cmax)
    accumulation = (dim + _AUG) * _FP32_EPS * (2.0 * (1.0 + _BF16_U) * x_norm * cmax + x_sq + cmax_sq)
    splits = 2.0**-24 * (x_sq + cmax_sq)
    a = inputs + accumulation + splits
    u = _BF16_U * (1.0 + 4.0 * _BF16_U)
    return (2.0 * a + 2.0 * u * best.abs()) / (1.0 - u)


def exact_distances(xc: torch.Tensor, centred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """fp32 ``||x_i - c_{labels_i}||^2`` ``[n]`` for centred rows ``xc`` ``[n, D]`` (direct differences)."""
    diff = torch.index_select(centred, 0, labels).sub_(xc)
    return torch.linalg.vector_norm(diff, dim=1).square_()


def assign(
    features: np.ndarray | torch.Tensor,
    centroids: torch.Tensor | PreparedCentroids,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    precision: Precision = "auto",
    device: str | torch.device | None = None,
    return_distances: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid for every frame.

    Args:
        features: ``[N, D]`` float frames (numpy or torch, any device).
        centroids: ``[K, D]`` float32 tensor, or :func:`prepare_centroids` output.
        chunk_size: frames per matmul.
        precision: ``"bf16"`` (fast, fp32 re-check of uncertain rows), ``"fp32"``,
            or ``"auto"`` (bf16 where the hardware supports it).
        device: compute device (default: the centroids' device, or auto).
        return_distances: also return exact fp32 squared L2 distances ``[N]``.

    Returns:
        int64 labels ``[N]`` (and float32 distances ``[N]``).
    """
    labels_t, dist_t = assign_tensor(
        features, centroids, chunk_size=chunk_size, precision=precision, device=device,
        exact=return_distances,
    )
    labels = labels_t.cpu().numpy()
    if return_distances:
        return labels, dist_t.cpu().numpy()
    return labels


def assign_tensor(
    features: np.ndarray | torch.Tensor,
    centroids: torch.Tensor | PreparedCentroids,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    precision: Precision = "auto",
    device: str | torch.device | None = None,
    exact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`assign` but returns torch ``(labels int64 [N], sq_dist float32 [N])`` on the compute device.

    ``exact``: recompute every distance in fp32 (otherwise bf16-mode distances of
    confidently assigned rows are approximate; labels are exact either way).
    """
    x = as_tensor(features)
    if isinstance(centroids, PreparedCentroids):
        pc = centroids
    else:
        dev = resolve_device(device if device is not None else (centroids.device if centroids.is_cuda else "auto"))
        pc = prepare_centroids(centroids, dev, precision)
    if x.shape[1] != pc.centroids.shape[1]:
        raise SpeechUnitsError(
            f"feature dim {x.shape[1]} does not match codebook dim {pc.centroids.shape[1]}"
        )
    if chunk_size < 1:
        raise SpeechUnitsError(f"chunk_size must be >= 1, got {chunk_size}")
    n = x.shape[0]
    labels = torch.empty(n, dtype=torch.int64, device=pc.device)
    dist = torch.empty(n, dtype=torch.float32, device=pc.device)
    rechecked = 0
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        xc = x[start:stop].to(pc.device, non_blocking=True).float() - pc.mean
        lab, d, r = _assign_chunk(xc, pc, exact=exact)
        labels[start:stop] = lab
        dist[start:stop] = d
        rechecked += r
    if pc.augmented is not None and n:
        log.debug("assign: %d of %d rows re-checked in fp32 (%.2f%%)", rechecked, n, 100.0 * rechecked / n)
    return labels, dist
