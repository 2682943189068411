"""Pairs of reference and synthesised utterances: matched by corpus id, else by file stem."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from speechunits.corpus import Utterance, open_corpus
from speechunits.errors import SpeechUnitsError

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


def _by_stem(utts: list[Utterance]) -> dict[str, Utterance] | None:
    """``{file stem: utterance}``, or None when two utterances share a stem."""
    out: dict[str, Utterance] = {}
    for utt in utts:
        stem = Path(utt.id).name
        if stem in out:
            return None
        out[stem] = utt
    return out


def match_utterances(ref: str | Path, hyp: str | Path) -> tuple[list[UtterancePair], int]:
    """Every utterance of ``hyp`` with its reference in ``ref``, in ``hyp``'s order.

    Utterances match by corpus id (the path below the directory without extension, or a manifest's
    id); when no id matches, by file stem (the last path component), provided stems are unique.
    References without a hypothesis are allowed (their count is returned); a hypothesis without a
    reference is an error.

    Returns:
        (pairs, number of reference utterances left without a hypothesis).

    Raises:
        SpeechUnitsError: an empty or missing corpus, hypotheses without a reference (named), a file
            the manifest lists that does not exist (named).
    """
    refs, hyps = _utterances(ref, "reference"), _utterances(hyp, "hypothesis")
    ref_index = {u.id: u for u in refs}
    key_of = lambda u: u.id  # noqa: E731
    if not any(u.id in ref_index for u in hyps):
        ref_stems, hyp_stems = _by_stem(refs), _by_stem(hyps)
        if ref_stems is not None and hyp_stems is not None and any(s in ref_stems for s in hyp_stems):
            ref_index = ref_stems
            key_of = lambda u: Path(u.id).name  # noqa: E731
    missing = [u.id for u in hyps if key_of(u) not in ref_index]
    if missing:
        raise SpeechUnitsError(f"{hyp}: {len(missing)} of {len(hyps)} utterances have no reference in {ref} "
                               f"(matched by id or file stem): {_shown(missing)}")
    pairs = [UtterancePair(ref_index[key_of(u)].id, ref_index[key_of(u)], u) for u in hyps]
    absent = [p for pair in pairs for p in (pair.ref.path, pair.hyp.path) if not Path(p).is_file()]
    if absent:
        raise SpeechUnitsError(f"{len(absent)} audio files listed do not exist: {_shown(absent)}")
    return pairs, len(refs) - len(pairs)
