"""The random-projection quantizer of BEST-RQ (Chiu et al. 2022) and NEST, as a codebook kind.

Nothing is learned: a frozen projection ``P`` float32 ``[D, d]`` (Xavier-normal,
``std = sqrt(2 / (D + d))``) and a codebook ``C`` float32 ``[K, d]`` of l2-normalised
standard-normal vectors, both drawn from ``torch.Generator().manual_seed(seed)`` (``P`` first).
A frame ``x [D]`` is optionally normalised per dimension, ``z = (x - mean) / std`` (BEST-RQ
normalises its input features; the statistics come from a corpus sample), then

    unit(x) = argmax_k  <C_k, zP / |zP|>      (nearest codeword by cosine; ties: lowest k)

Files: the :class:`~speechunits.quantize.codebook.Codebook` directory with ``kind:
"random-projection"``; ``codebook.safetensors`` holds ``centroids`` (= ``C``), ``projection``
(= ``P``) and, when normalised, ``norm_mean``/``norm_std``; ``codebook.json`` adds ``code_dim``
(``d``) and records ``dim`` = ``D`` (the encoder's), ``seed`` and ``init``. ``sha256`` covers
every tensor (see :func:`rpq_sha256`).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import Codebook, encoder_meta, require_tensor

#: Default codeword dimension (BEST-RQ uses 16).
DEFAULT_CODE_DIM = 16
#: Floor of the per-dimension standard deviation used to normalise features.
MIN_STD = 1e-5
#: Frames per matmul chunk in :meth:`RandomProjectionCodebook.assign`.
CHUNK_FRAMES = 4096
INIT = "xavier-normal projection, l2-normalised normal codebook"


def rpq_sha256(codebook: torch.Tensor, projection: torch.Tensor, norm_mean: torch.Tensor | None,
               norm_std: torch.Tensor | None) -> str:
    """Hex SHA-256 of ``C``, then ``P``, then (when present) ``norm_mean`` and ``norm_std``, each as
    C-ordered little-endian float32 bytes."""
    digest = hashlib.sha256()
    for tensor in (codebook, projection, norm_mean, norm_std):
        if tensor is not None:
            digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype="<f4").tobytes())
    return digest.hexdigest()


def random_projection(in_dim: int, code_dim: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P [in_dim, code_dim], C [k, code_dim])`` drawn as the module docstring says."""
    if in_dim < 1 or code_dim < 1 or k < 1:
        raise SpeechUnitsError(f"random projection needs positive dims and K, got D={in_dim}, d={code_dim}, K={k}")
    gen = torch.Generator().manual_seed(int(seed))
    projection = torch.randn(in_dim, code_dim, generator=gen) * math.sqrt(2.0 / (in_dim + code_dim))
    codebook = torch.nn.functional.normalize(torch.randn(k, code_dim, generator=gen), dim=1)
    return projection, codebook


def project_and_assign(x: torch.Tensor, projection: torch.Tensor, codebook: torch.Tensor,
                       bias: torch.Tensor | None = None) -> np.ndarray:
    """``argmax_k <C_k, z / |z|>`` with ``z = xP (+ bias [d])`` for (already normalised) float32 frames
    ``x [N, D]``, in chunks of :data:`CHUNK_FRAMES`: int64 ``[N]``. ``codebook`` ``[K, d]`` rows are unit
    vectors (cosine nearest)."""
    out = np.empty(x.shape[0], dtype=np.int64)
    codewords_t = codebook.T.contiguous()
    for start in range(0, x.shape[0], CHUNK_FRAMES):
        z = x[start:start + CHUNK_FRAMES] @ projection
        z = torch.nn.functional.normalize(z if bias is None else z + bias, dim=1)
        out[start:start + z.shape[0]] = (z @ codewords_t).argmax(dim=1).numpy()
    return out


def cpu_frames(features: np.ndarray | torch.Tensor, dim: int) -> torch.Tensor:
    """Features ``[N, dim]`` as a float32 CPU tensor; SpeechUnitsError for any other shape."""
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)) if isinstance(features, np.ndarray) \
        else features.detach().to(torch.float32).cpu()
    if x.dim() != 2 or x.shape[1] != dim:
        raise SpeechUnitsError(f"features of shape {tuple(x.shape)} do not match codebook dim {dim}")
    return x


def normalisation_stats(sample: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation (floored at :data:`MIN_STD`) of frames ``[N, D]``,
    computed in float64, returned as float32 ``[D]``."""
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise SpeechUnitsError(f"normalisation statistics need at least 2 frames [N, D], got shape {x.shape}")
    mean, std = x.mean(0), np.maximum(x.std(0), MIN_STD)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


class RandomProjectionCodebook(Codebook):
    """A frozen BEST-RQ quantizer: ``centroids`` is the codebook ``C [K, d]``, :attr:`projection`
    is ``P [D, d]``; :attr:`dim` is ``D`` (the feature dimension it accepts)."""

    kind = "random-projection"

    def __init__(self, centroids: torch.Tensor | np.ndarray, meta: dict[str, Any] | None = None,
                 norm_mean: torch.Tensor | None = None, norm_std: torch.Tensor | None = None, *,
                 projection: torch.Tensor | np.ndarray | None = None):
        super().__init__(centroids, meta, norm_mean, norm_std)
        if projection is None:
            raise SpeechUnitsError("a random-projection codebook needs its projection matrix")
        p = torch.as_tensor(np.asarray(projection) if not isinstance(projection, torch.Tensor) else projection)
        p = p.detach().to(torch.float32).cpu().contiguous()
        if p.dim() != 2 or p.shape[1] != self.centroids.shape[1]:
            raise SpeechUnitsError(f"projection {tuple(p.shape)} does not map onto codewords of dim "
                                   f"{self.centroids.shape[1]}")
        if not torch.isfinite(p).all():
            raise SpeechUnitsError("random-projection matrix contains NaN or Inf")
        for name, stat in (("norm_mean", self.norm_mean), ("norm_std", self.norm_std)):
            if stat is not None and tuple(stat.shape) != (p.shape[0],):
                raise SpeechUnitsError(f"{name} has shape {tuple(stat.shape)}, expected ({p.shape[0]},)")
        if self.norm_std is not None and not bool((self.norm_std > 0).all()):
            raise SpeechUnitsError("norm_std must be positive")
        self.projection = p
        self.meta["dim"] = int(p.shape[0])
        self.meta["code_dim"] = int(p.shape[1])
        self.meta["sha256"] = rpq_sha256(self.centroids, p, self.norm_mean, self.norm_std)

    @classmethod
    def create(cls, encoder_info: Any, layer: int, k: int, *, code_dim: int = DEFAULT_CODE_DIM, seed: int = 0,
               stats: tuple[torch.Tensor, torch.Tensor] | None = None,
               training_frames: int | None = None) -> "RandomProjectionCodebook":
        """A new quantizer for ``layer`` of the encoder described by ``encoder_info``.

        Args:
            stats: ``(mean, std)`` float32 ``[D]`` to normalise features with (None: no normalisation).
            training_frames: frames the statistics were computed on (recorded).
        """
        projection, codebook = random_projection(int(encoder_info.dim), code_dim, k, seed)
        meta = {**encoder_meta(encoder_info), "layer": int(layer), "seed": int(seed), "init": INIT,
                "training_frames": training_frames}
        mean, std = stats if stats is not None else (None, None)
        return cls(codebook, meta, mean, std, projection=projection)

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                     source: str) -> "RandomProjectionCodebook":
        return cls(require_tensor(tensors, "centroids", source), meta, tensors.get("norm_mean"),
                   tensors.get("norm_std"), projection=require_tensor(tensors, "projection", source))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**super().tensors(), "projection": self.projection}

    @property
    def dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def code_dim(self) -> int:
        return int(self.projection.shape[1])

    def assign(self, features: np.ndarray | torch.Tensor, *, device: str | torch.device | None = "auto",
               precision: str = "auto") -> np.ndarray:
        """Codeword ids, int64 ``[N]``, of features ``[N, D]`` (fp32 on CPU; ``device`` and
        ``precision`` are accepted for the :class:`Codebook` interface and not used)."""
        with torch.inference_mode():
            return project_and_assign(self.normalise(cpu_frames(features, self.dim)), self.projection, self.centroids)
