"""Connecting to Ray (an existing cluster, or an embedded local one) with quiet logs.

Ray is the optional ``[ray]`` extra: this module imports it only inside functions, and
:func:`require_ray` turns a missing install into a clear :class:`SpeechUnitsError`.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from speechunits.errors import SpeechUnitsError

log = logging.getLogger(__name__)

#: Environment set before Ray starts in this process (unless the user already set it):
#: no log deduplication messages, and the C++ core only reports fatal problems, so CI
#: logs and terminals stay readable. Worker logs stay in Ray's session directory.
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
    used and left running; otherwise the session started here is shut down at the end.
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
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SpeechUnitsError(f"--ray-address {address}: cannot connect to a Ray cluster ({exc})") from exc
    else:
        cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
        log.info("starting a local Ray with %d CPU(s)", cpus)
        ray.init(num_cpus=cpus, num_gpus=num_gpus, object_store_memory=object_store_memory, **kwargs)
    _quiet_python_loggers(verbose)
    configure_data_context(verbose)
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_resources() -> dict[str, float]:
    """Total CPUs/GPUs/memory of the connected cluster (``ray.cluster_resources()``)."""
    import ray

    return {key: float(value) for key, value in ray.cluster_resources().items()}
