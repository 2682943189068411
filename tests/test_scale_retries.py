"""Finite retries of files that end a worker process, without Ray: the ledger logic of
ray_workers.guarded, with a process death simulated by an exception and Ray's unlimited retry
of the call simulated by a loop; the watchdog with a fake exit."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from speechunits.scale import ray_workers
from speechunits.scale.ray_workers import AttemptLedger, decode_batch, guarded, watchdog


class ProcessDied(BaseException):
    """Stands for the worker process ending (os._exit, a segfault, an OOM kill)."""


def batch_of(ids: list[str], start: int = 0) -> dict[str, np.ndarray]:
    return {"idx": np.arange(start, start + len(ids)), "id": np.array(ids, dtype=object),
            "path": np.array([f"/audio/{i}.wav" for i in ids], dtype=object),
            "error": np.array([""] * len(ids), dtype=object)}


class Encoder:
    """``process``: doubles idx into ``out``; 'dies' on the ids in ``poison`` (unless the row
    carries an error: error rows are not encoded)."""

    def __init__(self, poison: set[str]) -> None:
        self.poison = poison
        self.seen: list[list[str]] = []

    def __call__(self, batch):
        ids = [str(i) for i in batch["id"]]
        self.seen.append(ids)
        for utt, error in zip(ids, batch["error"]):
            if utt in self.poison and not error:
                raise ProcessDied()
        return {"idx": batch["idx"], "error": batch["error"], "out": np.asarray(batch["idx"]) * 2}


def run_like_ray(batch, process, ledger, **kwargs):
    """Ray retries a call whose process died, without limit; count the attempts."""
    attempts = 0
    while True:
        attempts += 1
        try:
            return guarded(batch, process, ledger=ledger, **kwargs), attempts
        except ProcessDied:
            assert attempts < 50, "the retries never end"


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3])
def test_a_poison_file_is_given_up_after_max_retries(max_retries: int) -> None:
    ledger = AttemptLedger()
    encoder = Encoder(poison={"c"})
    out, attempts = run_like_ray(batch_of(["a", "b", "c", "d"]), encoder, ledger, max_retries=max_retries)
    if max_retries == 0:  # no retry: every file of the call that died is given up
        assert attempts == 2 and list(out["error"]) != [""] * 4
        assert all("given up" in e for e in out["error"])
        return
    # one batched attempt, then c alone max_retries times: 1 + max_retries calls die, one completes
    assert attempts == 2 + max_retries
    assert [str(e) for e in out["error"]][:2] == ["", ""] and out["error"][3] == ""
    error = str(out["error"][2])
    assert error.startswith("/audio/c.wav: ended the worker process") and "given up" in error
    assert f"{1 + max_retries} attempt(s), --max-retries {max_retries}" in error
    assert out["out"].tolist() == [0, 2, 4, 6]  # rows stay in order, every row has a result
    assert encoder.seen[0] == ["a", "b", "c", "d"] and all(len(s) == 1 for s in encoder.seen[1:])
    assert ledger.summary() == {"retried_calls": 1 + max_retries, "failures": max_retries, "given_up": 1}


def test_a_lost_call_without_poison_completes_one_by_one() -> None:
    """A call whose process died once for another reason (a lost node) runs again, file by file,
    and nothing is given up."""
    ledger = AttemptLedger()
    dead_once = {"died": False}

    def process(batch):
        if not dead_once["died"]:
            dead_once["died"] = True
            raise ProcessDied()
        return {"idx": batch["idx"], "error": batch["error"]}

    out, attempts = run_like_ray(batch_of(["a", "b"]), process, ledger, max_retries=2)
    assert attempts == 2 and list(out["error"]) == ["", ""]
    assert ledger.summary() == {"retried_calls": 1, "failures": 0, "given_up": 0}


def test_calls_and_stages_are_counted_apart() -> None:
    ledger = AttemptLedger()
    encoder = Encoder(poison=set())
    for stage in ("decode_batch", "encode"):
        out, attempts = run_like_ray(batch_of(["a", "b"]), encoder, ledger, stage=stage)
        assert attempts == 1 and list(out["out"]) == [0, 2]
    assert ledger.summary()["retried_calls"] == 0


def test_a_given_up_file_is_not_decoded(tmp_path) -> None:
    """decode_batch honours an error the guard set: the file is not even opened."""
    batch = batch_of(["a"])
    batch["path"] = np.array([str(tmp_path / "missing.wav")], dtype=object)
    batch["error"] = np.array(["x.wav: given up"], dtype=object)
    out = decode_batch(batch, sample_rate=16000, min_samples=400, channel=None)
    assert list(out["error"]) == ["x.wav: given up"] and list(out["samples"]) == [b""]


def test_watchdog_notes_the_timeout_then_ends_the_process() -> None:
    ledger = AttemptLedger()
    key = ("encode", 7)
    ledger.begin(key)
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    with watchdog(0.05, ledger, key, exit_process=fake_exit):
        assert exited.wait(30)
    assert codes == [ray_workers.EXIT_TIMED_OUT]
    # the retry of this file finds the reason recorded
    assert ledger.begin(key) == ["timed out after 0.05 s (--utterance-timeout)"]


def test_watchdog_does_nothing_in_time() -> None:
    codes: list[int] = []
    with watchdog(30.0, exit_process=codes.append):
        pass
    with watchdog(None, exit_process=codes.append):
        pass
    assert codes == []


def test_retry_options_are_checked() -> None:
    from speechunits.errors import SpeechUnitsError
    from speechunits.scale.options import ScaleOptions

    with pytest.raises(SpeechUnitsError, match="--max-retries, --utterance-timeout: only with --backend ray"):
        ScaleOptions(max_retries=1, utterance_timeout=5.0)
    with pytest.raises(SpeechUnitsError, match="--max-retries must be >= 0"):
        ScaleOptions(backend="ray", max_retries=-1)
    with pytest.raises(SpeechUnitsError, match="--utterance-timeout must be > 0"):
        ScaleOptions(backend="ray", utterance_timeout=0.0)
    options = ScaleOptions(backend="ray", max_retries=5, utterance_timeout=30.0).ray_options()
    assert (options.max_retries, options.utterance_timeout_s) == (5, 30.0)
    assert ScaleOptions(backend="ray").ray_options().max_retries == ray_workers.DEFAULT_MAX_RETRIES
