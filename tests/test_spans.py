"""Time ranges of recordings as utterances: Kaldi ``segments`` and NeMo ``offset``/``duration``.

The expectation is numpy slicing of the whole recording at ``round(seconds * rate)``: a span reads
exactly those samples, and features of a data directory with ``segments`` equal those of the same
stretches cut out and written as files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechunits.audio import Audio, open_sound_file
from speechunits.cli.main import main
from speechunits.corpus import open_corpus, total_audio_seconds
from speechunits.errors import SpeechUnitsError
from speechunits.features.io import read_features_dir
from speechunits.spans import parse_span_path, span_path

RATE = 16000


@pytest.fixture()
def recordings(tmp_path: Path) -> dict[str, np.ndarray]:
    """Two 3-second recordings, a wav and a flac, of distinct noise."""
    rng = np.random.default_rng(0)
    made = {}
    for name in ("rec1.wav", "rec2.flac"):
        audio = (rng.standard_normal(3 * RATE) * 0.1).astype(np.float32)
        sf.write(tmp_path / name, audio, RATE, subtype="PCM_16")
        made[name], _ = sf.read(tmp_path / name, dtype="float32")  # as stored (16-bit)
    return made


def test_a_span_reads_the_slice_and_seeks_within_it(recordings, tmp_path: Path) -> None:
    for name, whole in recordings.items():
        path = span_path(tmp_path / name, 0.5, 1.25)
        assert parse_span_path(path) == (str(tmp_path / name), 0.5, 1.25)
        assert np.array_equal(Audio.load(path).samples, whole[8000:20000])
        with open_sound_file(path) as handle:
            assert handle.frames == 12000
            handle.seek(11000)
            assert np.array_equal(handle.read(5000, dtype="float32"), whole[19000:20000])  # stops at the end
        assert np.array_equal(Audio.load(span_path(tmp_path / name, 2.0, None)).samples, whole[32000:])
        blocks = [b.samples for b in Audio.stream(path, RATE, block_seconds=0.2)]
        assert np.array_equal(np.concatenate(blocks), whole[8000:20000])


def test_bad_spans_are_refused(recordings, tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match=r"lies outside the recording \(3.000 s\)"):
        Audio.load(span_path(tmp_path / "rec1.wav", 3.5, 4.0))
    with pytest.raises(SpeechUnitsError, match=r"0 <= start < end"):
        span_path(tmp_path / "rec1.wav", 2.0, 1.0)


def _kaldi_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec1 {tmp_path / 'rec1.wav'}\nrec2 {tmp_path / 'rec2.flac'}\n")
    (data / "segments").write_text("rec1-000010-000120 rec1 0.10 1.20\nrec1-000150-000290 rec1 1.50 2.90\n"
                                   "rec2-000000-000300 rec2 0.00 -1\n")
    (data / "utt2spk").write_text("rec1-000010-000120 a\nrec1-000150-000290 a\nrec2-000000-000300 b\n")
    return data


def test_kaldi_segments_are_the_utterances(recordings, tmp_path: Path) -> None:
    data = _kaldi_dir(tmp_path)
    utts = list(open_corpus(data))
    assert [u.id for u in utts] == ["rec1-000010-000120", "rec1-000150-000290", "rec2-000000-000300"]
    expected = [recordings["rec1.wav"][1600:19200], recordings["rec1.wav"][24000:46400], recordings["rec2.flac"]]
    assert all(np.array_equal(Audio.load(u.path).samples, e) for u, e in zip(utts, expected))
    assert total_audio_seconds(utts[:2]) == pytest.approx(1.1 + 1.4)
    assert total_audio_seconds(utts) is None  # an open end: only the file knows its length


def test_features_of_segments_equal_those_of_the_cut_files(recordings, tmp_path: Path) -> None:
    data = _kaldi_dir(tmp_path)
    cut = tmp_path / "cut"
    cut.mkdir()
    for utt in open_corpus(data):
        file, start, end = parse_span_path(utt.path)
        whole = recordings[Path(file).name]
        stop = len(whole) if end is None else round(end * RATE)
        sf.write(cut / f"{utt.id}.wav", whole[round(start * RATE):stop], RATE, subtype="PCM_16")
    common = ["--encoder", "mfcc", "--quiet", "--device", "cpu"]
    assert main(["features", str(data), "-o", str(tmp_path / "f-seg"), *common]) == 0
    assert main(["features", str(cut), "-o", str(tmp_path / "f-cut"), *common]) == 0
    ours, theirs = dict(read_features_dir(tmp_path / "f-seg")), dict(read_features_dir(tmp_path / "f-cut"))
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    # the features directory's fairseq manifest lists the time ranges: each read back as its own utterance
    listed = list(open_corpus(tmp_path / "f-seg" / "manifest.tsv"))
    assert [u.id for u in listed] == ["rec1_0000010-0000120", "rec1_0000150-0000290", "rec2_0000000-end"]
    assert Audio.load(listed[1].path) == Audio.load(list(open_corpus(data))[1].path)


def test_bad_segments_lines_are_named(recordings, tmp_path: Path) -> None:
    data = _kaldi_dir(tmp_path)
    for line, message in (("u rec1 1.0", "expected 'utt_id recording_id start end'"),
                          ("u rec1 2.0 1.0", "needs 0 <= start < end"),
                          ("u rec1 a b", "start and end must be seconds")):
        (data / "segments").write_text(line + "\n")
        with pytest.raises(SpeechUnitsError, match=rf"segments:1: {message}"):
            list(open_corpus(data))


def test_nemo_offsets_are_time_ranges(recordings, tmp_path: Path) -> None:
    manifest = tmp_path / "train.jsonl"
    rows = [{"audio_filepath": "rec1.wav", "offset": 0.25, "duration": 0.5, "text": "one"},
            {"audio_filepath": "rec1.wav", "offset": 1.0, "duration": 1.5, "text": "two"},
            {"audio_filepath": "rec2.flac", "duration": 3.0, "text": "whole"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    utts = list(open_corpus(manifest))
    assert [u.id for u in utts] == ["rec1_0000025", "rec1_0000100", "rec2"]
    whole = recordings["rec1.wav"]
    assert np.array_equal(Audio.load(utts[0].path).samples, whole[4000:12000])
    assert np.array_equal(Audio.load(utts[1].path).samples, whole[16000:40000])
    assert np.array_equal(Audio.load(utts[2].path).samples, recordings["rec2.flac"])
    from speechunits.probe.labels import read_transcripts

    assert read_transcripts(manifest) == {"rec1_0000025": "one", "rec1_0000100": "two", "rec2": "whole"}


def test_span_times_find_their_sample_again_in_long_recordings() -> None:
    for rate in (8000, 16000, 44100, 48000):
        for sample in (0, 1, 19_753_085, 3 * 3600 * rate + 7):  # up to three hours in
            _, start, _ = parse_span_path(span_path("x.wav", sample / rate, None))
            assert round(start * rate) == sample
