"""Quantisation: k-means fitting, the portable Codebook, assignment, foreign formats.

``Codebook`` (safetensors + JSON, no pickle), ``fit_kmeans`` (greedy k-means++ / random
init + exact Lloyd), ``assign`` (nearest centroid, bf16 matmuls with fp32 re-check),
``import_codebook`` / ``export_codebook`` (fairseq km.bin, SpeechBrain, bshall, faiss).
"""
from __future__ import annotations

from speechunits._lazy import lazy_getattr

# Imported lazily: torch loads only when one of these is used, so the CLI parser stays fast.
_LAZY = {
    "assign": "speechunits.quantize.nearest",
    "Codebook": "speechunits.quantize.codebook",
    "KMeansResult": "speechunits.quantize.kmeans",
    "fit_kmeans": "speechunits.quantize.kmeans",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
