"""Hugging Face ``datasets`` tables as input: Parquet shards and ``save_to_disk`` directories.

The tables are written by the ``datasets`` library itself (the reference tool) from the synthetic
corpus's wav files; the expectation is the corpus read from its own directory: the same samples,
the same features, its text and speakers files.
"""
from __future__ import annotations

import json
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

datasets = pytest.importorskip("datasets")


def _pairs(path: Path) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_corpus(tmp_path_factory.mktemp("hf-src"), minutes=0.6, speakers=2)


def _dataset(corpus: Path, *, embed: bool = True, with_id: bool = True, rows: list[str] | None = None):
    """The corpus as a ``datasets.Dataset`` (LibriSpeech's columns on the Hub: id, audio, text,
    speaker_id as an int, plus a ClassLabel); audio embedded as FLAC bytes, or as paths only."""
    texts, speakers = _pairs(corpus / "text.tsv"), _pairs(corpus / "speakers.tsv")
    ids = rows or sorted(texts)
    names = sorted(set(speakers.values()))
    audio = []
    for utt in ids:
        wav = corpus / "wavs" / f"{utt}.wav"
        if embed:
            data, rate = sf.read(wav)
            flac = wav.parent.parent / f"{utt}.flac"
            sf.write(flac, data, rate, format="FLAC")
            audio.append({"bytes": flac.read_bytes(), "path": f"{utt}.flac"})
        else:
            audio.append({"bytes": None, "path": str(wav)})
    columns = {"audio": audio, "text": [texts[u] for u in ids],
               "speaker_id": [names.index(speakers[u]) + 100 for u in ids],
               "gender": [names.index(speakers[u]) for u in ids]}
    if with_id:
        columns = {"id": ids, **columns}
    features = datasets.Features({**({"id": datasets.Value("string")} if with_id else {}),
                                  "audio": datasets.Audio(decode=False), "text": datasets.Value("string"),
                                  "speaker_id": datasets.Value("int64"),
                                  "gender": datasets.ClassLabel(names=["female", "male"])})
    # from_dict then cast: Audio.encode_example (from_dict(features=...)) needs torchcodec, casting does not
    return datasets.Dataset.from_dict(columns).cast(features)


def test_parquet_rows_are_the_corpus_audio(source: Path, tmp_path: Path) -> None:
    table = tmp_path / "train.parquet"
    _dataset(source).to_parquet(str(table))
    utts = list(open_corpus(table))
    assert [u.id for u in utts] == sorted(_pairs(source / "text.tsv"))
    for utt in utts:
        ours = Audio.load(utt.path)
        expected, rate = sf.read(source / "wavs" / f"{utt.id}.wav", dtype="float32")
        assert ours.sample_rate == rate and np.array_equal(ours.samples, expected)  # FLAC is lossless


def test_save_to_disk_directory_and_speakers_and_text(source: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    _dataset(source).save_to_disk(str(saved))
    assert [u.id for u in open_corpus(saved)] == sorted(_pairs(source / "text.tsv"))
    assert find_label_files(saved) == {"transcripts": saved, "speakers": saved}
    texts = {k: " ".join(v.split()) for k, v in _pairs(source / "text.tsv").items()}
    assert read_transcripts(saved) == texts
    speakers = read_speakers(source / "speakers.tsv")
    names = sorted(set(speakers.values()))
    assert read_speakers(saved) == {u: str(names.index(s) + 100) for u, s in speakers.items()}
    # a ClassLabel column named with ::COLUMN gives its class names, not its integer ids
    genders = read_utterance_labels(f"{saved}::gender")
    assert {genders[u] for u in speakers} == {"female", "male"}
    assert all(genders[u] == ["female", "male"][names.index(s)] for u, s in speakers.items())


def test_paths_only_rows_read_the_files_and_a_missing_one_is_named(source: Path, tmp_path: Path) -> None:
    table = tmp_path / "paths.parquet"
    _dataset(source, embed=False).to_parquet(str(table))
    first = next(iter(open_corpus(table)))
    assert Audio.load(first.path) == Audio.load(source / "wavs" / f"{first.id}.wav")
    import pyarrow.parquet as pq

    data = pq.read_table(table)
    audio = data.column("audio").to_pylist()
    audio[0] = {"bytes": None, "path": str(tmp_path / "gone.wav")}
    import pyarrow as pa

    pq.write_table(data.set_column(data.schema.get_field_index("audio"), "audio",
                                   pa.array(audio, type=data.schema.field("audio").type)), table)
    with pytest.raises(SpeechUnitsError, match=r"gone.wav'?, which is not a file here"):
        Audio.load(next(iter(open_corpus(table))).path)


def test_ids_without_an_id_column(source: Path, tmp_path: Path) -> None:
    table = tmp_path / "noid.parquet"
    _dataset(source, with_id=False).to_parquet(str(table))
    assert [u.id for u in open_corpus(table)] == sorted(_pairs(source / "text.tsv"))  # the audio paths' stems
    ids = sorted(_pairs(source / "text.tsv"))[:2]
    twice = tmp_path / "twice.parquet"
    _dataset(source, with_id=False, rows=[ids[0], ids[0], ids[1]]).to_parquet(str(twice))
    assert [u.id for u in open_corpus(twice)] == ["twice/0", "twice/1", "twice/2"]  # stems repeat: row numbers


def test_shards_of_one_split_are_read_in_order_and_several_splits_refused(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))
    hub = tmp_path / "snapshot" / "data"
    hub.mkdir(parents=True)
    half = len(ids) // 2
    _dataset(source, rows=ids[:half]).to_parquet(str(hub / "train-00000-of-00002.parquet"))
    _dataset(source, rows=ids[half:]).to_parquet(str(hub / "train-00001-of-00002.parquet"))
    assert [u.id for u in open_corpus(hub.parent)] == ids
    _dataset(source, rows=ids[:1]).to_parquet(str(hub / "test-00000-of-00001.parquet"))
    with pytest.raises(SpeechUnitsError, match=r"holds the shards of 2 splits.*data/train-\*\.parquet"):
        open_corpus(hub.parent)
    assert [u.id for u in open_corpus(str(hub / "train-*.parquet"))] == ids
    cache = tmp_path / "cache"  # the datasets cache: one Arrow file per unsharded split
    cache.mkdir()
    for split, rows in (("validation", ids[:1]), ("test", ids[1:2])):
        _dataset(source, rows=rows).save_to_disk(str(tmp_path / split))
        (tmp_path / split / "data-00000-of-00001.arrow").rename(cache / f"librispeech_asr-{split}.arrow")
    with pytest.raises(SpeechUnitsError, match=r"2 splits.*'.*cache/librispeech_asr-test.arrow', "
                                              r"'.*cache/librispeech_asr-validation.arrow'"):
        open_corpus(cache)
    assert [u.id for u in open_corpus(cache / "librispeech_asr-test.arrow")] == ids[1:2]
    converted = tmp_path / "converted" / "default" / "train"  # the Hub's refs/convert/parquet layout
    converted.mkdir(parents=True)
    _dataset(source, rows=ids[:half]).to_parquet(str(converted / "0000.parquet"))
    _dataset(source, rows=ids[half:]).to_parquet(str(converted / "0001.parquet"))
    assert [u.id for u in open_corpus(converted.parent)] == ids
    dataset_dict = tmp_path / "dict"
    datasets.DatasetDict({"train": _dataset(source, rows=ids[:1]),
                          "test": _dataset(source, rows=ids[1:2])}).save_to_disk(str(dataset_dict))
    with pytest.raises(SpeechUnitsError, match=r"DatasetDict.*give one split: .*dict/train, .*dict/test"):
        open_corpus(dataset_dict)
    assert [u.id for u in open_corpus(dataset_dict / "test")] == ids[1:2]


def test_small_row_groups_give_each_row_its_own_audio(source: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = tmp_path / "groups.parquet"
    _dataset(source).to_parquet(str(table))
    regrouped = tmp_path / "regrouped.parquet"
    pq.write_table(pq.read_table(table), regrouped, row_group_size=2)
    assert pq.ParquetFile(regrouped).metadata.num_row_groups > 2
    for utt in reversed(list(open_corpus(regrouped))):  # backwards: every row group decoded out of order
        assert Audio.load(utt.path) == Audio.load(source / "wavs" / f"{utt.id}.wav")


def test_tables_without_audio_and_bad_rows_are_refused(source: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["hello"]}), plain)
    with pytest.raises(SpeechUnitsError, match=r"no audio column .*its columns: id, text"):
        list(open_corpus(plain))
    broken = tmp_path / "broken.parquet"
    _dataset(source, rows=sorted(_pairs(source / "text.tsv"))[:1]).to_parquet(str(broken))
    data = pq.read_table(broken)
    garbage = pa.array([{"bytes": b"not audio at all", "path": "x.wav"}], type=data.schema.field("audio").type)
    pq.write_table(data.set_column(data.schema.get_field_index("audio"), "audio", garbage), broken)
    with pytest.raises(SpeechUnitsError, match=r"broken.parquet#row=0: unreadable or corrupt audio"):
        Audio.load(next(iter(open_corpus(broken))).path)
    with pytest.raises(SpeechUnitsError, match=r"no label column 'nope'; its columns: id, audio"):
        read_utterance_labels(f"{broken}::nope")


def test_features_of_a_table_equal_those_of_its_wav_directory(source: Path, tmp_path: Path) -> None:
    table = tmp_path / "train.parquet"
    _dataset(source).to_parquet(str(table))
    common = ["--encoder", "mfcc", "--quiet", "--device", "cpu"]
    assert main(["features", str(table), "-o", str(tmp_path / "from-table"), *common]) == 0
    assert main(["features", str(source / "manifest.tsv"), "-o", str(tmp_path / "from-wavs"), *common]) == 0
    ours = dict(read_features_dir(tmp_path / "from-table"))
    expected = dict(read_features_dir(tmp_path / "from-wavs"))
    assert ours.keys() == expected.keys() and all(np.array_equal(ours[k], expected[k]) for k in expected)
    # the directory's fairseq manifest lists the rows (FILE#row=N): read back, each is its own utterance
    listed = list(open_corpus(tmp_path / "from-table" / "manifest.tsv"))
    assert [u.id for u in listed] == [f"train/{i}" for i in range(len(expected))]
    assert Audio.load(listed[-1].path) == Audio.load(source / "wavs" / f"{sorted(expected)[-1]}.wav")


def test_probes_train_on_a_table_with_its_own_labels(source: Path, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    _dataset(source).save_to_disk(str(saved))
    probes_train_on(saved, tmp_path, {"asr": [], "speaker": [], "classify": ["--labels", f"{saved}::gender"]})


def test_resynthesis_pairs_with_table_references(source: Path, tmp_path: Path) -> None:
    from speechunits.measure.audio.pairing import match_utterances

    table = tmp_path / "refs.parquet"
    _dataset(source).to_parquet(str(table))
    hyps = tmp_path / "hyp"
    hyps.mkdir()
    ids = sorted(_pairs(source / "text.tsv"))[:2]
    for utt in ids:
        (hyps / f"{utt}.wav").write_bytes((source / "wavs" / f"{utt}.wav").read_bytes())
    pairs, unmatched = match_utterances(table, hyps)
    assert [p.id for p in pairs] == ids and unmatched == len(_pairs(source / "text.tsv")) - 2
    assert all(Audio.load(p.ref.path) == Audio.load(p.hyp.path) for p in pairs)


def test_split_names_of_the_three_layouts() -> None:
    from speechunits.layouts.hf_datasets import split_name
    from speechunits.sources import part_of_name

    assert split_name(Path("data/validation-00000-of-00002.parquet")) == "validation"
    assert split_name(Path("default/test/0000.parquet")) == "test"
    assert split_name(Path("librispeech_asr-train.clean.100-00003-of-00014.arrow")) == "train.clean.100"
    assert split_name(Path("librispeech_asr-validation.clean.arrow")) == "validation.clean"
    # one rule for Hugging Face splits, WebDataset shards and the inputs of a pattern
    names = ("train.clean.100", "validation.clean", "dev", "test.other", "extra", "trainset", "librispeech-train",
             "librispeech_cuts_dev-clean", "train_dev", "testament", "devices", "latest")
    assert [part_of_name(n) for n in names] == \
        ["train", "dev", "dev", "test", None, "train", "train", "dev", None, "test", "dev", None]


def test_a_probe_over_a_datasets_splits_keeps_them(source: Path, tmp_path: Path) -> None:
    ids = sorted(_pairs(source / "text.tsv"))
    data = tmp_path / "repo" / "data"
    data.mkdir(parents=True)
    parts = {"train": ids[:-4], "validation": ids[-4:-2], "test": ids[-2:]}
    for name, rows in parts.items():
        _dataset(source, rows=rows).to_parquet(str(data / f"{name}-00000-of-00001.parquet"))
    probes_train_on(f"{data}/*.parquet", tmp_path, {"asr": []})
    saved = json.loads((tmp_path / "asr" / "split.json").read_text())
    assert saved["info"]["by"] == "dataset"
    assert [sorted(saved[p]) for p in ("train", "dev", "test")] == [parts["train"], parts["validation"], parts["test"]]
    with pytest.raises(SpeechUnitsError, match=r"a probe given a glob over a train, a validation and a test"):
        open_corpus(data)


def test_speaker_columns_and_fields_are_read_in_one_order(source: Path, tmp_path: Path) -> None:
    """A table and a manifest naming speakers twice (``speaker`` and ``speaker_id``) give the same answer."""
    ids = sorted(_pairs(source / "text.tsv"))[:2]
    table = tmp_path / "both.parquet"
    data = _dataset(source, rows=ids)
    data = data.add_column("speaker", [f"name-{i}" for i in range(len(ids))])
    data.to_parquet(str(table))
    manifest = tmp_path / "both.jsonl"
    manifest.write_text("".join(json.dumps({"id": u, "path": str(source / "wavs" / f"{u}.wav"), "speaker_id": 100 + i,
                                            "speaker": f"name-{i}"}) + "\n" for i, u in enumerate(ids)))
    assert read_speakers(table) == read_speakers(manifest) == {u: f"name-{i}" for i, u in enumerate(ids)}
