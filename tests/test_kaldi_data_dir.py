"""Kaldi/ESPnet data directories as input: ``wav.scp`` (+ ``text``, ``utt2spk``) beside the audio.

Expectations are hand-written data directories over the synthetic corpus's own files: the
utterance ids are the ``wav.scp``'s, the labels those of ``text`` and ``utt2spk``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli_error, probes_train_on
from speechunits.cli.main import main
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.synth.testing import small_corpus


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(recipe directory, its data/train): wav.scp paths relative to the recipe directory, as ESPnet writes them."""
    corpus = small_corpus(tmp_path_factory.mktemp("kaldi"), minutes=0.5, speakers=2)
    recipe = corpus.parent / "egs"
    data = recipe / "data" / "train"
    data.mkdir(parents=True)
    (recipe / "downloads").symlink_to(corpus)
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    speakers = read_speakers(corpus / "speakers.tsv")
    ids = sorted(texts)
    (data / "wav.scp").write_text("".join(f"{speakers[u]}-{u} downloads/wavs/{u}.wav\n" for u in ids))
    (data / "text").write_text("".join(f"{speakers[u]}-{u} {texts[u]}\n" for u in ids))
    (data / "utt2spk").write_text("".join(f"{speakers[u]}-{u} {speakers[u]}\n" for u in ids))
    return recipe, data


def test_a_data_directory_is_read_through_its_wav_scp_from_anywhere(recipe, tmp_path: Path, monkeypatch) -> None:
    recipe_dir, data = recipe
    monkeypatch.chdir(tmp_path)  # not the recipe directory: paths are found from the folders above wav.scp
    utts = list(open_corpus(data))
    assert [u.id for u in utts] == [line.split()[0] for line in (data / "wav.scp").read_text().splitlines()]
    assert all(Path(u.path).is_file() for u in utts)
    assert [u.id for u in open_corpus(data / "wav.scp")] == [u.id for u in utts]
    monkeypatch.chdir(recipe_dir)  # the recipe directory: paths as written
    assert [u.path for u in open_corpus(data)] == [f"downloads/wavs/{u.id.split('-', 1)[1]}.wav" for u in utts]
    assert read_speakers(data / "utt2spk")[utts[0].id] == utts[0].id.split("-", 1)[0]


def test_probes_find_text_and_utt2spk(recipe, tmp_path: Path) -> None:
    data = recipe[1]
    probes_train_on(data, tmp_path, {"asr": [], "speaker": []})


def test_encode_keeps_the_kaldi_ids(recipe, tmp_path: Path) -> None:
    from speechunits.units.store import UnitStore

    data = recipe[1]
    assert main(["fit", str(data), "--encoder", "mfcc", "--k", "8", "-o", str(tmp_path / "cb"), "--quiet"]) == 0
    assert main(["encode", str(data), "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "u"), "--quiet"]) == 0
    assert sorted(UnitStore.open(tmp_path / "u").ids()) == sorted(u.id for u in open_corpus(data))


def test_pipes_segments_and_bad_lines_are_named(tmp_path: Path, caplog) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "wav.scp").write_text("u1 flac -c -d -s /x/u1.flac |\n")
    with pytest.raises(SpeechUnitsError, match=r"wav.scp:1: u1 is a shell command"):
        list(open_corpus(data))
    (data / "wav.scp").write_text("lonely\n")
    with pytest.raises(SpeechUnitsError, match=r"wav.scp:1: expected 'utt_id path'"):
        list(open_corpus(data))
    (data / "wav.scp").write_text("rec1 /x/rec1.wav\n")
    (data / "segments").write_text("u1 rec2 0.0 1.0\n")
    assert "segments:1: recording 'rec2' is not in" in cli_error(
        ["fit", str(data), "--encoder", "mfcc", "--k", "2", "-o", str(tmp_path / "cb")], caplog)
    (data / "utt2spk").write_text("u1 a b\n")
    with pytest.raises(SpeechUnitsError, match=r"utt2spk:1: expected 'utt_id speaker'"):
        read_speakers(data / "utt2spk")


def test_a_nemo_manifest_gives_audio_text_and_speakers(recipe, tmp_path: Path) -> None:
    """NeMo's JSONL (audio_filepath, duration, text, speaker): ids from the file names."""
    from speechunits.probe.labels import find_label_files, read_transcripts

    recipe_dir = recipe[0]
    wavs = sorted((recipe_dir / "downloads" / "wavs").glob("*.wav"))
    texts = dict(line.split("\t", 1) for line in (recipe_dir / "downloads" / "text.tsv").read_text().splitlines()
                 if line)
    speakers = read_speakers(recipe_dir / "downloads" / "speakers.tsv")
    manifest = tmp_path / "train_manifest.json"
    manifest.write_text("".join(json.dumps({"audio_filepath": str(w), "duration": 1.0, "text": texts[w.stem],
                                            "speaker": speakers[w.stem]}) + "\n" for w in wavs))
    assert [u.id for u in open_corpus(manifest)] == [w.stem for w in wavs]
    assert find_label_files(manifest) == {"transcripts": manifest, "speakers": manifest}
    assert read_speakers(manifest) == {w.stem: speakers[w.stem] for w in wavs}
    assert read_transcripts(manifest) == {w.stem: " ".join(texts[w.stem].split()) for w in wavs}
    assert main(["probe", "train", "speaker", str(manifest), "--encoder", "mfcc", "-o", str(tmp_path / "spk"),
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
