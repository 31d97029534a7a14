"""Hubness tests: one intra-op thread (the blocked k-NN is GEMM-bound and the machine is shared),
and the brute-force oracle of spec 10 C10.4: the full N × N squared-distance matrix, neighbours
sorted stably by (distance, index)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def brute_force_neighbours(
    points: np.ndarray,
    k: int,
    *,
    include_self: bool = False,
    queries: np.ndarray | None = None,
) -> np.ndarray:
    """k-NN indices by an O(N²) float64 reference: ‖q − x‖² from explicit differences, sorted
    stably by (distance, index); self masked by index (+inf) or forced first (include_self)."""
    points = np.asarray(points, dtype=np.float64)
    query_points = points if queries is None else np.asarray(queries, dtype=np.float64)
    differences = query_points[:, None, :] - points[None, :, :]
    distances = np.einsum("ijk,ijk->ij", differences, differences)
    if queries is None:
        np.fill_diagonal(distances, -np.inf if include_self else np.inf)
    order = np.argsort(distances, axis=1, kind="stable")
    return order[:, :k]


def brute_force_occurrence(points: np.ndarray, k: int, **kwargs: object) -> np.ndarray:
    neighbours = brute_force_neighbours(points, k, **kwargs)  # type: ignore[arg-type]
    return np.bincount(neighbours.ravel(), minlength=len(points))
