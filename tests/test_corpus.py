"""Corpus discovery, manifests, ids and sharding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechunits.corpus import open_corpus, open_corpus_via_manifest, parse_shard, write_tsv, write_tsv_subset
from speechunits.errors import SpeechUnitsError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_directory_is_recursive_sorted_with_relative_ids(tmp_path: Path) -> None:
    for rel in ["b.wav", "a/z.flac", "a/b/c.mp3", "notes.txt", "c.ogg"]:
        _touch(tmp_path / rel)
    ids = [u.id for u in open_corpus(tmp_path)]
    # Exact order: files of a directory (sorted) before its sorted subdirectories (os.walk top-down).
    assert ids == ["b", "c", "a/z", "a/b/c"]


def test_a_synth_folder_is_read_through_its_manifest(tmp_path: Path) -> None:
    """A folder holding manifest.tsv (speechunits synth's layout) gives the manifest's ids, which its
    label files use; any other folder or path reads as open_corpus reads it."""
    for name in ("en00_0000", "en01_0000"):
        _touch(tmp_path / "corpus" / "wavs" / f"{name}.wav")
    assert [u.id for u in open_corpus(tmp_path / "corpus")] == ["wavs/en00_0000", "wavs/en01_0000"]
    (tmp_path / "corpus" / "manifest.tsv").write_text("wavs\nen00_0000.wav\t16000\nen01_0000.wav\t16000\n")
    via = open_corpus_via_manifest(tmp_path / "corpus")
    assert [u.id for u in via] == [u.id for u in open_corpus(tmp_path / "corpus" / "manifest.tsv")]
    assert [u.id for u in via] == ["en00_0000", "en01_0000"]
    assert [u.path for u in via] == [str(tmp_path / "corpus" / "wavs" / f"{n}.wav") for n in ("en00_0000", "en01_0000")]
    plain = tmp_path / "corpus" / "wavs"
    assert [u.id for u in open_corpus_via_manifest(plain)] == ["en00_0000", "en01_0000"]
    assert [u.id for u in open_corpus_via_manifest(plain / "en00_0000.wav")] == ["en00_0000"]
    with pytest.raises(SpeechUnitsError, match="no such file"):
        open_corpus_via_manifest(tmp_path / "nope")


def test_duplicate_ids_are_an_error_naming_both_files_and_the_fix(tmp_path: Path) -> None:
    _touch(tmp_path / "sub" / "x.wav")
    _touch(tmp_path / "sub" / "x.mp3")
    with pytest.raises(SpeechUnitsError) as err:
        list(open_corpus(tmp_path))
    message = str(err.value)
    assert "utterance id 'sub/x' is claimed by two files" in message
    assert str(tmp_path / "sub" / "x.mp3") in message and str(tmp_path / "sub" / "x.wav") in message
    assert "keep one of them" in message and "manifest" in message
    # Two different files given one id in a manifest: the fix is another id.
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "u", "path": "sub/x.wav"}) + "\n"
                                      + json.dumps({"id": "u", "path": "other.flac"}) + "\n")
    with pytest.raises(SpeechUnitsError, match="'u' is claimed by two files.*own id"):
        list(open_corpus(tmp_path / "m.jsonl"))
    write_tsv(tmp_path / "twice.tsv", str(tmp_path), [("sub/x.wav", 0), ("sub/x.wav", 0)])
    with pytest.raises(SpeechUnitsError, match="lists the file twice"):
        list(open_corpus(tmp_path / "twice.tsv"))


def test_directory_scan_picks_up_sphere_and_raw(tmp_path: Path) -> None:
    for rel in ["a.sph", "b.SPH", "c.raw", "d.pcm", "e.txt"]:
        _touch(tmp_path / rel)
    assert [u.id for u in open_corpus(tmp_path)] == ["a", "b", "c", "d"]
    assert all(u.raw_format is None for u in open_corpus(tmp_path))
    raw = list(open_corpus(tmp_path, raw_format="s16le:8000:2", shard="1/2"))
    assert [u.id for u in raw] == ["b", "d"] and {str(u.raw_format) for u in raw} == {"s16le:8000:2"}
    assert [u.id for u in open_corpus(tmp_path / "c.raw")] == ["c"]


def test_fairseq_tsv_relative_root_and_lengths(tmp_path: Path) -> None:
    write_tsv(tmp_path / "train.tsv", "audio", [("spk1/u1.flac", 16000), ("spk2/u2.wav", 32000)])
    utts = list(open_corpus(tmp_path / "train.tsv"))
    assert [(u.id, u.num_samples) for u in utts] == [("spk1/u1", 16000), ("spk2/u2", 32000)]
    assert utts[0].path == str(tmp_path / "audio" / "spk1/u1.flac")


def test_tsv_subset_keeps_ids_paths_and_lengths_under_a_new_folder(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text("audio\nspk1/u1.flac\t16000\nspk2/u2.wav\nspk1/u3.wav\t8000\n")
    (tmp_path / "out").mkdir()
    written = write_tsv_subset(tmp_path / "m.tsv", {"spk2/u2", "spk1/u3", "not/there"}, tmp_path / "out" / "s.tsv")
    subset = list(open_corpus(tmp_path / "out" / "s.tsv"))
    # Opened from another folder, the relative root "audio" must still point at tmp_path/audio.
    assert written == 2
    assert [(u.id, u.path, u.num_samples) for u in subset] == [
        ("spk2/u2", str((tmp_path / "audio" / "spk2/u2.wav").resolve()), None),
        ("spk1/u3", str((tmp_path / "audio" / "spk1/u3.wav").resolve()), 8000)]
    with pytest.raises(SpeechUnitsError, match="fairseq .tsv"):
        write_tsv_subset(tmp_path / "m.jsonl", {"x"}, tmp_path / "s.tsv")


def test_tsv_bad_length_names_line(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_text("/root\nfoo.wav\tabc\n")
    with pytest.raises(SpeechUnitsError, match=r"m.tsv:2: num_samples 'abc'"):
        list(open_corpus(tmp_path / "m.tsv"))


def test_jsonl_manifest_with_extra_fields(tmp_path: Path) -> None:
    lines = [
        {"id": "u1", "path": "a/1.wav", "speaker": "s1", "num_samples": 10},
        {"path": "/abs/2.wav", "text": "hello"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    utts = list(open_corpus(tmp_path / "m.jsonl"))
    assert utts[0].id == "u1" and utts[0].path == str(tmp_path / "a/1.wav")
    assert utts[0].fields == {"speaker": "s1"} and utts[0].num_samples == 10
    assert utts[1].id == "2" and utts[1].path == "/abs/2.wav" and utts[1].fields == {"text": "hello"}
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(SpeechUnitsError, match="bad.jsonl:1: .*'path'"):
        list(open_corpus(tmp_path / "bad.jsonl"))


def test_shards_are_disjoint_cover_and_compose(tmp_path: Path) -> None:
    for i in range(11):
        _touch(tmp_path / f"u{i:02d}.wav")
    everything = [u.id for u in open_corpus(tmp_path)]
    shards = [[u.id for u in open_corpus(tmp_path, shard=f"{i}/3")] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(everything)
    assert shards[1] == everything[1::3]
    # A shard of a shard is the matching shard of 6.
    nested = [u.id for u in open_corpus(tmp_path, shard="1/3").shard(1, 2)]
    assert nested == everything[4::6]


@pytest.mark.parametrize("spec", ["3/3", "-1/2", "a/b", "1", "0/0"])
def test_bad_shard_specs(spec: str) -> None:
    with pytest.raises(SpeechUnitsError, match="--shard"):
        parse_shard(spec)


def test_missing_and_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="no such file"):
        open_corpus(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("")
    with pytest.raises(SpeechUnitsError, match="not an audio directory"):
        open_corpus(tmp_path / "x.csv")


def test_a_corpus_without_audio_is_refused_but_an_empty_shard_is_not(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(SpeechUnitsError, match=r"empty: no audio files .*\.wav"):
        open_corpus(tmp_path / "empty").require_utterances()
    (tmp_path / "empty.tsv").write_text(f"{tmp_path}\n")  # a fairseq header and no rows
    with pytest.raises(SpeechUnitsError, match="no audio files"):
        open_corpus(tmp_path / "empty.tsv").require_utterances()
    _touch(tmp_path / "one" / "a.wav")
    last_of_three = open_corpus(tmp_path / "one", shard="2/3").require_utterances()
    assert list(last_of_three) == []


@pytest.mark.parametrize("command", [["features", "--encoder", "mfcc"], ["segment"], ["transcribe", "--probe", "p"]])
def test_commands_refuse_a_directory_without_audio(tmp_path: Path, command: list[str], caplog) -> None:
    from speechunits.cli.main import main

    (tmp_path / "in").mkdir()
    argv = [command[0], str(tmp_path / "in"), *command[1:]]
    if command[0] != "transcribe":
        argv += ["-o", str(tmp_path / "out")]
    assert main(argv + ["--quiet"]) == 2
    assert "no audio files" in caplog.text


def test_a_manifest_saved_with_windows_line_ends_or_a_bom_reads_the_same(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_bytes("\ufeff/data/wavs\r\na/x.wav\t16000\r\nb.flac\r\n".encode("utf-8"))
    utts = list(open_corpus(tmp_path / "m.tsv"))
    assert [(u.id, u.path, u.num_samples) for u in utts] == [("a/x", "/data/wavs/a/x.wav", 16000),
                                                            ("b", "/data/wavs/b.flac", None)]


def test_a_manifest_that_is_not_text_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "m.tsv").write_bytes(b"\x9f\xff\x00RIFF\n")
    with pytest.raises(SpeechUnitsError, match=r"m\.tsv: not UTF-8 text"):
        list(open_corpus(tmp_path / "m.tsv"))
