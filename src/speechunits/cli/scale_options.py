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


def scale_options(args: argparse.Namespace) -> ScaleOptions:
    """The parsed ``--backend`` family as a checked :class:`ScaleOptions` (``-v`` lets Ray's logs through).

    Raises:
        SpeechUnitsError: Ray-only options without ``--backend ray``, negative ``--loader-workers``.
    """
    return ScaleOptions(backend=args.backend, ray_address=args.ray_address, num_workers=args.num_workers,
                        gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                        max_retries=args.max_retries, utterance_timeout=args.utterance_timeout,
                        loader_workers=args.loader_workers, verbose=bool(getattr(args, "verbose", False)))
