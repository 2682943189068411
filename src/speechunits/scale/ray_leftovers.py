"""Processes of an embedded Ray that outlived their driver: record, find, end.

An embedded Ray (``ray.init()`` without an address) runs a GCS server, a raylet, agents and
worker processes beside the driver. ``ray.shutdown()`` ends them; a driver killed with
``SIGKILL`` cannot, and some of them (e.g. ``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``,
or actors busy encoding) stay alive. So every embedded session is registered in a small JSON
file (:func:`register`): the driver's pid and start time and the session directory. A later
run calls :func:`reap_leftovers`, which ends the processes of every registered session whose
driver is gone, and removes its record.

A process belongs to a session when its command line or one of its open files names the
session directory (``/tmp/ray/session_<time>_<pid>``): Ray passes it to every process it
starts, and its workers write their logs there even after ``setproctitle`` rewrote their
command line to ``ray::...``. Only processes of this user are considered. Linux only (``/proc``);
elsewhere nothing is found and nothing is ended.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when ending leftovers.
TERM_GRACE_S = 5.0
#: Rounds of find-and-end: a dying raylet may still start a process while its session is ended.
END_ROUNDS = 4


def registry_dir() -> Path:
    """Where this user's embedded sessions are recorded (one ``{driver pid}.json`` each)."""
    return Path(tempfile.gettempdir()) / f"speechunits-ray-{os.getuid()}"


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22), or
    ``None`` if there is no such process (tells a live driver from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def register(session_dir: str, pid: int | None = None) -> Path:
    """Record that the driver ``pid`` (default: this process) owns the embedded session ``session_dir``."""
    pid = os.getpid() if pid is None else pid
    directory = registry_dir()
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / f"{pid}.json"
    tmp = directory / f".{pid}.json.tmp"
    tmp.write_text(json.dumps({"driver_pid": pid, "driver_start": process_start_time(pid),
                               "session_dir": session_dir}), encoding="utf-8")
    os.replace(tmp, record)
    return record


def _pids() -> Iterator[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _mentions(pid: int, session_dir: str, pattern: re.Pattern[bytes]) -> bool:
    """Whether ``pid`` (a process of this user) names ``session_dir`` in its command line or open files."""
    proc = Path(f"/proc/{pid}")
    try:
        if proc.stat().st_uid != os.getuid():
            return False
        if pattern.search((proc / "cmdline").read_bytes()):
            return True
        for fd in (proc / "fd").iterdir():
            try:
                target = os.readlink(fd)
                if target == session_dir or target.startswith(session_dir + "/"):
                    return True
            except OSError:
                continue
    except OSError:  # gone, or not ours to read
        return False
    return False


def session_processes(session_dir: str) -> list[int]:
    """Pids of this user's processes that belong to the Ray session ``session_dir`` (never this one)."""
    session_dir = session_dir.rstrip("/")
    if not session_dir:
        return []
    me = os.getpid()
    # the directory itself or a path inside it, not another session whose name starts alike
    pattern = re.compile(re.escape(session_dir.encode()) + rb"(?=/|\x00|$|[\s'\"])")
    return sorted(pid for pid in _pids() if pid != me and _mentions(pid, session_dir, pattern))


def end_processes(pids: list[int], grace_s: float = TERM_GRACE_S) -> list[int]:
    """SIGTERM ``pids``, SIGKILL those still alive after ``grace_s``; returns the pids signalled."""
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
        except (ProcessLookupError, PermissionError):
            continue
    deadline = time.monotonic() + grace_s
    alive = list(signalled)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    return signalled


def _alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def driver_alive(record: dict) -> bool:
    pid = int(record.get("driver_pid", 0))
    start = process_start_time(pid) if pid > 0 else None
    return start is not None and start == record.get("driver_start")


def reap_leftovers() -> int:
    """End the processes of every recorded embedded session whose driver is gone; returns how
    many processes were signalled. Records of live drivers are left alone."""
    directory = registry_dir()
    if not directory.is_dir():
        return 0
    ended = 0
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            path.unlink(missing_ok=True)
            continue
        if driver_alive(record):
            continue
        session_dir = str(record.get("session_dir", ""))
        pids = session_processes(session_dir)
        if pids:
            log.warning("ending %d process(es) left by an embedded Ray whose driver (pid %s) was killed",
                        len(pids), record.get("driver_pid"))
            ended += end_session(session_dir, pids)
        path.unlink(missing_ok=True)
    return ended


def end_session(session_dir: str, pids: list[int] | None = None, grace_s: float = TERM_GRACE_S) -> int:
    """End every process of ``session_dir``, again until none is left (at most :data:`END_ROUNDS`
    rounds); returns how many processes were signalled."""
    ended = 0
    for _ in range(END_ROUNDS):
        pids = session_processes(session_dir) if pids is None else pids
        if not pids:
            break
        ended += len(end_processes(pids, grace_s))
        pids = None
    return ended


def release(record: Path, session_dir: str, wait_s: float = TERM_GRACE_S) -> int:
    """After ``ray.shutdown()``: end whatever of ``session_dir`` is still running after ``wait_s``
    (shutdown ends its processes asynchronously) and remove ``record``; returns the pids signalled."""
    deadline = time.monotonic() + wait_s
    pids = session_processes(session_dir)
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = [pid for pid in pids if _alive(pid)]
    ended = end_session(session_dir, pids, grace_s=1.0) if pids else 0
    if ended:
        log.debug("ended %d Ray process(es) that outlived ray.shutdown()", ended)
    record.unlink(missing_ok=True)
    return ended
