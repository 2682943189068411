"""Several inputs given as one pattern: one corpus or manifest per split, read together.

Expectations are hand-written per-split inputs over the synthetic corpus's own files (Kaldi data
directories, fairseq manifests, Lhotse cuts written by lhotse): the concatenation is each input read
alone, one after the other; the labels are each input's; a probe keeps the inputs as its split.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import probes_train_on
from speechunits.cli.main import main
from speechunits.corpus import open_corpus, open_corpus_via_manifest, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files, read_transcripts
from speechunits.sources import expand_source, part_of_name
from speechunits.synth.testing import small_corpus


def _pairs(path: Path) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("sources"), minutes=0.6, speakers=2)


def _parts(corpus: Path) -> dict[str, list[str]]:
    ids = sorted(_pairs(corpus / "text.tsv"))
    return {"train": ids[:-4], "dev": ids[-4:-2], "test": ids[-2:]}


def _kaldi_dirs(corpus: Path, root: Path) -> Path:
    """data/train, data/dev, data/test as a Kaldi recipe writes them (wav.scp, text, utt2spk)."""
    texts, speakers = _pairs(corpus / "text.tsv"), read_speakers(corpus / "speakers.tsv")
    for name, ids in _parts(corpus).items():
        data = root / "data" / name
        data.mkdir(parents=True)
        (data / "wav.scp").write_text("".join(f"{u} {corpus / 'wavs' / u}.wav\n" for u in ids))
        (data / "text").write_text("".join(f"{u} {texts[u]}\n" for u in ids))
        (data / "utt2spk").write_text("".join(f"{u} {speakers[u]}\n" for u in ids))
    return root / "data"


def test_a_pattern_over_kaldi_data_directories_reads_them_in_its_order(corpus: Path, tmp_path: Path) -> None:
    data = _kaldi_dirs(corpus, tmp_path)
    parts = _parts(corpus)
    pattern = f"{data}/{{train,dev,test}}"
    assert expand_source(pattern) == [str(data / n) for n in ("train", "dev", "test")]
    assert [u.id for u in open_corpus(pattern)] == parts["train"] + parts["dev"] + parts["test"]
    assert [u.id for u in open_corpus(f"{data}/*")] == parts["dev"] + parts["test"] + parts["train"]  # glob: sorted
    assert [u.id for u in open_corpus(pattern, shard="1/2")] == (parts["train"] + parts["dev"] + parts["test"])[1::2]
    found = find_label_files(pattern)
    assert set(found) == {"transcripts", "speakers"}
    assert read_transcripts(found["transcripts"]) == {u: " ".join(t.split()) for u, t in _pairs(corpus / "text.tsv").items()}
    assert read_speakers(found["speakers"]) == read_speakers(corpus / "speakers.tsv")


def test_a_probe_over_per_split_inputs_keeps_their_split(corpus: Path, tmp_path: Path) -> None:
    data = _kaldi_dirs(corpus, tmp_path)
    probes_train_on(f"{data}/{{train,dev,test}}", tmp_path, {"asr": [], "speaker": []})
    saved = json.loads((tmp_path / "asr" / "split.json").read_text())
    assert saved["info"]["by"] == "dataset"
    parts = _parts(corpus)
    assert [sorted(saved[p]) for p in ("train", "dev", "test")] == [parts["train"], parts["dev"], parts["test"]]
    # a speaker probe needs every speaker in training: it draws its own split
    assert json.loads((tmp_path / "speaker" / "split.json").read_text())["info"].get("by") != "dataset"


def test_units_of_the_pattern_are_those_of_each_input(corpus: Path, tmp_path: Path) -> None:
    from speechunits.units.store import UnitStore

    data = _kaldi_dirs(corpus, tmp_path)
    pattern = f"{data}/{{train,test}}"
    assert main(["fit", pattern, "--encoder", "mfcc", "--k", "8", "-o", str(tmp_path / "cb"), "--quiet"]) == 0
    assert main(["encode", pattern, "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "both"), "--quiet"]) == 0
    assert main(["encode", str(data / "test"), "--codebook", str(tmp_path / "cb"), "-o", str(tmp_path / "test"),
                 "--quiet"]) == 0
    both, alone = UnitStore.open(tmp_path / "both").to_dict(), UnitStore.open(tmp_path / "test").to_dict()
    assert sorted(both) == sorted(_parts(corpus)["train"] + _parts(corpus)["test"])
    assert all(both[u].ids.tolist() == alone[u].ids.tolist() for u in alone) and alone


def test_lhotse_cuts_of_three_splits_by_their_names(corpus: Path, tmp_path: Path) -> None:
    lhotse = pytest.importorskip("lhotse")
    texts = _pairs(corpus / "text.tsv")
    for name, ids in _parts(corpus).items():
        recordings = lhotse.RecordingSet.from_recordings(
            lhotse.Recording.from_file(corpus / "wavs" / f"{u}.wav", recording_id=u) for u in ids)
        sups = lhotse.SupervisionSet.from_segments(
            lhotse.SupervisionSegment(u, u, 0.0, recordings[u].duration, text=texts[u]) for u in ids)
        split = {"dev": "dev-clean", "test": "test-clean", "train": "train-clean-100"}[name]
        lhotse.CutSet.from_manifests(recordings=recordings, supervisions=sups).to_file(
            tmp_path / f"librispeech_cuts_{split}.jsonl.gz")
    pattern = f"{tmp_path}/librispeech_cuts_*.jsonl.gz"
    assert [part_of_name(p) for p in expand_source(pattern)] == ["dev", "test", "train"]
    probes_train_on(pattern, tmp_path, {"asr": []})
    saved = json.loads((tmp_path / "asr" / "split.json").read_text())
    assert saved["info"]["by"] == "dataset"  # cut ids are lhotse's: RECORDING-N
    assert sorted(c.rsplit("-", 1)[0] for c in saved["test"]) == _parts(corpus)["test"]


def test_synth_corpora_in_a_pattern_are_read_through_their_manifests(tmp_path: Path) -> None:
    first = small_corpus(tmp_path / "a", minutes=0.2, speakers=1, seed=1)
    second = small_corpus(tmp_path / "b", minutes=0.2, speakers=1, seed=2)
    ids = [u.id for u in open_corpus_via_manifest(f"{tmp_path}/a/synth-*")]
    assert ids == [u.id for u in open_corpus_via_manifest(first)] and not ids[0].startswith("wavs/")
    # two synth corpora number their utterances alike: together, the first id they share is named
    with pytest.raises(SpeechUnitsError, match=rf"utterance id '{ids[0]}' is claimed by two files, .*{second.name}"):
        list(open_corpus_via_manifest(f"{{{first},{second}}}"))


def test_what_a_pattern_cannot_give_is_named(corpus: Path, tmp_path: Path) -> None:
    data = _kaldi_dirs(corpus, tmp_path)
    (data / "again").mkdir()
    (data / "again" / "wav.scp").write_text((data / "dev" / "wav.scp").read_text())
    first_dev = _parts(corpus)["dev"][0]
    with pytest.raises(SpeechUnitsError, match=rf"utterance id '{first_dev}' is claimed by two files"):
        list(open_corpus(f"{data}/{{dev,again}}"))
    (data / "again" / "text").write_text((data / "dev" / "text").read_text())
    with pytest.raises(SpeechUnitsError, match=rf"utterance '{first_dev}' is labelled in both .*dev/text and .*again/text"):
        read_transcripts(f"{{{data}/dev/text,{data}/again/text}}")
    with pytest.raises(SpeechUnitsError, match=r"nothing\*: no such file or directory"):
        open_corpus(f"{data}/nothing*")
    # inputs whose names do not say train, dev and test: a probe draws its own split
    from speechunits.sources import split_parts

    assert split_parts(f"{data}/{{dev,test}}") is None and split_parts(f"{data}/{{train,dev,again}}") is None


def test_a_glob_of_audio_files_is_one_corpus_of_them(corpus: Path, tmp_path: Path) -> None:
    wavs = sorted((corpus / "wavs").glob("*.wav"))
    utts = list(open_corpus(f"{corpus}/wavs/*_000[0-2].wav"))
    assert [(u.id, u.path) for u in utts] == [(w.stem, str(w)) for w in wavs if w.stem[-4:] in ("0000", "0001", "0002")]
    probes_train_on(f"{corpus}/wavs/*.wav", tmp_path, {"asr": ["--labels", str(corpus / "text.tsv")]})
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / wavs[0].name).write_bytes(wavs[0].read_bytes())
    with pytest.raises(SpeechUnitsError, match=rf"utterance id '{wavs[0].stem}' is claimed by two files"):
        list(open_corpus(f"{{{corpus}/wavs,{tmp_path}/again}}/*.wav"))
