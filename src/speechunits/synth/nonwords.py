"""Pronounceable non-words matched to real words (sWUGGY-like), pure Python.

Design (written for this project; WUGGY's idea of keeping a word's sub-syllabic structure):
a non-word is its real word with ``k`` phones replaced, ``k = 1`` for words of up to 3 phones,
2 up to 6 phones, 3 beyond. So it has exactly the word's phone count, its consonant/vowel
skeleton (a vowel is replaced by a vowel, a consonant by a consonant) and its stress pattern
(a replaced vowel keeps the stress mark of the vowel it replaces). Phonotactics: every
phone bigram of the non-word, word boundaries included, occurs in some word of the lexicon
(so onsets, codas and transitions are attested ones), and during the first half of the
draws also every trigram (stricter; the second half relaxes to bigrams). Replacement phones come from the
lexicon's own inventory, never an ambiguous one (a mnemonic espeak renders with two IPA forms).

A candidate is rejected when it is lexical: equal to a word of the lexicon on mnemonic
phones, on IPA phones, on the IPA string without phone boundaries, or when its written form
(the IPA string) is a word's spelling; also when it was already produced for another word.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Mapping

import numpy as np

from speechunits.synth.lexicon import Pronunciation

BOUNDARY = "#"
#: IPA characters that start a vowel (a syllabic ``əl`` counts as a vowel).
VOWEL_STARTS = set("aeiouæɑɒɔəɛɜɪʊʌɐᵻɚøœyɯɤɨʉɵɘ")


def is_vowel(ipa: str) -> bool:
    return bool(ipa) and ipa[0] in VOWEL_STARTS


def substitutions(length: int) -> int:
    """How many phones a non-word changes in a word of ``length`` phones."""
    return 1 if length <= 3 else 2 if length <= 6 else 3


class NonwordGenerator:
    """Non-words for the words of ``lexicon`` (see the module docstring for the rules)."""

    def __init__(self, lexicon: Mapping[str, Pronunciation]) -> None:
        self.lexicon = dict(lexicon)
        forms: dict[str, Counter[str]] = defaultdict(Counter)
        self.bigrams: set[tuple[str, str]] = set()
        self.trigrams: set[tuple[str, str, str]] = set()
        for pron in self.lexicon.values():
            if not pron.aligned:
                continue
            for phone, ipa in zip(pron.phones, pron.ipa):
                forms[phone][ipa] += 1
            seq = (BOUNDARY, *pron.phones, BOUNDARY)
            self.bigrams.update(zip(seq[:-1], seq[1:]))
            self.trigrams.update(zip(seq[:-2], seq[1:-1], seq[2:]))
        #: mnemonic phone -> its IPA, for phones espeak always renders the same way.
        self.ipa_of = {phone: next(iter(c)) for phone, c in forms.items() if len(c) == 1}
        self.vowels = sorted(p for p, ipa in self.ipa_of.items() if is_vowel(ipa))
        self.consonants = sorted(p for p, ipa in self.ipa_of.items() if not is_vowel(ipa))
        self._lexical_phones = {p.phones for p in self.lexicon.values()}
        self._lexical_ipa = {p.ipa for p in self.lexicon.values()}
        self._lexical_strings = {"".join(p.ipa) for p in self.lexicon.values()}
        self._spellings = {w.lower() for w in self.lexicon}
        self._produced: set[tuple[str, ...]] = set()

    def eligible(self, word: str, min_length: int = 3) -> bool:
        """Whether ``word`` can get a matched non-word (aligned pronunciation of ``min_length``+ phones)."""
        pron = self.lexicon.get(word)
        return pron is not None and pron.aligned and len(pron.ipa) >= min_length

    def is_lexical(self, candidate: Pronunciation) -> bool:
        """Whether ``candidate`` equals a lexicon word on phones, IPA, IPA string or spelling."""
        joined = "".join(candidate.ipa)
        return (candidate.phones in self._lexical_phones or candidate.ipa in self._lexical_ipa
                or joined in self._lexical_strings or joined.lower() in self._spellings
                or candidate.spelling.lower() in self._spellings)

    def phonotactic(self, phones: tuple[str, ...], *, trigrams: bool = False) -> bool:
        """Every bigram (and with ``trigrams`` every trigram), word boundaries included, attested in the lexicon."""
        seq = (BOUNDARY, *phones, BOUNDARY)
        if not all(pair in self.bigrams for pair in zip(seq[:-1], seq[1:])):
            return False
        return not trigrams or all(tri in self.trigrams for tri in zip(seq[:-2], seq[1:-1], seq[2:]))

    def generate(self, word: str, rng: np.random.Generator, attempts: int = 200) -> Pronunciation | None:
        """A new non-word matched to ``word``, or None when ``attempts`` draws found none."""
        pron = self.lexicon[word]
        if not pron.aligned:
            return None
        n = len(pron.phones)
        k = min(substitutions(n), n)
        for attempt in range(attempts):
            phones = list(pron.phones)
            mnemonics = list(pron.mnemonics)
            ipa = list(pron.ipa)
            positions = sorted(rng.choice(n, size=k, replace=False).tolist())
            ok = True
            for i in positions:
                pool = self.vowels if is_vowel(pron.ipa[i]) else self.consonants
                left = phones[i - 1] if i > 0 else BOUNDARY
                right = phones[i + 1] if i + 1 < n else BOUNDARY
                options = [p for p in pool if p != pron.phones[i]
                           and (left, p) in self.bigrams and (p, right) in self.bigrams]
                if not options:
                    ok = False
                    break
                new = options[int(rng.integers(len(options)))]
                marks = pron.mnemonics[i][: len(pron.mnemonics[i]) - len(pron.phones[i])]
                phones[i], mnemonics[i], ipa[i] = new, marks + new, self.ipa_of[new]
            if not ok or not self.phonotactic(tuple(phones), trigrams=attempt < attempts // 2):
                continue
            candidate = Pronunciation("".join(ipa), tuple(mnemonics), tuple(ipa))
            if self.is_lexical(candidate) or candidate.phones in self._produced:
                continue
            self._produced.add(candidate.phones)
            return candidate
        return None
