"""Audio SNIPS as SUPERB prepares it (s3prl's ``snips_prepare_data.sh``): SUPERB's slot filling (SF) corpus.

Layout::

    SNIPS/all.iob.snips.txt     one line per utterance: ``ID BOS w1 ... wn EOS<TAB>O t1 ... tn INTENT``,
                                ``ti`` the slot type of word ``wi`` or ``O``; ID ``SPEAKER-snips-PART-N``
    SNIPS/{train,valid,test}/   ``SPEAKER-snips-PART-N.wav``, 16 synthetic voices each

SUPERB trains on 8 of the voices, picks on 4 others and tests on the last 4
(:data:`SUPERB_SPEAKERS`), each from its own folder; the other voices' files are left out.
"""
from __future__ import annotations

import os
from pathlib import Path

from speechunits.errors import SpeechUnitsError
from speechunits.files import iter_text_lines

#: The label file of a SNIPS tree.
SNIPS_LABELS = "all.iob.snips.txt"
#: SUPERB's voices of each part (s3prl's ``downstream/ctc/snips.yaml``) and the folder each part reads.
SUPERB_SPEAKERS = {
    "train": ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"),
    "dev": ("Aditi", "Amy", "Geraint", "Nicole"),
    "test": ("Brian", "Emma", "Raveena", "Russell"),
}
PART_FOLDERS = {"train": "train", "dev": "valid", "test": "test"}


def is_iob_file(path: str | os.PathLike[str]) -> bool:
    """Whether the first line of ``path`` (a file) is ``ID BOS ... EOS<TAB>O ... INTENT``."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        first = next(iter_text_lines(path, "label file"), None)
    except SpeechUnitsError:
        return False
    if first is None or "\t" not in first[1]:
        return False
    words, tags = first[1].split("\t", 1)
    return words.split()[1:2] == ["BOS"] and words.split()[-1:] == ["EOS"] and tags.split()[:1] == ["O"]


def read_iob(path: str | os.PathLike[str]) -> dict[str, tuple[list[str], list[str], str]]:
    """``{id: (words, slot types, intent)}`` of an IOB label file (BOS and EOS dropped).

    Raises:
        SpeechUnitsError: a line of another shape, words and tags of different counts, an id twice
            (naming ``file:line``).
    """
    result: dict[str, tuple[list[str], list[str], str]] = {}
    for line_no, line in iter_text_lines(path, "SNIPS label file"):
        if "\t" not in line:
            raise SpeechUnitsError(f"{path}:{line_no}: expected 'ID BOS words EOS<TAB>O tags INTENT', got {line[:80]!r}")
        left, right = line.split("\t", 1)
        words, tags = left.split(), right.split()
        if len(words) < 3 or words[1] != "BOS" or words[-1] != "EOS" or len(tags) != len(words) - 1:
            raise SpeechUnitsError(f"{path}:{line_no}: expected 'ID BOS w1 .. wn EOS<TAB>O t1 .. tn INTENT' "
                                   f"({len(words) - 1} words and tags with BOS/EOS), got {line[:80]!r}")
        utt = words[0]
        if utt in result:
            raise SpeechUnitsError(f"{path}:{line_no}: utterance {utt!r} listed twice")
        result[utt] = (words[2:-1], tags[1:-1], tags[-1])
    return result


def is_snips_tree(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a SNIPS folder: :data:`SNIPS_LABELS` beside ``train/``, ``valid/`` and ``test/``."""
    root = Path(root)
    return root.is_dir() and (root / SNIPS_LABELS).is_file() and all((root / f).is_dir() for f in PART_FOLDERS.values())


def speaker_of(utt_id: str) -> str:
    """The voice of a SNIPS id (``train/Ivy-snips-train-0`` → ``Ivy``)."""
    return Path(utt_id).name.split("-", 1)[0]


def superb_parts(root: str | os.PathLike[str], ids: list[str]) -> dict[str, str] | None:
    """``{id: train|dev|test}`` of SUPERB's SF split for the utterances of a SNIPS tree at ``root`` (ids
    as its folder scan gives them, ``train/Ivy-snips-train-0``); ids of other voices, or of a voice in
    another part's folder, get none. ``None`` when ``root`` is not a SNIPS tree."""
    if not is_snips_tree(root):
        return None
    part_of_speaker = {speaker: part for part, speakers in SUPERB_SPEAKERS.items() for speaker in speakers}
    parts = {}
    for utt in ids:
        part = part_of_speaker.get(speaker_of(utt))
        if part is not None and Path(utt).parts[0] == PART_FOLDERS[part]:
            parts[utt] = part
    return parts
