"""Query-by-example search over a features directory or a unit store: SUPERB's QbE recipe, batched.

:func:`search` scores every query against every document with :mod:`speechunits.search.dtw`:

1. dense features are standardised with the mean and standard deviation of all query and document
   frames (SUPERB's ``feature_normalization``; :func:`speechunits.features.moments.frame_moments`);
2. queries shorter than ``min_query_frames`` (SUPERB: 5) are not searched: they score 0 everywhere;
3. the raw score of a (query, document) pair is minus the subsequence-DTW cost, and each query's
   scores are standardised over the documents (z-norm), so one threshold serves every query.

Documents are searched in chunks of at most ``chunk_frames`` frames and queries in batches sized to
the chunk, so memory stays bounded on large collections.
:func:`evaluate` scores the result against a :class:`~speechunits.search.quesst.GroundTruth`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.search.dtw import Distance, index_documents, subsequence_dtw
from speechunits.search.cnxe import cnxe, min_cnxe, prior_of_beta
from speechunits.search.quesst import GroundTruth
from speechunits.search.twv import average_precisions, beta_from, maximum_twv, twv_at

log = logging.getLogger(__name__)

#: SUPERB's shortest searched query (frames)
MIN_QUERY_FRAMES = 5
#: z-normalised score above which a detection is "YES" in the stdlist (SUPERB's choice)
YES_THRESHOLD = 2.0
#: document frames searched at once
CHUNK_FRAMES = 400_000
#: query x document-frame cells held per step
_CELLS = 6_000_000


@dataclass
class SearchResult:
    """Scores of ``queries x documents`` (``[Q, D]`` arrays).

    ``score``: per-query z-normalised ``-cost`` (0 for short queries); ``cost``: subsequence-DTW
    cost (``nan`` for short queries); ``start_s``/``end_s``: the best match's time span in the
    document (``start_s`` is ``nan`` unless searched with ``locate``).
    """

    queries: list[str]
    documents: list[str]
    score: np.ndarray
    cost: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    short_queries: list[str] = field(default_factory=list)

    def ranked(self, query: int) -> list[tuple[str, float]]:
        """``(document, score)`` of one query, best first."""
        order = np.argsort(-self.score[query], kind="stable")
        return [(self.documents[j], float(self.score[query, j])) for j in order]


def centroid_frames(frames: Mapping[str, np.ndarray], centroids: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Unit ids ``[T]`` -> their codebook centroids ``[T, D]`` (float32): units searched with the
    distances of the vectors they stand for instead of 0/1.

    Raises:
        SpeechUnitsError: an id outside the codebook's ``K`` rows.
    """
    table = np.asarray(centroids, dtype=np.float32)
    out = {}
    for utt, ids in frames.items():
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
            raise SpeechUnitsError(f"{utt}: unit id {int(ids.max())} is outside the codebook's {table.shape[0]} units")
        out[utt] = table[ids]
    return out


def _chunks(documents: Sequence[str], frames: Mapping[str, np.ndarray], limit: int) -> list[tuple[int, list[str]]]:
    """``(first column, document ids)`` of consecutive chunks of at most ``limit`` frames (one
    longer document is a chunk of its own)."""
    chunks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    size = first = 0
    for col, doc in enumerate(documents):
        length = len(frames[doc])
        if current and size + length > limit:
            chunks.append((first, current))
            current, size, first = [], 0, col
        current.append(doc)
        size += length
    chunks.append((first, current))
    return chunks


def search(frames: Mapping[str, np.ndarray], queries: Sequence[str], documents: Sequence[str], *,
           frame_rate: float, distance: Distance | None = None, minmax: bool | None = None,
           standardise: bool = True, min_query_frames: int = MIN_QUERY_FRAMES, locate: bool = False,
           device: torch.device | str = "cpu", chunk_frames: int = CHUNK_FRAMES) -> SearchResult:
    """Score every query against every document.

    Args:
        frames: ``{id: [T, D] features or [T] unit ids}`` holding every query and document.
        distance: frame distance (default: ``cosine-exp`` for features, ``hamming``, the only one
            that fits them, for unit ids).
        minmax: rescale each query frame's distances within each document (default: on for
            features, off for unit ids).
        standardise: standardise dense features over all their frames first.
        locate: find where each best match starts (``start_s``; otherwise ``nan``); the end is
            always found.

    Raises:
        SpeechUnitsError: no query or document, an id missing from ``frames``, a document without
            frames, or every query shorter than ``min_query_frames``.
    """
    if not queries or not documents:
        raise SpeechUnitsError(f"nothing to search: {len(queries)} queries, {len(documents)} documents")
    missing = [i for i in (*queries, *documents) if i not in frames]
    if missing:
        raise SpeechUnitsError(f"{len(missing)} ids have no frames (e.g. {', '.join(missing[:3])})")
    ids = frames[queries[0]].ndim == 1
    minmax = (not ids) if minmax is None else minmax
    distance = distance or ("hamming" if ids else "cosine-exp")
    mean = std = None
    if standardise and not ids:
        from speechunits.features.moments import frame_moments

        moments = frame_moments((frames[i] for i in (*queries, *documents)), floor=1e-9)
        mean, std = (m.numpy() for m in moments)

    def load(utt: str) -> torch.Tensor:
        f = np.asarray(frames[utt])
        if ids:
            return torch.from_numpy(np.array(f, dtype=np.int64))
        if mean is not None:
            f = (f - mean) / std
        return torch.from_numpy(np.array(f, dtype=np.float32))  # a copy: memory-mapped frames are read-only

    searched = [q for q in queries if len(frames[q]) >= min_query_frames]
    short = [q for q in queries if len(frames[q]) < min_query_frames]
    if not searched:
        raise SpeechUnitsError(f"every query is shorter than {min_query_frames} frames")
    query_tensors = [load(q) for q in searched]
    n_q, n_d = len(queries), len(documents)
    cost = np.full((n_q, n_d), np.nan)
    start = np.zeros((n_q, n_d), dtype=np.int64)
    end = np.zeros((n_q, n_d), dtype=np.int64)
    row_of = {q: k for k, q in enumerate(queries)}
    rows = np.array([row_of[q] for q in searched])
    for col, chunk in _chunks(documents, frames, chunk_frames):
        index = index_documents([load(d) for d in chunk], device=device)
        batch = max(1, _CELLS // int(index.frames.shape[0]))
        for b in range(0, len(query_tensors), batch):
            matches = subsequence_dtw(query_tensors[b:b + batch], index, distance=distance, minmax=minmax,
                                      locate=locate)
            target = rows[b:b + batch]
            cost[target, col:col + len(chunk)] = matches.cost.cpu().numpy()
            if matches.start is not None:
                start[target, col:col + len(chunk)] = matches.start.cpu().numpy()
            end[target, col:col + len(chunk)] = matches.end.cpu().numpy()
    score = np.zeros((n_q, n_d))
    raw = -cost[rows]
    spread = np.maximum(raw.std(axis=1, keepdims=True), 1e-9)
    score[rows] = (raw - raw.mean(axis=1, keepdims=True)) / spread
    if short:
        log.warning("%d of %d queries are shorter than %d frames and score 0 everywhere (e.g. %s)",
                    len(short), n_q, min_query_frames, ", ".join(short[:3]))
    start_s = start / frame_rate if locate else np.full(start.shape, np.nan)
    return SearchResult(list(queries), list(documents), score, cost, start_s, (end + 1) / frame_rate, short)


def evaluate(result: SearchResult, truth: GroundTruth, *, beta: float | None = None,
             yes_threshold: float = YES_THRESHOLD) -> dict[str, object]:
    """MTWV (with its threshold, P_miss and P_fa), actual TWV at ``yes_threshold``, MAP, and the scores'
    Cnxe and minCnxe at the effective prior ``beta`` stands for (:mod:`speechunits.search.cnxe`).

    The truth is taken over the result's queries and documents; queries with no occurrence among
    them are left out of every figure (counted in ``queries_without_occurrence``).
    """
    beta = beta_from() if beta is None else beta
    position = {d: j for j, d in enumerate(result.documents)}
    truth_matrix = np.zeros(result.score.shape, dtype=bool)
    for i, query in enumerate(result.queries):
        for doc in truth.hits.get(query, ()):
            if doc in position:
                truth_matrix[i, position[doc]] = True
    scored = truth_matrix.any(axis=1)
    if not scored.any():
        raise SpeechUnitsError("no query occurs in any searched document: nothing to score "
                               "(do the ids of the frames match the ground truth's?)")
    best = maximum_twv(result.score, truth_matrix, beta)
    actual = twv_at(result.score, truth_matrix, yes_threshold, beta)
    ap = average_precisions(result.score, truth_matrix)
    prior = prior_of_beta(beta)
    trials, targets = result.score[scored], truth_matrix[scored]
    return {
        "mtwv": best.value, "mtwv_threshold": best.threshold, "mtwv_p_miss": best.p_miss, "mtwv_p_fa": best.p_fa,
        "atwv": actual.value, "atwv_threshold": yes_threshold,
        "map": float(ap.mean()),
        "cnxe": cnxe(trials, targets, prior), "min_cnxe": min_cnxe(trials, targets, prior),
        "beta": beta, "effective_prior": prior,
        "queries": len(result.queries), "queries_scored": int(scored.sum()),
        "queries_without_occurrence": int((~scored).sum()), "short_queries": len(result.short_queries),
        "documents": len(result.documents), "occurrences": int(truth_matrix.sum()),
    }
