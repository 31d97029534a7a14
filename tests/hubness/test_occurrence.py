"""k-NN and k-occurrence (spec 10 §7.1): C10.3 invariants in both conventions, C10.4 exact agreement
with the brute-force oracle for every block size, deterministic tie-breaking, block-size
independence (hypothesis), cosine metric, queries, dtypes, CUDA (if present), the faiss backend and
bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexue.hubness import (
    DEFAULT_MEMORY_BUDGET,
    FaissOptions,
    default_block_size,
    k_nearest_neighbours,
    k_occurrence,
)

from .conftest import brute_force_neighbours

F64 = torch.float64


def gaussian(n: int, d: int, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# C10.4: exact equality with the O(N²) oracle


@pytest.fixture(scope="module")
def points_2000() -> torch.Tensor:
    return gaussian(2000, 16, seed=4)


@pytest.fixture(scope="module")
def oracle_2000(points_2000: torch.Tensor) -> np.ndarray:
    return brute_force_neighbours(points_2000.numpy(), 5)


@pytest.mark.parametrize("block_size", [1, 7, 256, 2000])
def test_c10_4_blocked_equals_brute_force(
    points_2000: torch.Tensor, oracle_2000: np.ndarray, block_size: int
) -> None:
    neighbours = k_nearest_neighbours(points_2000, 5, block_size=block_size)
    assert neighbours.dtype == torch.long
    assert neighbours.shape == (2000, 5)
    np.testing.assert_array_equal(neighbours.numpy(), oracle_2000)
    counts = k_occurrence(points_2000, 5, block_size=block_size)
    np.testing.assert_array_equal(counts.numpy(), np.bincount(oracle_2000.ravel(), minlength=2000))


def test_c10_4_official_convention_equals_brute_force(points_2000: torch.Tensor) -> None:
    expected = brute_force_neighbours(points_2000.numpy(), 5, include_self=True)
    got = k_nearest_neighbours(points_2000, 5, include_self=True, block_size=300)
    np.testing.assert_array_equal(got.numpy(), expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 6),
    k_fraction=st.floats(0.0, 1.0),
    block_size=st.integers(1, 50),
    include_self=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_oracle_and_block_size_independent(
    n: int, d: int, k_fraction: float, block_size: int, include_self: bool, seed: int
) -> None:
    k_max = n if include_self else n - 1
    k = 1 + int(k_fraction * (k_max - 1))
    points = gaussian(n, d, seed)
    expected = brute_force_neighbours(points.numpy(), k, include_self=include_self)
    blocked = k_nearest_neighbours(points, k, include_self=include_self, block_size=block_size)
    whole = k_nearest_neighbours(points, k, include_self=include_self, block_size=n)
    np.testing.assert_array_equal(blocked.numpy(), expected)
    np.testing.assert_array_equal(whole.numpy(), blocked.numpy())


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(3, 30),
    d=st.integers(1, 3),
    k=st.integers(1, 4),
    block_size=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_ties_broken_by_smaller_index(n: int, d: int, k: int, block_size: int, seed: int) -> None:
    """Integer points in a tiny grid: many exactly equal distances (exact in float64)."""
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    grid = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
    expected = brute_force_neighbours(grid, k)
    got = k_nearest_neighbours(torch.from_numpy(grid), k, block_size=block_size)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_ties_on_a_line_pick_smaller_indices() -> None:
    # Point 0 at the origin, points 1..4 all at distance 1: the two nearest are 1 and 2 (by index).
    points = torch.tensor([[0.0], [1.0], [-1.0], [1.0], [-1.0]], dtype=F64)
    assert k_nearest_neighbours(points, 2)[0].tolist() == [1, 2]
    # Reversed order: indices 1..4 still win in index order.
    assert k_nearest_neighbours(points.flip(0), 2)[4].tolist() == [0, 1]


# ---------------------------------------------------------------------------------------------
# C10.3: invariants, both conventions


@pytest.mark.parametrize("k", [1, 5, 29])
def test_c10_3_self_excluded_invariants(k: int) -> None:
    points = gaussian(30, 8, seed=k)
    counts = k_occurrence(points, k, block_size=7)
    assert int(counts.sum()) == 30 * k
    assert int(counts.min()) >= 0
    assert int(counts.max()) <= 29
    neighbours = k_nearest_neighbours(points, k, block_size=7)
    assert not bool((neighbours == torch.arange(30).unsqueeze(1)).any())


def test_c10_3_duplicates_never_count_themselves() -> None:
    base = gaussian(40, 5, seed=1)
    points = torch.cat([base, base, base[:10]])  # exact duplicates: distance 0 to a twin
    neighbours = k_nearest_neighbours(points, 3, block_size=13)
    own = torch.arange(points.shape[0]).unsqueeze(1)
    assert not bool((neighbours == own).any())
    # Each point's nearest neighbour is a twin at distance 0 (the smallest-index other twin).
    twins = {
        i: [j for j in range(90) if j != i and bool((points[j] == points[i]).all())]
        for i in range(90)
    }
    for i in range(90):
        assert int(neighbours[i, 0]) == min(twins[i])
    assert int(k_occurrence(points, 3).sum()) == 90 * 3


def test_duplicates_in_the_chunked_selection_path() -> None:
    """N ≥ 4·64·(k + 1) uses the two-stage (chunk minima) selection; N % 64 != 0 pads columns."""
    base = gaussian(1000, 6, seed=21)
    points = torch.cat([base, base[:700]])  # 1700 points, 700 exact duplicate pairs
    neighbours = k_nearest_neighbours(points, 3, block_size=333)
    np.testing.assert_array_equal(neighbours.numpy(), brute_force_neighbours(points.numpy(), 3))
    assert neighbours[5, 0] == 1005
    assert neighbours[1005, 0] == 5


@pytest.mark.parametrize("k", [1, 2, 5, 30])
def test_c10_3_official_convention_counts_self_once(k: int) -> None:
    points = gaussian(30, 8, seed=10 + k)
    neighbours = k_nearest_neighbours(points, k, include_self=True, block_size=4)
    own = torch.arange(30)
    assert torch.equal(neighbours[:, 0], own)  # self first ...
    assert int((neighbours == own.unsqueeze(1)).sum()) == 30  # ... and exactly once
    counts = k_occurrence(points, k, include_self=True)
    assert int(counts.sum()) == 30 * k
    assert int(counts.min()) >= 1
    if k >= 2:  # N_k^official = 1 + N_{k-1}^excl
        assert torch.equal(counts, 1 + k_occurrence(points, k - 1))


def test_official_self_occupies_a_slot_even_with_duplicates() -> None:
    points = torch.zeros(6, 3, dtype=F64)  # all identical: every distance ties with self
    neighbours = k_nearest_neighbours(points, 2, include_self=True)
    assert neighbours[:, 0].tolist() == list(range(6))
    assert neighbours[:, 1].tolist() == [1, 0, 0, 0, 0, 0]
    excluded = k_nearest_neighbours(points, 2)
    assert excluded.tolist() == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 1]]


# ---------------------------------------------------------------------------------------------
# Metric, queries, dtypes, devices


def test_cosine_equals_oracle_on_normalised_points() -> None:
    points = gaussian(300, 12, seed=2) * torch.rand(
        300, 1, generator=torch.Generator().manual_seed(3), dtype=F64
    ).add(0.1)
    unit = points / points.norm(dim=1, keepdim=True)
    expected = brute_force_neighbours(unit.numpy(), 4)
    got = k_nearest_neighbours(points, 4, metric="cosine", block_size=64)
    np.testing.assert_array_equal(got.numpy(), expected)
    # Cosine is scale-invariant per point; squared Euclidean is not.
    assert torch.equal(
        k_occurrence(points * 7.5, 4, metric="cosine"), k_occurrence(points, 4, metric="cosine")
    )


def test_queries_search_the_reference_set() -> None:
    reference = gaussian(200, 6, seed=5)
    queries = gaussian(50, 6, seed=6)
    expected = brute_force_neighbours(reference.numpy(), 3, queries=queries.numpy())
    got = k_nearest_neighbours(reference, 3, queries=queries, block_size=9)
    np.testing.assert_array_equal(got.numpy(), expected)
    counts = k_occurrence(reference, 3, queries=queries)
    assert counts.shape == (200,)
    assert int(counts.sum()) == 150


def test_float32_default_and_half_promoted() -> None:
    points64 = gaussian(500, 32, seed=7)
    points32 = points64.float()
    counts32 = k_occurrence(points32, 5)
    assert counts32.dtype == torch.long
    # float32 and float64 agree except for the rare near-ties float32 rounding can flip.
    agreement = float((counts32 == k_occurrence(points64, 5)).double().mean())
    assert agreement > 0.98
    counts16 = k_occurrence(points32.half(), 5)
    assert int(counts16.sum()) == 500 * 5


def test_numpy_input_accepted() -> None:
    points = gaussian(100, 4, seed=8)
    assert torch.equal(k_occurrence(points.numpy(), 3), k_occurrence(points, 3))


def test_default_block_size_respects_budget() -> None:
    assert default_block_size(10_000) == DEFAULT_MEMORY_BUDGET // (2 * 10_000 * 4)
    assert default_block_size(10**9) == 1
    assert default_block_size(10, element_size=8, memory_budget=1000) == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:  # pragma: no cover - no GPU in CI
    points = gaussian(3000, 64, seed=9)
    cpu = k_nearest_neighbours(points, 5, block_size=512)
    cuda = k_nearest_neighbours(points.cuda(), 5, block_size=512)
    assert cuda.is_cuda
    np.testing.assert_array_equal(cuda.cpu().numpy(), cpu.numpy())


# ---------------------------------------------------------------------------------------------
# faiss backend


def test_faiss_flat_matches_exact_occurrence() -> None:
    pytest.importorskip("faiss")
    points = gaussian(1500, 24, seed=11).float()
    exact = k_occurrence(points, 5)
    flat = k_occurrence(points, 5, backend="faiss")
    assert torch.equal(flat, exact)
    official = k_nearest_neighbours(points, 5, backend="faiss", include_self=True)
    assert torch.equal(official[:, 0], torch.arange(1500))
    assert torch.equal(
        k_occurrence(points, 5, backend="faiss", include_self=True),
        k_occurrence(points, 5, include_self=True),
    )
    cosine = k_occurrence(points, 5, metric="cosine", backend="faiss")
    assert torch.equal(cosine, k_occurrence(points, 5, metric="cosine"))


@pytest.mark.parametrize(
    "options",
    [FaissOptions(index="hnsw", ef_search=128), FaissOptions(index="ivf", nlist=20, nprobe=20)],
    ids=["hnsw", "ivf-all-cells"],
)
def test_faiss_approximate_indexes_high_recall(options: FaissOptions) -> None:
    pytest.importorskip("faiss")
    points = gaussian(2000, 16, seed=12).float()
    exact = k_nearest_neighbours(points, 5)
    approximate = k_nearest_neighbours(points, 5, backend="faiss", faiss_options=options)
    assert not bool((approximate == torch.arange(2000).unsqueeze(1)).any())  # self removed
    recall = np.mean(
        [
            len(set(a) & set(b)) / 5
            for a, b in zip(approximate.tolist(), exact.tolist(), strict=True)
        ]
    )
    assert recall > 0.95
    assert int(k_occurrence(points, 5, backend="faiss", faiss_options=options).sum()) == 2000 * 5


def test_faiss_options_validated() -> None:
    with pytest.raises(ValueError, match="index"):
        FaissOptions(index="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nprobe"):
        FaissOptions(nprobe=0)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(("k", "include_self"), [(10, False), (11, True), (0, False)])
def test_bad_k(k: int, include_self: bool) -> None:
    points = gaussian(10, 3, seed=0)
    with pytest.raises(ValueError, match="k"):
        k_occurrence(points, k, include_self=include_self)


def test_largest_valid_k() -> None:
    points = gaussian(10, 3, seed=0)
    assert torch.equal(k_occurrence(points, 9), torch.full((10,), 9))
    assert torch.equal(k_occurrence(points, 10, include_self=True), torch.full((10,), 10))


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (torch.empty(0, 4), "empty"),
        (torch.empty(5, 0), "empty"),
        (torch.randn(5), "shape"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0]]), "NaN"),
        (torch.tensor([[0.0, 1.0], [float("inf"), 0.0], [1.0, 1.0]]), "row 1"),
    ],
)
def test_bad_points(points: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        k_occurrence(points, 1)


def test_bad_types_and_options() -> None:
    with pytest.raises(TypeError, match="floating"):
        k_occurrence(torch.ones(5, 2, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="Tensor"):
        k_occurrence([[0.0, 1.0]], 1)  # type: ignore[arg-type]
    points = gaussian(10, 3, seed=0)
    with pytest.raises(ValueError, match="metric"):
        k_occurrence(points, 2, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend"):
        k_occurrence(points, 2, backend="annoy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_size"):
        k_occurrence(points, 2, block_size=0)
    with pytest.raises(ValueError, match="dimension"):
        k_occurrence(points, 2, queries=gaussian(4, 5, seed=1))
    with pytest.raises(ValueError, match="include_self"):
        k_occurrence(points, 2, queries=gaussian(4, 3, seed=1), include_self=True)


def test_cosine_rejects_zero_rows() -> None:
    points = gaussian(10, 3, seed=0)
    points[4] = 0
    with pytest.raises(ValueError, match="all-zero"):
        k_occurrence(points, 2, metric="cosine")
    assert int(k_occurrence(points, 2).sum()) == 20  # fine for the Euclidean metric
