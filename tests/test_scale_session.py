"""Embedded-Ray hygiene without Ray: leftovers of a killed driver are found and ended, live
drivers' sessions are left alone; Ray's driver messages are translated once, in our words;
the CLI turns SIGTERM into a clean exit."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechunits.scale import ray_leftovers
from speechunits.scale.ray_session import translate_ray_message

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@pytest.fixture()
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "registry"
    monkeypatch.setattr(ray_leftovers, "registry_dir", lambda: directory)
    return directory


def sleeper(session_dir: Path) -> subprocess.Popen:
    """A stand-in for a Ray process: names the session directory on its command line. Returns once the
    process shows it there (right after fork, /proc still shows the parent's command line)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(session_dir)])
    deadline = time.monotonic() + 30
    while proc.pid not in ray_leftovers.session_processes(str(session_dir)):
        assert time.monotonic() < deadline, "the stand-in process never showed its session directory"
        time.sleep(0.02)
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_dead_driver_are_ended(registry: Path, tmp_path: Path) -> None:
    session = tmp_path / "ray" / "session_2026-11-30_05-00-00_123_4567"
    other = tmp_path / "ray" / "session_2026-11-30_05-00-00_123_9999"
    orphan, bystander = sleeper(session), sleeper(other)
    try:
        ray_leftovers.register(str(session), pid=dead_pid())
        ray_leftovers.register(str(other), pid=os.getpid())  # a live driver: its session stays
        assert ray_leftovers.reap_leftovers() == 1
        assert orphan.wait(timeout=30) == -signal.SIGTERM
        assert bystander.poll() is None
        assert sorted(p.name for p in registry.iterdir()) == [f"{os.getpid()}.json"]
        assert ray_leftovers.reap_leftovers() == 0  # nothing left to do
    finally:
        for proc in (orphan, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_release_ends_what_outlived_shutdown_and_forgets_the_session(registry: Path, tmp_path: Path) -> None:
    session = tmp_path / "ray" / "session_x"
    proc = sleeper(session)
    try:
        record = ray_leftovers.register(str(session))
        assert ray_leftovers.release(record, str(session), wait_s=0.2) == 1
        assert proc.wait(timeout=30) in (-signal.SIGTERM, -signal.SIGKILL)
        assert not record.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_corrupt_record_is_dropped(registry: Path) -> None:
    registry.mkdir()
    (registry / "1.json").write_text("{not json")
    assert ray_leftovers.reap_leftovers() == 0
    assert list(registry.iterdir()) == []


def test_ray_messages_reach_the_user_once_in_our_words(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ray.messages")
    seen: set[str] = set()
    with caplog.at_level(logging.DEBUG, logger="test.ray.messages"):
        for text in ["A worker died or was killed while executing a task by an unexpected system error.",
                     "A worker died or was killed while executing a task by an unexpected system error.",
                     "Spilled 2048 MiB, 12 objects, write throughput 400 MiB/s.",
                     "Spilled 4096 MiB, 30 objects, write throughput 410 MiB/s.",
                     "Task was killed due to the node running low on memory (memory monitor).",
                     "some other line"]:
            translate_ray_message(text, seen, logger)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["a Ray worker process died; its work is retried (see --max-retries)",
                        "Ray's object store is full and spills objects to disk: slower, still correct "
                        "(docs/scaling.md, Object-store sizing)",
                        "Ray killed a worker for lack of memory; its work is retried (see --max-retries)"]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 6  # the originals, for -v


CLI_SCRIPT = """
import sys, time
import speechunits.cli.fit as fit
from speechunits.cli.main import main

def run(args):
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        print("cleaned up", flush=True)
    return 0

fit.run = run  # what register() binds when main() builds the parser
sys.exit(main(["fit", "--k", "2", "-o", "x"]))
"""


def test_cli_turns_sigterm_into_a_clean_exit(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CLI_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "cleaned up" in out and "terminated (SIGTERM)" in err
