"""How a corpus job is spread out: :class:`ScaleOptions` (no heavy imports; CLI parsers read it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from speechunits.errors import SpeechUnitsError

if TYPE_CHECKING:
    from speechunits.scale.ray_pipeline import RayOptions

#: Where a job runs: ``local`` (this process, audio decoded ahead by threads) or ``ray``.
BACKENDS = ("local", "ray")
#: Fields that only mean something with ``backend="ray"``.
RAY_ONLY = ("ray_address", "num_workers", "gpus_per_worker", "cpus_per_worker", "rows_per_call", "max_retries",
            "utterance_timeout")


@dataclass(frozen=True)
class ScaleOptions:
    """The backend of a ``features`` / ``encode`` / ``fit`` job (docs/scaling.md).

    Attributes:
        backend: ``"local"`` or ``"ray"``.
        ray_address: Ray cluster to join (``auto``, ``ray://head:10001``, ``head:6379``);
            ``None``: the ``RAY_ADDRESS`` cluster if set, else a local Ray. Ray only.
        num_workers: encoder actors (default from the cluster's GPUs or CPUs). Ray only.
        gpus_per_worker: GPUs per encoder actor (default 1 when the cluster has GPUs). Ray only.
        cpus_per_worker: CPUs (torch threads) per encoder actor (default 1). Ray only.
        rows_per_call: utterances per decode task and actor call (default
            :data:`~speechunits.scale.ray_pipeline.DEFAULT_ROWS_PER_CALL`). Ray only.
        max_retries: retries of a file whose processing ended its worker process (default
            :data:`~speechunits.scale.ray_workers.DEFAULT_MAX_RETRIES`), then it is recorded as
            failed and the run goes on. Ray only.
        utterance_timeout: seconds a worker may spend on one file before it is ended and the
            file retried (default: no limit). Ray only.
        loader_workers: local: threads decoding ahead of the encoder (``None``:
            :func:`~speechunits.scale.prefetch.default_loader_workers`; ``0``: the plain serial
            loop); Ray: decode tasks in flight.
        verbose: let Ray's own logs through.

    Raises:
        SpeechUnitsError: on construction, for an unknown backend, a Ray-only field with the
            local backend, a negative ``loader_workers`` or a Ray number out of range (option
            names as on the command line).
    """

    backend: str = "local"
    ray_address: str | None = None
    num_workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    rows_per_call: int | None = None
    max_retries: int | None = None
    utterance_timeout: float | None = None
    loader_workers: int | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SpeechUnitsError(f"--backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "local":
            given = [name for name in RAY_ONLY if getattr(self, name) is not None]
            if given:
                flags = ", ".join("--" + name.replace("_", "-") for name in given)
                raise SpeechUnitsError(f"{flags}: only with --backend ray")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise SpeechUnitsError(f"--loader-workers must be >= 0, got {self.loader_workers}")
        if self.is_ray:
            self.ray_options()  # RayOptions.check: the Ray numbers, before any work starts

    @property
    def is_ray(self) -> bool:
        return self.backend == "ray"

    def local_loader_workers(self) -> int:
        """Loader threads of the local backend (``0``: serial loop)."""
        from speechunits.scale.prefetch import default_loader_workers

        return default_loader_workers() if self.loader_workers is None else int(self.loader_workers)

    def ray_options(self, device: str = "auto") -> RayOptions:
        """The checked :class:`~speechunits.scale.ray_pipeline.RayOptions`; ``device`` is the
        requested encoder device (``auto``/``cpu``/``cuda``) of the actors."""
        from speechunits.scale.ray_pipeline import DEFAULT_ROWS_PER_CALL, RayOptions
        from speechunits.scale.ray_workers import DEFAULT_MAX_RETRIES

        options = RayOptions(address=self.ray_address, num_workers=self.num_workers,
                             gpus_per_worker=self.gpus_per_worker,
                             cpus_per_worker=1.0 if self.cpus_per_worker is None else self.cpus_per_worker,
                             loader_workers=self.loader_workers or None,
                             rows_per_call=self.rows_per_call or DEFAULT_ROWS_PER_CALL,
                             max_retries=DEFAULT_MAX_RETRIES if self.max_retries is None else self.max_retries,
                             utterance_timeout_s=self.utterance_timeout,
                             device=device or "auto", verbose=self.verbose)
        options.check()
        return options
