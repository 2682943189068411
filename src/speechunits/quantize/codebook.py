"""The portable codebook: ``codebook.safetensors`` + ``codebook.json``, no pickle.

``CODEBOOK/codebook.safetensors`` holds ``centroids`` (float32 ``[K, D]``) and, when the
features were normalised before k-means, the normalisation tensors (``norm_mean``,
``norm_std``, float32 ``[D]``). ``CODEBOOK/codebook.json`` holds the metadata keys of
:data:`META_KEYS`; ``sha256`` is the hex SHA-256 of the centroid bytes (C order,
little-endian float32), checked on every load.

``kind`` says which quantiser the directory holds (absent in files written before it existed:
``"kmeans"``). :meth:`Codebook.load` dispatches on it (:data:`CODEBOOK_KINDS`), so every
consumer of a codebook directory reads the other kinds (random projection, dMel) unchanged.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechunits import __version__
from speechunits.errors import SpeechUnitsError
from speechunits.files import read_json_object, read_safetensors
from speechunits.device import resolve_device
from speechunits.quantize.nearest import Precision, PreparedCentroids, assign, prepare_centroids

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CENTROIDS_FILE = "codebook.safetensors"
META_FILE = "codebook.json"
META_KEYS = (
    "format_version", "encoder", "encoder_identity", "layer", "k", "dim", "sample_rate", "frame_rate",
    "hop_length", "receptive_field", "frame_offset_s", "normalisation", "training_frames", "inertia",
    "seed", "init", "iters", "sha256", "speechunits_version", "kind",
)
#: ``kind`` of codebook.json -> ``"module:Class"`` of the :class:`Codebook` subclass that reads it.
CODEBOOK_KINDS = {
    "kmeans": "speechunits.quantize.codebook:Codebook",
    "random-projection": "speechunits.quantize.random_projection:RandomProjectionCodebook",
    "dmel": "speechunits.quantize.dmel:DMel",
    "prediction-head": "speechunits.quantize.prediction_head:PredictionHeadCodebook",
}


def codebook_class(kind: str, source: str = "codebook") -> type["Codebook"]:
    """The :class:`Codebook` class for a codebook.json ``kind`` (SpeechUnitsError if unknown)."""
    import importlib

    target = CODEBOOK_KINDS.get(kind)
    if target is None:
        raise SpeechUnitsError(f"{source}: unknown codebook kind {kind!r} (known: {', '.join(CODEBOOK_KINDS)})")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def centroid_sha256(centroids: torch.Tensor | np.ndarray) -> str:
    """Hex SHA-256 of the centroids as C-ordered little-endian float32 bytes."""
    arr = centroids.detach().cpu().numpy() if isinstance(centroids, torch.Tensor) else np.asarray(centroids)
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<f4").tobytes()).hexdigest()


def standardised_rows(table: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A centroid table ``[K, D]`` with every dimension shifted to mean 0 and scaled to standard
    deviation 1 over the K rows (population std; a constant dimension becomes 0), float32: the
    starting point of unit embedding tables initialised from centroids (probes, vocoders)."""
    values = torch.as_tensor(table, dtype=torch.float32)
    if values.ndim != 2:
        raise SpeechUnitsError(f"a centroid table must be [K, D], got shape {tuple(values.shape)}")
    return (values - values.mean(0)) / values.std(0, unbiased=False).clamp_min(1e-6)


def encoder_meta(info: Any) -> dict[str, Any]:
    """Codebook metadata fields taken from an :class:`~speechunits.encoders.base.EncoderInfo`."""
    return {
        "encoder": info.name,
        "encoder_identity": info.identity,
        "sample_rate": int(info.sample_rate),
        "frame_rate": float(info.frame_rate),
        "hop_length": int(info.hop_length),
        "receptive_field": int(info.receptive_field),
        "frame_offset_s": info.frame_offset_s,
    }


class Codebook:
    """k-means centroids with the identity of the features they quantise.

    Attributes:
        centroids: float32 ``[K, D]`` (CPU).
        meta: the codebook.json dict (:data:`META_KEYS`).
        norm_mean / norm_std: optional float32 ``[D]``: features are mapped to
            ``(x - norm_mean) / norm_std`` before assignment.
        kind: codebook.json ``kind`` of the class (subclasses: other quantisers).
        streams: unit streams per frame (1; dMel: one per mel channel).
    """

    kind = "kmeans"
    streams = 1

    def __init__(self, centroids: torch.Tensor | np.ndarray, meta: dict[str, Any] | None = None,
                 norm_mean: torch.Tensor | None = None, norm_std: torch.Tensor | None = None):
        c = torch.as_tensor(np.asarray(centroids) if not isinstance(centroids, torch.Tensor) else centroids)
        c = c.detach().to(torch.float32).cpu().contiguous()
        if c.dim() != 2 or c.shape[0] < 1 or c.shape[1] < 1:
            raise SpeechUnitsError(f"codebook centroids must be a non-empty [K, D] matrix, got {tuple(c.shape)}")
        if not torch.isfinite(c).all():
            raise SpeechUnitsError("codebook centroids contain NaN or Inf")
        self.centroids = c
        self.norm_mean = None if norm_mean is None else torch.as_tensor(norm_mean, dtype=torch.float32).cpu()
        self.norm_std = None if norm_std is None else torch.as_tensor(norm_std, dtype=torch.float32).cpu()
        base: dict[str, Any] = {key: None for key in META_KEYS}
        base.update(meta or {})
        base["format_version"] = FORMAT_VERSION
        base["k"], base["dim"] = int(c.shape[0]), int(c.shape[1])
        base["sha256"] = centroid_sha256(c)
        base["normalisation"] = base.get("normalisation") or ("meanstd" if self.norm_mean is not None else "none")
        base["speechunits_version"] = base.get("speechunits_version") or __version__
        base["kind"] = self.kind
        self.meta = base
        self._prepared: dict[tuple[str, str], PreparedCentroids] = {}

    @classmethod
    def from_fit(cls, result: Any, encoder_info: Any, layer: int | None, *, training_frames: int | None = None,
                 seed: int | None = None, iters: int | None = None, init: str | None = None) -> "Codebook":
        """A codebook from a :class:`~speechunits.quantize.kmeans.KMeansResult` and the encoder it quantises."""
        meta: dict[str, Any] = {
            "layer": None if layer is None else int(layer),
            "training_frames": None if training_frames is None else int(training_frames),
            "inertia": float(result.inertia),
            "seed": seed,
            "init": None if init is None else ("kmeans++" if init == "k-means++" else init),
            "iters": iters,
        }
        if encoder_info is not None:
            meta.update(encoder_meta(encoder_info))
            if int(encoder_info.dim) != int(result.centroids.shape[1]):
                raise SpeechUnitsError(
                    f"centroid dim {result.centroids.shape[1]} does not match encoder {encoder_info.name} dim {encoder_info.dim}"
                )
        return cls(result.centroids, meta)

    #: Alias of :meth:`from_fit`.
    from_kmeans = from_fit

    # -- identity -------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def layer(self) -> int | None:
        return self.meta.get("layer")

    @property
    def encoder_name(self) -> str | None:
        return self.meta.get("encoder")

    @property
    def encoder_identity(self) -> str | None:
        return self.meta.get("encoder_identity")

    @property
    def frame_rate(self) -> float | None:
        return self.meta.get("frame_rate")

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]

    def check_compatible(self, encoder_info: Any, layer: int | None = None, source: str = "codebook") -> None:
        """Refuse to quantise features of another encoder/layer/dim (SpeechUnitsError).

        Args:
            encoder_info: :class:`EncoderInfo` of the encoder producing the features.
            layer: the layer the caller will extract (None: the codebook's own layer).
            source: name used in error messages (e.g. the codebook path).
        """
        if int(encoder_info.dim) != self.dim:
            raise SpeechUnitsError(
                f"{source}: codebook dim {self.dim} does not match encoder {encoder_info.name} dim {encoder_info.dim}"
            )
        ident = self.encoder_identity
        if ident and encoder_info.identity and ident != encoder_info.identity:
            raise SpeechUnitsError(
                f"{source}: codebook was trained on encoder {self.encoder_name} (identity {ident}), "
                f"not {encoder_info.name} (identity {encoder_info.identity})"
            )
        if layer is not None and self.layer is not None and int(layer) != int(self.layer):
            raise SpeechUnitsError(f"{source}: codebook was trained on layer {self.layer}, not layer {layer}")

    # -- assignment -----------------------------------------------------------------------
    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the stored normalisation (identity when there is none). ``[N, D]``."""
        if self.norm_mean is None:
            return features
        x = features.float()
        x = x - self.norm_mean.to(x.device)
        if self.norm_std is not None:
            x = x / self.norm_std.to(x.device)
        return x

    def prepared(self, device: str | torch.device | None = "auto", precision: Precision = "auto") -> PreparedCentroids:
        """Centroids laid out for :func:`~speechunits.quantize.nearest.assign` (cached per device)."""
        dev = resolve_device(device)
        key = (str(dev), precision)
        if key not in self._prepared:
            self._prepared[key] = prepare_centroids(self.centroids, dev, precision)
        return self._prepared[key]

    def assign(self, features: np.ndarray | torch.Tensor, *, device: str | torch.device | None = "auto",
               precision: Precision = "auto") -> np.ndarray:
        """Nearest-centroid ids, int64 ``[N]``, for features ``[N, D]`` (exact fp32 labels)."""
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)) if isinstance(features, np.ndarray) else features
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise SpeechUnitsError(f"features of shape {tuple(x.shape)} do not match codebook dim {self.dim}")
        return assign(self.normalise(x), self.prepared(device, precision))

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path/codebook.safetensors`` and ``path/codebook.json`` (atomically, each)."""
        from safetensors.torch import save_file

        out = Path(path)
        if out.exists() and not out.is_dir():
            raise SpeechUnitsError(f"{out}: exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        tensors = self.tensors()
        tmp = out / (CENTROIDS_FILE + ".tmp")
        # One metadata key only: safetensors writes metadata in hash order, and saves must be byte-identical.
        save_file(tensors, str(tmp), metadata={"format": "speechunits-codebook"})
        os.replace(tmp, out / CENTROIDS_FILE)
        tmp_meta = out / (META_FILE + ".tmp")
        tmp_meta.write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp_meta, out / META_FILE)
        return out

    @classmethod
    def load(cls, path: str | Path) -> "Codebook":
        """Read a codebook directory of any kind (dispatching on ``kind``, see :data:`CODEBOOK_KINDS`);
        verifies the file structure and the content sha256."""
        root = Path(path)
        if root.is_file() and root.name in (CENTROIDS_FILE, META_FILE):
            root = root.parent
        tensors_path, meta_path = root / CENTROIDS_FILE, root / META_FILE
        if not root.is_dir():
            raise SpeechUnitsError(f"{root}: codebook directory not found")
        for p in (tensors_path, meta_path):
            if not p.is_file():
                raise SpeechUnitsError(f"{p}: missing (a codebook dir holds {CENTROIDS_FILE} and {META_FILE})")
        meta = read_json_object(meta_path)
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise SpeechUnitsError(f"{meta_path}: unsupported codebook format_version {version!r} (expected {FORMAT_VERSION})")
        kind = meta.get("kind") or "kmeans"
        if not isinstance(kind, str):
            raise SpeechUnitsError(f"{meta_path}: 'kind' must be a string, got {kind!r}")
        target = codebook_class(kind, str(meta_path))
        tensors = read_safetensors(tensors_path)
        codebook = target.from_tensors(tensors, meta, str(tensors_path))
        if codebook.sha256 != meta.get("sha256"):
            raise SpeechUnitsError(
                f"{tensors_path}: content sha256 {codebook.sha256[:12]}... does not match {meta_path} "
                f"({str(meta.get('sha256'))[:12]}...)"
            )
        if (meta.get("k"), meta.get("dim")) != (codebook.k, codebook.dim):
            raise SpeechUnitsError(f"{meta_path}: k/dim {meta.get('k')}/{meta.get('dim')} disagree with "
                                   f"{tensors_path} ({codebook.k}/{codebook.dim})")
        return codebook

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str) -> "Codebook":
        """Build from the tensors of ``codebook.safetensors`` and the JSON (used by :meth:`load`;
        subclasses read their own tensors). Raises SpeechUnitsError on a missing or malformed tensor."""
        centroids = require_tensor(tensors, "centroids", source)
        return cls(centroids, meta, tensors.get("norm_mean"), tensors.get("norm_std"))

    def tensors(self) -> dict[str, torch.Tensor]:
        """What :meth:`save` writes to ``codebook.safetensors``."""
        tensors = {"centroids": self.centroids}
        if self.norm_mean is not None:
            tensors["norm_mean"] = self.norm_mean.contiguous()
        if self.norm_std is not None:
            tensors["norm_std"] = self.norm_std.contiguous()
        return tensors

    def info_text(self) -> str:
        """Human-readable summary (``speechunits codebook info``)."""
        keys = [k for k in META_KEYS if k not in ("format_version",)]
        keys += sorted(k for k in self.meta if k not in META_KEYS)
        width = max(len(k) for k in keys)
        return "\n".join(f"{k:<{width}}  {self.meta.get(k)}" for k in keys)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, dim={self.dim}, encoder={self.encoder_name!r}, layer={self.layer})"


def require_tensor(tensors: dict[str, torch.Tensor], name: str, source: str, ndim: int = 2) -> torch.Tensor:
    """``tensors[name]``, which must be a float32 tensor of ``ndim`` dimensions (SpeechUnitsError)."""
    if name not in tensors:
        raise SpeechUnitsError(f"{source}: no {name!r} tensor")
    tensor = tensors[name]
    if tensor.dtype != torch.float32 or tensor.dim() != ndim:
        raise SpeechUnitsError(f"{source}: {name!r} must be float32 with {ndim} dimensions, "
                               f"got {tensor.dtype} {tuple(tensor.shape)}")
    return tensor
