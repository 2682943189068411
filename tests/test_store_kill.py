"""`speechunits encode` end to end: CLI, several codebooks, and a real kill -9 then resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_when, write_tone
from speechunits.cli.main import main
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.units.store import UnitStore
from test_tokenizer import make_codebook


@pytest.fixture(scope="module")
def saved_codebooks(tiny_hubert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    encoder = load_encoder(str(tiny_hubert_dir), device="cpu")
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(32000) / 7.0) + 0.05 * rng.standard_normal(32000)).astype(np.float32)
    root = tmp_path_factory.mktemp("codebooks")
    paths = []
    for layer, k in ((3, 7), (1, 5)):
        feats = encoder.extract(wave, [layer])[layer]
        cb = make_codebook(feats[rng.choice(len(feats), k, replace=False)], layer, encoder.info)
        paths.append(cb.save(root / f"cb_l{layer}"))
    return paths


def contents(path: Path) -> dict[str, tuple[list[int], list[int] | None, float]]:
    return {u: (x.ids.tolist(), None if x.durations is None else x.durations.tolist(), s)
            for u, x, s in UnitStore.open(path).iter_rows()}


def test_encode_cli_streams_and_rerun(tmp_path: Path, tone_dir: Path, saved_codebooks: list[Path]) -> None:
    out = tmp_path / "u"
    args = ["encode", str(tone_dir), "--codebook", str(saved_codebooks[0]), "--codebook", str(saved_codebooks[1]),
            "--dedup", "-o", str(out), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    stores = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert stores == ["stream0-layer3-k7", "stream1-layer1-k5"]
    first = {name: contents(out / name) for name in stores}
    assert all(len(c) == 5 for c in first.values())
    with pytest.raises(SpeechUnitsError, match="open one of stream0-layer3-k7, stream1-layer1-k5"):
        UnitStore.open(out)
    store = UnitStore.open(out / "stream0-layer3-k7")
    assert store.meta["codebook"] == Codebook.load(saved_codebooks[0]).meta and store.dedup
    assert main(args) == 0  # nothing left to do, nothing changes
    assert {name: contents(out / name) for name in stores} == first
    # Appending with another codebook, or without --dedup, is refused.
    other = ["encode", str(tone_dir), "--codebook", str(saved_codebooks[1]), "-o", str(out / stores[0]), "--quiet"]
    assert main(other + ["--dedup"]) == 2
    assert main(["encode", str(tone_dir), "--codebook", str(saved_codebooks[0]), "-o", str(out / stores[0]),
                 "--quiet"]) == 2
    assert contents(out / stores[0]) == first[stores[0]]
    # A codebook of another layer than the one asked for is refused before anything is written.
    assert main(["encode", str(tone_dir), "--codebook", str(saved_codebooks[0]), "--layer", "2",
                 "-o", str(tmp_path / "x"), "--quiet"]) == 2
    assert not (tmp_path / "x").exists()


def _encode_command(corpus: Path, codebook: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "speechunits.cli.main", "encode", str(corpus), "--codebook", str(codebook),
            "-o", str(out), "--rows-per-file", "1", "--max-batch-seconds", "1", "--quiet", "--device", "cpu"]


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted_run(tmp_path: Path, saved_codebooks: list[Path]) -> None:
    corpus = tmp_path / "audio"
    n = 30
    for i in range(n):
        write_tone(corpus / f"utt{i:02d}.wav", 4.0 + (i % 3), freq=120 + 17 * i, seed=i)
    reference = tmp_path / "reference"
    assert main(_encode_command(corpus, saved_codebooks[0], reference)[3:]) == 0
    expected = contents(reference)
    assert len(expected) == n

    out = tmp_path / "killed"
    command = _encode_command(corpus, saved_codebooks[0], out)
    for shards in (1, 4):  # kill the first run early, the second one later
        code = kill_when(command, lambda: out.is_dir() and len(list(out.glob("*.parquet"))) >= shards,
                         timeout=120.0)
        assert code == -signal.SIGKILL, "the run finished before it could be killed"
        stored = contents(out)
        assert 0 < len(stored) < n
        assert all(expected[utt] == value for utt, value in stored.items())
    assert main(command[3:]) == 0
    assert contents(out) == expected
    assert sorted(UnitStore.open(out).ids()) == sorted(expected)


@pytest.mark.slow
def test_concurrent_shard_jobs_share_one_store(tmp_path: Path, tone_dir: Path, saved_codebooks: list[Path]) -> None:
    reference = tmp_path / "reference"
    assert main(["encode", str(tone_dir), "--codebook", str(saved_codebooks[0]), "--dedup", "-o", str(reference),
                 "--quiet", "--device", "cpu"]) == 0
    out = tmp_path / "sharded"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "speechunits.cli.main", "encode", str(tone_dir), "--codebook",
                               str(saved_codebooks[0]), "--dedup", "-o", str(out), "--shard", f"{i}/2",
                               "--rows-per-file", "1", "--quiet", "--device", "cpu"], env=env)
             for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert contents(out) == contents(reference)
    names = [p.name for p in UnitStore.open(out).shards]
    assert sum(n.startswith("units-00000of00002") for n in names) == 3
    assert sum(n.startswith("units-00001of00002") for n in names) == 2
