"""k-means and nearest-centroid assignment, checked against sklearn and hand-built cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances_argmin

from speechunits.errors import SpeechUnitsError
from speechunits.quantize.nearest import assign, bf16_supported, prepare_centroids
from speechunits.quantize.kmeans import fit_kmeans, kmeans_plus_plus, lloyd


def blobs(n: int, k: int, dim: int, spread: float, seed: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)).astype(np.float32) * 4.0 + offset
    labels = rng.integers(0, k, n)
    x = centres[labels] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return x.astype(np.float32), centres, labels


# --------------------------------------------------------------------------------- assign

@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
@pytest.mark.parametrize("data", ["gauss", "blobs", "offset"])
def test_assign_equals_sklearn(precision: str, data: str) -> None:
    rng = np.random.default_rng(1)
    if data == "gauss":
        x = rng.standard_normal((3000, 64)).astype(np.float32)
        c = rng.standard_normal((50, 64)).astype(np.float32)
    else:  # clustered, centroids drawn from the data (many near ties); "offset": far from the origin like MFCC
        x, _, _ = blobs(3000, 40, 64, 1.0, 2, offset=50.0 if data == "offset" else 0.0)
        c = x[rng.choice(len(x), 50, replace=False)]
    expected = pairwise_distances_argmin(x, c)
    got = assign(x, torch.from_numpy(c), precision=precision, device="cpu", chunk_size=701)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_assign_near_ties_are_rechecked_in_fp32() -> None:
    """Frames almost exactly between two centroids: bf16 alone cannot tell, the re-check can."""
    rng = np.random.default_rng(3)
    dim = 128
    a = rng.standard_normal(dim).astype(np.float32) * 10
    step = rng.standard_normal(dim).astype(np.float32)
    b = a + step
    others = rng.standard_normal((20, dim)).astype(np.float32) * 10 + 100
    c = np.vstack([a, b, others]).astype(np.float32)
    mid = (a + b) / 2
    side = np.where(rng.random(400) < 0.5, -1.0, 1.0).astype(np.float32)
    x = (mid + (side * rng.uniform(1e-3, 1e-2, 400)).astype(np.float32)[:, None] * step).astype(np.float32)
    expected = pairwise_distances_argmin(x, c)
    assert set(expected) == {0, 1}
    got = assign(x, torch.from_numpy(c), precision="bf16", device="cpu")
    np.testing.assert_array_equal(got, expected)


def test_assign_bf16_matches_float64_on_ssl_like_features() -> None:
    """Large norms next to small cluster gaps (trained SSL layers): the bf16 bound must
    send every doubtful row to the fp32 re-check, so labels equal a float64 search."""
    rng = np.random.default_rng(7)
    dim, k = 256, 300
    base = rng.standard_normal(dim) * 30  # shared offset the centring removes
    centres = base + rng.standard_normal((k, dim)) * 1.5
    x = centres[rng.integers(0, k, 20000)] + rng.standard_normal((20000, dim)) * 1.2
    # A tenth of the rows sit almost half-way between two centroids.
    i, j = rng.integers(0, k, 2000), rng.integers(0, k, 2000)
    t = 0.5 + rng.uniform(-5e-4, 5e-4, 2000)[:, None]
    x[:2000] = centres[i] * t + centres[j] * (1 - t) + rng.standard_normal((2000, dim)) * 0.05
    x = x.astype(np.float32)
    c = centres.astype(np.float32)
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    dist = (x64 * x64).sum(1)[:, None] - 2 * x64 @ c64.T + (c64 * c64).sum(1)[None]
    expected = dist.argmin(1)
    got = assign(x, torch.from_numpy(c), precision="bf16", device="cpu", chunk_size=3001)
    np.testing.assert_array_equal(got, expected)


def test_assign_distances_are_exact_squared_l2() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 32)).astype(np.float32) + 5
    c = rng.standard_normal((10, 32)).astype(np.float32) + 5
    for precision in ("fp32", "bf16"):
        labels, dist = assign(x, torch.from_numpy(c), precision=precision, device="cpu", return_distances=True)
        expected = ((x.astype(np.float64) - c[labels].astype(np.float64)) ** 2).sum(1)
        np.testing.assert_allclose(dist, expected, rtol=1e-4, atol=1e-4)


def test_assign_prepared_centroids_and_empty_input() -> None:
    c = torch.eye(3)
    pc = prepare_centroids(c, torch.device("cpu"), "fp32")
    np.testing.assert_array_equal(assign(np.array([[0.9, 0, 0], [0, 0, 2]], np.float32), pc), [0, 2])
    assert assign(np.zeros((0, 3), np.float32), pc).shape == (0,)


def test_assign_bad_input() -> None:
    c = torch.zeros(4, 8)
    with pytest.raises(SpeechUnitsError, match="dim 5 does not match codebook dim 8"):
        assign(np.zeros((3, 5), np.float32), c)
    with pytest.raises(SpeechUnitsError, match="2-D"):
        assign(np.zeros(8, np.float32), c)
    with pytest.raises(SpeechUnitsError, match="non-empty"):
        assign(np.zeros((3, 8), np.float32), torch.zeros(0, 8))


@pytest.mark.parametrize("capability, cpuinfo, expected", [
    ("AVX512", "flags : fpu avx512f avx512_bf16", True),
    ("AMX", "flags : fpu amx_bf16 amx_tile", True),
    ("AVX512", "flags : fpu avx512f", False),  # AVX-512 without its bf16 instructions
    ("AVX2", "flags : fpu avx2 avx512_bf16", False),  # torch's kernels would not use them
])
def test_bf16_detection_reads_capability_and_cpu_flags(monkeypatch, capability, cpuinfo, expected) -> None:
    import io

    import speechunits.quantize.nearest as nearest_module

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(nearest_module, "open", lambda *a, **k: io.StringIO(cpuinfo), raising=False)
    assert bf16_supported(torch.device("cpu")) is expected
    assert bf16_supported(torch.device("meta")) is False


# --------------------------------------------------------------------------------- k-means

def test_lloyd_matches_sklearn_from_the_same_init() -> None:
    x, _, _ = blobs(2000, 12, 16, 2.5, 5)
    init = x[:12].copy()
    ours = lloyd(torch.from_numpy(x), torch.from_numpy(init), iters=100, tol=0.0, precision="fp32", device="cpu")
    ref = KMeans(12, init=init, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.centroids.numpy(), ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert ours.inertia == pytest.approx(ref.inertia_ / len(x), rel=1e-5)
    np.testing.assert_array_equal(assign(x, ours.centroids, precision="fp32"), ref.labels_)


def test_inertia_history_is_monotone_and_final_inertia_exact() -> None:
    x, _, _ = blobs(3000, 20, 24, 3.0, 6, offset=30.0)
    result = fit_kmeans(x, 20, iters=30, init="random", seed=0, device="cpu", tol=0.0, precision="fp32")
    hist = np.array(result.history)
    assert len(hist) == result.iterations >= 2
    assert np.all(np.diff(hist) <= 1e-6 * hist[:-1])
    labels = pairwise_distances_argmin(x, result.centroids.numpy())
    exact = ((x.astype(np.float64) - result.centroids.numpy()[labels]) ** 2).sum(1).mean()
    assert result.inertia == pytest.approx(exact, rel=1e-5)
    assert int(result.counts.sum()) == len(x)
    fast = fit_kmeans(x, 20, iters=30, init="random", seed=0, device="cpu", precision="bf16")
    labels = pairwise_distances_argmin(x, fast.centroids.numpy())
    exact = ((x.astype(np.float64) - fast.centroids.numpy()[labels]) ** 2).sum(1).mean()
    # Inertia of the returned centroids with the last labels: at least the optimum for
    # these centroids, and very close to it.
    assert exact * (1 - 1e-5) <= fast.inertia <= exact * (1 + 1e-3)
    assert fast.inertia == pytest.approx(result.inertia, rel=1e-2)


def test_kmeanspp_seeds_one_per_well_separated_blob() -> None:
    x, centres, truth = blobs(4000, 25, 32, 0.1, 7)
    gen = torch.Generator().manual_seed(0)
    xt = torch.from_numpy(x)
    mean = xt.mean(0)
    seeds = kmeans_plus_plus(xt - mean, 25, gen=gen) + mean
    blob_of_seed = pairwise_distances_argmin(seeds.numpy(), centres)
    assert len(set(blob_of_seed.tolist())) == 25
    result = fit_kmeans(x, 25, iters=10, seed=0, device="cpu")
    optimum = ((x - centres[truth]) ** 2).sum(1).mean()
    assert result.inertia <= optimum * 1.01


def test_kmeanspp_beats_random_init_on_blobs() -> None:
    x, _, _ = blobs(4000, 40, 16, 0.5, 8)
    pp = fit_kmeans(x, 40, iters=0, init="kmeans++", seed=1, device="cpu")
    rnd = fit_kmeans(x, 40, iters=0, init="random", seed=1, device="cpu")
    assert pp.inertia < rnd.inertia


def test_fit_is_deterministic_for_the_seed() -> None:
    x, _, _ = blobs(3000, 10, 8, 3.0, 9)
    a = fit_kmeans(x, 10, iters=5, seed=3, device="cpu")
    b = fit_kmeans(torch.from_numpy(x.copy()), 10, iters=5, seed=3, device="cpu")
    c = fit_kmeans(x, 10, iters=5, seed=4, device="cpu")
    assert torch.equal(a.centroids, b.centroids) and a.history == b.history
    assert not torch.equal(a.centroids, c.centroids)


def test_empty_clusters_are_repaired() -> None:
    """Three distinct points, each repeated: duplicate init centroids leave clusters empty."""
    points = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.repeat(points, 50, axis=0)
    init = np.array([[0, 0], [0, 0], [0, 0]], dtype=np.float32)  # two of three clusters start empty
    result = lloyd(torch.from_numpy(x), torch.from_numpy(init), iters=10, tol=0.0, precision="fp32", device="cpu")
    found = result.centroids.numpy()[np.lexsort(result.centroids.numpy().T)]
    np.testing.assert_allclose(found, points[np.lexsort(points.T)], atol=1e-4)
    assert result.inertia == pytest.approx(0.0, abs=1e-4)  # fp32 rounding of ~|x|^2 = 33
    assert result.counts.tolist() == [50, 50, 50]


def test_k_equals_n_and_alias_init() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    result = fit_kmeans(x, 6, iters=5, init="k-means++", seed=0, device="cpu")
    assert result.inertia == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(np.sort(result.centroids[:, 0].numpy()), x[:, 0], atol=1e-5)


def test_fit_bad_input() -> None:
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(SpeechUnitsError, match="K=6 clusters need at least 6 frames, got 5"):
        fit_kmeans(x, 6)
    with pytest.raises(SpeechUnitsError, match="init"):
        fit_kmeans(x, 2, init="forgy")  # type: ignore[arg-type]
    with pytest.raises(SpeechUnitsError, match="k must be >= 1"):
        fit_kmeans(x, 0)
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(SpeechUnitsError, match="NaN"):
        fit_kmeans(bad, 2)


def test_cuda_bf16_matmuls_are_told_to_accumulate_in_fp32() -> None:
    """The bf16 error bound assumes fp32 accumulation; cuBLAS may reduce in bf16 unless told not to."""
    from speechunits.quantize.nearest import _fp32_accumulation

    flags = torch.backends.cuda.matmul
    before = flags.allow_bf16_reduced_precision_reduction
    with _fp32_accumulation(torch.device("cuda")):
        assert flags.allow_bf16_reduced_precision_reduction is False
    assert flags.allow_bf16_reduced_precision_reduction == before
    with _fp32_accumulation(torch.device("cpu")):
        assert flags.allow_bf16_reduced_precision_reduction == before
