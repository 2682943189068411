"""Normalised cross-entropy of detection scores (QUESST's primary metric, ``Cnxe``, and ``minCnxe``).

Every (query, document) trial's score ``s`` is read as a natural-log likelihood ratio of "the query
occurs" against "it does not". At the effective prior ``pi`` (the one TWV's ``beta`` stands for:
``pi = 1 / (1 + beta)``; QUESST's ``P_target = 0.0008``, ``C_miss = 100``, ``C_fa = 1`` give 0.0741289)
with ``a = log(pi / (1 - pi))``::

    Cxe  = 1 / ln 2 * [ pi * mean over targets of ln(1 + exp(-(s + a)))
                        + (1 - pi) * mean over non-targets of ln(1 + exp(s + a)) ]
    Cnxe = Cxe / H(pi),   H(pi) = -pi log2 pi - (1 - pi) log2 (1 - pi)

``H(pi)`` is the ``Cxe`` of a system that always answers ``s = 0`` (it knows nothing), so
``Cnxe = 1`` is that system, 0 is a perfect and confident one, and badly calibrated scores give
more than 1. ``minCnxe`` is the ``Cnxe`` of the same trials after the best monotonic recalibration
of their scores: pool-adjacent-violators (isotonic regression of the 0/1 truth on the scores, tied
scores pooled first; :func:`scipy.optimize.isotonic_regression`) gives each trial a posterior ``p``,
whose log-likelihood ratio is ``logit(p) - logit(share of targets among the trials)``. It measures
what the ranking of the scores is worth, whatever their scale.
"""
from __future__ import annotations

import numpy as np

from speechunits.errors import SpeechUnitsError


def prior_of_beta(beta: float) -> float:
    """The effective prior ``1 / (1 + beta)`` that TWV's ``beta = (1 - pi) / pi`` stands for."""
    if not beta > 0:
        raise SpeechUnitsError(f"beta must be positive, got {beta}")
    return 1.0 / (1.0 + beta)


def _split(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(truth, dtype=bool).ravel()
    if scores.shape != truth.shape:
        raise SpeechUnitsError(f"{scores.size} scores for {truth.size} truth values")
    if not truth.any() or truth.all():
        raise SpeechUnitsError("cross-entropy needs target and non-target trials both")
    if np.isnan(scores).any():
        raise SpeechUnitsError("scores contain NaN")
    return scores, truth


def _normalised_cross_entropy(llr: np.ndarray, truth: np.ndarray, prior: float) -> float:
    offset = np.log(prior / (1.0 - prior))
    miss = np.logaddexp(0.0, -(llr[truth] + offset)).mean()  # ln(1 + e^-(s + a)); 0 at s = +inf
    false_alarm = np.logaddexp(0.0, llr[~truth] + offset).mean()
    cross_entropy = (prior * miss + (1.0 - prior) * false_alarm) / np.log(2.0)
    entropy = -(prior * np.log2(prior) + (1.0 - prior) * np.log2(1.0 - prior))
    return float(cross_entropy / entropy)


def cnxe(scores: np.ndarray, truth: np.ndarray, prior: float) -> float:
    """``Cnxe`` of ``scores`` (log-likelihood ratios, any shape) against the same-shaped 0/1 ``truth``
    at the effective ``prior`` (module docstring)."""
    if not 0.0 < prior < 1.0:
        raise SpeechUnitsError(f"the effective prior must lie in (0, 1), got {prior}")
    scores, truth = _split(scores, truth)
    return _normalised_cross_entropy(scores, truth, prior)


def min_cnxe(scores: np.ndarray, truth: np.ndarray, prior: float) -> float:
    """``minCnxe``: :func:`cnxe` after the best monotonic recalibration of ``scores`` (PAV)."""
    from scipy.optimize import isotonic_regression

    if not 0.0 < prior < 1.0:
        raise SpeechUnitsError(f"the effective prior must lie in (0, 1), got {prior}")
    scores, truth = _split(scores, truth)
    values, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    hits = np.bincount(group, weights=truth.astype(np.float64), minlength=values.size)
    posterior = isotonic_regression(hits / counts, weights=counts.astype(np.float64)).x[group]
    posterior = np.clip(posterior, 0.0, 1.0)  # PAV's block means, guarded against rounding
    with np.errstate(divide="ignore"):
        logit = np.log(posterior) - np.log1p(-posterior)  # +-inf where a block is all one kind
    share = truth.mean()
    return _normalised_cross_entropy(logit - np.log(share / (1.0 - share)), truth, prior)
