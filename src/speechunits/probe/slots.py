"""Slot filling (SUPERB's SF): text with slot tags, its CTC tokens, and the slot metrics.

A slot label is normalised text (:func:`~speechunits.probe.vocab.normalize_text`) with every slot's
words between two tags, ``B-TYPE`` before the first and ``E-TYPE`` after the last:
``"play B-artist the beatles E-artist on B-service spotify E-service"`` (:func:`slot_text`). A
``slots`` probe is CTC over the characters and the tags (each tag one token, :func:`slot_tokens`), as
s3prl's character-slot tokenizer does; it learns to transcribe and to tag at once.

Metrics over paired reference and hypothesis slot texts (SUPERB's definitions):

* ``slot_type_f1``: per utterance, the F1 of the set of slot types found against the reference's
  (1 when both have none, 0 when one side has none), averaged over utterances;
* ``slot_value_cer``: every reference slot value is paired with the hypothesis value of its type
  that has the lowest CER (the empty string when the type is missing); the corpus CER over the pairs;
* ``wer``, ``cer``: of the words, tags removed.
"""
from __future__ import annotations

import re
from typing import Sequence

from speechunits.errors import SpeechUnitsError
from speechunits.probe.vocab import WORD_BOUNDARY, normalize_text

_TAG = re.compile(r"^([BE])-(\S+)$")


def is_tag(token: str) -> bool:
    """Whether ``token`` is a slot tag (``B-TYPE`` or ``E-TYPE``)."""
    return _TAG.match(token) is not None


def slot_text(words: Sequence[str], types: Sequence[str]) -> str:
    """The slot text of ``words`` tagged per word with a slot type or ``O``: a run of equal types is one
    slot (``["play", "the", "beatles"]``, ``["O", "artist", "artist"]`` → ``"play B-artist the beatles
    E-artist"``). Words are normalised; a word that normalises to nothing is dropped.

    Raises:
        SpeechUnitsError: ``words`` and ``types`` of different lengths.
    """
    if len(words) != len(types):
        raise SpeechUnitsError(f"slot labels: {len(words)} words but {len(types)} slot tags")
    out: list[str] = []
    for i, (word, kind) in enumerate(zip(words, types)):
        if kind != "O" and (i == 0 or types[i - 1] != kind):
            out.append(f"B-{kind}")
        out.extend(normalize_text(word).split())
        if kind != "O" and (i == len(words) - 1 or types[i + 1] != kind):
            out.append(f"E-{kind}")
    return " ".join(out)


def check_slot_text(text: str, where: str) -> str:
    """``text`` with its words normalised and tags kept (``B-TYPE ... E-TYPE`` pairs, properly
    closed, not nested), e.g. a label given as ``utt<TAB>slot text``.

    Raises:
        SpeechUnitsError: a tag opened twice, closed without opening, or left open (naming ``where``).
    """
    out: list[str] = []
    open_type: str | None = None
    for item in text.split():
        hit = _TAG.match(item)
        if hit is None:
            out.extend(normalize_text(item).split())
            continue
        edge, kind = hit.groups()
        if edge == "B" and open_type is None:
            open_type = kind
        elif edge == "E" and open_type == kind:
            open_type = None
        else:
            raise SpeechUnitsError(f"{where}: slot tag {item!r} does not match ({open_type or 'no slot'} open)")
        out.append(item)
    if open_type is not None:
        raise SpeechUnitsError(f"{where}: slot B-{open_type} is not closed with E-{open_type}")
    return " ".join(out)


def slot_tokens(text: str) -> list[str]:
    """CTC tokens of a slot text: each word's characters, :data:`WORD_BOUNDARY` between words, each
    tag one token (``B-`` tags just before their first word, ``E-`` tags just after their last)."""
    tokens: list[str] = []
    after_word = False  # a word was written and no boundary after it yet
    for item in text.split():
        if is_tag(item):
            if item.startswith("B-") and after_word:
                tokens.append(WORD_BOUNDARY)
                after_word = False
            tokens.append(item)
            continue
        if after_word:
            tokens.append(WORD_BOUNDARY)
        tokens.extend(item)
        after_word = True
    return tokens


def tokens_to_slot_text(tokens: Sequence[str]) -> str:
    """Inverse of :func:`slot_tokens` (whitespace normalised)."""
    pieces = [f" {t} " if is_tag(t) else (" " if t == WORD_BOUNDARY else t) for t in tokens]
    return " ".join("".join(pieces).split())


def parse_slots(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``(words, [(type, value), ...])`` of a (possibly ill-formed, predicted) slot text: a slot is a
    ``B-TYPE`` followed, before any other tag, by ``E-TYPE``; other tags are dropped."""
    words: list[str] = []
    slots: list[tuple[str, str]] = []
    open_type: str | None = None
    value: list[str] = []
    for item in text.split():
        hit = _TAG.match(item)
        if hit is None:
            words.append(item)
            value.append(item)
            continue
        edge, kind = hit.groups()
        if edge == "E" and open_type == kind:
            slots.append((kind, " ".join(value)))
            open_type = None
        elif edge == "B":
            open_type, value = kind, []
        else:
            open_type = None
    return " ".join(words), slots


def _check(refs: Sequence[str], hyps: Sequence[str]) -> None:
    if len(refs) != len(hyps) or not refs:
        raise SpeechUnitsError(f"slot metrics: {len(refs)} references and {len(hyps)} hypotheses (need as many, > 0)")


def slot_type_f1(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """The mean over utterances of the F1 of the slot types (see the module docstring)."""
    _check(refs, hyps)
    total = 0.0
    for ref, hyp in zip(refs, hyps):
        want = {kind for kind, _ in parse_slots(ref)[1]}
        got = {kind for kind, _ in parse_slots(hyp)[1]}
        if not want and not got:
            total += 1.0
        elif want and got:
            precision, recall = len(want & got) / len(got), len(want & got) / len(want)
            total += 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return total / len(refs)


def slot_value_cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus CER of each reference slot value against its best hypothesis value of the same type."""
    import jiwer

    _check(refs, hyps)
    references, hypotheses = [], []
    for ref, hyp in zip(refs, hyps):
        offered: dict[str, list[str]] = {}
        for kind, value in parse_slots(hyp)[1]:
            offered.setdefault(kind, []).append(value)
        for kind, value in parse_slots(ref)[1]:
            candidates = offered.get(kind) or [""]
            best = min(candidates, key=lambda c: jiwer.cer(value, c) if value else len(c))  # the first on ties
            references.append(value)
            hypotheses.append(best)
    if not references:
        raise SpeechUnitsError("slot value CER: the references hold no slot")
    return float(jiwer.cer(references, hypotheses))


def slot_metrics(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """``{"slot_type_f1", "slot_value_cer", "wer", "cer"}`` (the words' WER and CER with tags removed)."""
    from speechunits.probe import metrics

    words_ref = [parse_slots(r)[0] for r in refs]
    words_hyp = [parse_slots(h)[0] for h in hyps]
    kept = [(r, h) for r, h in zip(words_ref, words_hyp) if r.strip()]
    return {"slot_type_f1": slot_type_f1(refs, hyps), "slot_value_cer": slot_value_cer(refs, hyps),
            "wer": metrics.wer([r for r, _ in kept], [h for _, h in kept]),
            "cer": metrics.cer([r for r, _ in kept], [h for _, h in kept])}
