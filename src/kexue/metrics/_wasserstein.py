"""Exact empirical W1 between two equal-size point clouds (spec 01 E1.1).

The optimal transport plan between two uniform empirical measures of n points is a permutation,
found
exactly by ``scipy.optimize.linear_sum_assignment`` on the Euclidean cost matrix.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from ._validation import as_float64_matrix

__all__ = ["w1_exact"]


def w1_exact(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """:math:`W_1` between the empirical measures of ``x`` and ``y`` (both ``(n, d)``, equal n).

    O(n³) time; meant for the n ≈ 1000–2000 point clouds of the toy experiments.
    """
    a = as_float64_matrix(x, "x")
    b = as_float64_matrix(y, "y")
    if a.shape != b.shape:
        raise ValueError(
            f"w1_exact needs equal-size clouds of equal dimension, got {a.shape} and {b.shape}; "
            "subsample the larger one"
        )
    cost = cdist(a, b)
    rows, columns = linear_sum_assignment(cost)
    return float(cost[rows, columns].mean())
