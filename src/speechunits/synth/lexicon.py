"""The words a unit LM trained on a synthetic corpus has heard, with espeak-ng pronunciations.

The vocabulary of a language is every word of its built-in training sentences
(:func:`speechunits.synth.sentences.sentences`), lowercased, with its count in those sentences
(every corpus cycles through the whole list, so counts are proportional to corpus frequency).
Pronunciations come from espeak-ng itself (:func:`speechunits.synth.espeak.phonemise`): the
ASCII mnemonics that phoneme input ``[[...]]`` speaks, and the IPA that phone events report.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from speechunits.synth.align import clean_label
from speechunits.synth.sentences import sentences

#: A word: letters, optionally joined by apostrophes ("neighbour's").
WORD_PATTERN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
#: Marks espeak puts before a mnemonic (stress, unstressed, syllabic); not phones themselves.
MNEMONIC_MARKS = "',%="


def words_of(sentence: str) -> list[str]:
    """The lowercased words of a sentence (punctuation dropped)."""
    return [w.lower() for w in WORD_PATTERN.findall(sentence)]


def training_vocabulary(language: str) -> Counter[str]:
    """Word -> count over the built-in training sentences of ``language``."""
    counts: Counter[str] = Counter()
    for sentence in sentences(language):
        counts.update(words_of(sentence))
    return counts


def strip_marks(mnemonic: str) -> str:
    """A mnemonic without its stress/syllabic marks (``'aI`` -> ``aI``)."""
    return mnemonic.lstrip(MNEMONIC_MARKS)


@dataclass(frozen=True)
class Pronunciation:
    """One spoken form: espeak mnemonics (marks kept, what ``[[...]]`` speaks) and IPA phones.

    ``ipa`` is stress-free, as in a corpus's ``phones.tsv``. ``aligned`` says whether the two
    lists correspond item by item (espeak writes a few mnemonics, e.g. the syllable mark ``;``,
    that have no IPA phone).
    """

    spelling: str
    mnemonics: tuple[str, ...]
    ipa: tuple[str, ...]

    @property
    def aligned(self) -> bool:
        return len(self.mnemonics) == len(self.ipa)

    @property
    def phones(self) -> tuple[str, ...]:
        """Mnemonics without marks: the phone symbols the non-word generator works on."""
        return tuple(strip_marks(m) for m in self.mnemonics)


def pronounce(words: Iterable[str], voice: str) -> dict[str, Pronunciation]:
    """espeak-ng pronunciations of ``words`` in ``voice`` (loads espeak-ng); words without phones are left out."""
    from speechunits.synth.espeak import phonemise

    lexicon = {}
    for word in words:
        mnemonics = tuple(phonemise(word, voice))
        ipa = tuple(label for label in (clean_label(p) for p in phonemise(word, voice, ipa=True)) if label)
        if mnemonics and ipa:
            lexicon[word] = Pronunciation(word, mnemonics, ipa)
    return lexicon
