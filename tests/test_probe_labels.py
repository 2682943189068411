"""Probe labels: transcript formats, label files, phone sequences, frame targets, missing labels, corpus files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.measure.alignments import Segment, load_alignments, write_segments_tsv
from speechunits.measure.textgrid import Tier, fill_tier, write_textgrid
from speechunits.probe.labels import (
    IGNORE_INDEX,
    TASKS,
    find_label_files,
    frame_targets,
    load_task_labels,
    phone_sequences,
    read_phone_transcripts,
    read_transcripts,
    read_utterance_labels,
)
from speechunits.probe.vocab import class_vocabulary

EXPECTED_TEXT = {"spk1_0000": "Hello there, world.", "spk2_0001": "It's fine", "u3": ""}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tasks() -> None:
    assert TASKS == ("phones", "asr", "speaker", "classify", "frames", "verify", "slots", "diarize", "enhance", "separate")


def test_read_transcripts_tsv(tmp_path: Path) -> None:
    path = _write(tmp_path / "text.tsv", "spk1_0000\tHello there, world.\r\n\nspk2_0001\tIt's  fine\nu3\t\n")
    assert read_transcripts(path) == EXPECTED_TEXT


def test_read_transcripts_jsonl(tmp_path: Path) -> None:
    lines = [{"id": "spk1_0000", "path": "a.wav", "text": "Hello there, world."},
             {"id": "spk2_0001", "path": "b.wav", "text": "It's fine", "speaker": "spk2"},
             {"path": "wavs/u3.flac", "text": ""},  # id from the path, as open_corpus does
             {"id": "u4", "path": "d.wav"}]  # no transcript: left out (reported missing later)
    path = _write(tmp_path / "manifest.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    assert read_transcripts(path) == EXPECTED_TEXT


def test_read_transcripts_kaldi(tmp_path: Path) -> None:
    path = _write(tmp_path / "text", "spk1_0000 Hello there, world.\nspk2_0001\tIt's   fine\nu3\n")
    assert read_transcripts(path) == EXPECTED_TEXT


@pytest.mark.parametrize("name, text, line, match", [
    ("text.tsv", "a\thello\nb hello\n", 2, "expected utt<TAB>text"),
    ("text.tsv", "a\thello\tworld\n", 1, "expected utt<TAB>text"),
    ("text.tsv", "a\thi\n\na\tho\n", 3, "'a' listed twice"),
    ("text", "a hi\nb ho\na again\n", 3, "'a' listed twice"),
    ("m.jsonl", '{"id": "a", "text": "hi"}\n{"id": "b", "text": \n', 2, "not valid JSON"),
    ("m.jsonl", '["a", "hi"]\n', 1, "expected a JSON object"),
    ("m.jsonl", '{"id": "a", "text": 3}\n', 1, "'text' must be a string"),
    ("m.jsonl", '{"text": "hi"}\n', 1, "neither 'id' nor an audio path"),
])
def test_malformed_transcripts_name_file_and_line(tmp_path: Path, name: str, text: str, line: int,
                                                  match: str) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(SpeechUnitsError, match=match) as raised:
        read_transcripts(path)
    assert str(raised.value).startswith(f"{path}:{line}: ")


def test_transcript_file_problems(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="not found"):
        read_transcripts(tmp_path / "text.tsv")
    with pytest.raises(SpeechUnitsError, match="empty transcript file"):
        read_transcripts(_write(tmp_path / "text", "\n\n"))
    (tmp_path / "latin1.tsv").write_bytes("a\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(SpeechUnitsError, match="not UTF-8"):
        read_transcripts(tmp_path / "latin1.tsv")
    with pytest.raises(SpeechUnitsError, match="no transcripts"):
        read_transcripts(_write(tmp_path / "m.jsonl", '{"id": "a"}\n'))


def test_read_utterance_labels(tmp_path: Path) -> None:
    path = _write(tmp_path / "emotion.tsv", "\ufeffu1\thappy\nu2\tsad \n\nu3\thappy\n")  # a spreadsheet's BOM
    assert read_utterance_labels(path) == {"u1": "happy", "u2": "sad", "u3": "happy"}
    _write(path, "u1\thappy\nu2\t\n")
    with pytest.raises(SpeechUnitsError, match=r":2: expected utt<TAB>label"):
        read_utterance_labels(path)


def test_phone_sequences_from_tsv_and_textgrids(tmp_path: Path) -> None:
    alignments = {
        "u1": [Segment(0.0, 0.1, "sil"), Segment(0.1, 0.2, "hh"), Segment(0.2, 0.3, "ah"), Segment(0.3, 0.35, "sp"),
               Segment(0.35, 0.4, "l"), Segment(0.4, 0.45, "l"), Segment(0.45, 0.6, "SIL")],
        "u2": [Segment(0.0, 0.1, "_:"), Segment(0.1, 0.2, "spn"), Segment(0.2, 0.3, "k")],
    }
    write_segments_tsv(tmp_path / "phones.tsv", alignments)
    expected = {"u1": ["hh", "ah", "l", "l"], "u2": ["k"]}  # repeated phones kept
    assert phone_sequences(load_alignments(tmp_path / "phones.tsv")) == expected
    grids = tmp_path / "textgrids"
    grids.mkdir()
    for utt, segs in alignments.items():
        spoken = [(s.start, s.end, s.label) for s in segs if s.label not in ("sil", "SIL")]
        write_textgrid(grids / f"{utt}.TextGrid", [Tier("phones", 0.0, 0.6, fill_tier(spoken, 0.0, 0.6))])
    assert phone_sequences(load_alignments(grids)) == expected  # empty intervals are silence
    assert phone_sequences(alignments, drop=("sil",)) == {"u1": ["hh", "ah", "sp", "l", "l"],
                                                          "u2": ["_:", "spn", "k"]}


def test_read_phone_transcripts(tmp_path: Path) -> None:
    path = _write(tmp_path / "phones.txt", "u1\tsil hh ah  l l sil\nu2\t\n")
    assert read_phone_transcripts(path) == {"u1": ["hh", "ah", "l", "l"], "u2": []}
    _write(path, "u1 hh ah\n")
    with pytest.raises(SpeechUnitsError, match=r":1: expected utt<TAB>p1 p2"):
        read_phone_transcripts(path)


def test_frame_targets_by_hand() -> None:
    # 20 ms frames centred at 0.01, 0.03, ...: a covers 5 centres, sil 7, b 3, and 5 centres lie past the end.
    segments = [Segment(0.0, 0.1, "a"), Segment(0.1, 0.24, "sil"), Segment(0.24, 0.3, "b")]
    targets = frame_targets({"u": segments, "v": segments}, {"u": 20}, frame_rate=50.0, frame_offset_s=0.01)
    assert list(targets) == ["u"]  # only utterances with a frame count
    a, b, sil = 0, 1, 2  # sorted class vocabulary
    expected = [a] * 5 + [sil] * 7 + [b] * 3 + [IGNORE_INDEX] * 5
    np.testing.assert_array_equal(targets["u"], np.array(expected))
    assert targets["u"].dtype == np.int64
    with pytest.raises(SpeechUnitsError, match="no label 'sil'"):
        frame_targets({"u": segments}, {"u": 3}, 50.0, 0.01, vocabulary=class_vocabulary(["a", "b"]))


def test_missing_labels_are_listed_and_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "text.tsv", "u1\tone\nu3\tthree\nother\tnot in the corpus\n")
    result = load_task_labels("asr", ["u1", "u2", "u3", "u4"], transcripts=path)
    assert result.labels == {"u1": "one", "u3": "three"}
    assert list(result.labels) == ["u1", "u3"]
    assert result.missing == ["u2", "u4"]
    assert result.unused == ["other"]
    assert result.source == str(path)


def test_no_label_at_all_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "speakers.tsv", "wavs/c\tspk1\nwavs/d\tspk2\n")
    with pytest.raises(SpeechUnitsError, match="none of the corpus's 2 utterances has a speaker label") as raised:
        load_task_labels("speaker", ["a", "b"], speakers=path)
    assert str(raised.value).startswith(str(path))
    assert "'wavs/c'" in str(raised.value) and "'a'" in str(raised.value)  # shows ids of both sides


def test_labels_named_by_file_name_match_ids_with_a_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "speakers.tsv", "wavs/a\tspk1\nwavs/b\tspk2\n")
    found = load_task_labels("speaker", ["a", "b", "c"], speakers=path)
    assert found.labels == {"a": "spk1", "b": "spk2"} and found.missing == ["c"] and found.unused == []


def test_load_task_labels_each_task(tmp_path: Path) -> None:
    segs = {"u1": [Segment(0.0, 0.1, "sil"), Segment(0.1, 0.2, "k"), Segment(0.2, 0.4, "ae")],
            "u2": [Segment(0.0, 0.2, "t")]}
    write_segments_tsv(tmp_path / "phones.tsv", segs)
    ids = ["u1", "u2"]
    assert load_task_labels("phones", ids, alignments=tmp_path / "phones.tsv").labels == {"u1": ["k", "ae"],
                                                                                          "u2": ["t"]}
    assert load_task_labels("phones", ids, alignments=segs).labels["u1"] == ["k", "ae"]
    phone_text = _write(tmp_path / "phones.txt", "u1\tk ae\n")
    assert load_task_labels("phones", ids, labels=phone_text).missing == ["u2"]
    speakers = load_task_labels("speaker", ids, speakers={"u1": "s1", "u2": "s2"})
    assert speakers.labels == {"u1": "s1", "u2": "s2"}
    classes = load_task_labels("classify", ids, labels=_write(tmp_path / "kw.tsv", "u2\tyes\n"))
    assert classes.labels == {"u2": "yes"} and classes.missing == ["u1"]
    frames = load_task_labels("frames", ids, alignments=segs, frame_rate=10.0, frame_offset_s=0.05,
                              num_frames={"u1": 4})
    assert frames.vocabulary is not None and frames.vocabulary.tokens == ("ae", "k", "sil", "t")
    np.testing.assert_array_equal(frames.labels["u1"], [2, 1, 0, 0])
    assert frames.missing == ["u2"]  # no frame count
    trained = class_vocabulary(["ae", "k", "sil", "t", "zh"])  # a trained probe's vocabulary
    again = load_task_labels("frames", ids, alignments=segs, frame_rate=10.0, frame_offset_s=0.05,
                             num_frames={"u1": 4}, vocabulary=trained)
    assert again.vocabulary is trained
    np.testing.assert_array_equal(again.labels["u1"], [2, 1, 0, 0])


def test_load_task_labels_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="unknown probe task 'pr'"):
        load_task_labels("pr", ["u1"])
    for task, match in [("phones", "needs alignments"), ("asr", "needs transcripts"),
                        ("speaker", "needs a speakers file"), ("classify", "needs a label file"),
                        ("frames", "needs alignments"), ("diarize", "needs speaker turns")]:
        with pytest.raises(SpeechUnitsError, match=match):
            load_task_labels(task, ["u1"])
    with pytest.raises(SpeechUnitsError, match="frame rate, frame offset and frame counts"):
        load_task_labels("frames", ["u1"], alignments={"u1": [Segment(0, 1, "a")]})


def _fake_synth_corpus(root: Path) -> Path:
    """The files `speechunits synth` writes (see synth/corpus.py), without audio."""
    (root / "wavs").mkdir(parents=True)
    (root / "textgrids").mkdir()
    _write(root / "manifest.tsv", f"{root / 'wavs'}\nspk_0000.wav\t16000\n")
    write_segments_tsv(root / "phones.tsv", {"spk_0000": [Segment(0.0, 0.5, "a")]})
    _write(root / "text.tsv", "spk_0000\tA.\n")
    _write(root / "speakers.tsv", "spk_0000\tspk\n")
    _write(root / "corpus.json", "{}\n")
    return root


def test_find_label_files_of_a_synth_corpus(tmp_path: Path) -> None:
    root = _fake_synth_corpus(tmp_path / "corpus")
    expected = {"alignments": root / "phones.tsv", "transcripts": root / "text.tsv",
                "speakers": root / "speakers.tsv"}
    assert find_label_files(root) == expected
    assert find_label_files(root / "manifest.tsv") == expected
    assert find_label_files(root / "wavs") == expected  # the audio directory of a synth corpus
    (root / "text.tsv").unlink()
    _write(root / "text", "spk_0000 A.\n")
    assert find_label_files(root)["transcripts"] == root / "text"
    (root / "phones.tsv").unlink()
    assert find_label_files(root)["alignments"] == root / "textgrids"


def test_find_label_files_prefers_a_jsonl_manifest_with_text(tmp_path: Path) -> None:
    root = _fake_synth_corpus(tmp_path / "corpus")
    manifest = _write(root / "manifest.jsonl", json.dumps({"id": "spk_0000", "path": "wavs/spk_0000.wav",
                                                           "text": "A."}) + "\n")
    assert find_label_files(manifest)["transcripts"] == manifest
    plain = _write(root / "plain.jsonl", json.dumps({"id": "spk_0000", "path": "wavs/spk_0000.wav"}) + "\n")
    assert find_label_files(plain)["transcripts"] == root / "text.tsv"


def test_find_label_files_does_not_climb_out_of_a_plain_directory(tmp_path: Path) -> None:
    _write(tmp_path / "speakers.tsv", "x\ty\n")
    (tmp_path / "audio").mkdir()
    assert find_label_files(tmp_path / "audio") == {}


def test_labels_of_a_real_synth_corpus(tmp_path: Path) -> None:
    """The synth corpus's own files, read through open_corpus ids: every utterance labelled."""
    pytest.importorskip("espeakng_loader")
    from speechunits.corpus import open_corpus
    from speechunits.probe.splits import make_split
    from speechunits.synth.testing import small_corpus

    root = small_corpus(tmp_path, minutes=0.5, speakers=3)
    ids = [u.id for u in open_corpus(root / "manifest.tsv")]
    files = find_label_files(root / "manifest.tsv")
    phones = load_task_labels("phones", ids, alignments=files["alignments"])
    text = load_task_labels("asr", ids, transcripts=files["transcripts"])
    speakers = load_task_labels("speaker", ids, speakers=files["speakers"])
    for labels in (phones, text, speakers):
        assert labels.missing == [] and list(labels.labels) == ids
    assert all(p and "sil" not in p for p in phones.labels.values())
    split = make_split(ids, by="speaker", speakers=speakers.labels)
    assert len({speakers.labels[u] for u in split.test}) == 1
