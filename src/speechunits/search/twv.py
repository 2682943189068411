"""Term-weighted value (NIST STD 2006, the QbE metric of QUESST and SUPERB) and mean average precision
of document-level detections.

Each query (term) t with ``N_true(t) >= 1`` documents containing it is scored; a detection is a
(query, document) score at or above a threshold theta, and

    TWV(theta) = 1 - mean_t [ P_miss(t, theta) + beta * P_fa(t, theta) ]
    P_miss = 1 - hits / N_true,   P_fa = false alarms / (N_docs - N_true)
    beta = (C_fa / C_miss) * (1 / P_target - 1)

Writing TWV as a sum over detections (a hit adds ``1 / N_true(t)``, a false alarm subtracts
``beta / (N_docs - N_true(t))``, all over the number of terms) makes the maximum over one global
threshold (MTWV) a maximum of prefix sums of the detections sorted by score: exact, in one sort.
Detecting nothing scores 0, so MTWV >= 0. Queries that occur in no document are left out, as NIST
leaves them out.

Defaults: ``P_target = 0.0008``, ``C_miss = 100``, ``C_fa = 1`` (``beta = 12.49``), the settings of
QUESST's ``score-TWV-Cnxe.sh``, which hands its scorer the effective prior ``C_miss P_target /
(C_miss P_target + C_fa (1 - P_target)) = 0.0741289`` (``beta = (1 - prior) / prior``). MAP is free
of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechunits.errors import SpeechUnitsError

P_TARGET = 0.0008
COST_MISS = 100.0
COST_FA = 1.0


def beta_from(p_target: float = P_TARGET, cost_miss: float = COST_MISS, cost_fa: float = COST_FA) -> float:
    """``(C_fa / C_miss) * (1 / P_target - 1)``."""
    if not 0.0 < p_target < 1.0:
        raise SpeechUnitsError(f"P_target must lie in (0, 1), got {p_target}")
    if cost_miss <= 0 or cost_fa <= 0:
        raise SpeechUnitsError(f"costs must be positive, got C_miss {cost_miss}, C_fa {cost_fa}")
    return (cost_fa / cost_miss) * (1.0 / p_target - 1.0)


@dataclass(frozen=True)
class TermWeightedValue:
    """TWV at one threshold: the value, the threshold (``inf``: nothing detected) and the mean miss
    and false-alarm probabilities over the scored terms."""

    value: float
    threshold: float
    p_miss: float
    p_fa: float
    terms: int


def _check(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    if scores.ndim != 2 or scores.shape != truth.shape:
        raise SpeechUnitsError(f"scores {scores.shape} and truth {truth.shape} must be the same [terms, documents] matrix")
    if np.isnan(scores).any():
        raise SpeechUnitsError("scores contain NaN")
    scored = truth.any(axis=1)
    if not scored.any():
        raise SpeechUnitsError("no query occurs in any document: nothing to score")
    return scores[scored], truth[scored]


def _weights(truth: np.ndarray, beta: float) -> np.ndarray:
    n_docs = truth.shape[1]
    n_true = truth.sum(axis=1, keepdims=True).astype(np.float64)
    n_false = np.maximum(n_docs - n_true, 1.0)  # a term in every document has no false alarm to weigh
    return np.where(truth, 1.0 / n_true, -beta / n_false)


def _summary(detected: np.ndarray, truth: np.ndarray, beta: float, threshold: float) -> TermWeightedValue:
    n_true = truth.sum(axis=1)
    n_false = np.maximum(truth.shape[1] - n_true, 1)
    p_miss = 1.0 - (detected & truth).sum(axis=1) / n_true
    p_fa = (detected & ~truth).sum(axis=1) / n_false
    value = 1.0 - float(np.mean(p_miss + beta * p_fa))
    return TermWeightedValue(value, threshold, float(p_miss.mean()), float(p_fa.mean()), int(truth.shape[0]))


def twv_at(scores: np.ndarray, truth: np.ndarray, threshold: float, beta: float | None = None) -> TermWeightedValue:
    """TWV of the detections ``scores >= threshold`` (``scores``, ``truth``: ``[terms, documents]``)."""
    scores, truth = _check(scores, truth)
    beta = beta_from() if beta is None else beta
    return _summary(scores >= threshold, truth, beta, threshold)


def maximum_twv(scores: np.ndarray, truth: np.ndarray, beta: float | None = None) -> TermWeightedValue:
    """MTWV: TWV at the one global threshold that maximises it (ties in score are one detection step)."""
    scores, truth = _check(scores, truth)
    beta = beta_from() if beta is None else beta
    flat = scores.ravel()
    order = np.argsort(-flat, kind="stable")
    gains = np.cumsum(_weights(truth, beta).ravel()[order])
    sorted_scores = flat[order]
    group_end = np.append(sorted_scores[1:] != sorted_scores[:-1], True)  # last detection of each tie group
    totals = np.where(group_end, gains, -np.inf)
    best = int(np.argmax(totals))
    if totals[best] <= 0.0:
        return _summary(np.zeros_like(truth), truth, beta, float("inf"))
    threshold = float(sorted_scores[best])
    return _summary(scores >= threshold, truth, beta, threshold)


def average_precisions(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Average precision of each scored term's ranking of the documents (``[scored terms]``).

    Tied scores form one step (precision counted at the end of the tie group), as scikit-learn's
    ``average_precision_score`` counts them.
    """
    scores, truth = _check(scores, truth)
    out = np.empty(scores.shape[0])
    for row, (s, t) in enumerate(zip(scores, truth)):
        order = np.argsort(-s, kind="stable")
        s_sorted, t_sorted = s[order], t[order]
        ends = np.append(s_sorted[1:] != s_sorted[:-1], True)
        hits = np.cumsum(t_sorted)[ends]
        ranks = (np.flatnonzero(ends) + 1).astype(np.float64)
        new_hits = np.diff(np.concatenate([[0], hits]))
        out[row] = float(np.sum(new_hits * hits / ranks) / t.sum())
    return out
