"""Export a :class:`Codebook` to foreign formats (fairseq's sklearn ``km.bin``, faiss ``.npy``)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.codebook import Codebook

log = logging.getLogger(__name__)

from speechunits.quantize.options import EXPORT_FORMATS


def to_sklearn(codebook: Codebook):
    """A fitted ``sklearn.cluster.KMeans`` whose ``cluster_centers_`` are the centroids.

    Fitted on the centroids themselves, initialised at the centroids, for one iteration:
    every centroid is its own cluster, so the centres stay bit-identical and every
    attribute ``predict`` needs is set by sklearn itself.
    """
    try:
        from sklearn.cluster import KMeans
    except ImportError:  # pragma: no cover - optional extra
        raise SpeechUnitsError("exporting to sklearn needs `pip install speechunits[sklearn]`") from None
    if codebook.norm_mean is not None:
        raise SpeechUnitsError("this codebook normalises features before assignment; sklearn's km.bin cannot store that")
    c = codebook.centroids.numpy().astype(np.float32)
    if len(np.unique(c, axis=0)) != len(c):
        raise SpeechUnitsError("codebook has duplicate centroids; cannot build an equivalent sklearn KMeans")
    km = KMeans(n_clusters=len(c), init=c, n_init=1, max_iter=1, tol=0.0, random_state=0)
    km.fit(c)
    km.cluster_centers_ = c.copy()
    return km


def export_codebook(codebook: Codebook, out: str | Path, fmt: str = "sklearn") -> Path:
    """Write ``codebook`` as ``fmt`` (``sklearn``: joblib km.bin; ``faiss``: centroids.npy)."""
    path = Path(out)
    if fmt not in EXPORT_FORMATS:
        raise SpeechUnitsError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "faiss":
        np.save(path, codebook.centroids.numpy().astype(np.float32), allow_pickle=False)
    else:
        import joblib

        joblib.dump(to_sklearn(codebook), path)
    log.info("exported %s (K=%d, D=%d) to %s", fmt, codebook.k, codebook.dim, path)
    return path
