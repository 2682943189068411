"""Speech Commands' layout: keyword folders, ``_background_noise_``, and its dev/test file lists.

The expectation is the hand-made tree: each file's folder is its label, the lists say which
files are dev and test, every other labelled file is training (SUPERB's keyword-spotting split);
the noise recording is read as its one-second clips (the samples of the file, cut by hand), which
are ``_silence_``; SUPERB's twelve classes map the other words to ``_unknown_``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.audio import Audio
from speechunits.cli.main import main
from speechunits.corpus import open_corpus, read_speakers
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
    (root / "_background_noise_").mkdir()  # 10.5 s: ten whole one-second clips
    noise = np.random.default_rng(0).standard_normal(int(10.5 * 16000)).astype(np.float32) * 0.1
    sf.write(root / "_background_noise_" / "white_noise.wav", noise, 16000)
    (root / "marvin").mkdir()  # a word outside SUPERB's ten
    shutil.copy(corpus / "wavs" / f"{sorted(speakers)[2]}.wav", root / "marvin" / "m_nohash_0.wav")
    (root / "_silence_").mkdir()  # as in SUPERB's test set (speech_commands_test_set_v0.01)
    shutil.copy(corpus / "wavs" / f"{sorted(speakers)[1]}.wav", root / "_silence_" / "silence_0.wav")
    files = {w: sorted(p.relative_to(root).as_posix() for p in (root / w).glob("*.wav")) for w in ("yes", "no")}
    (root / "validation_list.txt").write_text("".join(f"{files[w][0]}\n" for w in files))
    (root / "testing_list.txt").write_text("".join(f"{files[w][1]}\n" for w in files))
    return root


def test_folders_are_the_labels_and_the_lists_the_split(tree: Path) -> None:
    labels = read_utterance_labels(tree)
    files = sorted(p.relative_to(tree).with_suffix("").as_posix()
                   for w in ("yes", "no", "_silence_", "marvin") for p in (tree / w).glob("*"))
    clips = [f"_background_noise_/white_noise_{k * 100:07d}-{(k + 1) * 100:07d}" for k in range(10)]
    assert labels == {**{f: f.split("/")[0] for f in files}, **{c: "_silence_" for c in clips}}
    assert find_label_files(tree)["labels"] == tree
    split = split_from_lists(tree, list(labels))
    dev = [line[:-4] for line in (tree / "validation_list.txt").read_text().split()]
    test = [line[:-4] for line in (tree / "testing_list.txt").read_text().split()]
    assert sorted(split.dev) == sorted(dev + [clips[8]]) and sorted(split.test) == sorted(test + [clips[9]])
    assert sorted(split.train) == sorted([*(set(files) - set(dev) - set(test)), *clips[:8]])


def test_the_noise_recording_is_read_as_one_second_clips(tree: Path) -> None:
    whole = Audio.load(tree / "_background_noise_" / "white_noise.wav").samples
    clips = [u for u in open_corpus(tree) if u.id.startswith("_background_noise_/")]
    assert len(clips) == 10
    for k, clip in enumerate(clips):
        assert np.array_equal(Audio.load(clip.path).samples, whole[k * 16000:(k + 1) * 16000])


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
    listed = [line[:-4] for line in (tree / "testing_list.txt").read_text().split()]
    assert sorted(saved["test"]) == sorted([*listed, "_background_noise_/white_noise_0000900-0001000"])
    assert json.loads((out / "probe.json").read_text())["missing_labels"] == 0  # noise clips are _silence_


def test_superb_keywords_map_the_other_words_to_unknown(tree: Path, tmp_path: Path, capsys) -> None:
    from speechunits.probe.classes import ClassMap

    superb = ClassMap.parse("superb-ks")
    assert superb.apply({"a": "yes", "b": "marvin", "c": "_silence_", "d": "_unknown_"}) == \
        {"a": "yes", "b": "_unknown_", "c": "_silence_", "d": "_unknown_"}
    out = tmp_path / "ks12"
    assert main(["probe", "train", "classify", str(tree), "--encoder", "mfcc", "-o", str(out), "--classes", "superb-ks",
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    meta = json.loads((out / "probe.json").read_text())
    assert meta["classes"] == "yes,no,up,down,left,right,on,off,stop,go,_silence_,*=_unknown_"
    assert meta["missing_labels"] == 0
    # a test set laid out as SUPERB's: the probe's classes are applied to its folders too
    test_set = tmp_path / "speech_commands_test_set_v0.01"
    for word, source in (("yes", "yes"), ("cat", "marvin"), ("_silence_", "_silence_")):
        (test_set / word).mkdir(parents=True)
        for wav in (tree / source).glob("*.wav"):
            shutil.copy(wav, test_set / word / wav.name)
    capsys.readouterr()
    assert main(["probe", "eval", str(out), str(test_set), "--encoder", "mfcc", "--labels", str(test_set),
                 "--json", "--device", "cpu", "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["utterances"] == len(list(test_set.rglob("*.wav"))) and scored["missing_labels"] == 0
    assert scored["unknown_classes"] == {}  # 'cat' was scored as _unknown_, a class of the probe
    with pytest.raises(SpeechUnitsError, match=r"--classes applies to task 'classify', not 'speaker'"):
        from speechunits.probe.train import train_probe_on_corpus

        train_probe_on_corpus("speaker", tree, None, tmp_path / "x", classes="superb-ks")
