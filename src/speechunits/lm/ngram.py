"""A count-based n-gram LM over token ids (the unit and phone n-gram baselines), exportable as ARPA.

Two interpolated smoothings share one recursion. For a history ``h`` (at most ``order-1`` previous
tokens) and ``h'`` (``h`` without its oldest token)::

    P(w | h) = (d(h, w) + B(h) * P(w | h')) / A(h)      if h was seen as a history, else P(w | h')
    P(w | ()) interpolates with the uniform 1 / V

- ``"kneser-ney"``: interpolated modified Kneser-Ney (Chen & Goodman 1998; kenlm's ``lmplz``
  default). Counts are adjusted: raw counts at the highest order and for n-grams that start with
  ``<s>``, otherwise the number of distinct tokens seen before the n-gram. ``d = max(a - D(a), 0)``
  with three discounts per order from the adjusted counts' count-of-counts ``t1..t4``
  (``Y = t1 / (t1 + 2 t2)``, ``D_j = j - (j + 1) Y t_{j+1} / t_j``), ``A(h)`` the sum of adjusted
  counts after ``h`` and ``B(h) = D1 N1(h) + D2 N2(h) + D3+ N3+(h)``.
- ``"witten-bell"``: ``d = c(h, w)``, ``B(h) = T(h)`` distinct tokens after ``h``, ``A(h) = c(h) + T(h)``.

Tokens are ids ``0..vocab_size-1``; the end token ``</s>`` is id ``vocab_size`` and ``V = vocab_size + 1``.
Every sequence is read as ``<s> ids </s>``: ``<s>`` is a history only (kenlm's convention), so a
score is ``sum ln P`` over the ids and the end token, like the transformer LMs' scores.
``to_arpa`` writes the model in the ARPA format (backoff weight of a history ``= B(h) / A(h)``), so
kenlm and CTC decoders that read ARPA give the same probabilities as ``prob``.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from speechunits.errors import SpeechUnitsError

START = -1
SMOOTHINGS = ("kneser-ney", "witten-bell")
#: discounts used for an order whose count-of-counts cannot give valid ones (tiny corpora)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


class NGramLM:
    """Interpolated n-gram LM on ids ``0..vocab_size-1`` (the end token is added); see the module docstring."""

    def __init__(self, order: int, vocab_size: int, smoothing: str = "kneser-ney"):
        if order < 1:
            raise SpeechUnitsError(f"n-gram order must be >= 1, got {order}")
        if vocab_size < 1:
            raise SpeechUnitsError(f"n-gram vocabulary must hold at least one token, got {vocab_size}")
        if smoothing not in SMOOTHINGS:
            raise SpeechUnitsError(f"unknown n-gram smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}")
        self.order = order
        self.vocab_size = vocab_size
        self.smoothing = smoothing
        self.end = vocab_size
        self.V = vocab_size + 1
        #: raw counts: counts[k][history of length k] = Counter(next token)
        self.counts: list[dict[tuple[int, ...], Counter]] = [defaultdict(Counter) for _ in range(order)]
        #: per level: the numerators d(h, w) and, per history, (A(h), B(h))
        self._numer: list[dict[tuple[int, ...], dict[int, float]]] = [{} for _ in range(order)]
        self._denom: list[dict[tuple[int, ...], tuple[float, float]]] = [{} for _ in range(order)]
        #: Kneser-Ney discounts (D1, D2, D3+) per level (history length); empty for Witten-Bell
        self.discounts: list[tuple[float, float, float]] = []

    def fit(self, sequences: Iterable[Sequence[int] | np.ndarray]) -> "NGramLM":
        """Count ``sequences`` (each a sequence of ids) and estimate the model; returns ``self``."""
        for seq in sequences:
            tokens = self._padded(seq)
            for i in range(1, len(tokens)):
                word = tokens[i]
                for k in range(min(self.order - 1, i) + 1):
                    self.counts[k][tuple(tokens[i - k:i])][word] += 1
        if not self.counts[0]:
            raise SpeechUnitsError("n-gram LM: no training tokens")
        if self.smoothing == "witten-bell":
            for k in range(self.order):
                self._numer[k] = {h: dict(c) for h, c in self.counts[k].items()}
                self._denom[k] = {h: (sum(c.values()) + len(c), float(len(c))) for h, c in self.counts[k].items()}
        else:
            self._fit_kneser_ney()
        return self

    def _adjusted_counts(self, k: int) -> dict[tuple[int, ...], Counter]:
        """Kneser-Ney's counts at history length ``k``: raw at the top order and after ``<s>``, else left types."""
        if k == self.order - 1:
            return self.counts[k]
        left: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        for h, following in self.counts[k + 1].items():
            for w in following:
                left[h[1:]][w] += 1
        adjusted: dict[tuple[int, ...], Counter] = {}
        for h, following in self.counts[k].items():
            if h and h[0] == START:
                adjusted[h] = following
            else:
                adjusted[h] = Counter({w: left[h][w] for w in following})
        return adjusted

    def _fit_kneser_ney(self) -> None:
        self.discounts = []
        for k in range(self.order):
            adjusted = self._adjusted_counts(k)
            count_of_counts = Counter(a for following in adjusted.values() for a in following.values() if a <= 4)
            discounts = _discounts(*(count_of_counts[j] for j in (1, 2, 3, 4)))
            self.discounts.append(discounts)
            numer: dict[tuple[int, ...], dict[int, float]] = {}
            denom: dict[tuple[int, ...], tuple[float, float]] = {}
            for h, following in adjusted.items():
                total = float(sum(following.values()))
                numer[h] = {w: a - discounts[min(a, 3) - 1] for w, a in following.items()}
                denom[h] = (total, sum(discounts[min(a, 3) - 1] for a in following.values()))
            self._numer[k], self._denom[k] = numer, denom

    def _padded(self, seq: Sequence[int] | np.ndarray) -> list[int]:
        ids = [int(t) for t in seq]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            raise SpeechUnitsError(f"n-gram LM: token ids must lie in [0, {self.vocab_size})")
        return [START] + ids + [self.end]

    def prob(self, word: int, history: Sequence[int]) -> float:
        """``P(word | last order-1 tokens of history)``; ``START`` (-1) stands for ``<s>``."""
        if not self._denom[0]:
            raise SpeechUnitsError("n-gram LM: call fit() first")
        history = tuple(int(t) for t in history)
        if START in history:  # nothing precedes <s>
            history = history[len(history) - 1 - history[::-1].index(START):]
        history = history[max(0, len(history) - (self.order - 1)):] if self.order > 1 else ()
        p = 1.0 / self.V
        for k in range(len(history) + 1):
            h = history[len(history) - k:]
            stats = self._denom[k].get(h)
            if stats is None:
                break  # a longer history containing an unseen one is unseen too
            total, weight = stats
            p = (self._numer[k][h].get(word, 0.0) + weight * p) / total
        return p

    def score(self, seq: Sequence[int] | np.ndarray) -> tuple[float, int]:
        """``(sum of natural-log probabilities, positions)`` over the tokens and the end token."""
        tokens = self._padded(seq)
        total = 0.0
        for i in range(1, len(tokens)):
            total += math.log(self.prob(tokens[i], tokens[max(0, i - self.order + 1):i]))
        return total, len(tokens) - 1

    def _seen_probs(self) -> list[dict[tuple[int, ...], float]]:
        """``P(w | h)`` of every counted n-gram ``h + (w,)``, per history length ``k``.

        Level ``k`` is computed from level ``k - 1`` (every suffix of a counted n-gram is counted),
        so each n-gram costs one step instead of :meth:`prob`'s walk up from the unigram.
        """
        levels: list[dict[tuple[int, ...], float]] = []
        for k in range(self.order):
            below = levels[k - 1] if k else None
            probs: dict[tuple[int, ...], float] = {}
            for h, numer in self._numer[k].items():
                total, weight = self._denom[k][h]
                suffix = h[1:]
                for w, d in numer.items():
                    lower = below[suffix + (w,)] if below is not None else 1.0 / self.V
                    probs[h + (w,)] = (d + weight * lower) / total
            levels.append(probs)
        return levels

    def to_arpa(self, path: str | Path, names: Sequence[str] | None = None) -> Path:
        """Write the model as an ARPA file; ``names[i]`` spells id ``i`` (default ``str(i)``).

        Every id is listed as a unigram (unseen ones with the uniform share), ``<unk>`` gets that
        share too, ``<s>`` is a history only (log10 probability -99).
        """
        if not self._denom[0]:
            raise SpeechUnitsError("n-gram LM: call fit() first")
        names = [str(i) for i in range(self.vocab_size)] if names is None else list(names)
        if len(names) != self.vocab_size or len(set(names)) != len(names):
            raise SpeechUnitsError(f"n-gram LM: need {self.vocab_size} distinct token names, got {len(names)}")
        bad = [n for n in names if not n or any(ch.isspace() for ch in n) or n in ("<s>", "</s>", "<unk>")]
        if bad:
            raise SpeechUnitsError(f"n-gram LM: token names must be non-empty, without spaces and not "
                                   f"<s>, </s> or <unk>: {bad[:5]}")
        spell = {i: n for i, n in enumerate(names)}
        spell.update({self.end: "</s>", START: "<s>"})

        def backoff(ngram: tuple[int, ...]) -> str:
            k = len(ngram)
            if k >= self.order or ngram not in self._denom[k]:
                return ""
            total, weight = self._denom[k][ngram]
            return f"\t{_log10(weight / total):.7g}"

        levels: list[list[str]] = []
        total0, weight0 = self._denom[0][()]
        floor = weight0 / total0 / self.V
        unigrams = [f"{_log10(floor):.7g}\t<unk>", f"-99\t<s>{backoff((START,))}"]
        for w in range(self.V):
            unigrams.append(f"{_log10(self.prob(w, ())):.7g}\t{spell[w]}{backoff((w,))}")
        levels.append(unigrams)
        probs = self._seen_probs()
        for k in range(1, self.order):
            lines = []
            for h in sorted(self._numer[k]):
                for w in sorted(self._numer[k][h]):
                    ngram = h + (w,)
                    lines.append(f"{_log10(probs[k][ngram]):.7g}\t{' '.join(spell[t] for t in ngram)}"
                                 f"{backoff(ngram)}")
            levels.append(lines)
        path = Path(path)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n, lines in enumerate(levels, 1):
                f.write(f"ngram {n}={len(lines)}\n")
            for n, lines in enumerate(levels, 1):
                f.write(f"\n\\{n}-grams:\n")
                f.write("\n".join(lines) + "\n")
            f.write("\n\\end\\\n")
        return path


def _log10(p: float) -> float:
    return math.log10(p) if p > 0 else -99.0


def _discounts(t1: int, t2: int, t3: int, t4: int) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from count-of-counts; fallbacks where undefined."""
    if min(t1, t2, t3, t4) == 0:
        return FALLBACK_DISCOUNTS
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < dj < j for j, dj in enumerate(d, 1)):
        return FALLBACK_DISCOUNTS
    return d
