"""Subsequence DTW of spoken queries against documents: each query is matched to the best stretch of
each document, many queries and all documents at once.

The recursion is dtw-python's ``asymmetric`` step pattern with an open beginning and end on the
document axis (what SUPERB's QbE runs per pair): query frame ``i`` advances by one at every step and
the document frame by 0, 1 or 2,

    C[0, j] = d[0, j]
    C[i, j] = d[i, j] + min(C[i-1, j], C[i-1, j-1], C[i-1, j-2])

and a query of ``n`` frames costs ``min_j C[n-1, j] / n`` in a document (the path may start and
end anywhere in it). Documents are laid end to end with two columns of infinite distance between
them, which no path can cross (a step moves at most two columns), so one row recursion over the
concatenation serves every document; the frame distances of a row are computed when the row is
reached, so memory is ``O(queries x document frames)``, not a full distance tensor.

Frame distances (``Distance``): ``cosine-exp`` (``exp(1 - cos) - 1``, SUPERB's default),
``cosine`` (``1 - cos``), ``euclidean``, and ``hamming`` (``[u != v]`` of unit ids). With
``minmax`` each row's distances are rescaled to [0, 1] within each document (SUPERB's
``minmax_norm``); it is meant for dense features: on 0/1 unit distances it would turn a document
where a query frame matches nothing into a perfect match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError

Distance = Literal["cosine-exp", "cosine", "euclidean", "hamming"]
DISTANCES: tuple[str, ...] = ("cosine-exp", "cosine", "euclidean", "hamming")

#: columns of infinite distance between two documents (a step moves at most two columns)
_GAP = 2


@dataclass
class DocumentIndex:
    """Documents laid end to end, ``_GAP`` blank columns after each.

    ``frames``: float ``[M, D]`` (dense) or int64 ``[M]`` (unit ids); ``document``: int64 ``[M]``,
    the document of each column (``-1`` on the gap columns); ``first``: int64 ``[n_docs]`` the
    first column of each document.
    """

    frames: torch.Tensor
    document: torch.Tensor
    first: torch.Tensor

    @property
    def n_docs(self) -> int:
        return int(self.first.numel())


@dataclass
class Matches:
    """Best match of every query in every document.

    ``cost``: float ``[Q, n_docs]``, the path cost divided by the query's length (``inf`` never
    happens: every document has at least one frame). ``start``/``end``: int64 ``[Q, n_docs]``, the
    document frames where that path begins and ends (inclusive).
    """

    cost: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor


def index_documents(documents: Sequence[np.ndarray | torch.Tensor], device: torch.device | str = "cpu") -> DocumentIndex:
    """Lay ``documents`` (each ``[T, D]`` features or ``[T]`` unit ids, T >= 1) end to end."""
    if not documents:
        raise SpeechUnitsError("no document to search")
    parts: list[torch.Tensor] = []
    owner: list[torch.Tensor] = []
    first: list[int] = []
    column = 0
    for number, doc in enumerate(documents):
        frames = torch.as_tensor(doc)
        if frames.shape[0] == 0:
            raise SpeechUnitsError(f"document {number} has no frame")
        gap = torch.zeros((_GAP, *frames.shape[1:]), dtype=frames.dtype)
        parts += [frames, gap]
        owner += [torch.full((frames.shape[0],), number, dtype=torch.int64), torch.full((_GAP,), -1, dtype=torch.int64)]
        first.append(column)
        column += frames.shape[0] + _GAP
    return DocumentIndex(torch.cat(parts).to(device), torch.cat(owner).to(device),
                         torch.tensor(first, dtype=torch.int64, device=device))


def _row_distances(query_rows: torch.Tensor, docs: torch.Tensor, distance: Distance) -> torch.Tensor:
    """``[Q, M]`` distances of one frame of each query (``[Q, D]`` or ``[Q]`` ids) to every column."""
    if distance == "hamming":
        return (query_rows[:, None] != docs[None, :]).to(torch.float32)
    if distance == "euclidean":
        return torch.cdist(query_rows, docs)
    cos = torch.nn.functional.normalize(query_rows, dim=-1, eps=1e-12) @ torch.nn.functional.normalize(docs, dim=-1, eps=1e-12).T
    dist = (1.0 - cos).clamp_min(0.0)
    return torch.expm1(dist) if distance == "cosine-exp" else dist


def _per_document(values: torch.Tensor, document: torch.Tensor, n_docs: int, reduce: str) -> torch.Tensor:
    """``[Q, n_docs]`` min or max of ``values [Q, M]`` over each document's columns (gaps ignored)."""
    q = values.shape[0]
    fill = math.inf if reduce == "amin" else -math.inf
    out = torch.full((q, n_docs + 1), fill, dtype=values.dtype, device=values.device)
    slot = torch.where(document < 0, n_docs, document).expand(q, -1)
    return out.scatter_reduce(1, slot, values, reduce=reduce, include_self=True)[:, :n_docs]


def subsequence_dtw(queries: Sequence[np.ndarray | torch.Tensor], docs: DocumentIndex, *,
                    distance: Distance = "cosine-exp", minmax: bool = True) -> Matches:
    """Best subsequence-DTW match of each query (``[n, D]`` features or ``[n]`` ids) in each document.

    All queries run together, one query frame per step (queries padded to the longest; a query's
    result is read at its own last frame). Raises :class:`SpeechUnitsError` for an empty query or a
    distance that does not fit the frames (ids need ``hamming``, features the others).
    """
    if distance not in DISTANCES:
        raise SpeechUnitsError(f"unknown distance {distance!r} (use one of {', '.join(DISTANCES)})")
    ids = docs.frames.dim() == 1
    if ids != (distance == "hamming"):
        raise SpeechUnitsError("unit ids are compared with the hamming distance, features with cosine-exp, "
                               f"cosine or euclidean (got {distance} for {'unit ids' if ids else 'features'})")
    device = docs.frames.device
    tensors = [torch.as_tensor(q).to(device) for q in queries]
    if not tensors:
        raise SpeechUnitsError("no query to search for")
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64, device=device)
    if int(lengths.min()) == 0:
        raise SpeechUnitsError(f"query {int(torch.argmin(lengths))} has no frame")
    padded = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)  # [Q, N(, D)]
    if not ids:
        padded = padded.to(docs.frames.dtype)
    q, n_max, m = padded.shape[0], int(lengths.max()), docs.frames.shape[0]
    gap = docs.document < 0
    columns = torch.arange(m, device=device)
    inf = torch.tensor(math.inf, device=device)

    cost = torch.empty((q, m), device=device)
    start = columns.expand(q, -1).clone()
    result_cost = torch.empty((q, docs.n_docs), device=device)
    result_end = torch.empty((q, docs.n_docs), dtype=torch.int64, device=device)
    result_start = torch.empty_like(result_end)
    for i in range(n_max):
        row = _row_distances(padded[:, i], docs.frames, distance)
        if minmax:
            low = _per_document(row, docs.document, docs.n_docs, "amin")
            high = _per_document(row, docs.document, docs.n_docs, "amax")
            slot = docs.document.clamp_min(0)
            row = (row - low[:, slot]) / (high - low).clamp_min(1e-9)[:, slot]
        row = row.masked_fill(gap, math.inf)
        if i == 0:
            cost = row
        else:
            stay = cost
            one = torch.cat([inf.expand(q, 1), cost[:, :-1]], dim=1)
            two = torch.cat([inf.expand(q, 2), cost[:, :-2]], dim=1)
            best, which = torch.stack([stay, one, two]).min(dim=0)
            source = (columns - which).clamp_min(0)
            start = start.gather(1, source)
            cost = row + best
        done = (lengths - 1 == i).nonzero().flatten()
        if done.numel():
            final = cost[done]
            low = _per_document(final, docs.document, docs.n_docs, "amin")  # [k, n_docs]
            slot = docs.document.clamp_min(0)
            at_min = (final == low[:, slot]) & ~gap
            # first column of each document reaching its minimum
            candidate = torch.where(at_min, columns.expand(len(done), -1).to(final.dtype), inf)
            end = _per_document(candidate, docs.document, docs.n_docs, "amin").to(torch.int64)
            result_cost[done] = low / lengths[done, None].to(final.dtype)
            result_end[done] = end - docs.first
            result_start[done] = start[done].gather(1, end) - docs.first
    return Matches(result_cost, result_start, result_end)
