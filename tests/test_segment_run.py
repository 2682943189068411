"""``speechunits segment``: segment files, manifest, segments.tsv, resuming, bad input."""
from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

if find_spec("silero_vad") is None:  # not importorskip: importing silero_vad sets torch to one thread
    pytest.skip("needs the [vad] extra (silero-vad)", allow_module_level=True)
pytest.importorskip("espeakng_loader")

from conftest import cli_error
from speechunits.audio import Audio  # noqa: E402
from speechunits.cli.main import main  # noqa: E402
from speechunits.corpus import open_corpus  # noqa: E402
from speechunits.errors import SpeechUnitsError  # noqa: E402
from speechunits.segment.run import JOURNAL, segment_corpus  # noqa: E402
from speechunits.segment.segments import SegmentOptions  # noqa: E402
from speechunits.segment.vad import SileroVAD  # noqa: E402

from test_segment_vad import TOLERANCE_S, build_long_recording  # noqa: E402


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple[float, float]]]]:
    """``rec/a/long.wav`` (16 kHz mono) and ``rec/b.flac`` (the same at 22.05 kHz, stereo)."""
    from speechunits.audio import Audio
    from speechunits.synth.testing import small_corpus

    tmp = tmp_path_factory.mktemp("segment_run")
    corpus = small_corpus(tmp, minutes=0.5, speakers=3)
    root = tmp / "rec"
    (root / "a").mkdir(parents=True)
    spans = build_long_recording(corpus, root / "a" / "long.wav")
    wave = Audio.load(root / "a" / "long.wav").resample(22050).samples
    sf.write(str(root / "b.flac"), np.stack([wave, 0.5 * wave], axis=1), 22050, subtype="PCM_16")
    return root, {"a/long": spans, "b": spans}


def read_segments(out: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    for line in (out / "segments.tsv").read_text(encoding="utf-8").splitlines():
        seg, src, start, end = line.split("\t")
        rows.append((seg, src, float(start), float(end)))
    return rows


def test_cli_writes_segment_files_a_manifest_and_segments_tsv(recordings, tmp_path):
    root, spans = recordings
    out = tmp_path / "out"
    assert main(["segment", str(root), "-o", str(out), "--quiet", "--pad", "0.05"]) == 0
    rows = read_segments(out)
    by_source = {src: [(s, e) for _, sid, s, e in rows if sid == src] for src in spans}
    for src, truth in spans.items():
        assert len(by_source[src]) == len(truth)
        for (start, end), (true_start, true_end) in zip(by_source[src], truth):
            assert abs(start - true_start) <= TOLERANCE_S + 0.05 and abs(end - true_end) <= TOLERANCE_S + 0.05
    # The manifest is a corpus whose ids are the segment ids, in the same order.
    utts = list(open_corpus(out / "manifest.tsv"))
    assert [u.id for u in utts] == [r[0] for r in rows]
    assert {u.id.rsplit("_", 1)[0] for u in utts} == {"a/long/long", "b/b"}
    assert all(Path(u.path) == out / f"{u.id}.flac" for u in utts)
    # Each file is the exact slice of its source (both 16-bit: the samples are equal).
    sources = {"a/long": root / "a" / "long.wav", "b": root / "b.flac"}
    for utt, (seg_id, src, start, end) in zip(utts, rows):
        data, rate = sf.read(utt.path, dtype="int16", always_2d=True)
        source, source_rate = sf.read(str(sources[src]), dtype="int16", always_2d=True)
        assert rate == source_rate and data.shape[0] == utt.num_samples
        begin = round(start * rate)
        np.testing.assert_array_equal(data, source[begin: begin + data.shape[0]])
        assert round(end * rate) == begin + data.shape[0]
        start_ms, end_ms = seg_id.rsplit("_", 1)[1].split("-")
        assert (int(start_ms), int(end_ms)) == (round(1000 * start), round(1000 * end))
    settings = json.loads((out / "segment.json").read_text())
    assert settings["settings"]["options"]["pad_s"] == 0.05 and "silero-vad" in settings["settings"]["vad"]
    assert settings["summary"]["segments_total"] == len(rows) and settings["summary"]["sources_total"] == 2
    assert (out / "errors.jsonl").read_text() == ""


def test_manifest_feeds_the_next_command(recordings, tmp_path):
    root, _ = recordings
    out = tmp_path / "out"
    assert main(["segment", str(root / "a" / "long.wav"), "-o", str(out), "--quiet"]) == 0
    feats = tmp_path / "feats"
    assert main(["features", str(out / "manifest.tsv"), "--encoder", "mfcc", "-o", str(feats), "--quiet"]) == 0
    meta = json.loads((feats / "features.json").read_text())
    assert meta["ids"] == [r[0] for r in read_segments(out)]


def test_no_audio_writes_the_same_segments_only(recordings, tmp_path):
    root, _ = recordings
    assert main(["segment", str(root), "-o", str(tmp_path / "full"), "--quiet"]) == 0
    assert main(["segment", str(root), "-o", str(tmp_path / "bare"), "--quiet", "--no-audio"]) == 0
    assert read_segments(tmp_path / "bare") == read_segments(tmp_path / "full")
    assert not (tmp_path / "bare" / "manifest.tsv").exists()
    assert not list((tmp_path / "bare").rglob("*.flac"))
    # its manifest.jsonl lists the same segments as time ranges of the sources: the same samples
    spans = list(open_corpus(tmp_path / "bare" / "manifest.jsonl"))
    files = list(open_corpus(tmp_path / "full" / "manifest.tsv"))
    assert [u.id for u in spans] == [u.id for u in files] and len(spans) > 3
    assert all(Audio.load(a.path) == Audio.load(b.path) for a, b in zip(spans, files))


def test_max_seconds_and_channel(recordings, tmp_path):
    root, _ = recordings
    out = tmp_path / "out"
    assert main(["segment", str(root / "b.flac"), "-o", str(out), "--quiet", "--max-seconds", "1.5",
                 "--channel", "1"]) == 0
    rows = read_segments(out)
    assert max(e - s for _, _, s, e in rows) <= 1.5 + 1e-6
    assert len(rows) > 8  # the 2-3 s utterances were cut
    full, _ = sf.read(str(root / "b.flac"), dtype="int16", always_2d=True)
    for seg_id, _, start, _ in rows[:3]:
        data, rate = sf.read(str(out / f"{seg_id}.flac"), dtype="int16", always_2d=True)
        begin = round(start * rate)
        np.testing.assert_array_equal(data[:, 0], full[begin: begin + data.shape[0], 1])


def test_a_rerun_resumes_after_a_crash_and_equals_one_run(recordings, tmp_path):
    root, _ = recordings
    out = tmp_path / "out"
    vad = SileroVAD.load()
    first = segment_corpus(open_corpus(root), out, vad, quiet=True)
    assert (first.segmented, first.already_done) == (2, 0)
    expected = read_segments(out)
    manifest = (out / "manifest.tsv").read_text()
    # A crash in the middle of the second source: its rows written, its U line not, a torn line after.
    journal = (out / JOURNAL).read_text().splitlines(keepends=True)
    cut = max(i for i, line in enumerate(journal) if line.startswith("U\t") and i < len(journal) - 1)
    (out / JOURNAL).write_text("".join(journal[: cut + 1] + journal[cut + 1: cut + 3]) + "S\tb/b_0")
    for stale in ("segments.tsv", "manifest.tsv"):
        (out / stale).unlink()
    again = segment_corpus(open_corpus(root), out, vad, quiet=True)
    assert (again.segmented, again.already_done) == (1, 1)
    assert read_segments(out) == expected and (out / "manifest.tsv").read_text() == manifest
    done = segment_corpus(open_corpus(root), out, vad, quiet=True)
    assert (done.segmented, done.already_done, done.segments) == (0, 2, 0)
    assert read_segments(out) == expected
    with pytest.raises(SpeechUnitsError, match="other settings.*options"):
        segment_corpus(open_corpus(root), out, vad, SegmentOptions(pad_s=0.2), quiet=True)


def test_bad_files_are_skipped_or_stop_the_run(recordings, tmp_path, caplog):
    root, _ = recordings
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.wav").write_bytes((root / "a" / "long.wav").read_bytes())
    (corpus / "bad.wav").write_bytes(b"RIFF....WAVEfmt not audio")
    out = tmp_path / "out"
    assert main(["segment", str(corpus), "-o", str(out), "--quiet"]) == 0
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["bad"] and "unreadable" in errors[0]["reason"]
    assert {r[1] for r in read_segments(out)} == {"good"}
    assert "bad.wav: unreadable" in cli_error(["segment", str(corpus), "-o", str(tmp_path / "fail"), "--quiet",
                                               "--on-error", "fail"], caplog)
    assert main(["segment", str(corpus / "bad.wav"), "-o", str(tmp_path / "all_bad"), "--quiet"]) == 1


def test_ids_that_would_leave_the_output_directory_are_refused(recordings, tmp_path):
    root, _ = recordings
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "../escape", "path": str(root / "b.flac")}) + "\n")
    out = tmp_path / "out"
    assert main(["segment", str(manifest), "-o", str(out), "--quiet"]) == 1
    assert "cannot name an output directory" in (out / "errors.jsonl").read_text()
    assert not (tmp_path / "escape").exists()


def test_bad_options_are_user_errors(recordings, tmp_path, caplog):
    root, _ = recordings
    # OUT inside INPUT
    assert "inside the input directory" in cli_error(["segment", str(root), "-o", str(root / "seg"), "--quiet"], caplog)
    assert not (root / "seg").exists()
    for flag, value in (("--threshold", "1.5"), ("--max-seconds", "-1"), ("--pad", "-0.1"), ("--channel", "-1")):
        assert flag in cli_error(["segment", str(root), "-o", str(tmp_path / "o"), "--quiet", flag, value], caplog)


def test_a_source_that_fails_halfway_leaves_no_segment_files(recordings, tmp_path):
    from speechunits.segment.run import SegmentRow, write_segment_audio

    root, _ = recordings
    frames = sf.info(str(root / "b.flac")).frames
    rows = [SegmentRow("b/b_0", "b", 0, 1000, 22050, "b/b_0.flac"),
            SegmentRow("b/b_1", "b", frames + 5000, frames + 6000, 22050, "b/b_1.flac")]  # past the end
    with pytest.raises(SpeechUnitsError, match="cannot read"):
        write_segment_audio(root / "b.flac", rows, tmp_path)
    assert not list(tmp_path.rglob("*.flac"))
