"""Speech Commands' layout: keyword folders, ``_background_noise_``, and its dev/test file lists.

The expectation is the hand-made tree: each file's folder is its label, the lists say which
files are dev and test, every other labelled file is training (SUPERB's keyword-spotting split).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechunits.cli.main import main
from speechunits.corpus import read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files, read_utterance_labels
from speechunits.probe.splits import split_from_lists
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``yes/`` and ``no/`` hold one synthetic speaker each; the lists name two files of each folder."""
    corpus = small_corpus(tmp_path_factory.mktemp("sc-src"), minutes=0.6, speakers=2)
    speakers = read_speakers(corpus / "speakers.tsv")
    word = dict(zip(sorted(set(speakers.values())), ["yes", "no"]))
    root = tmp_path_factory.mktemp("sc") / "speech_commands_v0.01"
    for utt, speaker in sorted(speakers.items()):
        (root / word[speaker]).mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / "wavs" / f"{utt}.wav", root / word[speaker] / f"{utt}_nohash_0.wav")
    (root / "_background_noise_").mkdir()
    shutil.copy(corpus / "wavs" / f"{sorted(speakers)[0]}.wav", root / "_background_noise_" / "white_noise.wav")
    (root / "_silence_").mkdir()  # as in SUPERB's test set (speech_commands_test_set_v0.01)
    shutil.copy(corpus / "wavs" / f"{sorted(speakers)[1]}.wav", root / "_silence_" / "silence_0.wav")
    files = {w: sorted(p.relative_to(root).as_posix() for p in (root / w).glob("*.wav")) for w in ("yes", "no")}
    (root / "validation_list.txt").write_text("".join(f"{files[w][0]}\n" for w in files))
    (root / "testing_list.txt").write_text("".join(f"{files[w][1]}\n" for w in files))
    return root


def test_folders_are_the_labels_and_the_lists_the_split(tree: Path) -> None:
    labels = read_utterance_labels(tree)
    files = sorted(p.relative_to(tree).with_suffix("").as_posix()
                   for w in ("yes", "no", "_silence_") for p in (tree / w).glob("*"))
    assert labels == {f: f.split("/")[0] for f in files}  # _background_noise_ gives no label
    assert find_label_files(tree)["labels"] == tree
    split = split_from_lists(tree, list(labels))
    dev = [line[:-4] for line in (tree / "validation_list.txt").read_text().split()]
    test = [line[:-4] for line in (tree / "testing_list.txt").read_text().split()]
    assert sorted(split.dev) == sorted(dev) and sorted(split.test) == sorted(test)
    assert sorted(split.train) == sorted(set(files) - set(dev) - set(test))


def test_a_file_in_both_lists_is_named(tree: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sc"
    shutil.copytree(tree, copy)
    listed = (copy / "validation_list.txt").read_text().split()[0]
    (copy / "testing_list.txt").write_text(listed + "\n")
    with pytest.raises(SpeechUnitsError, match=rf"testing_list.txt:1: '{listed}' is also in validation_list.txt"):
        split_from_lists(copy, list(read_utterance_labels(copy)))


def test_keyword_probe_trains_on_the_tree_with_its_split(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "ks"
    assert main(["probe", "train", "classify", str(tree), "--encoder", "mfcc", "-o", str(out),
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    saved = json.loads((out / "split.json").read_text())
    assert saved["info"]["by"] == "lists"
    assert sorted(saved["test"]) == sorted(line[:-4] for line in (tree / "testing_list.txt").read_text().split())
    assert json.loads((out / "probe.json").read_text())["missing_labels"] == 1  # the background-noise file
