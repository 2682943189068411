"""Match the utterance ids of audio, features or units to the ids of a label file.

A folder scan names an utterance by its path relative to the folder read (``flac/activated``,
``19/198/19-198-0001``), while label files (``phones.tsv``, ``text.tsv``, ``speakers.tsv``, Libri-Light
``.item`` files, TextGrid folders) usually name it by its file name (``activated``,
``19-198-0001``). The rule:

* when the two sides share at least one id, ids match exactly and nothing else is tried, so a run
  whose ids matched before is never changed;
* when they share none, two ids match when one ends with the other in whole path parts, or both
  end with the same parts (``flac/x`` = ``x``; ``a/b/x`` = ``b/x``; ``flac/x`` = ``wavs/x``), taking
  the longest such ending; an ending shared by several ids of one side (``SA1`` of every TIMIT
  speaker) matches nothing, and a label id claimed by two of ours matches neither (both reported).
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping, TypeVar

log = logging.getLogger(__name__)

V = TypeVar("V")


def _tails(utt_id: str) -> list[str]:
    """``utt_id`` and its endings in whole path parts, longest first: ``a/b/x`` -> ``[a/b/x, b/x, x]``."""
    parts = utt_id.split("/")
    return ["/".join(parts[cut:]) for cut in range(len(parts))]


def _tail_index(ids: Iterable[str]) -> dict[str, str | None]:
    """``{ending: the one id with that ending}``; ``None`` for an ending that several ids share."""
    index: dict[str, str | None] = {}
    for utt_id in ids:
        for tail in _tails(utt_id):
            index[tail] = utt_id if index.get(tail, utt_id) == utt_id else None
    return index


def match_ids(ours: Iterable[str], theirs: Iterable[str], what: str = "labels") -> dict[str, str]:
    """``{our id: their id}`` for the utterances both sides name (module rule), in the order of ``ours``.

    ``what`` names the label side in the log line that says when ids were matched by their endings.
    """
    ours_list = list(dict.fromkeys(ours))
    theirs_set = set(theirs)
    exact = {utt: utt for utt in ours_list if utt in theirs_set}
    if exact or not ours_list or not theirs_set:
        return exact
    ours_index, theirs_index = _tail_index(ours_list), _tail_index(theirs_set)
    mapping: dict[str, str] = {}
    ambiguous: list[str] = []
    for utt in ours_list:
        for tail in _tails(utt):  # longest first; the first ending the other side has decides
            if tail not in theirs_index:
                continue
            target = theirs_index[tail]
            if ours_index[tail] != utt or target is None:  # several of ours, or of theirs, end so
                ambiguous.append(utt)
            else:
                mapping[utt] = target  # one-to-one: a second id of ours reaching it would share the ending
            break
    if mapping:
        example = next(iter(mapping.items()))
        log.info("%s: no utterance id in common; %d of %d matched by their file path endings (e.g. %r = %r)",
                 what, len(mapping), len(ours_list), *example)
    if ambiguous:
        log.warning("%s: %d id(s) end like several utterances and match none (e.g. %s); give ids that match "
                    "exactly (a .jsonl manifest's 'id' field)", what, len(ambiguous),
                    ", ".join(repr(utt) for utt in ambiguous[:3]))
    return mapping


def rekey(table: Mapping[str, V], ours: Iterable[str], what: str = "labels") -> dict[str, V]:
    """``table`` (keyed by label ids) keyed by ``ours`` through :func:`match_ids`; unmatched ids are left out."""
    return {utt: table[target] for utt, target in match_ids(ours, table.keys(), what).items()}


def named_by(table: Mapping[str, V], ours: Iterable[str], what: str = "labels") -> dict[str, V]:
    """``table`` as it is when its ids are ours (ids in common, or none matching: the caller reports
    that); keyed by ``ours`` through :func:`match_ids` when they matched by their endings (the
    unmatched left out)."""
    mapping = match_ids(ours, table.keys(), what)
    if all(utt == label for utt, label in mapping.items()):
        return dict(table)
    return {utt: table[label] for utt, label in mapping.items()}
