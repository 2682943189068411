"""A ``datasets`` AudioFolder as input: audio files with ``metadata.csv`` or ``metadata.jsonl`` beside them.

The expectation is hand-written: the metadata names each file by ``file_name`` (relative to the
metadata file) and carries the transcript, speaker and class label the probes must read.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import probes_train_on
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files, read_transcripts, read_utterance_labels
from speechunits.synth.testing import small_corpus

CSV = ('file_name,transcription,speaker_id,label\n'
       'a.wav,"hello, there",7,yes\n'
       'b.wav,bye,8,no\n'
       'sub/c.wav,see,7,yes\n')


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    (root / "sub").mkdir(parents=True)
    for number, name in enumerate(["a", "b", "sub/c"]):
        sf.write(root / f"{name}.wav", np.zeros(1600 + number), 16000)
    return root


def test_metadata_csv_labels_the_scanned_files(folder: Path) -> None:
    (folder / "metadata.csv").write_text(CSV)
    assert [u.id for u in open_corpus(folder)] == ["a", "b", "sub/c"]
    csv = folder / "metadata.csv"
    assert find_label_files(folder) == {"transcripts": csv, "speakers": csv, "labels": csv}
    assert read_transcripts(csv) == {"a": "hello, there", "b": "bye", "sub/c": "see"}  # the quoted comma kept
    assert read_speakers(csv) == {"a": "7", "b": "8", "sub/c": "7"}
    assert read_utterance_labels(csv) == {"a": "yes", "b": "no", "sub/c": "yes"}
    # the metadata file is also a manifest of the folder: the same ids and files
    listed = list(open_corpus(csv))
    assert [(u.id, Path(u.path)) for u in listed] == [(u.id, Path(u.path)) for u in open_corpus(folder)]


def test_metadata_jsonl_with_a_transcription_field(folder: Path) -> None:
    rows = [{"file_name": "a.wav", "transcription": "hi"}, {"file_name": "sub/c.wav", "transcription": "see"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    jsonl = folder / "metadata.jsonl"
    assert find_label_files(folder) == {"transcripts": jsonl}
    assert read_transcripts(jsonl) == {"a": "hi", "sub/c": "see"}
    assert [u.id for u in open_corpus(jsonl)] == ["a", "sub/c"]


def test_bad_metadata_is_named(folder: Path) -> None:
    bad = folder / "metadata.csv"
    bad.write_text("audio,transcription\na.wav,hi\n")
    with pytest.raises(SpeechUnitsError, match=r"not an audio directory.*CSV manifest \(a 'file_name' or 'path'"):
        open_corpus(bad)
    with pytest.raises(SpeechUnitsError, match=r"needs a 'file_name' or 'path' column; its columns: audio, transcription"):
        read_transcripts(bad)
    bad.write_text("file_name,transcription\na.wav,hi,extra\n")
    with pytest.raises(SpeechUnitsError, match=r"metadata.csv:2: more cells than the header"):
        read_transcripts(bad)


def test_probes_train_on_an_audiofolder(tmp_path: Path) -> None:
    corpus = small_corpus(tmp_path / "src", minutes=0.6, speakers=2)
    root = tmp_path / "folder"
    shutil.copytree(corpus / "wavs", root / "clips")
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    speakers = read_speakers(corpus / "speakers.tsv")
    names = sorted(set(speakers.values()))
    lines = ["file_name,sentence,speaker,label"]
    lines += [f'clips/{u}.wav,"{t}",{speakers[u]},{"first" if speakers[u] == names[0] else "second"}'
              for u, t in sorted(texts.items())]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    probes_train_on(root, tmp_path, {"asr": [], "speaker": [], "classify": []})  # classify: its 'label', unasked
