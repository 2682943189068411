"""Quantisation: k-means fitting, the portable Codebook, assignment, foreign formats.

``Codebook`` (safetensors + JSON, no pickle), ``fit_kmeans`` (greedy k-means++ / random
init + exact Lloyd), ``assign`` (nearest centroid, bf16 matmuls with fp32 re-check),
``import_codebook`` / ``export_codebook`` (fairseq km.bin, SpeechBrain, bshall, faiss).
"""
from speechunits.quantize.assign import assign
from speechunits.quantize.codebook import Codebook
from speechunits.quantize.kmeans import KMeansResult, fit_kmeans

__all__ = ["Codebook", "KMeansResult", "assign", "fit_kmeans"]
