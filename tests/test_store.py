"""Unit store: Parquet layout, metadata, readers, resumable writing and crash recovery."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from speechunits.errors import SpeechUnitsError
from speechunits.units import Units
from speechunits.units.parquet_dir import META_KEY, SIDECAR
from speechunits.units.store import UnitStore, UnitWriter, store_meta, write_units

K = 20
RATE = 50.0


def codebook_meta(sha: str = "a" * 64, k: int = K) -> dict:
    return {"format_version": 1, "encoder": "tiny", "encoder_identity": "abc", "layer": 2, "k": k, "dim": 8,
            "sample_rate": 16000, "frame_rate": RATE, "hop_length": 320, "receptive_field": 400,
            "frame_offset_s": 0.0125, "sha256": sha}


def make_items(n: int = 7, dedup: bool = False, seed: int = 0) -> list[tuple[str, Units]]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        frames = rng.integers(0, 4, size=int(rng.integers(0, 30))) * 5  # runs are likely
        units = Units(frames, RATE, K)
        items.append((f"spk{i % 2}/utt{i}", units.dedup() if dedup else units))
    return items


def assert_same_units(a: Units, b: Units) -> None:
    assert np.array_equal(a.ids, b.ids)
    assert (a.durations is None) == (b.durations is None)
    if a.durations is not None:
        assert np.array_equal(a.durations, b.durations)
    assert a.frame_rate == b.frame_rate and a.vocab_size == b.vocab_size


@pytest.mark.parametrize("dedup", [False, True])
def test_write_and_read_round_trip(tmp_path: Path, dedup: bool) -> None:
    items = make_items(dedup=dedup)
    store = write_units(tmp_path / "u", items, codebook_meta(), rows_per_file=3)
    assert len(store.shards) == 3  # 7 rows at 3 per file
    assert len(store) == 7
    assert store.ids() == [utt for utt, _ in items]
    for (utt_a, a), (utt_b, b) in zip(items, store):
        assert utt_a == utt_b
        assert_same_units(a, b)
    assert store.meta["dedup"] is dedup
    assert store.meta["codebook"]["sha256"] == "a" * 64
    assert store.meta["codebook_sha256"] == "a" * 64
    assert store.meta["vocab_size"] == K and store.meta["frame_rate"] == RATE
    assert store.meta["frame_offset_s"] == 0.0125


def test_parquet_columns_types_and_metadata(tmp_path: Path) -> None:
    items = make_items(3, dedup=True)
    store = write_units(tmp_path / "u", items, codebook_meta())
    table = pq.read_table(store.shards[0])
    assert table.schema.names == ["id", "units", "durations", "num_frames", "duration_s"]
    assert table.schema.field("units").type == pa.list_(pa.int32())
    assert table.schema.field("durations").type == pa.list_(pa.int32())
    assert table.schema.field("num_frames").type == pa.int64()
    assert table.schema.field("duration_s").type == pa.float64()
    meta = json.loads(table.schema.metadata[META_KEY])
    assert meta == store.meta
    row = table.slice(1, 1).to_pylist()[0]
    assert row["units"] == items[1][1].ids.tolist()
    assert row["durations"] == items[1][1].durations.tolist()
    assert row["num_frames"] == int(items[1][1].durations.sum())
    assert row["duration_s"] == pytest.approx(row["num_frames"] / RATE)
    frame_level = write_units(tmp_path / "f", make_items(2), codebook_meta())
    assert "durations" not in pq.read_schema(frame_level.shards[0]).names


def test_readable_by_pyarrow_dataset_and_hf_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.dataset as pds

    items = make_items(5, dedup=True)
    path = tmp_path / "u"
    write_units(path, items, codebook_meta(), rows_per_file=2)
    (path / ".units-00000of00001-000009.parquet.99999999.tmp").write_bytes(b"left by a killed run")
    table = pds.dataset(path, format="parquet").to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(u for u, _ in items)

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    ds = datasets.load_dataset("parquet", data_dir=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    by_id = {row["id"]: row for row in ds}
    assert set(by_id) == {u for u, _ in items}
    for utt, units in items:
        assert by_id[utt]["units"] == units.ids.tolist()
        assert by_id[utt]["durations"] == units.durations.tolist()


def test_empty_store_opens(tmp_path: Path) -> None:
    store = write_units(tmp_path / "u", [], codebook_meta())
    assert len(store) == 0 and store.ids() == [] and list(store) == []
    assert store.meta["dedup"] is False


def test_resume_skips_stored_and_recovers_from_crash_leftovers(tmp_path: Path) -> None:
    items = make_items(9)
    meta = store_meta(codebook_meta(), dedup=False)
    path = tmp_path / "u"
    writer = UnitWriter(path, meta, rows_per_file=2)
    for utt, units in items[:5]:
        writer.add(utt, units)
    # "killed": the 5th row is only buffered; simulate a partial temp and a truncated last shard.
    shards = sorted(path.glob("*.parquet"))
    assert len(shards) == 2
    (path / ".units-00000of00001-000002.parquet.99999999.tmp").write_bytes(b"PAR1 partial")
    live = path / f".units-00000of00001-000002.parquet.{os.getppid()}.tmp"  # a live duplicate job's
    live.write_bytes(b"PAR1 in progress")
    data = shards[-1].read_bytes()
    shards[-1].write_bytes(data[: len(data) // 2])
    with pytest.raises(SpeechUnitsError, match="unreadable"):
        list(UnitStore.open(path))
    del writer  # "killed": its job lock goes with it, as with a dead process

    resumed = UnitWriter(path, meta, rows_per_file=2)
    assert resumed.done == {items[0][0], items[1][0]}  # the truncated shard's rows are gone
    assert list(path.glob(".*.tmp")) == [live]
    assert len(list(path.glob(".*.corrupt"))) == 1
    with resumed:
        for utt, units in items:
            if utt not in resumed.done:
                resumed.add(utt, units)
    store = UnitStore.open(path)
    stored = store.to_dict()
    assert sorted(store.ids()) == sorted(u for u, _ in items)
    for utt, units in items:
        assert_same_units(units, stored[utt])


def test_refuses_other_codebook_or_dedup_setting(tmp_path: Path) -> None:
    path = tmp_path / "u"
    write_units(path, make_items(3), codebook_meta())
    with pytest.raises(SpeechUnitsError, match="codebook_sha256"):
        UnitWriter(path, store_meta(codebook_meta(sha="b" * 64), dedup=False))
    with pytest.raises(SpeechUnitsError, match="dedup"):
        UnitWriter(path, store_meta(codebook_meta(), dedup=True))
    with pytest.raises(SpeechUnitsError, match="not of the expected codebook"):
        UnitStore.open(path, codebook_sha256="b" * 64)
    assert len(UnitStore.open(path, codebook_sha256="a" * 64)) == 3
    with pytest.raises(SpeechUnitsError, match="already holds"):
        write_units(path, make_items(3), codebook_meta())
    # A shard copied in from a store of another codebook is refused on open.
    other = write_units(tmp_path / "other", make_items(2, seed=5), codebook_meta(sha="c" * 64))
    shutil.copy(other.shards[0], path / "units-00007of00009-000000.parquet")
    with pytest.raises(SpeechUnitsError, match="codebook_sha256"):
        UnitStore.open(path)


def test_writer_rejects_mismatched_units_and_duplicates(tmp_path: Path) -> None:
    writer = UnitWriter(tmp_path / "u", store_meta(codebook_meta(), dedup=False))
    with pytest.raises(SpeechUnitsError, match="K=30"):
        writer.add("a", Units(np.array([1, 2]), RATE, 30))
    with pytest.raises(SpeechUnitsError, match="dedup"):
        writer.add("a", Units(np.array([1, 2]), RATE, K).dedup())
    writer.add("a", Units(np.array([1, 2]), RATE, K))
    with pytest.raises(SpeechUnitsError, match="already stored"):
        writer.add("a", Units(np.array([1, 2]), RATE, K))


def test_sharded_jobs_share_a_directory(tmp_path: Path) -> None:
    items = make_items(8)
    meta = store_meta(codebook_meta(), dedup=False)
    path = tmp_path / "u"
    for job in range(2):
        with UnitWriter(path, meta, job=(job, 2), rows_per_file=3) as writer:
            for utt, units in items[job::2]:
                writer.add(utt, units)
    store = UnitStore.open(path)
    assert sorted(store.ids()) == sorted(u for u, _ in items)
    assert len({p.name for p in store.shards}) == len(store.shards) == 4
    assert json.loads((path / SIDECAR).read_text())["codebook_sha256"] == "a" * 64


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(SpeechUnitsError, match="no such"):
        UnitStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpeechUnitsError, match="not a unit store"):
        UnitStore.open(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"id": ["x"]}), foreign / "data.parquet")
    with pytest.raises(SpeechUnitsError, match="without 'speechunits' metadata"):
        UnitStore.open(foreign)
    with pytest.raises(SpeechUnitsError, match="lacks"):
        store_meta({"sha256": "x"}, dedup=False)


def test_a_second_writer_of_the_same_job_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    """Two writers of one job would both skip nothing and store every row twice (two `encode`
    commands into one store, found by running them): the second is refused until the first ends."""
    meta = store_meta(codebook_meta(), dedup=False)
    items = make_items(4)
    a = UnitWriter(tmp_path / "u", meta, rows_per_file=10)
    with pytest.raises(SpeechUnitsError, match=r"job 0/1 is being written by another process now"):
        UnitWriter(tmp_path / "u", meta, rows_per_file=10)
    other_job = UnitWriter(tmp_path / "u", meta, rows_per_file=10, job=(1, 2))  # other --shard: welcome
    other_job.close()
    for utt, units in items[:2]:
        a.add(utt, units)
    a.close()
    with UnitWriter(tmp_path / "u", meta, rows_per_file=10) as b:  # free again, and resumes
        assert b.done == {u for u, _ in items[:2]}
        for utt, units in items[2:]:
            b.add(utt, units)
    assert sorted(UnitStore.open(tmp_path / "u").ids()) == sorted(u for u, _ in items)


def test_duplicate_job_never_overwrites(tmp_path: Path, monkeypatch) -> None:
    """Where locks do not hold (no fcntl, some network filesystems), file names still keep two writers of
    one job from overwriting each other's shards."""
    import speechunits.units.parquet_dir as parquet_dir

    class NoLock:
        def __init__(self, *args: object) -> None:
            pass

        def release(self) -> None:
            pass

    monkeypatch.setattr(parquet_dir, "ExclusiveLock", NoLock)
    meta = store_meta(codebook_meta(), dedup=False)
    items = make_items(4)
    a = UnitWriter(tmp_path / "u", meta, rows_per_file=10)
    b = UnitWriter(tmp_path / "u", meta, rows_per_file=10)  # same job spec, by mistake
    for utt, units in items[:2]:
        a.add(utt, units)
    for utt, units in items[2:]:
        b.add(utt, units)
    a.close()
    b.close()
    store = UnitStore.open(tmp_path / "u")
    assert len(store.shards) == 2 and sorted(store.ids()) == sorted(u for u, _ in items)
