"""A count-based n-gram LM over token ids with interpolated Witten-Bell smoothing (the unit n-gram baseline).

For a history ``h`` (the previous ``n-1`` tokens) and its shorter history ``h'``::

    P(w | h) = (c(h, w) + T(h) * P(w | h')) / (c(h) + T(h))      if c(h) > 0, else P(w | h')
    P(w)     = (c(w) + T() / V) / (N + T())                        (interpolated with uniform 1/V)

with ``c(h)`` the count of ``h`` followed by anything, ``T(h)`` the number of distinct tokens
seen after ``h``, ``V`` the vocabulary (ids ``0..V-2`` and the end token ``V-1``). Sequences are
padded with ``n-1`` start symbols (never predicted) and end with the end token, so a score is
``sum log P`` over the tokens and the end (natural log), like the transformer LMs' scores.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

START = -1


class NGramLM:
    """Interpolated Witten-Bell n-gram LM; ``vocab_size`` ids ``0..vocab_size-1`` (the end token is added)."""

    def __init__(self, order: int, vocab_size: int):
        if order < 1:
            raise SpeechUnitsError(f"n-gram order must be >= 1, got {order}")
        self.order = order
        self.vocab_size = vocab_size
        self.end = vocab_size
        self.V = vocab_size + 1
        #: counts[k][history of length k] = Counter(next token)
        self.counts: list[dict[tuple[int, ...], Counter]] = [defaultdict(Counter) for _ in range(order)]
        self._totals: list[dict[tuple[int, ...], tuple[int, int]]] = [{} for _ in range(order)]

    def fit(self, sequences: Iterable[Sequence[int] | np.ndarray]) -> "NGramLM":
        for seq in sequences:
            tokens = self._padded(seq)
            for i in range(self.order - 1, len(tokens)):
                word = tokens[i]
                for k in range(self.order):
                    self.counts[k][tuple(tokens[i - k:i])][word] += 1
        for k in range(self.order):
            self._totals[k] = {h: (sum(c.values()), len(c)) for h, c in self.counts[k].items()}
        if not self._totals[0]:
            raise SpeechUnitsError("n-gram LM: no training tokens")
        return self

    def _padded(self, seq: Sequence[int] | np.ndarray) -> list[int]:
        ids = [int(t) for t in seq]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            raise SpeechUnitsError(f"n-gram LM: token ids must lie in [0, {self.vocab_size})")
        return [START] * (self.order - 1) + ids + [self.end]

    def prob(self, word: int, history: Sequence[int]) -> float:
        """``P(word | last order-1 tokens of history)`` (START = -1 pads the beginning)."""
        history = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        p = 1.0 / self.V
        for k in range(0, len(history) + 1):
            h = history[len(history) - k:] if k else ()
            total = self._totals[k].get(h)
            if total is None:
                continue
            count, types = total
            p = (self.counts[k][h].get(word, 0) + types * p) / (count + types)
        return p

    def score(self, seq: Sequence[int] | np.ndarray) -> tuple[float, int]:
        """``(sum of natural-log probabilities, positions)`` over the tokens and the end token."""
        tokens = self._padded(seq)
        total = 0.0
        for i in range(self.order - 1, len(tokens)):
            total += math.log(self.prob(tokens[i], tokens[i - self.order + 1:i] if self.order > 1 else []))
        return total, len(tokens) - (self.order - 1)
