"""Improved precision and recall (Kynkäänniemi et al., 2019) with k-NN manifolds, k = 3.

Each set's manifold is the union of balls around its points with radius the distance to the point's
k-th nearest neighbour in the same set (self excluded). Precision: fraction of generated samples
inside
the real manifold; recall: fraction of real samples inside the generated manifold. Computed in
blocks
with torch (memory O(block · N)), float64.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ._validation import as_float64_matrix

__all__ = ["PrecisionRecall", "precision_recall"]


@dataclasses.dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float


def _kth_neighbour_radii(points: torch.Tensor, k: int, block: int) -> torch.Tensor:
    radii = torch.empty(points.shape[0], dtype=points.dtype)
    for start in range(0, points.shape[0], block):
        distances = torch.cdist(points[start : start + block], points)
        # k + 1 smallest: the first is the point itself (distance 0).
        radii[start : start + block] = distances.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _coverage(
    queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int
) -> float:
    inside = 0
    for start in range(0, queries.shape[0], block):
        distances = torch.cdist(queries[start : start + block], centres)
        inside += int((distances <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(
    real_features: np.ndarray | torch.Tensor,
    fake_features: np.ndarray | torch.Tensor,
    *,
    k: int = 3,
    block_size: int = 2048,
) -> PrecisionRecall:
    """Improved precision/recall of ``fake_features`` against ``real_features`` (both ``(N,
    D)``)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    real = torch.from_numpy(as_float64_matrix(real_features, "real_features", min_rows=k + 1))
    fake = torch.from_numpy(as_float64_matrix(fake_features, "fake_features", min_rows=k + 1))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    real_radii = _kth_neighbour_radii(real, k, block_size)
    fake_radii = _kth_neighbour_radii(fake, k, block_size)
    return PrecisionRecall(
        precision=_coverage(fake, real, real_radii, block_size),
        recall=_coverage(real, fake, fake_radii, block_size),
    )
