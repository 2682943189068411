"""Reading and scoring ARPA back-off n-gram files (ours from :meth:`NGramLM.to_arpa`, or kenlm's ``lmplz``).

ARPA semantics: ``log10 P(w | c) = p(c w)`` when the n-gram ``c w`` is listed, else
``bow(c) + log10 P(w | c without its oldest word)`` (``bow`` 0 when ``c`` is not listed);
words outside the unigram list read as ``<unk>``. A sentence is scored as ``<s> words </s>``
(``<s>`` a history only), in natural log, over the words and ``</s>``: the convention of
:mod:`speechunits.lm.score`.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Sequence

from speechunits.errors import SpeechUnitsError

LN10 = math.log(10.0)


class ArpaLM:
    """An ARPA back-off model held in dicts: ``prob[n-gram]`` and ``backoff[n-gram]`` (log10)."""

    def __init__(self, order: int, prob: dict[tuple[str, ...], float], backoff: dict[tuple[str, ...], float]):
        self.order = order
        self.prob = prob
        self.backoff = backoff
        self.has_unk = ("<unk>",) in prob
        #: the words the model spells (its unigrams but <s>, </s> and <unk>)
        self.vocabulary = frozenset(g[0] for g in prob if len(g) == 1 and g[0] not in ("<s>", "</s>", "<unk>"))

    @functools.cached_property
    def word_prefixes(self) -> frozenset[str]:
        """Every non-empty prefix of a vocabulary word (the beam search's spelling check); built once."""
        return frozenset(w[:i] for w in self.vocabulary for i in range(1, len(w) + 1))

    def log10_prob(self, word: str, context: Sequence[str]) -> float:
        """``log10 P(word | context)`` (only the last ``order - 1`` words of ``context`` matter)."""
        if (word,) not in self.prob:
            if not self.has_unk:
                raise SpeechUnitsError(f"ARPA model: {word!r} is not in its vocabulary and it has no <unk>")
            word = "<unk>"
        context = tuple(context[max(0, len(context) - (self.order - 1)):]) if self.order > 1 else ()
        penalty = 0.0
        for start in range(len(context) + 1):  # the longest listed n-gram first
            ngram = context[start:] + (word,)
            value = self.prob.get(ngram)
            if value is not None:
                return penalty + value
            penalty += self.backoff.get(context[start:], 0.0)
        raise AssertionError("unreachable: every word has a unigram")

    def score(self, words: Sequence[str]) -> tuple[float, int]:
        """``(sum of natural-log probabilities, positions)`` of ``<s> words </s>`` over the words and ``</s>``."""
        history = ["<s>"]
        total = 0.0
        for word in list(words) + ["</s>"]:
            total += self.log10_prob(word, history)
            history.append(word)
        return total * LN10, len(words) + 1


_SECTION = re.compile(r"^\\(\d+)-grams:$")


def read_arpa(path: str | Path) -> ArpaLM:
    """Parse an ARPA file; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise SpeechUnitsError(f"{path}: no such ARPA file")
    declared: dict[int, int] = {}
    prob: dict[tuple[str, ...], float] = {}
    backoff: dict[tuple[str, ...], float] = {}
    n = 0  # the section being read; 0 = header
    seen_data = False
    try:
        with open(path, encoding="utf-8") as f:
            for number, raw in enumerate(f, 1):
                line = raw.strip()
                if not line:
                    continue
                if line == "\\data\\":
                    seen_data = True
                    continue
                if line == "\\end\\":
                    break
                if not seen_data:
                    continue  # free text before \data\ is allowed
                section = _SECTION.match(line)
                if section:
                    n = int(section.group(1))
                    continue
                if n == 0:
                    m = re.match(r"^ngram (\d+)=(\d+)$", line)
                    if not m:
                        raise SpeechUnitsError(f"{path}:{number}: expected 'ngram N=COUNT' in the header, got {line!r}")
                    declared[int(m.group(1))] = int(m.group(2))
                    continue
                fields = line.split()
                if len(fields) not in (n + 1, n + 2):
                    raise SpeechUnitsError(f"{path}:{number}: a {n}-gram line needs {n + 1} or {n + 2} fields, "
                                           f"got {len(fields)}")
                try:
                    value = float(fields[0])
                    bow = float(fields[n + 1]) if len(fields) == n + 2 else None
                except ValueError:
                    raise SpeechUnitsError(f"{path}:{number}: not a number in {line!r}") from None
                ngram = tuple(fields[1:n + 1])
                prob[ngram] = value
                if bow is not None:
                    backoff[ngram] = bow
    except UnicodeDecodeError as exc:
        raise SpeechUnitsError(f"{path}: not an ARPA file (not UTF-8 text: {exc.reason} at byte {exc.start})") from None
    if not seen_data or not declared:
        raise SpeechUnitsError(f"{path}: not an ARPA file (no \\data\\ header with 'ngram N=COUNT' lines)")
    for k, count in declared.items():
        found = sum(1 for g in prob if len(g) == k)
        if found != count:
            raise SpeechUnitsError(f"{path}: the header declares {count} {k}-grams, the file lists {found}")
    if ("</s>",) not in prob:
        raise SpeechUnitsError(f"{path}: the unigrams lack </s>")
    return ArpaLM(max(declared), prob, backoff)
