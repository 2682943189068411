"""Pairs of reference and synthesised utterances: matched by corpus id, else by their file path endings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechunits.corpus import Utterance, open_corpus
from speechunits.errors import SpeechUnitsError
from speechunits.layouts.hf_datasets import audio_path_exists
from speechunits.id_match import match_ids

#: How many offending ids an error message lists.
_SHOWN = 5


@dataclass(frozen=True)
class UtterancePair:
    """One hypothesis utterance and its reference; ``id`` is the reference's corpus id."""

    id: str
    ref: Utterance
    hyp: Utterance


def _shown(ids: list[str]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(repr(i) for i in ids[:_SHOWN]) + more


def _utterances(source: str | Path, role: str) -> list[Utterance]:
    utts = list(open_corpus(source))
    if not utts:
        raise SpeechUnitsError(f"{source}: no audio files ({role})")
    return utts


def match_utterances(ref: str | Path, hyp: str | Path) -> tuple[list[UtterancePair], int]:
    """Every utterance of ``hyp`` with its reference in ``ref``, in ``hyp``'s order.

    Utterances match by corpus id (the path below the directory without extension, or a manifest's
    id); when no id matches, by their file path endings (:func:`~speechunits.id_match.match_ids`:
    ``wavs/u1`` = ``u1``, ``out/u1`` = ``u1``). References without a hypothesis are allowed (their count
    is returned); a hypothesis without a reference is an error.

    Returns:
        (pairs, number of reference utterances left without a hypothesis).

    Raises:
        SpeechUnitsError: an empty or missing corpus, hypotheses without a reference (named), a file
            the manifest lists that does not exist (named).
    """
    refs, hyps = _utterances(ref, "reference"), _utterances(hyp, "hypothesis")
    ref_index = {u.id: u for u in refs}
    ref_of = match_ids([u.id for u in hyps], ref_index, "the references")
    missing = [u.id for u in hyps if u.id not in ref_of]
    if missing:
        raise SpeechUnitsError(f"{hyp}: {len(missing)} of {len(hyps)} utterances have no reference in {ref} "
                               f"(matched by id or file path ending): {_shown(missing)}")
    pairs = [UtterancePair(ref_of[u.id], ref_index[ref_of[u.id]], u) for u in hyps]
    absent = [p for pair in pairs for p in (pair.ref.path, pair.hyp.path) if not audio_path_exists(p)]
    if absent:
        raise SpeechUnitsError(f"{len(absent)} audio files listed do not exist: {_shown(absent)}")
    return pairs, len(refs) - len(pairs)
