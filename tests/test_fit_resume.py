"""Resumable `fit`: the frame sample's state (kept rows, keys, positions, the generator, utterances
consumed) is snapshotted every T seconds; a resumed pass ends with the same sample and codebook."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tone
from speechunits.encoders import load_encoder
from speechunits.errors import SpeechUnitsError
from speechunits.quantize import Codebook
from speechunits.quantize.fit import FrameReservoir, fit_sample, sample_items, sample_stream
from speechunits.quantize.fit_checkpoint import CHECKPOINT_DIR, SampleCheckpoint
from conftest import kill_when, run_alone
from test_store_time_shards import FakeClock

META = {"kind": "fit-sample", "encoder_identity": "x", "layer": 0, "max_frames": 50, "seed": 3, "corpus": "c"}


def blocks(n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(f"b{i}", rng.standard_normal((int(rng.integers(1, 40)), 4)).astype(np.float32)) for i in range(n)]


@pytest.mark.parametrize("cut", [0, 1, 3, 17, 30])
def test_reservoir_state_continues_exactly(cut: int) -> None:
    """Independent expectation: one uninterrupted pass over the same blocks."""
    stream = blocks(30)
    expected, seen = sample_stream(stream, 60, seed=5)
    first = FrameReservoir(60, 5)
    for name, block in stream[:cut]:
        first.add(block, name)
    arrays, info = first.state()
    info = json.loads(json.dumps(info))  # what a snapshot stores (the generator's big integers included)
    resumed = FrameReservoir.from_state({k: v.copy() for k, v in arrays.items()}, info)
    for name, block in stream[cut:]:
        resumed.add(block, name)
    assert resumed.seen == seen
    np.testing.assert_array_equal(resumed.sample(), expected)


class Item:
    def __init__(self, name: str, block: np.ndarray | None) -> None:
        self.utt = type("U", (), {"path": name, "id": name})()
        self.features = None if block is None else {0: block}
        self.error = None if block is not None else f"{name}: broken"


def items(stream, bad=()):
    return [Item(name, None if name in bad else block) for name, block in stream]


def test_a_killed_pass_resumes_from_its_last_snapshot(tmp_path: Path) -> None:
    stream = items(blocks(30), bad={"b4"})
    expected, _, done = sample_items(stream, 0, 50, 3)
    clock = FakeClock()
    checkpoint = SampleCheckpoint(tmp_path / CHECKPOINT_DIR, META, shard_seconds=60.0, clock=clock)
    checkpoint.load(50, 3)

    def until_killed():
        for n, item in enumerate(stream):
            if n == 20:
                checkpoint.save = lambda: None  # a kill: nothing is saved on the way out
                raise KeyboardInterrupt
            clock.now += 25.0  # an utterance takes 25 s
            yield item

    with pytest.raises(KeyboardInterrupt):
        sample_items(until_killed(), 0, 50, 3, checkpoint=checkpoint)
    # snapshots every 60 s: after utterances 4 (100 s), 7, 10, 13, 16, 19: the last one holds 19
    again = SampleCheckpoint(tmp_path / CHECKPOINT_DIR, META, shard_seconds=60.0)
    reservoir, progress = again.load(50, 3)
    assert (progress.consumed, progress.used, progress.skipped) == (19, 18, [("b4", "b4: broken")])
    assert [p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()] == ["state-000005"]
    sample, seen, final = sample_items(stream[progress.consumed:], 0, 50, 3, checkpoint=again)
    np.testing.assert_array_equal(sample, expected)
    assert (final.consumed, final.used, final.skipped) == (done.consumed, done.used, done.skipped)
    # a finished pass keeps its state until the caller removes it: a rerun samples nothing
    third = SampleCheckpoint(tmp_path / CHECKPOINT_DIR, META, shard_seconds=60.0)
    assert third.load(50, 3)[1].consumed == 30
    np.testing.assert_array_equal(sample_items([], 0, 50, 3, checkpoint=third)[0], expected)


def test_ctrl_c_keeps_every_consumed_utterance_unless_it_cut_an_update_short(tmp_path: Path) -> None:
    stream = items(blocks(10))
    checkpoint = SampleCheckpoint(tmp_path / "a", META, shard_seconds=None)

    def interrupted():
        yield from stream[:7]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample_items(interrupted(), 0, 50, 3, checkpoint=checkpoint)
    assert SampleCheckpoint(tmp_path / "a", META, shard_seconds=None).load(50, 3)[1].consumed == 7
    # an interrupt inside an update leaves a reservoir that may be half-changed: it is never written
    cut = SampleCheckpoint(tmp_path / "b", META, shard_seconds=None)
    reservoir, _ = cut.load(50, 3)
    real_add = reservoir.add

    def add_cut_short(block, source="features"):
        if source == "b5":
            raise KeyboardInterrupt
        real_add(block, source)

    reservoir.add = add_cut_short
    with pytest.raises(KeyboardInterrupt):
        sample_items(stream, 0, 50, 3, checkpoint=cut)
    assert cut.save() is None and not (tmp_path / "b").exists()


def test_snapshots_of_other_settings_are_refused(tmp_path: Path) -> None:
    checkpoint = SampleCheckpoint(tmp_path, META, shard_seconds=None)
    sample_items(items(blocks(3)), 0, 50, 3, checkpoint=checkpoint)
    with pytest.raises(SpeechUnitsError, match=r"other settings \(seed: 3 != 4\)"):
        SampleCheckpoint(tmp_path, {**META, "seed": 4}, shard_seconds=None).load(50, 4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fit_corpus")
    for i in range(10):
        write_tone(root / f"u{i}.wav", 0.4 + 0.1 * i, freq=130 + 25 * i, seed=i)
    (root / "bad.wav").write_bytes(b"RIFF broken")
    return root


def test_fit_source_resumes_to_the_same_codebook(corpus: Path, tmp_path: Path) -> None:
    """MFCC (exact per utterance): the resumed sample and codebook equal the uninterrupted ones bit for bit."""
    from speechunits.scale import jobs

    mfcc = load_encoder("mfcc")
    plain = jobs.fit_source(corpus, mfcc, None, max_frames=300, seed=2, quiet=True)
    from speechunits.quantize.fit import sample_source

    uninterrupted = sample_source(plain, 300, 2)
    ckdir = tmp_path / "cb" / CHECKPOINT_DIR
    real = jobs.feature_items

    def killed_after_6(*args, **kwargs):
        for n, item in enumerate(real(*args, **kwargs)):
            if n == 6:
                raise KeyboardInterrupt
            yield item

    jobs.feature_items = killed_after_6
    try:
        with pytest.raises(KeyboardInterrupt):
            jobs.fit_source(corpus, mfcc, None, max_frames=300, seed=2, quiet=True, checkpoint_dir=ckdir,
                            shard_seconds=1e-6)
    finally:
        jobs.feature_items = real
    state = json.loads(next(ckdir.glob("state-*/state.json")).read_text())
    assert state["progress"]["consumed"] == 6  # a snapshot after every utterance here
    calls: list[int] = []

    def counting(encoder, todo, *args, **kwargs):
        todo = list(todo)
        calls.append(len(todo))
        return real(encoder, todo, *args, **kwargs)

    jobs.feature_items = counting
    try:
        source = jobs.fit_source(corpus, mfcc, None, max_frames=300, seed=2, quiet=True, checkpoint_dir=ckdir)
    finally:
        jobs.feature_items = real
    assert calls == [11 - 6]
    resumed = sample_source(source, 300, 2)
    np.testing.assert_array_equal(resumed, uninterrupted)
    assert (source.used, [p for p, _ in source.skipped]) == (10, [str(corpus / "bad.wav")])
    a = fit_sample(uninterrupted, 4, mfcc.info, 0, seed=2, iters=5, device="cpu")
    b = fit_sample(resumed, 4, mfcc.info, 0, seed=2, iters=5, device="cpu")
    assert a.sha256 == b.sha256


def _fit_command(corpus: Path, model: Path, out: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "speechunits.cli.main", "fit", str(corpus), "--encoder", str(model), "--layer", "2",
            "--k", "5", "--max-frames", "400", "--iters", "5", "--seed", "1", "-o", str(out), "--shard-seconds",
            "0.05", "--max-batch-seconds", "1", "--loader-workers", "0", "--quiet", "--device", "cpu"]


@pytest.mark.slow
def test_kill_9_after_the_first_snapshot_then_rerun(tmp_path: Path, tiny_hubert_dir: Path) -> None:
    """The driver, killed once the first snapshot exists, resumes from it; the codebook equals an
    uninterrupted run's (to fp32 rounding: the resumed pass batches its first utterances differently)."""
    corpus = tmp_path / "audio"
    n = 40
    for i in range(n):
        write_tone(corpus / f"utt{i:02d}.wav", 4.0 + (i % 3), freq=120 + 17 * i, seed=i)
    assert run_alone(_fit_command(corpus, tiny_hubert_dir, tmp_path / "reference")) == 0
    out = tmp_path / "killed"
    code = kill_when(_fit_command(corpus, tiny_hubert_dir, out), lambda: any((out / CHECKPOINT_DIR).glob("state-*")))
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    state = json.loads(next((out / CHECKPOINT_DIR).glob("state-*/state.json")).read_text())
    assert 0 < state["progress"]["consumed"] < n
    assert run_alone(_fit_command(corpus, tiny_hubert_dir, out)) == 0
    assert not (out / CHECKPOINT_DIR).exists()
    reference, resumed = Codebook.load(tmp_path / "reference"), Codebook.load(out)
    assert resumed.meta["training_frames"] == reference.meta["training_frames"] == 400
    np.testing.assert_allclose(resumed.centroids.numpy(), reference.centroids.numpy(), rtol=0, atol=1e-5)
