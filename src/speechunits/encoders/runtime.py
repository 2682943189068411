"""Device and precision choices shared by the neural encoders."""
from __future__ import annotations

import torch

from speechunits.errors import SpeechUnitsError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; ``"cuda"`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise SpeechUnitsError(f"--device: unknown device {device!r} (use auto, cpu or cuda)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpeechUnitsError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return resolved


def resolve_dtype(dtype: str) -> torch.dtype:
    """``"fp32" | "bf16" | "fp16"`` -> torch dtype."""
    if dtype not in DTYPES:
        raise SpeechUnitsError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]

