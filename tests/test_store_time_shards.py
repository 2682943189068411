"""Time-bounded shards: a shard is written every N rows or T seconds, whichever comes first, so a
killed run loses at most about T seconds of finished work; resuming stays exact."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from speechunits.corpus import Utterance
from speechunits.errors import SpeechUnitsError
from speechunits.units import Units
from speechunits.units.encode_corpus import UnitResult, write_results
from speechunits.units.store import UnitStore, UnitWriter, store_meta
from test_store import K, RATE, codebook_meta


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rows_per_shard(path: Path) -> list[int]:
    return [pq.ParquetFile(p).metadata.num_rows for p in UnitStore.open(path).shards]


def units(i: int) -> Units:
    return Units(np.arange(i % 5 + 1) % K, RATE, K)


def test_writer_flushes_on_rows_or_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.now = 1000.0  # a slow start-up: the first shard's time counts from its first row
    writer = UnitWriter(tmp_path / "u", store_meta(codebook_meta(), False), rows_per_file=10, shard_seconds=60.0,
                        clock=clock)
    # rows finish 25 s apart from t = 1025 s: the first shard closes with the row at 1100 s
    # (75 s after the first row), the next ones 75 s after the previous shard
    for i in range(10):
        clock.now = 1025.0 + 25.0 * i
        writer.add(f"u{i}", units(i))
    assert rows_per_shard(tmp_path / "u") == [4, 3, 3]
    # rows finish fast (1 s apart): by rows, 10 per shard
    for i in range(10, 22):
        clock.now += 1.0
        writer.add(f"u{i}", units(i))
    assert rows_per_shard(tmp_path / "u") == [4, 3, 3, 10]
    writer.close()
    assert rows_per_shard(tmp_path / "u") == [4, 3, 3, 10, 2]


def test_without_shard_seconds_only_rows_count(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = UnitWriter(tmp_path / "u", store_meta(codebook_meta(), False), rows_per_file=4, clock=clock)
    for i in range(6):
        clock.now += 1000.0
        writer.add(f"u{i}", units(i))
    assert rows_per_shard(tmp_path / "u") == [4]


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_bad_shard_seconds_are_refused(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(SpeechUnitsError, match="shard seconds must be > 0"):
        UnitWriter(tmp_path / "u", store_meta(codebook_meta(), False), shard_seconds=seconds)


class FakeTokenizer:
    """What write_results needs of a UnitTokenizer: one codebook's metadata and the dedup flag."""

    codebooks = [SimpleNamespace(k=K)]
    stream_layers = [2]
    dedup = False

    @staticmethod
    def store_codebook_meta(index: int) -> dict:
        return codebook_meta()


def test_write_loop_bounds_lost_work_by_time(tmp_path: Path) -> None:
    """Each utterance takes 25 s; with 60 s shards the finished rows waiting in memory (what a
    kill would lose) never span 60 s or more of the run."""
    clock = FakeClock()
    corpus = [Utterance(f"u{i}", f"/audio/u{i}.wav") for i in range(10)]
    out = tmp_path / "u"
    on_disk_before: list[int] = []

    def results(todo):
        for utt in todo:
            stored = UnitStore.open(out).ids() if UnitStore.open(out).shards else []
            on_disk_before.append(len(stored))
            clock.now += 25.0  # encoding takes 25 s
            yield UnitResult(utt, [units(int(utt.id[1:]))], None, 1.0)

    report = write_results(results, corpus, FakeTokenizer(), out, rows_per_file=500, shard_seconds=60.0,
                           clock=clock, quiet=True, flush_in_background=False)
    assert report.encoded == 10 and rows_per_shard(out) == [4, 3, 3]
    # before utterance i is encoded, the store holds the rows of every shard finished so far
    assert on_disk_before == [0, 0, 0, 0, 4, 4, 4, 7, 7, 7]
    # finished rows in memory when utterance i starts: at most 3, finished within 50 s (25, 50, 75 s)
    assert max(i - stored for i, stored in enumerate(on_disk_before)) == 3
    # a rerun skips everything, an interrupted one (simulated by a fresh corpus of more rows) resumes
    more = corpus + [Utterance("u10", "/audio/u10.wav")]
    again = write_results(results, more, FakeTokenizer(), out, rows_per_file=500, shard_seconds=60.0,
                          clock=clock, quiet=True, flush_in_background=False)
    assert (again.encoded, again.already_stored) == (1, 10)
    assert sorted(UnitStore.open(out).ids()) == sorted(u.id for u in more)


def test_write_loop_closes_the_results_stream_on_error(tmp_path: Path) -> None:
    """An error in the loop still closes the backend's stream (its ``finally`` - Ray's shutdown -
    runs) and keeps the complete rows already received."""
    closed: list[bool] = []
    corpus = [Utterance(f"u{i}", f"/audio/u{i}.wav") for i in range(3)]

    def results(todo):
        try:
            yield UnitResult(corpus[0], [units(0)], None, 1.0)
            yield UnitResult(corpus[1], None, "/audio/u1.wav: broken", 1.0)
            yield UnitResult(corpus[2], [units(2)], None, 1.0)
        finally:
            closed.append(True)

    with pytest.raises(SpeechUnitsError, match="broken"):
        write_results(results, corpus, FakeTokenizer(), tmp_path / "u", on_error="fail", quiet=True)
    assert closed == [True]
    assert UnitStore.open(tmp_path / "u").ids() == ["u0"]


def test_rows_reach_disk_while_the_results_stream_stalls(tmp_path: Path) -> None:
    """The background flusher writes finished rows once the time bound passed, although no
    further result arrives (a worker stuck on a slow file): a kill then would lose nothing."""
    corpus = [Utterance(f"u{i}", f"/audio/u{i}.wav") for i in range(3)]
    out = tmp_path / "u"
    release = threading.Event()
    seen_on_disk: list[list[str]] = []

    def results(todo):
        todo = list(todo)
        yield UnitResult(todo[0], [units(0)], None, 1.0)
        yield UnitResult(todo[1], [units(1)], None, 1.0)
        deadline = time.monotonic() + 60  # stalled on u2 until its predecessors are on disk
        while len(UnitStore.open(out).ids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        seen_on_disk.append(UnitStore.open(out).ids())
        release.set()
        yield UnitResult(todo[2], [units(2)], None, 1.0)

    report = write_results(results, corpus, FakeTokenizer(), out, rows_per_file=500, shard_seconds=0.2, quiet=True)
    assert release.is_set() and seen_on_disk == [["u0", "u1"]]
    assert report.encoded == 3 and sorted(UnitStore.open(out).ids()) == ["u0", "u1", "u2"]


def test_flush_if_due(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = UnitWriter(tmp_path / "u", store_meta(codebook_meta(), False), shard_seconds=10.0, clock=clock)
    assert writer.flush_if_due() is False  # nothing buffered
    writer.add("u0", units(0))
    clock.now = 9.9
    assert writer.flush_if_due() is False and not UnitStore.open(tmp_path / "u").shards
    clock.now = 10.0
    assert writer.flush_if_due() is True and UnitStore.open(tmp_path / "u").ids() == ["u0"]
