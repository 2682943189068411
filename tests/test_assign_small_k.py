"""Assignment with one or two centroids, for every precision, against a numpy argmin."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from speechunits.quantize.nearest import assign, prepare_centroids


def _numpy_nearest(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((x[:, None, :].astype(np.float64) - c[None, :, :].astype(np.float64)) ** 2).sum(-1)
    return d.argmin(1), d.min(1)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
@pytest.mark.parametrize("k", [1, 2])
def test_one_and_two_centroids(precision: str, k: int) -> None:
    rng = np.random.default_rng(k)
    x = (rng.standard_normal((3000, 24)) * 2 + 5).astype(np.float32)  # off the origin, as SSL features are
    c = (rng.standard_normal((k, 24)) + 5).astype(np.float32)
    expected, expected_d = _numpy_nearest(x, c)
    labels, dist = assign(x, torch.from_numpy(c), precision=precision, device="cpu", chunk_size=1000,
                          return_distances=True)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_allclose(dist, expected_d, rtol=1e-5)
    if k == 1:
        assert (labels == 0).all()
    # Prepared once and reused; labels without distances take the no-exact path.
    prepared = prepare_centroids(torch.from_numpy(c), torch.device("cpu"), precision)  # type: ignore[arg-type]
    np.testing.assert_array_equal(assign(x, prepared), expected)
