"""The one place where a device name and a precision name become torch objects."""
from __future__ import annotations

import torch

from speechunits.errors import SpeechUnitsError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> ``cuda`` when available else ``cpu``; anything else as named.

    Raises:
        SpeechUnitsError: an unknown device name, or a CUDA device asked for where none exists.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise SpeechUnitsError(f"--device: unknown device {device!r} (use auto, cpu or cuda)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpeechUnitsError(f"--device {device}: no CUDA device is available (use --device cpu or auto)")
    return resolved


def resolve_dtype(dtype: str) -> torch.dtype:
    """``"fp32" | "bf16" | "fp16"`` -> torch dtype."""
    if dtype not in DTYPES:
        raise SpeechUnitsError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]
