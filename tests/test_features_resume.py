"""Resumable `features`: finished utterances are kept in parts closed at N utterances or T seconds,
a rerun skips them, and the directory ends equal (byte for byte here) to an uninterrupted run's."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_when, run_alone, write_tone
from speechunits.cli.main import main
from speechunits.corpus import open_corpus
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError
from speechunits.features import iter_features, read_features_dir, read_features_meta
from speechunits.features.parts import PARTS_DIR
from speechunits.features.write import write_features
from test_store_time_shards import FakeClock


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume_corpus")
    for i in range(8):
        write_tone(root / f"u{i}.wav", 0.3 + 0.1 * i, freq=150 + 20 * i, seed=i)
    (root / "bad.wav").write_bytes(b"RIFF broken")
    return root


@pytest.fixture(scope="module")
def mfcc():
    return load_encoder("mfcc")


def files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def local_items(encoder, layers=(0,)):
    return lambda todo: iter_features(encoder, todo, list(layers), quiet=True)


@pytest.fixture(scope="module")
def reference(corpus: Path, mfcc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "f"
    report = write_features(local_items(mfcc), open_corpus(corpus), out, mfcc.info, [0], extra_meta={"x": 1})
    assert (report.extracted, report.failed, report.already_stored) == (8, 1, 0)
    return out


def test_layout_is_the_fairseq_one_without_parts(reference: Path, corpus: Path, mfcc) -> None:
    assert sorted(files(reference)) == ["errors.jsonl", "features.json", "layer0.len", "layer0.npy", "manifest.tsv"]
    meta = read_features_meta(reference)
    assert meta["ids"] == [f"u{i}" for i in range(8)] and meta["x"] == 1 and meta["num_errors"] == 1
    got = dict(read_features_dir(reference))
    for i in (0, 7):  # independent expectation: the encoder on the file alone
        expected = mfcc.extract(__import__("soundfile").read(corpus / f"u{i}.wav", dtype="float32")[0])[0]
        np.testing.assert_array_equal(got[f"u{i}"], expected)
    lens = [int(x) for x in (reference / "layer0.len").read_text().split()]
    assert np.load(reference / "layer0.npy").shape == (sum(lens), 39)


def test_an_interrupted_run_keeps_its_parts_and_the_rerun_ends_byte_identical(
        corpus: Path, mfcc, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "f"

    def interrupted(todo):
        good = 0
        for item in iter_features(mfcc, todo, [0], quiet=True):
            if good == 5:
                raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) after 5 utterances
            good += item.error is None
            yield item

    with pytest.raises(KeyboardInterrupt):
        write_features(interrupted, open_corpus(corpus), out, mfcc.info, [0], rows_per_part=2, extra_meta={"x": 1})
    assert not (out / "features.json").exists() and (out / PARTS_DIR).is_dir()
    assert len(kept_ids(out)) == 5  # the open part was closed on the way out
    seen: list[str] = []

    def counting(todo):
        todo = list(todo)
        seen.extend(u.id for u in todo)
        return iter_features(mfcc, todo, [0], quiet=True)

    report = write_features(counting, open_corpus(corpus), out, mfcc.info, [0], rows_per_part=2, extra_meta={"x": 1})
    assert (report.extracted, report.already_stored, report.failed) == (3, 5, 1)
    assert seen == ["bad", "u5", "u6", "u7"]  # corpus order; bad files are tried again
    assert files(out) == files(reference)
    # a rerun of a finished run extracts nothing (only bad files are tried again) and changes nothing
    seen.clear()
    again = write_features(counting, open_corpus(corpus), out, mfcc.info, [0], extra_meta={"x": 1})
    assert (again.extracted, again.already_stored, seen) == (0, 8, ["bad"])
    assert files(out) == files(reference)


def test_parts_close_by_time_also_while_the_stream_stalls(corpus: Path, mfcc, tmp_path: Path) -> None:
    """Utterances finish 25 s apart on a fake clock: with 60 s parts no more than 3 finished ones
    wait in the open part; and a part due while the stream is stalled is closed by the flusher."""
    clock = FakeClock()
    out = tmp_path / "f"
    kept_before: list[int] = []

    def slow(todo):
        for item in iter_features(mfcc, todo, [0], quiet=True):
            kept_before.append(len(kept_ids(out)) if (out / PARTS_DIR).is_dir() else 0)
            clock.now += 25.0
            yield item

    write_features(slow, open_corpus(corpus), out, mfcc.info, [0], shard_seconds=60.0, clock=clock,
                   flush_in_background=False)
    # bad.wav comes first (no row), then u0..u7 every 25 s: parts of 4, 3 (and the rest at the end)
    assert kept_before == [0, 0, 0, 0, 0, 4, 4, 4, 7]
    # the background flusher: bad.wav, u0 and u1 finish, then the stream stalls until they are on disk
    out2 = tmp_path / "g"
    on_disk: list[set[str]] = []

    def stalled(todo):
        stream = iter_features(mfcc, todo, [0], quiet=True)
        for _ in range(3):  # bad.wav, u0, u1
            yield next(stream)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kept = set(kept_ids(out2)) if (out2 / PARTS_DIR).is_dir() else set()
            if len(kept) >= 2:
                break
            time.sleep(0.02)
        on_disk.append(kept)
        yield from stream

    write_features(stalled, open_corpus(corpus), out2, mfcc.info, [0], shard_seconds=0.2)
    assert on_disk == [{"u0", "u1"}]
    assert files(out2) == files(tmp_path / "f")


def test_other_settings_are_refused_while_parts_exist(corpus: Path, mfcc, tmp_path: Path, tiny_hubert_dir: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "f"

    def interrupted(todo):
        yield next(iter_features(mfcc, todo, [0], quiet=True))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_features(interrupted, open_corpus(corpus), out, mfcc.info, [0])
    with pytest.raises(SpeechUnitsError, match="different settings.*settings"):
        write_features(local_items(mfcc), open_corpus(corpus), out, mfcc.info, [0], settings={"channel": 1})
    hubert = load_encoder(str(tiny_hubert_dir), device="cpu")
    argv = ["features", str(corpus), "--encoder", str(tiny_hubert_dir), "--layer", "1", "-o", str(out), "--quiet"]
    from conftest import cli_error

    assert "encoder_identity" in cli_error(argv, caplog) and hubert.info.identity in caplog.text
    assert (out / PARTS_DIR).is_dir() and not (out / "features.json").exists()


def test_a_complete_directory_of_another_corpus_is_not_reused(corpus: Path, mfcc, reference: Path,
                                                              tmp_path: Path) -> None:
    """Same ids, same settings, other audio files: the old frames are not taken for the new files."""
    import shutil

    other = tmp_path / "other"
    for i in range(8):
        write_tone(other / f"u{i}.wav", 0.3 + 0.1 * i, freq=700 + 20 * i, seed=100 + i)
    out = tmp_path / "f"
    shutil.copytree(reference, out)
    report = write_features(local_items(mfcc), open_corpus(other), out, mfcc.info, [0])
    assert (report.extracted, report.already_stored) == (8, 0)
    fresh = tmp_path / "fresh"
    write_features(local_items(mfcc), open_corpus(other), fresh, mfcc.info, [0])
    assert files(out) == files(fresh)


def test_cli_options_and_a_complete_directory_of_other_settings(corpus: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from conftest import cli_error

    out = tmp_path / "f"
    base = ["features", str(corpus), "--encoder", "mfcc", "-o", str(out), "--quiet"]
    assert "--shard-seconds must be >= 0" in cli_error(base + ["--shard-seconds", "-1"], caplog)
    assert "--rows-per-part must be >= 1" in cli_error(base + ["--rows-per-part", "0"], caplog)
    assert main(base + ["--rows-per-part", "3", "--shard-seconds", "0"]) == 0
    first = files(out)
    assert main(base + ["--encoder", "logmel"]) == 0  # other settings: the directory is replaced
    assert read_features_meta(out)["encoder"] == "logmel" and files(out) != first
    assert not (out / PARTS_DIR).exists()


def kept_ids(out: Path) -> list[str]:
    """Ids the parts' index names (read with pyarrow, not with our reader)."""
    import pyarrow.parquet as pq

    return [i for p in sorted((out / PARTS_DIR).glob("index-*.parquet")) for i in pq.read_table(p)["id"].to_pylist()]


def _features_command(corpus: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "speechunits.cli.main", "features", str(corpus), "--encoder", str(model),
            "--layer", "1,3", "-o", str(out), "--rows-per-part", "500", "--shard-seconds", "0.05",
            "--batch-size", "1", "--max-batch-seconds", "1", "--loader-workers", "0", "--quiet", "--device", "cpu"]


#: Every run of a command compared byte for byte gets the same torch threads (reduction order).
@pytest.mark.slow
def test_kill_9_after_the_first_time_bounded_part_then_rerun(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    """500 utterances per part, but a part every 0.05 s: the driver, killed once the first part
    exists, kept it; the rerun extracts only the rest and the directory equals (byte for byte,
    with --batch-size 1) an uninterrupted run's."""
    corpus = tmp_path / "audio"
    n = 40
    for i in range(n):
        write_tone(corpus / f"utt{i:02d}.wav", 4.0 + (i % 3), freq=120 + 17 * i, seed=i)
    reference = tmp_path / "reference"
    assert run_alone(_features_command(corpus, tiny_hubert_dir, reference)) == 0
    out = tmp_path / "killed"
    code = kill_when(_features_command(corpus, tiny_hubert_dir, out),
                     lambda: (out / PARTS_DIR).is_dir() and any((out / PARTS_DIR).glob("index-*.parquet")))
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    kept = kept_ids(out)
    assert 0 < len(kept) < n and len(set(kept)) == len(kept)
    assert run_alone(_features_command(corpus, tiny_hubert_dir, out)) == 0
    assert files(out) == files(reference)
