"""Subsequence DTW of spoken queries against documents: each query is matched to the best stretch of
each document, many queries and all documents at once.

The recursion is dtw-python's ``asymmetric`` step pattern with an open beginning and end on the
document axis (what SUPERB's QbE runs per pair): query frame ``i`` advances by one at every step and
the document frame by 0, 1 or 2,

    C[0, j] = d[0, j]
    C[i, j] = d[i, j] + min(C[i-1, j], C[i-1, j-1], C[i-1, j-2])

and a query of ``n`` frames costs ``min_j C[n-1, j] / n`` in a document (the path may start and
end anywhere in it). Documents are laid end to end and a step never reaches back over a document's
first column, so one row recursion over the concatenation serves every document; the frame
distances of a row are computed when the row is reached, so memory is ``O(queries x document
frames)``, not a full distance tensor. Queries are run longest first and leave the batch when their
last frame is done.

Per-document minima and maxima of a row go through numpy's ``reduceat`` on CPU (torch has no
segment reduction that is not several times slower there) and ``scatter_reduce`` on other devices.

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


@dataclass
class DocumentIndex:
    """Documents laid end to end.

    ``frames``: float ``[M, D]`` (dense; L2-normalised copies are made for cosine distances) or int64
    ``[M]`` (unit ids); ``first``/``length``: int64 ``[n_docs]``, each document's first column and
    frame count; ``owner``: int64 ``[M]``, the document of each column.
    """

    frames: torch.Tensor
    first: torch.Tensor
    length: torch.Tensor
    owner: torch.Tensor

    @property
    def n_docs(self) -> int:
        return int(self.first.numel())


@dataclass
class Matches:
    """Best match of every query in every document.

    ``cost``: float ``[Q, n_docs]``, the path cost divided by the query's length. ``start``/``end``:
    int64 ``[Q, n_docs]``, the document frames where that path begins and ends (inclusive);
    ``start`` is ``None`` unless asked for (``locate=True``).
    """

    cost: torch.Tensor
    start: torch.Tensor | None
    end: torch.Tensor


def index_documents(documents: Sequence[np.ndarray | torch.Tensor], device: torch.device | str = "cpu") -> DocumentIndex:
    """Lay ``documents`` (each ``[T, D]`` features or ``[T]`` unit ids, T >= 1) end to end."""
    if not documents:
        raise SpeechUnitsError("no document to search")
    tensors = [torch.as_tensor(doc) for doc in documents]
    for number, frames in enumerate(tensors):
        if frames.shape[0] == 0:
            raise SpeechUnitsError(f"document {number} has no frame")
    length = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    first = torch.cumsum(length, 0) - length
    owner = torch.repeat_interleave(torch.arange(len(tensors)), length)
    return DocumentIndex(torch.cat(tensors).to(device), first.to(device), length.to(device), owner.to(device))


#: numpy's reduceat for per-document min / max on CPU (False: the torch path other devices take)
NUMPY_SEGMENTS_ON_CPU = True


class _Segments:
    """Per-document min / max of ``[k, M]`` rows and their expansion back to ``[k, M]``."""

    def __init__(self, docs: DocumentIndex) -> None:
        self.docs = docs
        self.cpu = docs.frames.device.type == "cpu" and NUMPY_SEGMENTS_ON_CPU
        if self.cpu:
            self.first_np = docs.first.numpy()
            self.length_np = docs.length.numpy()

    def reduce(self, values: torch.Tensor, how: str) -> torch.Tensor:
        """``[k, n_docs]`` minimum (``how="min"``) or maximum of each document's columns."""
        if self.cpu:
            ufunc = np.minimum if how == "min" else np.maximum
            return torch.from_numpy(ufunc.reduceat(values.numpy(), self.first_np, axis=1))
        k = values.shape[0]
        fill = math.inf if how == "min" else -math.inf
        out = torch.full((k, self.docs.n_docs), fill, dtype=values.dtype, device=values.device)
        return out.scatter_reduce(1, self.docs.owner.expand(k, -1), values, reduce="amin" if how == "min" else "amax")

    def expand(self, per_doc: torch.Tensor) -> torch.Tensor:
        """``[k, n_docs]`` -> ``[k, M]``, each document's value on its columns."""
        if self.cpu:
            return torch.from_numpy(np.repeat(per_doc.numpy(), self.length_np, axis=1))
        return per_doc[:, self.docs.owner]


def _prepare(frames: torch.Tensor, distance: Distance) -> torch.Tensor:
    if distance in ("cosine", "cosine-exp"):
        return torch.nn.functional.normalize(frames.to(torch.float32), dim=-1, eps=1e-12)
    return frames if distance == "hamming" else frames.to(torch.float32)


def _row_distances(query_rows: torch.Tensor, docs: torch.Tensor, distance: Distance) -> torch.Tensor:
    """``[k, M]`` distances of one frame of each query (``[k, D]`` or ``[k]`` ids, prepared) to every column."""
    if distance == "hamming":
        return (query_rows[:, None] != docs[None, :]).to(torch.float32)
    if distance == "euclidean":
        return torch.cdist(query_rows, docs)
    dist = torch.rsub(query_rows @ docs.T, 1.0).clamp_min_(0.0)
    return torch.expm1_(dist) if distance == "cosine-exp" else dist


def _steps(prev: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``min(C[j], C[j-1], C[j-2])`` of the previous row, never reaching back into another document
    (``first``: each document's first column; ``second``: the second column of documents with two or more)."""
    best = prev.clone()
    torch.minimum(best[:, 1:], prev[:, :-1], out=best[:, 1:])
    best[:, first] = prev[:, first]
    keep = best[:, second]
    torch.minimum(best[:, 2:], prev[:, :-2], out=best[:, 2:])
    best[:, first] = prev[:, first]
    best[:, second] = keep
    return best


def _located_steps(prev: torch.Tensor, start: torch.Tensor, first: torch.Tensor,
                   second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_steps` and the start column of the path each cell continues (ties: the longer stay)."""
    inf = torch.full_like(prev[:, :2], math.inf)
    one = torch.cat([inf[:, :1], prev[:, :-1]], dim=1)
    two = torch.cat([inf, prev[:, :-2]], dim=1)
    one[:, first] = math.inf
    two[:, first] = math.inf
    two[:, second] = math.inf
    one_start = torch.cat([start[:, :1], start[:, :-1]], dim=1)
    two_start = torch.cat([start[:, :2], start[:, :-2]], dim=1)
    take_one = one < prev
    best = torch.where(take_one, one, prev)
    best_start = torch.where(take_one, one_start, start)
    take_two = two < best
    return torch.where(take_two, two, best), torch.where(take_two, two_start, best_start)


def subsequence_dtw(queries: Sequence[np.ndarray | torch.Tensor], docs: DocumentIndex, *,
                    distance: Distance = "cosine-exp", minmax: bool = True, locate: bool = False) -> Matches:
    """Best subsequence-DTW match of each query (``[n, D]`` features or ``[n]`` ids) in each document.

    All queries run together, one query frame per step. ``locate`` also tracks where each best path
    starts (slower). Raises :class:`SpeechUnitsError` for an empty query or a distance that does not
    fit the frames (ids need ``hamming``, features the others).
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
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.int64)
    if int(lengths.min()) == 0:
        raise SpeechUnitsError(f"query {int(torch.argmin(lengths))} has no frame")
    order = torch.argsort(lengths, descending=True, stable=True)  # active queries are always a prefix
    sorted_lengths = lengths[order].tolist()
    padded = _prepare(torch.nn.utils.rnn.pad_sequence([tensors[i] for i in order.tolist()], batch_first=True), distance)
    doc_frames = _prepare(docs.frames, distance)
    segments = _Segments(docs)
    first, second = docs.first, docs.first[docs.length >= 2] + 1
    columns = torch.arange(doc_frames.shape[0], device=device)
    q = len(tensors)
    cost = start = torch.empty(0)
    out_cost = torch.empty((q, docs.n_docs), device=device)
    out_end = torch.empty((q, docs.n_docs), dtype=torch.int64, device=device)
    out_start = torch.empty_like(out_end) if locate else None
    active = q  # queries still running: a prefix, since they are sorted longest first
    for i in range(sorted_lengths[0]):
        row = _row_distances(padded[:active, i], doc_frames, distance)
        if minmax:
            low = segments.reduce(row, "min")
            scale = (segments.reduce(row, "max") - low).clamp_min_(1e-9)
            row = (row - segments.expand(low)).div_(segments.expand(scale))
        if i == 0:
            cost = row
            start = columns.expand(active, -1).to(torch.float32) if locate else start
        elif locate:
            best, start = _located_steps(cost[:active], start[:active], first, second)
            cost = row.add_(best)
        else:
            cost = row.add_(_steps(cost[:active], first, second))
        k0, k1 = active, active  # the queries whose last frame this was: the tail of the running prefix
        while k0 > 0 and sorted_lengths[k0 - 1] == i + 1:
            k0 -= 1
        if k0 < k1:
            final = cost[k0:k1]
            low = segments.reduce(final, "min")
            at_min = final == segments.expand(low)
            # first column of each document reaching its minimum
            candidate = torch.where(at_min, columns.to(final.dtype).expand(k1 - k0, -1), math.inf)
            end = segments.reduce(candidate, "min").to(torch.int64)
            target = order[k0:k1].to(device)
            out_cost[target] = low / (i + 1)
            out_end[target] = end - first
            if out_start is not None:
                out_start[target] = start[k0:k1].gather(1, end).to(torch.int64) - first
        active = k0  # they leave the batch
    return Matches(out_cost, out_start, out_end)
