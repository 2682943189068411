"""LibriSpeech and LibriTTS trees: per-chapter transcript files, speakers in the ids."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

#: The ending of LibriSpeech's per-chapter transcript files (``19-198.trans.txt``: ``19-198-0001 TEXT``).
LIBRISPEECH_TRANSCRIPTS = ".trans.txt"
#: The ending of LibriTTS's (and LibriTTS-R's) per-chapter transcript files (``19_198.trans.tsv``:
#: ``19_198_000000_000000<TAB>original text<TAB>normalised text``).
LIBRITTS_TRANSCRIPTS = ".trans.tsv"
#: Both, the per-chapter transcripts of a Libri* tree.
CHAPTER_TRANSCRIPTS = (LIBRISPEECH_TRANSCRIPTS, LIBRITTS_TRANSCRIPTS)


def iter_librispeech_transcripts(root: str | os.PathLike[str]) -> Iterator[Path]:
    """The per-chapter transcript files of a LibriSpeech (``SPEAKER-CHAPTER.trans.txt``) or LibriTTS
    (``SPEAKER_CHAPTER.trans.tsv``) tree under ``root``, in sorted walk order (lazily: the first one
    is found without walking the whole tree)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(CHAPTER_TRANSCRIPTS):
                yield Path(dirpath) / name


def libri_speaker(utt_id: str) -> str:
    """The speaker in a LibriSpeech (``19-198-0001``) or LibriTTS (``19_198_000000_000000``) id."""
    return re.split(r"[-_]", utt_id, maxsplit=1)[0]
