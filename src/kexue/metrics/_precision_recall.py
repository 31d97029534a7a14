"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019) with k-NN manifolds, k = 3
(spec 10 §12, spec 11 §6 step 6).

The manifold of a feature set is the union of closed balls around its points, each with radius the
distance from the point to its k-th nearest neighbour within the same set (the point itself
excluded). Precision is the fraction of generated samples inside the real manifold; recall the
fraction of real samples inside the generated manifold.

Distances are computed with torch in float64, one block of ``batch_size`` query rows at a time, so
memory is ``O(batch_size · N)`` and never ``N × N`` for ``N > batch_size``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ._validation import as_float64_matrix, check_int

__all__ = ["PrecisionRecall", "precision_recall"]


@dataclasses.dataclass(frozen=True)
class PrecisionRecall:
    """Result of :func:`precision_recall`.

    Attributes:
        precision: fraction of generated samples inside the real k-NN manifold (quality).
        recall: fraction of real samples inside the generated k-NN manifold (coverage).
    """

    precision: float
    recall: float


def _kth_neighbour_radii(points: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest *other* point of the same set."""
    radii = torch.empty(points.shape[0], dtype=points.dtype)
    for start in range(0, points.shape[0], batch_size):
        stop = min(start + batch_size, points.shape[0])
        distances = torch.cdist(points[start:stop], points)
        # Exclude the point itself by index (not by "distance 0"), so duplicates count as
        # neighbours at distance 0, as in the reference definition.
        rows = torch.arange(stop - start)
        distances[rows, rows + start] = torch.inf
        radii[start:stop] = distances.topk(k, dim=1, largest=False).values[:, k - 1]
    return radii


def _fraction_inside(
    queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int
) -> float:
    """Fraction of ``queries`` inside at least one ball ``B(centres[j], radii[j])``."""
    inside = 0
    for start in range(0, queries.shape[0], batch_size):
        distances = torch.cdist(queries[start : start + batch_size], centres)
        inside += int((distances <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(
    real_features: np.ndarray | torch.Tensor,
    fake_features: np.ndarray | torch.Tensor,
    *,
    k: int = 3,
    batch_size: int = 2048,
) -> PrecisionRecall:
    """Improved precision/recall of generated features against real ones (spec 10 §12, 11 §6).

    Args:
        real_features: ``(N_r, D)`` real features (numpy array or torch tensor), ``N_r > k``.
        fake_features: ``(N_g, D)`` generated features, ``N_g > k``, same ``D``.
        k: neighbour rank defining each ball's radius (3 in the paper and the spec).
        batch_size: query rows per distance block; memory is ``O(batch_size · max(N_r, N_g))``.

    Returns:
        A frozen :class:`PrecisionRecall`. Identical sets give ``(1.0, 1.0)``. With in-domain
        LeNet features the numbers are not comparable to published (Inception/VGG) values.

    Raises:
        TypeError: non-array input or non-int ``k``/``batch_size``.
        ValueError: non-2-D input, ``N <= k``, different ``D``, NaN/inf values, ``k < 1``.
    """
    k = check_int(k, "k", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    real = torch.from_numpy(as_float64_matrix(real_features, "real_features", min_rows=k + 1))
    fake = torch.from_numpy(as_float64_matrix(fake_features, "fake_features", min_rows=k + 1))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}; "
            "extract both sets with the same extractor"
        )
    real_radii = _kth_neighbour_radii(real, k, batch_size)
    fake_radii = _kth_neighbour_radii(fake, k, batch_size)
    return PrecisionRecall(
        precision=_fraction_inside(fake, real, real_radii, batch_size),
        recall=_fraction_inside(real, fake, fake_radii, batch_size),
    )
