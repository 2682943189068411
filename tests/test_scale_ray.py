"""Ray backend on a local 2-CPU Ray with a tiny model: same results as the local backend,
URI outputs, worker and driver kills."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")

from conftest import kill_when, write_tone  # noqa: E402
from speechunits.corpus import open_corpus  # noqa: E402
from speechunits.scale import ray_fit, ray_pipeline  # noqa: E402
from speechunits.scale.ray_encode import ray_encode_corpus, ray_iter_features  # noqa: E402
from speechunits.scale.ray_pipeline import RayOptions  # noqa: E402
from speechunits.scale.ray_workers import FeaturesWorker, UnitsWorker  # noqa: E402
from speechunits.units.encode_corpus import encode_corpus  # noqa: E402
from speechunits.units.store import UnitStore  # noqa: E402
from speechunits.units.tokenizer import UnitTokenizer  # noqa: E402

pytestmark = pytest.mark.ray

NUM_CPUS = 2


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (the pipelines join it instead of starting their own)."""
    from speechunits.scale.ray_session import ray_session

    with ray_session(num_cpus=NUM_CPUS) as ray:
        yield ray


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 short utterances at mixed rates plus a corrupt file."""
    root = tmp_path_factory.mktemp("ray_corpus")
    for i in range(12):
        write_tone(root / f"spk{i % 3}" / f"u{i:02d}.wav", 0.4 + 0.15 * (i % 5),
                   sample_rate=(16000, 22050)[i % 2], freq=120 + 30 * i, seed=i)
    (root / "spk0" / "bad.wav").write_bytes(b"RIFF broken")
    return root


@pytest.fixture(scope="module")
def encoder(tiny_hubert_dir: Path):
    import torch

    from speechunits.encoders import load_encoder

    torch.set_num_threads(1)
    return load_encoder(str(tiny_hubert_dir), device="cpu")


class TinyCodebook:
    """Nearest-centroid codebook with the attributes the tokenizer and store use."""

    def __init__(self, centroids: np.ndarray, layer: int, info) -> None:
        self.centroids = centroids.astype(np.float32)
        self.k, self.dim = self.centroids.shape
        self.layer = layer
        self.frame_rate = info.frame_rate
        self.encoder_identity = info.identity
        self.meta = {"k": self.k, "dim": self.dim, "layer": layer, "frame_rate": info.frame_rate,
                     "encoder": info.name, "encoder_identity": info.identity, "sha256": "1" * 64,
                     "sample_rate": info.sample_rate, "receptive_field": info.receptive_field}

    def assign(self, features: np.ndarray) -> np.ndarray:
        d = ((features[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return d.argmin(1)

    def check_compatible(self, encoder_info, layer: int) -> None:
        assert encoder_info.identity == self.encoder_identity and layer == self.layer


def make_tokenizer(encoder) -> UnitTokenizer:
    """A deterministic 7-unit codebook on layer 3 (the same in this process and in a child driver)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(24000) / 7.0) + 0.05 * rng.standard_normal(24000)).astype(np.float32)
    feats = encoder.extract(wave, [3])[3]
    codebook = TinyCodebook(feats[rng.choice(len(feats), 7, replace=False)], 3, encoder.info)
    return UnitTokenizer(encoder, [codebook], dedup=True)


@pytest.fixture(scope="module")
def tokenizer(encoder) -> UnitTokenizer:
    return make_tokenizer(encoder)


def _stored(path: Path) -> list[tuple[str, list[int], list[int] | None, float]]:
    return [(u, x.ids.tolist(), None if x.durations is None else x.durations.tolist(), s)
            for u, x, s in UnitStore.open(path).iter_rows()]


OPTS = RayOptions(num_workers=2, rows_per_call=2)  # two actors: results arrive out of order


def test_ray_features_equal_local(ray_cluster, encoder, corpus_dir: Path) -> None:
    from speechunits.features import iter_features

    corpus = open_corpus(corpus_dir)
    local = list(iter_features(encoder, corpus, [1, 4], quiet=True))
    remote = list(ray_iter_features(encoder, corpus, [1, 4], options=RayOptions(num_workers=1, rows_per_call=3),
                                    quiet=True))
    assert [(i.utt.id, i.error, i.num_samples) for i in remote] == [(i.utt.id, i.error, i.num_samples) for i in local]
    assert sum(i.error is not None for i in remote) == 1
    for a, b in zip(remote, local):
        if b.features is not None:
            for layer in (1, 4):
                np.testing.assert_allclose(a.features[layer], b.features[layer], rtol=0, atol=1e-5)
    assert ray_pipeline.LAST_RUN.workers == 1 and ray_pipeline.LAST_RUN.results == len(local)


class BuggyEncoderWorker(FeaturesWorker):
    """Its encoder raises RuntimeError (a bug, not bad input) on the batch holding ``BAD_ID``."""

    BAD_ID = "spk1/u04"

    def __call__(self, batch):
        if self.BAD_ID in list(batch["id"]):
            def broken(*args, **kwargs):
                raise RuntimeError("a bug in the model")

            self.encoder.extract_batch = broken
        return super().__call__(batch)


def test_encoder_bug_in_an_actor_fails_the_run(ray_cluster, encoder, corpus_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Only bad input becomes an error row; an actor's other exceptions end the run, with the
    remote traceback in the error the driver raises."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setitem(ray_pipeline.WORKERS, "features", BuggyEncoderWorker)
    from speechunits.errors import SpeechUnitsError

    with pytest.raises(Exception) as raised:
        list(ray_iter_features(encoder, open_corpus(corpus_dir), [1], options=RayOptions(num_workers=1, rows_per_call=3),
                               quiet=True))
    assert not isinstance(raised.value, SpeechUnitsError)
    text = str(raised.value) + "".join(str(e) for e in (raised.value.__cause__, raised.value.__context__) if e)
    # the remote traceback, through iter_features (which did not swallow it) to the failing call
    assert "RuntimeError: a bug in the model" in text and "features/extract.py" in text and "in broken" in text


@pytest.fixture(scope="module")
def local_reference(tokenizer, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local backend's store of the corpus (the reference for every Ray run)."""
    out = tmp_path_factory.mktemp("local_ref") / "units"
    report = encode_corpus(open_corpus(corpus_dir), tokenizer, out, rows_per_file=ROWS_PER_FILE, quiet=True)
    assert (report.encoded, report.failed) == (12, 1)
    return out


def _run_driver_and_kill(script_text: str, tmp_path: Path, ready) -> None:
    """Run ``script_text`` as a driver process and SIGKILL it once ``ready()`` holds (240 s at most);
    fails with the driver's log if it ends by itself first."""
    script, log_path = tmp_path / "driver.py", tmp_path / "driver.log"
    script.write_text(script_text)
    code = kill_when([sys.executable, str(script)], ready, log=log_path)
    assert code == -signal.SIGKILL, log_path.read_text()[-3000:]


ROWS_PER_FILE = 2


def test_ray_encode_to_file_uri_equals_local_store(ray_cluster, tokenizer, corpus_dir: Path, local_reference: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "ray"
    report = ray_encode_corpus(open_corpus(corpus_dir), tokenizer, out.as_uri(), options=OPTS,
                               rows_per_file=ROWS_PER_FILE, quiet=True)
    assert (report.encoded, report.failed, report.already_stored) == (12, 1, 0)
    assert report.stores == [out.as_uri()] and ray_pipeline.LAST_RUN.workers == 2
    assert _stored(out) == _stored(local_reference)
    assert UnitStore.open(out).meta == UnitStore.open(local_reference).meta
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert names(out) == names(local_reference)  # same shard names, sidecar and errors file; no temp files
    errors = [json.loads(line) for line in (out / ".errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["spk0/bad"]


class StallOnceWorker(UnitsWorker):
    """Writes its pid to ``PID_FILE`` and waits (to be killed) on its first call, unless
    ``MARKER`` exists; after a restart it behaves normally."""

    PID_FILE = ""
    MARKER = ""

    def __call__(self, batch):
        if not os.path.exists(self.MARKER):
            Path(self.PID_FILE + ".tmp").write_text(str(os.getpid()))
            os.replace(self.PID_FILE + ".tmp", self.PID_FILE)
            time.sleep(120)
        return super().__call__(batch)


def test_killed_worker_is_restarted_and_store_is_complete(ray_cluster, tokenizer, corpus_dir: Path,
                                                          local_reference: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file, marker = tmp_path / "actor.pid", tmp_path / "killed"
    worker = type("StallOnceWorkerT", (StallOnceWorker,), {"PID_FILE": str(pid_file), "MARKER": str(marker)})
    monkeypatch.setitem(ray_pipeline.WORKERS, "units", worker)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 240
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        marker.write_text("x")
        os.kill(pid, signal.SIGKILL)  # the actor process dies mid-call
        killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    report = ray_encode_corpus(open_corpus(corpus_dir), tokenizer, tmp_path / "out",
                               options=RayOptions(num_workers=1, rows_per_call=3),
                               rows_per_file=ROWS_PER_FILE, quiet=True)
    thread.join(timeout=5)
    assert killed and report.encoded == 12 and report.failed == 1
    store = UnitStore.open(tmp_path / "out")
    assert len(store.ids()) == 12  # ids() refuses duplicates
    assert _stored(tmp_path / "out") == _stored(local_reference)


class StallOnUttWorker(UnitsWorker):
    """Hangs on utterance ``STALL_ID`` until ``MARKER`` exists (so a driver can be killed mid-run)."""

    STALL_ID = ""
    MARKER = ""

    def __call__(self, batch):
        while self.STALL_ID in list(batch["id"]) and not os.path.exists(self.MARKER):
            time.sleep(0.2)
        return super().__call__(batch)


DRIVER_SCRIPT = """
import sys, logging
sys.path[:0] = [{tests!r}, {src!r}]
import torch
torch.set_num_threads(1)
import test_scale_ray as t
from speechunits.corpus import open_corpus
from speechunits.encoders import load_encoder
from speechunits.scale import ray_encode, ray_pipeline
worker = type("StallT", (t.StallOnUttWorker,), {{"STALL_ID": "spk2/u11", "MARKER": {marker!r}}})
ray_pipeline.WORKERS["units"] = worker
ray_pipeline.SORT_WINDOW_CALLS = 1  # calls keep corpus order, so the stall lands after the first shards
tok = t.make_tokenizer(load_encoder({model!r}, device="cpu"))
ray_encode.ray_encode_corpus(open_corpus({corpus!r}), tok, {out!r}, rows_per_file=t.ROWS_PER_FILE, quiet=True,
                             options=ray_pipeline.RayOptions(address={address!r}, num_workers=1, rows_per_call=2))
"""


def test_killed_driver_rerun_resumes_from_finished_shards(ray_cluster, tokenizer, corpus_dir: Path,
                                                          local_reference: Path, tiny_hubert_dir: Path,
                                                          tmp_path: Path) -> None:
    out, marker = tmp_path / "out", tmp_path / "release"
    script = DRIVER_SCRIPT.format(
        tests=str(Path(__file__).parent), src=str(Path(__file__).parents[1] / "src"), marker=str(marker),
        model=str(tiny_hubert_dir), corpus=str(corpus_dir), out=str(out),
        address=ray_cluster.get_runtime_context().gcs_address)
    _run_driver_and_kill(script, tmp_path, lambda: len(list(out.glob("*.parquet"))) >= 2)
    finished = len(list(out.glob("*.parquet")))
    assert 2 <= finished < 6  # killed mid-run: the shard holding spk2/u11 was never written
    report = ray_encode_corpus(open_corpus(corpus_dir), tokenizer, out, options=RayOptions(num_workers=1),
                               rows_per_file=ROWS_PER_FILE, quiet=True)
    assert report.already_stored >= 2 * 2 and report.encoded == 12 - report.already_stored
    assert len(UnitStore.open(out).ids()) == 12
    assert _stored(out) == _stored(local_reference)


def test_ray_fit_samples_the_same_frames_as_local(ray_cluster, encoder, corpus_dir: Path) -> None:
    from speechunits.quantize.fit import corpus_source, fit_codebook, sample_stream
    from speechunits.scale.ray_fit import ray_fit_source

    max_frames, seed = 100, 3
    local, seen = sample_stream(corpus_source(corpus_dir, encoder, 2, quiet=True).blocks, max_frames, seed)
    assert seen > 3 * max_frames  # the sample really is a subset
    source = ray_fit_source(encoder, open_corpus(corpus_dir), 2, options=RayOptions(num_workers=1),
                            max_frames=max_frames, seed=seed, quiet=True)
    blocks = list(source.blocks)
    assert len(blocks) == 1 and source.layer == 2 and source.encoder_info == encoder.info
    np.testing.assert_allclose(blocks[0][1], local, rtol=0, atol=1e-5)
    codebook_local = fit_codebook(corpus_source(corpus_dir, encoder, 2, quiet=True), 5, max_frames=max_frames,
                                  seed=seed, iters=10, device="cpu")
    codebook_ray = fit_codebook(type(source)(iter(blocks), source.encoder_info, 2), 5, max_frames=max_frames,
                                seed=seed, iters=10, device="cpu")
    np.testing.assert_allclose(codebook_ray.centroids.numpy(), codebook_local.centroids.numpy(), atol=1e-4)
    # k-means through the Ray entry point (the driver here: no GPU in the cluster) and as a Ray task
    # (what a GPU cluster runs, here with device=cpu): the same codebook.
    on_driver = ray_fit.ray_fit_sample(blocks[0][1], 5, source.encoder_info, 2, options=RayOptions(device="cpu"),
                                       seed=seed, iters=10)
    fit_kwargs = dict(seed=seed, iters=10, device="cpu")
    remote = ray_cluster.remote(ray_fit._fit_on_worker)
    in_task = ray_cluster.get(remote.remote(blocks[0][1], source.encoder_info, 2, 5, fit_kwargs))
    for codebook in (on_driver, in_task):
        np.testing.assert_array_equal(codebook.centroids.numpy(), codebook_ray.centroids.numpy())
        assert codebook.meta["training_frames"] == max_frames


def test_local_overlapped_encode_equals_encode_corpus(tokenizer, corpus_dir: Path, local_reference: Path,
                                                      tmp_path: Path) -> None:
    """The scale-out writer loop with the local overlapped loader (no Ray) gives the same store."""
    from speechunits.scale.encode_job import local_results, run_encode

    results = local_results(tokenizer, loader_workers=2)
    report = run_encode(results, open_corpus(corpus_dir), tokenizer, tmp_path / "out", rows_per_file=ROWS_PER_FILE,
                        quiet=True)
    assert (report.encoded, report.failed, report.already_stored) == (12, 1, 0)
    assert _stored(tmp_path / "out") == _stored(local_reference)
    again = run_encode(results, open_corpus(corpus_dir), tokenizer, tmp_path / "out", rows_per_file=ROWS_PER_FILE,
                       quiet=True)
    assert (again.encoded, again.already_stored) == (0, 12)


def test_cli_fit_and_encode_with_ray_backend(ray_cluster, tiny_hubert_dir: Path, corpus_dir: Path,
                                            tmp_path: Path) -> None:
    """The commands themselves: --backend ray gives the local backend's codebook and store."""
    from speechunits.cli.main import main
    from speechunits.quantize import Codebook

    fit = ["fit", str(corpus_dir), "--encoder", str(tiny_hubert_dir), "--layer", "2", "--k", "4",
           "--max-frames", "150", "--iters", "5", "--device", "cpu", "--quiet"]
    assert main([*fit, "-o", str(tmp_path / "cb_local")]) == 0
    assert main([*fit, "-o", str(tmp_path / "cb_ray"), "--backend", "ray", "--num-workers", "1"]) == 0
    local, remote = Codebook.load(tmp_path / "cb_local"), Codebook.load(tmp_path / "cb_ray")
    np.testing.assert_allclose(remote.centroids.numpy(), local.centroids.numpy(), atol=1e-4)
    encode = ["encode", str(corpus_dir), "--codebook", str(tmp_path / "cb_local"), "--dedup", "--quiet"]
    assert main([*encode, "-o", str(tmp_path / "u_local"), "--loader-workers", "0"]) == 0
    assert main([*encode, "-o", str(tmp_path / "u_ray"), "--backend", "ray", "--num-workers", "1"]) == 0
    assert _stored(tmp_path / "u_ray") == _stored(tmp_path / "u_local")


def test_plan_is_length_sorted_within_windows_only(tmp_path: Path) -> None:
    from speechunits.scale.ray_pipeline import length_sorted

    sizes = [50, 10, 40, 30, 20, 60, 5]
    rows = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"u{i}.wav"
        path.write_bytes(b"x" * size)
        rows.append({"idx": i, "path": str(path)})
    rows.append({"idx": 7, "path": str(tmp_path / "missing.wav")})  # unreadable: size 0, still planned
    got = [row["idx"] for row in length_sorted(rows, 3)]
    assert got == [1, 2, 0, 4, 3, 5, 7, 6]
    assert [row["idx"] for row in length_sorted(rows, 1)] == list(range(8))


# -- long runs: finite retries, time-bounded shards, no leftover processes ----------------------
class CrashOnUttWorker(UnitsWorker):
    """Ends its own process (as a native crash would) whenever it encodes ``POISON_ID``."""

    POISON_ID = "spk1/u04"

    def process(self, batch):
        for utt, error in zip(batch["id"], batch["error"]):
            if str(utt) == self.POISON_ID and not error:
                os._exit(1)
        return super().process(batch)


class HangOnUttWorker(UnitsWorker):
    """Hangs (in a sleep, like a deadlocked native call) whenever it encodes ``POISON_ID``."""

    POISON_ID = "spk1/u04"

    def process(self, batch):
        for utt, error in zip(batch["id"], batch["error"]):
            if str(utt) == self.POISON_ID and not error:
                time.sleep(600)
        return super().process(batch)


def _check_poison_recorded(out: Path, report, local_reference: Path, reason: str) -> None:
    poison = CrashOnUttWorker.POISON_ID
    assert (report.encoded, report.failed) == (11, 2)
    errors = {e["id"]: e["error"] for e in map(json.loads, (out / ".errors.jsonl").read_text().splitlines())}
    assert sorted(errors) == ["spk0/bad", poison]
    assert reason in errors[poison] and "given up" in errors[poison] and "--max-retries 1" in errors[poison]
    assert _stored(out) == [row for row in _stored(local_reference) if row[0] != poison]
    assert ray_pipeline.LAST_RUN.extra["given_up"] == 1


def test_a_file_that_crashes_its_worker_is_recorded_and_the_run_goes_on(
        ray_cluster, tokenizer, corpus_dir: Path, local_reference: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ray_pipeline.WORKERS, "units", CrashOnUttWorker)
    report = ray_encode_corpus(open_corpus(corpus_dir), tokenizer, tmp_path / "out",
                               options=RayOptions(num_workers=1, rows_per_call=3, max_retries=1),
                               rows_per_file=ROWS_PER_FILE, quiet=True)
    _check_poison_recorded(tmp_path / "out", report, local_reference, "ended the worker process")
    # the batch died once, then the file alone once: two calls ran again
    assert ray_pipeline.LAST_RUN.extra["retried_calls"] == 2


@pytest.mark.slow
def test_a_file_that_hangs_its_worker_times_out_and_is_recorded(
        ray_cluster, tokenizer, corpus_dir: Path, local_reference: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ray_pipeline.WORKERS, "units", HangOnUttWorker)
    report = ray_encode_corpus(open_corpus(corpus_dir), tokenizer, tmp_path / "out",
                               options=RayOptions(num_workers=1, rows_per_call=2, max_retries=1,
                                                  utterance_timeout_s=5.0),
                               rows_per_file=ROWS_PER_FILE, quiet=True)
    _check_poison_recorded(tmp_path / "out", report, local_reference, "timed out after 5 s (--utterance-timeout)")


@pytest.mark.slow
def test_killed_driver_keeps_its_time_bounded_shards(ray_cluster, tokenizer, corpus_dir: Path,
                                                    local_reference: Path, tiny_hubert_dir: Path,
                                                    tmp_path: Path) -> None:
    """500 rows per shard, but a shard every 0.5 s: the driver, killed once the first shard exists
    (while a stalled utterance keeps the run from ending), kept its rows; the rerun skips them."""
    out, marker = tmp_path / "out", tmp_path / "release"
    script = DRIVER_SCRIPT.format(
        tests=str(Path(__file__).parent), src=str(Path(__file__).parents[1] / "src"), marker=str(marker),
        model=str(tiny_hubert_dir), corpus=str(corpus_dir), out=str(out),
        address=ray_cluster.get_runtime_context().gcs_address).replace(
            "rows_per_file=t.ROWS_PER_FILE", "rows_per_file=500, shard_seconds=0.5")
    _run_driver_and_kill(script, tmp_path, lambda: bool(list(out.glob("*.parquet"))))
    stored = UnitStore.open(out).ids()
    assert 1 <= len(stored) < 12  # the run never reached 500 rows: time closed the shards it kept
    reference = {row[0]: row for row in _stored(local_reference)}
    assert all(row == reference[row[0]] for row in _stored(out))
    report = ray_encode_corpus(open_corpus(corpus_dir), tokenizer, out, options=RayOptions(num_workers=1),
                               rows_per_file=500, quiet=True)
    assert report.already_stored == len(stored) and report.encoded == 12 - len(stored)
    assert sorted(_stored(out)) == sorted(_stored(local_reference))


@pytest.fixture(scope="module")
def saved_codebook(encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_tokenizer import make_codebook

    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(np.arange(24000) / 7.0) + 0.05 * rng.standard_normal(24000)).astype(np.float32)
    feats = encoder.extract(wave, [3])[3]
    return make_codebook(feats[rng.choice(len(feats), 7, replace=False)], 3, encoder.info).save(
        tmp_path_factory.mktemp("cb") / "cb")


CLI_DRIVER = """
import sys
sys.path[:0] = [{tests!r}, {src!r}]
import ray.cloudpickle
import test_scale_ray as t
from speechunits.cli.main import main
from speechunits.scale import ray_pipeline
ray.cloudpickle.register_pickle_by_value(t)
ray_pipeline.SORT_WINDOW_CALLS = 1  # calls of 2 keep corpus order: spk2/u11 comes last
ray_pipeline.DEFAULT_ROWS_PER_CALL = 2
if {stall!r}:
    base = t.StallOnUttWorker if {command!r} == "encode" else t.StallOnUttFeaturesWorker
    ray_pipeline.WORKERS[{worker!r}] = type("StallT", (base,), {{"STALL_ID": "spk2/u11", "MARKER": "/nonexistent"}})
job = (["encode", {corpus!r}, "--codebook", {codebook!r}] if {command!r} == "encode" else
       ["features", {corpus!r}, "--encoder", {model!r}, "--layer", "3"])
sys.exit(main(job + ["-o", {out!r}, "--backend", "ray", "--num-workers", "1", "--shard-seconds", "0.5",
                     "--device", "cpu", "--quiet"]))
"""


def _cli_driver(tmp_path: Path, ray_tmp: Path, corpus_dir: Path, codebook: Path, stall: bool,
                command: str = "encode") -> subprocess.Popen:
    """``speechunits encode`` or ``features`` with an embedded Ray in a child process (``stall``: its
    actor hangs on spk2/u11, the last utterance, so the run cannot end by itself)."""
    script = tmp_path / "cli_driver.py"
    script.write_text(CLI_DRIVER.format(tests=str(Path(__file__).parent), src=str(Path(__file__).parents[1] / "src"),
                                        corpus=str(corpus_dir), codebook=str(codebook), out=str(tmp_path / "out"),
                                        stall=stall, command=command, model=str(_encoder_of(codebook)),
                                        worker="units" if command == "encode" else "features"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)


def _encoder_of(codebook: Path) -> str:
    return json.loads((codebook / "codebook.json").read_text())["encoder"]


def _kept(out: Path, command: str) -> bool:
    """Whether the run kept its first shard (encode) or part (features)."""
    return bool(list(out.glob("*.parquet")) if command == "encode" else list(out.glob(".parts/index-*.parquet")))


def _sessions(ray_tmp: Path) -> list[str]:
    return [str(p) for p in ray_tmp.rglob("session_2*") if p.is_dir()]


@pytest.fixture()
def ray_tmp():
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["encode", "features"])
def test_no_ray_process_outlives_a_normal_quiet_run(corpus_dir: Path, saved_codebook: Path, tmp_path: Path,
                                                    ray_tmp: Path, command: str) -> None:
    from speechunits.features import read_features_meta
    from speechunits.scale import ray_leftovers

    driver = _cli_driver(tmp_path, ray_tmp, corpus_dir, saved_codebook, stall=False, command=command)
    out, err = driver.communicate(timeout=400)
    assert driver.returncode == 0, err[-3000:]
    sessions = _sessions(ray_tmp)
    assert len(sessions) == 1
    assert ray_leftovers.session_processes(sessions[0]) == []
    assert not (ray_leftovers.registry_dir() / f"{driver.pid}.json").exists()
    if command == "encode":
        assert len(UnitStore.open(tmp_path / "out").ids()) == 12
    else:
        assert len(read_features_meta(tmp_path / "out")["ids"]) == 12 and not (tmp_path / "out" / ".parts").exists()
    # --quiet: nothing from Ray or transformers; our warnings (the bad file, the summary naming the errors file)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("WARNING speechunits") for line in lines), err[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["encode", "features"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_ray_process_outlives_sigterm_or_the_next_run_after_sigkill(
        corpus_dir: Path, saved_codebook: Path, tmp_path: Path, ray_tmp: Path, sig: int, command: str) -> None:
    from speechunits.scale import ray_leftovers

    driver = _cli_driver(tmp_path, ray_tmp, corpus_dir, saved_codebook, stall=True, command=command)
    try:
        deadline = time.time() + 300
        while not _kept(tmp_path / "out", command):  # Ray and its actor are up and working
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.time() < deadline, "the driver wrote no shard in time"
            time.sleep(0.1)
        sessions = _sessions(ray_tmp)
        assert len(sessions) == 1
        assert ray_leftovers.session_processes(sessions[0])  # the embedded Ray's processes
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    record = ray_leftovers.registry_dir() / f"{driver.pid}.json"
    if sig == signal.SIGTERM:
        assert driver.returncode == 143, err[-3000:]
        assert "terminated (SIGTERM)" in err
        assert not record.exists()
    else:
        assert driver.returncode == -signal.SIGKILL and record.exists()
        time.sleep(2)  # what the killed driver's Ray does on its own, before a next run
        left = ray_leftovers.session_processes(sessions[0])
        print(f"after SIGKILL of the driver: {len(left)} process(es) of its Ray still alive")
        ray_leftovers.reap_leftovers()  # what the next run does before it starts its Ray
        assert not record.exists()
    assert ray_leftovers.session_processes(sessions[0]) == []


# -- features and fit on Ray: retries, resumable parts ------------------------------------------
class CrashOnUttFeaturesWorker(FeaturesWorker):
    """Ends its own process (as a native crash would) whenever it extracts ``POISON_ID``."""

    POISON_ID = CrashOnUttWorker.POISON_ID

    def process(self, batch):
        for utt, error in zip(batch["id"], batch["error"]):
            if str(utt) == self.POISON_ID and not error:
                os._exit(1)
        return super().process(batch)


class StallOnUttFeaturesWorker(FeaturesWorker):
    """Hangs on utterance ``STALL_ID`` until ``MARKER`` exists (so a driver can be killed mid-run)."""

    STALL_ID = ""
    MARKER = ""

    def __call__(self, batch):
        while self.STALL_ID in list(batch["id"]) and not os.path.exists(self.MARKER):
            time.sleep(0.2)
        return super().__call__(batch)


@pytest.fixture(scope="module")
def local_features(encoder, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local backend's features directory of the corpus (layers 1 and 3)."""
    from speechunits.scale.jobs import extract_features

    out = tmp_path_factory.mktemp("local_features") / "f"
    report = extract_features(encoder, open_corpus(corpus_dir), [1, 3], out, quiet=True)
    assert (report.extracted, report.failed) == (12, 1)
    return out


def _features(path: Path) -> dict[str, np.ndarray]:
    from speechunits.features import read_features_dir

    return {utt: np.concatenate([np.array(x) for x in layers], axis=1)
            for utt, *layers in ((u, a, b) for (u, a), (_, b) in zip(read_features_dir(path, 1),
                                                                     read_features_dir(path, 3)))}


def _same_features(got: Path, expected: Path, without: set[str] = frozenset()) -> None:
    a, b = _features(got), _features(expected)
    assert list(a) == [utt for utt in b if utt not in without]  # corpus order
    for utt in a:
        np.testing.assert_allclose(a[utt], b[utt], rtol=0, atol=1e-5)


def test_a_file_that_crashes_a_features_worker_is_recorded_and_the_rest_stored(
        ray_cluster, encoder, corpus_dir: Path, local_features: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.cloudpickle

    from speechunits.scale.jobs import extract_features
    from speechunits.scale.options import ScaleOptions

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    monkeypatch.setitem(ray_pipeline.WORKERS, "features", CrashOnUttFeaturesWorker)
    out = tmp_path / "f"
    report = extract_features(encoder, open_corpus(corpus_dir), [1, 3], out, quiet=True, rows_per_part=2,
                              options=ScaleOptions(backend="ray", num_workers=1, rows_per_call=3, max_retries=1))
    poison = CrashOnUttFeaturesWorker.POISON_ID
    assert (report.extracted, report.failed) == (11, 2)
    errors = {e["id"]: e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
    assert sorted(errors) == ["spk0/bad", poison]
    assert "ended the worker process" in errors[poison] and "given up" in errors[poison]
    _same_features(out, local_features, without={poison})
    assert ray_pipeline.LAST_RUN.extra["given_up"] == 1 and not (out / ".parts").exists()


FEATURES_DRIVER = """
import sys
sys.path[:0] = [{tests!r}, {src!r}]
import torch
torch.set_num_threads(1)
import ray.cloudpickle
import test_scale_ray as t
from speechunits.corpus import open_corpus
from speechunits.encoders import load_encoder
from speechunits.scale import ray_pipeline
from speechunits.scale.jobs import extract_features
from speechunits.scale.options import ScaleOptions
ray.cloudpickle.register_pickle_by_value(t)
ray_pipeline.WORKERS["features"] = type("StallT", (t.StallOnUttFeaturesWorker,),
                                        {{"STALL_ID": "spk2/u11", "MARKER": {marker!r}}})
ray_pipeline.SORT_WINDOW_CALLS = 1  # calls keep corpus order, so the stall lands after the first parts
extract_features(load_encoder({model!r}, device="cpu"), open_corpus({corpus!r}), [1, 3], {out!r}, quiet=True,
                 rows_per_part=500, shard_seconds=0.5,
                 options=ScaleOptions(backend="ray", ray_address={address!r}, num_workers=1, rows_per_call=2))
"""


@pytest.mark.slow
def test_killed_features_driver_keeps_its_time_bounded_parts(ray_cluster, encoder, corpus_dir: Path,
                                                            local_features: Path, tiny_hubert_dir: Path,
                                                            tmp_path: Path) -> None:
    """500 utterances per part, but a part every 0.5 s: the driver, killed once the first part exists
    (while a stalled utterance keeps the run from ending), kept it; the rerun skips it and ends equal."""
    from speechunits.scale.jobs import extract_features
    from speechunits.scale.options import ScaleOptions

    out, marker = tmp_path / "f", tmp_path / "release"
    script = FEATURES_DRIVER.format(
        tests=str(Path(__file__).parent), src=str(Path(__file__).parents[1] / "src"), marker=str(marker),
        model=str(tiny_hubert_dir), corpus=str(corpus_dir), out=str(out),
        address=ray_cluster.get_runtime_context().gcs_address)
    _run_driver_and_kill(script, tmp_path, lambda: _kept(out, "features"))
    import pyarrow.parquet as pq

    kept = [i for p in sorted(out.glob(".parts/index-*.parquet")) for i in pq.read_table(p)["id"].to_pylist()]
    assert 1 <= len(kept) < 12 and "spk2/u11" not in kept
    report = extract_features(encoder, open_corpus(corpus_dir), [1, 3], out, quiet=True,
                              options=ScaleOptions(backend="ray", num_workers=1))
    assert report.already_stored == len(kept) and report.extracted == 12 - len(kept)
    _same_features(out, local_features)


def test_ray_fit_with_snapshots_equals_without_and_a_rerun_samples_nothing(ray_cluster, encoder,
                                                                          corpus_dir: Path, tmp_path: Path) -> None:
    from speechunits.quantize.fit import sample_source
    from speechunits.scale.jobs import fit_source
    from speechunits.scale.options import ScaleOptions

    options = ScaleOptions(backend="ray", num_workers=1)
    plain = sample_source(fit_source(corpus_dir, encoder, 2, options=options, max_frames=100, seed=3, quiet=True),
                          100, 3)
    ckdir = tmp_path / "cb" / ".fit-sample"
    first = fit_source(corpus_dir, encoder, 2, options=options, max_frames=100, seed=3, quiet=True,
                       checkpoint_dir=ckdir, shard_seconds=0.01)
    np.testing.assert_array_equal(sample_source(first, 100, 3), plain)
    assert (first.used, len(first.skipped)) == (12, 1)
    # a rerun (say k-means was killed): both passes are kept, nothing is planned on Ray again
    again = fit_source(corpus_dir, encoder, 2, options=options, max_frames=100, seed=3, quiet=True,
                       checkpoint_dir=ckdir)
    assert ray_pipeline.LAST_RUN.planned == 0
    np.testing.assert_array_equal(sample_source(again, 100, 3), plain)
