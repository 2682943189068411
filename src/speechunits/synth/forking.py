"""Run each task in a fresh fork of this process, several at a time, results in task order.

espeak-ng's output depends on what the process synthesised before, so every utterance gets
its own child forked from a parent that only initialised the library. ``multiprocessing.Pool``
with ``maxtasksperchild=1`` does the same but replaces workers slowly (about 30 ms per task
on these machines, versus about 4 ms for a bare ``os.fork``), hence this small runner.
Results travel back pickled through a pipe (in-memory IPC only; nothing is stored).
"""
from __future__ import annotations

import os
import pickle
import selectors
import signal
import traceback
from typing import Callable, Iterable, Iterator, TypeVar

from speechunits.errors import SpeechUnitsError

T = TypeVar("T")
R = TypeVar("R")

_READ_SIZE = 1 << 16


def _child(fn: Callable[[T], R], task: T, write_fd: int) -> None:
    try:
        try:
            payload = pickle.dumps((True, fn(task)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # report any failure to the parent
            payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        view = memoryview(payload)
        while view:
            written = os.write(write_fd, view)
            view = view[written:]
        os.close(write_fd)
    finally:
        os._exit(0)


def map_forked(fn: Callable[[T], R], tasks: Iterable[T], workers: int) -> Iterator[R]:
    """Yield ``fn(task)`` for each task, in order, each computed in its own forked child.

    At most ``workers`` children run at once. Tasks are drawn lazily, so an endless iterable
    is fine if the caller stops consuming. A failing task raises :class:`SpeechUnitsError`.
    """
    if workers < 1:
        raise SpeechUnitsError(f"workers must be >= 1, got {workers}")
    task_iter = iter(tasks)
    selector = selectors.DefaultSelector()
    running: dict[int, tuple[int, int, bytearray]] = {}  # fd -> (index, pid, buffer)
    done: dict[int, bytes] = {}
    next_index = 0
    next_yield = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < workers and next_index - next_yield < 4 * workers:
                try:
                    task = next(task_iter)
                except StopIteration:
                    exhausted = True
                    break
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # child
                    os.close(read_fd)
                    _child(fn, task, write_fd)
                os.close(write_fd)
                running[read_fd] = (next_index, pid, bytearray())
                selector.register(read_fd, selectors.EVENT_READ)
                next_index += 1
            while next_yield in done:
                ok, value = pickle.loads(done.pop(next_yield))
                next_yield += 1
                if not ok:
                    raise SpeechUnitsError(f"synthesis failed in a worker: {value}")
                yield value
            if not running:
                if exhausted and not done:
                    return
                continue
            for key, _ in selector.select():
                fd = key.fd
                chunk = os.read(fd, _READ_SIZE)
                if chunk:
                    running[fd][2].extend(chunk)
                    continue
                index, pid, buffer = running.pop(fd)
                selector.unregister(fd)
                os.close(fd)
                os.waitpid(pid, 0)
                if not buffer:
                    raise SpeechUnitsError(f"a synthesis worker (pid {pid}) died without a result")
                done[index] = bytes(buffer)
    finally:
        for fd, (_, pid, _) in running.items():
            selector.unregister(fd)
            os.close(fd)
            try:
                # SIGKILL, not SIGTERM: a fork inherits the parent's Python signal handlers (Ray's, in a
                # process that ran Ray), and such a handler can hang in the child, and waitpid with it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        selector.close()
