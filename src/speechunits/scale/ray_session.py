"""Connecting to Ray (an existing cluster, or an embedded local one) with quiet logs.

Ray is the optional ``[ray]`` extra: this module imports it only inside functions, and
:func:`require_ray` turns a missing install into a clear :class:`SpeechUnitsError`.

An embedded Ray lives exactly as long as the :func:`ray_session` block: it is shut down on a
normal exit, an exception, Ctrl-C and SIGTERM (Ray's own driver handler turns SIGTERM into
``SystemExit``; an application that installed its own SIGTERM handler gets it back after
``ray.init``), and what it left behind a ``SIGKILL`` of the driver is ended by the next run
(:mod:`speechunits.scale.ray_leftovers`).

Ray's messages to the driver (a worker died, objects spilled, out of memory) are printed by Ray
straight to stdout/stderr; :func:`ray_session` routes them through :func:`translate_ray_message`
instead: each kind once per session as a warning in our words, everything else at debug level
(``-v`` shows it).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from typing import Any, Callable, Iterator

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

#: Environment set before Ray starts in this process (unless the user already set it): no log
#: deduplication messages, the C++ core only reports fatal problems (it writes errors such as
#: "constructor arguments in the object store" to the driver's terminal otherwise), no Ray Data
#: progress bars. Worker logs stay in Ray's session directory.
QUIET_ENV = {
    "RAY_DEDUP_LOGS": "0",
    "RAY_BACKEND_LOG_LEVEL": "fatal",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
}
#: Python loggers of Ray that we turn down to warnings-only (errors still show).
RAY_LOGGERS = ("ray", "ray.data", "ray.data._internal", "ray._private")


def ray_available() -> bool:
    """Whether the ``[ray]`` extra is installed (checked without importing Ray)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


#: Driver environment variables every Ray worker must see too (a remote cluster's workers do not
#: inherit the driver's environment): the CPU-kernel opt-out of ``--no-cpu-kernels``.
FORWARDED_ENV = ("SPEECHUNITS_NO_CPU_KERNELS",)


def forwarded_env() -> dict[str, str]:
    """The :data:`FORWARDED_ENV` variables set in this process, for Ray's ``runtime_env``."""
    return {key: os.environ[key] for key in FORWARDED_ENV if key in os.environ}


def require_ray() -> Any:
    """Import and return the ``ray`` module, or explain how to install it."""
    if not ray_available():
        raise SpeechUnitsError("--backend ray: Ray is not installed; pip install 'speechunits[ray]'")
    import ray

    return ray


def _quiet_python_loggers(verbose: bool) -> None:
    import warnings

    level = logging.INFO if verbose else logging.ERROR
    if not verbose:  # Ray Data warns about its own deprecated settings on every run
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data\.")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\.")
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def configure_data_context(verbose: bool = False) -> None:
    """Ray Data settings for our pipelines: no progress bars or stats dumps (we show our own)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_auto_log_stats = False
    ctx.print_on_execution_start = verbose
    ctx.verbose_stats_logs = False
    _quiet_python_loggers(verbose)


#: (pattern, our words) for the messages Ray pushes to the driver that matter to a user.
RAY_MESSAGE_KINDS: tuple[tuple[str, str], ...] = (
    (r"(?i)spill", "Ray's object store is full and spills objects to disk: slower, still correct "
     "(docs/scaling.md, Object-store sizing)"),
    (r"(?i)out of memory|OutOfMemory|memory monitor|killed due to memory",
     "Ray killed a worker for lack of memory; its work is retried (see --max-retries)"),
    (r"(?i)worker died|was killed|died unexpectedly|exited unexpectedly|node .* (died|dead)|SYSTEM_ERROR",
     "a Ray worker process died; its work is retried (see --max-retries)"),
)


def translate_ray_message(text: str, seen: set[str], logger: logging.Logger = log) -> bool:
    """Log one message Ray printed for the driver: the first of each known kind as a warning in
    our words (the original at debug level), everything else at debug level. Returns whether the
    message was of a known kind."""
    known = False
    for pattern, words in RAY_MESSAGE_KINDS:
        if re.search(pattern, text):
            known = True
            if words not in seen:
                seen.add(words)
                logger.warning("%s", words)
            break
    logger.debug("ray: %s", text.strip())
    return known


class RayLogTranslator(logging.Filter):
    """On the handlers of Ray's own loggers: a record of a known kind (:data:`RAY_MESSAGE_KINDS`)
    is replaced by our words (once per session); other records pass unchanged."""

    def __init__(self, seen: set[str]) -> None:
        super().__init__()
        self.seen = seen

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("speechunits"):
            return True
        return not translate_ray_message(record.getMessage(), self.seen)


@contextlib.contextmanager
def _ray_messages_translated(verbose: bool, seen: set[str]) -> Iterator[None]:
    """Route what Ray's driver threads print (``ray._private.worker.print_to_stdstream``) through
    :func:`translate_ray_message` (``verbose``: Ray's own printing stays, untouched)."""
    try:
        import ray._private.worker as ray_worker
    except ImportError:  # pragma: no cover - Ray's layout changed: keep its printing
        yield
        return
    original: Callable[..., Any] | None = getattr(ray_worker, "print_to_stdstream", None)
    if verbose or original is None:
        yield
        return

    def translated(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        for line in data.get("lines", []):
            translate_ray_message(str(line), seen)

    ray_worker.print_to_stdstream = translated
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


@contextlib.contextmanager
def _ray_logs_translated(verbose: bool, seen: set[str]) -> Iterator[None]:
    """A :class:`RayLogTranslator` on every handler of Ray's loggers for the block (not with ``verbose``)."""
    if verbose:
        yield
        return
    translator = RayLogTranslator(seen)
    handlers = {handler for name in ("ray", *RAY_LOGGERS) for handler in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(translator)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(translator)


@contextlib.contextmanager
def _native_stderr_logged(verbose: bool) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 during the block (Ray's C++ core
    announces its log level there while ``ray.init`` starts it) and log it: lines of Ray's
    error (``E``) or fatal (``F``) level as warnings, the rest at debug level. Nothing is
    captured with ``verbose``."""
    if verbose:
        yield
        return
    import sys
    import tempfile

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", errors="replace").splitlines():
                if line.strip():
                    severe = re.match(r"^\[[^\]]* [EF] \d+ \d+\]", line) is not None
                    log.log(logging.WARNING if severe else logging.DEBUG, "ray: %s", line)


def _start_embedded(ray: Any, verbose: bool, **kwargs: Any) -> Any:
    """``ray.init`` of a local Ray, keeping an application's own SIGTERM handler (Ray replaces it
    with ``sys.exit``); returns Ray's context."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    with _native_stderr_logged(verbose):
        context = ray.init(**kwargs)
    if main and callable(previous) and previous not in (signal.SIG_DFL, signal.SIG_IGN):
        signal.signal(signal.SIGTERM, previous)
    return context


def _session_dir(context: Any) -> str | None:
    info = getattr(context, "address_info", None)
    return info.get("session_dir") if isinstance(info, dict) else None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
                object_store_memory: int | None = None, verbose: bool = False) -> Iterator[Any]:
    """Use Ray for the duration of the block; yields the ``ray`` module.

    Args:
        address: an existing cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``);
            ``None``: the ``RAY_ADDRESS`` cluster if that variable is set, else a local Ray with
            this machine's cores (or ``num_cpus``).
        num_cpus, num_gpus, object_store_memory: sizes of an embedded Ray (ignored with ``address``).
        verbose: let Ray's own logs through (otherwise only errors).

    If Ray is already initialised in this process (a test fixture, a notebook), that session is
    used and left running; otherwise the session started here is shut down at the end, also on
    an exception, Ctrl-C or SIGTERM. Before an embedded Ray starts, the processes of embedded
    sessions whose driver was killed are ended (:func:`~speechunits.scale.ray_leftovers.reap_leftovers`).
    """
    ray = require_ray()
    _quiet_python_loggers(verbose)
    if ray.is_initialized():
        log.debug("using the Ray session already running in this process")
        configure_data_context(verbose)
        yield ray
        return
    if not verbose:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        log_to_driver=verbose,
        logging_level=logging.INFO if verbose else logging.ERROR,
        configure_logging=True,
    )
    if forwarded_env():
        kwargs["runtime_env"] = {"env_vars": forwarded_env()}
    from speechunits.scale import ray_leftovers

    record = session_dir = None
    seen: set[str] = set()  # kinds of Ray messages already shown in our words
    with _ray_messages_translated(verbose, seen):
        if address:
            log.info("connecting to the Ray cluster at %s", address)
            try:
                with _native_stderr_logged(verbose):
                    ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise SpeechUnitsError(f"--ray-address {address}: cannot connect to a Ray cluster ({exc})") from exc
        else:
            ray_leftovers.reap_leftovers()
            cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
            log.info("starting a local Ray with %d CPU(s)", cpus)
            context = _start_embedded(ray, verbose, num_cpus=cpus, num_gpus=num_gpus,
                                      object_store_memory=object_store_memory, **kwargs)
            session_dir = _session_dir(context)
            if session_dir:
                record = ray_leftovers.register(session_dir)
        try:
            _quiet_python_loggers(verbose)
            configure_data_context(verbose)
            with _ray_logs_translated(verbose, seen):
                yield ray
        finally:
            ray.shutdown()
            if record is not None and session_dir:
                ray_leftovers.release(record, session_dir)


def cluster_resources() -> dict[str, float]:
    """Total CPUs/GPUs/memory of the connected cluster (``ray.cluster_resources()``)."""
    import ray

    return {key: float(value) for key, value in ray.cluster_resources().items()}
