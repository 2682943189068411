"""Rank and world size from torchrun's environment, and the device of this rank."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from speechunits.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (``rank`` of ``world``; one process: 0 of 1)."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes the shared checkpoint files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def init_distributed(device: str | torch.device | None = "auto") -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; this rank's device.

    ``device`` goes through :func:`speechunits.device.resolve_device`; on CUDA each rank takes
    ``cuda:LOCAL_RANK``. The backend is nccl on CUDA, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank=rank, world=world), dev
