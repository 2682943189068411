"""Encoders: audio to per-layer frame features (see :mod:`speechunits.encoders.base`)."""
from __future__ import annotations

import os

from speechunits.encoders.base import Encoder, EncoderInfo

__all__ = ["Encoder", "EncoderInfo", "load_encoder", "BUILTIN_ENCODERS"]

#: Names that select a built-in (parameter-free) encoder instead of a transformers model.
BUILTIN_ENCODERS = ("mfcc", "logmel")


def load_encoder(name: str, device: str = "auto", dtype: str = "fp32", cpu_kernels: bool | None = None) -> Encoder:
    """Load ``"mfcc"``, ``"logmel"``, a local directory or a Hugging Face hub id of a speech SSL model.

    Args:
        name: built-in name, local directory (``config.json`` + weights, optional
            ``preprocessor_config.json``) or hub id such as ``facebook/hubert-base-ls960``.
        device: ``"auto"`` (cuda if available), ``"cpu"`` or ``"cuda"``.
        dtype: compute precision ``"fp32"``, ``"bf16"`` or ``"fp16"`` (weights and activations in
            that precision, normalisation statistics in fp32); outputs are float32.
        cpu_kernels: on CPU, swap faster equivalents of some modules into a transformers model
            (:mod:`speechunits.encoders.cpu`); None: yes unless the environment variable
            ``SPEECHUNITS_NO_CPU_KERNELS`` is set to a non-empty value other than ``0``.
            Ignored by the built-in encoders.

    A local directory is named by its absolute path (``info.name``; symbolic links are kept), so
    that codebooks, feature directories and trained models that record it load the encoder again
    from any working directory. Hub ids are kept as given.

    Raises:
        SpeechUnitsError: unknown name, unloadable model, unavailable device or bad dtype.
    """
    from speechunits.device import resolve_device, resolve_dtype  # torch: imported when an encoder is loaded

    resolve_dtype(dtype)
    resolve_device(device)
    if name in BUILTIN_ENCODERS:
        from speechunits.encoders.spectral import BUILTIN_SPECTRAL, SpectralEncoder

        return SpectralEncoder(BUILTIN_SPECTRAL[name])
    from speechunits.encoders.hf import HFEncoder

    if os.path.isdir(name):
        name = os.path.abspath(name)
    return HFEncoder.from_pretrained(name, device=device, dtype=dtype, cpu_kernels=cpu_kernels)
