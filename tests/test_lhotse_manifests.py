"""Lhotse manifests as input: CutSets, SupervisionSets with their RecordingSets, RecordingSets.

The manifests are written by ``lhotse`` itself (the reference tool) over two recordings; the
expectation is lhotse's own reading of them: ``cut.load_audio()`` gives the samples each
utterance must have, its supervisions the transcripts and speakers.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import probes_train_on
from speechunits.audio import Audio
from speechunits.corpus import open_corpus, read_speakers
from speechunits.errors import SpeechUnitsError
from speechunits.probe.labels import find_label_files, read_transcripts
from speechunits.synth.testing import small_corpus

lhotse = pytest.importorskip("lhotse")
RATE = 16000


@pytest.fixture()
def manifests(tmp_path: Path) -> dict[str, Path]:
    """Two 3-s recordings with three supervisions, as lhotse writes them (recordings, supervisions, cuts)."""
    rng = np.random.default_rng(0)
    recordings = []
    for name in ("rec1", "rec2"):
        sf.write(tmp_path / f"{name}.flac", (rng.standard_normal(3 * RATE) * 0.1).astype(np.float32), RATE)
        recordings.append(lhotse.Recording.from_file(tmp_path / f"{name}.flac", recording_id=name))
    sups = [lhotse.SupervisionSegment("rec1-a", "rec1", start=0.25, duration=1.0, channel=0, text="hello  there",
                                      speaker="alice"),
            lhotse.SupervisionSegment("rec1-b", "rec1", start=1.5, duration=1.25, channel=0, text="bye", speaker="bob"),
            lhotse.SupervisionSegment("rec2-a", "rec2", start=0.0, duration=3.0, channel=0, text="whole",
                                      speaker="alice")]
    recording_set = lhotse.RecordingSet.from_recordings(recordings)
    supervision_set = lhotse.SupervisionSet.from_segments(sups)
    cuts = lhotse.CutSet.from_manifests(recordings=recording_set, supervisions=supervision_set).trim_to_supervisions()
    paths = {"recordings": tmp_path / "demo_recordings_train.jsonl.gz",
             "supervisions": tmp_path / "demo_supervisions_train.jsonl.gz", "cuts": tmp_path / "demo_cuts_train.jsonl.gz"}
    recording_set.to_file(paths["recordings"])
    supervision_set.to_file(paths["supervisions"])
    cuts.to_file(paths["cuts"])
    return paths


def test_cuts_read_as_lhotse_reads_them(manifests: dict[str, Path]) -> None:
    cuts = lhotse.load_manifest(manifests["cuts"])
    utts = list(open_corpus(manifests["cuts"]))
    assert [u.id for u in utts] == [c.id for c in cuts]
    for utt, cut in zip(utts, cuts):
        assert np.array_equal(Audio.load(utt.path).samples, cut.load_audio()[0])
    assert find_label_files(manifests["cuts"]) == {"transcripts": manifests["cuts"], "speakers": manifests["cuts"]}
    texts = read_transcripts(manifests["cuts"])
    assert texts == {c.id: " ".join(" ".join(s.text.split()) for s in c.supervisions) for c in cuts}
    assert read_speakers(manifests["cuts"]) == {c.id: c.supervisions[0].speaker for c in cuts}


def test_supervisions_with_their_recordings_and_recordings_alone(manifests: dict[str, Path]) -> None:
    sups = list(lhotse.load_manifest(manifests["supervisions"]))
    recordings = lhotse.load_manifest(manifests["recordings"])
    utts = list(open_corpus(manifests["supervisions"]))
    assert [u.id for u in utts] == [s.id for s in sups]
    for utt, sup in zip(utts, sups):
        expected = recordings[sup.recording_id].load_audio(offset=sup.start, duration=sup.duration)[0]
        assert np.array_equal(Audio.load(utt.path).samples, expected)
    assert read_transcripts(manifests["supervisions"]) == {"rec1-a": "hello there", "rec1-b": "bye", "rec2-a": "whole"}
    whole = list(open_corpus(manifests["recordings"]))
    assert [(u.id, Path(u.path).name) for u in whole] == [("rec1", "rec1.flac"), ("rec2", "rec2.flac")]


def test_what_cannot_be_read_is_named(manifests: dict[str, Path], tmp_path: Path) -> None:
    lone = tmp_path / "lone" / "supervisions.jsonl.gz"
    lone.parent.mkdir()
    lone.write_bytes(manifests["supervisions"].read_bytes())
    with pytest.raises(SpeechUnitsError, match=r"needs its RecordingSet beside it \(recordings.jsonl.gz\)"):
        list(open_corpus(lone))
    cuts = lhotse.load_manifest(manifests["cuts"])
    url = tmp_path / "url_cuts.jsonl"
    with url.open("w") as handle:
        for cut in cuts:
            record = cut.to_dict()
            record["recording"]["sources"][0].update(type="url", source="https://example.org/a.flac")
            handle.write(json.dumps(record) + "\n")
    with pytest.raises(SpeechUnitsError, match=r"url_cuts.jsonl:1: recording 'rec1' is a 'url' source"):
        list(open_corpus(url))


def test_probes_train_on_a_cutset(tmp_path: Path) -> None:
    corpus = small_corpus(tmp_path / "src", minutes=0.6, speakers=2)
    texts = dict(line.split("\t", 1) for line in (corpus / "text.tsv").read_text().splitlines() if line)
    speakers = read_speakers(corpus / "speakers.tsv")
    recordings = lhotse.RecordingSet.from_recordings(
        lhotse.Recording.from_file(corpus / "wavs" / f"{u}.wav", recording_id=u) for u in sorted(texts))
    sups = lhotse.SupervisionSet.from_segments(
        lhotse.SupervisionSegment(u, u, 0.0, recordings[u].duration, channel=0, text=texts[u], speaker=speakers[u])
        for u in sorted(texts))
    cuts_path = tmp_path / "cuts.jsonl.gz"
    lhotse.CutSet.from_manifests(recordings=recordings, supervisions=sups).to_file(cuts_path)
    probes_train_on(cuts_path, tmp_path, {"asr": [], "speaker": []})


def test_cuts_without_audio_or_fields_are_named(manifests: dict[str, Path], tmp_path: Path) -> None:
    records = [c.to_dict() for c in lhotse.load_manifest(manifests["cuts"])]
    for change, message in ((lambda r: r.pop("recording"), r"bad.jsonl:2: cut 'rec1-b' has no recording"),
                            (lambda r: r.pop("start"), r"bad.jsonl: an entry lacks a field")):
        broken = [dict(r, recording=dict(r["recording"])) for r in records]
        change(broken[1])
        (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
        with pytest.raises(SpeechUnitsError, match=message):
            list(open_corpus(tmp_path / "bad.jsonl"))
