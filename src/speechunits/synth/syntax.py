"""An English template grammar with number agreement, and sBLIMP-like minimal pairs from it.

Written for this project. Every word is a word of the English training sentences
(``synth/data/en.txt``; :func:`uncovered_words` lists any that are not, and a test keeps it
empty), so a unit LM trained on ``speechunits synth`` output has heard each of them.

Grammar (``n`` = number, sg|pl; selectional restrictions as the tables below)::

    S      -> NP[n] VP[n] ADV?
    NP[n]  -> DET_SUBJ ADJ? NOUN[n]                 the (old) baker / my (busy) friends
    VP[n]  -> VERB_PRES[n] OBJ                      keeps / keep + an object the verb allows
            | COP[n] ADJ                            is|was / are|were + adjective
            | VERB_PAST_TRANSITIVE OBJ              found, repaired ... (object obligatory)
            | VERB_PAST_INTRANSITIVE                laughed, sneezed ... (no object)
    OBJ    -> DET_OBJ[m] OBJ_NOUN[m] | "the" OBJ_NOUN[m]
    ADV    -> a tense-neutral adverbial phrase

Minimal pairs (type/subtype; the ungrammatical member differs by one or two words):

* ``agreement/subject_verb``: the verb (or copula) takes the other number;
* ``agreement/determiner_noun``: the object's noun (or determiner) takes the other number;
* ``word_order/determiner_noun``: the subject's determiner and noun swap;
* ``word_order/adjective_noun``: the subject's adjective and noun swap;
* ``word_order/verb_object``: the verb moves behind its object;
* ``argument_structure/transitive_missing_object``: an obligatorily transitive verb loses its object;
* ``argument_structure/intransitive_extra_object``: an intransitive verb gets an object.

Training text: :func:`make_sentence` samples grammatical sentences for ``speechunits synth
--text grammar|mixed``. A fixed quarter of the grammar's sentences (:func:`reserved_for_benchmarks`,
by a hash of the words) never becomes training text, and every syntactic pair takes its grammatical
member from that quarter, so no benchmark sentence is a training sentence, for any seed.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

DET_SUBJ = ("the", "my", "our", "her", "his")
NOUNS = {
    "sg": ("baker", "teacher", "farmer", "dog", "cat", "boy", "pilot", "nurse", "sister", "brother", "gardener",
           "child", "doctor", "singer", "painter", "waiter", "tailor", "mechanic", "plumber", "shepherd"),
    "pl": ("children", "gardeners", "sailors", "students", "workers", "tourists", "pupils", "visitors", "friends",
           "neighbours", "hikers", "athletes", "explorers", "miners", "traders"),
}
ADJECTIVES = ("small", "old", "little", "tall", "hungry", "curious", "busy", "quiet", "cheerful", "lonely")
#: Objects with both number forms (singular, plural).
OBJECT_NOUNS = {"book": "books", "key": "keys", "map": "maps", "gate": "gates", "word": "words", "verse": "verses"}
#: Number-marked object determiners.
DET_OBJ = {"sg": ("this", "a", "every", "each"), "pl": ("these", "several", "many")}
#: Present-tense transitive verbs: (singular form, plural form) -> objects they take.
VERBS_PRESENT = {
    ("carries", "carry"): ("book", "key", "map"),
    ("keeps", "keep"): ("book", "key", "map"),
    ("needs", "need"): ("book", "key", "map", "word"),
    ("sees", "see"): ("book", "key", "map", "gate"),
    ("leaves", "leave"): ("book", "key", "map"),
    ("closes", "close"): ("book", "gate"),
    ("writes", "write"): ("word", "verse"),
}
#: Copula forms (singular, plural), present and past.
COPULAS = (("is", "are"), ("was", "were"))
#: Past-tense verbs that cannot drop their object, with the objects they take.
VERBS_PAST_TRANSITIVE = {
    "found": ("book", "key", "map"),
    "brought": ("book", "key", "map"),
    "repaired": ("gate",),
    "mended": ("gate",),
    "fixed": ("gate",),
    "replaced": ("book", "key", "map", "gate"),
}
#: Past-tense verbs that take no object.
VERBS_PAST_INTRANSITIVE = ("laughed", "giggled", "sneezed", "appeared", "waited", "nodded")
ADVERBIALS = ("in the morning", "in the garden", "near the river", "after midnight", "before noon", "at dusk")

SUBTYPES: tuple[tuple[str, str], ...] = (
    ("agreement", "subject_verb"),
    ("agreement", "determiner_noun"),
    ("word_order", "determiner_noun"),
    ("word_order", "adjective_noun"),
    ("word_order", "verb_object"),
    ("argument_structure", "transitive_missing_object"),
    ("argument_structure", "intransitive_extra_object"),
)


@dataclass(frozen=True)
class SentencePair:
    """A grammatical sentence and its minimally different ungrammatical twin (lowercase words)."""

    type: str
    subtype: str
    grammatical: tuple[str, ...]
    ungrammatical: tuple[str, ...]


def grammar_words() -> set[str]:
    """Every word the grammar can produce."""
    words: set[str] = set(DET_SUBJ) | set(ADJECTIVES) | set(VERBS_PAST_INTRANSITIVE) | set(VERBS_PAST_TRANSITIVE)
    for group in NOUNS.values():
        words |= set(group)
    for sg, pl in OBJECT_NOUNS.items():
        words |= {sg, pl}
    for group in DET_OBJ.values():
        words |= set(group)
    for forms in list(VERBS_PRESENT) + list(COPULAS):
        words |= set(forms)
    for phrase in ADVERBIALS:
        words |= set(phrase.split())
    return words | {"the"}


def uncovered_words(vocabulary: Iterable[str]) -> set[str]:
    """Grammar words missing from ``vocabulary`` (the training sentences' words)."""
    return grammar_words() - set(vocabulary)


def spoken_text(words: tuple[str, ...]) -> str:
    """What espeak-ng reads: capitalised, with a full stop."""
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."


# ----------------------------------------------------------------------------- generation


def reserved_for_benchmarks(words: tuple[str, ...]) -> bool:
    """Whether a grammatical sentence (lowercase words) belongs to the benchmarks' quarter of the grammar."""
    return hashlib.sha256(" ".join(words).encode("utf-8")).digest()[0] % 4 == 0


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _subject(rng: np.random.Generator, number: str, adjective: bool) -> list[str]:
    words = [_pick(rng, DET_SUBJ)]
    if adjective:
        words.append(_pick(rng, ADJECTIVES))
    return words + [_pick(rng, NOUNS[number])]


def _object(rng: np.random.Generator, allowed: tuple[str, ...], marked: bool) -> tuple[list[str], str]:
    number = _pick(rng, ("sg", "pl"))
    base = _pick(rng, allowed)
    noun = base if number == "sg" else OBJECT_NOUNS[base]
    det = _pick(rng, DET_OBJ[number]) if marked else "the"
    return [det, noun], number


def _adverbial(rng: np.random.Generator) -> list[str]:
    return _pick(rng, ADVERBIALS).split() if rng.random() < 0.5 else []


def _present_predicate(rng: np.random.Generator, number: str, marked_share: float = 0.0) -> list[str]:
    """A present-tense transitive verb agreeing with ``number``, and its object (whose determiner is
    number-marked with probability ``marked_share``; 0 draws nothing for it)."""
    forms = _pick(rng, list(VERBS_PRESENT))
    obj, _ = _object(rng, VERBS_PRESENT[forms], bool(marked_share) and rng.random() < marked_share)
    return [forms[0] if number == "sg" else forms[1]] + obj


def make_sentence(rng: np.random.Generator) -> tuple[str, ...]:
    """One grammatical sentence (lowercase words): ``NP[n] VP[n] ADV?`` with the module's productions.

    Reserved sentences (:func:`reserved_for_benchmarks`) are never returned: this is training text.
    """
    while True:
        number = _pick(rng, ("sg", "pl"))
        subject = _subject(rng, number, rng.random() < 0.3)
        kind = rng.random()
        if kind < 0.4:
            predicate = _present_predicate(rng, number, marked_share=0.5)
        elif kind < 0.55:
            forms = COPULAS[int(rng.integers(len(COPULAS)))]
            predicate = [forms[0 if number == "sg" else 1], _pick(rng, ADJECTIVES)]
        elif kind < 0.85:
            verb = _pick(rng, list(VERBS_PAST_TRANSITIVE))
            obj, _ = _object(rng, VERBS_PAST_TRANSITIVE[verb], rng.random() < 0.5)
            predicate = [verb] + obj
        else:
            predicate = [_pick(rng, VERBS_PAST_INTRANSITIVE)]
        words = tuple(subject + predicate + _adverbial(rng))
        if not reserved_for_benchmarks(words):
            return words


def make_pair(type_: str, subtype: str, rng: np.random.Generator) -> SentencePair:
    """One random minimal pair of the given type/subtype."""
    number = _pick(rng, ("sg", "pl"))
    adv = _adverbial(rng)
    if (type_, subtype) == ("agreement", "subject_verb"):
        subject = _subject(rng, number, rng.random() < 0.3)
        other = "pl" if number == "sg" else "sg"
        if rng.random() < 0.6:
            forms = _pick(rng, list(VERBS_PRESENT))
            obj, _ = _object(rng, VERBS_PRESENT[forms], False)
            good = subject + [forms[0 if number == "sg" else 1]] + obj
            bad = subject + [forms[0 if other == "sg" else 1]] + obj
        else:
            forms = COPULAS[int(rng.integers(len(COPULAS)))]
            adjective = [_pick(rng, ADJECTIVES)]
            good = subject + [forms[0 if number == "sg" else 1]] + adjective
            bad = subject + [forms[0 if other == "sg" else 1]] + adjective
    elif (type_, subtype) == ("agreement", "determiner_noun"):
        subject = _subject(rng, number, rng.random() < 0.3)
        if rng.random() < 0.5:
            forms = _pick(rng, list(VERBS_PRESENT))
            verb, allowed = forms[0 if number == "sg" else 1], VERBS_PRESENT[forms]
        else:
            verb = _pick(rng, list(VERBS_PAST_TRANSITIVE))
            allowed = VERBS_PAST_TRANSITIVE[verb]
        (det, noun), obj_number = _object(rng, allowed, True)
        base = noun if obj_number == "sg" else next(s for s, p in OBJECT_NOUNS.items() if p == noun)
        if rng.random() < 0.5:  # the noun takes the other number
            wrong = [det, OBJECT_NOUNS[base] if obj_number == "sg" else base]
        else:  # the determiner does
            wrong = [_pick(rng, DET_OBJ["pl" if obj_number == "sg" else "sg"]), noun]
        good = subject + [verb, det, noun]
        bad = subject + [verb] + wrong
    elif (type_, subtype) == ("word_order", "determiner_noun"):
        subject = _subject(rng, number, False)
        predicate = _present_predicate(rng, number)
        good = subject + predicate
        bad = [subject[1], subject[0]] + predicate
    elif (type_, subtype) == ("word_order", "adjective_noun"):
        subject = _subject(rng, number, True)
        predicate = _present_predicate(rng, number)
        good = subject + predicate
        bad = [subject[0], subject[2], subject[1]] + predicate
    elif (type_, subtype) == ("word_order", "verb_object"):
        subject = _subject(rng, number, rng.random() < 0.3)
        verb = _pick(rng, list(VERBS_PAST_TRANSITIVE))
        obj, _ = _object(rng, VERBS_PAST_TRANSITIVE[verb], False)
        good = subject + [verb] + obj
        bad = subject + obj + [verb]
    elif (type_, subtype) == ("argument_structure", "transitive_missing_object"):
        subject = _subject(rng, number, rng.random() < 0.3)
        verb = _pick(rng, list(VERBS_PAST_TRANSITIVE))
        obj, _ = _object(rng, VERBS_PAST_TRANSITIVE[verb], False)
        good = subject + [verb] + obj
        bad = subject + [verb]
    elif (type_, subtype) == ("argument_structure", "intransitive_extra_object"):
        subject = _subject(rng, number, rng.random() < 0.3)
        verb = _pick(rng, VERBS_PAST_INTRANSITIVE)
        obj, _ = _object(rng, tuple(OBJECT_NOUNS), False)
        good = subject + [verb]
        bad = subject + [verb] + obj
    else:
        raise ValueError(f"unknown minimal-pair type {type_}/{subtype}")
    return SentencePair(type_, subtype, tuple(good + adv), tuple(bad + adv))


# ----------------------------------------------------------------------------- recognition


def _parse_np(words: tuple[str, ...], i: int) -> list[tuple[int, str]]:
    """(end, number) of every subject NP starting at ``i``."""
    if i >= len(words) or words[i] not in DET_SUBJ:
        return []
    j = i + 1
    out = []
    for k in (j, j + 1) if j < len(words) and words[j] in ADJECTIVES else (j,):
        if k < len(words):
            for number, nouns in NOUNS.items():
                if words[k] in nouns:
                    out.append((k + 1, number))
    return out


def _parse_obj(words: tuple[str, ...], i: int, allowed: tuple[str, ...]) -> list[int]:
    if i + 1 >= len(words):
        return []
    det, noun = words[i], words[i + 1]
    for base in allowed:
        for number, form in (("sg", base), ("pl", OBJECT_NOUNS[base])):
            if noun == form and (det == "the" or det in DET_OBJ[number]):
                return [i + 2]
    return []


def _parse_vp(words: tuple[str, ...], i: int, number: str) -> list[int]:
    if i >= len(words):
        return []
    verb = words[i]
    index = 0 if number == "sg" else 1
    ends: list[int] = []
    for forms, allowed in VERBS_PRESENT.items():
        if verb == forms[index]:
            ends += _parse_obj(words, i + 1, allowed)
    if any(verb == forms[index] for forms in COPULAS) and i + 1 < len(words) and words[i + 1] in ADJECTIVES:
        ends.append(i + 2)
    if verb in VERBS_PAST_TRANSITIVE:
        ends += _parse_obj(words, i + 1, VERBS_PAST_TRANSITIVE[verb])
    if verb in VERBS_PAST_INTRANSITIVE:
        ends.append(i + 1)
    return ends


def parses(sentence: str | tuple[str, ...]) -> bool:
    """Whether the grammar generates ``sentence`` (a string or lowercase words; case and final stop ignored)."""
    words = tuple(sentence.lower().rstrip(".").split()) if isinstance(sentence, str) else sentence
    adverbials = {tuple(a.split()) for a in ADVERBIALS}
    for np_end, number in _parse_np(words, 0):
        for vp_end in _parse_vp(words, np_end, number):
            rest = words[vp_end:]
            if not rest or rest in adverbials:
                return True
    return False
