"""Import foreign k-means files into a :class:`Codebook` (explicit request only).

Supported (``fmt="auto"`` picks by name and content):

* ``sklearn``: fairseq / textlesslib ``km.bin`` — a joblib pickle of sklearn ``KMeans`` or
  ``MiniBatchKMeans`` (``cluster_centers_``).
* ``speechbrain``: SpeechBrain ``*_k{K}_L{L}.pt`` — also a joblib-pickled sklearn model;
  K and the layer are read from the file name.
* ``bshall``: bshall/hubert's torch dict ``{"cluster_centers_": ..., ...}`` (``torch.load``,
  ``weights_only=True`` first).
* ``faiss``: ``centroids.npy`` — a float ``[K, D]`` array (``numpy.load`` without pickle).

Loading a pickle executes code from the file: every pickle load logs a warning, and the
result should be converted once to the safetensors format (``speechunits codebook import``).
"""
from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import Codebook, encoder_meta

log = logging.getLogger(__name__)

Format = Literal["auto", "sklearn", "speechbrain", "bshall", "faiss"]
from speechunits.quantize.options import IMPORT_FORMATS as FORMATS
PICKLE_WARNING = "%s: loading a pickle runs code stored in the file; only import files you trust"
PICKLE_FLAG = "--allow-pickle (allow_pickle=True in Python)"
_SPEECHBRAIN_NAME = re.compile(r"_k(\d+)_L(\d+)\.pt$")


def speechbrain_name_info(path: Path) -> tuple[int, int] | None:
    """``(K, layer)`` from a SpeechBrain k-means file name ``*_k{K}_L{L}.pt``, else None."""
    m = _SPEECHBRAIN_NAME.search(path.name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def detect_format(path: Path) -> str:
    """Guess the foreign format from the file name (and first bytes)."""
    name = path.name.lower()
    if name.endswith(".npy"):
        return "faiss"
    if speechbrain_name_info(path):
        return "speechbrain"
    if name.endswith((".pt", ".pth")):
        with path.open("rb") as f:
            head = f.read(4)
        # torch.save writes a zip archive; joblib/pickle files start with the pickle opcode.
        return "bshall" if head.startswith(b"PK") else "sklearn"
    return "sklearn"


def _refuse_pickle(path: Path, what: str) -> SpeechUnitsError:
    return SpeechUnitsError(
        f"{path}: {what}; loading it would run code stored in the file, so it is refused. "
        f"If you trust the file, pass {PICKLE_FLAG} and keep the converted safetensors codebook")


def _joblib_centers(path: Path, allow_pickle: bool) -> np.ndarray:
    if not allow_pickle:
        raise _refuse_pickle(path, "a joblib/pickle file (sklearn k-means, as fairseq and SpeechBrain write it)")
    try:
        import joblib
    except ImportError:  # pragma: no cover - optional extra
        raise SpeechUnitsError(f"{path}: importing sklearn k-means files needs `pip install speechunits[sklearn]`") from None
    log.warning(PICKLE_WARNING, path)
    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise SpeechUnitsError(f"{path}: cannot load joblib/pickle k-means model ({type(exc).__name__}: {exc})") from None
    centers = getattr(model, "cluster_centers_", None)
    if centers is None and isinstance(model, dict):
        centers = model.get("cluster_centers_")
    if centers is None:
        raise SpeechUnitsError(f"{path}: {type(model).__name__} has no cluster_centers_ (not a fitted k-means model)")
    return np.asarray(centers)


def _numpy_array_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` needs to rebuild plain numeric numpy arrays (no code runs)."""
    dtypes = [getattr(np.dtypes, name) for name in ("Float16DType", "Float32DType", "Float64DType")]
    return [np.ndarray, np.dtype, np._core.multiarray._reconstruct, *dtypes]


def _unsafe_globals(path: Path, exc: Exception) -> str:
    """Which classes/functions a torch file would have the unpickler call, for the refusal message."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: quote the unpickler's own reason
        text = str(exc)
        reason = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
        return " ".join(reason.split())[:300] or type(exc).__name__
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_array_globals()}
    needed = [n for n in names if n not in allowed] or names
    return "it calls " + ", ".join(needed[:6]) + (" ..." if len(needed) > 6 else "")


def _torch_dict_centers(path: Path, allow_pickle: bool) -> np.ndarray:
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The restricted unpickler met a class or function it will not call: only a full unpickle reads it.
        if not allow_pickle:
            raise _refuse_pickle(path, f"a torch file that needs a full unpickle (the safe weights_only load "
                                       f"refused it; {_unsafe_globals(path, exc)})") from None
        log.warning(PICKLE_WARNING, path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:  # noqa: BLE001 - any unpickling failure is a bad file
            raise SpeechUnitsError(f"{path}: cannot load torch k-means file ({type(exc2).__name__}: {exc2})") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file
        raise SpeechUnitsError(f"{path}: cannot load torch k-means file ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and "cluster_centers_" in obj:
        centers = obj["cluster_centers_"]
    elif hasattr(obj, "cluster_centers_"):
        centers = obj.cluster_centers_
    else:
        raise SpeechUnitsError(f"{path}: expected a dict with 'cluster_centers_' (bshall k-means), got {type(obj).__name__}")
    return centers.detach().cpu().numpy() if isinstance(centers, torch.Tensor) else np.asarray(centers)


def _npy_centers(path: Path, allow_pickle: bool) -> np.ndarray:
    del allow_pickle  # .npy centroids are never read with pickle
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise SpeechUnitsError(f"{path}: not a plain .npy float array ({exc})") from None


def read_centers(path: str | Path, fmt: Format = "auto", *, allow_pickle: bool = False) -> tuple[np.ndarray, str]:
    """Centroids ``[K, D]`` float32 and the format name from a foreign k-means file.

    ``allow_pickle``: permit a full unpickle (runs code from the file); without it a file that
    needs one raises :class:`SpeechUnitsError`.
    """
    p = Path(path)
    if not p.is_file():
        raise SpeechUnitsError(f"{p}: file not found")
    if fmt not in FORMATS:
        raise SpeechUnitsError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    kind = detect_format(p) if fmt == "auto" else fmt
    reader = {"sklearn": _joblib_centers, "speechbrain": _joblib_centers, "bshall": _torch_dict_centers,
              "faiss": _npy_centers}[kind]
    centers = reader(p, allow_pickle)
    if centers.ndim != 2 or centers.shape[0] < 1 or centers.shape[1] < 1 or not np.issubdtype(centers.dtype, np.number):
        raise SpeechUnitsError(f"{p}: cluster centres must be a numeric [K, D] matrix, got {centers.dtype} {centers.shape}")
    centers32 = centers.astype(np.float32)
    if not np.isfinite(centers32).all():
        raise SpeechUnitsError(f"{p}: cluster centres contain NaN/Inf (or overflow float32)")
    return centers32, kind


def import_codebook(path: str | Path, *, encoder_info: Any = None, layer: int | None = None,
                    fmt: Format = "auto", allow_pickle: bool = False) -> Codebook:
    """Convert a foreign k-means file into a :class:`Codebook`.

    Args:
        path: the foreign file.
        encoder_info: :class:`EncoderInfo` of the encoder the centroids belong to (fills
            encoder identity and frame timing; its dim must match the centroids).
        layer: feature layer; for SpeechBrain files it defaults to the ``L`` in the name
            and must agree with it when given.
        fmt: ``"auto"`` or one of sklearn/speechbrain/bshall/faiss.
        allow_pickle: permit loading pickles (sklearn/SpeechBrain files, torch files the safe
            load refuses); this runs code stored in the file. Off by default.
    """
    p = Path(path)
    centers, kind = read_centers(p, fmt, allow_pickle=allow_pickle)
    sb = speechbrain_name_info(p)
    if kind == "speechbrain" and sb:
        k_name, layer_name = sb
        if k_name != centers.shape[0]:
            raise SpeechUnitsError(f"{p}: file name says K={k_name} but it holds {centers.shape[0]} centres")
        if layer is not None and int(layer) != layer_name:
            raise SpeechUnitsError(f"{p}: file name says layer {layer_name}, not --layer {layer}")
        layer = layer_name
    meta: dict[str, Any] = {"layer": None if layer is None else int(layer), "init": f"imported:{kind}",
                            "training_frames": None, "inertia": None, "seed": None, "iters": None}
    if encoder_info is not None:
        if int(encoder_info.dim) != centers.shape[1]:
            raise SpeechUnitsError(f"{p}: centres have dim {centers.shape[1]} but encoder {encoder_info.name} has dim {encoder_info.dim}")
        if layer is not None and not 0 <= int(layer) <= int(encoder_info.num_layers):
            raise SpeechUnitsError(f"{p}: layer {layer} out of range 0..{encoder_info.num_layers} for {encoder_info.name}")
        meta.update(encoder_meta(encoder_info))
    log.info("imported %s k-means from %s: K=%d, D=%d", kind, p, centers.shape[0], centers.shape[1])
    return Codebook(torch.from_numpy(centers), meta)
