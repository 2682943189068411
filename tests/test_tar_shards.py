"""Audio inside tar archives as input: WebDataset shards, Lhotse Shar and NeMo tarred datasets.

WebDataset shards are written by ``webdataset``'s own TarWriter and Lhotse Shar by ``lhotse``'s
``CutSet.to_shar`` (the reference tools); the expectation is the synthetic corpus read from its wav
directory (the same samples, the same features, its text and speakers files) and, for Shar, lhotse's
own reading of the shards. NeMo's tarred layout (``tarred_audio_manifest.json`` with ``shard_id``
fields beside ``audio_N.tar``) is written by hand as NeMo's ``convert_to_tarred_audio_dataset.py``
documents it.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import probes_train_on
from speechunits.audio import Audio
from speechunits.cli.main import main
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.features.io import read_features_dir
from speechunits.probe.labels import find_label_files, read_transcripts, read_utterance_labels
from speechunits.synth.testing import small_corpus
from speechunits.layouts.tar_shards import member_path, members, sample_key

wds = pytest.importorskip("webdataset")


def _pairs(path: Path) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("tar-src"), minutes=0.6, speakers=2)


def _flac(wav: Path) -> bytes:
    data, rate = sf.read(wav, dtype="float32")
    out = io.BytesIO()
    sf.write(out, data, rate, format="FLAC")
    return out.getvalue()


def _write_shards(corpus: Path, out: Path, groups: dict[str, list[str]], *, extra=None) -> list[Path]:
    """One WebDataset shard per group (``{shard name: ids}``), samples as the field writes them: FLAC
    audio, a ``json`` of text and speaker, a ``cls`` class label (the speaker's gender stand-in)."""
    texts, speakers = _pairs(corpus / "text.tsv"), _pairs(corpus / "speakers.tsv")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, ids in groups.items():
        with wds.TarWriter(str(out / name)) as writer:
            for utt in ids:
                sample = {"__key__": utt, "flac": _flac(corpus / "wavs" / f"{utt}.wav"),
                          "json": {"text": texts[utt], "speaker": speakers[utt], "duration": 1.0},
                          "cls": str(sorted(set(speakers.values())).index(speakers[utt]))}
                if extra:
                    sample.update(extra(utt))
                writer.write(sample)
        written.append(out / name)
    return written


def test_webdataset_shards_read_as_webdataset_reads_them(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))
    shards = _write_shards(source, tmp_path / "shards",
                           {"train-000000.tar": ids[:5], "train-000001.tar": ids[5:]})
    expected = {s["__key__"]: s for s in wds.WebDataset([str(p) for p in shards], shardshuffle=False)}
    for given in (shards[0].parent, f"{shards[0].parent}/train-{{000000..000001}}.tar",
                  f"{shards[0].parent}/*.tar"):
        utts = list(open_corpus(given))
        assert [u.id for u in utts] == ids == list(expected)
    for utt in utts:  # the samples webdataset decodes, and the corpus's own wav files
        assert np.array_equal(Audio.load(utt.path).samples, sf.read(io.BytesIO(expected[utt.id]["flac"]),
                                                                    dtype="float32")[0])
        assert Audio.load(utt.path) == Audio.load(source / "wavs" / f"{utt.id}.wav")
    assert [u.id for u in open_corpus(shards[1])] == ids[5:]
    root = shards[0].parent
    assert find_label_files(root) == {"transcripts": root, "speakers": root, "labels": root}
    assert read_transcripts(root) == _pairs(source / "text.tsv")
    assert read_speakers(root) == read_speakers(source / "speakers.tsv")
    assert set(read_utterance_labels(root).values()) == {"0", "1"}


def test_a_txt_member_is_the_transcript_and_a_span_of_a_member_reads(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))[:2]
    shard = _write_shards(source, tmp_path, {"a.tar": ids}, extra=lambda u: {"txt": f"said {u}"})[0]
    assert read_transcripts(shard) == {u: f"said {u}" for u in ids}
    whole = Audio.load(source / "wavs" / f"{ids[0]}.wav")
    part = Audio.load(f"{member_path(shard, ids[0] + '.flac')}#t=0.25,0.5")
    assert np.array_equal(part.samples, whole.samples[round(0.25 * whole.sample_rate):round(0.5 * whole.sample_rate)])


def test_features_of_shards_equal_those_of_the_wav_directory(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))
    shard = _write_shards(source, tmp_path / "shards", {"train-000000.tar": ids})[0]
    common = ["--encoder", "mfcc", "--quiet", "--device", "cpu"]
    assert main(["features", str(shard), "-o", str(tmp_path / "from-tar"), *common]) == 0
    assert main(["features", str(source / "manifest.tsv"), "-o", str(tmp_path / "from-wavs"), *common]) == 0
    ours, expected = dict(read_features_dir(tmp_path / "from-tar")), dict(read_features_dir(tmp_path / "from-wavs"))
    assert ours.keys() == expected.keys() and all(np.array_equal(ours[k], expected[k]) for k in expected)
    listed = list(open_corpus(tmp_path / "from-tar" / "manifest.tsv"))  # its members, read back by key
    assert sorted(u.id for u in listed) == ids
    assert Audio.load(listed[-1].path) == Audio.load(source / "wavs" / f"{listed[-1].id}.wav")


def test_probes_train_on_shards_and_keep_their_split(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))
    parts = {"train": ids[:-4], "validation": ids[-4:-2], "test": ids[-2:]}
    root = tmp_path / "shards"
    _write_shards(source, root, {f"{name}-000000.tar": rows for name, rows in parts.items()})
    probes_train_on(f"{root}/*.tar", tmp_path, {"asr": [], "speaker": [], "classify": []})
    saved = json.loads((tmp_path / "asr" / "split.json").read_text())
    assert saved["info"]["by"] == "dataset"
    assert [sorted(saved[p]) for p in ("train", "dev", "test")] == [parts["train"], parts["validation"], parts["test"]]


def test_what_cannot_be_read_from_a_tar_is_named(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))[:2]
    shard = _write_shards(source, tmp_path, {"two.tar": ids},
                          extra=lambda u: {"wav": (source / "wavs" / f"{u}.wav").read_bytes()})[0]
    with pytest.raises(SpeechUnitsError, match=rf"sample '{ids[0]}' has 2 audio members .*'{shard}::flac'"):
        list(open_corpus(shard))
    chosen = list(open_corpus(f"{shard}::wav"))
    assert [Path(u.path).name.split("#member=")[1] for u in chosen] == [f"{u}.wav" for u in ids]
    assert Audio.load(chosen[0].path) == Audio.load(source / "wavs" / f"{ids[0]}.wav")

    packed = tmp_path / "packed.tar.gz"
    packed.write_bytes(gzip.compress(shard.read_bytes()))
    with pytest.raises(SpeechUnitsError, match=r"gzip-compressed tar, .*`gunzip -k packed.tar.gz`"):
        list(open_corpus(packed))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:700])
    with pytest.raises(SpeechUnitsError, match=r"cut.tar: (not a readable tar archive|member .* is cut short)"):
        Audio.load(member_path(cut, f"{ids[0]}.flac"))
    with pytest.raises(SpeechUnitsError, match=r"two.tar: no member 'nope.flac' \(it holds 8 files"):
        Audio.load(member_path(shard, "nope.flac"))
    (tmp_path / "two-000000.tar").write_bytes(shard.read_bytes())
    with pytest.raises(SpeechUnitsError, match=r"names 1 shard\(s\) that do not exist, e.g. .*two-000001.tar"):
        list(open_corpus(f"{tmp_path}/two-{{000000..000001}}.tar"))
    texts = tmp_path / "texts.tar"
    with tarfile.open(texts, "w") as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(SpeechUnitsError, match=r"texts.tar: no sample has a member with audio"):
        list(open_corpus(texts))


def test_sample_keys_split_at_the_first_dot_of_the_file_name() -> None:
    assert sample_key("train/u001.flac") == ("train/u001", "flac")
    assert sample_key("a.b/u.seg1.FLAC") == ("a.b/u", "seg1.flac")
    assert sample_key("noext") is None and sample_key("dir/.hidden") is None


def test_lhotse_shar_reads_as_lhotse_reads_it(source: Path, tmp_path: Path) -> None:
    lhotse = pytest.importorskip("lhotse")
    texts, speakers = _pairs(source / "text.tsv"), _pairs(source / "speakers.tsv")
    ids = sorted(texts)
    recordings = [lhotse.Recording.from_file(source / "wavs" / f"{u}.wav", recording_id=u) for u in ids]
    cuts = lhotse.CutSet.from_cuts(
        replace(r.to_cut().truncate(offset=0.1, duration=0.5).with_id(f"{r.id}.part"),  # a dot inside an id
                supervisions=[lhotse.SupervisionSegment(f"{r.id}-s", r.id, 0.0, 0.5, text=texts[r.id],
                                                        speaker=speakers[r.id])])
        for r in recordings)
    shar = tmp_path / "shar"
    shar.mkdir()
    cuts.to_shar(shar, fields={"recording": "flac"}, shard_size=5)
    expected = {c.id: c.load_audio()[0] for c in lhotse.CutSet.from_shar(in_dir=shar)}
    utts = list(open_corpus(shar))
    assert [u.id for u in utts] == list(expected) == [f"{u}.part" for u in ids]
    for utt in utts:
        assert np.array_equal(Audio.load(utt.path).samples, expected[utt.id])
    assert [u.id for u in open_corpus(shar / "cuts.000001.jsonl.gz")] == [f"{u}.part" for u in ids[5:10]]
    assert find_label_files(shar) == {"transcripts": shar, "speakers": shar}
    assert read_transcripts(shar) == {f"{u}.part": " ".join(t.split()) for u, t in texts.items()}
    (shar / "recording.000001.tar").unlink()
    with pytest.raises(SpeechUnitsError, match=r"cuts.000001.jsonl.gz:1: a Lhotse Shar cut; .*recording.000001.tar"):
        list(open_corpus(shar))


def test_nemo_tarred_datasets_read_through_their_manifest(source: Path, tmp_path: Path) -> None:
    texts = _pairs(source / "text.tsv")
    ids = sorted(texts)
    out = tmp_path / "tarred"
    out.mkdir()
    records = []
    for shard, group in enumerate((ids[:6], ids[6:])):
        with tarfile.open(out / f"audio_{shard}.tar", "w") as archive:
            for utt in group:
                archive.add(source / "wavs" / f"{utt}.wav", arcname=f"{utt}.wav")
                records.append({"audio_filepath": f"{utt}.wav", "duration": 1.0, "text": texts[utt], "shard_id": shard})
    (out / "tarred_audio_manifest.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    for given in (out / "tarred_audio_manifest.json", out):
        utts = list(open_corpus(given))
        assert [u.id for u in utts] == ids
        assert all(Audio.load(u.path) == Audio.load(source / "wavs" / f"{u.id}.wav") for u in utts)
    assert read_transcripts(out / "tarred_audio_manifest.json") == {u: " ".join(t.split()) for u, t in texts.items()}
    assert list(members(out / "audio_1.tar")) == [f"{u}.wav" for u in ids[6:]]
    (out / "audio_1.tar").unlink()
    with pytest.raises(SpeechUnitsError, match=r"tarred_audio_manifest.json:7: .* in tarred shard 1, but audio_1.tar"):
        list(open_corpus(out))


def test_an_emilia_like_shard_of_mp3_and_json_reads(tmp_path: Path) -> None:
    """Emilia's layout on the Hub: ``EN_B00000_S00000_W000000.mp3`` with a ``.json`` of its text and speaker."""
    rng = np.random.default_rng(0)
    clips = {}
    with wds.TarWriter(str(tmp_path / "EN-B000000.tar")) as writer:
        for i in range(3):
            out = io.BytesIO()
            sf.write(out, (rng.standard_normal(16000) * 0.1).astype(np.float32), 16000, format="MP3")
            key = f"EN_B00000_S0000{i}_W000000"
            clips[key] = out.getvalue()
            writer.write({"__key__": key, "mp3": clips[key],
                          "json": {"id": key, "wav": f"{key}.mp3", "text": f" Words number {i}.", "duration": 1.0,
                                   "speaker": f"EN_B00000_S0000{i}", "language": "en", "dnsmos": 3.2}})
    utts = list(open_corpus(tmp_path / "EN-B000000.tar"))
    assert [u.id for u in utts] == list(clips)
    for utt in utts:
        expected = sf.read(io.BytesIO(clips[utt.id]))[0]  # mp3 decodes to floats: equal up to float32 rounding
        assert np.allclose(Audio.load(utt.path).samples, expected, atol=1e-6, rtol=0)
    assert read_transcripts(tmp_path / "EN-B000000.tar") == {k: f"Words number {i}." for i, k in enumerate(clips)}
    assert read_speakers(tmp_path / "EN-B000000.tar")[list(clips)[1]] == "EN_B00000_S00001"


def test_size_hints_order_members_spans_and_files_without_decoding(source: Path, tmp_path: Path) -> None:
    from speechunits.audio import size_hint

    ids = sorted(_pairs(source / "text.tsv"))[:2]
    shard = _write_shards(source, tmp_path, {"h.tar": ids})[0]
    flac = _flac(source / "wavs" / f"{ids[0]}.wav")
    assert size_hint(member_path(shard, f"{ids[0]}.flac")) == len(flac)
    assert size_hint(f"{source / 'wavs' / ids[0]}.wav#t=0.5,1.5") == 32000
    assert size_hint(source / "wavs" / f"{ids[0]}.wav") == (source / "wavs" / f"{ids[0]}.wav").stat().st_size
    assert size_hint(tmp_path / "missing.wav") == 0 and size_hint(member_path(shard, "nope.flac")) == 0
