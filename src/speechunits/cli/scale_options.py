"""The ``--backend`` option family of the corpus commands, and its :class:`ScaleOptions`."""
from __future__ import annotations

import argparse

from speechunits.scale.options import BACKENDS, ScaleOptions


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend``, ``--ray-address``, ``--num-workers``, ``--gpus-per-worker``,
    ``--cpus-per-worker``, ``--max-retries``, ``--utterance-timeout`` and ``--loader-workers``
    (see docs/scaling.md)."""
    group = parser.add_argument_group("scale-out (docs/scaling.md)")
    group.add_argument("--backend", choices=BACKENDS, default="local",
                       help="local: this process; ray: a Ray cluster (needs the [ray] extra)")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="Ray cluster to join (auto, ray://head:10001, head:6379); default: the RAY_ADDRESS "
                       "cluster if set, else a local Ray with this machine's cores")
    group.add_argument("--num-workers", type=int, default=None, metavar="N",
                       help="ray: encoder actors (default: GPUs / --gpus-per-worker, else CPUs / --cpus-per-worker)")
    group.add_argument("--gpus-per-worker", type=float, default=None, metavar="G",
                       help="ray: GPUs per encoder actor (default 1 when the cluster has GPUs, else 0)")
    group.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                       help="ray: CPUs (torch threads) per encoder actor (default 1)")
    group.add_argument("--max-retries", type=int, default=None, metavar="N",
                       help="ray: retries of a file that crashed, hung or got its worker killed; then it is "
                       "recorded as failed and the run goes on (default 2)")
    group.add_argument("--utterance-timeout", type=float, default=None, metavar="SECONDS",
                       help="ray: seconds a worker may spend on one file before it is ended and the file "
                       "retried (default: no limit)")
    group.add_argument("--loader-workers", type=int, default=None, metavar="N",
                       help="local: threads decoding ahead of the encoder (default min(4, cores); 0 = serial); "
                       "ray: decode tasks in flight")


def add_part_options(parser: argparse.ArgumentParser, rows_help: str | None = None) -> None:
    """``--shard-seconds T`` (and ``--rows-per-part N`` when ``rows_help`` is given): how often a
    long run keeps its finished work (``encode`` has the same ``--shard-seconds``)."""
    from speechunits.units.parquet_dir import DEFAULT_ROWS_PER_FILE, DEFAULT_SHARD_SECONDS

    if rows_help is not None:
        parser.add_argument("--rows-per-part", type=int, default=DEFAULT_ROWS_PER_FILE, metavar="N",
                            help=f"{rows_help} (default %(default)s)")
    parser.add_argument("--shard-seconds", type=float, default=DEFAULT_SHARD_SECONDS, metavar="T",
                        help="keep finished work on disk at least every T seconds, so an interruption loses at "
                        "most about T seconds of it; run the same command again to resume "
                        "(default %(default)g; 0: by rows only)")


def check_part_options(args: argparse.Namespace) -> None:
    """Refuse a negative ``--shard-seconds`` or a ``--rows-per-part`` below 1."""
    from speechunits.errors import SpeechUnitsError

    if args.shard_seconds < 0:
        raise SpeechUnitsError(f"--shard-seconds must be >= 0, got {args.shard_seconds}")
    rows = getattr(args, "rows_per_part", None)
    if rows is not None and rows < 1:
        raise SpeechUnitsError(f"--rows-per-part must be >= 1, got {rows}")


def scale_options(args: argparse.Namespace) -> ScaleOptions:
    """The parsed ``--backend`` family as a checked :class:`ScaleOptions` (``-v`` lets Ray's logs through).

    Raises:
        SpeechUnitsError: Ray-only options without ``--backend ray``, negative ``--loader-workers``.
    """
    return ScaleOptions(backend=args.backend, ray_address=args.ray_address, num_workers=args.num_workers,
                        gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                        max_retries=args.max_retries, utterance_timeout=args.utterance_timeout,
                        loader_workers=args.loader_workers, verbose=bool(getattr(args, "verbose", False)))
