"""``speechunits`` entry point.

Every module in :mod:`speechunits.cli` that defines ``register(subparsers)`` adds its
command(s); ``register`` sets ``func`` on its parser, called with the parsed args and
returning an exit status. Library errors (:class:`SpeechUnitsError`) become a one-line
message and exit status 2; Ctrl-C exits with 130 and SIGTERM with 143, both after the same
cleanup (finished shards kept, an embedded Ray shut down); a closed stdout (``| head``) with 141,
quietly, as a program ended by SIGPIPE.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.util
import logging
import math
import os
import pkgutil
import signal
import sys
import threading
from typing import Iterator

import speechunits.cli as cli_package
from speechunits import __version__
from speechunits.cli.common import torch_threads
from speechunits.errors import SpeechUnitsError

log = logging.getLogger("speechunits")
#: speechunits.encoders.cpu.DISABLE_ENV, spelled out so that building the parser imports no torch.
NO_CPU_KERNELS_ENV = "SPEECHUNITS_NO_CPU_KERNELS"
#: libgomp's spin before an idle OpenMP thread sleeps, when the user chose no wait policy (bench/omp_wait.py).
OPENMP_SPINCOUNT = "1000"


def short_openmp_spin() -> None:
    """Unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, or torch is already imported (its
    OpenMP runtime has read them), set ``GOMP_SPINCOUNT`` to :data:`OPENMP_SPINCOUNT`: torch's idle CPU
    threads then spin briefly and sleep. With libgomp's default spin, two torch jobs on the same cores
    take each other's cores (a step up to 30x slower); alone the short spin costs nothing measurable.
    Child processes (Ray workers, torchrun ranks) inherit it. Other OpenMP runtimes ignore it."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPINCOUNT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) like Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


@contextlib.contextmanager
def quiet_transformers(quiet: bool) -> Iterator[None]:
    """Under ``--quiet``, transformers' progress bars (e.g. "Loading weights" when an encoder
    loads) and its info logs are off for the command, through transformers' own switches; both
    are restored afterwards. Imports transformers only when quiet (and installed)."""
    if not quiet or importlib.util.find_spec("transformers") is None:
        yield
        return
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity(max(verbosity, logging.WARNING))  # warnings still show, as ours do
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def finite_float(text: str) -> float:
    """``type=float`` of every option: NaN and infinities are refused (they would reach int() or a model)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _refuse_non_finite_floats(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.type is float:
            action.type = finite_float
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _refuse_non_finite_floats(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechunits", description="Self-supervised discrete speech units.")
    parser.add_argument("--version", action="version", version=f"speechunits {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(cli_package.__path__), key=lambda m: m.name):
        if module_info.name in ("main", "common"):
            continue
        module = importlib.import_module(f"speechunits.cli.{module_info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    _refuse_non_finite_floats(parser)
    return parser


@contextlib.contextmanager
def training_process(trains: bool, output: str | None = None) -> Iterator[None]:
    """For a command that trains (its parser sets ``trains``): its ``-o`` directory held by this
    process alone (:func:`~speechunits.training.exclusive.exclusive_output`), and subnormal floats flushed to zero on CPU
    from before torch's first parallel operation, so that every intra-op thread it starts is covered
    (a flag set later reaches only the calling thread; saturated LSTM gates make subnormals, and
    arithmetic on them is ~10x slower on x86). Restored afterwards. Other commands import no torch here."""
    if not trains:
        yield
        return
    import torch

    from speechunits.training.exclusive import exclusive_output
    from speechunits.training.loop import cpu_denormals_flushed

    lock = exclusive_output(output) if output else contextlib.nullcontext()
    with lock, cpu_denormals_flushed(torch.device("cpu")):
        yield


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on the writing end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor (an in-process caller's stdout) or no poll()
        return False


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # an in-process caller's stdout without a file descriptor
        pass


#: errno values of a filesystem refusing a path or a write: the user's environment, not a bug
_PATH_ERRNOS = {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ENOENT,
                errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.ENAMETOOLONG}


def _is_path_condition(exc: OSError) -> bool:
    """True for an error about a named path that the filesystem refused (see :data:`_PATH_ERRNOS`)."""
    return exc.errno in _PATH_ERRNOS and (exc.filename is not None or exc.errno in (errno.ENOSPC, errno.EDQUOT))


def main(argv: list[str] | None = None) -> int:
    short_openmp_spin()
    parser = build_parser()
    args = parser.parse_args(argv)
    # --quiet: only warnings and errors; -v: debug (wins over --quiet).
    level = logging.DEBUG if args.verbose else logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    saved_level = log.level
    log.setLevel(level)  # also when logging was configured before main() (embedding, tests); restored below
    previous = os.environ.get(NO_CPU_KERNELS_ENV)
    if getattr(args, "no_cpu_kernels", False):  # every encoder this run builds (a local Ray's workers too)
        os.environ[NO_CPU_KERNELS_ENV] = "1"
    main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        trains = getattr(args, "trains", False)
        with quiet_transformers(level > logging.INFO), training_process(trains, getattr(args, "output", None)), \
                torch_threads(getattr(args, "threads", None)):
            return int(args.func(args) or 0)
    except SpeechUnitsError as exc:
        log.error("%s", exc)
        return 2
    except Terminated:
        log.error("terminated (SIGTERM)")
        return 143
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        if not _stdout_reader_gone():  # another pipe broke (a worker's): a bug, with its traceback
            raise
        _detach_stdout()  # whoever read stdout went away (`| head`): stop as SIGPIPE would, without a traceback
        return 141
    except OSError as exc:
        if not _is_path_condition(exc):
            raise
        # the filesystem said no (-o names a file, no space left, no permission ...): a user's
        # condition, said in one line; the traceback only with -v
        log.error("%s", f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc)
        log.debug("where it was raised", exc_info=True)
        return 2
    finally:  # in-process callers (tests, scripts) get their logger, environment and handlers back
        if main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm if previous_sigterm is not None else signal.SIG_DFL)
        log.setLevel(saved_level)
        if previous is None:
            os.environ.pop(NO_CPU_KERNELS_ENV, None)
        else:
            os.environ[NO_CPU_KERNELS_ENV] = previous


if __name__ == "__main__":
    sys.exit(main())
