"""IEMOCAP's layout (Busso et al. 2008) and SUPERB's emotion-recognition folds on it.

An IEMOCAP release (``IEMOCAP_full_release/``) holds five sessions, each with its utterances in
``SessionN/sentences/wav/DIALOG/UTT.wav``, the whole dialogues in ``SessionN/dialog/wav/`` and the
annotators' consensus in ``SessionN/dialog/EmoEvaluation/DIALOG.txt`` (lines
``[START - END]<TAB>UTT<TAB>EMOTION<TAB>[V, A, D]``). Scanned as a corpus, the release gives its
utterances only (the dialogues are the same speech, longer); each utterance's label is its emotion
(``neu``, ``hap``, ``exc``, ``ang``, ``sad``, ``fru``, ``xxx`` ...: SUPERB keeps four, ``--classes
superb-er``) and its speaker the session and the actor's gender in its name (``Ses01F_impro01_M003``
is spoken by ``Ses01M``). SUPERB's folds test on one session and train on the other four, a random
fifth of them serving as dev (:func:`session_fold_split`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from speechunits.errors import SpeechUnitsError

_SESSION_DIR = re.compile(r"^Session(?P<n>\d+)$")
_EVALUATION_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<utt>\S+)\t(?P<emotion>\S+)\t")
_UTTERANCE = re.compile(r"^Ses(?P<session>\d+)[FM]_.*_(?P<gender>[FM])\d+$")
SENTENCES = Path("sentences") / "wav"
EVALUATIONS = Path("dialog") / "EmoEvaluation"


def sessions(root: str | os.PathLike[str]) -> list[Path]:
    """The ``SessionN`` folders of an IEMOCAP release that hold ``sentences/wav`` (``[]``: not a release)."""
    path = Path(root)
    if not path.is_dir():
        return []
    return sorted((d for d in path.iterdir() if _SESSION_DIR.match(d.name) and (d / SENTENCES).is_dir()),
                  key=lambda d: int(_SESSION_DIR.match(d.name)["n"]))


def is_iemocap_tree(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is an IEMOCAP release (see the module docstring)."""
    return bool(sessions(root))


def read_emotions(root: str | os.PathLike[str]) -> dict[str, str]:
    """``{utterance name: emotion}`` from every session's ``dialog/EmoEvaluation/*.txt``.

    Raises:
        SpeechUnitsError: no evaluation file, an utterance twice (naming ``file:line``).
    """
    from speechunits.files import iter_text_lines

    result: dict[str, str] = {}
    files = [f for session in sessions(root) for f in sorted((session / EVALUATIONS).glob("*.txt"))]
    if not files:
        raise SpeechUnitsError(f"{root}: no SessionN/{EVALUATIONS.as_posix()}/*.txt (IEMOCAP's emotion labels)")
    for file in files:
        for line_no, line in iter_text_lines(file, "IEMOCAP evaluation"):
            hit = _EVALUATION_LINE.match(line)
            if hit is None:
                continue  # the annotators' individual lines (C-E1:, A-F2: ...) and blank separators
            if hit["utt"] in result:
                raise SpeechUnitsError(f"{file}:{line_no}: utterance {hit['utt']!r} is also labelled elsewhere")
            result[hit["utt"]] = hit["emotion"]
    return result


def speaker_of(utterance: str) -> str | None:
    """``Ses01M`` for ``Ses01F_impro01_M003`` (session and the speaking actor's gender), else ``None``."""
    hit = _UTTERANCE.match(Path(utterance).name)
    return f"Ses{hit['session']}{hit['gender']}" if hit else None


def session_of(utterance: str) -> int | None:
    """The session number of an utterance id or name (``.../Ses03M_script01_1_F002`` → 3), else ``None``."""
    hit = _UTTERANCE.match(Path(utterance).name)
    return int(hit["session"]) if hit else None


def session_fold_split(ids: Sequence[str], fold: int, *, dev_share: float = 0.2, seed: int = 0):
    """SUPERB's emotion fold ``fold``: session ``fold`` is the test part; the other sessions'
    utterances are shuffled (``seed``) and ``dev_share`` of them is dev, the rest training
    (:func:`speechunits.probe.splits.split_by_fold`).

    Raises:
        SpeechUnitsError: a fold outside the sessions present, ids that name no session.
    """
    from speechunits.probe.splits import split_by_fold

    session = {utt: session_of(utt) for utt in ids}
    unknown = [utt for utt, s in session.items() if s is None]
    if unknown:
        raise SpeechUnitsError(f"--fold: {len(unknown)} utterances name no IEMOCAP session (e.g. {unknown[0]!r})")
    return split_by_fold(ids, session, fold, dev_share=dev_share, seed=seed, by="session")
