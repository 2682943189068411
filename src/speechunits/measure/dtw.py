"""Dynamic time warping of frame sequences: the batched kernel, a plain reference, frame distances.

The cost of aligning two sequences is the cumulative frame distance of the cheapest path with
moves (1,0), (0,1), (1,1), divided by the path's length. ABX (:mod:`speechunits.measure.abx`)
and MCD (:mod:`speechunits.measure.audio.mcd`) both use :func:`dtw_batch`.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

#: Frame distances: the angle ``arccos(cos) / pi`` of dense features, ``[u != v]`` of unit ids.
Distance = Literal["angular", "hamming"]


def dtw_batch(dist: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Path-length-normalised DTW cost of many padded distance matrices.

    Args:
        dist: float ``[P, N, M]`` frame distances; pair p uses ``dist[p, :n[p], :m[p]]``
            (padding is never read by the cells that matter).
        n, m: int64 ``[P]`` true lengths (>= 1).

    Returns:
        float ``[P]``: cost of the cheapest path from (0, 0) to (n-1, m-1) divided by its
        number of cells. Ties prefer the diagonal, then (i, j-1), then (i-1, j) (the same
        path a backtrack from the end would pick).

    The recursion runs over anti-diagonals k = i + j, stored skewed as ``[P, N]`` rows indexed
    by i, so every predecessor is a contiguous (shifted) slice of the previous two diagonals.
    """
    p, big_n, big_m = dist.shape
    num_diag = big_n + big_m - 1
    rows = torch.arange(big_n, device=dist.device)
    diags = torch.arange(num_diag, device=dist.device)
    cols = diags[:, None] - rows[None, :]  # [K, N]: j of cell (i, k - i)
    valid = (cols >= 0) & (cols < big_m)
    flat = (rows[None, :] * big_m + cols.clamp(0, big_m - 1)).reshape(-1)
    # [K, P, N]: diagonal-major so that each step reads and writes contiguous blocks.
    skew = dist.reshape(p, big_n * big_m)[:, flat].reshape(p, num_diag, big_n).transpose(0, 1).contiguous()
    skew.masked_fill_(~valid[:, None, :], math.inf)

    # Column 0 is a sentinel (cost inf, length 0) so that "row i - 1" is a plain shifted view.
    cost = torch.empty((num_diag, p, big_n + 1), dtype=dist.dtype, device=dist.device)
    length = torch.empty_like(cost)
    cost[:, :, 0] = math.inf
    length[:, :, 0] = 0.0
    cost[0, :, 1:] = skew[0]
    length[0, :, 1:] = 1.0
    no_diag = torch.full((p, big_n), math.inf, dtype=dist.dtype, device=dist.device)
    zeros = torch.zeros((p, big_n), dtype=dist.dtype, device=dist.device)
    for k in range(1, num_diag):
        left, left_len = cost[k - 1, :, 1:], length[k - 1, :, 1:]  # (i, j - 1)
        up, up_len = cost[k - 1, :, :-1], length[k - 1, :, :-1]  # (i - 1, j)
        if k >= 2:
            diag, diag_len = cost[k - 2, :, :-1], length[k - 2, :, :-1]  # (i - 1, j - 1)
        else:
            diag, diag_len = no_diag, zeros
        best = torch.minimum(diag, left)
        best_len = torch.where(left < diag, left_len, diag_len)
        best_len = torch.where(up < best, up_len, best_len)
        torch.minimum(best, up, out=best)
        torch.add(skew[k], best, out=cost[k, :, 1:])
        torch.add(best_len, 1.0, out=length[k, :, 1:])
    idx = torch.arange(p, device=dist.device)
    last_k = n + m - 2
    return cost[last_k, idx, n] / length[last_k, idx, n]


def dtw_reference(dist: np.ndarray) -> float:
    """Straightforward per-pair DTW (python loops) with backtracking; the test/bench baseline."""
    n, m = dist.shape
    cost = np.empty((n, m))
    cost[0, 0] = dist[0, 0]
    for i in range(1, n):
        cost[i, 0] = dist[i, 0] + cost[i - 1, 0]
    for j in range(1, m):
        cost[0, j] = dist[0, j] + cost[0, j - 1]
    for i in range(1, n):
        for j in range(1, m):
            cost[i, j] = dist[i, j] + min(cost[i - 1, j], cost[i - 1, j - 1], cost[i, j - 1])
    i, j, steps = n - 1, m - 1, 1
    while i > 0 and j > 0:
        diag, left, up = cost[i - 1, j - 1], cost[i, j - 1], cost[i - 1, j]
        if diag <= left and diag <= up:
            i, j = i - 1, j - 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        steps += 1
    steps += i + j
    return float(cost[n - 1, m - 1] / steps)


def angular_distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``arccos(cos(a_i, b_j)) / pi`` for ``a [N, D]``, ``b [M, D]`` (zero rows count as cos 0)."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.arccos(np.clip(an @ bn.T, -1.0, 1.0)) / math.pi
