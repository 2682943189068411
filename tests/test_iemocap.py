"""IEMOCAP's layout and SUPERB's emotion folds, on a hand-made release.

Three sessions, each with utterances in ``sentences/wav/DIALOG/UTT.wav``, a whole-dialogue recording in
``dialog/wav/`` (not an utterance) and ``dialog/EmoEvaluation/DIALOG.txt`` written in IEMOCAP's format
(consensus lines plus the annotators' lines, which are not labels).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.layouts.iemocap import session_fold_split
from speechunits.probe.labels import find_label_files, read_utterance_labels
from speechunits.synth.testing import small_corpus

EMOTIONS = ["neu", "exc", "ang", "sad", "fru", "hap"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    corpus = small_corpus(tmp_path_factory.mktemp("iemocap-src"), minutes=0.6, speakers=2)
    wavs = sorted((corpus / "wavs").glob("*.wav"))
    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    emotion: dict[str, str] = {}
    for n, wav in enumerate(wavs):
        session, gender = n % 3 + 1, "FM"[n % 2]
        dialog = f"Ses0{session}F_impro0{n % 2 + 1}"
        utt = f"{dialog}_{gender}{n:03d}"
        target = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utt}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, target)
        emotion[utt] = EMOTIONS[n % len(EMOTIONS)]
        evaluation = root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        evaluation.parent.mkdir(parents=True, exist_ok=True)
        with evaluation.open("a") as handle:
            handle.write(f"% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" if handle.tell() == 0 else "")
            handle.write(f"[{n:.4f} - {n + 1.5:.4f}]\t{utt}\t{emotion[utt]}\t[2.5000, 3.0000, 3.5000]\n")
            handle.write(f"C-E1:\tNeutral;\t()\nA-E2:\tval 3; act 2; dom  2;\t()\n\n")
        dialogue = root / f"Session{session}" / "dialog" / "wav" / f"{dialog}.wav"
        dialogue.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, dialogue)
    return root, emotion


def test_a_release_is_its_utterances_with_their_emotions_and_actors(release) -> None:
    root, emotion = release
    utts = list(open_corpus(root))
    assert sorted(Path(u.id).name for u in utts) == sorted(emotion)  # the dialogue recordings are left out
    assert all(u.id.split("/")[1:3] == ["sentences", "wav"] for u in utts)
    assert find_label_files(root) == {"labels": root, "speakers": root}
    assert read_utterance_labels(root) == emotion
    speakers = read_speakers(root)
    assert {Path(u).name: s for u, s in speakers.items()} == {u: u[:5] + u.rsplit("_", 1)[1][0] for u in emotion}


def test_superb_emotion_fold_tests_on_one_session(release, tmp_path: Path) -> None:
    root, emotion = release
    assert main(["probe", "train", "classify", str(root), "--encoder", "mfcc", "-o", str(tmp_path / "classify"),
                 "--classes", "superb-er", "--fold", "2", "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    saved = json.loads((tmp_path / "classify" / "split.json").read_text())
    kept = {u for u, e in emotion.items() if e in ("neu", "exc", "hap", "ang", "sad")}
    assert saved["info"]["by"] == "session" and saved["info"]["fold"] == "2"
    assert sorted(Path(u).name for u in saved["test"]) == sorted(u for u in kept if u.startswith("Ses02"))
    others = [Path(u).name for u in saved["train"] + saved["dev"]]
    assert sorted(others) == sorted(u for u in kept if not u.startswith("Ses02"))
    assert len(saved["dev"]) == round(0.2 * len(others))
    meta = json.loads((tmp_path / "classify" / "probe.json").read_text())
    assert meta["missing_labels"] == len(emotion) - len(kept)  # fru dropped by superb-er


def test_a_fold_without_its_session_is_named(release) -> None:
    root, emotion = release
    ids = [u.id for u in open_corpus(root)]
    with pytest.raises(SpeechUnitsError, match=r"--fold 5: the corpus.s sessions are 1, 2, 3"):
        session_fold_split(ids, 5)
    with pytest.raises(SpeechUnitsError, match=r"name no IEMOCAP session"):
        session_fold_split(["elsewhere/x"], 1)
