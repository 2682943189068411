"""VoxCeleb1's layout and SUPERB's speaker-identification split (``iden_split.txt``).

The expectation is the hand-made tree ``wav/idNNNNN/VIDEO/NNNNN.wav``: each file's speaker is its
first folder; ``iden_split.txt`` (``1|2|3 PATH``) says which files are training, dev and test.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import probes_train_on
from speechunits.corpus import is_voxceleb_tree, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files
from speechunits.probe.splits import split_from_file
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def vox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(wav root, iden_split.txt, {id: part}): two synthetic speakers as id10001 and id10002, two videos each."""
    corpus = small_corpus(tmp_path_factory.mktemp("vox-src"), minutes=0.6, speakers=2)
    speakers = read_speakers(corpus / "speakers.tsv")
    names = dict(zip(sorted(set(speakers.values())), ["id10001", "id10002"]))
    root = tmp_path_factory.mktemp("vox1") / "wav"
    parts: dict[str, str] = {}
    lines = []
    for n, (utt, speaker) in enumerate(sorted(speakers.items())):
        rel = f"{names[speaker]}/video{n % 2}/{n:05d}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / "wavs" / f"{utt}.wav", root / rel)
        part = "3" if n % 5 == 4 else "2" if n % 5 == 3 else "1"
        lines.append(f"{part} {rel}")
        parts[rel[:-4]] = {"1": "train", "2": "dev", "3": "test"}[part]
    split_file = root.parent / "iden_split.txt"
    split_file.write_text("\n".join(lines) + "\n")
    return root, split_file, parts


def test_speakers_are_the_first_folders_and_iden_split_the_split(vox) -> None:
    root, split_file, parts = vox
    assert is_voxceleb_tree(root) and not is_voxceleb_tree(root.parent)
    assert find_label_files(root)["speakers"] == root
    assert read_speakers(root) == {utt: utt.split("/")[0] for utt in parts}
    split = split_from_file(split_file)
    assert {u: "train" for u in split.train} | {u: "dev" for u in split.dev} | {u: "test" for u in split.test} == parts
    assert split.info["format"] == "voxceleb"


def test_a_speaker_probe_trains_on_the_iden_split(vox, tmp_path: Path) -> None:
    root, split_file, parts = vox
    probes_train_on(root, tmp_path, {"speaker": ["--split-file", str(split_file)]})
    saved = json.loads((tmp_path / "speaker" / "split.json").read_text())
    assert sorted(saved["test"]) == sorted(u for u, p in parts.items() if p == "test")


def test_a_bad_iden_split_line_is_named(vox, tmp_path: Path) -> None:
    bad = tmp_path / "iden_split.txt"
    bad.write_text("1 id10001/video0/00000.wav\n4 id10001/video0/00001.wav\n")
    with pytest.raises(SpeechUnitsError, match=r"iden_split.txt:2: expected VoxCeleb's '1\|2\|3 PATH'"):
        split_from_file(bad)
