"""Kernel distance (KID analogue): unbiased MMD² with the cubic polynomial kernel (spec 11 §6,
step 4).

:math:`k(a,b)=(a^\\top b/d+1)^3`, averaged over random subsets of ``subset_size`` points.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import as_float64_matrix

__all__ = ["kernel_distance"]


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    dim = x.shape[1]
    k_xx = (x @ x.T / dim + 1.0) ** 3
    k_yy = (y @ y.T / dim + 1.0) ** 3
    k_xy = (x @ y.T / dim + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def kernel_distance(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    *,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard deviation over subsets of the unbiased MMD² (the KID estimator).

    Subsets of ``min(subset_size, N_a, N_b)`` points are drawn without replacement (seeded). The
    estimate is unbiased, so it can be slightly negative when both sets share a distribution.
    """
    a = as_float64_matrix(features_a, "features_a", min_rows=2)
    b = as_float64_matrix(features_b, "features_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if subset_size < 2 or num_subsets < 1:
        raise ValueError(
            f"subset_size must be >= 2 and num_subsets >= 1, got {subset_size}, {num_subsets}"
        )
    size = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _unbiased_mmd2(
                a[rng.choice(a.shape[0], size, replace=False)],
                b[rng.choice(b.shape[0], size, replace=False)],
            )
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())
